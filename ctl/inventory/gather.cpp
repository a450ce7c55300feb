// libvirt snapshot + static overrides.
#include "inventory/gather.h"

#include "inventory/libvirt.h"
#include "inventory/merge.h"
#include "inventory/static_json.h"

namespace zw::inventory {

Result<Gathered> gather(const std::string& libvirt_uri, const std::string& static_path) {
  Gathered g;
  if (!libvirt_uri.empty()) {
    LibvirtOptions o;
    o.uri = libvirt_uri;
    auto c = Libvirt::connect(o);
    if (!c) return fail(std::move(c.error()));
    auto snap = c->snapshot();
    if (!snap) return fail(std::move(snap.error()));
    g.inventory = std::move(snap->inventory);
    g.warnings = std::move(snap->warnings);
    g.source = libvirt_uri;
  }
  if (!static_path.empty()) {
    auto st = load_static(static_path);
    if (!st) return fail(std::move(st.error()));
    g.inventory =
        libvirt_uri.empty() ? std::move(*st) : apply_overrides(std::move(g.inventory), *st);
    g.source += (g.source.empty() ? "" : " + ") + static_path;
  }
  return g;
}

}  // namespace zw::inventory
