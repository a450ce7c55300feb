// Pure parts of trace, test and plan: expectation files (and their
// file + JSON pointer errors), the frames trace builds, plan's rule and
// endpoint diffs, how it judges established flows (the reference model)
// and its human rendering.
#include <gtest/gtest.h>

#include <string>

#include "engine/expect.h"
#include "engine/plan.h"
#include "engine/trace.h"
#include "inventory/static_json.h"
#include "policy/json.h"

namespace zw::engine {
namespace {

using nlohmann::json;

std::string errors_of(const std::string& text) {
  auto r = parse_expectations(text, "tests/web.json");
  EXPECT_FALSE(r.has_value());
  return r ? "" : r.error().str();
}

TEST(Expectations, ParsesEveryField) {
  auto r = parse_expectations(R"([
    {"name": "pg", "from": "web-1", "to": "db-1", "proto": "tcp", "port": 5432, "expect": "allow", "rule": "web-db"},
    {"from": "web-1", "to": "10.0.0.9", "proto": "icmpv6", "icmp_type": 128, "family": 6, "expect": "deny"},
    {"from": "a", "to": "b", "proto": 47, "expect": "deny"},
    {"from": "a", "to": "b", "proto": "tcp", "port": 22, "sport": 5000, "flags": "syn,ack", "expect": "deny"}
  ])",
                              "tests/web.json");
  ASSERT_TRUE(r.has_value()) << r.error().str();
  ASSERT_EQ(r->size(), 4u);
  const auto& a = (*r)[0];
  EXPECT_EQ(a.name, "pg");
  EXPECT_EQ(a.origin, "tests/web.json: /0");
  EXPECT_EQ(a.req.from, "web-1");
  EXPECT_EQ(a.req.proto, 6);
  EXPECT_EQ(a.req.port, 5432);
  EXPECT_TRUE(a.allow);
  EXPECT_EQ(a.rule, "web-db");
  const auto& b = (*r)[1];
  EXPECT_EQ(b.name, "web-1 -> 10.0.0.9 icmpv6 type 128 IPv6");
  EXPECT_EQ(b.req.icmp_type, 128);
  EXPECT_EQ(b.req.family, 6);
  EXPECT_FALSE(b.allow);
  EXPECT_FALSE(b.rule.has_value());
  EXPECT_EQ((*r)[2].req.proto, 47);
  EXPECT_EQ((*r)[3].req.tcp_flags, 0x12);
  EXPECT_EQ((*r)[3].req.sport, 5000);
}

TEST(Expectations, ErrorsNameFileAndPointer) {
  std::string e = errors_of(R"([
    {"from": "web-1", "to": "db-1", "proto": "tcp", "port": 70000, "expect": "maybe"},
    {"to": "db-1", "proto": "tcp", "port": 80, "expect": "allow", "colour": "red"},
    {"from": "web-1", "to": "db-1", "proto": "icmp", "port": 80, "expect": "deny"},
    {"from": "web-1", "to": "db-1", "proto": "udp", "expect": "deny"},
    {"from": "web-1", "to": "db-1", "proto": "gre", "expect": "deny"},
    {"from": "web-1", "to": "db-1", "proto": "tcp", "port": 1, "family": 5, "flags": "syn,bogus", "expect": "deny"},
    "web-1 -> db-1"
  ])");
  for (const char* want : {
           "tests/web.json: /0/port: 70000 is not a port",
           "tests/web.json: /0/expect: expected \"allow\" or \"deny\", got \"maybe\"",
           "tests/web.json: /1/from: required field missing",
           "tests/web.json: /1/colour",
           "tests/web.json: /2/port: only for tcp, udp and sctp",
           "tests/web.json: /3/port: required for udp",
           "tests/web.json: /4/proto: expected tcp, udp, icmp, icmpv6, sctp or 0-255, got \"gre\"",
           "tests/web.json: /5/family: expected 4 or 6, got 5",
           "tests/web.json: /5/flags: 'syn,bogus'",
           "tests/web.json: /6: expected an object",
       })
    EXPECT_NE(e.find(want), std::string::npos) << "missing: " << want << "\nin:\n" << e;
}

TEST(Expectations, DocumentShapeAndSyntax) {
  EXPECT_NE(errors_of(R"({"from": "a"})").find("tests/web.json: /: expected an array"),
            std::string::npos)
      << errors_of(R"({"from": "a"})");
  EXPECT_NE(errors_of("[]").find("no expectations"), std::string::npos);
  EXPECT_NE(errors_of("[{").find("tests/web.json: line 1"), std::string::npos) << errors_of("[{");
}

TEST(Expectations, ShippedExampleIsValid) {
  auto r = load_expectations(ZW_SOURCE_DIR "/policies/tests/lab.json");
  ASSERT_TRUE(r.has_value()) << r.error().str();
  EXPECT_GE(r->size(), 10u);
}

TEST(Expectations, SyntheticInventoryOneVmPerName) {
  auto r = parse_expectations(R"([
    {"from": "web-1", "to": "db-1", "proto": "tcp", "port": 1, "expect": "deny"},
    {"from": "198.51.100.7", "to": "web-1", "proto": "tcp", "port": 1, "expect": "deny"}
  ])",
                              "x.json");
  ASSERT_TRUE(r.has_value());
  auto inv = synthetic_inventory(*r);
  ASSERT_EQ(inv.endpoints.size(), 2u);
  EXPECT_EQ(inv.endpoints[0].vm_name, "web-1");
  EXPECT_EQ(inv.endpoints[1].vm_name, "db-1");
  EXPECT_NE(inv.endpoints[0].ifname, inv.endpoints[1].ifname);
  ASSERT_EQ(inv.endpoints[0].addrs.size(), 2u);  // IPv4 and IPv6
  EXPECT_TRUE(inv.endpoints[0].addrs[0].is_v4());
  EXPECT_FALSE(inv.endpoints[0].addrs[1].is_v4());
  EXPECT_NE(inv.endpoints[0].addrs[0], inv.endpoints[1].addrs[0]);
  EXPECT_TRUE(inv.endpoints[0].mac.has_value());
}

TEST(Trace, ProtoAndFlags) {
  EXPECT_EQ(parse_proto("tcp"), 6);
  EXPECT_EQ(parse_proto("icmpv6"), 58);
  EXPECT_EQ(parse_proto("132"), 132);
  EXPECT_FALSE(parse_proto("256").has_value());
  EXPECT_FALSE(parse_proto("gre").has_value());
  EXPECT_EQ(parse_tcp_flags("syn"), 0x02);
  EXPECT_EQ(parse_tcp_flags("syn,ack"), 0x12);
  EXPECT_EQ(parse_tcp_flags("ack"), 0x10);
  EXPECT_FALSE(parse_tcp_flags("syn,nope").has_value());
}

TEST(Trace, FramesCarryTheRequestedHeaders) {
  FrameSpec f;
  f.src_mac = {0x52, 0x54, 0, 0, 0, 1};
  f.src = *net::parse_addr("10.0.0.1");
  f.dst = *net::parse_addr("10.0.0.2");
  f.proto = 6;
  f.sport = 40000;
  f.dport = 5432;
  f.tcp_flags = 0x02;
  auto b = build_frame(f);
  ASSERT_EQ(b.size(), 14u + 20 + 20);
  EXPECT_EQ(b[6], 0x52);      // source MAC
  EXPECT_EQ(b[12], 0x08);     // IPv4
  EXPECT_EQ(b[14 + 9], 6);    // protocol
  EXPECT_EQ(b[14 + 12], 10);  // source address
  EXPECT_EQ(b[14 + 19], 2);   // destination address
  EXPECT_EQ(b[34 + 2], 5432 >> 8);
  EXPECT_EQ(b[34 + 3], 5432 & 0xff);
  EXPECT_EQ(b[34 + 13], 0x02);  // SYN
  f.src = *net::parse_addr("fd00::1");
  f.dst = *net::parse_addr("fd00::2");
  f.proto = 58;
  f.dport = 128;  // echo request
  b = build_frame(f);
  ASSERT_EQ(b.size(), 14u + 40 + 8);
  EXPECT_EQ(b[12], 0x86);
  EXPECT_EQ(b[14 + 6], 58);
  EXPECT_EQ(b[54], 128);
}

std::vector<RuleInfo> rules(std::initializer_list<RuleInfo> r) { return r; }

TEST(Plan, RuleDiff) {
  auto before = rules({{3, "a", "allow", "web -> db tcp 5432"},
                       {4, "b", "allow", "web -> db udp 53"},
                       {5, "c", "deny", "db -> web any"},
                       {6, "gone", "allow", "x -> y any"}});
  auto after = rules({{3, "a", "allow", "web -> db tcp 5432,5433"},
                      {5, "c", "deny", "db -> web any"},
                      {4, "b", "deny", "web -> db udp 53"},
                      {7, "new", "allow", "ops -> * tcp 22"}});
  json d = diff_rules(before, after);
  EXPECT_EQ(d["added"],
            json::parse(R"([{"name": "new", "action": "allow", "match": "ops -> * tcp 22"}])"));
  EXPECT_EQ(d["removed"],
            json::parse(R"([{"name": "gone", "action": "allow", "match": "x -> y any"}])"));
  EXPECT_EQ(d["changed"], json::parse(R"([
    {"name": "a", "match": {"from": "web -> db tcp 5432", "to": "web -> db tcp 5432,5433"}},
    {"name": "c", "position": {"from": 3, "to": 2}},
    {"name": "b", "action": {"from": "allow", "to": "deny"}, "position": {"from": 2, "to": 3}}
  ])"))
      << d["changed"].dump(1);
  // Removing a rule shifts positions but not the order of the others.
  json d2 = diff_rules(before, rules({{4, "b", "allow", "web -> db udp 53"},
                                      {5, "c", "deny", "db -> web any"},
                                      {6, "gone", "allow", "x -> y any"}}));
  EXPECT_TRUE(d2["changed"].empty()) << d2.dump(1);
  EXPECT_EQ(d2["removed"].size(), 1u);
}

TEST(Plan, EndpointDiff) {
  auto ep = [](const char* key, const char* vm, const char* zone) {
    EndpointState e;
    e.key = key;
    e.vm_name = vm;
    e.ifname = std::string("vnet-") + vm;
    e.zone = zone;
    return e;
  };
  json d = diff_endpoints(
      {ep("k1", "web-1", "web"), ep("k2", "db-1", "db"), ep("k3", "old", "db")},
      {ep("k1", "web-1", "quarantine"), ep("k2", "db-1", "db"), ep("k4", "web-9", "web")});
  EXPECT_EQ(d["zone_changes"],
            json::parse(
                R"([{"vm": "web-1", "ifname": "vnet-web-1", "from": "web", "to": "quarantine"}])"));
  EXPECT_EQ(d["added"], json::parse(R"([{"vm": "web-9", "ifname": "vnet-web-9", "zone": "web"}])"));
  EXPECT_EQ(d["removed"], json::parse(R"([{"vm": "old", "ifname": "vnet-old", "zone": "db"}])"));
}

// Which established flows the new policy cuts is the reference model's
// answer over the desired endpoints: zones of own addresses, allowed
// address pairs (VIPs) and CIDRs of the address's own family, first match
// over ports, ranges, ICMP types, protocol numbers and `*`, defaults, and
// audit (a deny that only audits keeps the flow).
TEST(Plan, FlowsAreJudgedByTheModel) {
  auto p = policy::parse(R"({"version": 1,
    "defaults": {"intra_zone": "allow", "inter_zone": "deny"},
    "zones": {"web": {"vms": ["web-*"]}, "db": {"vms": ["db-*"]},
              "lab": {"vms": ["lab-*"], "mode": "audit"},
              "office": {"cidrs": ["198.51.100.0/24"]},
              "v6all": {"cidrs": ["::/0"]}},
    "rules": [
      {"name": "pg", "from": "web", "to": "db", "proto": "tcp", "ports": [5432, "8000-8999"], "action": "allow"},
      {"name": "office-vip", "from": "office", "to": "lab", "proto": "tcp", "ports": [80], "action": "allow"},
      {"name": "v6-db", "from": "v6all", "to": "db", "proto": "tcp", "ports": [5432], "action": "allow"},
      {"name": "ping", "from": "*", "to": "*", "proto": "icmp", "icmp_types": [8], "action": "allow"},
      {"name": "gre", "from": "web", "to": "db", "proto": 47, "action": "allow"},
      {"name": "no-db-web", "from": "db", "to": "web", "action": "deny"}
    ]})",
                         "new.json");
  ASSERT_TRUE(p) << p.error().str();
  auto inv = inventory::parse_static(R"({"vms": [
    {"name": "web-1", "interfaces": [{"name": "vnet0", "ips": ["10.1.0.1", "fd00::1"]}]},
    {"name": "db-1", "interfaces": [{"name": "vnet1", "ips": ["10.1.0.2", "fd00::2"]}]},
    {"name": "lab-1", "interfaces": [{"name": "vnet2", "ips": ["10.1.0.3"], "allowed_addresses": ["10.1.0.100"]}]}
  ]})",
                                     "inv.json");
  ASSERT_TRUE(inv) << inv.error().str();
  auto d = build_desired(*p, *inv, std::nullopt, "tc", [](const std::string&) { return 0u; });
  ASSERT_TRUE(d) << d.error().str();
  const model::World w = desired_world(*p, *d);
  struct Case {
    const char *src, *dst;
    uint8_t proto;
    uint16_t port;
    const char *src_zone, *dst_zone, *rule;
    bool cut;
  };
  const Case cases[] = {
      {"10.1.0.1", "10.1.0.2", 6, 5432, "web", "db", "pg", false},
      {"10.1.0.1", "10.1.0.2", 6, 8999, "web", "db", "pg", false},
      {"10.1.0.1", "10.1.0.2", 6, 9000, "web", "db", "default:inter_zone", true},
      {"10.1.0.1", "10.1.0.2", 17, 5432, "web", "db", "default:inter_zone", true},
      {"10.1.0.1", "10.1.0.2", 47, 0, "web", "db", "gre", false},
      {"10.1.0.2", "10.1.0.1", 6, 5432, "db", "web", "no-db-web", true},
      {"fd00::1", "fd00::1", 6, 22, "web", "web", "default:intra_zone", false},
      // The VIP is lab's; an office address reaches it on 80 only.
      {"198.51.100.7", "10.1.0.100", 6, 80, "office", "lab", "office-vip", false},
      {"198.51.100.7", "10.1.0.1", 6, 80, "office", "web", "default:inter_zone", true},
      // An IPv6 ::/0 zone covers IPv6 addresses only: IPv4 is the world's.
      {"2001:db8::9", "fd00::2", 6, 5432, "v6all", "db", "v6-db", false},
      {"192.0.2.9", "10.1.0.2", 6, 5432, "world", "db", "default:inter_zone", true},
      {"192.0.2.9", "10.1.0.2", 1, 8, "world", "db", "ping", false},
      {"192.0.2.9", "10.1.0.2", 1, 13, "world", "db", "default:inter_zone", true},
      // lab audits: a deny into or out of it keeps the flow.
      {"10.1.0.2", "10.1.0.3", 6, 22, "db", "lab", "default:inter_zone", false},
  };
  for (const auto& c : cases) {
    auto j = judge_flow(w, *net::parse_addr(c.src), *net::parse_addr(c.dst), c.proto, c.port);
    SCOPED_TRACE(std::string(c.src) + " -> " + c.dst + " proto " + std::to_string(c.proto) +
                 " port " + std::to_string(c.port));
    EXPECT_EQ(j.src_zone, c.src_zone);
    EXPECT_EQ(j.dst_zone, c.dst_zone);
    EXPECT_EQ(j.answer.rule.str(), c.rule);
    EXPECT_EQ(j.cut(), c.cut);
    // The answer is the model's, as the differential test knows it.
    auto m =
        model::decide(*p, model::zone_of(w, model::Ip::from(*net::parse_addr(c.src))),
                      model::zone_of(w, model::Ip::from(*net::parse_addr(c.dst))), c.proto, c.port);
    EXPECT_EQ(j.answer.rule, m.rule);
    EXPECT_EQ(j.answer.allow, m.allow);
    EXPECT_EQ(j.answer.audit, m.audit);
  }
}

TEST(Plan, HumanFormat) {
  json pl = json::parse(R"({
    "generation": 4, "policy": "/p/new.json", "applied_policy": "/p/lab.json", "changes": true,
    "zones": {"added": ["ops"], "removed": ["admin"],
              "changed": [{"name": "office", "cidrs": ["+10.9.0.0/16", "-10.8.0.0/16"]}]},
    "defaults": [{"name": "inter_zone", "from": "deny", "to": "allow"}],
    "rules": {"added": [{"name": "new", "action": "allow", "match": "ops -> * tcp 22"}],
              "removed": [{"name": "pg", "action": "allow", "match": "web -> db tcp 5432"}],
              "changed": [{"name": "b", "action": {"from": "allow", "to": "deny"},
                           "position": {"from": 2, "to": 3}}]},
    "endpoints": {"added": [], "removed": [],
                  "zone_changes": [{"vm": "admin-1", "ifname": "vnet3", "from": "admin", "to": "ops"}]},
    "flows_tracked": 5,
    "flows_cut": [{"proto": "tcp",
                   "src": {"address": "10.0.0.1", "port": 40000, "vm": "web-1", "zone": "web"},
                   "dst": {"address": "fd00::2", "port": 5432, "zone": "world"},
                   "allowed_by": "pg", "cut_by": "default:inter_zone"}]
  })");
  EXPECT_EQ(format_plan(pl),
            "plan: /p/new.json against generation 4 (/p/lab.json)\n"
            "zones:\n"
            "  + ops\n"
            "  - admin\n"
            "  ~ office: cidrs +10.9.0.0/16 -10.8.0.0/16\n"
            "defaults:\n"
            "  ~ inter_zone: deny -> allow\n"
            "rules:\n"
            "  + new (allow): ops -> * tcp 22\n"
            "  - pg (allow): web -> db tcp 5432\n"
            "  ~ b: action allow -> deny; position 2 -> 3\n"
            "VM interfaces:\n"
            "  ~ admin-1 (vnet3): zone admin -> ops\n"
            "established flows cut: 1 of 5 tracked\n"
            "  tcp 10.0.0.1:40000 (web-1, zone web) -> [fd00::2]:5432 (zone world): allowed by pg, "
            "cut by default:inter_zone\n"
            "changes: apply would change the above\n");
  json none = json::parse(R"({
    "generation": 4, "policy": "/p/lab.json", "applied_policy": "/p/lab.json", "changes": false,
    "zones": {"added": [], "removed": [], "changed": []}, "defaults": [],
    "rules": {"added": [], "removed": [], "changed": []},
    "endpoints": {"added": [], "removed": [], "zone_changes": []},
    "flows_tracked": 2, "flows_cut": []})");
  EXPECT_EQ(format_plan(none),
            "plan: /p/lab.json against generation 4 (/p/lab.json)\n"
            "established flows cut: 0 of 2 tracked\n"
            "no changes: the live datapath already matches\n");
}

}  // namespace
}  // namespace zw::engine
