// `zonewall daemon`: keeps the policy on every VM interface as VMs come and
// go. Inputs (libvirt domain events, netlink link events, SIGHUP, control
// requests, a periodic resync) all end in the one reconcile path
// (engine::apply). A new tap matching the tap patterns is hooked the moment
// netlink reports it, before its VM is known: it drops everything (no
// endpoint: fail closed) until the reconcile that follows writes its
// endpoint, so a guest's first packet is never unfiltered.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "daemon/control.h"
#include "engine/state.h"
#include "util/result.h"

namespace zw::daemon {

struct Options {
  engine::Paths paths;
  std::string policy_path;
  std::string libvirt_uri;     // empty: no libvirt (static inventory only)
  std::string inventory_path;  // static inventory: veth workloads, or overrides
  std::string default_attach = "tc";
  std::vector<config::AttachRule> attach_rules;       // by glob / device kind, before the default
  std::vector<std::string> tap_patterns = {"vnet*"};  // fnmatch(3)
  int resync_seconds = 30;                            // full reconcile even without events
  bool libvirt_lease_addrs = true;
  Access access;  // control socket: who may read, who may apply
  // Observability: the daemon is the event ring buffer's reader.
  std::string metrics_listen;  // ADDRESS:PORT for Prometheus, "" = off
  std::string flow_log;        // append events as JSON lines, "" = off
  uint32_t event_rate = 0;     // events/s per VM interface, 0 = datapath default
  uint32_t event_burst = 0;    // bucket depth, 0 = datapath default
  bool bpf_stats = true;       // keep the kernel's BPF run-time statistics on
  size_t flows_kept = 1000;    // recent events served to `zonewall flows`
  // Cluster mode (docs/cluster.md): the policy and the other hosts' VMs
  // come from etcd; this host's VMs are published there. Off when no
  // endpoints are given.
  struct Cluster {
    std::vector<std::string> endpoints;
    std::string host;
    std::string prefix = "/zonewall";
    int lease_ttl = 10;
  } cluster;
};

class Daemon {
 public:
  explicit Daemon(Options o);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Takes the pin-dir lock, loads policy and programs, opens netlink, the
  // control socket and libvirt (retried later if unreachable).
  Status start();
  // One iteration: reconcile if something changed, then wait up to
  // timeout_ms for input and handle it. False once a stop was requested.
  bool step(int timeout_ms);
  // How many reconciles actually wrote a generation (tests watch it).
  uint64_t applies() const;
  // What the tap thread and the reconciles did (tests and the benchmark
  // read them, from any thread).
  struct Counters {
    uint64_t applies = 0;
    uint64_t admitted = 0;              // interfaces admitted (engine/admit.h), of which
    uint64_t admitted_prospective = 0;  // ... taps of starting libvirt VMs
    uint64_t confirmed = 0;             // prospective admissions the next apply found exactly right
    uint64_t corrected = 0;             // ... that it had to change (the live definition differs)
    uint64_t withdrawn = 0;             // ... whose interface it took back (its domain not running)
    // libvirt reads of the reconciles: every domain (connect, resync,
    // SIGHUP, control request), or only the domains events named.
    uint64_t libvirt_full_reads = 0;
    uint64_t libvirt_domains_reread = 0;  // domains read one by one, in all
    // Map entries the last apply wrote, per map (zw_endpoints, zw_addrs, ...).
    std::map<std::string, size_t> last_written;
  };
  Counters counters() const;

  struct Impl;  // opaque; public so run() can drive it

 private:
  std::unique_ptr<Impl> impl_;
};

// Runs until SIGTERM/SIGINT; returns the process exit status. Leaves the
// datapath enforcing when it exits (pins, links and filters stay).
int run(const Options& o);

}  // namespace zw::daemon
