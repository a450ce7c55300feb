// The policy compiler: hand-written first-match cases, entry encoding, ids,
// determinism, limits, and a differential test of the simulated datapath
// lookup over compiled entries against the reference evaluator.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <set>

#include "policy/compile.h"
#include "policy/json.h"

using namespace zw;
using namespace zw::policy;

namespace {

constexpr uint8_t kTcp = 6, kUdp = 17, kSctp = 132, kIcmp = 1, kIcmp6 = 58, kGre = 47;

struct Built {
  Policy p;
  Ids ids;
  Compiled c;
  uint16_t z(const std::string& name) const { return ids.zone.at(name); }
  uint32_t r(const std::string& name) const { return ids.rule.at(name); }
  zw_verdict look(const std::string& s, const std::string& d, uint8_t proto, uint16_t port) const {
    return lookup(c, z(s), z(d), proto, port);
  }
  zw_verdict eval(const std::string& s, const std::string& d, uint8_t proto, uint16_t port) const {
    return evaluate(p, ids, z(s), z(d), proto, port);
  }
  // Entries of one (src, dst) pair.
  std::vector<PolicyEntry> pair(const std::string& s, const std::string& d) const {
    std::vector<PolicyEntry> out;
    for (const auto& e : c.entries)
      if (e.key.src_zone == z(s) && e.key.dst_zone == z(d)) out.push_back(e);
    return out;
  }
};

Built build(const Policy& p) {
  Built b;
  b.p = p;
  b.ids = assign_zone_ids(p);
  auto rids = assign_rule_ids(p);
  EXPECT_TRUE(rids.has_value());
  b.ids.rule = *rids;
  auto c = compile(p, b.ids);
  EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().message());
  if (c) b.c = std::move(*c);
  return b;
}

Built build_json(const std::string& text) {
  auto p = parse(text, "test.json");
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message());
  return build(p.value_or(Policy{}));
}

bool same(const zw_verdict& a, const zw_verdict& b) {
  return a.rule_id == b.rule_id && a.action == b.action && a.flags == b.flags;
}

std::string show(const zw_verdict& v) {
  return "{rule " + std::to_string(v.rule_id) + ", " +
         (v.action == ZW_ACT_ALLOW ? "allow" : "deny") + (v.flags & ZW_VF_AUDIT ? ", audit" : "") +
         (v.flags & ZW_VF_LOG ? ", log" : "") + "}";
}

// A verdict with the default event switches (denies logged, new flows not)
// plus `flags`.
zw_verdict V(uint32_t rule, uint8_t action, uint8_t flags = 0) {
  zw_verdict v{};
  v.rule_id = rule;
  v.action = action;
  v.flags = flags | (action == ZW_ACT_DENY ? ZW_VF_LOG : 0);
  return v;
}

// Exactly these flags.
zw_verdict Vx(uint32_t rule, uint8_t action, uint8_t flags) {
  zw_verdict v = V(rule, action);
  v.flags = flags;
  return v;
}

#define EXPECT_VERDICT(got, want) EXPECT_TRUE(same(got, want)) << show(got) << " != " << show(want)

// Every key is unique, sorted by bytes, padding zero.
void check_well_formed(const Compiled& c) {
  for (size_t i = 0; i < c.entries.size(); ++i) {
    const auto& k = c.entries[i].key;
    EXPECT_EQ(k.pad0, 0);
    EXPECT_EQ(k.pad1, 0);
    EXPECT_EQ(c.entries[i].value.pad0, 0);
    EXPECT_LE(k.kind, ZW_KIND_DEFAULT);
    if (i > 0) {
      EXPECT_LT(std::memcmp(&c.entries[i - 1].key, &k, sizeof k), 0) << "entry " << i;
    }
  }
}

Rule rule(std::string name, std::vector<std::string> from = {}, std::vector<std::string> to = {},
          std::optional<uint8_t> proto = std::nullopt, std::vector<PortRange> ports = {},
          Action action = Action::kDeny) {
  Rule r;
  r.name = std::move(name);
  r.from = std::move(from);
  r.to = std::move(to);
  r.proto = proto;
  r.ports = std::move(ports);
  r.action = action;
  return r;
}

const char* kLab = ZW_SOURCE_DIR "/policies/examples/lab.json";

}  // namespace

TEST(Compile, ZoneIds) {
  auto p = load(kLab);
  ASSERT_TRUE(p.has_value());
  Ids ids = assign_zone_ids(*p);
  EXPECT_EQ(ids.zone.size(), 6u);
  EXPECT_EQ(ids.zone.at("world"), ZW_ZONE_WORLD);
  EXPECT_EQ(ids.zone.at("unzoned"), ZW_ZONE_UNZONED);
  EXPECT_EQ(ids.zone.at("admin"), ZW_ZONE_FIRST_USER);
  EXPECT_EQ(ids.zone.at("db"), ZW_ZONE_FIRST_USER + 1);
  EXPECT_EQ(ids.zone.at("office"), ZW_ZONE_FIRST_USER + 2);
  EXPECT_EQ(ids.zone.at("web"), ZW_ZONE_FIRST_USER + 3);
}

TEST(Compile, RuleIdsStableAndLowestFree) {
  Policy p;
  for (const char* n : {"a", "b", "c", "d"}) p.rules.push_back(rule(n));
  auto fresh = assign_rule_ids(p);
  ASSERT_TRUE(fresh.has_value());
  EXPECT_EQ(fresh->at("a"), ZW_RULE_FIRST_USER);
  EXPECT_EQ(fresh->at("d"), ZW_RULE_FIRST_USER + 3);
  // "c" keeps 3, "a" keeps 10, a stale "gone" frees nothing it did not hold.
  std::map<std::string, uint32_t> prev{{"c", 3}, {"a", 10}, {"gone", 4}};
  auto kept = assign_rule_ids(p, prev);
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->at("c"), 3u);
  EXPECT_EQ(kept->at("a"), 10u);
  EXPECT_EQ(kept->at("b"), 4u);
  EXPECT_EQ(kept->at("d"), 5u);
  // Previous ids outside the user range are not reused.
  auto bad = assign_rule_ids(p, {{"a", 1}, {"b", ZW_MAX_RULES}});
  ASSERT_TRUE(bad.has_value());
  for (const auto& [n, id] : *bad) {
    EXPECT_GE(id, ZW_RULE_FIRST_USER) << n;
    EXPECT_LT(id, ZW_MAX_RULES) << n;
  }
}

TEST(Compile, RuleIdsRunOut) {
  Policy p;
  for (int i = 0; i < ZW_MAX_RULES - ZW_RULE_FIRST_USER; ++i)
    p.rules.push_back(rule("r" + std::to_string(i)));
  auto ok = assign_rule_ids(p);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->at("r" + std::to_string(ZW_MAX_RULES - ZW_RULE_FIRST_USER - 1)), ZW_MAX_RULES - 1u);
  p.rules.push_back(rule("one-too-many"));
  auto full = assign_rule_ids(p);
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error().kind(), ErrorKind::kInvalid);
  EXPECT_NE(full.error().message().find("ZW_MAX_RULES"), std::string::npos);
}

TEST(Compile, LabPolicy) {
  auto p = load(kLab);
  ASSERT_TRUE(p.has_value());
  Built b = build(*p);
  check_well_formed(b.c);
  const auto allow = ZW_ACT_ALLOW, deny = ZW_ACT_DENY;
  EXPECT_VERDICT(b.look("web", "db", kTcp, 5432), V(b.r("web-to-db-postgres"), allow));
  EXPECT_VERDICT(b.look("web", "db", kTcp, 5433), V(ZW_RULE_DEFAULT_INTER, deny));
  EXPECT_VERDICT(b.look("web", "db", kUdp, 5432), V(ZW_RULE_DEFAULT_INTER, deny));
  EXPECT_VERDICT(b.look("web", "db", kUdp, 53), V(b.r("web-to-db-dns"), allow));
  EXPECT_VERDICT(b.look("db", "web", kTcp, 80), V(b.r("deny-db-to-web"), deny));
  EXPECT_VERDICT(b.look("db", "web", kGre, 0), V(b.r("deny-db-to-web"), deny));
  EXPECT_VERDICT(b.look("web", "web", kTcp, 80), V(ZW_RULE_DEFAULT_INTRA, allow));
  EXPECT_VERDICT(b.look("admin", "web", kTcp, 22), V(b.r("admin-ssh"), allow));
  EXPECT_VERDICT(b.look("admin", "world", kTcp, 22), V(b.r("admin-ssh"), allow));
  EXPECT_VERDICT(b.look("admin", "unzoned", kIcmp, 8), V(b.r("admin-ping"), allow));
  EXPECT_VERDICT(b.look("admin", "db", kIcmp, 0), V(ZW_RULE_DEFAULT_INTER, deny));
  EXPECT_VERDICT(b.look("admin", "db", kIcmp6, 128), V(b.r("admin-ping6"), allow));
  EXPECT_VERDICT(b.look("admin", "db", kIcmp6, 8), V(ZW_RULE_DEFAULT_INTER, deny));
  EXPECT_VERDICT(b.look("admin", "admin", kTcp, 22), V(b.r("admin-ssh"), allow));
  EXPECT_VERDICT(b.look("admin", "admin", kTcp, 23), V(ZW_RULE_DEFAULT_INTRA, allow));
  EXPECT_VERDICT(b.look("office", "web", kTcp, 443), V(b.r("office-to-web"), allow));
  EXPECT_VERDICT(b.look("office", "web", kTcp, 7999), V(ZW_RULE_DEFAULT_INTER, deny));
  EXPECT_VERDICT(b.look("office", "web", kTcp, 8000), V(b.r("office-to-web"), allow));
  EXPECT_VERDICT(b.look("office", "web", kTcp, 8099), V(b.r("office-to-web"), allow));
  EXPECT_VERDICT(b.look("office", "web", kTcp, 8100), V(ZW_RULE_DEFAULT_INTER, deny));
  EXPECT_VERDICT(b.look("web", "office", kTcp, 443), V(ZW_RULE_DEFAULT_INTER, deny));
  EXPECT_VERDICT(b.look("world", "web", kTcp, 80), V(ZW_RULE_DEFAULT_INTER, deny));
  // Same answers from the oracle.
  for (const char* s : {"web", "db", "admin", "office", "world", "unzoned"})
    for (const char* d : {"web", "db", "admin", "office", "world", "unzoned"})
      for (uint8_t proto : {kTcp, kUdp, kIcmp, kIcmp6, kGre})
        for (uint16_t port : {0, 8, 22, 53, 80, 128, 443, 5432, 7999, 8000, 8050, 8099, 8100})
          EXPECT_VERDICT(b.look(s, d, proto, port), b.eval(s, d, proto, port))
              << s << "->" << d << " proto " << int(proto) << " port " << port;
}

TEST(Compile, DefaultEntries) {
  auto b =
      build_json(R"({"version": 1, "defaults": {"intra_zone": "deny", "inter_zone": "allow"}})");
  ASSERT_EQ(b.c.entries.size(), 2u);
  for (const auto& e : b.c.entries) {
    EXPECT_EQ(e.key.kind, ZW_KIND_DEFAULT);
    EXPECT_EQ(e.key.src_zone, 0);
    EXPECT_EQ(e.key.dst_zone, 0);
    EXPECT_EQ(e.key.proto, 0);
    if (e.key.port == 0) {
      EXPECT_VERDICT(e.value, V(ZW_RULE_DEFAULT_INTRA, ZW_ACT_DENY));
    } else {
      EXPECT_EQ(e.key.port, 1);
      EXPECT_VERDICT(e.value, V(ZW_RULE_DEFAULT_INTER, ZW_ACT_ALLOW));
    }
  }
  EXPECT_VERDICT(b.look("world", "unzoned", kTcp, 1), V(ZW_RULE_DEFAULT_INTER, ZW_ACT_ALLOW));
  EXPECT_VERDICT(b.look("world", "world", kTcp, 1), V(ZW_RULE_DEFAULT_INTRA, ZW_ACT_DENY));
}

TEST(Compile, SinglePortIsOneEntry) {
  auto b = build_json(R"({"version": 1, "zones": {"a": {"vms": ["a"]}, "b": {"vms": ["b"]}},
    "rules": [{"name": "r", "from": "a", "to": "b", "proto": "tcp", "ports": [5432], "action": "allow"}]})");
  auto e = b.pair("a", "b");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].key.kind, ZW_KIND_PORT);
  EXPECT_EQ(e[0].key.proto, kTcp);
  EXPECT_EQ(e[0].key.port, 5432);
  EXPECT_EQ(b.c.entries.size(), 3u);
  EXPECT_TRUE(b.pair("b", "a").empty());
}

TEST(Compile, WideRangeUsesProtoAndBlocks) {
  // 1024-65535 allowed: PROTO(tcp)=allow plus four BLOCK entries back to the
  // default for ports 0-1023.
  auto b = build_json(R"({"version": 1, "zones": {"a": {"vms": ["a"]}, "b": {"vms": ["b"]}},
    "rules": [{"name": "high", "from": "a", "to": "b", "proto": "tcp", "ports": ["1024-65535"], "action": "allow"}]})");
  auto e = b.pair("a", "b");
  ASSERT_EQ(e.size(), 5u);
  int blocks = 0, protos = 0;
  for (const auto& x : e) {
    if (x.key.kind == ZW_KIND_BLOCK) {
      ++blocks;
      EXPECT_LT(x.key.port, 4);
      EXPECT_VERDICT(x.value, V(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY));
    }
    if (x.key.kind == ZW_KIND_PROTO) {
      ++protos;
      EXPECT_EQ(x.key.proto, kTcp);
      EXPECT_VERDICT(x.value, V(b.r("high"), ZW_ACT_ALLOW));
    }
  }
  EXPECT_EQ(blocks, 4);
  EXPECT_EQ(protos, 1);
  EXPECT_VERDICT(b.look("a", "b", kTcp, 0), V(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY));
  EXPECT_VERDICT(b.look("a", "b", kTcp, 1023), V(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY));
  EXPECT_VERDICT(b.look("a", "b", kTcp, 1024), V(b.r("high"), ZW_ACT_ALLOW));
  EXPECT_VERDICT(b.look("a", "b", kTcp, 65535), V(b.r("high"), ZW_ACT_ALLOW));
  EXPECT_VERDICT(b.look("a", "b", kUdp, 2000), V(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY));
}

TEST(Compile, RangeStraddlingBlocks) {
  // 250-260 spans blocks 0 and 1; 8000-8099 sits inside block 31 (7936-8191).
  auto b = build_json(R"({"version": 1, "zones": {"a": {"vms": ["a"]}, "b": {"vms": ["b"]}},
    "rules": [{"name": "r", "from": "a", "to": "b", "proto": "udp", "ports": ["250-260", "8000-8099"], "action": "allow"}]})");
  for (uint32_t port = 0; port < 65536; ++port) {
    bool in = (port >= 250 && port <= 260) || (port >= 8000 && port <= 8099);
    auto got = b.look("a", "b", kUdp, static_cast<uint16_t>(port));
    ASSERT_EQ(got.action, in ? ZW_ACT_ALLOW : ZW_ACT_DENY) << port;
    ASSERT_EQ(got.rule_id, in ? b.r("r") : uint32_t{ZW_RULE_DEFAULT_INTER}) << port;
  }
  EXPECT_EQ(b.pair("a", "b").size(), 11u + 100u);  // minority ports of their blocks
}

TEST(Compile, MostlyOpenBlockUsesBlockEntryPlusExceptions) {
  // Block 0 allowed except port 25: BLOCK(0)=allow plus one PORT(25)=deny.
  auto b = build_json(R"({"version": 1, "zones": {"a": {"vms": ["a"]}},
    "defaults": {"intra_zone": "deny"},
    "rules": [{"name": "no-smtp", "from": "a", "to": "a", "proto": "tcp", "ports": [25], "action": "deny"},
              {"name": "low", "from": "a", "to": "a", "proto": "tcp", "ports": ["1-255"], "action": "allow"}]})");
  auto e = b.pair("a", "a");
  // Port 0 stays the default, port 25 the deny rule: three minorities in block 0.
  ASSERT_EQ(e.size(), 3u);
  EXPECT_VERDICT(b.look("a", "a", kTcp, 0), V(ZW_RULE_DEFAULT_INTRA, ZW_ACT_DENY));
  EXPECT_VERDICT(b.look("a", "a", kTcp, 24), V(b.r("low"), ZW_ACT_ALLOW));
  EXPECT_VERDICT(b.look("a", "a", kTcp, 25), V(b.r("no-smtp"), ZW_ACT_DENY));
  EXPECT_VERDICT(b.look("a", "a", kTcp, 255), V(b.r("low"), ZW_ACT_ALLOW));
  EXPECT_VERDICT(b.look("a", "a", kTcp, 256), V(ZW_RULE_DEFAULT_INTRA, ZW_ACT_DENY));
}

TEST(Compile, OverlapsFirstMatchWins) {
  auto b = build_json(R"({"version": 1, "zones": {"a": {"vms": ["a"]}, "b": {"vms": ["b"]}},
    "rules": [
      {"name": "deny-80-90", "from": "a", "to": "b", "proto": "tcp", "ports": ["80-90"], "action": "deny"},
      {"name": "allow-85-100", "from": "a", "to": "b", "proto": "tcp", "ports": ["85-100"], "action": "allow"},
      {"name": "allow-all-tcp", "from": "a", "to": "b", "proto": "tcp", "action": "allow"},
      {"name": "shadowed", "from": "a", "to": "b", "proto": "tcp", "ports": [80], "action": "allow"},
      {"name": "any", "from": "a", "to": "b", "action": "deny", "audit": true},
      {"name": "never", "from": "a", "to": "b", "proto": "udp", "action": "allow"}
    ]})");
  check_well_formed(b.c);
  EXPECT_VERDICT(b.look("a", "b", kTcp, 79), V(b.r("allow-all-tcp"), ZW_ACT_ALLOW));
  EXPECT_VERDICT(b.look("a", "b", kTcp, 80), V(b.r("deny-80-90"), ZW_ACT_DENY));
  EXPECT_VERDICT(b.look("a", "b", kTcp, 85), V(b.r("deny-80-90"), ZW_ACT_DENY));
  EXPECT_VERDICT(b.look("a", "b", kTcp, 91), V(b.r("allow-85-100"), ZW_ACT_ALLOW));
  EXPECT_VERDICT(b.look("a", "b", kTcp, 101), V(b.r("allow-all-tcp"), ZW_ACT_ALLOW));
  EXPECT_VERDICT(b.look("a", "b", kUdp, 53), V(b.r("any"), ZW_ACT_DENY, ZW_VF_AUDIT));
  EXPECT_VERDICT(b.look("a", "b", kGre, 0), V(b.r("any"), ZW_ACT_DENY, ZW_VF_AUDIT));
  // "never" comes after a protocol-less rule: no udp entries at all.
  for (const auto& e : b.pair("a", "b")) EXPECT_NE(e.key.proto, kUdp);
}

TEST(Compile, OrderMatters) {
  const char* z = R"("zones": {"a": {"vms": ["a"]}, "b": {"vms": ["b"]}})";
  auto deny_first = build_json(std::string(R"({"version": 1, )") + z + R"(, "rules": [
      {"name": "d", "from": "a", "to": "b", "proto": "tcp", "ports": [22], "action": "deny"},
      {"name": "al", "from": "a", "to": "b", "action": "allow"}]})");
  auto allow_first = build_json(std::string(R"({"version": 1, )") + z + R"(, "rules": [
      {"name": "al", "from": "a", "to": "b", "action": "allow"},
      {"name": "d", "from": "a", "to": "b", "proto": "tcp", "ports": [22], "action": "deny"}]})");
  EXPECT_EQ(deny_first.look("a", "b", kTcp, 22).action, ZW_ACT_DENY);
  EXPECT_EQ(deny_first.look("a", "b", kTcp, 23).action, ZW_ACT_ALLOW);
  EXPECT_EQ(allow_first.look("a", "b", kTcp, 22).action, ZW_ACT_ALLOW);
  EXPECT_EQ(allow_first.look("a", "b", kTcp, 22).rule_id, allow_first.r("al"));
}

TEST(Compile, StarCoversBuiltinZones) {
  auto b = build_json(
      R"({"version": 1, "zones": {"a": {"vms": ["a"]}, "ext": {"cidrs": ["fd00:1::/48", "10.1.0.0/16"]}},
    "rules": [
      {"name": "world-in", "from": "*", "to": "a", "proto": "tcp", "ports": [443], "action": "allow"},
      {"name": "out", "from": "a", "to": "*", "proto": "udp", "ports": [53], "action": "allow"},
      {"name": "v6-ext", "from": "ext", "to": "a", "proto": "icmpv6", "icmp_types": [128], "action": "allow"}
    ]})");
  for (const char* s : {"world", "unzoned", "a", "ext"})
    EXPECT_VERDICT(b.look(s, "a", kTcp, 443), V(b.r("world-in"), ZW_ACT_ALLOW)) << s;
  for (const char* d : {"world", "unzoned", "a", "ext"})
    EXPECT_VERDICT(b.look("a", d, kUdp, 53), V(b.r("out"), ZW_ACT_ALLOW)) << d;
  EXPECT_VERDICT(b.look("ext", "a", kIcmp6, 128), V(b.r("v6-ext"), ZW_ACT_ALLOW));
  EXPECT_VERDICT(b.look("ext", "a", kIcmp6, 129), V(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY));
  EXPECT_VERDICT(b.look("ext", "a", kIcmp, 128), V(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY));
  EXPECT_VERDICT(b.look("world", "unzoned", kTcp, 443), V(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY));
}

TEST(Compile, AuditFlags) {
  auto b = build_json(R"({"version": 1, "defaults": {"intra_zone": "deny", "inter_zone": "deny"},
    "zones": {"aud": {"vms": ["x"], "mode": "audit"}, "enf": {"vms": ["y"]}},
    "rules": [
      {"name": "smb", "from": "*", "to": "*", "proto": "tcp", "ports": [445], "action": "deny", "audit": true},
      {"name": "ssh", "from": "enf", "to": "aud", "proto": "tcp", "ports": [22], "action": "allow"},
      {"name": "telnet", "from": "enf", "to": "aud", "proto": "tcp", "ports": [23], "action": "deny"},
      {"name": "rdp", "from": "enf", "to": "enf", "proto": "tcp", "ports": [3389], "action": "deny"}
    ]})");
  check_well_formed(b.c);
  const uint8_t A = ZW_VF_AUDIT;
  // Audit rule: flagged wherever it decides.
  EXPECT_VERDICT(b.look("enf", "enf", kTcp, 445), V(b.r("smb"), ZW_ACT_DENY, A));
  EXPECT_VERDICT(b.look("world", "unzoned", kTcp, 445), V(b.r("smb"), ZW_ACT_DENY, A));
  // Allows are never flagged, even into an audit zone.
  EXPECT_VERDICT(b.look("enf", "aud", kTcp, 22), V(b.r("ssh"), ZW_ACT_ALLOW));
  // A plain deny touching an audit zone is flagged; elsewhere it is not.
  EXPECT_VERDICT(b.look("enf", "aud", kTcp, 23), V(b.r("telnet"), ZW_ACT_DENY, A));
  EXPECT_VERDICT(b.look("enf", "enf", kTcp, 3389), V(b.r("rdp"), ZW_ACT_DENY));
  // Default denies: flagged when either side is an audit zone (src or dst).
  EXPECT_VERDICT(b.look("enf", "aud", kUdp, 1), V(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY, A));
  EXPECT_VERDICT(b.look("aud", "world", kGre, 0), V(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY, A));
  EXPECT_VERDICT(b.look("aud", "aud", kTcp, 80), V(ZW_RULE_DEFAULT_INTRA, ZW_ACT_DENY, A));
  EXPECT_VERDICT(b.look("enf", "world", kTcp, 80), V(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY));
  // ... through per-pair PROTO(ANY) entries; DEFAULT entries stay unflagged.
  bool any_entry = false;
  for (const auto& e : b.pair("unzoned", "aud"))
    any_entry |=
        e.key.kind == ZW_KIND_PROTO && e.key.proto == ZW_PROTO_ANY && (e.value.flags & ZW_VF_AUDIT);
  EXPECT_TRUE(any_entry);
  for (const auto& e : b.c.entries)
    if (e.key.kind == ZW_KIND_DEFAULT) {
      EXPECT_EQ(e.value.flags & ZW_VF_AUDIT, 0);
    }
}

TEST(Compile, LogSwitchesPerZoneAndRule) {
  auto b = build_json(R"({"version": 1,
    "zones": {"quiet": {"vms": ["q-*"], "log": {"deny": false}},
              "loud": {"vms": ["l-*"], "log": {"new_flows": true}},
              "aud": {"vms": ["a-*"], "mode": "audit"},
              "plain": {"vms": ["p-*"]}},
    "rules": [
      {"name": "web", "from": "*", "to": "plain", "proto": "tcp", "ports": [80], "action": "allow"},
      {"name": "noisy", "from": "*", "to": "plain", "proto": "udp", "ports": [137], "action": "deny", "log": false},
      {"name": "watched", "from": "plain", "to": "plain", "proto": "tcp", "ports": [22], "action": "allow", "log": true},
      {"name": "smb", "from": "*", "to": "*", "proto": "tcp", "ports": [445], "action": "deny"}
    ]})");
  check_well_formed(b.c);
  const uint8_t L = ZW_VF_LOG, A = ZW_VF_AUDIT;
  // Defaults: denies logged, new flows not.
  EXPECT_VERDICT(b.look("plain", "plain", kTcp, 445), Vx(b.r("smb"), ZW_ACT_DENY, L));
  EXPECT_VERDICT(b.look("plain", "plain", kTcp, 80), Vx(b.r("web"), ZW_ACT_ALLOW, 0));
  EXPECT_VERDICT(b.look("world", "plain", kTcp, 1), Vx(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY, L));
  // A zone silencing denies silences them from and to it.
  EXPECT_VERDICT(b.look("quiet", "plain", kTcp, 445), Vx(b.r("smb"), ZW_ACT_DENY, 0));
  EXPECT_VERDICT(b.look("plain", "quiet", kTcp, 1), Vx(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY, 0));
  EXPECT_VERDICT(b.look("quiet", "plain", kTcp, 80), Vx(b.r("web"), ZW_ACT_ALLOW, 0));
  // A zone asking for new flows gets them from and to it; denies stay on.
  EXPECT_VERDICT(b.look("loud", "plain", kTcp, 80), Vx(b.r("web"), ZW_ACT_ALLOW, L));
  EXPECT_VERDICT(b.look("loud", "loud", kTcp, 9), Vx(ZW_RULE_DEFAULT_INTRA, ZW_ACT_ALLOW, L));
  EXPECT_VERDICT(b.look("loud", "plain", kTcp, 445), Vx(b.r("smb"), ZW_ACT_DENY, L));
  // Both: each switch as its zone says.
  EXPECT_VERDICT(b.look("loud", "quiet", kTcp, 445), Vx(b.r("smb"), ZW_ACT_DENY, 0));
  // The rule's own switch wins over the zones'.
  EXPECT_VERDICT(b.look("loud", "plain", kUdp, 137), Vx(b.r("noisy"), ZW_ACT_DENY, 0));
  EXPECT_VERDICT(b.look("plain", "plain", kTcp, 22), Vx(b.r("watched"), ZW_ACT_ALLOW, L));
  // Audit denies are denies for logging.
  EXPECT_VERDICT(b.look("aud", "plain", kTcp, 445), Vx(b.r("smb"), ZW_ACT_DENY, A | L));
  EXPECT_VERDICT(b.look("quiet", "aud", kTcp, 445), Vx(b.r("smb"), ZW_ACT_DENY, A));
  // The oracle agrees everywhere.
  for (const char* s : {"quiet", "loud", "aud", "plain", "world", "unzoned"})
    for (const char* d : {"quiet", "loud", "aud", "plain", "world", "unzoned"})
      for (uint8_t proto : {kTcp, kUdp, kIcmp, kGre})
        for (uint16_t port : {0, 1, 22, 80, 137, 445, 8080})
          EXPECT_VERDICT(b.look(s, d, proto, port), b.eval(s, d, proto, port))
              << s << "->" << d << " proto " << int(proto) << " port " << port;
}

TEST(Compile, AuditZoneWithAllowDefaultsNeedsNoEntries) {
  auto b = build_json(R"({"version": 1, "defaults": {"intra_zone": "allow", "inter_zone": "allow"},
    "zones": {"aud": {"vms": ["x"], "mode": "audit"}}})");
  EXPECT_EQ(b.c.entries.size(), 2u);
}

TEST(Compile, OtherProtocolsByNumber) {
  auto b = build_json(R"({"version": 1, "zones": {"r": {"vms": ["r"]}},
    "rules": [{"name": "gre", "from": "r", "to": "r", "proto": 47, "action": "allow"},
              {"name": "rest", "from": "r", "to": "r", "action": "deny"},
              {"name": "proto0", "from": "*", "to": "*", "proto": 0, "action": "deny"}]})");
  EXPECT_VERDICT(b.look("r", "r", kGre, 0), V(b.r("gre"), ZW_ACT_ALLOW));
  EXPECT_VERDICT(b.look("r", "r", kGre, 1234), V(b.r("gre"), ZW_ACT_ALLOW));  // port ignored
  EXPECT_VERDICT(b.look("r", "r", 50, 0), V(b.r("rest"), ZW_ACT_DENY));
  EXPECT_VERDICT(b.look("r", "r", 0, 0), V(b.r("rest"), ZW_ACT_DENY));
  EXPECT_VERDICT(b.look("world", "r", 0, 0), V(b.r("proto0"), ZW_ACT_DENY));
  EXPECT_VERDICT(b.look("world", "r", kTcp, 0), V(ZW_RULE_DEFAULT_INTER, ZW_ACT_DENY));
  for (const auto& e : b.c.entries) {
    if (e.key.proto == kGre || e.key.proto == 0) {
      EXPECT_NE(e.key.kind, ZW_KIND_PORT);
      EXPECT_NE(e.key.kind, ZW_KIND_BLOCK);
    }
  }
}

TEST(Compile, Deterministic) {
  auto p = load(ZW_SOURCE_DIR "/policies/examples/three-tier.json");
  ASSERT_TRUE(p.has_value()) << p.error().message();
  Built a = build(*p), b = build(*p);
  check_well_formed(a.c);
  ASSERT_EQ(a.c.entries.size(), b.c.entries.size());
  ASSERT_EQ(
      std::memcmp(a.c.entries.data(), b.c.entries.data(), a.c.entries.size() * sizeof(PolicyEntry)),
      0);
}

TEST(Compile, TooManyEntriesIsAnError) {
  // 300 zones -> 302 x 302 pairs, three ports each: 273,612 PORT entries.
  Policy p;
  for (int i = 0; i < 300; ++i) {
    Zone z;
    z.name = "z" + std::to_string(i);
    z.vm_globs = {z.name};
    p.zones[z.name] = z;
  }
  p.rules.push_back(rule("everywhere", {"*"}, {"*"}, kTcp, {{1, 1}, {3, 3}, {5, 5}}));
  Ids ids = assign_zone_ids(p);
  ids.rule = *assign_rule_ids(p);
  auto c = compile(p, ids);
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().kind(), ErrorKind::kInvalid);
  EXPECT_NE(c.error().message().find("273614"), std::string::npos) << c.error().message();
  EXPECT_NE(c.error().message().find(std::to_string(ZW_MAX_POLICY)), std::string::npos);
}

TEST(Compile, ScalesToThousandZonesTenThousandRules) {
  std::mt19937 rng(7);
  Policy p;
  const int kZones = 1000;
  for (int i = 0; i < kZones; ++i) {
    Zone z;
    z.name = "z" + std::to_string(i);
    z.vm_globs = {z.name + "-*"};
    z.mode = i % 50 == 0 ? ZoneMode::kAudit : ZoneMode::kEnforce;
    p.zones[z.name] = z;
  }
  auto zone = [&] { return "z" + std::to_string(rng() % kZones); };
  for (int i = 0; i < 10000; ++i) {
    Rule r;
    r.name = "r" + std::to_string(i);
    r.from = {zone()};
    r.to = {zone(), zone()};
    r.proto = i % 3 == 0 ? kUdp : kTcp;
    uint16_t lo = static_cast<uint16_t>(1 + rng() % 60000);
    // Narrow ranges: a range inside a 256-port block costs one PORT entry per port.
    r.ports = {{lo, static_cast<uint16_t>(lo + rng() % 4)}};
    r.action = i % 4 == 0 ? Action::kDeny : Action::kAllow;
    p.rules.push_back(r);
  }
  // A few rules for every source (the "*" side is shared, not recomputed).
  for (int i = 0; i < 20; ++i)
    p.rules.push_back(rule("star" + std::to_string(i), {"*"}, {zone()}, kTcp,
                           {{static_cast<uint16_t>(100 + i), static_cast<uint16_t>(100 + i)}},
                           Action::kAllow));
  Ids ids = assign_zone_ids(p);
  ids.rule = *assign_rule_ids(p);
  auto t0 = std::chrono::steady_clock::now();
  auto c = compile(p, ids);
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(c.has_value()) << c.error().message();
  RecordProperty("compile_seconds", std::to_string(secs));
  EXPECT_LT(secs, 60.0);  // generous: catches per-pair recomputation, not machine speed
  check_well_formed(*c);
  std::mt19937 prng(99);
  for (int i = 0; i < 2000; ++i) {
    uint16_t s = static_cast<uint16_t>(1 + prng() % (kZones + 2));
    uint16_t d = static_cast<uint16_t>(1 + prng() % (kZones + 2));
    uint8_t proto = prng() % 2 ? kTcp : kUdp;
    uint16_t port = static_cast<uint16_t>(prng() % 65536);
    auto got = lookup(*c, s, d, proto, port), want = evaluate(p, ids, s, d, proto, port);
    ASSERT_TRUE(same(got, want)) << s << "->" << d << " " << port << ": " << show(got) << " vs "
                                 << show(want);
  }
}

// ---- differential: random policies x packets, lookup() vs evaluate() -------

namespace {

struct RandomPolicy {
  std::mt19937& rng;
  std::vector<std::string> zone_names;  // user + built-ins
  std::vector<uint16_t> points;         // interesting ports/types to probe

  uint32_t pick(uint32_t n) { return static_cast<uint32_t>(rng() % n); }
  bool chance(int pct) { return static_cast<int>(pick(100)) < pct; }

  std::vector<std::string> zones() {
    if (chance(20)) return {"*"};
    std::vector<std::string> out;
    int n = 1 + static_cast<int>(pick(2));
    for (int i = 0; i < n; ++i)
      out.push_back(zone_names[pick(static_cast<uint32_t>(zone_names.size()))]);
    return out;
  }

  PortRange range() {
    uint32_t lo, hi;
    switch (pick(5)) {
      case 0:  // single port
        lo = hi = 1 + pick(65535);
        break;
      case 1: {  // straddles a 256-block boundary
        uint32_t edge = 256 * (1 + pick(255));
        lo = edge - 1 - pick(20);
        hi = edge + pick(300);
        break;
      }
      case 2:  // block-aligned
        lo = 256 * pick(256);
        hi = lo + 255 + 256 * pick(3);
        lo = std::max<uint32_t>(lo, 1);
        break;
      case 3:  // wide
        lo = 1 + pick(30000);
        hi = lo + pick(40000);
        break;
      default:  // small, low ports where things collide
        lo = 1 + pick(600);
        hi = lo + pick(40);
        break;
    }
    hi = std::min<uint32_t>(hi, 65535);
    if (lo > hi) lo = hi;
    points.insert(points.end(), {static_cast<uint16_t>(lo), static_cast<uint16_t>(hi),
                                 static_cast<uint16_t>(lo - 1),
                                 static_cast<uint16_t>(std::min<uint32_t>(hi + 1, 65535))});
    return {static_cast<uint16_t>(lo), static_cast<uint16_t>(hi)};
  }

  Policy make() {
    Policy p;
    zone_names = {"world", "unzoned"};
    int nz = 1 + static_cast<int>(pick(5));
    for (int i = 0; i < nz; ++i) {
      Zone z;
      z.name = "z" + std::to_string(i);
      z.vm_globs = {z.name};
      z.mode = chance(25) ? ZoneMode::kAudit : ZoneMode::kEnforce;
      p.zones[z.name] = z;
      zone_names.push_back(z.name);
    }
    p.defaults.intra_zone = chance(50) ? Action::kAllow : Action::kDeny;
    p.defaults.inter_zone = chance(50) ? Action::kAllow : Action::kDeny;
    int nr = static_cast<int>(pick(12));
    static const std::vector<int> kProtos = {-1, kTcp, kTcp, kUdp, kSctp, kIcmp, kIcmp6, kGre, 0};
    for (int i = 0; i < nr; ++i) {
      Rule r;
      r.name = "r" + std::to_string(i);
      r.from = zones();
      r.to = zones();
      int proto = kProtos[pick(static_cast<uint32_t>(kProtos.size()))];
      if (proto >= 0) r.proto = static_cast<uint8_t>(proto);
      if ((proto == kTcp || proto == kUdp || proto == kSctp) && chance(75)) {
        int n = 1 + static_cast<int>(pick(3));
        for (int k = 0; k < n; ++k) r.ports.push_back(range());
      }
      if ((proto == kIcmp || proto == kIcmp6) && chance(70)) {
        int n = 1 + static_cast<int>(pick(3));
        for (int k = 0; k < n; ++k) {
          r.icmp_types.push_back(static_cast<uint8_t>(pick(256)));
          points.push_back(r.icmp_types.back());
        }
      }
      r.action = chance(50) ? Action::kAllow : Action::kDeny;
      r.audit = r.action == Action::kDeny && chance(30);
      p.rules.push_back(r);
    }
    return p;
  }
};

}  // namespace

TEST(Compile, DifferentialLookupMatchesEvaluate) {
  std::mt19937 rng(20240601);
  const std::vector<uint8_t> kPacketProtos = {kTcp, kUdp, kSctp, kIcmp, kIcmp6, kGre, 0, 50};
  long checks = 0, exhaustive = 0;
  for (int iter = 0; iter < 400; ++iter) {
    RandomPolicy gen{rng, {}, {0, 1, 255, 256, 511, 512, 65535}};
    Policy p = gen.make();
    Ids ids = assign_zone_ids(p);
    // Sometimes keep ids from a "previous" policy so they are not contiguous.
    std::map<std::string, uint32_t> prev;
    if (gen.chance(30))
      for (const auto& r : p.rules) prev[r.name] = ZW_RULE_FIRST_USER + 2 * gen.pick(50);
    auto rids = assign_rule_ids(p, prev);
    ASSERT_TRUE(rids.has_value());
    ids.rule = *rids;
    auto c = compile(p, ids);
    ASSERT_TRUE(c.has_value()) << c.error().message();
    check_well_formed(*c);
    std::vector<uint16_t> zone_ids;
    for (const auto& [_, id] : ids.zone) zone_ids.push_back(id);
    for (int k = 0; k < 80; ++k) {
      uint16_t s = zone_ids[gen.pick(static_cast<uint32_t>(zone_ids.size()))];
      uint16_t d = zone_ids[gen.pick(static_cast<uint32_t>(zone_ids.size()))];
      uint8_t proto = kPacketProtos[gen.pick(static_cast<uint32_t>(kPacketProtos.size()))];
      uint16_t port;
      if (gen.chance(60)) {
        port = gen.points[gen.pick(static_cast<uint32_t>(gen.points.size()))];
      } else {
        port = static_cast<uint16_t>(gen.pick(65536));
      }
      if (proto == kIcmp || proto == kIcmp6) port &= 0xff;  // an ICMP type is one byte
      auto got = lookup(*c, s, d, proto, port);
      auto want = evaluate(p, ids, s, d, proto, port);
      ASSERT_TRUE(same(got, want))
          << "policy " << iter << " zones " << s << "->" << d << " proto " << int(proto) << " port "
          << port << ": lookup " << show(got) << ", evaluate " << show(want);
      ++checks;
    }
    // Every port of one random pair, for the first policies.
    if (iter < 25) {
      uint16_t s = zone_ids[gen.pick(static_cast<uint32_t>(zone_ids.size()))];
      uint16_t d = zone_ids[gen.pick(static_cast<uint32_t>(zone_ids.size()))];
      for (uint8_t proto : {kTcp, kUdp}) {
        for (uint32_t port = 0; port < 65536; ++port) {
          auto got = lookup(*c, s, d, proto, static_cast<uint16_t>(port));
          auto want = evaluate(p, ids, s, d, proto, static_cast<uint16_t>(port));
          ASSERT_TRUE(same(got, want)) << "policy " << iter << " port " << port;
          ++exhaustive;
        }
      }
    }
  }
  EXPECT_GE(checks, 20000);
  EXPECT_GE(exhaustive, 3000000);
}
