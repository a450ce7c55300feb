// The apply and down sequences.
#include "engine/reconcile.h"

#include <fnmatch.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <set>
#include <string_view>

#include "datapath/attach.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "engine/conntrack.h"
#include "engine/slots.h"
#include "inventory/libvirt.h"
#include "util/log.h"

namespace zw::engine {

namespace dp = zw::datapath;

namespace {

std::string now_iso() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// One two-slot map's share of an apply (engine/slots.h): planned from the
// live entries before anything is written, executed in two halves around
// the flip.
template <typename K, typename V>
struct SlotMap {
  const char* name;
  int fd;
  slots::Plan<K, V> plan;

  Status before_flip(ApplyReport& rep) const {
    return write(rep, plan.write_keys, plan.write_vals, plan.drop_keys);
  }
  Status after_flip(ApplyReport& rep) const {
    return write(rep, plan.settle_keys, plan.settle_vals, plan.delete_keys);
  }
  Status write(ApplyReport& rep, const std::vector<K>& keys, const std::vector<V>& vals,
               const std::vector<K>& dels) const {
    auto& c = rep.changes[name];
    if (auto st = dp::map_update_many(fd, keys, vals); !st)
      return fail(std::move(st.error()).wrap(name));
    rep.entries_written += keys.size();
    c.written += keys.size();
    if (auto st = dp::map_delete_many(fd, dels); !st) return fail(std::move(st.error()).wrap(name));
    rep.entries_deleted += dels.size();
    c.deleted += dels.size();
    return {};
  }
  // A failed apply: the inactive slots back as they were (best effort; the
  // next apply's plan re-settles whatever this leaves).
  void undo() const {
    (void)dp::map_update_many(fd, plan.undo_keys, plan.undo_vals);
    (void)dp::map_delete_many(fd, plan.undo_deletes);
  }
};

template <typename K, typename V>
Result<SlotMap<K, V>> plan_map(const char* name, int fd,
                               std::vector<std::pair<K, typename slots::Traits<V>::Slot>> target,
                               unsigned active) {
  auto live = dp::map_entries<K, V>(fd);
  if (!live) return fail(std::move(live.error()).wrap(std::string("read ") + name));
  return SlotMap<K, V>{name, fd, slots::plan<K, V>(std::move(*live), std::move(target), active)};
}

// The new generation's content of every two-slot map, against the live
// maps: only what changes is written.
struct Generation {
  SlotMap<zw_endpoint_key, zw_endpoint_val> endpoints;
  SlotMap<zw_addr_key, zw_addr_val> addrs;
  SlotMap<zw_cidr_key, zw_addr_val> cidrs;
  SlotMap<zw_pair_key, uint32_t> pairs;
  SlotMap<zw_policy_key, zw_policy_val> policy;
  SlotMap<zw_zpair_key, zw_zpair> zpairs;
  zw_verdict dflt[2] = {};

  // Zone pairs and policy first, endpoints last: the order the old
  // generation's removal needs is irrelevant (nobody reads the slots being
  // written), this one only keeps an interrupted apply's leftovers small.
  template <typename F>
  Status each(F f) const {
    Status st = f(zpairs);
    if (st) st = f(policy);
    if (st) st = f(pairs);
    if (st) st = f(addrs);
    if (st) st = f(cidrs);
    if (st) st = f(endpoints);
    return st;
  }
};

Result<Generation> plan_generation(const dp::Maps& m, const Desired& d, unsigned active) {
  // Which kinds of entries each zone pair has; the defaults go to the config.
  std::map<std::pair<uint16_t, uint16_t>, uint8_t> kinds;
  zw_verdict dflt[2] = {};
  std::vector<std::pair<zw_policy_key, zw_verdict>> policy;
  policy.reserve(d.compiled.entries.size());
  for (const auto& e : d.compiled.entries) {
    const zw_policy_key& k = e.key;
    if (k.kind == ZW_KIND_DEFAULT) {
      dflt[k.port ? 1 : 0] = e.value;
      continue;
    }
    if (e.value.rule_id == ZW_RULE_NONE)  // would read as an absent slot
      return fail(Error::invalid("compiled policy entry without a rule id"));
    policy.emplace_back(k, e.value);
    uint8_t bit = k.kind == ZW_KIND_PORT    ? ZW_ZPK_PORT
                  : k.kind == ZW_KIND_BLOCK ? ZW_ZPK_BLOCK
                  : k.proto == ZW_PROTO_ANY ? ZW_ZPK_ANY
                                            : ZW_ZPK_PROTO;
    kinds[{k.src_zone, k.dst_zone}] |= bit;
  }
  std::vector<std::pair<zw_zpair_key, uint8_t>> zpairs;
  for (const auto& [zp, bits] : kinds) zpairs.push_back({zw_zpair_key{zp.first, zp.second}, bits});
  std::vector<std::pair<zw_endpoint_key, zw_endpoint>> eps;
  for (const auto& e : d.endpoints)
    if (e.ifindex != 0) eps.push_back({zw_endpoint_key{e.ifindex}, e.value});
  std::vector<std::pair<zw_pair_key, uint8_t>> pairs;
  for (const auto& k : d.pairs) pairs.push_back({k, 1});

  auto ep = plan_map<zw_endpoint_key, zw_endpoint_val>("zw_endpoints", m.endpoints.get(),
                                                       std::move(eps), active);
  if (!ep) return fail(std::move(ep.error()));
  auto ad = plan_map<zw_addr_key, zw_addr_val>("zw_addrs", m.addrs.get(), d.addrs, active);
  if (!ad) return fail(std::move(ad.error()));
  auto pa = plan_map<zw_pair_key, uint32_t>("zw_pairs", m.pairs.get(), std::move(pairs), active);
  if (!pa) return fail(std::move(pa.error()));
  auto po = plan_map<zw_policy_key, zw_policy_val>("zw_policy", m.policy.get(), std::move(policy),
                                                   active);
  if (!po) return fail(std::move(po.error()));
  auto zp =
      plan_map<zw_zpair_key, zw_zpair>("zw_zpairs", m.zpairs.get(), std::move(zpairs), active);
  if (!zp) return fail(std::move(zp.error()));
  auto cl = dp::map_entries<zw_cidr_key, zw_addr_val>(m.cidrs.get());
  if (!cl) return fail(std::move(cl.error()).wrap("read zw_cidrs"));
  SlotMap<zw_cidr_key, zw_addr_val> cidrs{"zw_cidrs", m.cidrs.get(),
                                          slots::plan_cidrs(*cl, d.cidrs, active)};
  Generation g{std::move(*ep), std::move(*ad), std::move(cidrs),
               std::move(*pa), std::move(*po), std::move(*zp)};
  g.dflt[0] = dflt[0];
  g.dflt[1] = dflt[1];
  return g;
}

// What the tap thread may admit under generation `gen` (engine/admit.h):
// every endpoint that names an interface (a libvirt one only on a tap with
// the MAC libvirt gives it: a tap name libvirt generated may be handed to
// another VM before the reconcile sees the first one stop), and every
// stopped libvirt domain's future tap when it is unambiguous. Keyed by the
// name its config gives (exactly one stopped VM interface names it, no
// interface of this generation has that name), or else by the MAC libvirt
// will give it (no other VM interface, running or not, has that guest MAC).
std::shared_ptr<Admissions> admissions_of(const Desired& d, uint32_t gen) {
  auto adm = std::make_shared<Admissions>();
  auto admissible = [&](const DesiredEndpoint& e) {
    Admissible a{.vm = e.ep.vm_name, .generation = gen, .ifindex = e.ifindex, .value = e.value};
    auto key_of = [](const net::Addr& addr) {
      zw_addr_key k{};
      std::memcpy(k.addr, addr.bytes.data(), 16);
      return k;
    };
    for (const auto& addr : e.ep.addrs) a.own.push_back(key_of(addr));
    for (const auto& addr : e.ep.allowed) a.allowed.push_back(key_of(addr));
    if (e.ep.libvirt_tap && e.ep.mac) a.tap_mac = inventory::libvirt_tap_mac(*e.ep.mac);
    return a;
  };
  std::map<std::string, int> claims;  // a running interface counts 2, a stopped one 1
  std::map<net::Mac, int> macs;       // guest MACs of every VM interface
  for (const auto& e : d.endpoints) {
    if (!e.ep.ifname.empty())
      claims[e.ep.ifname] += 2;
    else if (!e.ep.config_ifname.empty())
      claims[e.ep.config_ifname] += 1;
    if (e.ep.mac) ++macs[*e.ep.mac];
  }
  for (const auto& e : d.endpoints) {
    if (!e.ep.ifname.empty()) {
      (*adm)[e.ep.ifname] = admissible(e);
      continue;
    }
    if (!e.ep.libvirt_tap || !e.ep.mac) continue;
    Admissible a = admissible(e);
    a.prospective = true;
    if (!e.ep.config_ifname.empty()) {
      if (claims[e.ep.config_ifname] == 1) (*adm)[e.ep.config_ifname] = std::move(a);
    } else if (macs[*e.ep.mac] == 1) {
      (*adm)[admission_key(*a.tap_mac)] = std::move(a);
    }
  }
  return adm;
}

// Test-only crash points (docs/operations.md, tests/e2e/test_crash_safety.sh):
// with ZW_TEST_PAUSE_AT=after-write (new generation written and attached,
// not yet active) or after-flip (active, old generation and state file not
// yet updated), apply stops there until killed, so a test can kill -9 it at
// exactly that point. Unset in production: one getenv per apply.
void test_pause_at(std::string_view point) {
  const char* want = std::getenv("ZW_TEST_PAUSE_AT");
  if (want == nullptr || point != want) return;
  std::fprintf(stderr, "ZW_TEST_PAUSE_AT=%s: apply paused (pid %d)\n", want,
               static_cast<int>(::getpid()));
  std::fflush(stderr);
  for (;;) ::pause();
}

Status detach_endpoint(const Paths& paths, const EndpointState& e) {
  // The interface may have been renamed or removed; act on the index we used.
  uint32_t ifindex = e.ifindex;
  if (ifindex == 0) return {};
  if (auto st = dp::detach_xdp(paths.link_pin(ifindex)); !st) return st;
  if (auto st = dp::detach_tc(static_cast<int>(ifindex), dp::TcHook::kIngress); !st) return st;
  if (auto st = dp::detach_tc(static_cast<int>(ifindex), dp::TcHook::kEgress); !st) return st;
  if (e.created_clsact) return dp::destroy_clsact(static_cast<int>(ifindex));
  return {};
}

}  // namespace

// Phase timings of one apply (ApplyReport::phases, debug log).
class PhaseClock {
 public:
  explicit PhaseClock(ApplyReport& rep) : rep_(rep), t_(std::chrono::steady_clock::now()) {}
  void lap(const char* phase) {
    auto now = std::chrono::steady_clock::now();
    rep_.phases.emplace_back(phase, std::chrono::duration<double, std::milli>(now - t_).count());
    t_ = now;
  }

 private:
  ApplyReport& rep_;
  std::chrono::steady_clock::time_point t_;
};

std::unique_ptr<ProgramLoad> ProgramLoad::start(const Paths& paths) {
  std::unique_ptr<ProgramLoad> l(new ProgramLoad(paths.pin_dir));
  l->pending_ = std::async(std::launch::async, [dir = paths.pin_dir] {
    return dp::Object::load(dir, {.pin_progs = false});
  });
  return l;
}

Result<const dp::Object*> ProgramLoad::get() {
  if (!done_) done_.emplace(pending_.get());
  if (!*done_) return fail(done_->error());
  return &**done_;
}

Status ProgramLoad::commit() {
  committed_ = true;
  auto o = get();
  if (!o) return fail(o.error());
  return (*o)->pin_programs(pin_dir_);
}

ProgramLoad::~ProgramLoad() {
  if (!done_ && pending_.valid()) done_.emplace(pending_.get());
  if (!committed_ && done_ && *done_) (*done_)->unpin_created(pin_dir_);
}

Result<ApplyReport> apply(const Paths& paths, const ApplyInput& in) {
  ApplyReport rep;
  PhaseClock clock(rep);
  auto prev = in.previous ? Result<std::optional<State>>(*in.previous) : read_state(paths);
  if (!prev) return fail(std::move(prev.error()));
  clock.lap("read state");

  IfindexResolver resolve = in.resolve;
  if (!resolve) resolve = net::InterfaceIndexes();
  auto desired = build_desired(*in.policy, *in.inventory, *prev, in.default_attach, resolve);
  if (!desired) return fail(std::move(desired.error()));
  rep.warnings = desired->warnings;
  clock.lap("desired");

  std::unique_ptr<ProgramLoad> own_load;
  ProgramLoad* load = in.programs ? nullptr : in.preload;
  if (!in.programs && !load) {
    own_load = ProgramLoad::start(paths);
    load = own_load.get();
  }
  const dp::Object* obj = in.programs;
  if (load) {
    auto o = load->get();
    if (!o) return fail(std::move(o.error()).wrap("apply"));
    obj = *o;
  }
  auto maps = obj->maps();
  clock.lap("programs");
  std::shared_ptr<Admissions> adm;
  if (in.admissions) {
    adm = admissions_of(*desired, 0);
    clock.lap("admissions");
  }
  if (!maps) return fail(std::move(maps.error()));
  auto cfg = dp::ConfigView::map(maps->config.get());
  if (!cfg) return fail(std::move(cfg.error()));

  std::unique_lock<std::mutex> writing;
  if (in.write_lock) writing = std::unique_lock(*in.write_lock);
  if (in.still_current && !in.still_current()) {
    rep.superseded = true;
    return rep;
  }
  uint32_t cur = cfg->active_gen();
  uint32_t gen = std::max(cur, (*prev ? (*prev)->generation : 0u)) + 1;
  if (ZW_SLOT(gen) == ZW_SLOT(cur)) ++gen;  // the other slot, always
  if (gen == 0) gen = 1;
  rep.previous_generation = cur;
  const unsigned active = ZW_SLOT(cur);
  if (adm)
    for (auto& [name, a] : *adm) a.generation = gen;

  // What changes, against the live maps; this also re-settles whatever an
  // interrupted apply left unsettled (engine/slots.h).
  auto next = plan_generation(*maps, *desired, active);
  if (!next) return fail(std::move(next.error()).wrap("apply"));
  clock.lap("plan");
  auto undo_all = [&] {
    next->each([](const auto& m) {
      m.undo();
      return Status{};
    });
  };
  cfg->set_defaults(gen, next->dflt[0], next->dflt[1]);
  if (auto st = next->each([&](const auto& m) { return m.before_flip(rep); }); !st) {
    undo_all();
    return fail(std::move(st.error()).wrap("apply: write generation " + std::to_string(gen)));
  }

  clock.lap("write");
  // Attach (or atomically replace) programs on every present interface. An
  // interface new to this apply drops everything until the flip: no gap.
  std::map<std::string, bool> created;
  std::set<uint32_t> managed_before;
  if (*prev)
    for (const auto& e : (*prev)->endpoints) {
      created[e.ifname] = e.created_clsact;
      if (e.ifindex) managed_before.insert(e.ifindex);
    }
  // Interfaces this apply hooks for the first time: a failed apply takes its
  // hooks off them again, so nothing is half-applied. Interfaces managed
  // before keep (new instances of) the programs, still on the old generation.
  std::vector<EndpointState> fresh;
  auto roll_back = [&](Error e) {
    for (const auto& f : fresh) (void)detach_endpoint(paths, f);
    undo_all();
    return fail(std::move(e));
  };
  int from_tc = obj->prog_fd(dp::Prog::kFromVmTc);
  int from_xdp = obj->prog_fd(dp::Prog::kFromVmXdp);
  int to_tc = obj->prog_fd(dp::Prog::kToVmTc);
  // An interface whose hooks already run these very programs (the daemon's
  // instance, reused) is left alone: three queries instead of replacing
  // three hooks.
  const uint32_t from_tc_id = dp::prog_id_of_fd(from_tc), from_xdp_id = dp::prog_id_of_fd(from_xdp),
                 to_tc_id = dp::prog_id_of_fd(to_tc);
  auto hooked_already = [&](const DesiredEndpoint& e) {
    if (!managed_before.count(e.ifindex)) return false;
    int ifx = static_cast<int>(e.ifindex);
    auto eg = dp::tc_prog_id(ifx, dp::TcHook::kEgress);
    if (!eg || *eg != to_tc_id) return false;
    auto ing = dp::tc_prog_id(ifx, dp::TcHook::kIngress);
    auto xl = dp::xdp_link_info(paths.link_pin(e.ifindex));
    if (!ing || !xl) return false;
    if (e.attach == "xdp")
      return *ing == 0 && xl->prog_id == from_xdp_id && xl->ifindex == e.ifindex;
    return *ing == from_tc_id && xl->prog_id == 0;
  };
  for (const auto& e : desired->endpoints) {
    if (e.ifindex == 0 || !in.attach) continue;
    if (hooked_already(e)) {
      ++rep.attached;
      ++rep.hooks_unchanged;
      continue;
    }
    int ifx = static_cast<int>(e.ifindex);
    auto made = dp::ensure_clsact(ifx);
    Status st = made ? Status{} : fail(std::move(made.error()));
    if (st && *made) created[e.ep.ifname] = true;
    // Already hooked though not ours in the state (the daemon hooked a new
    // tap, or a renamed interface kept failing closed): a rollback must
    // leave it dropping, not take its hooks off.
    auto hooked_now = [&](dp::TcHook h) {
      auto id = dp::tc_prog_id(ifx, h);
      return id && *id != 0;
    };
    if (!managed_before.count(e.ifindex) && !hooked_now(dp::TcHook::kIngress) &&
        !hooked_now(dp::TcHook::kEgress)) {
      EndpointState f;
      f.ifindex = e.ifindex;
      f.created_clsact = created[e.ep.ifname];
      fresh.push_back(f);
    }
    if (st) st = dp::attach_tc(ifx, dp::TcHook::kEgress, to_tc);
    if (st && e.attach == "xdp") {
      st = dp::attach_xdp(ifx, from_xdp, paths.link_pin(e.ifindex));
      if (st) st = dp::detach_tc(ifx, dp::TcHook::kIngress);
    } else if (st) {
      st = dp::attach_tc(ifx, dp::TcHook::kIngress, from_tc);
      if (st) st = dp::detach_xdp(paths.link_pin(e.ifindex));
    }
    if (!st) {
      // Gone since it was resolved (a VM stopping right now): nothing to
      // enforce on it; its endpoint entry is inert. Everyone else proceeds.
      char name[IF_NAMESIZE] = {};
      if (if_indextoname(e.ifindex, name) == nullptr) {
        rep.warnings.push_back(e.ep.source + ": interface '" + e.ep.ifname +
                               "' vanished during apply; skipped");
        ++rep.vanished;
        continue;
      }
      return roll_back(std::move(st.error()).wrap("apply: attach " + e.ep.ifname));
    }
    ++rep.attached;
  }

  clock.lap("attach");
  test_pause_at("after-write");
  if (in.observe) in.observe("after-write");
  cfg->set_active_gen(gen);
  if (load)
    if (auto st = load->commit(); !st) rep.warnings.push_back("pin programs: " + st.error().str());
  test_pause_at("after-flip");
  if (in.observe) in.observe("after-flip");
  rep.generation = gen;
  log::info("generation flipped", {{"from", std::to_string(cur)}, {"to", std::to_string(gen)}});

  if (auto st = next->each([&](const auto& m) { return m.after_flip(rep); }); !st)
    rep.warnings.push_back("generation " + std::to_string(gen) +
                           " not fully settled (the next apply settles it): " + st.error().str());
  log::info("map entries", {{"written", std::to_string(rep.entries_written)},
                            {"deleted", std::to_string(rep.entries_deleted)}});
  clock.lap("flip+settle");
  if (writing) writing.unlock();
  if (adm) {
    rep.admissions = adm;
    if (in.publish_admissions) in.publish_admissions(adm);
  }

  State s;
  s.generation = gen;
  s.policy_source = in.policy_source;
  s.policy_files = in.policy->files;
  s.inventory_source = in.inventory_source;
  s.applied_at = now_iso();
  s.zones = desired->ids.zone;
  s.rule_ids = desired->ids.rule;
  s.rules = desired->rules;
  s.defaults = {
      {"intra_zone", in.policy->defaults.intra_zone == policy::Action::kAllow ? "allow" : "deny"},
      {"inter_zone", in.policy->defaults.inter_zone == policy::Action::kAllow ? "allow" : "deny"}};
  std::set<uint32_t> live;
  for (const auto& e : desired->endpoints) {
    EndpointState es;
    es.key = endpoint_key(e.ep);
    es.vm_name = e.ep.vm_name;
    es.vm_uuid = e.ep.vm_uuid;
    es.ifname = e.ep.ifname;
    es.ifindex = e.ifindex;
    es.attach = e.attach;
    es.id = e.value.id;
    es.zone = e.zone;
    es.mac = e.ep.mac ? net::mac_str(*e.ep.mac) : "";
    for (const auto& a : e.ep.addrs) es.addrs.push_back(a.str());
    for (const auto& a : e.ep.allowed) es.allowed.push_back(a.str());
    es.created_clsact = created[e.ep.ifname];
    if (e.ifindex) live.insert(e.ifindex);
    s.endpoints.push_back(std::move(es));
  }

  // Interfaces that left the inventory (or changed index) lose their hooks,
  // except (fail closed: their hooks, without an endpoint, drop everything)
  // one that still exists under a tap pattern, and one renamed away from
  // the name its VM claimed: still plugged into that VM, now claimed by
  // nobody. Renamed back, it is the VM's again at the next apply.
  if (*prev) {
    for (const auto& e : (*prev)->endpoints) {
      if (e.ifindex == 0 || live.count(e.ifindex)) continue;
      char name[IF_NAMESIZE] = {};
      if (if_indextoname(e.ifindex, name) != nullptr &&
          (e.ifname != name ||
           std::any_of(in.keep_hooked.begin(), in.keep_hooked.end(),
                       [&](const std::string& g) { return fnmatch(g.c_str(), name, 0) == 0; }))) {
        ++rep.fail_closed;
        continue;
      }
      if (auto st = detach_endpoint(paths, e); !st)
        rep.warnings.push_back("detach " + e.ifname + ": " + st.error().str());
      else
        ++rep.detached;
    }
  }
  clock.lap("detach");
  if (auto st = write_state(paths, s); !st) return fail(std::move(st.error()).wrap("apply"));
  rep.state = std::make_shared<const State>(std::move(s));
  clock.lap("write state");
  if (in.sweep_conntrack) {
    if (auto sw = sweep_conntrack(*maps); sw)
      rep.flows_expired = sw->expired;
    else
      rep.warnings.push_back("conntrack sweep: " + sw.error().str());
  }
  rep.policy_entries = desired->compiled.entries.size();
  rep.endpoints = desired->endpoints.size();
  clock.lap("sweep");
  return rep;
}

Result<DownReport> down(const Paths& paths) {
  DownReport rep;
  auto prev = read_state(paths);
  if (!prev) return fail(std::move(prev.error()));
  std::set<uint32_t> done;
  if (*prev) {
    rep.had_state = true;
    for (const auto& e : (*prev)->endpoints) {
      if (e.ifindex == 0) continue;
      if (auto st = detach_endpoint(paths, e); !st) return fail(std::move(st.error()).wrap("down"));
      done.insert(e.ifindex);
      ++rep.detached;
    }
  }
  // Without (or beyond) the state file: every interface the maps know.
  if (auto maps = dp::open_pinned_maps(paths.pin_dir); maps) {
    if (auto keys = dp::map_keys<zw_endpoint_key>(maps->endpoints.get()); keys) {
      for (const auto& k : *keys) {
        if (done.count(k.ifindex)) continue;
        EndpointState e;
        e.ifindex = k.ifindex;
        if (auto st = detach_endpoint(paths, e); !st)
          return fail(std::move(st.error()).wrap("down"));
        done.insert(k.ifindex);
        ++rep.detached;
      }
    }
  }
  // Any interface of this namespace still carrying a program of this
  // instance (recognised by its config map), e.g. after a state file was
  // lost: take it off too.
  if (auto cfg = dp::open_pinned_maps(paths.pin_dir); cfg) {
    uint32_t cfg_id = dp::map_id_of_fd(cfg->config.get());
    if (struct if_nameindex* ifs = ::if_nameindex()) {
      for (auto* i = ifs; i->if_index != 0; ++i) {
        for (auto hook : {dp::TcHook::kIngress, dp::TcHook::kEgress}) {
          auto id = dp::tc_prog_id(static_cast<int>(i->if_index), hook);
          if (!id || *id == 0 || !dp::prog_uses_map(*id, cfg_id)) continue;
          if (auto st = dp::detach_tc(static_cast<int>(i->if_index), hook); !st) {
            if_freenameindex(ifs);
            return fail(std::move(st.error()).wrap("down"));
          }
          if (done.insert(i->if_index).second) ++rep.detached;
        }
      }
      if_freenameindex(ifs);
    }
  }
  std::error_code ec;
  // Remaining link pins (interfaces renamed or gone) and then everything else.
  if (std::filesystem::exists(paths.pin_dir + "/links", ec))
    for (const auto& f : std::filesystem::directory_iterator(paths.pin_dir + "/links", ec))
      (void)dp::detach_xdp(f.path());
  std::filesystem::remove_all(paths.pin_dir, ec);
  if (ec) return fail(Error(ErrorKind::kSystem, "remove " + paths.pin_dir, ec.value()));
  std::filesystem::remove_all(paths.state_dir, ec);
  if (ec) return fail(Error(ErrorKind::kSystem, "remove " + paths.state_dir, ec.value()));
  return rep;
}

}  // namespace zw::engine
