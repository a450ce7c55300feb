// zw_bench cost: per-packet cost of the production programs with
// BPF_PROG_TEST_RUN, maps filled by the real control plane (engine::apply on
// a generated policy and static inventory), against the trivial floor
// programs measured in the same run.
//
// Paths: established (one conntrack hit), denied (policy drop, no insert)
// measured with repeat; new allowed flow measured as many distinct flows
// with repeat = 1, each one's conntrack entry deleted again after its run,
// with the fixed cost of a repeat = 1 run (timer reads, context setup inside
// the timed region) subtracted as measured on the floor program:
//   new = median(zonewall, repeat 1) - median(floor, repeat 1) + floor(repeat N)
// The same correction applied to the established path is printed next to
// its repeat-N figure as a check of the method.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>

#include "common.h"
#include "datapath/events.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "engine/inspect.h"
#include "engine/reconcile.h"
#include "gen.h"
#include "inventory/static_json.h"
#include "policy/json.h"

namespace zw::bench {

namespace {

using datapath::Prog;

struct Config {
  std::string name;
  int rules, ports_per_rule, vms;
};

constexpr int kZones = 10;
constexpr int kFillAddrs = 16;  // VM 0's extra addresses carry the filler flows
constexpr const char* kSrcIf = "zwbS";
constexpr const char* kDstIf = "zwbD";

struct Ctx {
  engine::Paths paths;
  uint32_t repeat = 1000000;
  int samples = 5000;
  int trials = 3;
  const Reference* ref = nullptr;
  uint32_t src_ifindex = 0;
  int filled = 0;  // filler flows inserted so far (this apply)
  size_t policy_entries = 0;
};

uint64_t reason_count(const engine::Paths& p, const char* name) {
  auto st = engine::stats(p);
  if (!st) return 0;
  return (*st)["reasons"][name]["packets"].get<uint64_t>();
}

GenSpec spec_of(const Config& c) {
  GenSpec s;
  s.zones = kZones;
  s.vms = c.vms;
  s.rules = c.rules;
  s.ports_per_rule = c.ports_per_rule;
  s.real = {{0, kSrcIf}, {1, kDstIf}};
  s.src_extra_addrs = kFillAddrs;
  // One VM opens every tracked flow here: lift its conntrack limit to the
  // table's capacity so the fill measures the table, not the limit.
  s.max_flows = ZW_MAX_CT;
  return s;
}

Status apply_config(Ctx& x, const Config& c) {
  if (auto lock = engine::PinLock::acquire(x.paths.pin_dir)) (void)engine::down(x.paths);
  GenSpec s = spec_of(c);
  auto p = policy::parse(policy_json(s), "bench-policy.json");
  if (!p) return fail(std::move(p.error()));
  auto inv = inventory::parse_static(inventory_json(s), "bench-inventory.json");
  if (!inv) return fail(std::move(inv.error()));
  auto lock = engine::PinLock::acquire(x.paths.pin_dir);
  if (!lock) return fail(std::move(lock.error()));
  engine::ApplyInput in{.policy = &*p,
                        .inventory = &*inv,
                        .policy_source = "bench-policy.json",
                        .inventory_source = "bench-inventory.json",
                        .default_attach = "tc",
                        .keep_hooked = {}};
  auto rep = engine::apply(x.paths, in);
  if (!rep) return fail(std::move(rep.error()));
  x.policy_entries = rep->policy_entries;
  x.filled = 0;
  return {};
}

std::string addr(bool v6, int which) {  // which: -1 primary, else extra n
  if (which < 0) return v6 ? vm_ipv6(0) : vm_ipv4(0);
  return v6 ? src_extra_ipv6(which) : src_extra_ipv4(which);
}

test::Bytes frame(bool v6, int which, uint16_t sport, uint16_t dport) {
  return udp_frame(addr(v6, which), v6 ? vm_ipv6(1) : vm_ipv4(1), sport, dport, vm_mac(0));
}

zw_ct_key ct_key_of(bool v6, int which, uint16_t sport, uint16_t dport) {
  zw_ct_key k{};
  auto a = net::parse_addr(addr(v6, which));
  auto b = net::parse_addr(v6 ? vm_ipv6(1) : vm_ipv4(1));
  std::memcpy(k.saddr, a->bytes.data(), 16);
  std::memcpy(k.daddr, b->bytes.data(), 16);
  k.sport = htons(sport);
  k.dport = htons(dport);
  k.proto = 17;
  return k;
}

bool passes(Hook h, uint32_t rv) { return h == Hook::kXdp ? rv == XDP_PASS : rv == TC_ACT_OK; }

// Median over trials of a repeat-N run; every run must give `want_pass`.
Result<double> timed(const Ctx& x, int fd, Hook h, const test::Bytes& f, bool want_pass) {
  std::vector<double> v;
  for (int t = 0; t < x.trials; ++t) {
    auto r = test_run(fd, h, x.src_ifindex, f, x.repeat);
    if (!r) return fail(std::move(r.error()));
    if (passes(h, r->retval) != want_pass)
      return fail(Error::invalid("unexpected verdict " + std::to_string(r->retval)));
    v.push_back(r->ns);
  }
  return median(v);
}

// Inserts filler flows (through the program, as real traffic would) until
// `target` have been inserted since the apply.
Status fill(Ctx& x, int fd, int target) {
  for (; x.filled < target; ++x.filled) {
    int which = x.filled / 64512;
    if (which >= kFillAddrs) return fail(Error::invalid("filler flows exhausted"));
    auto f = frame(x.filled % 2 == 1, which, static_cast<uint16_t>(1024 + (x.filled / 2) % 64512),
                   kAllowedPort);
    auto r = test_run(fd, Hook::kXdp, x.src_ifindex, f, 1);
    if (!r) return fail(std::move(r.error()));
  }
  return {};
}

size_t ct_entries(const Ctx& x) {
  auto m = datapath::open_pinned_maps(x.paths.pin_dir);
  if (!m) return 0;
  auto keys = datapath::map_keys<zw_ct_key>(m->ct.get());
  return keys ? keys->size() : 0;
}

const char* hook_name(Hook h) { return h == Hook::kXdp ? "xdp" : "tc"; }

// One measurement set: established, denied, new; v4 and v6.
Status measure(Ctx& x, const Config& c, Hook h, size_t ct_now) {
  Prog prog = h == Hook::kXdp ? Prog::kFromVmXdp : Prog::kFromVmTc;
  auto zfd = datapath::open_pinned_prog(x.paths.pin_dir, prog);
  if (!zfd) return fail(std::move(zfd.error()));
  int fd = zfd->get();
  int floor_fd = h == Hook::kXdp ? x.ref->xdp_pass() : x.ref->tc_pass();
  for (bool v6 : {false, true}) {
    const char* fam = v6 ? "ipv6" : "ipv4";
    auto out = [&](const char* path, double ns, double floor, const std::string& note) {
      std::printf("cost\t%s\t%d\t%zu\t%d\t%zu\t%s\t%s\t%s\t%.1f\t%.1f\t%.2f\t%s\n", c.name.c_str(),
                  c.rules, x.policy_entries, c.vms, ct_now, hook_name(h), fam, path, ns, floor,
                  floor > 0 ? ns / floor : 0.0, note.c_str());
      std::fflush(stdout);
    };
    auto floor_f = frame(v6, -1, 40000, kAllowedPort);
    auto floor = timed(x, floor_fd, h, floor_f, true);
    if (!floor) return fail(std::move(floor.error()).wrap("floor"));

    // Established: the flow exists after its first packet.
    auto est_f = frame(v6, -1, 40000, kAllowedPort);
    if (auto r = test_run(fd, h, x.src_ifindex, est_f, 1); !r || !passes(h, r->retval))
      return fail(Error::invalid(std::string("first packet of the established flow not passed (") +
                                 fam + ")"));
    uint64_t ct0 = reason_count(x.paths, "pass_ct");
    auto est = timed(x, fd, h, est_f, true);
    if (!est) return fail(std::move(est.error()).wrap("established"));
    uint64_t ct1 = reason_count(x.paths, "pass_ct");
    if (ct1 - ct0 != uint64_t(x.trials) * x.repeat)
      return fail(Error::invalid("established runs were not all counted pass_ct"));

    auto den_f = frame(v6, -1, 40001, kDeniedPort);
    uint64_t d0 = reason_count(x.paths, "drop_policy");
    auto den = timed(x, fd, h, den_f, false);
    if (!den) return fail(std::move(den.error()).wrap("denied"));
    if (reason_count(x.paths, "drop_policy") - d0 != uint64_t(x.trials) * x.repeat)
      return fail(Error::invalid("denied runs were not all counted drop_policy"));

    // New flows, repeat = 1, interleaved with the floor and the established
    // flow at repeat = 1 (same timer overhead in all three).
    auto maps = datapath::open_pinned_maps(x.paths.pin_dir);
    if (!maps) return fail(std::move(maps.error()));
    auto usage = datapath::CtUsageView::map(maps->ct_count.get());
    if (!usage) return fail(std::move(usage.error()));
    std::vector<double> s_new, s_floor, s_est;
    uint64_t n0 = reason_count(x.paths, "pass_new");
    for (int i = 0; i < x.samples; ++i) {
      uint16_t sport = static_cast<uint16_t>(1024 + i % 38000);
      auto f = frame(v6, -1, sport, kAllowedPort);
      auto r = test_run(fd, h, x.src_ifindex, f, 1);
      if (!r) return fail(std::move(r.error()));
      if (!passes(h, r->retval)) return fail(Error::invalid("new flow not passed"));
      s_new.push_back(r->ns);
      // The entry is under the tuple or its reverse (the datapath may key
      // flows canonically, either direction first).
      zw_ct_key key = ct_key_of(v6, -1, sport, kAllowedPort);
      zw_ct_entry e{};
      if (!datapath::map_lookup(maps->ct.get(), key, &e)) {
        zw_ct_key rev{};
        std::memcpy(rev.saddr, key.daddr, 16);
        std::memcpy(rev.daddr, key.saddr, 16);
        rev.sport = key.dport;
        rev.dport = key.sport;
        rev.proto = key.proto;
        key = rev;
        if (!datapath::map_lookup(maps->ct.get(), key, &e))
          return fail(Error::invalid("the new flow's conntrack entry is not where expected"));
      }
      if (auto st = datapath::map_delete(maps->ct.get(), key); !st)
        return fail(std::move(st.error()));
      if (e.flags & ZW_CTF_OWNED) usage->uncharge(e.owner);  // as the sweep does
      auto fl = test_run(floor_fd, h, x.src_ifindex, floor_f, 1);
      auto es = test_run(fd, h, x.src_ifindex, est_f, 1);
      if (!fl || !es) return fail(Error::sys("BPF_PROG_TEST_RUN repeat 1"));
      s_floor.push_back(fl->ns);
      s_est.push_back(es->ns);
    }
    if (reason_count(x.paths, "pass_new") - n0 != uint64_t(x.samples))
      return fail(Error::invalid("new-flow runs were not all counted pass_new"));
    double overhead = median(s_floor) - *floor;
    double nw = median(s_new) - overhead;
    double est_check = median(s_est) - overhead;
    char note[160];
    std::snprintf(note, sizeof note, "repeat=1 check: %.1f ns (median of %d)", est_check,
                  x.samples);
    out("established", *est, *floor, note);
    out("denied", *den, *floor, "");
    std::snprintf(note, sizeof note,
                  "median repeat=1 %.1f ns - fixed run overhead %.1f ns (floor %.1f at repeat=1)",
                  median(s_new), overhead, median(s_floor));
    out("new", nw, *floor, note);
  }
  return {};
}

}  // namespace

int run_cost(int argc, char** argv) {
  CLI::App app{"per-packet cost with BPF_PROG_TEST_RUN"};
  Ctx x;
  std::string mode = "full", pin_dir;
  app.add_option("--mode", mode, "smoke | quick | full")->capture_default_str();
  app.add_option("--repeat", x.repeat, "BPF_PROG_TEST_RUN repeat")->capture_default_str();
  app.add_option("--samples", x.samples, "new flows sampled per measurement")
      ->capture_default_str();
  app.add_option("--pin-dir", pin_dir, "bpffs dir (removed after)")->required();
  std::string only;
  app.add_option("--configs", only, "only these configs (comma-separated names)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (mode == "smoke") x.trials = 1;

  // A private network namespace: the veths standing in for the two VMs'
  // interfaces die with this process.
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET)");
    return 1;
  }
  sh("ip link set lo up");
  sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
  for (const char* n : {kSrcIf, kDstIf})
    if (!sh(std::string("ip link add ") + n + " type veth peer name " + n + "p && ip link set " +
            n + " up && ip link set " + n + "p up")) {
      std::fprintf(stderr, "cost: cannot create veth %s\n", n);
      return 1;
    }
  x.src_ifindex = if_nametoindex(kSrcIf);
  datapath::install_libbpf_logger();
  x.paths = engine::make_paths(pin_dir);
  if (auto st = datapath::ensure_bpffs(pin_dir); !st) {
    std::fprintf(stderr, "cost: %s\n", st.error().str().c_str());
    return 1;
  }
  auto ref = Reference::load();
  if (!ref) {
    std::fprintf(stderr, "cost: %s\n", ref.error().str().c_str());
    return 1;
  }
  x.ref = &*ref;

  std::vector<Config> configs;
  std::vector<int> ct_levels;
  if (mode == "smoke") {
    configs = {{"base", 10, 1, 10}, {"rules-1k", 1000, 1, 10}, {"vms-1k", 10, 1, 1000}};
    ct_levels = {10000};
    x.samples = std::min(x.samples, 1000);
  } else {
    configs = {
        {"base", 10, 1, 10},           {"rules-1k", 1000, 1, 10},       {"rules-10k", 10000, 1, 10},
        {"rules-100k", 100000, 1, 10}, {"entries-100k", 10000, 10, 10}, {"vms-1k", 10, 1, 1000},
        {"vms-10k", 10, 1, 10000},     {"largest", 100000, 1, 10000}};
    ct_levels = {10000, 100000, 1000000};
    if (mode == "quick") x.samples = std::min(x.samples, 3000);
  }
  if (!only.empty())
    std::erase_if(configs, [&](const Config& c) {
      return ("," + only + ",").find("," + c.name + ",") == std::string::npos;
    });
  std::printf(
      "cost\tconfig\trules\tpolicy_entries\tvms\tct_flows\thook\tfamily\tpath\tns\tfloor_"
      "ns\tratio\t"
      "note\n");
  int rc = 0;
  for (const auto& c : configs) {
    Status st = apply_config(x, c);
    auto zfd = st ? datapath::open_pinned_prog(x.paths.pin_dir, Prog::kFromVmXdp)
                  : Result<UniqueFd>(fail(Error::invalid("no apply")));
    if (st && zfd) st = fill(x, zfd->get(), 1000);
    if (st) st = measure(x, c, Hook::kXdp, ct_entries(x));
    if (st) st = measure(x, c, Hook::kTc, ct_entries(x));
    if (st && c.name == "base")
      for (int level : ct_levels) {
        st = fill(x, zfd->get(), level);
        if (!st) break;
        st = measure(x, c, Hook::kXdp, ct_entries(x));
        if (!st) break;
      }
    if (!st) {
      std::fprintf(stderr, "cost: %s: %s\n", c.name.c_str(), st.error().str().c_str());
      rc = 1;
      break;
    }
  }
  if (auto lock = engine::PinLock::acquire(x.paths.pin_dir)) (void)engine::down(x.paths);
  // The kernel counts runs only while someone (a zonewall daemon, bpftool
  // prog profile, the sysctl) has run-time statistics on; then every
  // program, the floor included, also paid for two clock reads per run,
  // which compresses every ratio. Said, not hidden.
  if (auto rs = datapath::prog_run_stats(x.ref->xdp_pass()); rs && rs->run_cnt > 0)
    std::fprintf(stderr,
                 "cost: WARNING: BPF run-time statistics were on during this run (%llu runs of "
                 "the floor program counted): every program paid for the timing, floors are "
                 "inflated and ratios compressed; stop the zonewall daemons and rerun\n",
                 static_cast<unsigned long long>(rs->run_cnt));
  return rc;
}

}  // namespace zw::bench
