// LinkWatcher and list_links on libnl-3 / libnl-route-3: messages are parsed
// into rtnl_link objects. Nothing here attaches programs or knows about VMs.
#include "inventory/netlink.h"

#include <fcntl.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/object.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <unordered_map>
#include <utility>

namespace zw::inventory {
namespace {

struct SockFree {
  void operator()(nl_sock* s) const { nl_socket_free(s); }  // closes the fd too
};
using SockPtr = std::unique_ptr<nl_sock, SockFree>;

struct CbPut {
  void operator()(nl_cb* cb) const { nl_cb_put(cb); }
};
using CbPtr = std::unique_ptr<nl_cb, CbPut>;

struct CacheFree {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
using CachePtr = std::unique_ptr<nl_cache, CacheFree>;

// libnl returns its own codes (NLE_*), not errnos: keep its text instead.
Error nl_error(const std::string& what, int nlerr) {
  return Error(ErrorKind::kSystem, what + ": " + nl_geterror(nlerr));
}

Result<SockPtr> connect_route() {
  SockPtr sk(nl_socket_alloc());
  if (!sk) return fail(Error::sys("nl_socket_alloc", ENOMEM));
  if (int err = nl_connect(sk.get(), NETLINK_ROUTE); err < 0)
    return fail(nl_error("nl_connect(NETLINK_ROUTE)", err));
  // The daemon runs ip and tc; its netlink sockets must not leak into them.
  const int fd = nl_socket_get_fd(sk.get());
  if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) return fail(Error::sys("fcntl(FD_CLOEXEC)"));
  return sk;
}

LinkEvent to_event(rtnl_link* l, LinkEvent::Kind kind) {
  const char* name = rtnl_link_get_name(l);
  const char* type = rtnl_link_get_type(l);
  return LinkEvent{.kind = kind,
                   .ifindex = static_cast<uint32_t>(rtnl_link_get_ifindex(l)),
                   .ifname = name ? name : "",
                   .kind_name = type ? type : "",
                   .up = (rtnl_link_get_flags(l) & IFF_UP) != 0};
}

// Replaces libnl's nl_recv for the watcher. libnl 3.7 turns ENOBUFS (the
// kernel dropped messages for this socket) into NLE_NOMEM, which cannot be told
// from a failed malloc, and EAGAIN into NLE_AGAIN. Here ENOBUFS becomes
// NLE_MSG_OVERFLOW (libnl's own code for NLMSG_OVERRUN) and EAGAIN returns 0,
// so nl_recvmsgs_report answers "n messages", "nothing pending" or "overrun".
int recv_hook(nl_sock* sk, sockaddr_nl* nla, unsigned char** buf, ucred** /*creds*/) {
  const int fd = nl_socket_get_fd(sk);
  auto mapped = [](int err) {
    if (err == EAGAIN || err == EWOULDBLOCK) return 0;
    if (err == ENOBUFS) return -NLE_MSG_OVERFLOW;
    return -nl_syserr2nlerr(err);
  };
  for (;;) {
    // MSG_PEEK | MSG_TRUNC returns the datagram's full length without consuming it.
    const ssize_t len = ::recv(fd, nullptr, 0, MSG_PEEK | MSG_TRUNC);
    if (len < 0) {
      if (errno == EINTR) continue;
      return mapped(errno);
    }
    auto* data = static_cast<unsigned char*>(std::malloc(len > 0 ? len : 1));
    if (!data) return -NLE_NOMEM;
    iovec iov{.iov_base = data, .iov_len = static_cast<size_t>(len)};
    msghdr mh{};
    mh.msg_name = nla;
    mh.msg_namelen = sizeof(*nla);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    const ssize_t n = ::recvmsg(fd, &mh, 0);
    if (n <= 0) {
      const int err = errno;
      std::free(data);
      if (n == 0 || err == EINTR) continue;  // an empty datagram: nothing to parse
      return mapped(err);
    }
    if (mh.msg_flags & MSG_TRUNC) {  // cannot happen after the peek; never parse a cut message
      std::free(data);
      return -NLE_MSG_TRUNC;
    }
    *buf = data;  // libnl frees it
    return static_cast<int>(n);
  }
}

// An RTM_GETLINK dump on sk, in sk's network namespace.
Result<std::vector<LinkEvent>> dump_links(nl_sock* sk) {
  CachePtr cache;
  int err = 0;
  // A dump that races a link change is flagged NLM_F_DUMP_INTR: just redo it.
  for (int attempt = 0; attempt < 5; ++attempt) {
    nl_cache* raw = nullptr;
    err = rtnl_link_alloc_cache(sk, AF_UNSPEC, &raw);
    cache.reset(raw);
    if (err != -NLE_DUMP_INTR) break;
  }
  if (err < 0) return fail(nl_error("RTM_GETLINK dump", err));

  std::vector<LinkEvent> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    auto* l = reinterpret_cast<rtnl_link*>(o);
    if (rtnl_link_get_family(l) != AF_UNSPEC) continue;
    out.push_back(to_event(l, LinkEvent::Kind::kAdded));
  }
  std::sort(out.begin(), out.end(),
            [](const LinkEvent& a, const LinkEvent& b) { return a.ifindex < b.ifindex; });
  return out;
}

}  // namespace

struct LinkWatcher::State {
  SockPtr sock;
  SockPtr dump_sock;  // opened with sock: reseeds dump the watcher's namespace, not the drainer's
  CbPtr cb;           // the socket's own callback set
  std::unordered_map<uint32_t, std::string> known;  // ifindex -> name
  std::vector<LinkEvent> pending;                   // filled by on_valid during one read
  bool need_resync = false;  // a message was lost or unparseable; cleared by a good dump

  Status reseed() {
    auto links = dump_links(dump_sock.get());
    if (!links) return fail(std::move(links.error()).wrap("seed link table"));
    known.clear();
    for (auto& l : *links) known.emplace(l.ifindex, std::move(l.ifname));
    return {};
  }

  // NL_CB_VALID: runs inside libnl, so it only records; the caller's callback
  // runs after nl_recvmsgs_report returns (no C++ exception crosses libnl).
  static int on_valid(nl_msg* msg, void* arg) noexcept {
    auto* st = static_cast<State*>(arg);
    try {
      return st->handle(msg);
    } catch (...) {  // bad_alloc: drop the message, have the caller resync
      st->need_resync = true;
      return NL_SKIP;
    }
  }

  int handle(nl_msg* msg) {
    nlmsghdr* h = nlmsg_hdr(msg);
    if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) return NL_SKIP;
    if (!nlmsg_valid_hdr(h, sizeof(ifinfomsg))) {
      need_resync = true;
      return NL_SKIP;
    }
    // RTNLGRP_LINK also carries AF_BRIDGE messages about bridge ports: their
    // RTM_DELLINK means "left the bridge", not "the link is gone".
    if (static_cast<const ifinfomsg*>(nlmsg_data(h))->ifi_family != AF_UNSPEC) return NL_SKIP;

    struct Parsed {
      bool ok = false;
      LinkEvent ev{};
    } parsed;
    const int err = nl_msg_parse(
        msg,
        [](nl_object* obj, void* out) {
          auto* p = static_cast<Parsed*>(out);
          p->ev = to_event(reinterpret_cast<rtnl_link*>(obj), LinkEvent::Kind::kChanged);
          p->ok = true;
        },
        &parsed);
    if (err < 0 || !parsed.ok || parsed.ev.ifindex == 0) {
      need_resync = true;
      return NL_SKIP;
    }
    LinkEvent& ev = parsed.ev;
    if (h->nlmsg_type == RTM_DELLINK) {
      ev.kind = LinkEvent::Kind::kRemoved;
      known.erase(ev.ifindex);
    } else {
      auto [it, inserted] = known.try_emplace(ev.ifindex, ev.ifname);
      ev.kind = inserted ? LinkEvent::Kind::kAdded : LinkEvent::Kind::kChanged;
      if (!inserted) it->second = ev.ifname;
    }
    pending.push_back(std::move(ev));
    return NL_OK;
  }
};

LinkWatcher::LinkWatcher(std::unique_ptr<State> st) : st_(std::move(st)) {}
LinkWatcher::LinkWatcher(LinkWatcher&&) noexcept = default;
LinkWatcher& LinkWatcher::operator=(LinkWatcher&&) noexcept = default;
LinkWatcher::~LinkWatcher() = default;

Result<LinkWatcher> LinkWatcher::open() { return open(kDefaultRcvBuf); }

Result<LinkWatcher> LinkWatcher::open(int rcvbuf_bytes) {
  auto st = std::make_unique<State>();
  auto sk = connect_route();
  if (!sk) return fail(std::move(sk.error()).wrap("link watcher"));
  st->sock = std::move(*sk);
  nl_sock* s = st->sock.get();
  auto dsk = connect_route();
  if (!dsk) return fail(std::move(dsk.error()).wrap("link watcher"));
  st->dump_sock = std::move(*dsk);

  // Events are not answers to requests: no sequence numbers to check.
  nl_socket_disable_seq_check(s);
  if (int err = nl_socket_modify_cb(s, NL_CB_VALID, NL_CB_CUSTOM, &State::on_valid, st.get());
      err < 0)
    return fail(nl_error("link watcher: nl_socket_modify_cb", err));
  st->cb.reset(nl_socket_get_cb(s));
  if (!st->cb) return fail(Error::sys("link watcher: nl_socket_get_cb", ENOMEM));
  nl_cb_overwrite_recv(st->cb.get(), &recv_hook);

  if (int err = nl_socket_add_membership(s, RTNLGRP_LINK); err < 0)
    return fail(nl_error("link watcher: join RTNLGRP_LINK", err));
  if (int err = nl_socket_set_nonblocking(s); err < 0)
    return fail(nl_error("link watcher: O_NONBLOCK", err));
  // SO_RCVBUF is capped at net.core.rmem_max; with CAP_NET_ADMIN,
  // SO_RCVBUFFORCE is not. A burst of VM starts must not overrun the queue.
  if (int err = nl_socket_set_buffer_size(s, rcvbuf_bytes, 0); err < 0)
    return fail(nl_error("link watcher: SO_RCVBUF", err));
  LinkWatcher w(std::move(st));
  if (w.rcvbuf() / 2 < rcvbuf_bytes)
    (void)::setsockopt(w.fd(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf_bytes, sizeof(rcvbuf_bytes));

  // After joining the group: a link created meanwhile is in the dump and in
  // the queue (reported kChanged), never in neither.
  if (auto s2 = w.st_->reseed(); !s2) return fail(std::move(s2.error()).wrap("link watcher"));
  return w;
}

int LinkWatcher::fd() const { return st_ ? nl_socket_get_fd(st_->sock.get()) : -1; }

int LinkWatcher::rcvbuf() const {
  int v = 0;
  socklen_t len = sizeof(v);
  if (::getsockopt(fd(), SOL_SOCKET, SO_RCVBUF, &v, &len) != 0) return -1;
  return v;
}

Result<bool> LinkWatcher::drain(const std::function<void(const LinkEvent&)>& cb) {
  if (!st_) return fail(Error::sys("link watcher: drain after move", EBADF));
  State& st = *st_;
  bool lost = false;
  for (;;) {
    const int n = nl_recvmsgs_report(st.sock.get(), st.cb.get());
    std::vector<LinkEvent> batch;
    batch.swap(st.pending);
    try {
      for (const auto& ev : batch) cb(ev);
    } catch (...) {
      st.need_resync = true;  // the rest of this batch is lost to the caller
      throw;
    }
    if (n == 0) break;  // EAGAIN: nothing pending
    if (n == -NLE_MSG_OVERFLOW) {
      lost = true;  // keep reading: what is queued is still valid and ordered
      continue;
    }
    if (n < 0) return fail(nl_error("link watcher: receive", n));
  }
  if (lost) st.need_resync = true;
  if (!st.need_resync) return false;
  // Our ifindex table missed messages: take it from a dump again so that later
  // events are classified against the truth. The caller resyncs its own state.
  if (auto s = st.reseed(); !s) return fail(std::move(s.error()).wrap("link watcher: resync"));
  st.need_resync = false;
  return true;
}

Result<std::vector<LinkEvent>> list_links() {
  auto sk = connect_route();
  if (!sk) return fail(std::move(sk.error()).wrap("list links"));
  auto links = dump_links(sk->get());
  if (!links) return fail(std::move(links.error()).wrap("list links"));
  return links;
}

}  // namespace zw::inventory
