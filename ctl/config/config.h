// The daemon configuration file (/etc/zonewall/zonewall.json): parse and
// validate into Config. Command-line flags override it (ctl/cli). The
// reference is docs/daemon.md and zonewall.json(5); the JSON Schema is
// packaging/zonewall.schema.json.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace zw::config {

inline constexpr const char* kDefaultPath = "/etc/zonewall/zonewall.json";

// First match wins: a glob on the interface name, or a device kind.
struct AttachRule {
  std::string match;  // fnmatch(3) glob on the interface name ("" when by kind)
  std::string kind;   // "tap" | "veth" ("" when by glob)
  std::string mode;   // "tc" | "xdp"
};

struct Group {
  std::string name;
  gid_t gid = 0;
};

struct Config {
  std::string source;  // file it came from; "" for built-in defaults
  std::string policy;
  std::string inventory;
  std::optional<std::string> libvirt = "qemu:///system";  // nullopt: no libvirt
  std::string pin_dir = "/sys/fs/bpf/zonewall";
  std::string state_dir;  // "": derived from pin_dir (engine::make_paths)
  std::vector<std::string> tap_patterns = {"vnet*"};
  std::string attach_default = "tc";
  std::vector<AttachRule> attach_rules;  // interfaces first, then kinds
  int resync_seconds = 30;
  std::string metrics_listen;    // "" = off
  std::string flow_log;          // "" = off; "stderr" or an absolute file path
  unsigned flow_log_rate = 100;  // events/s per VM interface (datapath limit)
  std::string fail_mode = "closed";
  std::optional<Group> read_group;
  std::optional<Group> apply_group;
  std::string log_level = "info";
  // Cluster mode (docs/cluster.md): empty endpoints = single host.
  struct Cluster {
    std::vector<std::string> endpoints;  // etcd client URLs
    std::string host;                    // "": the machine's hostname
    std::string prefix = "/zonewall";
    int lease_ttl = 10;  // seconds; keepalive every ttl/3
  } cluster;
};

// Parses `text` as file `file`. Groups are looked up (getgrnam): a group
// that does not exist is an error naming its JSON pointer.
Result<Config> parse(const std::string& text, const std::string& file);

// Loads `path`. With `required` false a missing file yields the built-in
// defaults (the CLI reads the default path only if it exists).
Result<Config> load(const std::string& path, bool required);

// The from-VM hook for an interface whose inventory entry names none: the
// first rule matching by glob or device kind (looked up only if a rule needs
// it), else `fallback`.
std::string attach_mode(const std::vector<AttachRule>& rules, const std::string& fallback,
                        const std::string& ifname);

// "tap" (tun driver), "veth", or "" for anything else or an absent device
// (ETHTOOL_GDRVINFO).
std::string device_kind(const std::string& ifname);

}  // namespace zw::config
