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
enum class ZoneMode : uint8_t { kEnforce, kAudit };

// Where a piece of the policy came from, for messages: file + JSON pointer.
struct Origin {
  std::string file;
  std::string path;  // JSON pointer, e.g. "/rules/3"
  std::string str() const { return file + ": " + path; }
};

struct Zone {
  std::string name;
  std::vector<std::string> vm_globs;  // fnmatch(3) patterns on the VM name
  std::vector<std::string> uuids;     // lower-case canonical UUIDs
  std::vector<net::Cidr> cidrs;       // external zone: addresses, not VMs
  ZoneMode mode = ZoneMode::kEnforce;
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
  bool audit = false;  // a deny that only records
  Origin origin;
};

struct Defaults {
  Action intra_zone = Action::kAllow;
  Action inter_zone = Action::kDeny;
};

struct Policy {
  std::map<std::string, Zone> zones;  // by name, user zones only
  Defaults defaults;
  std::vector<Rule> rules;         // in first-match order
  std::vector<std::string> files;  // the files it was read from
};

// Built-in zone names usable in rules without being defined.
inline constexpr const char* kZoneWorld = "world";
inline constexpr const char* kZoneUnzoned = "unzoned";
inline constexpr const char* kZoneAny = "*";

}  // namespace zw::policy
