// The incremental apply's plans (engine/slots.h): what is written before
// and after the flip, re-settling after a crash, and the LPM trie's
// effective answers (a prefix of one generation must not shadow a shorter
// one in the other).
#include "engine/slots.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>

#include "util/net.h"

namespace zw::engine::slots {
namespace {

using PV = zw_policy_val;

zw_policy_key pk(uint16_t port) {
  zw_policy_key k{};
  k.src_zone = 3;
  k.dst_zone = 4;
  k.proto = 6;
  k.kind = ZW_KIND_PORT;
  k.port = port;
  return k;
}

zw_verdict verdict(uint32_t rule, uint8_t action = ZW_ACT_ALLOW) {
  zw_verdict v{};
  v.rule_id = rule;
  v.action = action;
  return v;
}

PV both(const zw_verdict& v) {
  PV p{};
  p.slot[0] = p.slot[1] = v;
  return p;
}

bool eq(const zw_verdict& a, const zw_verdict& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Executes a plan on an in-memory map the way reconcile does, checking
// that the active slot never changes before the flip.
template <typename K, typename V>
struct Sim {
  std::map<K, V, KeyLess<K>> m;
  void before(const Plan<K, V>& p, unsigned active) {
    using T = Traits<V>;
    for (size_t i = 0; i < p.write_keys.size(); ++i) {
      auto it = m.find(p.write_keys[i]);
      typename T::Slot a = it == m.end() ? typename T::Slot{} : T::get(it->second, active);
      typename T::Slot na = T::get(p.write_vals[i], active);
      if (it != m.end()) {
        EXPECT_EQ(std::memcmp(&a, &na, sizeof a), 0) << "the active slot changed before the flip";
      }
      m[p.write_keys[i]] = p.write_vals[i];
    }
    for (const auto& k : p.drop_keys) {
      auto it = m.find(k);
      ASSERT_NE(it, m.end());
      EXPECT_FALSE(T::real(T::get(it->second, active))) << "dropped a key the active slot uses";
      m.erase(it);
    }
  }
  void after(const Plan<K, V>& p) {
    for (size_t i = 0; i < p.settle_keys.size(); ++i) m[p.settle_keys[i]] = p.settle_vals[i];
    for (const auto& k : p.delete_keys) m.erase(k);
  }
  std::vector<std::pair<K, V>> live() const { return {m.begin(), m.end()}; }
};

TEST(Slots, UnchangedContentWritesNothing) {
  std::vector<std::pair<zw_policy_key, PV>> live = {{pk(80), both(verdict(3))},
                                                    {pk(443), both(verdict(4))}};
  auto p = plan<zw_policy_key, PV>(live, {{pk(443), verdict(4)}, {pk(80), verdict(3)}}, 1);
  EXPECT_EQ(p.writes(), 0u);
  EXPECT_EQ(p.deletes(), 0u);
}

TEST(Slots, OneChangedEntryIsWrittenAndSettledAlone) {
  std::vector<std::pair<zw_policy_key, PV>> live;
  std::vector<std::pair<zw_policy_key, zw_verdict>> target;
  for (uint16_t port = 1; port <= 100; ++port) {
    live.push_back({pk(port), both(verdict(3))});
    target.push_back({pk(port), verdict(3)});
  }
  target[41].second = verdict(3, ZW_ACT_DENY);  // port 42 changes its action
  const unsigned active = 0;
  auto p = plan<zw_policy_key, PV>(live, target, active);
  ASSERT_EQ(p.write_keys.size(), 1u);
  EXPECT_EQ(p.write_keys[0].port, 42);
  EXPECT_TRUE(eq(p.write_vals[0].slot[active], verdict(3)));          // old answer kept
  EXPECT_TRUE(eq(p.write_vals[0].slot[1], verdict(3, ZW_ACT_DENY)));  // new one beside it
  ASSERT_EQ(p.settle_keys.size(), 1u);
  EXPECT_TRUE(eq(p.settle_vals[0].slot[0], p.settle_vals[0].slot[1]));
  EXPECT_EQ(p.deletes(), 0u);
}

TEST(Slots, AddedAndRemovedKeys) {
  std::vector<std::pair<zw_policy_key, PV>> live = {{pk(80), both(verdict(3))}};
  const unsigned active = 1;
  auto p = plan<zw_policy_key, PV>(live, {{pk(8080), verdict(5)}}, active);
  // 8080: written with its active slot absent, settled after the flip;
  // 80: its new slot emptied before the flip, deleted after it.
  ASSERT_EQ(p.write_keys.size(), 2u);
  std::map<uint16_t, PV> w;
  for (size_t i = 0; i < p.write_keys.size(); ++i) w[p.write_keys[i].port] = p.write_vals[i];
  EXPECT_EQ(w[8080].slot[active].rule_id, ZW_RULE_NONE);
  EXPECT_EQ(w[8080].slot[0].rule_id, 5u);
  EXPECT_EQ(w[80].slot[active].rule_id, 3u);
  EXPECT_EQ(w[80].slot[0].rule_id, ZW_RULE_NONE);
  ASSERT_EQ(p.settle_keys.size(), 1u);
  EXPECT_EQ(p.settle_keys[0].port, 8080);
  ASSERT_EQ(p.delete_keys.size(), 1u);
  EXPECT_EQ(p.delete_keys[0].port, 80);
  EXPECT_TRUE(p.drop_keys.empty());
}

// A crash after the writes (before the flip) leaves new slots written; a
// crash after the flip leaves old slots stale. The next plan puts both right.
TEST(Slots, ReSettlesWhatAnInterruptedApplyLeft) {
  Sim<zw_policy_key, PV> sim;
  for (uint16_t port = 1; port <= 10; ++port) sim.m[pk(port)] = both(verdict(3));
  std::vector<std::pair<zw_policy_key, zw_verdict>> a, b;
  for (uint16_t port = 1; port <= 10; ++port) a.push_back({pk(port), verdict(3)});
  b = a;
  b[2].second = verdict(7);           // port 3 changes
  b.push_back({pk(99), verdict(8)});  // port 99 is new
  b.erase(b.begin());                 // port 1 goes

  // Apply A -> B, crashed before the flip (active stays slot 0).
  auto crashed = plan<zw_policy_key, PV>(sim.live(), b, 0);
  sim.before(crashed, 0);
  // Next apply (of A again, still active slot 0): the leftovers are undone.
  auto again = plan<zw_policy_key, PV>(sim.live(), a, 0);
  sim.before(again, 0);
  sim.after(again);
  ASSERT_EQ(sim.m.size(), 10u);
  for (const auto& [k, v] : sim.m) {
    EXPECT_TRUE(eq(v.slot[0], v.slot[1])) << k.port;
    EXPECT_EQ(v.slot[1].rule_id, 3u) << k.port;
  }

  // Apply A -> B, crashed after the flip (slot 1 active, not settled).
  auto flipped = plan<zw_policy_key, PV>(sim.live(), b, 0);
  sim.before(flipped, 0);
  // Next apply B -> B from active slot 1: settles without writing slot 1.
  auto settle = plan<zw_policy_key, PV>(sim.live(), b, 1);
  sim.before(settle, 1);
  sim.after(settle);
  std::map<uint16_t, uint32_t> want;
  for (const auto& [k, v] : b) want[k.port] = v.rule_id;
  ASSERT_EQ(sim.m.size(), want.size());
  for (const auto& [k, v] : sim.m) {
    EXPECT_TRUE(eq(v.slot[0], v.slot[1])) << k.port;
    EXPECT_EQ(v.slot[1].rule_id, want.at(k.port)) << k.port;
  }
  // And a third apply of B writes nothing.
  auto nothing = plan<zw_policy_key, PV>(sim.live(), b, 0);
  EXPECT_EQ(nothing.writes() + nothing.deletes(), 0u);
}

TEST(Slots, PairBitsAndZonePairKinds) {
  zw_pair_key k{};
  k.ifindex = 7;
  auto p = plan<zw_pair_key, uint32_t>({{k, 3u}}, {}, 0);  // present in both, gone in the next
  ASSERT_EQ(p.write_keys.size(), 1u);
  EXPECT_EQ(p.write_vals[0], 1u);  // slot 0 (active) kept, slot 1 cleared
  ASSERT_EQ(p.delete_keys.size(), 1u);
  zw_zpair_key z{3, 4};
  zw_zpair zv{};
  zv.kinds[0] = zv.kinds[1] = ZW_ZPK_PORT;
  auto q = plan<zw_zpair_key, zw_zpair>({{z, zv}}, {{z, ZW_ZPK_PORT | ZW_ZPK_ANY}}, 1);
  ASSERT_EQ(q.write_keys.size(), 1u);
  EXPECT_EQ(q.write_vals[0].kinds[1], ZW_ZPK_PORT);
  EXPECT_EQ(q.write_vals[0].kinds[0], ZW_ZPK_PORT | ZW_ZPK_ANY);
}

// ---- the LPM trie ----

zw_cidr_key ck(const char* cidr) {
  auto c = net::parse_cidr(cidr);
  EXPECT_TRUE(c.has_value()) << cidr;
  zw_cidr_key k{};
  k.prefixlen = c->bits128();
  std::memcpy(k.addr, c->addr.bytes.data(), 16);
  return k;
}

zw_addr_info zone(uint16_t z, uint16_t flags = 0) {
  zw_addr_info v{};
  v.zone = z;
  v.flags = flags;
  return v;
}

// What the datapath answers for an address in generation slot `s`: the
// longest key of the map covering it, its slot s (absent: the world).
uint16_t lookup(const std::map<zw_cidr_key, zw_addr_val, KeyLess<zw_cidr_key>>& trie,
                const char* addr, unsigned s) {
  auto a = net::parse_addr(addr);
  EXPECT_TRUE(a.has_value());
  zw_cidr_key full{};
  full.prefixlen = 128;
  std::memcpy(full.addr, a->bytes.data(), 16);
  const zw_addr_val* best = nullptr;
  uint32_t best_len = 0;
  for (const auto& [k, v] : trie) {
    zw_cidr_key probe = full;
    probe.prefixlen = k.prefixlen;
    zw_cidr_key mp = masked(probe);
    if (std::memcmp(&mp, &k, sizeof k) != 0) continue;
    if (!best || k.prefixlen >= best_len) {
      best = &v;
      best_len = k.prefixlen;
    }
  }
  if (!best || best->slot[s].zone == ZW_ZONE_NONE) return ZW_ZONE_WORLD;
  return best->slot[s].zone;
}

TEST(SlotsLpm, EffectiveAnswerIsTheLongestCoveringPrefix) {
  Effective e({{ck("10.0.0.0/8"), zone(3)}, {ck("10.1.0.0/16"), zone(4)}});
  EXPECT_EQ(e.at(ck("10.1.2.0/24")).zone, 4);
  EXPECT_TRUE(e.at(ck("10.1.2.0/24")).flags & ZW_AIF_INHERITED);
  EXPECT_EQ(e.at(ck("10.1.0.0/16")).zone, 4);
  EXPECT_FALSE(e.at(ck("10.1.0.0/16")).flags & ZW_AIF_INHERITED);
  EXPECT_EQ(e.at(ck("10.2.0.0/16")).zone, 3);
  EXPECT_EQ(e.at(ck("11.0.0.0/8")).zone, ZW_ZONE_NONE);
  EXPECT_EQ(e.at(ck("0.0.0.0/0")).zone, ZW_ZONE_NONE);
}

// Both directions of shadowing, checked at every step an apply goes
// through: before the flip (old answers), after it (new), settled.
void check_transition(
    const std::vector<std::pair<zw_cidr_key, zw_addr_info>>& from,
    const std::vector<std::pair<zw_cidr_key, zw_addr_info>>& to,
    const std::vector<std::pair<const char*, std::pair<uint16_t, uint16_t>>>& want) {
  Sim<zw_cidr_key, zw_addr_val> sim;
  auto first = plan_cidrs({}, from, 1);
  sim.before(first, 1);
  sim.after(first);
  auto p = plan_cidrs(sim.live(), to, 0);
  sim.before(p, 0);
  for (const auto& [addr, zz] : want)
    EXPECT_EQ(lookup(sim.m, addr, 0), zz.first) << addr << " before the flip";
  for (const auto& [addr, zz] : want)
    EXPECT_EQ(lookup(sim.m, addr, 1), zz.second) << addr << " after the flip";
  sim.after(p);
  for (const auto& [addr, zz] : want) {
    EXPECT_EQ(lookup(sim.m, addr, 1), zz.second) << addr << " settled";
    EXPECT_EQ(lookup(sim.m, addr, 0), zz.second) << addr << " settled, other slot";
  }
  for (const auto& [k, v] : sim.m) {
    EXPECT_EQ(std::memcmp(&v.slot[0], &v.slot[1], sizeof v.slot[0]), 0);
    EXPECT_TRUE(Traits<zw_addr_val>::real(v.slot[0])) << "a key no generation has stayed";
  }
  auto again = plan_cidrs(sim.live(), to, 1);
  EXPECT_EQ(again.writes() + again.deletes(), 0u);
}

TEST(SlotsLpm, AddedLongerPrefixDoesNotShadowTheOldGeneration) {
  // office 198.51.100.0/24 (3); the new generation adds lab .128/25 (4).
  check_transition({{ck("198.51.100.0/24"), zone(3)}},
                   {{ck("198.51.100.0/24"), zone(3)}, {ck("198.51.100.128/25"), zone(4)}},
                   {{"198.51.100.200", {3, 4}}, {"198.51.100.1", {3, 3}}, {"203.0.113.1", {1, 1}}});
}

TEST(SlotsLpm, RemovedLongerPrefixDoesNotShadowTheNewGeneration) {
  check_transition({{ck("198.51.100.0/24"), zone(3)}, {ck("198.51.100.128/25"), zone(4)}},
                   {{ck("198.51.100.0/24"), zone(3)}},
                   {{"198.51.100.200", {4, 3}}, {"198.51.100.1", {3, 3}}});
}

TEST(SlotsLpm, PrefixWithoutCoverGoesToTheWorld) {
  check_transition({{ck("10.9.0.0/16"), zone(5)}}, {{ck("10.0.0.0/8"), zone(6)}},
                   {{"10.9.1.1", {5, 6}}, {"10.8.1.1", {1, 6}}, {"11.0.0.1", {1, 1}}});
  check_transition({{ck("10.0.0.0/8"), zone(6)}, {ck("10.9.0.0/16"), zone(5)}}, {},
                   {{"10.9.1.1", {5, 1}}, {"10.8.1.1", {6, 1}}});
  check_transition({{ck("2001:db8::/32"), zone(3)}},
                   {{ck("2001:db8::/32"), zone(4)}, {ck("2001:db8:1::/48"), zone(3)}},
                   {{"2001:db8:1::1", {3, 3}}, {"2001:db8:2::1", {3, 4}}});
}

}  // namespace
}  // namespace zw::engine::slots
