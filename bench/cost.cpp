// zw_bench cost: per-packet cost of the production programs with
// BPF_PROG_TEST_RUN, maps filled by the real control plane (engine::apply on
// a generated policy and static inventory), against the trivial floor
// programs measured in the same run.
//
// Paths: established (one conntrack flow) and denied (one denied packet)
// with repeat N. New flows and denied packets without a cached answer need a
// tuple the program has not seen on every run: the varying wrapper
// (bench/trivial.bpf.c) bumps a port of the frame and tail-calls the
// program under test, over runs of 10,000 packets; the same runs with the
// floor program behind the wrapper give the wrapper's own cost:
//   new = ns(wrapper -> zonewall) - ns(wrapper -> floor) + floor
// The flows a run created are deleted after it, outside the timed region.
// Each configuration is measured with several program instances (re-applied:
// same maps, new programs and per-instance caches), one output row each: the
// cost of the cached paths moves by up to ~1.8x from one instance to the
// next on this machine (measured, like code placement effects), so the
// report takes the instances' median.
// Every XDP program measured is attached to an XDP hook of a veth of the
// benchmark's namespace while it is measured (XdpParking, below), as it is
// in production: a test run of an unattached XDP program waits twice for
// an RCU grace period, and that made every XDP run start cold.
#include <arpa/inet.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <linux/if_link.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstring>
#include <array>
#include <functional>
#include <optional>

#include "common.h"
#include "datapath/events.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "engine/inspect.h"
#include "engine/reconcile.h"
#include "gen.h"
#include "inventory/static_json.h"
#include "policy/json.h"
#include "util/clock.h"

namespace zw::bench {

namespace {

using datapath::Prog;

struct Config {
  std::string name;
  int rules, ports_per_rule, vms;
};

constexpr int kZones = 10;
constexpr int kFillAddrs = 16;  // VM 0's extra addresses carry the filler flows
// Denied destination ports for the varying wrapper: above every port a
// generated rule allows (1000 + rules / zones * ports per rule < 20000).
constexpr uint16_t kSweepPortBase = 20000;
constexpr const char* kSrcIf = "zwbS";
constexpr const char* kDstIf = "zwbD";

// BPF_PROG_TEST_RUN with repeat > 1 adds an XDP program to the kernel's XDP
// dispatcher for the run and removes it after (bpf_prog_change_xdp), and
// each change waits for an RCU grace period. The CPU halts meanwhile, and
// on this VM the run after it started cold: XDP cost 1.3-2x what tc did on
// the paths measured in runs of 10,000 packets (new flows 466-589 ns
// against tc's 342 ns), and the gap mostly closed when the CPUs were kept
// out of idle states. A program attached to an XDP hook is in the dispatcher
// already, as it is in production, and the test run changes nothing there.
// So each XDP program is attached to ("parked on") a veth of the
// benchmark's own namespace while it is measured: new flows 322-325 ns,
// tc 342-355 ns (the same runs).
class XdpParking {
 public:
  enum Spot { kFloor, kWrapper, kCtInsert, kZonewall };
  // Attaches prog_fd to spot's veth (created on first use), replacing the
  // program parked there.
  Status park(Spot spot, int prog_fd) {
    const std::string dev = "zwbP" + std::to_string(int(spot));
    unsigned ifindex = if_nametoindex(dev.c_str());
    if (ifindex == 0) {
      if (!sh("ip link add " + dev + " type veth peer name " + dev + "p && ip link set " + dev +
              " up && ip link set " + dev + "p up"))
        return fail(Error::invalid("cannot create the parking veth " + dev));
      ifindex = if_nametoindex(dev.c_str());
    }
    if (int err = bpf_xdp_attach(static_cast<int>(ifindex), prog_fd, XDP_FLAGS_DRV_MODE, nullptr);
        err != 0) {
      errno = -err;
      return fail(Error::sys("park an XDP program on " + dev + ": bpf_xdp_attach"));
    }
    return {};
  }
};

struct Ctx {
  engine::Paths paths;
  XdpParking* parking = nullptr;
  uint32_t repeat = 1000000;
  int trials = 5;
  int instances = 5;               // program instances measured per configuration
  int vary_runs = 100;             // varying-wrapper runs per figure
  uint32_t vary_per_run = 10000;   // packets per run (new flows created per run)
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

// The tracked flows kept alive as their own traffic would keep them (a
// packet refreshes its flow's last_seen): every entry's last_seen set to now
// in place (BPF_EXIST: nothing inserted, the bucket counts stay right).
// Without it the sweep of a re-apply deletes the filler flows that have
// been idle past the UDP timeout (2 min), which a full run outlasts.
Status keep_flows_alive(const Ctx& x) {
  auto m = datapath::open_pinned_maps(x.paths.pin_dir);
  if (!m) return fail(std::move(m.error()));
  auto entries = datapath::map_entries<zw_ct_key, zw_ct_entry>(m->ct.get());
  if (!entries) return fail(std::move(entries.error()));
  // One update per entry: the batch update takes no BPF_EXIST. 10 ms in the
  // past: the datapath's clock is the coarse one, a tick behind, and a
  // last_seen ahead of it would read as long expired.
  const uint64_t now = monotonic_ns() - 10'000'000ULL;
  for (auto& [k, v] : *entries) {
    v.last_seen_ns = now;
    if (bpf_map_update_elem(m->ct.get(), &k, &v, BPF_EXIST) != 0 && errno != ENOENT)
      return fail(Error::sys("keep the tracked flows alive: bpf_map_update_elem"));
  }
  return {};
}

// Applies config c; fresh: from an empty pin dir (else over the last apply,
// as a re-apply of the same policy: a new program instance, same maps).
Status apply_config(Ctx& x, const Config& c, bool fresh) {
  if (fresh)
    if (auto lock = engine::PinLock::acquire(x.paths.pin_dir)) (void)engine::down(x.paths);
  GenSpec s = spec_of(c);
  auto p = policy::parse(policy_json(s), "bench-policy.json");
  if (!p) return fail(std::move(p.error()));
  auto inv = inventory::parse_static(inventory_json(s), "bench-inventory.json");
  if (!inv) return fail(std::move(inv.error()));
  if (!fresh)
    if (auto st = keep_flows_alive(x); !st) return fail(std::move(st.error()));
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
  if (fresh) x.filled = 0;
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

// A repeated path against the floor, trial by trial: a floor run, then the
// path's, each repeat N, `trials` times. This machine has slow phases of a
// few seconds (another tenant on the host) that slow the path more than the
// floor, so each ratio is of two runs a few milliseconds apart; the figure
// is the median of those ratios, with the lowest one (the quietest phase)
// in the note.
struct Paired {
  double ns = 0, floor = 0, ratio = 0, best_ratio = 0;
};
Result<Paired> paired(const Ctx& x, int floor_fd, const test::Bytes& floor_f, int fd, Hook h,
                      const test::Bytes& f, bool want_pass) {
  std::vector<double> ns, fl, ratio;
  for (int t = 0; t < x.trials; ++t) {
    auto a = test_run(floor_fd, h, x.src_ifindex, floor_f, x.repeat);
    auto b = a ? test_run(fd, h, x.src_ifindex, f, x.repeat) : Result<RunOut>(fail(a.error()));
    if (!b) return fail(std::move(b.error()));
    if (passes(h, b->retval) != want_pass)
      return fail(Error::invalid("unexpected verdict " + std::to_string(b->retval)));
    fl.push_back(a->ns);
    ns.push_back(b->ns);
    ratio.push_back(a->ns > 0 ? b->ns / a->ns : 0);
  }
  return Paired{median(ns), median(fl), median(ratio), *std::min_element(ratio.begin(), ratio.end())};
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

// Runs of the varying-tuple wrapper (Reference::vary) in front of `next`:
// `runs` runs of `per_run` packets, each packet a tuple the program has not
// seen (the port after the frame's, then the next, ...). Returns the
// median ns per packet over the runs; `after_run` cleans up between runs
// (the frame is sent afresh each run, so the ports start over).
Result<double> varied(const Ctx& x, Hook h, int next, const test::Bytes& f, bool vary_dport,
                      bool want_pass, const std::function<Status()>& after_run) {
  if (auto st = x.ref->set_next(h, next); !st) return fail(std::move(st.error()));
  x.ref->vary_dport(vary_dport);
  std::vector<double> v;
  for (int r = 0; r < x.vary_runs; ++r) {
    auto out = test_run(x.ref->vary(h), h, x.src_ifindex, f, x.vary_per_run);
    if (!out) return fail(std::move(out.error()));
    if (passes(h, out->retval) != want_pass)
      return fail(Error::invalid("varying run: unexpected verdict " + std::to_string(out->retval)));
    v.push_back(out->ns);
    if (after_run)
      if (auto st = after_run(); !st) return fail(std::move(st.error()));
  }
  return median(v);
}

// One measurement set, v4 and v6, of the program instance applied last
// (inst: its number, in the output): established (one flow, repeat N),
// denied (one denied packet, repeat N), and with the varying wrapper: new
// flows (every packet a new source port), denied packets of new source ports
// (no flow, the denial cache knows the destination), denied packets of new
// destination ports (every one judged in full).
Status measure(Ctx& x, const Config& c, Hook h, size_t ct_now, int inst) {
  Prog prog = h == Hook::kXdp ? Prog::kFromVmXdp : Prog::kFromVmTc;
  auto zfd = datapath::open_pinned_prog(x.paths.pin_dir, prog);
  if (!zfd) return fail(std::move(zfd.error()));
  int fd = zfd->get();
  int floor_fd = h == Hook::kXdp ? x.ref->xdp_pass() : x.ref->tc_pass();
  if (h == Hook::kXdp)
    if (auto st = x.parking->park(XdpParking::kZonewall, fd); !st) return fail(std::move(st.error()));
  auto maps = datapath::open_pinned_maps(x.paths.pin_dir);
  if (!maps) return fail(std::move(maps.error()));
  auto usage = datapath::CtUsageView::map(maps->ct_count.get());
  if (!usage) return fail(std::move(usage.error()));
  auto buckets = datapath::CtBucketsView::map(maps->ct_born.get());
  if (!buckets) return fail(std::move(buckets.error()));
  for (bool v6 : {false, true}) {
    const char* fam = v6 ? "ipv6" : "ipv4";
    // ratio < 0: ns / floor (the paired paths give theirs: the median of
    // their trials' ratios).
    auto out = [&](const char* path, double ns, double floor, const std::string& note,
                   double ratio = -1) {
      if (ratio < 0) ratio = floor > 0 ? ns / floor : 0.0;
      std::printf("cost\t%s\t%d\t%zu\t%d\t%zu\t%s\t%s\t%s\t%.1f\t%.1f\t%.2f\t%s\t%d\n",
                  c.name.c_str(), c.rules, x.policy_entries, c.vms, ct_now, hook_name(h), fam, path,
                  ns, floor, ratio, note.c_str(), inst);
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
    auto est = paired(x, floor_fd, floor_f, fd, h, est_f, true);
    if (!est) return fail(std::move(est.error()).wrap("established"));
    uint64_t ct1 = reason_count(x.paths, "pass_ct");
    if (ct1 - ct0 != uint64_t(x.trials) * x.repeat)
      return fail(Error::invalid("established runs were not all counted pass_ct"));

    auto den_f = frame(v6, -1, 40001, kDeniedPort);
    uint64_t d0 = reason_count(x.paths, "drop_policy");
    auto den = paired(x, floor_fd, floor_f, fd, h, den_f, false);
    if (!den) return fail(std::move(den.error()).wrap("denied"));
    if (reason_count(x.paths, "drop_policy") - d0 != uint64_t(x.trials) * x.repeat)
      return fail(Error::invalid("denied runs were not all counted drop_policy"));

    // The wrapper's own cost: the same runs with the floor program behind it.
    const uint64_t varied_pkts = uint64_t(x.vary_runs) * x.vary_per_run;
    auto wrap = varied(x, h, floor_fd, floor_f, false, true, nullptr);
    if (!wrap) return fail(std::move(wrap.error()).wrap("wrapper floor"));
    auto minus_wrap = [&](double ns) { return ns - *wrap + *floor; };
    char note[200];

    // New flows: source ports 10001.. each run; the flows a run created
    // are deleted after it (and uncharged, as the sweep does), so the table
    // holds ct_now flows at the start of every run.
    constexpr uint16_t kNewBase = 10000;
    auto new_f = frame(v6, -1, kNewBase, kAllowedPort);
    auto delete_run = [&]() -> Status {
      std::vector<zw_ct_key> keys;
      keys.reserve(x.vary_per_run);
      zw_ct_entry e{};
      bool reversed = false;
      zw_ct_key first = ct_key_of(v6, -1, kNewBase + 1, kAllowedPort);
      if (!datapath::map_lookup(maps->ct.get(), first, &e)) reversed = true;
      for (uint32_t i = 1; i <= x.vary_per_run; ++i) {
        zw_ct_key k = ct_key_of(v6, -1, static_cast<uint16_t>(kNewBase + i), kAllowedPort);
        if (reversed) {
          zw_ct_key r{};
          std::memcpy(r.saddr, k.daddr, 16);
          std::memcpy(r.daddr, k.saddr, 16);
          r.sport = k.dport;
          r.dport = k.sport;
          r.proto = k.proto;
          k = r;
        }
        keys.push_back(k);
      }
      if (!datapath::map_lookup(maps->ct.get(), keys.front(), &e))
        return fail(Error::invalid("the new flows' conntrack entries are not where expected"));
      if (auto st = datapath::map_delete_many(maps->ct.get(), keys); !st)
        return fail(std::move(st.error()));
      // As the sweep (datapath::ct_forget), in one batch: every key went.
      for (const auto& k : keys) {
        buckets->released(k);
        if (e.flags & ZW_CTF_OWNED) usage->uncharge(e.owner);
      }
      return {};
    };
    uint64_t n0 = reason_count(x.paths, "pass_new");
    auto nw = varied(x, h, fd, new_f, false, true, delete_run);
    if (!nw) return fail(std::move(nw.error()).wrap("new flows"));
    if (reason_count(x.paths, "pass_new") - n0 != varied_pkts)
      return fail(Error::invalid("new-flow runs were not all counted pass_new"));

    // Denied, a new source port each packet: no flow; the denial cache
    // (keyed by addresses, protocol and destination port) answers.
    auto dsp_f = frame(v6, -1, kNewBase, kDeniedPort);
    d0 = reason_count(x.paths, "drop_policy");
    auto dsp = varied(x, h, fd, dsp_f, false, false, nullptr);
    if (!dsp) return fail(std::move(dsp.error()).wrap("denied, new source ports"));
    // Denied, a new destination port each packet (20001..): judged in full.
    auto ddp_f = frame(v6, -1, 40002, kSweepPortBase);
    auto ddp = varied(x, h, fd, ddp_f, true, false, nullptr);
    if (!ddp) return fail(std::move(ddp.error()).wrap("denied, new destination ports"));
    if (reason_count(x.paths, "drop_policy") - d0 != 2 * varied_pkts)
      return fail(Error::invalid("denied varying runs were not all counted drop_policy"));

    // The kernel's hash insert alone, in a map shaped like zw_ct: what a
    // new flow costs at the very least (XDP only: the same insert either way).
    std::optional<double> ins;
    if (h == Hook::kXdp) {
      auto clear = [&]() -> Status {
        int mfd = x.ref->ct_insert_map();
        std::array<uint8_t, 40> k{}, next{};
        std::vector<std::array<uint8_t, 40>> keys;
        bool first = true;
        while (bpf_map_get_next_key(mfd, first ? nullptr : k.data(), next.data()) == 0) {
          keys.push_back(next);
          k = next;
          first = false;
        }
        for (const auto& key : keys) bpf_map_delete_elem(mfd, key.data());
        return {};
      };
      auto r = varied(x, h, x.ref->ct_insert(), new_f, false, true, clear);
      if (!r) return fail(std::move(r.error()).wrap("hash insert alone"));
      ins = minus_wrap(*r);
    }

    auto out_paired = [&](const char* path, const Paired& p, const char* what) {
      char n[160];
      std::snprintf(n, sizeof n, "%s, %d trials of repeat %u against the floor; lowest ratio %.2fx",
                    what, x.trials, x.repeat, p.best_ratio);
      out(path, p.ns, p.floor, n, p.ratio);
    };
    out_paired("established", *est, "one flow");
    out_paired("denied", *den, "one denied packet");
    std::snprintf(note, sizeof note,
                  "%llu packets, each a new flow (new source port): %.1f ns with the wrapper, "
                  "wrapper alone %.1f ns",
                  static_cast<unsigned long long>(varied_pkts), *nw, *wrap);
    out("new", minus_wrap(*nw), *floor, note);
    if (ins) {
      std::snprintf(note, sizeof note,
                    "not zonewall: a bare program inserting each packet's new key into a hash "
                    "map shaped like zw_ct (%llu packets)",
                    static_cast<unsigned long long>(varied_pkts));
      out("ct-insert", *ins, *floor, note);
    }
    std::snprintf(note, sizeof note,
                  "%llu packets, each a new source port: %.1f ns with the wrapper",
                  static_cast<unsigned long long>(varied_pkts), *dsp);
    out("denied-new-sport", minus_wrap(*dsp), *floor, note);
    std::snprintf(note, sizeof note,
                  "%llu packets, each a new destination port: %.1f ns with the wrapper",
                  static_cast<unsigned long long>(varied_pkts), *ddp);
    out("denied-new-dport", minus_wrap(*ddp), *floor, note);
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
  app.add_option("--vary-runs", x.vary_runs, "varying-wrapper runs per figure")
      ->capture_default_str();
  app.add_option("--instances", x.instances, "program instances measured per configuration")
      ->capture_default_str();
  app.add_option("--vary-per-run", x.vary_per_run, "packets per varying-wrapper run (<= 10000)")
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
  XdpParking parking;
  x.parking = &parking;
  for (auto [spot, fd] : {std::pair{XdpParking::kFloor, ref->xdp_pass()},
                          std::pair{XdpParking::kWrapper, ref->vary(Hook::kXdp)},
                          std::pair{XdpParking::kCtInsert, ref->ct_insert()}})
    if (auto st = parking.park(spot, fd); !st) {
      std::fprintf(stderr, "cost: %s\n", st.error().str().c_str());
      return 1;
    }

  std::vector<Config> configs;
  std::vector<int> ct_levels;
  if (mode == "smoke") {
    configs = {{"base", 10, 1, 10}, {"rules-1k", 1000, 1, 10}, {"vms-1k", 10, 1, 1000}};
    ct_levels = {10000};
    x.vary_runs = std::min(x.vary_runs, 3);
    x.instances = std::min(x.instances, 2);
  } else {
    configs = {
        {"base", 10, 1, 10},           {"rules-1k", 1000, 1, 10},       {"rules-10k", 10000, 1, 10},
        {"rules-100k", 100000, 1, 10}, {"entries-100k", 10000, 10, 10}, {"vms-1k", 10, 1, 1000},
        {"vms-10k", 10, 1, 10000},     {"largest", 100000, 1, 10000}};
    ct_levels = {10000, 100000, 1000000};
    if (mode == "quick") {
      x.vary_runs = std::min(x.vary_runs, 20);
      x.instances = std::min(x.instances, 3);
    }
  }
  if (!only.empty())
    std::erase_if(configs, [&](const Config& c) {
      return ("," + only + ",").find("," + c.name + ",") == std::string::npos;
    });
  std::printf(
      "cost\tconfig\trules\tpolicy_entries\tvms\tct_flows\thook\tfamily\tpath\tns\tfloor_"
      "ns\tratio\tnote\tinstance\n");
  int rc = 0;
  for (const auto& c : configs) {
    Status st = apply_config(x, c, true);
    auto zfd = st ? datapath::open_pinned_prog(x.paths.pin_dir, Prog::kFromVmXdp)
                  : Result<UniqueFd>(fail(Error::invalid("no apply")));
    if (st && zfd) st = fill(x, zfd->get(), 1000);
    for (int inst = 0; st && inst < x.instances; ++inst) {
      if (inst > 0) st = apply_config(x, c, false);
      if (st) st = measure(x, c, Hook::kXdp, ct_entries(x), inst);
      if (st) st = measure(x, c, Hook::kTc, ct_entries(x), inst);
    }
    if (st && c.name == "base")
      for (int level : ct_levels) {
        auto xfd = datapath::open_pinned_prog(x.paths.pin_dir, Prog::kFromVmXdp);
        st = xfd ? fill(x, xfd->get(), level) : Status(fail(std::move(xfd.error())));
        for (int inst = 0; st && inst < x.instances; ++inst) {
          if (inst > 0) st = apply_config(x, c, false);
          if (st) st = measure(x, c, Hook::kXdp, ct_entries(x), inst);
        }
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
