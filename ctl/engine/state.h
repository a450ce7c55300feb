// What the controller remembers between runs, next to the pins: the live
// generation, ids (zones, rules, endpoints) and the endpoints it attached to.
// The kernel state (pinned maps, filters, links) is the truth for packets;
// this file is how the CLI names what it sees and what `down` must undo.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/result.h"

namespace zw::engine {

struct Paths {
  std::string pin_dir;    // bpffs, e.g. /sys/fs/bpf/zonewall
  std::string state_dir;  // e.g. /run/zonewall
  std::string state_file() const { return state_dir + "/state.json"; }
  std::string link_pin(uint32_t ifindex) const {
    return pin_dir + "/links/xdp-" + std::to_string(ifindex);
  }
};

// Default state dir: /run/zonewall for the default pin dir, otherwise
// /run/zonewall-<basename of pin dir>, so test instances never collide.
Paths make_paths(const std::string& pin_dir, const std::string& state_dir = "");

struct EndpointState {
  std::string key;  // engine::endpoint_key: VM identity + MAC
  std::string vm_name;
  std::string vm_uuid;
  std::string ifname;
  uint32_t ifindex = 0;  // 0: interface absent at apply time
  std::string attach;    // "tc" | "xdp"
  uint32_t id = 0;       // zw_st_ep index
  std::string zone;
  std::string mac;
  std::vector<std::string> addrs;
  std::vector<std::string> allowed;  // allowed address pairs
  bool created_clsact = false;
};

struct RuleInfo {
  uint32_t id = 0;
  std::string name;
  std::string action;
  std::string summary;  // "web -> db tcp 5432"
};

struct State {
  uint32_t generation = 0;
  std::string policy_source;
  std::vector<std::string> policy_files;
  std::string inventory_source;
  std::string applied_at;  // ISO 8601 UTC
  std::map<std::string, uint16_t> zones;
  std::map<std::string, uint32_t> rule_ids;
  std::vector<RuleInfo> rules;
  std::map<std::string, std::string> defaults;  // intra_zone/inter_zone -> action
  std::vector<EndpointState> endpoints;
};

Result<std::optional<State>> read_state(const Paths& paths);
Status write_state(const Paths& paths, const State& s);  // atomic (tmp + rename)

// indent < 0: the compact form the state file uses (streamed, one array
// element per line); otherwise pretty-printed through a JSON document.
std::string state_to_json(const State& s, int indent = 2);

// Exclusive lock on the pin directory for state-changing commands (flock on
// the directory itself, as xdp-tools does). kBusy if someone holds it.
class PinLock {
 public:
  static Result<PinLock> acquire(const std::string& pin_dir);

 private:
  explicit PinLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace zw::engine
