// The policy as the user wrote it, after parsing and validation: zones,
// defaults, ordered rules. Pure data; every field already checked.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util/net.h"

namespace zw::policy {

enum class Action : uint8_t { kDeny = 0, kAllow = 1 };

// Conntrack limits (the datapath's capacities are in the ABI header; tests
// check these agree with ZW_CT_DEFAULT_LIMIT and ZW_MAX_CT).
inline constexpr uint32_t kDefaultMaxFlows = 65536;
inline constexpr uint32_t kMaxFlowsCeiling = 1048576;
enum class ZoneMode : uint8_t { kEnforce, kAudit };

// Where a piece of the policy came from, for messages: file + JSON pointer.
struct Origin {
  std::string file;
  std::string path;  // JSON pointer, e.g. "/rules/3"
  std::string str() const { return file + ": " + path; }
};

// Guest hygiene checks on a VM interface (docs/security.md), each on unless
// switched off. A zone's settings override the policy's defaults field by
// field.
struct Hygiene {
  bool mac = true;          // source MAC must be the VM's
  bool ip = true;           // source IPv4/IPv6 must be the VM's (or an allowed pair)
  bool arp = true;          // ARP sender MAC and address must be the VM's
  bool nd = true;           // NS/NA/RS addresses and link-layer options must be the VM's
  bool ra = true;           // router advertisements and redirects from the VM dropped
  bool dhcp_server = true;  // DHCP/DHCPv6 server messages from the VM dropped
};

struct HygieneOverride {
  std::optional<bool> mac, ip, arp, nd, ra, dhcp_server;
  Hygiene over(Hygiene base) const {
    if (mac) base.mac = *mac;
    if (ip) base.ip = *ip;
    if (arp) base.arp = *arp;
    if (nd) base.nd = *nd;
    if (ra) base.ra = *ra;
    if (dhcp_server) base.dhcp_server = *dhcp_server;
    return base;
  }
};

struct Zone {
  std::string name;
  std::vector<std::string> vm_globs;  // fnmatch(3) patterns on the VM name
  std::vector<std::string> uuids;     // lower-case canonical UUIDs
  std::vector<net::Cidr> cidrs;       // external zone: addresses, not VMs
  ZoneMode mode = ZoneMode::kEnforce;
  HygieneOverride hygiene;
  std::optional<uint32_t> max_flows;  // conntrack limit per VM interface; unset = defaults
  // Events for traffic from and to this zone's members: a zone turning
  // deny events off silences them for every pair it is in; one turning
  // new-flow events on reports them for every pair it is in.
  bool log_deny = true;
  bool log_new_flows = false;
  Origin origin;
};

struct PortRange {
  uint16_t lo = 0;
  uint16_t hi = 0;  // inclusive
};

struct Rule {
  std::string name;               // unique in the policy
  std::vector<std::string> from;  // zone names; {"*"} = every zone
  std::vector<std::string> to;
  std::optional<uint8_t> proto;     // nullopt = any protocol
  std::vector<PortRange> ports;     // tcp/udp/sctp only; empty = all ports
  std::vector<uint8_t> icmp_types;  // icmp/icmpv6 only; empty = all types
  Action action = Action::kDeny;
  bool audit = false;       // a deny that only records
  std::optional<bool> log;  // events for what this rule decides; unset: the zones'
  Origin origin;
};

struct Defaults {
  Action intra_zone = Action::kAllow;
  Action inter_zone = Action::kDeny;
  Hygiene hygiene;                        // for every VM; zones override field by field
  uint32_t max_flows = kDefaultMaxFlows;  // tracked flows one VM interface may open
};

struct Policy {
  std::map<std::string, Zone> zones;  // by name, user zones only
  Defaults defaults;
  std::vector<Rule> rules;         // in first-match order
  std::vector<std::string> files;  // the files it was read from
};

// The hygiene checks for VMs of `zone` (a user zone, or "unzoned").
inline Hygiene hygiene_of(const Policy& p, const std::string& zone) {
  auto it = p.zones.find(zone);
  return it == p.zones.end() ? p.defaults.hygiene : it->second.hygiene.over(p.defaults.hygiene);
}

inline uint32_t max_flows_of(const Policy& p, const std::string& zone) {
  auto it = p.zones.find(zone);
  return it != p.zones.end() && it->second.max_flows ? *it->second.max_flows : p.defaults.max_flows;
}

// Built-in zone names usable in rules without being defined.
inline constexpr const char* kZoneWorld = "world";
inline constexpr const char* kZoneUnzoned = "unzoned";
inline constexpr const char* kZoneAny = "*";

}  // namespace zw::policy
