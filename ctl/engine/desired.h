// Desired state: policy + inventory turned into everything a generation of
// the datapath holds (endpoints, address and CIDR zones, compiled policy),
// with capacities checked before anything is written. Pure: no kernel calls
// (interface indexes come from the resolver the caller passes).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/state.h"
#include "inventory/endpoint.h"
#include "policy/compile.h"
#include "policy/model.h"
#include "util/result.h"
#include "zonewall/abi/zonewall.h"

namespace zw::engine {

struct DesiredEndpoint {
  inventory::Endpoint ep;
  std::string zone;
  uint32_t ifindex = 0;  // 0: the interface does not exist (not attached)
  std::string attach;    // "tc" | "xdp"
  zw_endpoint value{};
};

struct Desired {
  policy::Ids ids;
  policy::Compiled compiled;
  std::vector<DesiredEndpoint> endpoints;
  std::vector<std::pair<zw_addr_key, zw_addr_info>> addrs;
  std::vector<std::pair<zw_cidr_key, zw_addr_info>> cidrs;
  std::vector<zw_pair_key> pairs;
  std::vector<RuleInfo> rules;
  std::vector<std::string> warnings;
};

// The id of a VM without an interface here (stopped, or on another host of
// a cluster) once every counter slot is taken: it has no counters.
inline constexpr uint32_t kNoEndpointId = 0xffffffff;

// Stable identity of a VM interface across restarts and tap renames.
std::string endpoint_key(const inventory::Endpoint& e);

using IfindexResolver = std::function<uint32_t(const std::string& ifname)>;

// `default_attach` applies to interfaces whose inventory entry names none.
// Ids (rules, endpoints) stay stable against `previous`.
Result<Desired> build_desired(const policy::Policy& p, const inventory::Inventory& inv,
                              const std::optional<State>& previous,
                              const std::string& default_attach, const IfindexResolver& resolve);

}  // namespace zw::engine
