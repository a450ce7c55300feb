// `zonewall plan`: what applying a policy would change against what is live
// (state.json + pinned maps), without touching anything: zones, defaults,
// rules (by name, with the old and new match/action), VM interfaces added,
// removed or moving zone, and the established flows of the live conntrack
// table the new policy would cut (each judged by the reference model,
// ctl/model, as the datapath re-judges them after the flip).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/desired.h"
#include "engine/state.h"
#include "inventory/endpoint.h"
#include "model/model.h"
#include "policy/model.h"
#include "util/result.h"

namespace zw::engine {

// Rules by name: {"added": [...], "removed": [...], "changed": [{"name",
// "match"?: {"from","to"}, "action"?: {...}, "position"?: {...}}]}.
// Position changes are reported only when the first-match order of the rules
// present in both changes.
nlohmann::json diff_rules(const std::vector<RuleInfo>& before, const std::vector<RuleInfo>& after);

// Endpoints by identity (EndpointState::key): {"added", "removed",
// "zone_changes": [{"vm", "ifname", "from", "to"}]}.
nlohmann::json diff_endpoints(const std::vector<EndpointState>& before,
                              const std::vector<EndpointState>& after);

// The new policy's world for judging flows: the policy and the desired
// endpoints (zones, own and allowed addresses), as the model takes them.
// `p` must outlive the result.
model::World desired_world(const policy::Policy& p, const Desired& d);

// How the new policy judges an established flow (addresses, protocol, the
// port or ICMP type the policy judged) once the datapath re-judges it: the
// reference model's zones (model::zone_of) and first match (model::decide),
// the oracle the differential test holds the datapath to. Cut unless it
// allows or only audits.
struct FlowJudgement {
  std::string src_zone, dst_zone;
  model::PolicyAnswer answer;
  bool cut() const { return !answer.allow && !answer.audit; }
};
FlowJudgement judge_flow(const model::World& w, const net::Addr& src, const net::Addr& dst,
                         uint8_t proto, uint16_t port);

// `inventory` null: the endpoints as last applied (state.json).
Result<nlohmann::json> plan(const Paths& paths, const policy::Policy& p,
                            const std::string& policy_source,
                            const inventory::Inventory* inventory);

std::string format_plan(const nlohmann::json& plan);

}  // namespace zw::engine
