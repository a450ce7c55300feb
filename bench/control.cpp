// Control-plane benchmarks.
//   apply-time   check, compile and apply a generated policy in process,
//                phase by phase, with peak RSS and the map entries each
//                apply writes (every libbpf update/delete call the control
//                plane makes, counted by interposition); then the
//                applies after one rule and one VM changed
//   tap-latency  the real `zonewall daemon` (static inventory, tap pattern)
//                in a private netns: time from a new VM interface appearing
//                to its hook (fail-closed) and to its endpoint in the live
//                generation (enforced by zone)
//   start-latency  a libvirt VM that starts: the daemon's code in process on
//                libvirt's test driver (test:///default, shared with the
//                bench), every VM a domain, the trial VMs stopped; per trial
//                the bench starts one (virDomainCreate: STARTED at once) and
//                makes its tap as libvirtd does (ioctls: created, fe: MAC,
//                up), then times the hook, the endpoint in the live
//                generation, and the reconcile that follows
#include <dlfcn.h>
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <thread>

#include "common.h"
#include "daemon/daemon.h"
#include "datapath/attach.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "engine/desired.h"
#include "engine/reconcile.h"
#include "gen.h"
#include "inventory/libvirt.h"
#include "inventory/static_json.h"
#include "inventory/zones.h"
#include "libvirt_tap.h"
#include "policy/compile.h"
#include "policy/json.h"
#include "util/log.h"

namespace zw::bench {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

long peak_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  return static_cast<bool>(f);
}

// Map writes of the control plane: zw_bench defines libbpf's element
// update/delete functions itself, so the calls zonewall_core (linked into
// this executable) makes resolve here; each is counted and forwarded to
// libbpf. (Kernel-side counting with kprobes/fentry is not permitted on
// this machine.)
struct WriteCounter {
  uint64_t updates() const { return g_updates; }
  uint64_t deletes() const { return g_deletes; }
  static inline uint64_t g_updates = 0, g_deletes = 0;
};

// Options both subcommands share, then a private network namespace with
// loopback up and the generated policy and inventory written under dir.
struct Setup {
  GenSpec spec;
  std::string pin_dir, dir, policy, inventory;
};

void add_setup_options(CLI::App& app, Setup& x) {
  app.add_option("--zones", x.spec.zones)->capture_default_str();
  app.add_option("--vms", x.spec.vms)->capture_default_str();
  app.add_option("--rules", x.spec.rules)->capture_default_str();
  app.add_option("--pin-dir", x.pin_dir)->required();
  app.add_option("--dir", x.dir, "where the generated files go")->required();
}

bool enter_netns_and_write(Setup& x, const std::string& ifname, const std::string& name) {
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET)");
    return false;
  }
  sh("ip link set lo up");
  x.spec.real = {{0, ifname}};
  x.policy = x.dir + "/" + name + ".policy.json";
  x.inventory = x.dir + "/" + name + ".inventory.json";
  if (!write_file(x.policy, policy_json(x.spec)) ||
      !write_file(x.inventory, inventory_json(x.spec))) {
    std::fprintf(stderr, "%s: cannot write into %s\n", name.c_str(), x.dir.c_str());
    return false;
  }
  return true;
}

int apply_time(int argc, char** argv) {
  CLI::App app{"control plane: check, compile, apply"};
  Setup x;
  GenSpec& s = x.spec;
  s.zones = 1000;
  s.vms = 4000;
  s.rules = 10000;
  add_setup_options(app, x);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!enter_netns_and_write(x, "zwbA", "apply")) return 1;
  sh("ip link add zwbA type veth peer name zwbAp && ip link set zwbA up");
  const std::string &pol = x.policy, &inv = x.inventory, &pin_dir = x.pin_dir;
  datapath::install_libbpf_logger();
  WriteCounter wc;
  auto row = [&](const char* phase, double ms, const std::string& note) {
    std::printf("control\t%d\t%d\t%d\t%s\t%.1f\t%ld\t%s\n", s.zones, s.vms, s.rules, phase, ms,
                peak_rss_kb(), note.c_str());
    std::fflush(stdout);
  };
  std::printf("control\tzones\tvms\trules\tphase\tms\tpeak_rss_kb\tnote\n");

  auto t = Clock::now();
  auto p = policy::load(pol);
  if (!p) {
    std::fprintf(stderr, "apply-time: %s\n", p.error().str().c_str());
    return 1;
  }
  row("parse+validate policy", ms_since(t), std::to_string(p->rules.size()) + " rules");
  t = Clock::now();
  auto in = inventory::load_static(inv);
  if (!in) {
    std::fprintf(stderr, "apply-time: %s\n", in.error().str().c_str());
    return 1;
  }
  auto assigned = inventory::assign_zones(*p, *in);
  if (!assigned) {
    std::fprintf(stderr, "apply-time: %s\n", assigned.error().str().c_str());
    return 1;
  }
  row("load inventory+assign zones", ms_since(t),
      std::to_string(assigned->size()) + " VM interfaces");
  t = Clock::now();
  auto ids = policy::assign_zone_ids(*p);
  auto rids = policy::assign_rule_ids(*p);
  if (!rids) return 1;
  ids.rule = *rids;
  auto compiled = policy::compile(*p, ids);
  if (!compiled) {
    std::fprintf(stderr, "apply-time: %s\n", compiled.error().str().c_str());
    return 1;
  }
  row("compile", ms_since(t), std::to_string(compiled->entries.size()) + " policy entries");

  engine::Paths paths = engine::make_paths(pin_dir);
  if (auto st = datapath::ensure_bpffs(pin_dir); !st) return 1;
  int rc = 0;
  auto input = [&](const policy::Policy& pp, const inventory::Inventory& ii) {
    return engine::ApplyInput{.policy = &pp,
                              .inventory = &ii,
                              .policy_source = pol,
                              .inventory_source = inv,
                              .default_attach = "tc",
                              .keep_hooked = {}};
  };
  auto phases_of = [](const engine::ApplyReport& rep) {
    std::string phases;
    for (const auto& [name, pms] : rep.phases)
      phases += (phases.empty() ? "" : " ") + name + " " + std::to_string(static_cast<int>(pms));
    return phases;
  };
  auto do_apply = [&](const char* phase, const policy::Policy& pp, const inventory::Inventory& ii,
                      const datapath::Object* programs) {
    auto lock = engine::PinLock::acquire(paths.pin_dir);
    if (!lock) return false;
    uint64_t u0 = wc.updates(), d0 = wc.deletes();
    auto t0 = Clock::now();
    engine::ApplyInput ai = input(pp, ii);
    ai.programs = programs;
    auto rep = engine::apply(paths, ai);
    double ms = ms_since(t0);
    if (!rep) {
      std::fprintf(stderr, "apply-time: %s: %s\n", phase, rep.error().str().c_str());
      rc = 1;
      return false;
    }
    row(phase, ms,
        "generation " + std::to_string(rep->generation) + "; map entries written " +
            std::to_string(wc.updates() - u0) + ", deleted " + std::to_string(wc.deletes() - d0) +
            " (engine reports " + std::to_string(rep->entries_written) + "/" +
            std::to_string(rep->entries_deleted) + "; policy entries " +
            std::to_string(rep->policy_entries) + ", endpoints " + std::to_string(rep->endpoints) +
            "; ms: " + phases_of(*rep) + ")");
    return true;
  };
  auto end_to_end = [&] {
    // `zonewall apply` end to end, from the JSON files to the flip of a
    // first generation: parse the policy, take the lock, start loading the
    // programs, read the inventory and build the desired state while they
    // load, write, attach, flip. Then undone, for the rows below.
    auto t0 = Clock::now();
    auto pp = policy::load(pol);
    auto lock = engine::PinLock::acquire(paths.pin_dir);
    if (!pp || !lock) return false;
    auto programs = engine::ProgramLoad::start(paths);
    auto ii = inventory::load_static(inv);
    if (!ii) return false;
    engine::ApplyInput ai = input(*pp, *ii);
    ai.preload = programs.get();
    auto rep = engine::apply(paths, ai);
    double ms = ms_since(t0);
    if (!rep) {
      std::fprintf(stderr, "apply-time: end to end: %s\n", rep.error().str().c_str());
      return false;
    }
    row("end to end as the CLI: files to flip, first (programs load alongside)", ms,
        "generation " + std::to_string(rep->generation) + "; apply ms: " + phases_of(*rep));
    programs.reset();
    return engine::down(paths).has_value();
  };
  if (!end_to_end()) {
    rc = 1;
    goto out;
  }
  // The CLI's apply: loads a new program instance (verifier) every time.
  if (!do_apply("apply (new programs, first)", *p, *in, nullptr)) goto out;
  {
    // The daemon's apply: programs loaded once, reused.
    auto obj = datapath::Object::load(paths.pin_dir);
    if (!obj) {
      rc = 1;
      goto out;
    }
    if (!do_apply("re-apply, nothing changed (loaded programs)", *p, *in, &*obj)) goto out;
    policy::Policy p1 = *p;
    p1.rules.front().ports.front().lo += 1;  // one rule: a different port
    p1.rules.front().ports.front().hi += 1;
    if (!do_apply("apply, one rule changed (loaded programs)", p1, *in, &*obj)) goto out;
    inventory::Inventory i1 = *in;
    auto& e = i1.endpoints.back();  // one VM: a different address
    e.addrs.front() = *net::parse_addr("10.200.0.1");
    if (!do_apply("apply, one VM changed (loaded programs)", p1, i1, &*obj)) goto out;
  }
out:
  if (auto lock = engine::PinLock::acquire(paths.pin_dir)) (void)engine::down(paths);
  return rc;
}

int tap_latency(int argc, char** argv) {
  CLI::App app{"new VM interface -> hooked -> enforced, with the real daemon"};
  Setup x;
  GenSpec& s = x.spec;
  s.zones = 10;
  s.vms = 10;
  s.rules = 10;
  std::string zonewall;
  int trials = 10;
  add_setup_options(app, x);
  app.add_option("--trials", trials)->capture_default_str();
  app.add_option("--zonewall", zonewall, "the zonewall binary")->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  const std::string tap = "zwbt0";
  if (!enter_netns_and_write(x, tap, "tap")) return 1;
  const std::string &pol = x.policy, &inv = x.inventory, &pin_dir = x.pin_dir, &dir = x.dir;
  pid_t child = fork();
  if (child == 0) {
    std::string log = dir + "/tap-daemon.log";
    FILE* f = std::fopen(log.c_str(), "w");
    if (f) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    execl(zonewall.c_str(), zonewall.c_str(), "--pin-dir", pin_dir.c_str(), "daemon",
          "--no-libvirt", "--inventory", inv.c_str(), "--policy", pol.c_str(), "--tap-pattern",
          "zwbt*", static_cast<char*>(nullptr));
    _exit(127);
  }
  engine::Paths paths = engine::make_paths(pin_dir);
  int rc = 0;
  std::optional<datapath::Maps> maps;
  std::optional<datapath::ConfigView> cfg;
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {  // the daemon's first apply
    if (auto m = datapath::open_pinned_maps(pin_dir); m) {
      if (auto c = datapath::ConfigView::map(m->config.get()); c && c->active_gen() != 0) {
        maps.emplace(std::move(*m));
        cfg.emplace(std::move(*c));
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // ... and the rest of that reconcile (settle, state): a tap appearing
  // during it is a different measurement (it waits for the next one).
  while (cfg && Clock::now() < deadline) {
    std::ifstream log(dir + "/tap-daemon.log");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    if (text.find("msg=reconciled") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::printf("taplat\tzones\tvms\trules\ttrial\thooked_us\tenforced_us\n");
  if (!cfg) {
    std::fprintf(stderr, "tap-latency: the daemon did not apply within 60 s (see %s)\n",
                 (dir + "/tap-daemon.log").c_str());
    rc = 1;
  }
  for (int i = 0; cfg && i < trials; ++i) {
    if (!sh("ip link add " + tap + " type veth peer name " + tap + "p && ip link set " + tap +
            " up")) {
      rc = 1;
      break;
    }
    auto t0 = Clock::now();  // `ip link add` returned: the interface exists
    uint32_t ifx = if_nametoindex(tap.c_str());
    double hooked = -1, enforced = -1;
    while (ms_since(t0) < 30000 && enforced < 0) {
      if (hooked < 0) {
        auto id = datapath::tc_prog_id(static_cast<int>(ifx), datapath::TcHook::kIngress);
        if (id && *id != 0) hooked = ms_since(t0) * 1000;
      }
      zw_endpoint ep{};
      if (hooked >= 0 &&
          datapath::lookup_endpoint(maps->endpoints.get(), cfg->active_gen(), ifx, &ep))
        enforced = ms_since(t0) * 1000;
      else
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    std::printf("taplat\t%d\t%d\t%d\t%d\t%.0f\t%.0f\n", s.zones, s.vms, s.rules, i, hooked,
                enforced);
    std::fflush(stdout);
    if (enforced < 0) rc = 1;
    sh("ip link del " + tap);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the removal settle
  }
  kill(child, SIGTERM);
  waitpid(child, nullptr, 0);
  if (auto lock = engine::PinLock::acquire(paths.pin_dir)) (void)engine::down(paths);
  return rc;
}

// One domain of the benchmark's libvirt test driver: VM i of the generated
// inventory (name, MAC, addresses in its zonewall metadata, as a QEMU
// domain carries them), its tap named in its config.
std::string start_domain_xml(const GenSpec& s, int i) {
  char uuid[40];
  std::snprintf(uuid, sizeof uuid, "5a17a7e0-0000-4000-8000-%012x", i);
  const std::string mac = vm_mac(i);
  return "<domain type='test'><name>" + vm_name(s, i) + "</name><uuid>" + uuid +
         "</uuid><metadata><zonewall:vm xmlns:zonewall='" + inventory::kMetadataUri +
         "'><zonewall:interface mac='" + mac + "'><zonewall:ip>" + vm_ipv4(i) +
         "</zonewall:ip><zonewall:ip>" + vm_ipv6(i) +
         "</zonewall:ip></zonewall:interface></zonewall:vm></metadata>"
         "<memory>65536</memory><os><type>hvm</type></os><devices>"
         "<interface type='ethernet'><mac address='" +
         mac + "'/><target dev='zwbs" + std::to_string(i) + "'/></interface></devices></domain>";
}

int start_latency(int argc, char** argv) {
  CLI::App app{"a libvirt VM that starts: its tap -> hooked -> enforced, daemon in process"};
  Setup x;
  GenSpec& s = x.spec;
  s.zones = 10;
  s.vms = 10;
  s.rules = 10;
  int trials = 10;
  add_setup_options(app, x);
  app.add_option("--trials", trials)->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (trials < 1) {
    std::fprintf(stderr, "start-latency: --trials must be at least 1\n");
    return 2;
  }
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET)");
    return 1;
  }
  sh("ip link set lo up");
  x.policy = x.dir + "/start.policy.json";
  if (!write_file(x.policy, policy_json(s))) {
    std::fprintf(stderr, "start-latency: cannot write into %s\n", x.dir.c_str());
    return 1;
  }
  // The daemon logs to a file; the table goes to stdout, the bench's own
  // errors to the stderr it was given.
  const std::string log_path = x.dir + "/start-daemon.log";
  int err = dup(2);
  int logfd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (err < 0 || logfd < 0 || dup2(logfd, 2) < 0) {
    std::perror("start-latency: log file");
    return 1;
  }
  ::close(logfd);
  auto say = [&](const std::string& m) { dprintf(err, "start-latency: %s\n", m.c_str()); };
  datapath::install_libbpf_logger();
  if (auto st = inventory::start_event_loop(); !st) {
    say(st.error().str());
    return 1;
  }
  virConnectPtr conn = virConnectOpen("test:///default");
  if (conn == nullptr) {
    say("cannot open test:///default");
    return 1;
  }
  // Every VM a domain; all run but the trial VMs (their taps do not exist:
  // what matters is that libvirt and the daemon know 10,000 VMs).
  // Trial VMs spread over the inventory (each stopped again after its
  // trial, so one may serve several when there are more trials than VMs).
  std::vector<int> trial_vm;
  for (int k = 0; k < trials; ++k)
    trial_vm.push_back(trials <= s.vms ? static_cast<int>((int64_t{k} * s.vms) / trials)
                                       : k % s.vms);
  std::vector<virDomainPtr> doms(s.vms, nullptr);
  auto t_def = Clock::now();
  int running = 0;
  for (int i = 0; i < s.vms; ++i) {
    doms[i] = virDomainDefineXML(conn, start_domain_xml(s, i).c_str());
    if (doms[i] == nullptr) {
      say("cannot define domain " + vm_name(s, i));
      return 1;
    }
    if (std::find(trial_vm.begin(), trial_vm.end(), i) != trial_vm.end()) continue;
    if (virDomainCreate(doms[i]) != 0) {
      say("cannot start domain " + vm_name(s, i));
      return 1;
    }
    ++running;
  }
  say(std::to_string(s.vms) + " domains defined, " + std::to_string(running) + " running, in " +
      std::to_string(static_cast<int>(ms_since(t_def))) + " ms");

  // The other VMs' taps: on a host with running VMs, some interface always
  // has tc hooks. Without one, every trial's first hook would also switch
  // the kernel's ingress/egress static keys on (code patching, an IPI to
  // every CPU: 100+ ms on this VM when a vCPU is not running) and the last
  // tap's removal switch them off again.
  if (!sh("ip link add zwbs-other type veth peer name zwbs-otherp && ip link set zwbs-other up")) {
    say("cannot create zwbs-other");
    return 1;
  }

  daemon::Options o;
  o.paths = engine::make_paths(x.pin_dir);
  o.policy_path = x.policy;
  o.libvirt_uri = "test:///default";
  o.tap_patterns = {"zwbs*"};
  o.resync_seconds = 3600;
  o.libvirt_lease_addrs = false;  // the test driver invents leases
  log::set_level(log::Level::kInfo);
  int rc = 0;
  {
    daemon::Daemon d(o);
    if (auto st = d.start(); !st) {
      say(st.error().str());
      return 1;
    }
    std::atomic<bool> stop{false};
    std::thread loop([&] {
      while (!stop.load() && d.step(50)) {
      }
    });
    auto deadline = Clock::now() + std::chrono::seconds(300);
    while (d.counters().applies == 0 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto maps = datapath::open_pinned_maps(x.pin_dir);
    std::optional<datapath::ConfigView> cfg;
    if (maps)
      if (auto c = datapath::ConfigView::map(maps->config.get()); c) cfg.emplace(std::move(*c));
    if (d.counters().applies == 0 || !cfg) {
      say("the daemon did not apply within 300 s (see " + log_path + ")");
      rc = 1;
    }
    // Quiet: no apply for `ms` (the reconciles a trial causes are over).
    auto settle = [&](int ms) {
      auto last = d.counters().applies;
      auto since = Clock::now();
      auto end = Clock::now() + std::chrono::seconds(120);
      while (Clock::now() < end && ms_since(since) < ms) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (auto n = d.counters().applies; n != last) {
          last = n;
          since = Clock::now();
        }
      }
    };
    std::printf(
        "startlat\tzones\tvms\trules\ttrial\thooked_us\tenforced_us\tmac_to_enforced_us\thow\t"
        "next_apply_ms\tnext_apply_endpoint_writes\tverdict\n");
    for (int k = 0; rc == 0 && k < trials; ++k) {
      settle(500);
      const int j = trial_vm[k];
      const auto before = d.counters();
      // libvirtd: the domain is active (virDomainIsActive) before its tap
      // exists; the test driver also emits STARTED at once, so the loop
      // starts a reconcile now, as the tap's own link event makes it do
      // with libvirtd.
      if (virDomainCreate(doms[j]) != 0) {
        say("cannot start " + vm_name(s, j));
        rc = 1;
        break;
      }
      auto t_start = Clock::now();
      const net::Mac tap_mac = inventory::libvirt_tap_mac(*net::parse_mac(vm_mac(j)));
      const std::string tap_name = "zwbs" + std::to_string(j);
      auto tap = std::make_unique<test::LibvirtTap>(tap_name, &tap_mac);
      if (!tap->ok()) {
        say("cannot create tap " + tap_name);
        rc = 1;
        break;
      }
      const uint32_t ifx = if_nametoindex(tap_name.c_str());
      // Polled every 50 us: the endpoint (a map lookup) on every round, the
      // hook (a netlink query, under the lock the daemon's own tc calls
      // take) every fourth until seen.
      double hooked = -1, enforced = -1;
      for (int round = 0; enforced < 0 && ms_since(tap->created) < 30000; ++round) {
        auto now_us = [&] {
          return std::chrono::duration<double, std::micro>(Clock::now() - tap->created).count();
        };
        zw_endpoint ep{};
        if (datapath::lookup_endpoint(maps->endpoints.get(), cfg->active_gen(), ifx, &ep))
          enforced = now_us();
        if (hooked < 0 && (round % 4 == 0 || enforced >= 0)) {
          auto id = datapath::tc_prog_id(static_cast<int>(ifx), datapath::TcHook::kIngress);
          if (id && *id != 0) hooked = now_us();
        }
        if (enforced < 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      if (hooked > enforced && enforced >= 0) hooked = enforced;  // seen in the same round
      // How it was enforced: by the tap thread as a starting VM's tap, by
      // the tap thread as an interface of a VM libvirt already reported
      // running (a reconcile read it before the tap existed), or by a
      // reconcile that found the tap.
      auto how_of = [&](const daemon::Daemon::Counters& c) {
        return c.admitted_prospective > before.admitted_prospective ? "prospective"
               : c.admitted > before.admitted                       ? "admitted"
                                                                    : "reconcile";
      };
      const std::string how_now = how_of(d.counters());
      // The reconcile that reads the VM running: it judges the admission.
      auto judged = [&](const daemon::Daemon::Counters& c) {
        return c.confirmed + c.corrected + c.withdrawn >
               before.confirmed + before.corrected + before.withdrawn;
      };
      auto end = Clock::now() + std::chrono::seconds(120);
      daemon::Daemon::Counters after = d.counters();
      while (Clock::now() < end) {
        after = d.counters();
        if (how_now == "prospective" ? judged(after) : after.applies > before.applies) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      const double next_apply_ms = ms_since(t_start);
      const char* how = how_of(after);
      const char* verdict = after.confirmed > before.confirmed   ? "confirmed"
                            : after.corrected > before.corrected ? "corrected"
                            : after.withdrawn > before.withdrawn ? "withdrawn"
                                                                 : "-";
      auto w = after.last_written.find("zw_endpoints");
      std::printf(
          "startlat\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%s\t%.1f\t%zu\t%s\n", s.zones, s.vms,
          s.rules, k, hooked, enforced,
          enforced < 0
              ? -1.0
              : enforced -
                    std::chrono::duration<double, std::micro>(tap->mac_set - tap->created).count(),
          how, next_apply_ms, w == after.last_written.end() ? size_t{0} : w->second, verdict);
      std::fflush(stdout);
      if (enforced < 0) rc = 1;
      // Stopped again, its tap gone; the next trial starts once the
      // reconcile that follows has taken the endpoint away.
      virDomainDestroy(doms[j]);
      tap.reset();
      auto gone_by = Clock::now() + std::chrono::seconds(120);
      zw_endpoint_val left{};
      while (Clock::now() < gone_by &&
             datapath::map_lookup(maps->endpoints.get(), zw_endpoint_key{ifx}, &left))
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    settle(500);
    stop = true;
    loop.join();
  }
  for (auto* dom : doms)
    if (dom) {
      virDomainDestroy(dom);
      virDomainUndefine(dom);
      virDomainFree(dom);
    }
  virConnectClose(conn);
  if (auto lock = engine::PinLock::acquire(x.pin_dir))
    (void)engine::down(engine::make_paths(x.pin_dir));
  ::close(err);
  return rc;
}
}  // namespace

int run_control(int argc, char** argv) {
  std::string cmd = argv[1];
  if (cmd == "apply-time") return apply_time(argc - 1, argv + 1);
  if (cmd == "start-latency") return start_latency(argc - 1, argv + 1);
  return tap_latency(argc - 1, argv + 1);
}

}  // namespace zw::bench

namespace {
template <typename F>
F real(const char* name) {
  return reinterpret_cast<F>(dlsym(RTLD_NEXT, name));
}
}  // namespace

extern "C" {

int bpf_map_update_elem(int fd, const void* key, const void* value, __u64 flags) {
  static auto f = real<int (*)(int, const void*, const void*, __u64)>("bpf_map_update_elem");
  ++zw::bench::WriteCounter::g_updates;
  return f(fd, key, value, flags);
}

int bpf_map_delete_elem(int fd, const void* key) {
  static auto f = real<int (*)(int, const void*)>("bpf_map_delete_elem");
  ++zw::bench::WriteCounter::g_deletes;
  return f(fd, key);
}

int bpf_map_update_batch(int fd, const void* keys, const void* values, __u32* count,
                         const struct bpf_map_batch_opts* opts) {
  static auto f =
      real<int (*)(int, const void*, const void*, __u32*, const struct bpf_map_batch_opts*)>(
          "bpf_map_update_batch");
  int r = f(fd, keys, values, count, opts);
  zw::bench::WriteCounter::g_updates += *count;
  return r;
}

int bpf_map_delete_batch(int fd, const void* keys, __u32* count,
                         const struct bpf_map_batch_opts* opts) {
  static auto f = real<int (*)(int, const void*, __u32*, const struct bpf_map_batch_opts*)>(
      "bpf_map_delete_batch");
  int r = f(fd, keys, count, opts);
  zw::bench::WriteCounter::g_deletes += *count;
  return r;
}

}  // extern "C"
