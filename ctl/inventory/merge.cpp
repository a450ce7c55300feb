// Static overrides on top of the libvirt inventory (see merge.h for the rules).
#include "inventory/merge.h"

#include "util/json_doc.h"

namespace zw::inventory {

namespace {

bool same_vm(const Endpoint& lv, const Endpoint& st) {
  const std::string a = jsondoc::lower(lv.vm_uuid), b = jsondoc::lower(st.vm_uuid);
  // A UUID on both sides decides: a re-created VM reusing the name is another VM.
  if (!a.empty() && !b.empty()) return a == b;
  return !st.vm_name.empty() && lv.vm_name == st.vm_name;
}

}  // namespace

Inventory apply_overrides(Inventory from_libvirt, const Inventory& static_inv) {
  Inventory out = std::move(from_libvirt);
  const std::size_t n_libvirt = out.endpoints.size();
  for (const Endpoint& st : static_inv.endpoints) {
    bool matched = false;
    for (std::size_t i = 0; i < n_libvirt; ++i) {
      Endpoint& ep = out.endpoints[i];
      if (st.ifname.empty() || ep.ifname != st.ifname || !same_vm(ep, st)) continue;
      matched = true;
      if (!st.addrs.empty()) ep.addrs = st.addrs;
      if (!st.allowed.empty()) ep.allowed = st.allowed;
      if (st.mac) ep.mac = st.mac;
      if (st.attach) ep.attach = st.attach;
      if (st.zone_tag) ep.zone_tag = st.zone_tag;
      ep.source += " (overridden by " + st.source + ")";
    }
    if (!matched) out.endpoints.push_back(st);
  }
  return out;
}

}  // namespace zw::inventory
