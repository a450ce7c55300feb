// Effective answers of the shared LPM trie.
#include "engine/slots.h"

#include <set>

namespace zw::engine::slots {

zw_cidr_key masked(zw_cidr_key k) {
  uint32_t bits = std::min<uint32_t>(k.prefixlen, 128);
  k.prefixlen = bits;
  for (uint32_t i = 0; i < 16; ++i) {
    uint32_t keep = bits > i * 8 ? std::min<uint32_t>(bits - i * 8, 8) : 0;
    k.addr[i] &= static_cast<uint8_t>(keep == 8 ? 0xff : (0xff00u >> keep) & 0xff);
  }
  return k;
}

Effective::Effective(const std::vector<std::pair<zw_cidr_key, zw_addr_info>>& real) {
  std::set<uint32_t, std::greater<>> lens;
  for (const auto& [k, v] : real) {
    zw_cidr_key m = masked(k);
    real_[m] = v;
    lens.insert(m.prefixlen);
  }
  lens_.assign(lens.begin(), lens.end());
}

zw_addr_info Effective::at(const zw_cidr_key& k) const {
  zw_cidr_key m = masked(k);
  for (uint32_t len : lens_) {
    if (len > m.prefixlen) continue;
    zw_cidr_key c = m;
    c.prefixlen = len;
    c = masked(c);
    if (auto it = real_.find(c); it != real_.end()) {
      zw_addr_info v = it->second;
      v.flags &= static_cast<uint16_t>(~ZW_AIF_INHERITED);
      if (len < m.prefixlen) v.flags |= ZW_AIF_INHERITED;
      return v;
    }
  }
  return zw_addr_info{};
}

Plan<zw_cidr_key, zw_addr_val> plan_cidrs(
    const std::vector<std::pair<zw_cidr_key, zw_addr_val>>& live,
    const std::vector<std::pair<zw_cidr_key, zw_addr_info>>& desired, unsigned active) {
  using T = Traits<zw_addr_val>;
  std::vector<std::pair<zw_cidr_key, zw_addr_val>> live_m;
  std::vector<std::pair<zw_cidr_key, zw_addr_info>> live_real;
  live_m.reserve(live.size());
  for (const auto& [k, v] : live) {
    live_m.emplace_back(masked(k), v);
    if (T::real(T::get(v, active))) live_real.emplace_back(masked(k), T::get(v, active));
  }
  Effective now(live_real), next(desired);
  std::set<zw_cidr_key, KeyLess<zw_cidr_key>> keys;
  for (const auto& [k, v] : live_m) keys.insert(k);
  for (const auto& [k, v] : desired) keys.insert(masked(k));
  std::vector<std::pair<zw_cidr_key, zw_addr_info>> target;
  target.reserve(keys.size());
  for (const auto& k : keys) target.emplace_back(k, next.at(k));
  return plan<zw_cidr_key, zw_addr_val>(std::move(live_m), std::move(target), active,
                                        [&](const zw_cidr_key& k) { return now.at(k); });
}

}  // namespace zw::engine::slots
