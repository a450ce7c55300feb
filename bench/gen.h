// Generated policies and inventories of any size, plus nftables and
// iptables rulesets that say the same thing, for the benchmarks.
//
// Shape: zones z00000..; VM i is "vm-<zone>-<i>" in zone i % zones, with
// one interface, a MAC and one IPv4 and one IPv6 address derived from i.
// Rule k (0-based, in file order) is j = rules-1-k: from zone j % zones to
// zone (j+1) % zones, udp, ports_per_rule consecutive ports starting at
// 1000 + (j / zones) * ports_per_rule, allow. So the LAST rule (j = 0)
// allows z0 -> z1 udp port 1000: the benchmark's allowed flow from VM 0 to
// VM 1 is judged by the last rule, the worst case for a linear ruleset.
// Defaults: intra-zone allow, inter-zone deny (port 9 is never allowed).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace zw::bench {

// A VM whose interface exists (its host-side name) and is attached.
struct RealIf {
  int vm = 0;  // VM index
  std::string ifname;
};

struct GenSpec {
  int zones = 10;
  int vms = 10;
  int rules = 10;
  int ports_per_rule = 1;
  std::vector<RealIf> real;    // other VMs get absent interfaces "zwbx<i>"
  int src_extra_addrs = 0;     // more addresses (per family) for VM 0
  std::vector<int> tcp_ports;  // one more rule, first: z0 -> z1 tcp these ports
  uint32_t max_flows = 0;      // defaults.max_flows (per-VM conntrack limit); 0: unset
};

inline constexpr uint16_t kAllowedPort = 1000;
inline constexpr uint16_t kDeniedPort = 9;

std::string zone_name(int z);
std::string vm_name(const GenSpec& s, int i);
std::string vm_ipv4(int i);         // 10.64.0.0 + i + 1
std::string vm_ipv6(int i);         // fd00:b::<i+1>
std::string vm_mac(int i);          // 52:54:00:<i>
std::string src_extra_ipv4(int n);  // VM 0's extra addresses
std::string src_extra_ipv6(int n);

std::string policy_json(const GenSpec& s);
std::string inventory_json(const GenSpec& s);
// Ruleset for the forward chain of a router between the VMs (IPv4):
// stateful (established/related first), then what the policy allows, then
// drop. nft: a set of (saddr . daddr . proto . dport) elements and a verdict
// map; iptables: one rule per allowed VM pair and port, as people write it.
std::string nft_ruleset(const GenSpec& s, const std::string& table);
std::string iptables_ruleset(const GenSpec& s);

}  // namespace zw::bench
