// Netlink link watching (libnl): link added / removed / changed events from
// RTNLGRP_LINK, and a dump of the current links for start-up and resync.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "util/result.h"

namespace zw::inventory {

struct LinkEvent {
  enum class Kind { kAdded, kRemoved, kChanged };  // kChanged: rename, up/down, carrier, mtu...
  Kind kind;
  uint32_t ifindex;
  std::string ifname;     // the name carried by the message: the new name after a rename
  std::string kind_name;  // IFLA_INFO_KIND: "tun" (taps too), "veth", "bridge"; "" when absent
  bool up;                // IFF_UP
};

// A non-blocking libnl socket subscribed to RTNLGRP_LINK in the network
// namespace of the thread that opened it. kAdded means "first time this
// watcher hears of the ifindex": links present when open() ran are seeded from
// a dump, so their later messages are kChanged. Move-only; the socket is
// closed by the destructor.
class LinkWatcher {
 public:
  // Receive buffer asked for by open(); the kernel doubles it to 16 MiB, room
  // for ~7000 queued link messages (~2.3 KiB each, measured on 6.18). Raised
  // past net.core.rmem_max with SO_RCVBUFFORCE when CAP_NET_ADMIN allows.
  static constexpr int kDefaultRcvBuf = 8 << 20;

  static Result<LinkWatcher> open();
  // Tests only: a tiny rcvbuf_bytes makes the kernel drop events (overrun).
  static Result<LinkWatcher> open(int rcvbuf_bytes);

  LinkWatcher(LinkWatcher&&) noexcept;
  LinkWatcher& operator=(LinkWatcher&&) noexcept;
  LinkWatcher(const LinkWatcher&) = delete;
  LinkWatcher& operator=(const LinkWatcher&) = delete;
  ~LinkWatcher();

  int fd() const;      // poll() it for POLLIN; -1 after a move
  int rcvbuf() const;  // SO_RCVBUF as the kernel reports it (twice what was set)

  // Reads every pending message and calls cb once per link event, in kernel
  // order; returns when nothing is pending. Returns true when events were lost
  // (ENOBUFS: the kernel dropped messages; or a message could not be parsed):
  // the caller must then resync from list_links(). The watcher stays usable
  // and its own ifindex table has already been refreshed from a dump.
  // cb runs outside libnl's callbacks: it may throw, and may call drain().
  [[nodiscard]] Result<bool> drain(const std::function<void(const LinkEvent&)>& cb);

  struct State;

 private:
  explicit LinkWatcher(std::unique_ptr<State> st);
  std::unique_ptr<State> st_;  // heap: libnl's callback holds its address across moves
};

// The links of the calling thread's network namespace (an RTM_GETLINK dump),
// every one as a kAdded event, in ifindex order.
Result<std::vector<LinkEvent>> list_links();

}  // namespace zw::inventory
