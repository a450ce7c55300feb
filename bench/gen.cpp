// Generated policies, inventories and equivalent nft/iptables rulesets.
#include "gen.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace zw::bench {

using nlohmann::json;

namespace {

struct RuleShape {
  int from, to, port_lo;
};

RuleShape rule_shape(const GenSpec& s, int k) {
  int j = s.rules - 1 - k;
  return {j % s.zones, (j + 1) % s.zones, 1000 + (j / s.zones) * s.ports_per_rule};
}

std::string ifname_of(const GenSpec& s, int i) {
  for (const auto& r : s.real)
    if (r.vm == i) return r.ifname;
  return "zwbx" + std::to_string(i);
}

}  // namespace

std::string zone_name(int z) {
  char b[16];
  std::snprintf(b, sizeof b, "z%05d", z);
  return b;
}

std::string vm_name(const GenSpec& s, int i) {
  return "vm-" + zone_name(i % s.zones) + "-" + std::to_string(i);
}

std::string vm_ipv4(int i) {
  uint32_t a = (10u << 24) + (64u << 16) + static_cast<uint32_t>(i) + 1;
  char b[20];
  std::snprintf(b, sizeof b, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
  return b;
}

std::string vm_ipv6(int i) {
  char b[40];
  std::snprintf(b, sizeof b, "fd00:b::%x:%x", (i + 1) >> 16, (i + 1) & 0xffff);
  return b;
}

std::string vm_mac(int i) {
  char b[20];
  std::snprintf(b, sizeof b, "52:54:00:%02x:%02x:%02x", (i >> 16) & 255, (i >> 8) & 255, i & 255);
  return b;
}

std::string src_extra_ipv4(int n) { return "10.128.0." + std::to_string(n + 1); }

std::string src_extra_ipv6(int n) {
  char b[40];
  std::snprintf(b, sizeof b, "fd00:c::%x", n + 1);
  return b;
}

std::string policy_json(const GenSpec& s) {
  json zones = json::object();
  for (int z = 0; z < s.zones; ++z)
    zones[zone_name(z)] = {{"vms", json::array({"vm-" + zone_name(z) + "-*"})}};
  json rules = json::array();
  if (!s.tcp_ports.empty())
    rules.push_back({{"name", "tcp"},
                     {"from", zone_name(0)},
                     {"to", zone_name(1)},
                     {"proto", "tcp"},
                     {"ports", s.tcp_ports},
                     {"action", "allow"}});
  for (int k = 0; k < s.rules; ++k) {
    RuleShape r = rule_shape(s, k);
    json ports = json::array();
    for (int p = 0; p < s.ports_per_rule; ++p) ports.push_back(r.port_lo + p);
    rules.push_back({{"name", "r" + std::to_string(s.rules - 1 - k)},
                     {"from", zone_name(r.from)},
                     {"to", zone_name(r.to)},
                     {"proto", "udp"},
                     {"ports", ports},
                     {"action", "allow"}});
  }
  json defaults = {{"intra_zone", "allow"}, {"inter_zone", "deny"}};
  if (s.max_flows) defaults["max_flows"] = s.max_flows;
  json p = {{"version", 1},
            {"defaults", defaults},
            {"zones", zones},
            {"rules", rules}};
  return p.dump(1);
}

std::string inventory_json(const GenSpec& s) {
  json vms = json::array();
  for (int i = 0; i < s.vms; ++i) {
    json ips = json::array({vm_ipv4(i), vm_ipv6(i)});
    if (i == 0)
      for (int n = 0; n < s.src_extra_addrs; ++n) {
        ips.push_back(src_extra_ipv4(n));
        ips.push_back(src_extra_ipv6(n));
      }
    vms.push_back({{"name", vm_name(s, i)},
                   {"interfaces",
                    json::array({{{"name", ifname_of(s, i)}, {"mac", vm_mac(i)}, {"ips", ips}}})}});
  }
  return json{{"vms", vms}}.dump(1);
}

// Every allowed (source VM, destination VM, port) of the policy, IPv4: rule
// order first, then VM pairs. Intra-zone traffic (allowed by default) is
// listed per zone after the rules.
template <typename F>
void for_each_allowed(const GenSpec& s, F f) {
  std::vector<std::vector<int>> members(s.zones);
  for (int i = 0; i < s.vms; ++i) members[i % s.zones].push_back(i);
  for (int a : members[0])
    for (int b : members[1])
      for (int port : s.tcp_ports) f(a, b, port, "tcp");
  for (int k = 0; k < s.rules; ++k) {
    RuleShape r = rule_shape(s, k);
    for (int a : members[r.from])
      for (int b : members[r.to])
        for (int p = 0; p < s.ports_per_rule; ++p) f(a, b, r.port_lo + p, "udp");
  }
}

std::string nft_ruleset(const GenSpec& s, const std::string& table) {
  std::string out = "table ip " + table + " {\n";
  out += "  set allowed {\n    type ipv4_addr . ipv4_addr . inet_proto . inet_service\n";
  std::string elems;
  for_each_allowed(s, [&](int a, int b, int port, const char* proto) {
    elems += (elems.empty() ? "" : ",\n      ") + vm_ipv4(a) + " . " + vm_ipv4(b) + " . " + proto +
             " . " + std::to_string(port);
  });
  if (!elems.empty()) out += "    elements = { " + elems + " }\n";
  out += "  }\n  set intra {\n    type ipv4_addr . ipv4_addr\n";
  std::string intra;
  for (int a = 0; a < s.vms; ++a)
    for (int b = a % s.zones; b < s.vms; b += s.zones)
      if (a != b) intra += (intra.empty() ? "" : ", ") + vm_ipv4(a) + " . " + vm_ipv4(b);
  if (!intra.empty()) out += "    elements = { " + intra + " }\n";
  out += "  }\n  chain forward_vms {\n    type filter hook forward priority filter; policy drop;\n";
  out += "    ct state vmap { established : accept, related : accept, invalid : drop }\n";
  out += "    ip saddr . ip daddr . meta l4proto . th dport @allowed accept\n";
  out += "    ip saddr . ip daddr @intra accept\n";
  out += "  }\n}\n";
  return out;
}

std::string iptables_ruleset(const GenSpec& s) {
  std::string out = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n";
  out += "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n";
  for_each_allowed(s, [&](int a, int b, int port, const char* proto) {
    out += "-A FORWARD -s " + vm_ipv4(a) + "/32 -d " + vm_ipv4(b) + "/32 -p " + proto + " -m " +
           proto + " --dport " + std::to_string(port) + " -j ACCEPT\n";
  });
  std::vector<std::vector<int>> members(s.zones);
  for (int i = 0; i < s.vms; ++i) members[i % s.zones].push_back(i);
  for (const auto& m : members)
    for (int a : m)
      for (int b : m)
        if (a != b)
          out += "-A FORWARD -s " + vm_ipv4(a) + "/32 -d " + vm_ipv4(b) + "/32 -j ACCEPT\n";
  out += "COMMIT\n";
  return out;
}

}  // namespace zw::bench
