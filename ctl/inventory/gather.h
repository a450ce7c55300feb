// One-shot inventory for `check`/`apply`: VM identity from libvirt (if a URI
// is given) with the static inventory's overrides, or the static inventory
// alone. The daemon keeps its own libvirt connection instead.
#pragma once

#include <string>
#include <vector>

#include "inventory/endpoint.h"
#include "util/result.h"

namespace zw::inventory {

struct Gathered {
  Inventory inventory;
  std::vector<std::string> warnings;
  std::string source;  // what status shows: the URI and/or the file
};

Result<Gathered> gather(const std::string& libvirt_uri, const std::string& static_path);

}  // namespace zw::inventory
