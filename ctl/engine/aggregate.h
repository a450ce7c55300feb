// The pure half of `zonewall stats`: per-CPU values summed and the counters
// named and shaped into the stats document. No kernel access here:
// engine/inspect.cpp reads the maps through ctl/datapath and hands the
// values over, so the unit tests can check the aggregation without a kernel.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "engine/state.h"
#include "zonewall/abi/zonewall.h"

namespace zw::engine::agg {

// Adds one CPU's value to an accumulator (rule stats: the latest last hit).
void add(zw_counter& acc, const zw_counter& one);
void add(zw_rule_stats& acc, const zw_rule_stats& one);
void add(zw_ep_stats& acc, const zw_ep_stats& one);
void add(zw_ev_stats& acc, const zw_ev_stats& one);
void add(zw_zp_stats& acc, const zw_zp_stats& one);

// For datapath::percpu_sum / percpu_hash_sum, which take a callable.
inline constexpr auto kAdd = [](auto& acc, const auto& one) { add(acc, one); };

template <typename V>
V sum(const std::vector<V>& per_cpu) {
  V acc{};
  for (const V& v : per_cpu) add(acc, v);
  return acc;
}

nlohmann::json counter(const zw_counter& c);   // {"packets", "bytes"}
nlohmann::json ev_json(const zw_ev_stats& s);  // {"emitted", "suppressed", "lost"}

// A zone id named through the state; "zone#N" for a zone of an older policy.
std::string zone_name(const State& s, uint16_t id);

// The rules section: both defaults, then the state's rules in order, each
// {"id", "name", "action", "summary", "packets", "bytes", "audit_packets",
// "last_hit_seconds_ago" (null: never)}; and the state's rules that never
// matched. `sums` holds each rule id's counters summed over CPUs (a missing
// id counts as zero); `now_ns` is CLOCK_MONOTONIC, read before the counters.
struct RuleCounters {
  nlohmann::json rules;
  nlohmann::json never_matched;
};
RuleCounters rule_counters(const State& s, const std::map<uint32_t, zw_rule_stats>& sums,
                           uint64_t now_ns);

// {"src_zone", "dst_zone", "pass", "drop", "audit"}.
nlohmann::json zone_pair(const std::string& src, const std::string& dst, const zw_zp_stats& v);

// Zone pairs named and sorted by (source, destination) zone id.
nlohmann::json zone_pairs(const State& s,
                          std::vector<std::pair<zw_zp_stats_key, zw_zp_stats>> sums);

// Average ns per packet of program `prog` in a program-cost document
// ({"programs": [{"program", "ns_per_packet"}...]}); 0 if it never ran timed.
double ns_per_packet(const nlohmann::json& cost, const char* prog);

// Estimated datapath CPU seconds of one VM interface: its packets on each
// hook times that hook program's average cost (attach "xdp" or "tc").
double endpoint_cpu_seconds(const zw_ep_stats& es, const std::string& attach,
                            const nlohmann::json& cost);

}  // namespace zw::engine::agg
