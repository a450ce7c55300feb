// Zone membership of each VM interface: name globs, UUIDs and the VM's own
// zone tag, checked against the policy's VM zones (CIDR zones hold no VMs).
#include "inventory/zones.h"

#include <fnmatch.h>

#include <algorithm>
#include <unordered_map>

#include "util/json_doc.h"

namespace zw::inventory {

namespace {

struct Match {
  std::string zone;
  std::string why;  // "vms glob 'web-*'", "uuid ...", "zone tag"
};

std::string describe(const Match& m) { return "'" + m.zone + "' (" + m.why + ")"; }

// Which zones a VM could be in, without trying every zone's every glob on
// every VM (10,000 VMs x 1,000 zones): literal names and "prefix*" globs
// are looked up, other globs (and UUIDs, tags) make their zone a candidate
// that is then checked exactly as before.
class ZoneIndex {
 public:
  explicit ZoneIndex(const policy::Policy& p) {
    size_t i = 0;
    for (const auto& [name, z] : p.zones) {
      if (z.cidrs.empty()) {
        for (const auto& g : z.vm_globs) {
          size_t special = g.find_first_of("*?[\\");
          if (special == std::string::npos)
            literal_[g].push_back(i);
          else if (special == g.size() - 1 && g.back() == '*')
            prefix_[g.substr(0, g.size() - 1)].push_back(i);
          else
            always_.push_back(i);
        }
        for (const auto& u : z.uuids) uuid_[u].push_back(i);
      }
      index_[name] = i;
      ++i;
    }
  }
  // Candidate zone positions (in zone-name order, unique).
  std::vector<size_t> candidates(const Endpoint& ep, const std::string& uuid) const {
    std::vector<size_t> c = always_;
    auto add = [&](const auto& m, const std::string& k) {
      if (auto it = m.find(k); it != m.end())
        c.insert(c.end(), it->second.begin(), it->second.end());
    };
    add(literal_, ep.vm_name);
    for (size_t n = 0; n <= ep.vm_name.size(); ++n) add(prefix_, ep.vm_name.substr(0, n));
    if (!uuid.empty()) add(uuid_, uuid);
    if (ep.zone_tag)
      if (auto it = index_.find(*ep.zone_tag); it != index_.end()) c.push_back(it->second);
    std::sort(c.begin(), c.end());
    c.erase(std::unique(c.begin(), c.end()), c.end());
    return c;
  }

 private:
  std::unordered_map<std::string, std::vector<size_t>> literal_, prefix_, uuid_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<size_t> always_;
};

}  // namespace

Result<std::vector<Assigned>> assign_zones(const policy::Policy& p, const Inventory& inv) {
  std::vector<Assigned> out;
  std::vector<std::string> errors;
  out.reserve(inv.endpoints.size());
  const ZoneIndex index(p);
  std::vector<const std::pair<const std::string, policy::Zone>*> by_pos;
  for (const auto& z : p.zones) by_pos.push_back(&z);
  for (const auto& ep : inv.endpoints) {
    const std::string uuid = jsondoc::lower(ep.vm_uuid);
    std::vector<Match> matches;  // first reason per zone, in zone-name order
    for (size_t pos : index.candidates(ep, uuid)) {
      const auto& [name, z] = *by_pos[pos];
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
