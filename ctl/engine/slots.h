// Incremental apply of the two-slot maps (ABI header, "Generations and
// slots"): what an apply N -> N+1 writes, computed from the live entries and
// the new generation's content. Pure: no kernel calls, unit-tested
// (tests/unit/test_slots.cpp); reconcile.cpp executes the plans.
//
// Per key, with A = live active slot, B = live inactive slot, T = target
// (the new generation's content, absent if the key is not in it):
//   before the flip: write {A, T} where B != T (re-settles what a crashed
//     apply left, and writes what changes); a key new to the map gets
//     {initial(K), T}; a key not real in A nor in T goes (nobody sees it);
//   after the flip: settle: {T, T} where A != T, delete where T is not real.
// A key whose slots are all equal to its target is not touched.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <utility>
#include <vector>

#include "zonewall/abi/zonewall.h"

namespace zw::engine::slots {

// How a value type holds its two slots.
template <typename V>
struct Traits;

template <>
struct Traits<zw_endpoint_val> {
  using Slot = zw_endpoint;
  static Slot get(const zw_endpoint_val& v, unsigned i) { return v.slot[i]; }
  static void set(zw_endpoint_val& v, unsigned i, const Slot& s) { v.slot[i] = s; }
  static bool real(const Slot& s) { return s.zone != ZW_ZONE_NONE; }
};

template <>
struct Traits<zw_addr_val> {  // zw_addrs and zw_cidrs
  using Slot = zw_addr_info;
  static Slot get(const zw_addr_val& v, unsigned i) { return v.slot[i]; }
  static void set(zw_addr_val& v, unsigned i, const Slot& s) { v.slot[i] = s; }
  // An inherited CIDR answer is what the trie gives without the key anyway.
  static bool real(const Slot& s) {
    return s.zone != ZW_ZONE_NONE && !(s.flags & ZW_AIF_INHERITED);
  }
};

template <>
struct Traits<zw_policy_val> {
  using Slot = zw_verdict;
  static Slot get(const zw_policy_val& v, unsigned i) { return v.slot[i]; }
  static void set(zw_policy_val& v, unsigned i, const Slot& s) { v.slot[i] = s; }
  static bool real(const Slot& s) { return s.rule_id != ZW_RULE_NONE; }
};

template <>
struct Traits<zw_zpair> {
  using Slot = uint8_t;  // kinds
  static Slot get(const zw_zpair& v, unsigned i) { return v.kinds[i]; }
  static void set(zw_zpair& v, unsigned i, Slot s) { v.kinds[i] = s; }
  static bool real(Slot s) { return s != 0; }
};

template <>
struct Traits<uint32_t> {  // zw_pairs: bit i = present in slot i
  using Slot = uint8_t;    // 0 or 1
  static Slot get(uint32_t v, unsigned i) { return (v >> i) & 1; }
  static void set(uint32_t& v, unsigned i, Slot s) {
    v = (v & ~(1u << i)) | (static_cast<uint32_t>(s & 1) << i);
  }
  static bool real(Slot s) { return s != 0; }
};

template <typename S>
bool same(const S& a, const S& b) {
  return std::memcmp(&a, &b, sizeof(S)) == 0;
}

template <typename K>
struct KeyLess {
  bool operator()(const K& a, const K& b) const { return std::memcmp(&a, &b, sizeof(K)) < 0; }
};

template <typename K, typename V>
struct Plan {
  std::vector<K> write_keys;  // before the flip
  std::vector<V> write_vals;
  std::vector<K> drop_keys;    // before the flip: invisible leftovers
  std::vector<K> settle_keys;  // after the flip
  std::vector<V> settle_vals;
  std::vector<K> delete_keys;  // after the flip
  // Undo of the writes before the flip (a failed apply): live values back,
  // keys new to the map removed.
  std::vector<K> undo_keys;
  std::vector<V> undo_vals;
  std::vector<K> undo_deletes;

  size_t writes() const { return write_keys.size() + settle_keys.size(); }
  size_t deletes() const { return drop_keys.size() + delete_keys.size(); }
};

// live: the map's entries; target: the new generation's content per key
// (absent slots allowed: a key the new generation does not answer for);
// active: the slot of the active generation; initial(K): the active slot of
// a key new to the map (absent for exact-match maps; the effective answer
// for the LPM trie).
template <typename K, typename V>
Plan<K, V> plan(std::vector<std::pair<K, V>> live,
                std::vector<std::pair<K, typename Traits<V>::Slot>> target, unsigned active,
                const std::function<typename Traits<V>::Slot(const K&)>& initial = {}) {
  using T = Traits<V>;
  using S = typename T::Slot;
  const unsigned next = active ^ 1u;
  KeyLess<K> less;
  auto by_key = [&](const auto& a, const auto& b) { return less(a.first, b.first); };
  std::sort(live.begin(), live.end(), by_key);
  std::stable_sort(target.begin(), target.end(), by_key);
  // Duplicate targets: the last one wins (as successive writes would).
  {
    std::vector<std::pair<K, S>> uniq;
    uniq.reserve(target.size());
    for (auto& t : target) {
      if (!uniq.empty() && !less(uniq.back().first, t.first))
        uniq.back() = t;
      else
        uniq.push_back(t);
    }
    target.swap(uniq);
  }
  Plan<K, V> p;
  auto settle = [&](const K& k, const S& a, const S& t) {
    if (!T::real(t)) {
      p.delete_keys.push_back(k);
    } else if (!same(a, t)) {
      V v{};
      T::set(v, 0, t);
      T::set(v, 1, t);
      p.settle_keys.push_back(k);
      p.settle_vals.push_back(v);
    }
  };
  size_t i = 0, j = 0;
  while (i < live.size() || j < target.size()) {
    bool have_l = i < live.size(), have_t = j < target.size();
    if (have_l && have_t && !less(live[i].first, target[j].first) &&
        !less(target[j].first, live[i].first)) {
      const K& k = live[i].first;
      const V& v = live[i].second;
      S a = T::get(v, active), b = T::get(v, next), t = target[j].second;
      if (!same(b, t)) {
        if (!T::real(a) && !T::real(t)) {
          p.drop_keys.push_back(k);
        } else {
          V w{};
          T::set(w, active, a);
          T::set(w, next, t);
          p.write_keys.push_back(k);
          p.write_vals.push_back(w);
          p.undo_keys.push_back(k);
          p.undo_vals.push_back(v);
          settle(k, a, t);
        }
      } else if (!same(a, t) || !T::real(t)) {
        settle(k, a, t);
      }
      ++i;
      ++j;
    } else if (have_l && (!have_t || less(live[i].first, target[j].first))) {
      // In the map, not in the new generation.
      const K& k = live[i].first;
      const V& v = live[i].second;
      S a = T::get(v, active), b = T::get(v, next), none{};
      if (!T::real(a)) {
        p.drop_keys.push_back(k);
      } else {
        if (!same(b, none)) {
          V w{};
          T::set(w, active, a);
          T::set(w, next, none);
          p.write_keys.push_back(k);
          p.write_vals.push_back(w);
          p.undo_keys.push_back(k);
          p.undo_vals.push_back(v);
        }
        p.delete_keys.push_back(k);
      }
      ++i;
    } else {
      // New to the map.
      const K& k = target[j].first;
      S t = target[j].second;
      S a = initial ? initial(k) : S{};
      if (T::real(t)) {
        V w{};
        T::set(w, active, a);
        T::set(w, next, t);
        p.write_keys.push_back(k);
        p.write_vals.push_back(w);
        p.undo_deletes.push_back(k);
        settle(k, a, t);
      }
      ++j;
    }
  }
  return p;
}

// ---- the LPM trie (zw_cidrs): effective answers ----

// The key with the bits beyond prefixlen cleared (how the trie sees it).
zw_cidr_key masked(zw_cidr_key k);

// Real prefixes of one generation -> their effective answer at any key: the
// zone of the longest real prefix covering it (ZW_AIF_INHERITED if shorter
// than the key), absent (zone ZW_ZONE_NONE) if none covers it.
class Effective {
 public:
  explicit Effective(const std::vector<std::pair<zw_cidr_key, zw_addr_info>>& real);
  zw_addr_info at(const zw_cidr_key& k) const;

 private:
  std::map<zw_cidr_key, zw_addr_info, KeyLess<zw_cidr_key>> real_;
  std::vector<uint32_t> lens_;  // distinct prefix lengths, longest first
};

// The new generation's answer for every key of live and desired (desired:
// the generation's real prefixes), and the plan with new keys' active slots
// from the live active generation.
Plan<zw_cidr_key, zw_addr_val> plan_cidrs(
    const std::vector<std::pair<zw_cidr_key, zw_addr_val>>& live,
    const std::vector<std::pair<zw_cidr_key, zw_addr_info>>& desired, unsigned active);

}  // namespace zw::engine::slots
