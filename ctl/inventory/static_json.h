// The static JSON inventory for veth/netns workloads and the lab:
// {"vms": [{"name", "uuid"?, "zone"?, "interfaces": [{"name", "mac"?, "ips": [], "attach"?}]}]}
// Validation errors name the file and JSON pointer, like policies.
#pragma once

#include <string>

#include "inventory/endpoint.h"
#include "util/result.h"

namespace zw::inventory {

Result<Inventory> load_static(const std::string& path);
Result<Inventory> parse_static(const std::string& text, const std::string& file);

}  // namespace zw::inventory
