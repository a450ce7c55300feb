// Counter aggregation and shaping for `zonewall stats` (pure).
#include "engine/aggregate.h"

#include <algorithm>
#include <tuple>

namespace zw::engine::agg {

using nlohmann::json;

void add(zw_counter& acc, const zw_counter& one) {
  acc.packets += one.packets;
  acc.bytes += one.bytes;
}

void add(zw_rule_stats& acc, const zw_rule_stats& one) {
  acc.packets += one.packets;
  acc.bytes += one.bytes;
  acc.audit_packets += one.audit_packets;
  acc.last_hit_ns = std::max(acc.last_hit_ns, one.last_hit_ns);
}

void add(zw_ep_stats& acc, const zw_ep_stats& one) {
  add(acc.from_vm_pass, one.from_vm_pass);
  add(acc.from_vm_drop, one.from_vm_drop);
  add(acc.to_vm_pass, one.to_vm_pass);
  add(acc.to_vm_drop, one.to_vm_drop);
}

void add(zw_ev_stats& acc, const zw_ev_stats& one) {
  acc.emitted += one.emitted;
  acc.suppressed += one.suppressed;
  acc.lost += one.lost;
}

void add(zw_zp_stats& acc, const zw_zp_stats& one) {
  add(acc.pass, one.pass);
  add(acc.drop, one.drop);
  add(acc.audit, one.audit);
}

json counter(const zw_counter& c) { return {{"packets", c.packets}, {"bytes", c.bytes}}; }

json ev_json(const zw_ev_stats& s) {
  return {{"emitted", s.emitted}, {"suppressed", s.suppressed}, {"lost", s.lost}};
}

std::string zone_name(const State& s, uint16_t id) {
  if (id == ZW_ZONE_WORLD) return "world";
  if (id == ZW_ZONE_UNZONED) return "unzoned";
  for (const auto& [name, zid] : s.zones)
    if (zid == id) return name;
  return "zone#" + std::to_string(id);  // a zone of an older policy
}

RuleCounters rule_counters(const State& s, const std::map<uint32_t, zw_rule_stats>& sums,
                           uint64_t now_ns) {
  auto one = [&](uint32_t id, const std::string& name, const std::string& action,
                 const std::string& summary) {
    auto it = sums.find(id);
    zw_rule_stats rs = it != sums.end() ? it->second : zw_rule_stats{};
    json j{{"id", id},
           {"name", name},
           {"action", action},
           {"summary", summary},
           {"packets", rs.packets},
           {"bytes", rs.bytes},
           {"audit_packets", rs.audit_packets}};
    // A hit after `now_ns` was read (a packet on another CPU meanwhile) is
    // "just now", not 584 years ago.
    j["last_hit_seconds_ago"] =
        rs.last_hit_ns ? json(rs.last_hit_ns >= now_ns ? 0.0 : (now_ns - rs.last_hit_ns) / 1e9)
                       : json(nullptr);
    return j;
  };
  auto dflt = [&](const char* k) {
    auto it = s.defaults.find(k);
    return it == s.defaults.end() ? std::string("?") : it->second;
  };
  RuleCounters out{json::array(), json::array()};
  out.rules.push_back(
      one(ZW_RULE_DEFAULT_INTRA, "default:intra_zone", dflt("intra_zone"), "no rule matched"));
  out.rules.push_back(
      one(ZW_RULE_DEFAULT_INTER, "default:inter_zone", dflt("inter_zone"), "no rule matched"));
  for (const auto& r : s.rules) {
    json j = one(r.id, r.name, r.action, r.summary);
    if (j["packets"] == 0) out.never_matched.push_back(r.name);
    out.rules.push_back(std::move(j));
  }
  return out;
}

json zone_pair(const std::string& src, const std::string& dst, const zw_zp_stats& v) {
  return {{"src_zone", src},
          {"dst_zone", dst},
          {"pass", counter(v.pass)},
          {"drop", counter(v.drop)},
          {"audit", counter(v.audit)}};
}

json zone_pairs(const State& s, std::vector<std::pair<zw_zp_stats_key, zw_zp_stats>> sums) {
  std::sort(sums.begin(), sums.end(), [](const auto& a, const auto& b) {
    return std::tie(a.first.src_zone, a.first.dst_zone) <
           std::tie(b.first.src_zone, b.first.dst_zone);
  });
  json pairs = json::array();
  for (const auto& [k, v] : sums)
    pairs.push_back(zone_pair(zone_name(s, k.src_zone), zone_name(s, k.dst_zone), v));
  return pairs;
}

double ns_per_packet(const json& cost, const char* prog) {
  if (!cost.is_object() || !cost.contains("programs")) return 0;
  for (const auto& p : cost["programs"])
    if (p.value("program", "") == prog && p.contains("ns_per_packet") &&
        p["ns_per_packet"].is_number())
      return p["ns_per_packet"].get<double>();
  return 0;
}

double endpoint_cpu_seconds(const zw_ep_stats& es, const std::string& attach, const json& cost) {
  uint64_t from_pk = es.from_vm_pass.packets + es.from_vm_drop.packets;
  uint64_t to_pk = es.to_vm_pass.packets + es.to_vm_drop.packets;
  double from_ns =
      double(from_pk) * ns_per_packet(cost, attach == "xdp" ? "zw_from_vm_xdp" : "zw_from_vm_tc");
  double to_ns = double(to_pk) * ns_per_packet(cost, "zw_to_vm_tc");
  return (from_ns + to_ns) / 1e9;
}

}  // namespace zw::engine::agg
