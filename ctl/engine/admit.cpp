// Admission of a known VM's new interface (engine/admit.h).
#include "engine/admit.h"

#include <net/if.h>

#include <cstring>

namespace zw::engine {

namespace dp = zw::datapath;

namespace {

bool same(const zw_addr_info& a, const zw_addr_info& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

}  // namespace

Result<std::optional<AdmitReport>> admit(const dp::Maps& maps, const Admissible& a,
                                         uint32_t ifindex, std::string* why) {
  auto refuse = [&](std::string w) {
    *why = std::move(w);
    return std::optional<AdmitReport>{};
  };
  if (ifindex == 0) return refuse("no interface index");
  if (a.ifindex == ifindex) return refuse("already enforced under this index");
  if (a.value.id >= ZW_MAX_ENDPOINTS) return refuse("the VM has no counter slot");
  auto cfg = dp::ConfigView::map(maps.config.get());
  if (!cfg) return fail(std::move(cfg.error()));
  if (cfg->active_gen() != a.generation)
    return refuse("generation " + std::to_string(cfg->active_gen()) + " is live, not " +
                  std::to_string(a.generation));
  // A recreated tap: the old one must be gone, or two interfaces would be
  // the same VM's until the reconcile.
  char name[IF_NAMESIZE] = {};
  if (a.ifindex != 0 && if_indextoname(a.ifindex, name) != nullptr)
    return refuse("the VM's interface of the last apply (index " + std::to_string(a.ifindex) +
                  ") still exists");

  // Everything is checked before anything is written.
  std::vector<std::pair<zw_addr_key, zw_addr_val>> addrs;
  for (const auto& k : a.own) {
    zw_addr_val v{};
    if (!dp::map_lookup(maps.addrs.get(), k, &v)) return refuse("an address of the VM is not live");
    if (!same(v.slot[0], v.slot[1])) return refuse("an address entry is not settled");
    if (v.slot[0].zone != a.value.zone || v.slot[0].ifindex != a.ifindex ||
        (v.slot[0].flags & ZW_AIF_SHARED))
      return refuse("an address of the VM has another zone or owner");
    v.slot[0].ifindex = v.slot[1].ifindex = ifindex;
    addrs.emplace_back(k, v);
  }
  zw_endpoint_val old{};
  if (dp::map_lookup(maps.endpoints.get(), zw_endpoint_key{ifindex}, &old))
    return refuse("the interface index already has an endpoint");

  // Pairs, then addresses, then the endpoint: the interface drops
  // everything until its endpoint exists, so it never meets half of this.
  AdmitReport rep;
  for (const auto& k : a.allowed) {
    zw_pair_key pk{};
    pk.ifindex = ifindex;
    std::memcpy(pk.addr, k.addr, sizeof pk.addr);
    if (auto st = dp::map_update(maps.pairs.get(), pk, uint32_t{3}); !st)
      return fail(std::move(st.error()).wrap("admit: zw_pairs"));
    ++rep.entries_written;
  }
  for (const auto& [k, v] : addrs) {
    if (auto st = dp::map_update(maps.addrs.get(), k, v); !st)
      return fail(std::move(st.error()).wrap("admit: zw_addrs"));
    ++rep.entries_written;
  }
  zw_endpoint_val ev{};
  ev.slot[0] = ev.slot[1] = a.value;
  if (auto st = dp::map_update(maps.endpoints.get(), zw_endpoint_key{ifindex}, ev, BPF_NOEXIST);
      !st)
    return fail(std::move(st.error()).wrap("admit: zw_endpoints"));
  ++rep.entries_written;
  return std::optional(rep);
}

}  // namespace zw::engine
