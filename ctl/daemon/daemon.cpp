// The daemon's event loop: poll() over signals, netlink, libvirt's event
// thread (through an eventfd), the control socket and a resync timer.
#include "daemon/daemon.h"

#include <fnmatch.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "cluster/member.h"
#include "daemon/control.h"
#include "daemon/metrics.h"
#include "datapath/attach.h"
#include "datapath/events.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "engine/admit.h"
#include "engine/conntrack.h"
#include "engine/flows.h"
#include "engine/inspect.h"
#include "engine/reconcile.h"
#include "inventory/libvirt.h"
#include "inventory/merge.h"
#include "inventory/netlink.h"
#include "inventory/static_json.h"
#include "policy/json.h"
#include "util/log.h"

namespace zw::daemon {

namespace dp = zw::datapath;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string us_since(Clock::time_point t) {
  return std::to_string(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count());
}

}  // namespace

struct Daemon::Impl {
  explicit Impl(Options o) : o_(std::move(o)) {}
  ~Impl() { stop_tap_thread(); }

  int run();
  bool step(int timeout_ms);
  Status start();
  void connect_libvirt();
  void on_libvirt_events();
  void on_links();
  void on_signal();
  void on_control();
  json handle(const json& req);
  json handle_apply(const json& req);
  // Reconciles desired (policy + inventory) into the datapath. Returns the
  // apply report or an error; never touches the datapath without a complete
  // inventory (libvirt unreachable: the last applied state stays).
  Result<std::optional<engine::ApplyReport>> reconcile(const char* why, bool force = false);
  Status load_policy(const std::string& path);
  Result<std::shared_ptr<const inventory::Inventory>> static_inventory();
  std::shared_ptr<const inventory::Inventory> static_inv_;
  struct stat static_stat_ {};
  void pre_attach(const inventory::LinkEvent& ev);
  // A hooked interface the tap thread has not admitted yet (engine/admit.h):
  // tried again on its link changes (libvirt sets a tap's MAC only after
  // creating it) and after every apply (new admissions, the write lock free
  // again), for kAwaitWindow after it appeared. Tap thread only.
  struct Awaiting {
    std::string ifname;
    Clock::time_point appeared;  // when the tap thread heard of it (before hooking it)
    std::string last_why;        // the last refusal, logged once
  };
  static constexpr std::chrono::seconds kAwaitWindow{10};
  static constexpr int kTapThreadNice = -10;
  std::unordered_map<uint32_t, Awaiting> awaiting_;
  // A VM's interface appeared: its endpoint now, the reconcile after. True
  // when there is nothing left to try (admitted, already enforced, gone).
  bool admit_link(uint32_t ifindex, Awaiting& aw);
  void retry_admissions();
  // Interfaces the tap thread hooks: tap patterns, the last inventory's
  // interfaces, and (taps only: kind "tun") stopped domains' tap names.
  bool is_tap(const std::string& ifname, const std::string& kind);
  // A tap (kind "tun") libvirt named itself whose MAC is the one it gives a
  // stopped domain's tap (admissions keyed by MAC): hooked like a tap
  // pattern's, whatever its name.
  bool starting_tap_mac(const inventory::LinkEvent& ev);
  std::unordered_set<uint32_t> hooked_;  // tap thread: the interfaces it hooked
  // The admissions of the apply that just flipped (ApplyInput::publish_admissions).
  void publish_admissions(std::shared_ptr<const engine::Admissions> adm);
  // The first apply after prospective admissions: was each exactly what
  // the live definition gives the VM?
  void check_prospective(const std::map<std::string, engine::Admissible>& admitted,
                         const engine::Admissions& now);
  // The tap thread: reads netlink and hooks new taps itself, so a hook never
  // waits behind a reconcile blocked in libvirt (a domain being destroyed
  // can hold libvirt for seconds). It forwards every link event to the loop.
  void tap_loop();
  void stop_tap_thread();
  // Removes expired conntrack entries (and uncharges their VMs' limits).
  void sweep();

  Options o_;
  std::optional<engine::PinLock> lock_;
  std::optional<dp::Object> progs_;
  std::optional<policy::Policy> policy_;
  std::optional<inventory::Libvirt> lv_;
  // The domains as last read: whole on connecting, at every resync, SIGHUP
  // and control request; otherwise only the domains events named.
  inventory::DomainCache lv_cache_;
  std::optional<inventory::LinkWatcher> links_;
  UniqueFd sigfd_, evfd_, ctl_;
  std::mutex mu_;
  std::vector<inventory::DomainEvent> pending_;  // filled by libvirt's thread
  bool dirty_ = true;
  bool stop_ = false;
  Clock::time_point next_resync_ = Clock::now();
  Clock::time_point next_libvirt_try_ = Clock::now();
  std::mutex link_mu_;                             // guards the four below
  std::set<std::string> known_ifnames_;            // interfaces of the last inventory
  std::set<uint32_t> known_ifindexes_;             // ... and their indexes at that apply
  std::vector<inventory::LinkEvent> link_events_;  // from the tap thread
  bool link_overrun_ = false;
  std::thread tap_thread_;
  // The tap thread's own ifindex -> name table: a rename shows as a changed
  // name here (netlink reports only the new one).
  std::unordered_map<uint32_t, std::string> link_names_;
  UniqueFd tap_stop_, tap_evfd_;
  UniqueFd tap_retry_;          // the loop tells the tap thread an apply is done
  uint64_t policy_serial_ = 0;  // bumped on every successful load
  std::string applied_fp_;      // fingerprint of the last applied input
  // The state file as the last apply wrote it: the daemon holds the pin
  // lock, nobody else writes it, so it is not read back on every event.
  std::shared_ptr<const engine::State> applied_state_;
  // Admission (engine/admit.h), on the tap thread: what the last apply
  // enforces for every interface its inventory names, and the interfaces
  // admitted since (both under link_mu_). Admissions and an apply's map
  // writes take write_mu_; admit_epoch_ counts admissions, so a reconcile
  // whose desired state predates one builds it again.
  std::shared_ptr<const engine::Admissions> admissions_;
  std::map<std::string, uint32_t> admitted_;  // interface name -> index admitted
  // Starting VMs' taps admitted since the last apply (ifindex: the tap's),
  // and the names of stopped domains' taps (hooked when they appear).
  std::map<std::string, engine::Admissible> prospective_admitted_;
  std::set<std::string> prospective_names_;
  std::set<std::string> prospective_macs_;  // admission keys of taps libvirt names itself
  std::mutex write_mu_;
  std::atomic<uint64_t> admit_epoch_{0};
  int superseded_ = 0;          // reconciles an admission overtook, in a row
  uint64_t applied_epoch_ = 0;  // admit_epoch_ as the last apply saw it
  std::atomic<uint64_t> applies_{0};
  std::atomic<uint64_t> n_admitted_{0}, n_prospective_{0}, n_confirmed_{0}, n_corrected_{0},
      n_withdrawn_{0};
  std::atomic<uint64_t> n_lv_full_{0}, n_lv_domains_{0};
  std::map<std::string, size_t> last_written_;  // under apply_mu_
  std::set<std::string> warned_;
  bool awaiting_lease_ = false;  // a VM on a libvirt network has no address yet
  std::set<std::string> lease_waiters_;  // ... their domains' UUIDs (read again at each look)
  Clock::time_point next_lease_look_ = Clock::now();
  static constexpr std::chrono::seconds kLeasePoll{2};
  // Observability (events, run-time statistics, metrics).
  Status start_observability();
  json handle_flows(const json& req);
  std::unique_ptr<engine::FlowCollector> flows_;
  dp::RunTimeStats bpf_stats_;
  std::unique_ptr<MetricsServer> metrics_;
  std::mutex apply_mu_;  // guards apply_info_ (the metrics thread reads it)
  ApplyInfo apply_info_;
  // Cluster mode: the policy and the other hosts' VMs from etcd.
  Status start_cluster();
  void on_cluster_watch();
  std::unique_ptr<cluster::Member> cluster_;
  bool announced_ = false;
};

Status Daemon::Impl::load_policy(const std::string& path) {
  auto p = policy::load(path);
  if (!p) return fail(std::move(p.error()));
  policy_ = std::move(*p);
  o_.policy_path = path;
  ++policy_serial_;
  log::info("policy loaded", {{"path", path},
                              {"zones", std::to_string(policy_->zones.size())},
                              {"rules", std::to_string(policy_->rules.size())}});
  return {};
}

Status Daemon::Impl::start() {
  if (auto st = dp::ensure_bpffs(o_.paths.pin_dir); !st) return st;
  auto lock = engine::PinLock::acquire(o_.paths.pin_dir);
  if (!lock) return fail(std::move(lock.error()));
  lock_.emplace(std::move(*lock));

  if (!o_.cluster.endpoints.empty()) {
    // The policy arrives from the store; until then new taps are hooked
    // fail closed and an enforced generation from before stays.
  } else if (auto st = load_policy(o_.policy_path); !st) {
    // With a policy already enforced, keep it and wait for a valid one;
    // never flush on start.
    auto prev = engine::read_state(o_.paths);
    if (!prev || !*prev) return st;
    log::error("policy invalid; keeping the enforced generation until a valid one is applied",
               {{"error", st.error().str()}, {"generation", std::to_string((*prev)->generation)}});
  }

  auto progs = dp::Object::load(o_.paths.pin_dir);
  if (!progs) return fail(std::move(progs.error()));
  progs_.emplace(std::move(*progs));

  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGHUP, SIGTERM, SIGINT}) sigaddset(&mask, s);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  sigfd_.reset(signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!sigfd_) return fail(Error::sys("signalfd"));
  evfd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!evfd_) return fail(Error::sys("eventfd"));
  // Threads started from here on inherit the blocked signals.
  if (auto st = start_observability(); !st) return st;

  std::error_code ec;
  std::filesystem::create_directories(o_.paths.state_dir, ec);
  auto ctl = listen_control(control_socket_path(o_.paths.state_dir), o_.access);
  if (!ctl) return fail(std::move(ctl.error()));
  ctl_ = std::move(*ctl);

  auto lw = inventory::LinkWatcher::open();
  if (!lw) return fail(std::move(lw.error()).wrap("netlink"));
  links_.emplace(std::move(*lw));
  // Taps that appeared while no daemon ran: hook them now (re-hooking one
  // that is already enforced is an atomic replace of the same program).
  if (auto now = inventory::list_links(); now) {
    for (const auto& l : *now) {
      link_names_[l.ifindex] = l.ifname;
      if (is_tap(l.ifname, l.kind_name)) {
        pre_attach(l);
        hooked_.insert(l.ifindex);
      }
    }
  } else {
    log::warn("cannot list links", {{"error", now.error().str()}});
  }
  tap_stop_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  tap_evfd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  tap_retry_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!tap_stop_ || !tap_evfd_ || !tap_retry_) return fail(Error::sys("eventfd"));
  tap_thread_ = std::thread([this] { tap_loop(); });

  if (!o_.libvirt_uri.empty()) {
    if (auto st = inventory::start_event_loop(); !st)
      return fail(std::move(st.error()).wrap("libvirt"));
    connect_libvirt();
  }
  if (!o_.cluster.endpoints.empty()) return start_cluster();
  return {};
}

Status Daemon::Impl::start_cluster() {
  auto m = cluster::Member::start({.endpoints = o_.cluster.endpoints,
                                   .host = o_.cluster.host,
                                   .prefix = o_.cluster.prefix,
                                   .lease_ttl = o_.cluster.lease_ttl,
                                   .policy_dir = o_.paths.state_dir + "/cluster-policy",
                                   .timeouts = {}});
  if (!m) return fail(std::move(m.error()).wrap("cluster"));
  cluster_ = std::move(*m);
  log::info("cluster mode", {{"host", o_.cluster.host},
                             {"prefix", o_.cluster.prefix},
                             {"lease_ttl", std::to_string(o_.cluster.lease_ttl)}});
  return {};
}

// Store changes: a new policy revision is loaded and applied in the same
// reconcile as everything else (one generation flip); endpoint changes of
// other hosts mark the desired state dirty.
void Daemon::Impl::on_cluster_watch() {
  auto c = cluster_->on_watch();
  if (c.policy) {
    if (auto p = cluster_->take_policy(); p && *p) {
      policy_ = std::move(**p);
      o_.policy_path = o_.paths.state_dir + "/cluster-policy";
      ++policy_serial_;
      dirty_ = true;
    }
  }
  if (c.endpoints) dirty_ = true;
  if (cluster_->synced() && !policy_ && !announced_) {
    cluster_->announce();  // listed in `status --cluster`, revision 0
    announced_ = true;
  }
}

void Daemon::Impl::connect_libvirt() {
  inventory::LibvirtOptions lo;
  lo.uri = o_.libvirt_uri;
  lo.addr_lease = o_.libvirt_lease_addrs;
  auto c = inventory::Libvirt::connect(lo);
  if (!c) {
    log::warn("libvirt unreachable; enforcement continues unchanged, retrying",
              {{"uri", o_.libvirt_uri}, {"error", c.error().str()}});
    next_libvirt_try_ = Clock::now() + std::chrono::seconds(1);
    return;
  }
  lv_.emplace(std::move(*c));
  lv_cache_.mark_all();  // events may have been missed while not connected
  auto w = lv_->watch([this](const inventory::DomainEvent& ev) {
    {
      std::lock_guard lk(mu_);
      pending_.push_back(ev);
    }
    uint64_t one = 1;
    (void)!::write(evfd_.get(), &one, sizeof one);
  });
  if (!w) log::warn("libvirt events unavailable; relying on resync", {{"error", w.error().str()}});
  log::info("libvirt connected", {{"uri", o_.libvirt_uri}});
  dirty_ = true;
}

void Daemon::Impl::tap_loop() {
  // Hooking and admitting a new tap is a few hundred microseconds of work
  // that must not wait for a CPU behind busy vCPU threads (measured: hooks
  // of 22-55 ms with three TCG guests and libvirtd busy on two cores). A
  // higher priority for this thread only (nice -10) needs CAP_SYS_NICE;
  // without it the thread keeps the default.
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kTapThreadNice) != 0)
    log::info("tap thread: default priority (raising it needs CAP_SYS_NICE)",
              {{"errno", std::to_string(errno)}});
  for (;;) {
    pollfd fds[3] = {
        {links_->fd(), POLLIN, 0}, {tap_stop_.get(), POLLIN, 0}, {tap_retry_.get(), POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0 && errno != EINTR) {
      log::error("tap thread: poll failed", {{"errno", std::to_string(errno)}});
      return;
    }
    if (fds[1].revents) return;
    if (fds[2].revents) {
      uint64_t n;
      (void)!::read(tap_retry_.get(), &n, sizeof n);
      retry_admissions();
    }
    if (!fds[0].revents) continue;
    std::vector<inventory::LinkEvent> got;
    auto r = links_->drain([&](const inventory::LinkEvent& ev) {
      using K = inventory::LinkEvent::Kind;
      if (ev.kind == K::kRemoved) {
        link_names_.erase(ev.ifindex);
        awaiting_.erase(ev.ifindex);
        hooked_.erase(ev.ifindex);
      } else {
        // New, or renamed to a name we hook (an interface created under a
        // temporary name, a tap renamed back): hooked before anything else.
        auto [it, fresh] = link_names_.try_emplace(ev.ifindex, ev.ifname);
        bool renamed = !fresh && it->second != ev.ifname;
        it->second = ev.ifname;
        auto aw = awaiting_.find(ev.ifindex);
        const auto seen = Clock::now();
        if (((ev.kind == K::kAdded || fresh || renamed) && is_tap(ev.ifname, ev.kind_name)) ||
            (!hooked_.count(ev.ifindex) && starting_tap_mac(ev))) {
          pre_attach(ev);
          hooked_.insert(ev.ifindex);
          Awaiting& a = awaiting_[ev.ifindex] = {ev.ifname, seen, ""};
          if (admit_link(ev.ifindex, a)) awaiting_.erase(ev.ifindex);
        } else if (aw != awaiting_.end() && aw->second.ifname == ev.ifname) {
          // A change of a hooked, not yet admitted interface: its MAC set?
          if (admit_link(ev.ifindex, aw->second)) awaiting_.erase(aw);
        } else if (aw != awaiting_.end()) {
          awaiting_.erase(aw);  // renamed away
        }
      }
      got.push_back(ev);
    });
    {
      std::lock_guard lk(link_mu_);
      link_events_.insert(link_events_.end(), got.begin(), got.end());
      if (!r) log::warn("netlink read failed", {{"error", r.error().str()}});
      if (!r || *r) link_overrun_ = true;
    }
    uint64_t one = 1;
    (void)!::write(tap_evfd_.get(), &one, sizeof one);
  }
}

void Daemon::Impl::retry_admissions() {
  const auto now = Clock::now();
  for (auto it = awaiting_.begin(); it != awaiting_.end();) {
    if (now - it->second.appeared > kAwaitWindow || admit_link(it->first, it->second))
      it = awaiting_.erase(it);
    else
      ++it;
  }
}

void Daemon::Impl::stop_tap_thread() {
  if (!tap_thread_.joinable()) return;
  uint64_t one = 1;
  (void)!::write(tap_stop_.get(), &one, sizeof one);
  tap_thread_.join();
}

bool Daemon::Impl::starting_tap_mac(const inventory::LinkEvent& ev) {
  if (ev.kind_name != "tun") return false;
  {
    std::lock_guard lk(link_mu_);
    if (prospective_macs_.empty()) return false;
  }
  auto m = engine::link_mac(ev.ifindex);
  if (!m) return false;
  std::lock_guard lk(link_mu_);
  return prospective_macs_.count(engine::admission_key(*m)) > 0;
}

bool Daemon::Impl::is_tap(const std::string& ifname, const std::string& kind) {
  {
    std::lock_guard lk(link_mu_);
    if (known_ifnames_.count(ifname)) return true;
    // A stopped domain's tap name: hooked when a tap (never another kind of
    // interface, a NIC say) appears under it.
    if (kind == "tun" && prospective_names_.count(ifname)) return true;
  }
  for (const auto& p : o_.tap_patterns)
    if (fnmatch(p.c_str(), ifname.c_str(), 0) == 0) return true;
  return false;
}

// Hooks a new tap before anyone knows whose it is: with no endpoint in the
// live generation the programs drop all its traffic, counted as
// drop_no_endpoint, until reconcile writes the endpoint.
void Daemon::Impl::pre_attach(const inventory::LinkEvent& ev) {
  auto t0 = Clock::now();
  // This thread's CPU time too: a hook slower than its CPU time waited (for
  // the RTNL lock, which libvirtd holds while it sets the new tap up, or
  // for a CPU).
  timespec c0{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
  int ifx = static_cast<int>(ev.ifindex);
  Status st = {};
  if (auto made = dp::ensure_clsact(ifx); !made) st = fail(std::move(made.error()));
  if (st) st = dp::attach_tc(ifx, dp::TcHook::kEgress, progs_->prog_fd(dp::Prog::kToVmTc));
  if (st) st = dp::attach_tc(ifx, dp::TcHook::kIngress, progs_->prog_fd(dp::Prog::kFromVmTc));
  if (!st) {
    log::warn("pre-attach failed", {{"ifname", ev.ifname}, {"error", st.error().str()}});
    return;
  }
  timespec c1{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
  const long cpu_us = (c1.tv_sec - c0.tv_sec) * 1000000L + (c1.tv_nsec - c0.tv_nsec) / 1000;
  log::info("tap hooked (fail closed until its VM is known)",
            {{"ifname", ev.ifname},
             {"ifindex", std::to_string(ev.ifindex)},
             {"attach_us", us_since(t0)},
             {"attach_cpu_us", std::to_string(cpu_us)}});
}

namespace {
// "inventory 12.3 desired 45.6 ...": where a reconcile's time went.
std::string phases_str(double inventory_ms, double fingerprint_ms,
                       const std::vector<std::pair<std::string, double>>& phases) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "inventory %.1f fingerprint %.1f", inventory_ms, fingerprint_ms);
  std::string out = buf;
  for (const auto& [name, ms] : phases) {
    std::snprintf(buf, sizeof buf, " %s %.1f", name.c_str(), ms);
    out += buf;
  }
  return out;
}

// What an apply depends on: the policy load, and every endpoint with the
// ifindex its interface has right now (a tap recreated under the same name
// gets a new index and must be re-hooked).
std::string fingerprint(uint64_t policy_serial, const inventory::Inventory& inv,
                        const std::string& attach) {
  std::string fp = std::to_string(policy_serial) + "|" + attach;
  const net::InterfaceIndexes ifindex;
  for (const auto& e : inv.endpoints) {
    fp += "\n" + e.vm_name + "|" + e.vm_uuid + "|" + e.zone_tag.value_or("-") + "|" + e.ifname +
          "|" + std::to_string(e.ifname.empty() ? 0 : ifindex(e.ifname)) + "|" +
          (e.mac ? net::mac_str(*e.mac) : "-") + "|" + e.attach.value_or("-") + "|" +
          e.config_ifname;
    for (const auto& a : e.addrs) fp += "," + a.str();
  }
  return fp;
}
}  // namespace

// The static inventory, parsed again only when the file changed (its
// identity, size or times), at every resync and on SIGHUP: parsing 10,000
// VMs costs ~0.1 s, and every tap event would pay it.
Result<std::shared_ptr<const inventory::Inventory>> Daemon::Impl::static_inventory() {
  struct stat now {};
  if (::stat(o_.inventory_path.c_str(), &now) != 0)
    return fail(Error::sys("inventory " + o_.inventory_path));
  auto same = [&](const struct stat& a) {
    return a.st_dev == now.st_dev && a.st_ino == now.st_ino && a.st_size == now.st_size &&
           a.st_mtim.tv_sec == now.st_mtim.tv_sec && a.st_mtim.tv_nsec == now.st_mtim.tv_nsec &&
           a.st_ctim.tv_sec == now.st_ctim.tv_sec && a.st_ctim.tv_nsec == now.st_ctim.tv_nsec;
  };
  if (static_inv_ && same(static_stat_)) return static_inv_;
  auto inv = inventory::load_static(o_.inventory_path);
  if (!inv) return fail(std::move(inv.error()));
  static_inv_ = std::make_shared<const inventory::Inventory>(std::move(*inv));
  static_stat_ = now;
  return static_inv_;
}

Result<std::optional<engine::ApplyReport>> Daemon::Impl::reconcile(const char* why, bool force) {
  if (!policy_) return fail(Error(ErrorKind::kInvalid, "no valid policy loaded"));
  auto t0 = Clock::now();
  // Normally admissions go on while the inventory is read and the desired
  // state built, and a reconcile that one overtook is built again: an
  // admission is newer than the inventory read before it (a starting VM's
  // tap admitted while libvirt still listed its domain as stopped), so the
  // count is taken before reading. After two overtaken in a row (taps
  // appearing faster than a reconcile takes), this one holds the lock from
  // the start instead, so reconciles always complete; admissions wait.
  std::unique_lock<std::mutex> hold;
  if (superseded_ >= 2) hold = std::unique_lock(write_mu_);
  const uint64_t epoch = admit_epoch_.load();
  inventory::Inventory inv;
  std::vector<std::string> warnings;
  std::string libvirt_read = "-";
  if (!o_.libvirt_uri.empty()) {
    if (!lv_)
      return fail(Error(ErrorKind::kSystem, "libvirt not connected; enforcement unchanged"));
    if (force) lv_cache_.mark_all();  // a control request reads everything again
    {
      // A starting VM's tap admitted since the last read: its domain again,
      // which libvirt now reports running on it (else the apply would take
      // the admission back as libvirt's stopped domain's).
      std::lock_guard lk(link_mu_);
      for (const auto& [name, a] : prospective_admitted_) lv_cache_.mark_vm(a.vm);
    }
    auto read = lv_cache_.update(*lv_);
    if (!read) {
      lv_.reset();
      next_libvirt_try_ = Clock::now();
      return fail(std::move(read.error()).wrap("libvirt snapshot (enforcement unchanged)"));
    }
    libvirt_read = (read->full ? "all " : "") + std::to_string(read->domains);
    if (read->full)
      ++n_lv_full_;
    else
      n_lv_domains_ += read->domains;
    {
      std::lock_guard lk(apply_mu_);
      apply_info_.libvirt = true;
      apply_info_.libvirt_full_reads = n_lv_full_;
      apply_info_.libvirt_domains_reread = n_lv_domains_;
    }
    auto snap = lv_cache_.snapshot();
    inv = std::move(snap.inventory);
    warnings = std::move(snap.warnings);
  }
  if (!o_.inventory_path.empty()) {
    auto st = static_inventory();
    if (!st) return fail(std::move(st.error()));
    inv = inventory::apply_overrides(std::move(inv), **st);
  }
  // A running VM on a libvirt network without a known address is waiting
  // for its DHCP lease; until it is seen, the VM may only send DHCP, ARP
  // and ND. Leases raise no libvirt event: look again soon.
  lease_waiters_.clear();
  for (const auto& e : inv.endpoints)
    if (!e.ifname.empty() && e.libvirt_type == "network" && e.addrs.empty())
      lease_waiters_.insert(e.vm_uuid);
  awaiting_lease_ = !lease_waiters_.empty();
  if (!o_.attach_rules.empty())
    for (auto& e : inv.endpoints)
      if (!e.attach && !e.ifname.empty())
        e.attach = config::attach_mode(o_.attach_rules, o_.default_attach, e.ifname);
  std::optional<inventory::Inventory> local;
  if (cluster_) {
    local = inv;
    auto w = cluster_->add_remote(*policy_, inv);
    warnings.insert(warnings.end(), w.begin(), w.end());
  }
  const double inventory_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  std::string fp = fingerprint(policy_serial_, inv, o_.default_attach);
  const double fingerprint_ms =
      std::chrono::duration<double, std::milli>(Clock::now() - t0).count() - inventory_ms;
  // An admission since the last apply changed the maps behind its back (a
  // tap admitted, then gone before this reconcile looked): apply anyway.
  if (!force && fp == applied_fp_ && admit_epoch_.load() == applied_epoch_) {
    log::debug("reconcile: nothing changed", {{"why", why}});
    if (cluster_) cluster_->enforced(*local, cluster_->loaded_revision());
    return std::optional<engine::ApplyReport>{};
  }
  engine::ApplyInput in{
      .policy = &*policy_,
      .inventory = &inv,
      .programs = &*progs_,
      .previous = applied_state_.get(),
      .policy_source = cluster_ ? "cluster revision " + std::to_string(cluster_->loaded_revision())
                                : o_.policy_path,
      .inventory_source = o_.libvirt_uri.empty() ? o_.inventory_path : o_.libvirt_uri,
      .default_attach = o_.default_attach,
      .keep_hooked = o_.tap_patterns,
      .resolve = {},
      .sweep_conntrack = false};
  in.admissions = true;
  std::map<std::string, engine::Admissible> prospective;  // admitted before this apply's flip
  in.publish_admissions = [&](std::shared_ptr<const engine::Admissions> adm) {
    {
      std::lock_guard lk(link_mu_);
      prospective = std::exchange(prospective_admitted_, {});
    }
    publish_admissions(std::move(adm));
  };
  if (!hold) {
    in.write_lock = &write_mu_;
    in.still_current = [&] { return admit_epoch_.load() == epoch; };
  }
  auto rep = engine::apply(o_.paths, in);
  if (hold) hold.unlock();
  uint64_t one = 1;  // the write lock is free: taps that found it taken try again
  (void)!::write(tap_retry_.get(), &one, sizeof one);
  if (!rep) return fail(std::move(rep.error()));
  if (rep->superseded) {  // an interface was admitted meanwhile: again, with it
    log::debug("reconcile: an admission came first; again", {{"why", why}});
    ++superseded_;
    dirty_ = true;
    return std::optional<engine::ApplyReport>{};
  }
  superseded_ = 0;
  applied_epoch_ = epoch;
  for (const auto& w : warnings) rep->warnings.push_back(w);
  applied_fp_ = fp;
  applied_state_ = rep->state;
  ++applies_;
  if (cluster_) cluster_->enforced(*local, cluster_->loaded_revision());
  {
    std::lock_guard lk(apply_mu_);
    apply_info_.applies = applies_;
    last_written_.clear();
    for (const auto& [name, c] : rep->changes) last_written_[name] = c.written;
    apply_info_.last_duration_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    apply_info_.last_unix_seconds =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
  if (rep->admissions) check_prospective(prospective, *rep->admissions);
  {
    // Built outside link_mu_ (a link dump and 10,000 names take
    // milliseconds, and the tap thread takes that mutex for every new tap),
    // swapped in under it.
    std::set<std::string> names;
    std::set<uint32_t> indexes;
    const net::InterfaceIndexes ifindex;
    for (const auto& e : inv.endpoints) {
      if (e.ifname.empty()) continue;
      names.insert(e.ifname);
      if (unsigned ifx = ifindex(e.ifname)) indexes.insert(ifx);
    }
    std::lock_guard lk(link_mu_);
    known_ifnames_.swap(names);
    known_ifindexes_.swap(indexes);
  }
  log::info("reconciled", {{"why", why},
                           {"generation", std::to_string(rep->generation)},
                           {"endpoints", std::to_string(rep->endpoints)},
                           {"attached", std::to_string(rep->attached)},
                           {"detached", std::to_string(rep->detached)},
                           {"entries_written", std::to_string(rep->entries_written)},
                           {"entries_deleted", std::to_string(rep->entries_deleted)},
                           {"took_us", us_since(t0)},
                           {"libvirt_domains_read", libvirt_read},
                           {"ms", phases_str(inventory_ms, fingerprint_ms, rep->phases)}});
  // A warning is logged when it appears, not on every reconcile after.
  std::set<std::string> now(rep->warnings.begin(), rep->warnings.end());
  for (const auto& w : now)
    if (!warned_.count(w)) log::warn(w);
  warned_ = std::move(now);
  return std::optional<engine::ApplyReport>(std::move(*rep));
}

void Daemon::Impl::on_libvirt_events() {
  uint64_t n;
  (void)!::read(evfd_.get(), &n, sizeof n);
  std::vector<inventory::DomainEvent> evs;
  {
    std::lock_guard lk(mu_);
    evs.swap(pending_);
  }
  for (const auto& ev : evs) {
    log::info("libvirt event", {{"domain", ev.name},
                                {"uuid", ev.uuid},
                                {"detail", ev.detail},
                                {"kind", inventory::to_string(ev.kind)}});
    if (ev.kind == inventory::DomainEvent::Kind::kConnectionLost) {
      log::warn("libvirt connection lost; enforcement continues, reconnecting",
                {{"uri", o_.libvirt_uri}});
      lv_.reset();
      next_libvirt_try_ = Clock::now() + std::chrono::milliseconds(200);
      continue;
    }
    lv_cache_.mark(ev.uuid);
    dirty_ = true;
  }
}

// Link events the tap thread already acted on (hooks); here they only
// decide whether a reconcile is due.
void Daemon::Impl::on_links() {
  uint64_t n;
  (void)!::read(tap_evfd_.get(), &n, sizeof n);
  std::vector<inventory::LinkEvent> evs;
  bool overrun;
  {
    std::lock_guard lk(link_mu_);
    evs.swap(link_events_);
    overrun = std::exchange(link_overrun_, false);
  }
  if (overrun) {
    log::warn("netlink overrun: events lost, resyncing");
    dirty_ = true;
  }
  // A VM's interface renamed away (its new name may match nothing) or
  // removed is as much a change as a tap appearing.
  for (const auto& ev : evs) {
    bool managed;
    {
      std::lock_guard lk(link_mu_);
      managed = known_ifindexes_.count(ev.ifindex) > 0;
    }
    if (managed || is_tap(ev.ifname, ev.kind_name)) dirty_ = true;
  }
  // An admission (a tap hooked by its MAC, under a name nothing else
  // claims, too) is always followed by a reconcile.
  if (admit_epoch_.load() != applied_epoch_) dirty_ = true;
}

// On the tap thread, right after the hooks: the last apply knows the VM
// this interface is named for (or, prospectively, the stopped domain whose
// config names it), so it gets the endpoint that apply decided at once, a
// few map writes, instead of after a full reconcile (0.2 s with 10,000
// VMs), and never waits behind one still building its desired state. The
// reconcile still follows (the loop sees the link event) and settles the
// rest; admission refuses whenever the live maps are not as that apply left
// them (engine/admit.h). The tap thread never waits for an apply's writes
// either (it hooks the next tap meanwhile): it tries the lock, and tries
// again once the apply is done.
bool Daemon::Impl::admit_link(uint32_t ifindex, Awaiting& aw) {
  if (!progs_) return true;
  // Its admissible: by its name, or (a tap libvirt named itself) by its MAC.
  auto find = [&](const engine::Admissions& adm) -> const engine::Admissible* {
    if (auto it = adm.find(aw.ifname); it != adm.end()) return &it->second;
    if (auto m = engine::link_mac(ifindex))
      if (auto it = adm.find(engine::admission_key(*m)); it != adm.end()) return &it->second;
    return nullptr;
  };
  {
    std::shared_ptr<const engine::Admissions> adm;
    {
      std::lock_guard lk(link_mu_);
      adm = admissions_;
    }
    if (!adm || find(*adm) == nullptr) return false;  // a later apply may name it
  }
  char now_named[IF_NAMESIZE] = {};
  if (if_indextoname(ifindex, now_named) == nullptr || aw.ifname != now_named) return true;
  std::unique_lock writing(write_mu_, std::try_to_lock);
  if (!writing) {
    log::debug("admission waits for an apply's writes", {{"ifname", aw.ifname}});
    return false;
  }
  // Under the write lock: the admissions of the live generation, unless an
  // apply flipped and has not published its own yet (then admit() refuses
  // and the publication tries again).
  std::shared_ptr<const engine::Admissions> adm;
  uint32_t admitted_as = 0;
  {
    std::lock_guard lk(link_mu_);
    adm = admissions_;
    if (auto a = admitted_.find(aw.ifname); a != admitted_.end()) admitted_as = a->second;
  }
  const engine::Admissible* found = find(*adm);
  if (found == nullptr) return false;
  // The index the maps know for it: the apply's, or an admission's since
  // (a tap recreated twice before the reconcile caught up).
  engine::Admissible a = *found;
  if (admitted_as) a.ifindex = admitted_as;
  if (a.ifindex == ifindex) return true;  // the apply enforces it already
  auto t0 = Clock::now();
  auto maps = progs_->maps();
  if (!maps) {
    log::warn("admission: maps", {{"error", maps.error().str()}});
    return true;
  }
  std::string why;
  bool retry = false;
  auto r = engine::admit(*maps, a, ifindex, &why, &retry);
  if (r && *r) {
    ++admit_epoch_;
    ++n_admitted_;
    if (a.prospective) ++n_prospective_;
    std::lock_guard lk(link_mu_);
    admitted_[aw.ifname] = ifindex;
    if (a.prospective) {
      engine::Admissible done = a;
      done.ifindex = ifindex;
      prospective_admitted_[aw.ifname] = std::move(done);
    }
  }
  writing.unlock();
  if (!r) {
    log::warn("admission failed; the reconcile decides",
              {{"ifname", aw.ifname}, {"error", r.error().str()}});
    return false;
  }
  if (!*r) {
    if (why != aw.last_why) {  // once per reason, not on every link change
      // A starting VM's tap before libvirt gave it its MAC: expected.
      log::write(retry ? log::Level::kDebug : log::Level::kInfo,
                 "interface not admitted; the reconcile decides",
                 {{"ifname", aw.ifname}, {"vm", a.vm}, {"why", why}});
      aw.last_why = why;
    }
    return false;
  }
  log::info(a.prospective ? "starting VM's tap admitted: its VM's policy is in force"
                          : "interface admitted: its VM's policy is in force",
            {{"ifname", aw.ifname},
             {"vm", a.vm},
             {"ifindex", std::to_string(ifindex)},
             {"entries_written", std::to_string((*r)->entries_written)},
             {"admit_us", us_since(t0)},
             {"since_seen_us", us_since(aw.appeared)}});
  return true;
}

void Daemon::Impl::publish_admissions(std::shared_ptr<const engine::Admissions> adm) {
  std::set<std::string> names, macs;
  for (const auto& [key, a] : *adm)
    if (a.prospective) (key.find(':') == std::string::npos ? names : macs).insert(key);
  std::map<std::string, uint32_t> admitted;
  {
    // Swapped: the previous generation's (10,000 entries) are freed after
    // the mutex is released, not under it.
    std::lock_guard lk(link_mu_);
    admissions_.swap(adm);
    admitted_.swap(admitted);
    prospective_names_.swap(names);
    prospective_macs_.swap(macs);
  }
  uint64_t one = 1;  // taps waiting for these admissions, or for the write lock
  (void)!::write(tap_retry_.get(), &one, sizeof one);
}

namespace {
// What differs between two admissions of one interface ("" when nothing).
std::string admission_diff(const engine::Admissible& was, const engine::Admissible& now) {
  std::string d;
  auto add = [&](const char* what) { d += (d.empty() ? "" : ",") + std::string(what); };
  if (was.vm != now.vm) add("vm");
  if (was.value.zone != now.value.zone) add("zone");
  if (was.value.id != now.value.id) add("counter slot");
  if (was.value.flags != now.value.flags) add("flags");
  if (std::memcmp(was.value.mac, now.value.mac, sizeof was.value.mac) != 0) add("mac");
  if (std::memcmp(&was.value, &now.value, sizeof was.value) != 0 && d.empty()) add("endpoint");
  auto same = [](const std::vector<zw_addr_key>& x, const std::vector<zw_addr_key>& y) {
    return x.size() == y.size() &&
           std::equal(x.begin(), x.end(), y.begin(), [](const auto& a, const auto& b) {
             return std::memcmp(&a, &b, sizeof a) == 0;
           });
  };
  if (!same(was.own, now.own)) add("addresses");
  if (!same(was.allowed, now.allowed)) add("allowed addresses");
  return d;
}
}  // namespace

void Daemon::Impl::check_prospective(const std::map<std::string, engine::Admissible>& admitted,
                                     const engine::Admissions& now) {
  for (const auto& [name, was] : admitted) {
    char cur[IF_NAMESIZE] = {};
    if (if_indextoname(was.ifindex, cur) == nullptr || name != cur) continue;  // gone with it
    auto it = now.find(name);
    if (it == now.end() || it->second.prospective || it->second.ifindex != was.ifindex) {
      ++n_withdrawn_;
      log::warn(
          "a starting VM's admitted tap was taken back: libvirt does not report its VM "
          "running on it; it drops everything until the reconcile that does",
          {{"ifname", name}, {"vm", was.vm}, {"ifindex", std::to_string(was.ifindex)}});
      continue;
    }
    std::string diff = admission_diff(was, it->second);
    if (diff.empty()) {
      ++n_confirmed_;
      log::info("a starting VM's admission is what its live definition gives it",
                {{"ifname", name}, {"vm", was.vm}});
    } else {
      ++n_corrected_;
      log::warn(
          "a starting VM's admission differed from what the reconcile decided (its live "
          "definition or the policy changed since the apply that computed it); corrected",
          {{"ifname", name}, {"vm", was.vm}, {"vm_now", it->second.vm}, {"differs", diff}});
    }
  }
}

void Daemon::Impl::on_signal() {
  signalfd_siginfo si{};
  while (::read(sigfd_.get(), &si, sizeof si) == sizeof si) {
    if (si.ssi_signo == SIGHUP) lv_cache_.mark_all();  // a reload reads everything again
    if (si.ssi_signo == SIGHUP && cluster_) {
      dirty_ = true;  // the policy is the store's; re-read the inventory
    } else if (si.ssi_signo == SIGHUP) {
      static_inv_.reset();
      if (auto st = load_policy(o_.policy_path); !st)
        log::error("reload: policy invalid, keeping the enforced one",
                   {{"error", st.error().str()}});
      else
        dirty_ = true;
    } else {
      log::info("stopping; enforcement stays in place", {{"signal", std::to_string(si.ssi_signo)}});
      stop_ = true;
    }
  }
}

// Read-only requests answer from the pins and state the daemon can read
// (an unprivileged caller cannot); state changes go through handle_apply.
json Daemon::Impl::handle(const json& req) {
  std::string cmd = request_cmd(req);
  if (cmd == "ping") return {{"ok", true}, {"pid", ::getpid()}};
  if (cmd == "status" || cmd == "stats") {
    auto r = cmd == "status" ? engine::status(o_.paths) : engine::stats(o_.paths);
    if (!r) return {{"ok", false}, {"exit", 1}, {"errors", {r.error().str()}}};
    if (cluster_ && cmd == "status") (*r)["cluster"] = cluster_->status();
    return {{"ok", true}, {"result", *r}};
  }
  if (cmd == "flows") return handle_flows(req);
  if (cmd == "apply" || cmd == "reload") return handle_apply(req);
  return {{"ok", false}, {"exit", 2}, {"errors", {"unknown command '" + cmd + "'"}}};
}

json Daemon::Impl::handle_apply(const json& req) {
  std::string cmd = request_cmd(req);
  if (cluster_ && cmd == "apply")
    return {{"ok", false},
            {"exit", 3},
            {"errors",
             {"this daemon is in cluster mode: its policy is the cluster's; use `zonewall apply "
              "--cluster ENDPOINTS POLICY`"}}};
  if (cluster_) {  // reload: the inventory again, the same policy
    auto rep = reconcile("control request", true);
    if (!rep) return {{"ok", false}, {"exit", 1}, {"errors", {rep.error().str()}}};
    return {{"ok", true},
            {"via", "daemon"},
            {"warnings", rep->has_value() ? (*rep)->warnings : std::vector<std::string>{}}};
  }
  std::optional<policy::Policy> old = policy_;
  std::string old_path = o_.policy_path, old_inv = o_.inventory_path;
  std::string path = o_.policy_path;
  if (cmd == "apply") {
    if (!req.contains("policy") || !req["policy"].is_string())
      return {{"ok", false}, {"exit", 2}, {"errors", {"apply: request names no policy"}}};
    path = req["policy"].get<std::string>();
  }
  if (auto st = load_policy(path); !st) {
    int exit = st.error().kind() == ErrorKind::kBusy ? 4 : 3;  // busy: a directory being written
    return {{"ok", false}, {"exit", exit}, {"errors", {st.error().str()}}};
  }
  if (req.contains("inventory") && req["inventory"].is_string())
    o_.inventory_path = req["inventory"];
  auto rep = reconcile("control request", true);
  if (!rep) {
    policy_ = std::move(old);
    o_.policy_path = old_path;
    o_.inventory_path = old_inv;
    int exit = rep.error().kind() == ErrorKind::kInvalid ? 3 : 1;
    return {{"ok", false}, {"exit", exit}, {"errors", {rep.error().str()}}};
  }
  dirty_ = false;
  const engine::ApplyReport& r = **rep;
  return {{"ok", true},
          {"generation", r.generation},
          {"previous_generation", r.previous_generation},
          {"policy_entries", r.policy_entries},
          {"endpoints", r.endpoints},
          {"attached", r.attached},
          {"detached", r.detached},
          {"entries_written", r.entries_written},
          {"entries_deleted", r.entries_deleted},
          {"warnings", r.warnings},
          {"via", "daemon"}};
}

void Daemon::Impl::on_control() {
  for (;;) {
    UniqueFd c(::accept4(ctl_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c) return;
    auto peer = peer_of(c.get());
    auto req = read_request(c.get());
    json resp;
    if (!peer) {
      resp = {{"ok", false}, {"exit", 1}, {"errors", {peer.error().str()}}};
    } else if (!req) {
      resp = {{"ok", false}, {"exit", 2}, {"errors", {req.error().str()}}};
    } else {
      std::string cmd = request_cmd(*req);
      if (!req->is_object() || cmd.empty()) {
        resp = {{"ok", false}, {"exit", 2}, {"errors", {"bad request: expected {\"cmd\": ...}"}}};
      } else if (auto why = refusal(o_.access, *peer, cmd)) {
        log::warn(
            "control request refused",
            {{"cmd", cmd}, {"uid", std::to_string(peer->uid)}, {"pid", std::to_string(peer->pid)}});
        resp = {{"ok", false}, {"exit", kExitDenied}, {"errors", {*why}}};
      } else {
        resp = handle(*req);
        if (flows_ && resp.value("follow", false)) {  // `flows --follow`: keep streaming
          if (write_response(c.get(), resp)) flows_->follow(std::move(c));
          continue;
        }
      }
    }
    (void)write_response(c.get(), resp);
  }
}

// systemd's readiness protocol (Type=notify): one datagram to
// $NOTIFY_SOCKET. No-op when not started by systemd.
static void notify_ready() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || *path == '\0' || std::strlen(path) >= sizeof(sockaddr_un::sun_path))
    return;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path, std::strlen(path));
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return;
  const char msg[] = "READY=1";
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + std::strlen(path));
  if (::sendto(fd.get(), msg, sizeof msg - 1, 0, reinterpret_cast<sockaddr*>(&sa), len) < 0)
    log::warn("sd_notify READY=1 failed", {{"errno", std::to_string(errno)}});
}

Status Daemon::Impl::start_observability() {
  auto maps = progs_->maps();
  if (!maps) return fail(std::move(maps.error()));
  if (o_.event_rate || o_.event_burst) {
    auto cfg = dp::ConfigView::map(maps->config.get());
    if (!cfg) return fail(std::move(cfg.error()));
    cfg->set_event_rate(o_.event_rate, o_.event_burst);
  }
  flows_ = std::make_unique<engine::FlowCollector>(engine::FlowCollector::Options{
      .paths = o_.paths, .keep = o_.flows_kept, .flow_log = o_.flow_log});
  if (auto st = flows_->start(maps->events.get()); !st) return st;
  if (o_.bpf_stats) {
    auto fd = dp::enable_run_time_stats();
    if (!fd)
      log::warn("BPF run-time statistics unavailable; datapath CPU cost not measured",
                {{"error", fd.error().str()}});
    else
      bpf_stats_ = std::move(*fd);
  }
  if (!o_.metrics_listen.empty()) {
    auto m = MetricsServer::start(o_.metrics_listen, [this]() -> Result<std::string> {
      auto st = engine::stats(o_.paths);
      if (!st) return fail(std::move(st.error()));
      auto status = engine::status(o_.paths);
      if (!status) return fail(std::move(status.error()));
      ApplyInfo info;
      {
        std::lock_guard lk(apply_mu_);
        info = apply_info_;
      }
      return render_metrics(*st, *status, info);
    });
    if (!m) return fail(std::move(m.error()));
    metrics_ = std::move(*m);
    log::info("metrics served",
              {{"listen", o_.metrics_listen}, {"port", std::to_string(metrics_->port())}});
  }
  return {};
}

// {"cmd": "flows", "limit": N, "follow": bool}: the recent events; with
// follow the connection then streams every later event.
json Daemon::Impl::handle_flows(const json& req) {
  size_t limit = o_.flows_kept;
  if (req.contains("limit") && req["limit"].is_number_unsigned())
    limit = req["limit"].get<size_t>();
  json events = json::array();
  for (auto& e : flows_->recent(limit)) events.push_back(std::move(e));
  return {{"ok", true}, {"events", events}, {"follow", req.value("follow", false)}};
}

int Daemon::Impl::run() {
  if (auto st = start(); !st) {
    log::error("daemon cannot start", {{"error", st.error().str()}});
    return st.error().kind() == ErrorKind::kInvalid ? 3
           : st.error().kind() == ErrorKind::kBusy  ? 4
                                                    : 1;
  }
  // Ready only once programs are loaded, the tap thread hooks new taps and
  // the first reconcile has run: the unit is ordered before libvirtd with
  // Type=notify, so no autostarted VM's tap can come up unfiltered.
  step(0);
  notify_ready();
  log::info("daemon running", {{"pin_dir", o_.paths.pin_dir},
                               {"policy", o_.policy_path},
                               {"libvirt", o_.libvirt_uri},
                               {"inventory", o_.inventory_path}});
  while (step(o_.libvirt_uri.empty() || lv_ ? 1000 : 200)) {
  }
  ::unlink(control_socket_path(o_.paths.state_dir).c_str());
  return 0;
}

void Daemon::Impl::sweep() {
  if (!progs_) return;
  auto maps = progs_->maps();
  if (!maps) return;
  auto t0 = Clock::now();
  auto r = engine::sweep_conntrack(*maps);
  if (!r) {
    log::warn("conntrack sweep failed", {{"error", r.error().str()}});
    return;
  }
  if (r->expired)
    log::info(
        "conntrack sweep",
        {{"scanned", std::to_string(r->scanned)},
         {"expired", std::to_string(r->expired)},
         {"ms",
          std::to_string(
              std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count())}});
}

bool Daemon::Impl::step(int timeout_ms) {
  {
    auto now = Clock::now();
    if (!o_.libvirt_uri.empty() && !lv_ && now >= next_libvirt_try_) connect_libvirt();
    if (now >= next_resync_) {
      dirty_ = true;
      static_inv_.reset();  // read it again whatever its times say
      lv_cache_.mark_all();
      next_resync_ = now + std::chrono::seconds(o_.resync_seconds);
      sweep();
    } else if (awaiting_lease_ && now >= next_lease_look_) {
      dirty_ = true;
      for (const auto& uuid : lease_waiters_) lv_cache_.mark(uuid);
    }
    if (awaiting_lease_ && now >= next_lease_look_) next_lease_look_ = now + kLeasePoll;
    if (dirty_ && policy_ && (o_.libvirt_uri.empty() || lv_) && (!cluster_ || cluster_->synced())) {
      dirty_ = false;
      if (auto r = reconcile("change"); !r)
        log::error("reconcile failed", {{"error", r.error().str()}});
    }
    pollfd fds[6] = {{sigfd_.get(), POLLIN, 0},
                     {evfd_.get(), POLLIN, 0},
                     {tap_evfd_.get(), POLLIN, 0},
                     {ctl_.get(), POLLIN, 0},
                     {cluster_ ? cluster_->watch_fd() : -1, POLLIN, 0},
                     {cluster_ ? cluster_->publisher_fd() : -1, POLLIN, 0}};
    int n = ::poll(fds, 6, timeout_ms);
    if (n < 0 && errno != EINTR) {
      log::error("poll failed", {{"errno", std::to_string(errno)}});
      stop_ = true;
      return false;
    }
    if (fds[0].revents) on_signal();
    if (fds[2].revents) on_links();
    if (fds[1].revents) on_libvirt_events();
    if (fds[4].revents) on_cluster_watch();
    if (fds[5].revents) cluster_->on_publisher();
    if (fds[3].revents) on_control();
    if (cluster_ && metrics_) {  // the metrics thread renders this copy, never the Member
      auto cs = cluster_->status();
      std::lock_guard lk(apply_mu_);
      apply_info_.cluster = std::move(cs);
    }
  }
  return !stop_;
}

Daemon::Daemon(Options o) : impl_(std::make_unique<Impl>(std::move(o))) {}
Daemon::~Daemon() = default;
Status Daemon::start() { return impl_->start(); }
bool Daemon::step(int timeout_ms) { return impl_->step(timeout_ms); }
uint64_t Daemon::applies() const { return impl_->applies_; }
Daemon::Counters Daemon::counters() const {
  Counters c;
  c.applies = impl_->applies_;
  c.admitted = impl_->n_admitted_;
  c.admitted_prospective = impl_->n_prospective_;
  c.confirmed = impl_->n_confirmed_;
  c.corrected = impl_->n_corrected_;
  c.withdrawn = impl_->n_withdrawn_;
  c.libvirt_full_reads = impl_->n_lv_full_;
  c.libvirt_domains_reread = impl_->n_lv_domains_;
  std::lock_guard lk(impl_->apply_mu_);
  c.last_written = impl_->last_written_;
  return c;
}

int run(const Options& o) { return Daemon::Impl(o).run(); }

}  // namespace zw::daemon
