// Compiles a validated policy into the datapath's policy map entries:
// first-match over ordered rules resolved offline into disjoint exact-match
// entries (see the lookup order in include/zonewall/abi/zonewall.h). Pure and
// deterministic: the same policy and ids always give the same entries, sorted.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "policy/model.h"
#include "util/result.h"
#include "zonewall/abi/zonewall.h"

namespace zw::policy {

// Zone and rule ids. Zone ids: ZW_ZONE_WORLD, ZW_ZONE_UNZONED, then user
// zones from ZW_ZONE_FIRST_USER in name order. Rule ids come from the caller
// (the engine keeps them stable by rule name across applies so counters
// follow the rule); assign_rule_ids() gives the plain ones.
struct Ids {
  std::map<std::string, uint16_t> zone;  // includes "world" and "unzoned"
  std::map<std::string, uint32_t> rule;  // rule name -> id >= ZW_RULE_FIRST_USER
};

// Keeps ids from `previous` for zones that still exist (so adding or
// removing a zone rewrites only its own entries), gives new zones the
// lowest free ids.
Ids assign_zone_ids(const Policy& p, const std::map<std::string, uint16_t>& previous = {});
// Keeps ids from `previous` for rules that still exist, gives new rules the
// lowest free ids; fails if more than ZW_MAX_RULES - ZW_RULE_FIRST_USER rules.
Result<std::map<std::string, uint32_t>> assign_rule_ids(
    const Policy& p, const std::map<std::string, uint32_t>& previous = {});

struct PolicyEntry {
  zw_policy_key key;
  zw_verdict value;
};

struct Compiled {
  std::vector<PolicyEntry> entries;  // sorted by key bytes, disjoint
};

// Fails (kInvalid) only if the result would exceed ZW_MAX_POLICY.
Result<Compiled> compile(const Policy& p, const Ids& ids);

// The oracle: first-match over the ordered rules, straight from the policy.
// `port` is the TCP/UDP/SCTP destination port or the ICMP/ICMPv6 type; it is
// ignored for other protocols. Zone ids not in `ids` match only "*".
zw_verdict evaluate(const Policy& p, const Ids& ids, uint16_t src_zone, uint16_t dst_zone,
                    uint8_t proto, uint16_t port);

// What the datapath answers for this packet given `c` (gen 0): PORT, BLOCK,
// PROTO, PROTO(ANY), DEFAULT lookups in the order of zonewall.h.
zw_verdict lookup(const Compiled& c, uint16_t src_zone, uint16_t dst_zone, uint8_t proto,
                  uint16_t port);

}  // namespace zw::policy
