// status and stats from the pinned maps, named through state.json.
#include "engine/inspect.h"

#include <net/if.h>

#include <algorithm>
#include <set>
#include <tuple>

#include "datapath/attach.h"
#include "datapath/events.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "datapath/reasons.h"
#include "engine/aggregate.h"
#include "engine/conntrack.h"
#include "util/clock.h"
#include "util/net.h"

namespace zw::engine {

namespace dp = zw::datapath;
using nlohmann::json;

namespace {

// Entries whose slot of generation `gen` is present.
size_t count_policy(int fd, uint32_t gen) {
  auto entries = dp::map_entries<zw_policy_key, zw_policy_val>(fd);
  if (!entries) return 0;
  size_t n = 0;
  for (const auto& [k, v] : *entries) n += v.slot[ZW_SLOT(gen)].rule_id != ZW_RULE_NONE;
  return n;
}

using agg::counter;
using agg::ev_json;
using agg::kAdd;

// The kernel's run-time statistics of the pinned programs: exact totals
// while statistics are enabled; average cost per packet of each hook.
json program_cost(const Paths& paths) {
  json progs = json::array();
  uint64_t total_ns = 0, total_runs = 0;
  for (dp::Prog p : {dp::Prog::kFromVmTc, dp::Prog::kFromVmXdp, dp::Prog::kToVmTc}) {
    auto fd = dp::open_pinned_prog(paths.pin_dir, p);
    if (!fd) continue;
    auto rs = dp::prog_run_stats(fd->get());
    if (!rs) continue;
    total_ns += rs->run_time_ns;
    total_runs += rs->run_cnt;
    progs.push_back(
        {{"program", dp::prog_name(p)},
         {"id", rs->id},
         {"run_count", rs->run_cnt},
         {"run_time_ns", rs->run_time_ns},
         {"ns_per_packet",
          rs->run_cnt ? json(double(rs->run_time_ns) / double(rs->run_cnt)) : json(nullptr)}});
  }
  return {{"stats_enabled", dp::run_time_stats_enabled()},
          {"programs", progs},
          {"run_count", total_runs},
          {"run_time_ns", total_ns},
          {"cpu_seconds", double(total_ns) / 1e9}};
}
}  // namespace

Result<Live> open_live(const Paths& paths) {
  auto st = read_state(paths);
  if (!st) return fail(std::move(st.error()));
  auto maps = dp::open_pinned_maps(paths.pin_dir);
  if (!maps) {
    if (maps.error().kind() == ErrorKind::kNotFound)
      return fail(Error(ErrorKind::kNotFound, "nothing applied under " + paths.pin_dir));
    return fail(std::move(maps.error()));
  }
  auto cfg = dp::ConfigView::map(maps->config.get());
  if (!cfg) return fail(std::move(cfg.error()));
  Live l{st->value_or(State{}), std::move(*maps), cfg->active_gen()};
  return l;
}

const char* reason_name(int reason) { return dp::reason_name(reason); }

Result<json> status(const Paths& paths) {
  auto live = open_live(paths);
  if (!live) return fail(std::move(live.error()));
  uint32_t prog_from_tc = 0, prog_from_xdp = 0, prog_to_tc = 0;
  if (auto fd = dp::open_pinned_prog(paths.pin_dir, dp::Prog::kFromVmTc))
    prog_from_tc = dp::prog_id_of_fd(fd->get());
  if (auto fd = dp::open_pinned_prog(paths.pin_dir, dp::Prog::kFromVmXdp))
    prog_from_xdp = dp::prog_id_of_fd(fd->get());
  if (auto fd = dp::open_pinned_prog(paths.pin_dir, dp::Prog::kToVmTc))
    prog_to_tc = dp::prog_id_of_fd(fd->get());

  json eps = json::array();
  size_t enforced = 0;
  const net::InterfaceIndexes ifindex;
  for (const auto& e : live->state.endpoints) {
    uint32_t now_ifindex = e.ifname.empty() ? 0 : ifindex(e.ifname);
    bool present = e.ifindex != 0 && now_ifindex == e.ifindex;
    zw_endpoint v{};
    bool in_map =
        present && dp::lookup_endpoint(live->maps.endpoints.get(), live->gen, e.ifindex, &v);
    bool to_vm = false, from_vm = false;
    if (present) {
      auto eg = dp::tc_prog_id(static_cast<int>(e.ifindex), dp::TcHook::kEgress);
      to_vm = eg && *eg != 0 && *eg == prog_to_tc;
      if (e.attach == "xdp") {
        auto li = dp::xdp_link_info(paths.link_pin(e.ifindex));
        from_vm =
            li && li->prog_id != 0 && li->prog_id == prog_from_xdp && li->ifindex == e.ifindex;
      } else {
        auto in = dp::tc_prog_id(static_cast<int>(e.ifindex), dp::TcHook::kIngress);
        from_vm = in && *in != 0 && *in == prog_from_tc;
      }
    }
    bool ok = present && in_map && to_vm && from_vm;
    enforced += ok;
    eps.push_back({{"vm", e.vm_name},
                   {"uuid", e.vm_uuid},
                   {"zone", e.zone},
                   {"ifname", e.ifname},
                   {"ifindex", e.ifindex},
                   {"attach", e.attach},
                   {"mac", e.mac},
                   {"addrs", e.addrs},
                   {"allowed", e.allowed},
                   {"present", present},
                   {"in_map", in_map},
                   {"from_vm_attached", from_vm},
                   {"to_vm_attached", to_vm},
                   {"enforced", ok}});
  }
  // Interfaces carrying this instance's programs that no endpoint claims:
  // taps hooked fail-closed before (or after) their VM was known.
  json unclaimed = json::array();
  std::set<uint32_t> claimed;
  for (const auto& e : live->state.endpoints)
    if (e.ifindex) claimed.insert(e.ifindex);
  uint32_t cfg_id = dp::map_id_of_fd(live->maps.config.get());
  if (struct if_nameindex* ifs = ::if_nameindex()) {
    for (auto* i = ifs; i->if_index != 0; ++i) {
      if (claimed.count(i->if_index)) continue;
      auto id = dp::tc_prog_id(static_cast<int>(i->if_index), dp::TcHook::kIngress);
      if (id && *id != 0 && dp::prog_uses_map(*id, cfg_id))
        unclaimed.push_back({{"ifname", i->if_name}, {"ifindex", i->if_index}});
    }
    if_freenameindex(ifs);
  }
  size_t ct = 0;
  if (auto keys = dp::map_keys<zw_ct_key>(live->maps.ct.get())) ct = keys->size();
  return json{{"pin_dir", paths.pin_dir},
              {"hooked_unclaimed", unclaimed},
              {"active_generation", live->gen},
              {"state_generation", live->state.generation},
              {"applied_at", live->state.applied_at},
              {"policy", live->state.policy_source},
              {"inventory", live->state.inventory_source},
              {"zones", live->state.zones},
              {"policy_entries", count_policy(live->maps.policy.get(), live->gen)},
              {"conntrack_entries", ct},
              {"endpoints_enforced", enforced},
              {"endpoints", eps}};
}

Result<json> stats(const Paths& paths) {
  auto live = open_live(paths);
  if (!live) return fail(std::move(live.error()));
  json reasons = json::object();
  for (int r = 0; r < ZW_R_MAX; ++r) {
    auto c = dp::percpu_sum<zw_counter>(live->maps.st_reason.get(), r, kAdd);
    if (!c) return fail(std::move(c.error()));
    reasons[dp::kReasonNames[r]] = counter(*c);
  }
  uint64_t now_ns = monotonic_ns();
  std::map<uint32_t, zw_rule_stats> rule_sums;
  std::vector<uint32_t> rule_ids{ZW_RULE_DEFAULT_INTRA, ZW_RULE_DEFAULT_INTER};
  for (const auto& r : live->state.rules) rule_ids.push_back(r.id);
  for (uint32_t id : rule_ids) {
    auto rs = dp::percpu_sum<zw_rule_stats>(live->maps.st_rule.get(), id, kAdd);
    if (!rs) return fail(std::move(rs.error()));
    rule_sums[id] = *rs;
  }
  auto rc = agg::rule_counters(live->state, rule_sums, now_ns);
  json eps = json::array();
  auto usage = conntrack_usage(live->maps);
  if (!usage) return fail(std::move(usage.error()));
  json cost = program_cost(paths);
  zw_ev_stats ev_total{};
  for (const auto& e : live->state.endpoints) {
    zw_endpoint ev{};
    bool in_map =
        e.ifindex && dp::lookup_endpoint(live->maps.endpoints.get(), live->gen, e.ifindex, &ev);
    auto flows = usage->find(e.id);
    // A VM without an interface here may have no counter slot (kNoEndpointId).
    const bool slot = e.id < ZW_MAX_ENDPOINTS;
    auto es = slot ? dp::percpu_sum<zw_ep_stats>(live->maps.st_ep.get(), e.id, kAdd)
                   : Result<zw_ep_stats>(zw_ep_stats{});
    if (!es) return fail(std::move(es.error()));
    auto evs = slot ? dp::percpu_sum<zw_ev_stats>(live->maps.st_ev.get(), e.id, kAdd)
                    : Result<zw_ev_stats>(zw_ev_stats{});
    if (!evs) return fail(std::move(evs.error()));
    agg::add(ev_total, *evs);
    eps.push_back({{"vm", e.vm_name},
                   {"ifname", e.ifname},
                   {"zone", e.zone},
                   {"from_vm_pass", counter(es->from_vm_pass)},
                   {"from_vm_drop", counter(es->from_vm_drop)},
                   {"to_vm_pass", counter(es->to_vm_pass)},
                   {"to_vm_drop", counter(es->to_vm_drop)},
                   {"tracked_flows", flows == usage->end() ? 0u : flows->second},
                   {"max_flows", in_map ? json(ev.ct_limit) : json(nullptr)},
                   {"events", ev_json(*evs)},
                   // Estimated (see docs/observability.md).
                   {"cpu_seconds_estimated", agg::endpoint_cpu_seconds(*es, e.attach, cost)}});
  }
  auto unowned = dp::percpu_sum<zw_ev_stats>(live->maps.st_ev.get(), ZW_EV_SLOT_NONE, kAdd);
  if (!unowned) return fail(std::move(unowned.error()));
  agg::add(ev_total, *unowned);
  // Zone pairs: each pair's counter slot from zw_zp_index; slot
  // ZW_ZP_OTHER holds the pairs that came after the slots ran out.
  auto zp_keys = dp::map_keys<zw_zp_stats_key>(live->maps.zp_index.get());
  if (!zp_keys) return fail(std::move(zp_keys.error()));
  std::vector<std::pair<zw_zp_stats_key, zw_zp_stats>> zp;
  for (const zw_zp_stats_key& k : *zp_keys) {
    uint32_t slot = 0;
    if (!dp::map_lookup(live->maps.zp_index.get(), k, &slot) || slot == ZW_ZP_OTHER) continue;
    auto v = dp::percpu_sum<zw_zp_stats>(live->maps.st_zpair.get(), slot, kAdd);
    if (!v) return fail(std::move(v.error()));
    zp.emplace_back(k, *v);
  }
  json pairs = agg::zone_pairs(live->state, std::move(zp));
  auto other = dp::percpu_sum<zw_zp_stats>(live->maps.st_zpair.get(), ZW_ZP_OTHER, kAdd);
  if (!other) return fail(std::move(other.error()));
  if (other->pass.packets || other->drop.packets || other->audit.packets)
    pairs.push_back(agg::zone_pair("*other*", "*other*", *other));
  size_t ct = 0;
  if (auto keys = dp::map_keys<zw_ct_key>(live->maps.ct.get())) ct = keys->size();
  json events = ev_json(ev_total);
  events["unowned"] = ev_json(*unowned);
  return json{{"active_generation", live->gen},
              {"reasons", reasons},
              {"rules", rc.rules},
              {"never_matched", rc.never_matched},
              {"zone_pairs", pairs},
              {"endpoints", eps},
              {"events", events},
              {"cpu", cost},
              {"conntrack_entries", ct}};
}

}  // namespace zw::engine
