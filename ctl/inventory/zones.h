// Decides each endpoint's zone from the policy: name globs, UUIDs and the
// VM's own zone tag. A VM matched by two zones is an error naming both; a VM
// matched by none is in "unzoned".
#pragma once

#include <string>
#include <vector>

#include "inventory/endpoint.h"
#include "policy/model.h"
#include "util/result.h"

namespace zw::inventory {

struct Assigned {
  Endpoint endpoint;
  std::string zone;  // user zone name or "unzoned"
};

Result<std::vector<Assigned>> assign_zones(const policy::Policy& p, const Inventory& inv);

}  // namespace zw::inventory
