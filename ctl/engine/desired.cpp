// Building a generation's content from policy and inventory.
#include "engine/desired.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "inventory/zones.h"

namespace zw::engine {

static_assert(policy::kDefaultMaxFlows == ZW_CT_DEFAULT_LIMIT &&
                  policy::kMaxFlowsCeiling == ZW_MAX_CT,
              "policy conntrack limits agree with the datapath's");

namespace {

std::string proto_name(const std::optional<uint8_t>& p) {
  if (!p) return "any";
  switch (*p) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 132:
      return "sctp";
    case 1:
      return "icmp";
    case 58:
      return "icmpv6";
    default:
      return "proto " + std::to_string(*p);
  }
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::string summarize(const policy::Rule& r) {
  std::string s = join(r.from) + " -> " + join(r.to) + " " + proto_name(r.proto);
  std::string ports;
  for (const auto& pr : r.ports)
    ports += (ports.empty() ? " " : ",") + std::to_string(pr.lo) +
             (pr.hi != pr.lo ? "-" + std::to_string(pr.hi) : "");
  for (auto t : r.icmp_types) ports += (ports.empty() ? " type " : ",") + std::to_string(t);
  return s + ports;
}

// Endpoint ids (counter slots, < ZW_MAX_ENDPOINTS): keep the id a VM
// interface had, give new ones the lowest free. Keyed by VM identity and
// MAC, so a VM restarted on a new tap keeps its counters. VMs without an
// interface here (stopped, or running on another host of a cluster) hook
// nothing and count nothing: they keep an id only while no interface needs
// it, else kNoEndpointId, so that they never take a slot an interface
// needs (a cluster's remote VMs may outnumber the slots).
std::map<std::string, uint32_t> endpoint_ids(const std::vector<inventory::Assigned>& eps,
                                             const std::optional<State>& prev) {
  std::map<std::string, uint32_t> ids;
  std::map<uint32_t, std::string> holder;  // id -> key
  std::map<std::string, uint32_t> old;
  if (prev)
    for (const auto& e : prev->endpoints) old[e.key] = e.id;
  std::set<uint32_t> spare;  // ids held by interface-less VMs: an interface may take them
  auto take = [&](const std::string& k, uint32_t id, bool with_interface) {
    ids[k] = id;
    if (id == kNoEndpointId) return;
    holder[id] = k;
    if (!with_interface) spare.insert(id);
  };
  auto keep_old = [&](bool with_interface) {
    for (const auto& a : eps) {
      if (a.endpoint.ifname.empty() == with_interface) continue;
      std::string k = endpoint_key(a.endpoint);
      auto it = old.find(k);
      if (!ids.count(k) && it != old.end() && it->second < ZW_MAX_ENDPOINTS &&
          !holder.count(it->second))
        take(k, it->second, with_interface);
    }
  };
  uint32_t next = 0;
  auto lowest_free = [&] {
    while (next < ZW_MAX_ENDPOINTS && holder.count(next)) ++next;
    return next < ZW_MAX_ENDPOINTS ? next : kNoEndpointId;
  };
  keep_old(true);
  keep_old(false);
  for (const auto& a : eps) {  // new interfaces: the lowest free, else an interface-less VM's
    if (a.endpoint.ifname.empty()) continue;
    std::string k = endpoint_key(a.endpoint);
    if (ids.count(k)) continue;
    uint32_t id = lowest_free();
    if (id == kNoEndpointId && !spare.empty()) {
      id = *spare.begin();
      spare.erase(spare.begin());
      ids[holder[id]] = kNoEndpointId;
    }
    take(k, id, true);
  }
  for (const auto& a : eps) {  // interface-less VMs: what is left
    std::string k = endpoint_key(a.endpoint);
    if (!ids.count(k)) take(k, lowest_free(), false);
  }
  return ids;
}

}  // namespace

std::string endpoint_key(const inventory::Endpoint& e) {
  return (e.vm_uuid.empty() ? "name:" + e.vm_name : "uuid:" + e.vm_uuid) + "|" +
         (e.mac ? "mac:" + net::mac_str(*e.mac) : "if:" + e.ifname);
}

Result<Desired> build_desired(const policy::Policy& p, const inventory::Inventory& inv,
                              const std::optional<State>& previous,
                              const std::string& default_attach, const IfindexResolver& resolve) {
  Desired d;
  auto assigned = inventory::assign_zones(p, inv);
  if (!assigned) return fail(std::move(assigned.error()));

  d.ids =
      policy::assign_zone_ids(p, previous ? previous->zones : std::map<std::string, uint16_t>{});
  auto rule_ids =
      policy::assign_rule_ids(p, previous ? previous->rule_ids : std::map<std::string, uint32_t>{});
  if (!rule_ids) return fail(std::move(rule_ids.error()));
  d.ids.rule = std::move(*rule_ids);
  for (const auto& r : p.rules)
    d.rules.push_back(
        {d.ids.rule.at(r.name), r.name,
         r.action == policy::Action::kAllow ? "allow" : (r.audit ? "deny (audit)" : "deny"),
         summarize(r)});

  auto compiled = policy::compile(p, d.ids);
  if (!compiled) return fail(std::move(compiled.error()));
  d.compiled = std::move(*compiled);

  std::vector<std::string> errors;
  {
    std::set<std::pair<uint16_t, uint16_t>> pairs;
    for (const auto& e : d.compiled.entries)
      if (e.key.kind != ZW_KIND_DEFAULT) pairs.emplace(e.key.src_zone, e.key.dst_zone);
    if (pairs.size() > ZW_MAX_ZPAIRS)
      errors.push_back("policy: rules for " + std::to_string(pairs.size()) +
                       " zone pairs exceed the zone-pair map (" + std::to_string(ZW_MAX_ZPAIRS) +
                       ")");
  }
  const auto interfaces = std::count_if(assigned->begin(), assigned->end(),
                                        [](const auto& a) { return !a.endpoint.ifname.empty(); });
  if (interfaces > ZW_MAX_ENDPOINTS)
    errors.push_back("inventory: " + std::to_string(interfaces) +
                     " VM interfaces exceed the endpoint map (" + std::to_string(ZW_MAX_ENDPOINTS) +
                     ")");

  auto ep_ids = endpoint_ids(*assigned, previous);
  std::map<net::Addr, std::string> owner;
  std::map<net::Addr, std::pair<std::string, std::string>> shared;  // VIP -> zone, first source
  for (auto& a : *assigned) {
    DesiredEndpoint de;
    de.zone = a.zone;
    de.attach = a.endpoint.attach.value_or(default_attach);
    // No interface name: a defined VM that is not running. Its addresses are
    // zoned so others judge traffic to it correctly; nothing to attach.
    de.ifindex = a.endpoint.ifname.empty() ? 0 : resolve(a.endpoint.ifname);
    if (de.ifindex == 0 && !a.endpoint.ifname.empty())
      d.warnings.push_back(a.endpoint.source + ": interface '" + a.endpoint.ifname +
                           "' does not exist; its addresses are zoned, nothing is attached");
    uint16_t zone_id = d.ids.zone.at(a.zone);
    de.value.id = ep_ids.at(endpoint_key(a.endpoint));
    de.value.zone = zone_id;
    auto zit = p.zones.find(a.zone);
    if (zit != p.zones.end() && zit->second.mode == policy::ZoneMode::kAudit)
      de.value.flags |= ZW_EPF_AUDIT;
    // Hygiene: what the VM may claim to be, as far as we know it.
    const policy::Hygiene h = policy::hygiene_of(p, a.zone);
    if (a.endpoint.mac && h.mac) {
      std::memcpy(de.value.mac, a.endpoint.mac->data(), 6);
      de.value.flags |= ZW_EPF_CHECK_MAC;
    }
    de.value.ct_limit = policy::max_flows_of(p, a.zone);
    if (h.ip) de.value.flags |= ZW_EPF_CHECK_IP;
    if (h.arp) de.value.flags |= ZW_EPF_CHECK_ARP;
    if (h.nd) de.value.flags |= ZW_EPF_CHECK_ND;
    if (h.ra) de.value.flags |= ZW_EPF_BLOCK_RA;
    if (h.dhcp_server) de.value.flags |= ZW_EPF_BLOCK_DHCPD;
    if (a.endpoint.addrs.empty() && a.endpoint.allowed.empty()) de.value.flags |= ZW_EPF_NO_ADDRS;
    for (const auto& addr : a.endpoint.addrs) {
      auto [it, fresh] = owner.emplace(addr, a.endpoint.source);
      if (!fresh) {
        errors.push_back(a.endpoint.source + ": address " + addr.str() + " also belongs to " +
                         it->second);
        continue;
      }
      zw_addr_key k{};
      std::memcpy(k.addr, addr.bytes.data(), 16);
      zw_addr_info v{};
      v.zone = zone_id;
      v.ifindex = de.ifindex;
      d.addrs.emplace_back(k, v);
    }
    for (const auto& addr : a.endpoint.allowed) {
      auto [it, fresh] = shared.try_emplace(addr, a.zone, a.endpoint.source);
      if (!fresh && it->second.first != a.zone)
        errors.push_back(a.endpoint.source + ": allowed address " + addr.str() + " is in zone '" +
                         a.zone + "' here but in zone '" + it->second.first + "' for " +
                         it->second.second + " (a shared address belongs to one zone)");
      if (de.ifindex == 0) continue;
      zw_pair_key k{};
      k.ifindex = de.ifindex;
      std::memcpy(k.addr, addr.bytes.data(), 16);
      d.pairs.push_back(k);
    }
    de.ep = std::move(a.endpoint);
    d.endpoints.push_back(std::move(de));
  }
  // A shared address is zoned like its VMs and owned by none of them alone.
  for (const auto& [addr, zs] : shared) {
    if (auto o = owner.find(addr); o != owner.end()) {
      errors.push_back(zs.second + ": allowed address " + addr.str() + " is the own address of " +
                       o->second);
      continue;
    }
    zw_addr_key k{};
    std::memcpy(k.addr, addr.bytes.data(), 16);
    zw_addr_info v{};
    v.zone = d.ids.zone.at(zs.first);
    v.flags = ZW_AIF_SHARED;
    d.addrs.emplace_back(k, v);
  }
  if (d.pairs.size() > ZW_MAX_PAIRS)
    errors.push_back("inventory: " + std::to_string(d.pairs.size()) +
                     " allowed address pairs exceed the pair map (" + std::to_string(ZW_MAX_PAIRS) +
                     ")");
  if (d.addrs.size() > ZW_MAX_ADDRS)
    errors.push_back("inventory: " + std::to_string(d.addrs.size()) +
                     " VM addresses exceed the address map (" + std::to_string(ZW_MAX_ADDRS) + ")");

  for (const auto& [name, z] : p.zones) {
    for (const auto& c : z.cidrs) {
      zw_cidr_key k{};
      k.prefixlen = c.bits128();
      std::memcpy(k.addr, c.addr.bytes.data(), 16);
      zw_addr_info v{};
      v.zone = d.ids.zone.at(name);
      d.cidrs.emplace_back(k, v);
    }
  }
  // IPv4 lives at ::ffff:0:0/96 of the same trie: an IPv6 prefix covering
  // it (::/0, ::/64) must not claim IPv4 addresses. A /96 "world" entry
  // stops it there; IPv4 prefixes (longer) still win, and an IPv4 0.0.0.0/0
  // is that very entry.
  net::Addr mapped{};
  mapped.bytes[10] = mapped.bytes[11] = 0xff;
  bool covered = false, v4_default = false;
  for (const auto& [name, z] : p.zones)
    for (const auto& c : z.cidrs) {
      if (!c.v4 && c.len <= 96 && c.contains(mapped)) covered = true;
      if (c.v4 && c.len == 0) v4_default = true;
    }
  if (covered && !v4_default) {
    zw_cidr_key k{};
    k.prefixlen = 96;
    std::memcpy(k.addr, mapped.bytes.data(), 16);
    zw_addr_info v{};
    v.zone = ZW_ZONE_WORLD;
    d.cidrs.emplace_back(k, v);
  }
  if (d.cidrs.size() > ZW_MAX_CIDRS)
    errors.push_back("policy: " + std::to_string(d.cidrs.size()) + " CIDRs exceed the CIDR map (" +
                     std::to_string(ZW_MAX_CIDRS) + ")");
  if (!errors.empty()) {
    std::string msg;
    for (const auto& e : errors) msg += (msg.empty() ? "" : "\n") + e;
    return fail(Error::invalid(msg));
  }
  return d;
}

}  // namespace zw::engine
