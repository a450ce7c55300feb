// The apply and down sequences.
#include "engine/reconcile.h"

#include <fnmatch.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <set>
#include <string_view>

#include "datapath/attach.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "engine/conntrack.h"
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

// Deletes every entry whose generation is not `keep` from the
// generation-keyed maps. Returns how many were removed.
template <typename K>
Result<size_t> purge_gens(int fd, uint32_t keep) {
  auto keys = dp::map_keys<K>(fd);
  if (!keys) return fail(std::move(keys.error()));
  size_t n = 0;
  for (const K& k : *keys) {
    if (k.gen == keep) continue;
    if (auto st = dp::map_delete(fd, k); !st) return fail(std::move(st.error()));
    ++n;
  }
  return n;
}

Status purge_all_but(const dp::Maps& m, uint32_t keep) {
  if (auto r = purge_gens<zw_endpoint_key>(m.endpoints.get(), keep); !r)
    return fail(std::move(r.error()).wrap("zw_endpoints"));
  if (auto r = purge_gens<zw_addr_key>(m.addrs.get(), keep); !r)
    return fail(std::move(r.error()).wrap("zw_addrs"));
  if (auto r = purge_gens<zw_cidr_key>(m.cidrs.get(), keep); !r)
    return fail(std::move(r.error()).wrap("zw_cidrs"));
  if (auto r = purge_gens<zw_policy_key>(m.policy.get(), keep); !r)
    return fail(std::move(r.error()).wrap("zw_policy"));
  if (auto r = purge_gens<zw_pair_key>(m.pairs.get(), keep); !r)
    return fail(std::move(r.error()).wrap("zw_pairs"));
  if (auto r = purge_gens<zw_zpair_key>(m.zpairs.get(), keep); !r)
    return fail(std::move(r.error()).wrap("zw_zpairs"));
  return {};
}

Status write_generation(const dp::Maps& m, dp::ConfigView& cfg, const Desired& d, uint32_t gen) {
  // Which kinds of entries each zone pair has; the defaults go to the config.
  std::map<std::pair<uint16_t, uint16_t>, uint8_t> kinds;
  zw_verdict dflt[2] = {};
  for (const auto& e : d.compiled.entries) {
    const zw_policy_key& k = e.key;
    if (k.kind == ZW_KIND_DEFAULT) {
      dflt[k.port ? 1 : 0] = e.value;
      continue;
    }
    uint8_t bit = k.kind == ZW_KIND_PORT    ? ZW_ZPK_PORT
                  : k.kind == ZW_KIND_BLOCK ? ZW_ZPK_BLOCK
                  : k.proto == ZW_PROTO_ANY ? ZW_ZPK_ANY
                                            : ZW_ZPK_PROTO;
    kinds[{k.src_zone, k.dst_zone}] |= bit;
  }
  for (const auto& [zp, bits] : kinds) {
    zw_zpair_key k{gen, zp.first, zp.second};
    zw_zpair v{};
    v.kinds = bits;
    if (auto st = dp::map_update(m.zpairs.get(), k, v); !st)
      return fail(std::move(st.error()).wrap("zw_zpairs"));
  }
  cfg.set_defaults(gen, dflt[0], dflt[1]);
  for (const auto& e : d.endpoints) {
    if (e.ifindex == 0) continue;
    zw_endpoint_key k{gen, e.ifindex};
    if (auto st = dp::map_update(m.endpoints.get(), k, e.value); !st)
      return fail(std::move(st.error()).wrap("zw_endpoints " + e.ep.ifname));
  }
  for (auto [k, v] : d.addrs) {
    k.gen = gen;
    if (auto st = dp::map_update(m.addrs.get(), k, v); !st)
      return fail(std::move(st.error()).wrap("zw_addrs"));
  }
  for (auto [k, v] : d.cidrs) {
    k.gen = gen;
    if (auto st = dp::map_update(m.cidrs.get(), k, v); !st)
      return fail(std::move(st.error()).wrap("zw_cidrs"));
  }
  for (auto k : d.pairs) {
    k.gen = gen;
    if (auto st = dp::map_update(m.pairs.get(), k, uint32_t{0}); !st)
      return fail(std::move(st.error()).wrap("zw_pairs"));
  }
  for (auto e : d.compiled.entries) {
    e.key.gen = gen;
    if (auto st = dp::map_update(m.policy.get(), e.key, e.value); !st)
      return fail(std::move(st.error()).wrap("zw_policy"));
  }
  return {};
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

Result<ApplyReport> apply(const Paths& paths, const ApplyInput& in) {
  ApplyReport rep;
  auto prev = read_state(paths);
  if (!prev) return fail(std::move(prev.error()));

  IfindexResolver resolve = in.resolve;
  if (!resolve) resolve = [](const std::string& n) { return if_nametoindex(n.c_str()); };
  auto desired = build_desired(*in.policy, *in.inventory, *prev, in.default_attach, resolve);
  if (!desired) return fail(std::move(desired.error()));
  rep.warnings = desired->warnings;

  std::optional<dp::Object> loaded;
  const dp::Object* obj = in.programs;
  if (!obj) {
    auto o = dp::Object::load(paths.pin_dir);
    if (!o) return fail(std::move(o.error()).wrap("apply"));
    loaded.emplace(std::move(*o));
    obj = &*loaded;
  }
  auto maps = obj->maps();
  if (!maps) return fail(std::move(maps.error()));
  auto cfg = dp::ConfigView::map(maps->config.get());
  if (!cfg) return fail(std::move(cfg.error()));

  uint32_t cur = cfg->active_gen();
  uint32_t gen = std::max(cur, (*prev ? (*prev)->generation : 0u)) + 1;
  if (gen == 0) gen = 1;
  rep.previous_generation = cur;

  // Leftovers of an interrupted apply must not mix into the new generation.
  if (auto st = purge_all_but(*maps, cur); !st) return fail(std::move(st.error()).wrap("apply"));
  if (auto st = write_generation(*maps, *cfg, *desired, gen); !st) {
    (void)purge_all_but(*maps, cur);
    return fail(std::move(st.error()).wrap("apply: write generation " + std::to_string(gen)));
  }

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
    (void)purge_all_but(*maps, cur);
    return fail(std::move(e));
  };
  int from_tc = obj->prog_fd(dp::Prog::kFromVmTc);
  int from_xdp = obj->prog_fd(dp::Prog::kFromVmXdp);
  int to_tc = obj->prog_fd(dp::Prog::kToVmTc);
  for (const auto& e : desired->endpoints) {
    if (e.ifindex == 0 || !in.attach) continue;
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

  test_pause_at("after-write");
  cfg->set_active_gen(gen);
  test_pause_at("after-flip");
  rep.generation = gen;
  log::info("generation flipped", {{"from", std::to_string(cur)}, {"to", std::to_string(gen)}});

  if (auto st = purge_all_but(*maps, gen); !st)
    rep.warnings.push_back("old generation not fully removed: " + st.error().str());

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
  if (auto st = write_state(paths, s); !st) return fail(std::move(st.error()).wrap("apply"));
  if (in.sweep_conntrack) {
    if (auto sw = sweep_conntrack(*maps); sw)
      rep.flows_expired = sw->expired;
    else
      rep.warnings.push_back("conntrack sweep: " + sw.error().str());
  }
  rep.policy_entries = desired->compiled.entries.size();
  rep.endpoints = desired->endpoints.size();
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
