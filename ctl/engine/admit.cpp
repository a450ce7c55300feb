// Admission of a known VM's new interface (engine/admit.h).
#include "engine/admit.h"

#include <net/if.h>
#include <net/if_arp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>

#include "util/fd.h"

namespace zw::engine {

namespace dp = zw::datapath;

namespace {

bool same(const zw_addr_info& a, const zw_addr_info& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

}  // namespace

std::optional<net::Mac> link_mac(uint32_t ifindex) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return std::nullopt;
  ifreq ifr{};
  ifr.ifr_ifindex = static_cast<int>(ifindex);
  if (::ioctl(s.get(), SIOCGIFNAME, &ifr) != 0) return std::nullopt;
  const std::string name(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
  if (::ioctl(s.get(), SIOCGIFHWADDR, &ifr) != 0 || ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
    return std::nullopt;
  net::Mac m;
  std::memcpy(m.data(), ifr.ifr_hwaddr.sa_data, m.size());
  // Renamed between the two calls: the name may be another interface's now.
  ifr = {};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (::ioctl(s.get(), SIOCGIFINDEX, &ifr) != 0 ||
      static_cast<uint32_t>(ifr.ifr_ifindex) != ifindex)
    return std::nullopt;
  return m;
}

Result<std::optional<AdmitReport>> admit(const dp::Maps& maps, const Admissible& a,
                                         uint32_t ifindex, std::string* why, bool* retry) {
  if (retry) *retry = false;
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
  // A starting VM's tap: libvirt creates it, then gives it this MAC.
  if (a.tap_mac) {
    auto m = link_mac(ifindex);
    if (!m || *m != *a.tap_mac) {
      if (retry) *retry = m.has_value();
      return refuse("the interface's MAC " + (m ? net::mac_str(*m) : std::string("(none)")) +
                    " is not " + net::mac_str(*a.tap_mac) +
                    ", the one libvirt gives the tap of a starting VM with this config");
    }
  }
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
