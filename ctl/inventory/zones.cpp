// Zone membership of each VM interface: name globs, UUIDs and the VM's own
// zone tag, checked against the policy's VM zones (CIDR zones hold no VMs).
#include "inventory/zones.h"

#include <fnmatch.h>

#include <algorithm>

#include "util/json_doc.h"

namespace zw::inventory {

namespace {

struct Match {
  std::string zone;
  std::string why;  // "vms glob 'web-*'", "uuid ...", "zone tag"
};

std::string describe(const Match& m) { return "'" + m.zone + "' (" + m.why + ")"; }

}  // namespace

Result<std::vector<Assigned>> assign_zones(const policy::Policy& p, const Inventory& inv) {
  std::vector<Assigned> out;
  std::vector<std::string> errors;
  out.reserve(inv.endpoints.size());
  for (const auto& ep : inv.endpoints) {
    const std::string uuid = jsondoc::lower(ep.vm_uuid);
    std::vector<Match> matches;  // first reason per zone, in zone-name order
    for (const auto& [name, z] : p.zones) {
      if (!z.cidrs.empty()) continue;  // external zone: addresses, not VMs
      std::optional<std::string> why;
      for (const auto& g : z.vm_globs)
        if (fnmatch(g.c_str(), ep.vm_name.c_str(), 0) == 0) {
          why = "vms glob '" + g + "'";
          break;
        }
      if (!why && !uuid.empty() && std::find(z.uuids.begin(), z.uuids.end(), uuid) != z.uuids.end())
        why = "uuid " + uuid;
      if (!why && ep.zone_tag && *ep.zone_tag == name) why = "zone tag";
      if (why) matches.push_back({name, *why});
    }
    if (ep.zone_tag) {
      auto it = p.zones.find(*ep.zone_tag);
      if (it == p.zones.end()) {
        errors.push_back(ep.source + ": VM '" + ep.vm_name + "' has zone tag '" + *ep.zone_tag +
                         "', which the policy does not define");
        continue;
      }
      if (!it->second.cidrs.empty()) {
        errors.push_back(ep.source + ": VM '" + ep.vm_name + "' has zone tag '" + *ep.zone_tag +
                         "', an external (cidrs) zone that cannot hold VMs");
        continue;
      }
    }
    if (matches.size() > 1) {
      std::string list;
      for (std::size_t i = 0; i < matches.size(); ++i) {
        if (i > 0) list += i + 1 == matches.size() ? " and " : ", ";
        list += describe(matches[i]);
      }
      errors.push_back(ep.source + ": VM '" + ep.vm_name + "' matches zones " + list +
                       "; a VM must be in one zone");
      continue;
    }
    out.push_back({ep, matches.empty() ? std::string(policy::kZoneUnzoned) : matches[0].zone});
  }
  if (!errors.empty()) return fail(jsondoc::invalid(errors));
  return out;
}

}  // namespace zw::inventory
