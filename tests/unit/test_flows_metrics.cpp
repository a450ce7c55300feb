// Pure parts of flows, stats and metrics: events named and formatted
// (allow/deny/audit, IPv4/IPv6, ICMP, ARP, ids nobody knows, time), the
// stats aggregation (per-CPU sums, rules that never matched, zone pairs, the
// CPU estimate) and the Prometheus text, checked by the real
// `promtool check metrics` and by a parser here (HELP/TYPE once per family,
// counters end in _total, no duplicate series, label values escaped and
// read back as written — VM names come from libvirt, a guest owner's choice).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "daemon/metrics.h"
#include "datapath/reasons.h"
#include "engine/aggregate.h"
#include "engine/flows.h"
#include "util/net.h"

namespace zw {
namespace {

using nlohmann::json;

// web (zone 3) and db (zone 4); two rules; web-1, db-1 and a VM with an awkward
// name, as libvirt allows it.
const char* kOddVm = "evil\"vm\\\nname-ü";

engine::State lab_state() {
  engine::State s;
  s.generation = 3;
  s.zones = {{"web", 3}, {"db", 4}};
  s.rules = {{10, "web-db-pg", "allow", "web -> db tcp 5432"},
             {11, "no-smb", "deny (audit)", "* -> * tcp 445"},
             {12, "db-web-deny", "deny", "db -> web"}};
  s.defaults = {{"intra_zone", "allow"}, {"inter_zone", "deny"}};
  engine::EndpointState w{.vm_name = "web-1",
                          .ifname = "vnet1",
                          .ifindex = 0,
                          .attach = "tc",
                          .id = 0,
                          .zone = "web",
                          .addrs = {"10.1.0.1/24", "fd00::1"}};
  engine::EndpointState d{.vm_name = "db-1",
                          .ifname = "vnet2",
                          .ifindex = 0,
                          .attach = "xdp",
                          .id = 1,
                          .zone = "db",
                          .addrs = {"10.1.0.2", "fd00::2/64"}};
  engine::EndpointState o{.vm_name = kOddVm,
                          .ifname = "vnet3",
                          .ifindex = 0,
                          .attach = "tc",
                          .id = 2,
                          .zone = "web",
                          .addrs = {"10.1.0.3"}};
  s.endpoints = {w, d, o};
  return s;
}

void set_addr(uint8_t* out, const std::string& a) {
  auto addr = net::parse_addr(a);
  ASSERT_TRUE(addr.has_value()) << a;
  std::memcpy(out, addr->bytes.data(), 16);
}

zw_event event(const std::string& src, const std::string& dst, uint8_t proto, int reason,
               uint32_t rule, uint32_t ep, uint8_t hook = 0) {
  zw_event e{};
  e.ts_ns = 5'000'000'123ull;  // 5 s after boot
  set_addr(e.saddr, src);
  set_addr(e.daddr, dst);
  e.sport = htons(45000);
  e.dport = htons(5432);
  e.ifindex = 0;  // no such interface
  e.ep_id = ep;
  e.rule_id = rule;
  e.len = 74;
  e.gen = 3;
  e.src_zone = 3;
  e.dst_zone = 4;
  e.proto = proto;
  e.hook = hook;
  e.reason = static_cast<uint8_t>(reason);
  return e;
}

// 2026-01-02T03:04:05 UTC minus the event's 5 s of monotonic time.
constexpr int64_t kBoot = 1767323045ll * 1'000'000'000ll - 5'000'000'000ll;

TEST(FlowEvents, AllowedNewFlowNamedFromState) {
  auto n = engine::flow_names(lab_state());
  auto j = engine::event_json(event("10.1.0.1", "10.1.0.2", 6, ZW_R_PASS_NEW, 10, 0), n, kBoot);
  EXPECT_EQ(j["time"], "2026-01-02T03:04:05.000000Z");
  EXPECT_EQ(j["verdict"], "allow");
  EXPECT_EQ(j["reason"], "pass_new");
  EXPECT_EQ(j["rule"], "web-db-pg");
  EXPECT_EQ(j["hook"], "from_vm");
  EXPECT_EQ(j["vm"], "web-1");
  EXPECT_EQ(j["ifname"], "vnet1");
  EXPECT_EQ(j["generation"], 3);
  EXPECT_EQ(j["len"], 74);
  EXPECT_EQ(j["proto"], "tcp");
  EXPECT_EQ(j["src"],
            (json{{"addr", "10.1.0.1"}, {"port", 45000}, {"vm", "web-1"}, {"zone", "web"}}));
  EXPECT_EQ(j["dst"], (json{{"addr", "10.1.0.2"}, {"port", 5432}, {"vm", "db-1"}, {"zone", "db"}}));
  EXPECT_FALSE(j.contains("icmp_type"));
  EXPECT_EQ(engine::event_text(j),
            "2026-01-02T03:04:05.000000Z allow 10.1.0.1:45000 (web-1/web) -> 10.1.0.2:5432 "
            "(db-1/db) tcp rule=web-db-pg reason=pass_new on=vnet1/from_vm");
}

TEST(FlowEvents, DenyAndAuditToVmIPv6) {
  auto n = engine::flow_names(lab_state());
  auto de = event("fd00::2", "fd00::1", 6, ZW_R_DROP_POLICY, 12, 0, /*hook=*/1);
  de.src_zone = 4;
  de.dst_zone = 3;
  auto deny = engine::event_json(de, n, kBoot);
  EXPECT_EQ(deny["verdict"], "deny");
  EXPECT_EQ(deny["reason"], "drop_policy");
  EXPECT_EQ(deny["rule"], "db-web-deny");
  EXPECT_EQ(deny["hook"], "to_vm");
  EXPECT_EQ(deny["src"]["addr"], "fd00::2");
  EXPECT_EQ(deny["src"]["vm"], "db-1");
  EXPECT_EQ(deny["dst"]["vm"], "web-1");
  std::string text = engine::event_text(deny);
  EXPECT_NE(text.find(" deny  [fd00::2]:45000 (db-1/db) -> [fd00::1]:5432 (web-1/web) tcp "
                      "rule=db-web-deny reason=drop_policy on=vnet1/to_vm"),
            std::string::npos)
      << text;

  auto audit =
      engine::event_json(event("10.1.0.1", "10.1.0.2", 6, ZW_R_PASS_AUDIT, 11, 0), n, kBoot);
  EXPECT_EQ(audit["verdict"], "audit");
  EXPECT_EQ(audit["reason"], "pass_audit");
  EXPECT_EQ(audit["rule"], "no-smb");
  EXPECT_NE(engine::event_text(audit).find(" audit 10.1.0.1:45000"), std::string::npos);
  // Every drop reason is a deny; every pass but audit an allow.
  for (int r = 0; r < ZW_R_MAX; ++r) {
    auto j = engine::event_json(event("10.1.0.1", "10.1.0.2", 6, r, ZW_RULE_NONE, 0), n, kBoot);
    EXPECT_EQ(j["verdict"], r == ZW_R_PASS_AUDIT  ? "audit"
                            : r < ZW_R_FIRST_DROP ? "allow"
                                                  : "deny")
        << r;
    EXPECT_NE(j["reason"], "unknown") << r;
  }
}

TEST(FlowEvents, IcmpCarriesTypeAndNoPorts) {
  auto n = engine::flow_names(lab_state());
  auto e = event("10.1.0.1", "10.1.0.2", 1, ZW_R_DROP_POLICY, ZW_RULE_DEFAULT_INTER, 0);
  e.icmp_type = 8;
  auto j = engine::event_json(e, n, kBoot);
  EXPECT_EQ(j["proto"], "icmp");
  EXPECT_EQ(j["icmp_type"], 8);
  EXPECT_FALSE(j["src"].contains("port"));
  EXPECT_FALSE(j["dst"].contains("port"));
  EXPECT_EQ(j["rule"], "default:inter_zone");
  EXPECT_NE(engine::event_text(j).find("10.1.0.1 (web-1/web) -> 10.1.0.2 (db-1/db) icmp type 8 "
                                       "rule=default:inter_zone"),
            std::string::npos)
      << engine::event_text(j);
  auto e6 = event("fd00::1", "fd00::2", 58, ZW_R_DROP_POLICY, ZW_RULE_DEFAULT_INTER, 0);
  e6.icmp_type = 128;
  auto j6 = engine::event_json(e6, n, kBoot);
  EXPECT_EQ(j6["proto"], "icmpv6");
  EXPECT_EQ(j6["icmp_type"], 128);
  // A protocol without a name is its number; it has no ports either.
  auto gre = engine::event_json(event("10.1.0.1", "10.1.0.2", 47, ZW_R_DROP_POLICY, 12, 0), n, 0);
  EXPECT_EQ(gre["proto"], 47);
  EXPECT_FALSE(gre["dst"].contains("port"));
  EXPECT_NE(engine::event_text(gre).find(" 47 rule=db-web-deny"), std::string::npos);
}

TEST(FlowEvents, ArpHasOnlyASender) {
  auto n = engine::flow_names(lab_state());
  auto e = event("10.1.0.9", "0.0.0.0", 0, ZW_R_DROP_SPOOF_ARP, ZW_RULE_NONE, 0);
  e.flags = ZW_EVF_ARP;
  e.src_zone = e.dst_zone = ZW_ZONE_NONE;
  auto j = engine::event_json(e, n, kBoot);
  EXPECT_EQ(j["proto"], "arp");
  EXPECT_EQ(j["dst"], nullptr);
  EXPECT_EQ(j["rule"], nullptr);
  // Not an address of any VM, but sent by web-1's interface.
  EXPECT_EQ(j["src"]["vm"], "web-1");
  EXPECT_EQ(j["src"]["zone"], "web");
  EXPECT_FALSE(j["src"].contains("port"));
  std::string text = engine::event_text(j);
  EXPECT_NE(text.find(" deny  10.1.0.9 (web-1/web) -> - arp rule=- reason=drop_spoof_arp"),
            std::string::npos)
      << text;
}

TEST(FlowEvents, UnknownIdsGetHonestPlaceholders) {
  auto n = engine::flow_names(lab_state());
  // An endpoint, zones and a rule that state.json does not know (an older
  // or newer generation), an address of no VM, a reason past the table.
  auto e = event("192.0.2.1", "192.0.2.2", 17, ZW_R_MAX + 3, 999, 4000);
  e.src_zone = 77;
  e.dst_zone = ZW_ZONE_WORLD;
  e.ifindex = 0;
  auto j = engine::event_json(e, n, kBoot);
  EXPECT_EQ(j["rule"], "rule#999");
  EXPECT_EQ(j["reason"], "unknown");
  EXPECT_EQ(j["verdict"], "deny");
  EXPECT_EQ(j["vm"], nullptr);
  EXPECT_EQ(j["ifname"], nullptr);  // ifindex 0 has no name
  EXPECT_EQ(j["src"]["vm"], nullptr);
  EXPECT_EQ(j["src"]["zone"], "zone#77");
  EXPECT_EQ(j["dst"]["zone"], "world");
  std::string text = engine::event_text(j);
  EXPECT_NE(text.find("192.0.2.1:45000 (-/zone#77) -> 192.0.2.2:5432 (-/world) udp rule=rule#999 "
                      "reason=unknown on=-/from_vm"),
            std::string::npos)
      << text;
  // Nothing named at all (no state.json yet): still an event.
  auto bare = engine::event_json(e, engine::FlowNames{}, 0);
  EXPECT_EQ(bare["src"]["zone"], "zone#77");
  EXPECT_EQ(bare["dst"]["zone"], "world");
  EXPECT_EQ(bare["rule"], "rule#999");
  auto dflt = e;
  dflt.rule_id = ZW_RULE_DEFAULT_INTER;
  EXPECT_EQ(engine::event_json(dflt, engine::FlowNames{}, 0)["rule"], "default:inter_zone");
  EXPECT_NO_THROW((void)bare.dump());
  // Zones not judged: no zone, except the hook VM's own.
  auto nz = event("10.1.0.1", "10.1.0.2", 6, ZW_R_DROP_TCP_NO_SYN, ZW_RULE_NONE, 0);
  nz.src_zone = nz.dst_zone = ZW_ZONE_NONE;
  auto jn = engine::event_json(nz, n, 0);
  EXPECT_EQ(jn["src"]["zone"], "web");
  EXPECT_EQ(jn["dst"]["zone"], nullptr);
}

TEST(FlowEvents, TimeConversion) {
  auto n = engine::flow_names(lab_state());
  auto e = event("10.1.0.1", "10.1.0.2", 6, ZW_R_PASS_NEW, 10, 0);
  e.ts_ns = 1'999'999;  // 1.999999 ms after boot
  EXPECT_EQ(engine::event_json(e, n, 0)["time"], "1970-01-01T00:00:00.001999Z");
  EXPECT_EQ(engine::event_json(e, n, 86'400'000'000'000ll)["time"], "1970-01-02T00:00:00.001999Z");
  // A realtime clock set before the epoch: a positive fraction, no ".-".
  EXPECT_EQ(engine::event_json(e, n, -1'000'000'000ll)["time"], "1969-12-31T23:59:59.001999Z");
  // The offset is realtime - monotonic now.
  timespec m{}, r{};
  clock_gettime(CLOCK_MONOTONIC, &m);
  int64_t off = engine::monotonic_to_realtime_ns();
  clock_gettime(CLOCK_REALTIME, &r);
  int64_t mono = int64_t(m.tv_sec) * 1'000'000'000ll + m.tv_nsec;
  int64_t real = int64_t(r.tv_sec) * 1'000'000'000ll + r.tv_nsec;
  EXPECT_LE(mono + off, real);
  EXPECT_GT(mono + off, real - 1'000'000'000ll);
}

TEST(FlowEvents, OddNamesStayReadableAndSafe) {
  auto n = engine::flow_names(lab_state());
  auto e = event("10.1.0.3", "10.1.0.2", 6, ZW_R_DROP_POLICY, ZW_RULE_DEFAULT_INTER, 2);
  auto j = engine::event_json(e, n, kBoot);
  EXPECT_EQ(j["vm"], kOddVm);  // JSON keeps the name exactly (the encoder escapes)
  EXPECT_EQ(json::parse(j.dump())["src"]["vm"], kOddVm);
  // The text line shows control bytes as \xNN: no newline, no terminal escape.
  std::string text = engine::event_text(j);
  EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  EXPECT_NE(text.find("(evil\"vm\\\\x0aname-ü/web)"), std::string::npos) << text;
  json esc = j;
  esc["src"]["vm"] = "a\x1b]0;owned\x07z";
  text = engine::event_text(esc);
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_NE(text.find("a\\x1b]0;owned\\x07z"), std::string::npos) << text;
  // A malformed event (fields missing or of the wrong type) is not a crash.
  EXPECT_EQ(engine::event_text(json::object()), "- -     - -> - - rule=- reason=- on=-/-");
  EXPECT_NO_THROW((void)engine::event_text(json{{"src", 5}, {"proto", true}, {"time", 1}}));
  EXPECT_NO_THROW((void)engine::event_text(json::array()));
}

// ---- aggregation ----

TEST(StatsAggregation, PerCpuSums) {
  zw_rule_stats a{1, 100, 50, 0}, b{2, 200, 70, 1}, c{0, 0, 0, 0};
  auto r = engine::agg::sum(std::vector<zw_rule_stats>{a, b, c});
  EXPECT_EQ(r.packets, 3u);
  EXPECT_EQ(r.bytes, 300u);
  EXPECT_EQ(r.audit_packets, 1u);
  EXPECT_EQ(r.last_hit_ns, 70u);  // the latest CPU's, not a sum
  zw_ep_stats e1{{1, 10}, {2, 20}, {3, 30}, {4, 40}}, e2{{10, 1}, {20, 2}, {30, 3}, {40, 4}};
  auto e = engine::agg::sum(std::vector<zw_ep_stats>{e1, e2});
  EXPECT_EQ(e.from_vm_pass.packets, 11u);
  EXPECT_EQ(e.from_vm_drop.bytes, 22u);
  EXPECT_EQ(e.to_vm_pass.packets, 33u);
  EXPECT_EQ(e.to_vm_drop.bytes, 44u);
  zw_zp_stats z1{{1, 1}, {2, 2}, {3, 3}}, z2{{1, 1}, {0, 0}, {5, 5}};
  auto z = engine::agg::sum(std::vector<zw_zp_stats>{z1, z2});
  EXPECT_EQ(z.pass.packets, 2u);
  EXPECT_EQ(z.drop.packets, 2u);
  EXPECT_EQ(z.audit.bytes, 8u);
  zw_ev_stats v1{1, 2, 3, 0}, v2{4, 5, 6, 0};
  auto v = engine::agg::sum(std::vector<zw_ev_stats>{v1, v2});
  EXPECT_EQ(engine::agg::ev_json(v), (json{{"emitted", 5}, {"suppressed", 7}, {"lost", 9}}));
  // Through the callable datapath::percpu_sum takes.
  zw_counter acc{};
  engine::agg::kAdd(acc, zw_counter{2, 3});
  engine::agg::kAdd(acc, zw_counter{4, 5});
  EXPECT_EQ(engine::agg::counter(acc), (json{{"packets", 6}, {"bytes", 8}}));
}

TEST(StatsAggregation, RulesNeverMatchedAndLastHit) {
  auto s = lab_state();
  const uint64_t now = 100'000'000'000ull;
  std::map<uint32_t, zw_rule_stats> sums{
      {ZW_RULE_DEFAULT_INTER, {5, 500, now - 2'000'000'000ull, 0}},
      {10, {3, 300, now - 500'000'000ull, 0}},
      {11, {4, 400, now + 1'000, 4}},  // hit on another CPU after `now` was read
  };
  auto rc = engine::agg::rule_counters(s, sums, now);
  ASSERT_EQ(rc.rules.size(), 5u);
  EXPECT_EQ(rc.rules[0]["name"], "default:intra_zone");
  EXPECT_EQ(rc.rules[0]["action"], "allow");
  EXPECT_EQ(rc.rules[0]["packets"], 0);
  EXPECT_EQ(rc.rules[0]["last_hit_seconds_ago"], nullptr);
  EXPECT_EQ(rc.rules[1]["name"], "default:inter_zone");
  EXPECT_EQ(rc.rules[1]["action"], "deny");
  EXPECT_DOUBLE_EQ(rc.rules[1]["last_hit_seconds_ago"].get<double>(), 2.0);
  EXPECT_EQ(rc.rules[2]["name"], "web-db-pg");
  EXPECT_EQ(rc.rules[2]["bytes"], 300);
  EXPECT_EQ(rc.rules[2]["audit_packets"], 0);
  EXPECT_DOUBLE_EQ(rc.rules[2]["last_hit_seconds_ago"].get<double>(), 0.5);
  EXPECT_EQ(rc.rules[3]["name"], "no-smb");
  EXPECT_EQ(rc.rules[3]["action"], "deny (audit)");
  EXPECT_EQ(rc.rules[3]["audit_packets"], 4);
  EXPECT_EQ(rc.rules[3]["last_hit_seconds_ago"], 0.0);
  EXPECT_EQ(rc.rules[4]["summary"], "db -> web");
  // Only the policy's own rules that never matched (defaults are not rules
  // someone wrote).
  EXPECT_EQ(rc.never_matched, json::array({"db-web-deny"}));
  auto none = engine::agg::rule_counters(s, {}, now);
  EXPECT_EQ(none.never_matched, json::array({"web-db-pg", "no-smb", "db-web-deny"}));
  // No state (nothing applied by this controller): the defaults only.
  auto empty = engine::agg::rule_counters(engine::State{}, {}, now);
  ASSERT_EQ(empty.rules.size(), 2u);
  EXPECT_EQ(empty.rules[0]["action"], "?");
  EXPECT_TRUE(empty.never_matched.empty());
}

TEST(StatsAggregation, ZonePairsNamedAndSorted) {
  auto s = lab_state();
  auto pairs = engine::agg::zone_pairs(s, {{{4, 3}, {{0, 0}, {7, 700}, {0, 0}}},
                                           {{3, 4}, {{3, 300}, {1, 100}, {2, 200}}},
                                           {{ZW_ZONE_WORLD, 3}, {{1, 60}, {0, 0}, {0, 0}}},
                                           {{3, 42}, {{0, 0}, {1, 1}, {0, 0}}}});
  ASSERT_EQ(pairs.size(), 4u);
  EXPECT_EQ(pairs[0]["src_zone"], "world");
  EXPECT_EQ(pairs[0]["dst_zone"], "web");
  EXPECT_EQ(pairs[1]["src_zone"], "web");
  EXPECT_EQ(pairs[1]["dst_zone"], "db");
  EXPECT_EQ(pairs[1]["audit"], (json{{"packets", 2}, {"bytes", 200}}));
  EXPECT_EQ(pairs[1]["pass"], (json{{"packets", 3}, {"bytes", 300}}));
  EXPECT_EQ(pairs[2]["dst_zone"], "zone#42");
  EXPECT_EQ(pairs[3]["src_zone"], "db");
  EXPECT_EQ(pairs[3]["drop"]["packets"], 7);
  EXPECT_EQ(engine::agg::zone_name(s, ZW_ZONE_UNZONED), "unzoned");
}

TEST(StatsAggregation, CpuEstimatePerInterface) {
  json cost{{"programs",
             {{{"program", "zw_from_vm_tc"}, {"ns_per_packet", 100.0}},
              {{"program", "zw_from_vm_xdp"}, {"ns_per_packet", 40.0}},
              {{"program", "zw_to_vm_tc"}, {"ns_per_packet", 200.0}},
              {{"program", "zw_never_ran"}, {"ns_per_packet", nullptr}}}}};
  zw_ep_stats es{{10, 0}, {5, 0}, {1, 0}, {1, 0}};
  EXPECT_DOUBLE_EQ(engine::agg::endpoint_cpu_seconds(es, "tc", cost),
                   (15 * 100.0 + 2 * 200.0) / 1e9);
  EXPECT_DOUBLE_EQ(engine::agg::endpoint_cpu_seconds(es, "xdp", cost),
                   (15 * 40.0 + 2 * 200.0) / 1e9);
  EXPECT_EQ(engine::agg::ns_per_packet(cost, "zw_never_ran"), 0.0);
  EXPECT_EQ(engine::agg::ns_per_packet(json::object(), "zw_to_vm_tc"), 0.0);
  EXPECT_EQ(engine::agg::endpoint_cpu_seconds(es, "tc", json{{"programs", json::array()}}), 0.0);
}

// ---- metrics ----

// A stats document shaped like engine::stats' output, with awkward names.
json stats_doc() {
  auto s = lab_state();
  json reasons = json::object();
  for (int r = 0; r < ZW_R_MAX; ++r)
    reasons[datapath::reason_name(r)] = {{"packets", r}, {"bytes", r * 100}};
  auto rc = engine::agg::rule_counters(
      s, {{10, {3, 300, 1, 0}}, {11, {4, 400, 1, 4}}, {ZW_RULE_DEFAULT_INTER, {2, 20, 1, 0}}}, 10);
  auto ep = [](const char* vm, const char* ifname, const char* zone, uint64_t n) {
    return json{{"vm", vm},
                {"ifname", ifname},
                {"zone", zone},
                {"from_vm_pass", {{"packets", n}, {"bytes", n * 60}}},
                {"from_vm_drop", {{"packets", 1}, {"bytes", 60}}},
                {"to_vm_pass", {{"packets", n}, {"bytes", n * 60}}},
                {"to_vm_drop", {{"packets", 0}, {"bytes", 0}}},
                {"events", {{"emitted", n}, {"suppressed", 1}, {"lost", 0}}},
                {"cpu_seconds_estimated", 1.5e-6}};
  };
  return {{"active_generation", 3},
          {"reasons", reasons},
          {"rules", rc.rules},
          {"never_matched", rc.never_matched},
          {"zone_pairs", engine::agg::zone_pairs(s, {{{3, 4}, {{3, 300}, {1, 100}, {2, 200}}}})},
          {"endpoints",
           {ep("web-1", "vnet1", "web", 7), ep(kOddVm, "vnet3", "web", 2),
            ep("quote\"back\\slash", "tap\"x\\", "db", 1),
            // A defined VM that is not running, with two NICs: no interface.
            ep("stopped-1", "", "db", 0), ep("stopped-1", "", "db", 0)}},
          {"events",
           {{"emitted", 10},
            {"suppressed", 3},
            {"lost", 0},
            {"unowned", {{"emitted", 1}, {"suppressed", 0}, {"lost", 0}}}}},
          {"cpu",
           {{"stats_enabled", true},
            {"programs",
             {{{"program", "zw_from_vm_tc"}, {"run_count", 10}, {"run_time_ns", 2500}},
              {{"program", "zw_to_vm_tc"}, {"run_count", 9}, {"run_time_ns", 1800}}}},
            {"run_count", 19},
            {"run_time_ns", 4300},
            {"cpu_seconds", 4.3e-6}}},
          {"conntrack_entries", 4}};
}

json status_doc() {
  return {{"endpoints", json::array({json::object(), json::object(), json::object()})},
          {"endpoints_enforced", 2}};
}

// Reads a label set's values back the way Prometheus does.
std::map<std::string, std::string> parse_labels(const std::string& s, std::string* err) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t eq = s.find('=', i);
    if (eq == std::string::npos || eq + 1 >= s.size() || s[eq + 1] != '"') {
      *err = "bad label at " + s.substr(i);
      return out;
    }
    std::string name = s.substr(i, eq - i), v;
    size_t j = eq + 2;
    for (; j < s.size() && s[j] != '"'; ++j) {
      if (s[j] == '\\') {
        ++j;
        if (j >= s.size()) break;
        if (s[j] == 'n')
          v += '\n';
        else if (s[j] == '\\' || s[j] == '"')
          v += s[j];
        else
          *err = "bad escape \\" + std::string(1, s[j]);
      } else {
        v += s[j];
      }
    }
    if (j >= s.size()) {
      *err = "unterminated label value in " + s;
      return out;
    }
    if (out.count(name)) *err = "label " + name + " twice";
    out[name] = v;
    i = j + 1;
    if (i < s.size() && s[i] == ',') ++i;
  }
  return out;
}

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  std::string value;
};

// Parses the exposition text; every structural problem goes to `problems`.
std::vector<Sample> parse_exposition(const std::string& text, std::vector<std::string>& problems) {
  std::vector<Sample> out;
  std::map<std::string, int> help, type;
  std::map<std::string, std::string> types;
  std::set<std::string> series;
  auto bad = [&](int line_no, const std::string& what) {
    problems.push_back("line " + std::to_string(line_no) + ": " + what);
  };
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) {
      bad(line_no + 1, "unterminated");
      break;
    }
    std::string line = text.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (line.rfind("# HELP ", 0) == 0) {
      std::string name = line.substr(7, line.find(' ', 7) - 7);
      if (++help[name] != 1) bad(line_no, "HELP twice for " + name);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      std::string name = rest.substr(0, rest.find(' '));
      std::string t = rest.substr(rest.find(' ') + 1);
      if (++type[name] != 1) bad(line_no, "TYPE twice for " + name);
      if (t != "counter" && t != "gauge") bad(line_no, "type " + t);
      if (!help.count(name)) bad(line_no, "TYPE before HELP for " + name);
      if (t == "counter" && !name.ends_with("_total")) bad(line_no, "counter " + name);
      types[name] = t;
      continue;
    }
    if (line.empty() || line[0] == '#') {
      bad(line_no, "stray line: " + line);
      continue;
    }
    Sample s;
    size_t brace = line.find('{');
    size_t sp = line.rfind(' ');
    if (sp == std::string::npos) {
      bad(line_no, "no value: " + line);
      continue;
    }
    if (brace != std::string::npos && brace < sp) {
      s.name = line.substr(0, brace);
      size_t close = line.rfind('}');
      if (close != sp - 1) bad(line_no, "labels end before the value: " + line);
      std::string err;
      s.labels = parse_labels(line.substr(brace + 1, close - brace - 1), &err);
      if (!err.empty()) bad(line_no, err + ": " + line);
    } else {
      s.name = line.substr(0, sp);
    }
    s.value = line.substr(sp + 1);
    if (!types.count(s.name)) bad(line_no, "sample before its TYPE: " + line);
    char* end = nullptr;
    std::strtod(s.value.c_str(), &end);
    if (s.value.empty() || !end || *end != 0) bad(line_no, "value: " + line);
    if (!series.insert(line.substr(0, sp)).second) bad(line_no, "duplicate series: " + line);
    out.push_back(std::move(s));
  }
  for (const auto& [name, n] : help)
    if (!type.count(name)) problems.push_back("HELP without TYPE: " + name);
  return out;
}

// `promtool check metrics` on the text: its exit code and output.
std::pair<int, std::string> promtool_check(const std::string& text) {
  char path[] = "/tmp/zw-unit-metrics-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return {-1, "mkstemp failed"};
  ::close(fd);
  std::ofstream(path) << text;
  std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, "popen failed"};
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) out += buf;
  int st = ::pclose(p);
  ::unlink(path);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

bool have_promtool() { return std::system("command -v promtool >/dev/null 2>&1") == 0; }

// The real `promtool check metrics` accepts the text (where it is missing:
// a failure in CI and as root, else a skip).
void expect_promtool_accepts(const std::string& text) {
  if (!have_promtool()) {
    if (std::getenv("CI") || std::getenv("ZW_REQUIRE_PRIVILEGED"))
      FAIL() << "promtool missing (Debian package prometheus; scripts/setup.sh)";
    GTEST_SKIP() << "promtool missing (Debian package prometheus)";
  }
  auto [rc, out] = promtool_check(text);
  EXPECT_EQ(rc, 0) << out << "\n" << text;
}

const Sample* find(const std::vector<Sample>& v, const std::string& name,
                   const std::map<std::string, std::string>& want) {
  for (const auto& s : v) {
    if (s.name != name) continue;
    bool ok = true;
    for (const auto& [k, val] : want) ok = ok && s.labels.count(k) && s.labels.at(k) == val;
    if (ok) return &s;
  }
  return nullptr;
}

TEST(Metrics, ValidExpositionWithOddNames) {
  daemon::ApplyInfo apply{4, 0.0123, 1767323045.5};
  apply.libvirt = true;
  apply.libvirt_full_reads = 3;
  apply.libvirt_domains_reread = 17;
  std::string text = daemon::render_metrics(stats_doc(), status_doc(), apply);
  std::vector<std::string> problems;
  auto samples = parse_exposition(text, problems);
  ASSERT_TRUE(problems.empty()) << testing::PrintToString(problems) << "\n" << text;
  // Label values read back exactly as the names were written.
  for (const char* vm : {kOddVm, "quote\"back\\slash"})
    EXPECT_TRUE(find(samples, "zonewall_interface_packets_total",
                     {{"vm", vm}, {"direction", "from_vm"}, {"verdict", "pass"}}))
        << vm << "\n"
        << text;
  auto* odd = find(samples, "zonewall_events_total", {{"vm", kOddVm}, {"outcome", "emitted"}});
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->labels.at("interface"), "vnet3");
  EXPECT_EQ(odd->value, "2");
  auto* tap = find(samples, "zonewall_events_total", {{"interface", "tap\"x\\"}});
  ASSERT_TRUE(tap) << text;
  // The numbers are the stats document's.
  auto* pg = find(samples, "zonewall_rule_packets_total", {{"rule", "web-db-pg"}});
  ASSERT_TRUE(pg);
  EXPECT_EQ(pg->value, "3");
  EXPECT_EQ(pg->labels.at("action"), "allow");
  auto* smb = find(samples, "zonewall_rule_audit_packets_total", {{"rule", "no-smb"}});
  ASSERT_TRUE(smb) << text;
  EXPECT_EQ(smb->value, "4");
  EXPECT_EQ(find(samples, "zonewall_rule_audit_packets_total", {{"rule", "web-db-pg"}})->value,
            "0");
  auto* audit = find(samples, "zonewall_zone_pair_packets_total",
                     {{"src_zone", "web"}, {"dst_zone", "db"}, {"verdict", "audit"}});
  ASSERT_TRUE(audit);
  EXPECT_EQ(audit->value, "2");
  EXPECT_EQ(find(samples, "zonewall_reason_packets_total", {{"reason", "drop_policy"}})->value,
            std::to_string(ZW_R_DROP_POLICY));
  EXPECT_EQ(find(samples, "zonewall_endpoints", {})->value, "3");
  EXPECT_EQ(find(samples, "zonewall_endpoints_enforced", {})->value, "2");
  EXPECT_EQ(find(samples, "zonewall_applies_total", {})->value, "4");
  EXPECT_EQ(find(samples, "zonewall_libvirt_reads_total", {{"kind", "all"}})->value, "3");
  EXPECT_EQ(find(samples, "zonewall_libvirt_reads_total", {{"kind", "domain"}})->value, "17");
  EXPECT_EQ(
      find(samples, "zonewall_datapath_cpu_seconds_total", {{"program", "zw_to_vm_tc"}})->value,
      "1.8e-06");
  // A VM that is not running has no interface series (its two NICs would
  // be the same series twice).
  EXPECT_FALSE(find(samples, "zonewall_interface_packets_total", {{"vm", "stopped-1"}})) << text;
  // Counters that are counters end in _total and were declared so.
  std::set<std::string> families;
  for (const auto& s : samples) families.insert(s.name);
  for (const char* f :
       {"zonewall_reason_packets_total", "zonewall_rule_bytes_total",
        "zonewall_zone_pair_bytes_total", "zonewall_interface_bytes_total", "zonewall_events_total",
        "zonewall_datapath_runs_total", "zonewall_interface_cpu_seconds_estimated",
        "zonewall_bpf_stats_enabled", "zonewall_policy_generation", "zonewall_conntrack_entries",
        "zonewall_last_apply_duration_seconds", "zonewall_last_apply_timestamp_seconds"})
    EXPECT_TRUE(families.count(f)) << f;

  expect_promtool_accepts(text);
}

TEST(Metrics, EmptyStatsStillValid) {
  json s = stats_doc();
  s["rules"] = json::array();
  s["zone_pairs"] = json::array();
  s["endpoints"] = json::array();
  s["cpu"]["programs"] = json::array();
  json st{{"endpoints", json::array()}, {"endpoints_enforced", 0}};
  std::string text = daemon::render_metrics(s, st, daemon::ApplyInfo{});
  std::vector<std::string> problems;
  auto samples = parse_exposition(text, problems);
  ASSERT_TRUE(problems.empty()) << testing::PrintToString(problems) << "\n" << text;
  EXPECT_EQ(find(samples, "zonewall_last_apply_timestamp_seconds", {})->value, "0");
  EXPECT_FALSE(find(samples, "zonewall_libvirt_reads_total", {{"kind", "all"}}))
      << "no libvirt, no libvirt series";
  expect_promtool_accepts(text);
}

// A cluster daemon adds the cluster section of its status: etcd reached or
// not (fail static), policy revision enforced and stored, VM counts. The
// section is the daemon's own `status` JSON (cluster::Member::status()).
TEST(Metrics, ClusterStateOfACutOffHost) {
  daemon::ApplyInfo apply{2, 0.01, 1767323045.5};
  apply.cluster = {
      {"host", "hv2"},           {"etcd", "disconnected"},       {"synced", true},
      {"policy_revision", 41},   {"policy_revision_stored", 42}, {"local_endpoints", 3},
      {"remote_endpoints", 118}, {"remote_records", 120}};
  std::string text = daemon::render_metrics(stats_doc(), status_doc(), apply);
  std::vector<std::string> problems;
  auto samples = parse_exposition(text, problems);
  ASSERT_TRUE(problems.empty()) << testing::PrintToString(problems) << "\n" << text;
  EXPECT_EQ(find(samples, "zonewall_cluster_etcd_connected", {})->value, "0");
  EXPECT_EQ(find(samples, "zonewall_cluster_synced", {})->value, "1");
  EXPECT_EQ(find(samples, "zonewall_cluster_policy_revision", {{"which", "enforced"}})->value,
            "41");
  EXPECT_EQ(find(samples, "zonewall_cluster_policy_revision", {{"which", "stored"}})->value, "42");
  EXPECT_EQ(find(samples, "zonewall_cluster_endpoints", {{"where", "remote"}})->value, "118");
  EXPECT_EQ(find(samples, "zonewall_cluster_endpoints", {{"where", "local"}})->value, "3");
  expect_promtool_accepts(text);
  // A single-host daemon has no cluster series.
  std::string single = daemon::render_metrics(stats_doc(), status_doc(), daemon::ApplyInfo{});
  EXPECT_EQ(single.find("zonewall_cluster_"), std::string::npos);
}

// The checker itself: promtool and the parser above reject what they must,
// so the passing runs above mean something.
TEST(Metrics, CheckersRejectBrokenText) {
  std::string dup =
      "# HELP a_total x\n# TYPE a_total counter\na_total{vm=\"x\"} 1\na_total{vm=\"x\"} 2\n";
  for (const char* broken : {
           dup.c_str(),
           "# HELP b x\n# TYPE b counter\nb 1\n",             // a counter without _total
           "# HELP c x\n# TYPE c gauge\nc{vm=\"a\"b\"} 1\n",  // a quote not escaped
           "# HELP d x\n# TYPE d gauge\n# HELP d x\nd 1\n",   // HELP twice
           "# HELP g x\n# TYPE g gauge\ng{vm=\"a\\q\"} 1\n",  // an unknown escape
       }) {
    std::vector<std::string> problems;
    (void)parse_exposition(broken, problems);
    EXPECT_FALSE(problems.empty()) << broken;
  }
  if (!have_promtool()) return;  // the passing tests above already failed or skipped
  EXPECT_NE(promtool_check("# HELP e x\n# TYPE e counter\ne{vm=\"a\nb\"} 1\n").first, 0);
  EXPECT_NE(promtool_check("# HELP f x\n# TYPE f counter\nf 1\n").first, 0);  // lint: no _total
}

}  // namespace
}  // namespace zw
