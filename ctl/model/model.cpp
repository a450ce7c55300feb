// The reference model (see model.h). Written as a reader of the frame with
// offsets into a span, top to bottom in the order docs/datapath.md "Per
// packet" gives, so it can be read against the documentation line by line.
#include "model/model.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <variant>

#include "engine/inspect.h"

namespace zw::model {

namespace {

constexpr uint8_t kIcmp = 1, kTcp = 6, kUdp = 17, kIcmp6 = 58, kSctp = 132;
constexpr uint8_t kHopByHop = 0, kRouting = 43, kFragment = 44, kAh = 51, kDstOpts = 60,
                  kMobility = 135;
constexpr uint16_t kEthIpv4 = 0x0800, kEthIpv6 = 0x86dd, kEthArp = 0x0806, kEthVlan = 0x8100,
                   kEthQinQ = 0x88a8;

// Bounds-checked reads from the frame; every caller checks `has` first.
struct Reader {
  std::span<const uint8_t> s;
  bool has(size_t off, size_t n) const { return off <= s.size() && n <= s.size() - off; }
  uint8_t u8(size_t off) const { return s[off]; }
  uint16_t u16(size_t off) const { return static_cast<uint16_t>(s[off] << 8 | s[off + 1]); }
};

bool is_ipv6_ext(uint8_t nh) {
  return nh == kHopByHop || nh == kRouting || nh == kDstOpts || nh == kAh || nh == kMobility;
}

bool has_ports(uint8_t proto) { return proto == kTcp || proto == kUdp || proto == kSctp; }
bool is_icmp(uint8_t proto) { return proto == kIcmp || proto == kIcmp6; }

// ICMP errors (destination unreachable, source quench, redirect, time
// exceeded, parameter problem; ICMPv6 types 1-4) are judged by the flow they
// quote, never by the policy.
bool icmp_error(uint8_t proto, uint8_t type) {
  if (proto == kIcmp) return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
  return type >= 1 && type <= 4;
}

// Echo and timestamp requests/replies carry an identifier that stands in for
// the ports of a flow.
bool icmp_query(uint8_t proto, uint8_t type) {
  if (proto == kIcmp) return type == 0 || type == 8 || type == 13 || type == 14;
  return type == 128 || type == 129;
}

// ICMPv6 neighbour discovery (RS, RA, NS, NA, redirect) and MLD (130-132, 143).
bool nd_or_mld(uint8_t type) {
  return (type >= 133 && type <= 137) || (type >= 130 && type <= 132) || type == 143;
}

// The network layer of an IP packet: addresses, protocol, where the
// transport header starts.
struct Net {
  Ip src, dst;
  uint8_t proto = 0;
  size_t l4 = 0;
};

std::variant<Net, zw_reason> read_ipv4(const Reader& r, size_t off) {
  if (!r.has(off, 20)) return ZW_R_DROP_MALFORMED;
  uint8_t version = r.u8(off) >> 4, ihl = r.u8(off) & 0x0f;
  if (version != 4 || ihl < 5) return ZW_R_DROP_MALFORMED;
  if (!r.has(off, ihl * 4u)) return ZW_R_DROP_MALFORMED;  // options cut short
  uint16_t frag = r.u16(off + 6);
  if ((frag & 0x2000) || (frag & 0x1fff)) return ZW_R_DROP_FRAGMENT;  // MF or an offset
  Net n;
  std::copy_n(r.s.begin() + off + 12, 4, n.src.b.begin());
  std::copy_n(r.s.begin() + off + 16, 4, n.dst.b.begin());
  n.proto = r.u8(off + 9);
  n.l4 = off + ihl * 4u;  // options skipped by IHL
  return n;
}

std::variant<Net, zw_reason> read_ipv6(const Reader& r, size_t off) {
  if (!r.has(off, 40)) return ZW_R_DROP_MALFORMED;
  if (r.u8(off) >> 4 != 6) return ZW_R_DROP_MALFORMED;
  Net n;
  n.src.v6 = n.dst.v6 = true;
  std::copy_n(r.s.begin() + off + 8, 16, n.src.b.begin());
  std::copy_n(r.s.begin() + off + 24, 16, n.dst.b.begin());
  // IPv4-mapped addresses (::ffff:a.b.c.d) never appear on the wire.
  auto mapped = [](const Ip& a) {
    return std::all_of(a.b.begin(), a.b.begin() + 10, [](uint8_t x) { return x == 0; }) &&
           a.b[10] == 0xff && a.b[11] == 0xff;
  };
  if (mapped(n.src) || mapped(n.dst)) return ZW_R_DROP_MALFORMED;
  uint8_t next = r.u8(off + 6);
  size_t pos = off + 40;
  // Up to ZW_MAX_IPV6_EXT extension headers are walked; the header after
  // them must be the transport (or it is one too many).
  for (int walked = 0; walked < ZW_MAX_IPV6_EXT && is_ipv6_ext(next); ++walked) {
    if (!r.has(pos, 2)) return ZW_R_DROP_MALFORMED;
    // AH: length in 4-octet units minus 2; the others: 8-octet units minus 1.
    size_t len = next == kAh ? (r.u8(pos + 1) + 2u) * 4 : (r.u8(pos + 1) + 1u) * 8;
    next = r.u8(pos);
    if (!r.has(pos, len)) return ZW_R_DROP_MALFORMED;
    pos += len;
  }
  if (next == kFragment) return ZW_R_DROP_FRAGMENT;
  if (is_ipv6_ext(next)) return ZW_R_DROP_IPV6_EXT;
  n.proto = next;
  n.l4 = pos;
  return n;
}

// The transport's flow ports and the policy port. Needs the first 8 bytes
// of TCP/UDP/SCTP/ICMP (all an ICMP error is guaranteed to quote).
struct Transport {
  uint16_t sport = 0, dport = 0;
  uint16_t policy_port = 0;
  uint8_t icmp_type = 0;
};

std::variant<Transport, zw_reason> read_transport(const Reader& r, size_t off, uint8_t proto) {
  Transport t;
  if (has_ports(proto)) {
    if (!r.has(off, 8)) return ZW_R_DROP_MALFORMED;
    t.sport = r.u16(off);
    t.dport = r.u16(off + 2);
    t.policy_port = t.dport;
  } else if (is_icmp(proto)) {
    if (!r.has(off, 8)) return ZW_R_DROP_MALFORMED;
    t.icmp_type = r.u8(off);
    t.policy_port = t.icmp_type;
    if (icmp_query(proto, t.icmp_type)) t.sport = t.dport = r.u16(off + 4);
  }
  return t;
}

enum class Kind : uint8_t { kIp, kArp, kNd };

struct Packet {
  Kind kind = Kind::kIp;
  net::Mac src_mac{};
  net::Mac arp_sha{};
  std::array<uint8_t, 4> arp_spa{};
  FlowKey tuple;
  uint16_t policy_port = 0;
  uint8_t icmp_type = 0;
  uint8_t tcp_flags = 0;
  bool icmp_error = false;
  FlowKey inner;                      // icmp_error: the quoted packet's flow
  Ip nd_target;                       // NS/NA target
  std::optional<net::Mac> nd_lladdr;  // RS/NS source or NA target link-layer option
};

// The ND message after its ICMPv6 type: NS/NA target, and the first
// source (RS, NS) or target (NA) link-layer address option among the first
// four options. A cut or zero-length option is malformed.
std::optional<zw_reason> read_nd(const Reader& r, size_t icmp, Packet& p) {
  size_t opt;
  uint8_t want;
  if (p.icmp_type == 135 || p.icmp_type == 136) {
    if (!r.has(icmp, 24)) return ZW_R_DROP_MALFORMED;
    p.nd_target.v6 = true;
    std::copy_n(r.s.begin() + icmp + 8, 16, p.nd_target.b.begin());
    opt = icmp + 24;
    want = p.icmp_type == 135 ? 1 : 2;
  } else if (p.icmp_type == 133) {
    opt = icmp + 8;
    want = 1;
  } else {
    return std::nullopt;
  }
  for (int i = 0; i < 4; ++i) {
    if (!r.has(opt, 2))
      return opt == r.s.size() ? std::nullopt : std::optional(ZW_R_DROP_MALFORMED);
    uint8_t type = r.u8(opt), len = r.u8(opt + 1);
    if (len == 0) return ZW_R_DROP_MALFORMED;
    if (type == want) {
      if (!r.has(opt, 8)) return ZW_R_DROP_MALFORMED;
      net::Mac m;
      std::copy_n(r.s.begin() + opt + 2, 6, m.begin());
      p.nd_lladdr = m;
      return std::nullopt;
    }
    opt += len * 8u;
  }
  return std::nullopt;
}

std::variant<Packet, zw_reason> read_frame(std::span<const uint8_t> frame) {
  Reader r{frame};
  Packet p;
  if (!r.has(0, 14)) return ZW_R_DROP_MALFORMED;
  std::copy_n(frame.begin() + 6, 6, p.src_mac.begin());
  uint16_t ethertype = r.u16(12);
  if (ethertype == kEthVlan || ethertype == kEthQinQ) return ZW_R_DROP_VLAN;
  if (ethertype == kEthArp) {
    // Ethernet/IPv4 ARP only; the sender's MAC and address are what matter.
    if (!r.has(14, 28)) return ZW_R_DROP_MALFORMED;
    if (r.u16(14) != 1 || r.u16(16) != kEthIpv4 || r.u8(18) != 6 || r.u8(19) != 4)
      return ZW_R_DROP_MALFORMED;
    p.kind = Kind::kArp;
    std::copy_n(frame.begin() + 22, 6, p.arp_sha.begin());
    std::copy_n(frame.begin() + 28, 4, p.arp_spa.begin());
    return p;
  }
  std::variant<Net, zw_reason> net;
  if (ethertype == kEthIpv4)
    net = read_ipv4(r, 14);
  else if (ethertype == kEthIpv6)
    net = read_ipv6(r, 14);
  else
    return ZW_R_DROP_ETHERTYPE;
  if (auto* why = std::get_if<zw_reason>(&net)) return *why;
  const Net& n = std::get<Net>(net);
  // ICMPv6 over IPv4 and ICMP over IPv6 do not exist.
  if (n.proto == (n.src.v6 ? kIcmp : kIcmp6)) return ZW_R_DROP_MALFORMED;
  auto tr = read_transport(r, n.l4, n.proto);
  if (auto* why = std::get_if<zw_reason>(&tr)) return *why;
  const Transport& t = std::get<Transport>(tr);
  p.tuple = {n.src, n.dst, t.sport, t.dport, n.proto};
  p.policy_port = t.policy_port;
  p.icmp_type = t.icmp_type;
  if (n.proto == kTcp) {
    if (!r.has(n.l4, 20)) return ZW_R_DROP_MALFORMED;  // the whole fixed header
    p.tcp_flags = r.u8(n.l4 + 13);
  }
  if (n.proto == kIcmp6 && nd_or_mld(t.icmp_type)) {
    p.kind = Kind::kNd;
    if (auto why = read_nd(r, n.l4, p)) return *why;
    return p;
  }
  if (is_icmp(n.proto) && icmp_error(n.proto, t.icmp_type)) {
    // The quoted packet starts after the 8-byte ICMP header; the family is
    // the ICMP version's. Whatever cannot be read relates to nothing.
    size_t q = n.l4 + 8;
    auto in = n.proto == kIcmp ? read_ipv4(r, q) : read_ipv6(r, q);
    if (std::holds_alternative<zw_reason>(in)) return ZW_R_DROP_ICMP_UNRELATED;
    const Net& qn = std::get<Net>(in);
    auto qt = read_transport(r, qn.l4, qn.proto);
    if (std::holds_alternative<zw_reason>(qt)) return ZW_R_DROP_ICMP_UNRELATED;
    const Transport& qtt = std::get<Transport>(qt);
    p.inner = {qn.src, qn.dst, qtt.sport, qtt.dport, qn.proto};
    p.icmp_error = true;
  }
  return p;
}

const Endpoint* endpoint_of(const World& w, const std::string& ifname) {
  for (const auto& e : w.endpoints)
    if (e.ifname == ifname) return &e;
  return nullptr;
}

// Its own address or one of its allowed address pairs.
bool owns(const Endpoint& e, const Ip& a) {
  return std::find(e.addrs.begin(), e.addrs.end(), a) != e.addrs.end() ||
         std::find(e.allowed.begin(), e.allowed.end(), a) != e.allowed.end();
}

bool is_unspecified(const Ip& a) {
  return std::all_of(a.b.begin(), a.b.begin() + (a.v6 ? 16 : 4), [](uint8_t x) { return x == 0; });
}

bool is_link_local_v6(const Ip& a) { return a.v6 && a.b[0] == 0xfe && (a.b[1] & 0xc0) == 0x80; }

// Multicast or broadcast: IPv4 224.0.0.0/4 and above, IPv6 ff00::/8.
bool is_group(const Ip& a) { return a.v6 ? a.b[0] == 0xff : a.b[0] >= 224; }

// What the control plane knows of a VM interface and which checks its zone
// switches on.
struct Checks {
  policy::Hygiene h;
  std::optional<net::Mac> mac;  // checked: known and the "mac" switch on
  bool no_addrs = false;        // neither own nor allowed addresses known
};

Checks checks_of(const World& w, const Endpoint& ep) {
  Checks c{policy::hygiene_of(*w.policy, ep.zone), std::nullopt,
           ep.addrs.empty() && ep.allowed.empty()};
  if (c.h.mac) c.mac = ep.mac;
  return c;
}

std::optional<zw_reason> check_arp(const Endpoint& ep, const Checks& c, const Packet& p) {
  if (!c.h.arp) return ZW_R_PASS_ARP;
  if (c.mac && p.arp_sha != *c.mac) return ZW_R_DROP_SPOOF_ARP;
  Ip spa;
  std::copy(p.arp_spa.begin(), p.arp_spa.end(), spa.b.begin());
  if (is_unspecified(spa)) return ZW_R_PASS_ARP;  // a probe (RFC 5227)
  if (c.no_addrs) return c.h.ip ? ZW_R_DROP_SPOOF_ARP : ZW_R_PASS_ARP;
  return owns(ep, spa) ? ZW_R_PASS_ARP : ZW_R_DROP_SPOOF_ARP;
}

std::optional<zw_reason> check_nd(const Endpoint& ep, const Checks& c, const Packet& p) {
  const Ip& src = p.tuple.src;
  if (p.icmp_type == 134 || p.icmp_type == 137)  // router advertisement, redirect
    return c.h.ra ? ZW_R_DROP_GUEST_RA : ZW_R_PASS_ND;
  if (!c.h.nd) return ZW_R_PASS_ND;
  if (!is_unspecified(src) && !is_link_local_v6(src) && (c.no_addrs || !owns(ep, src)))
    return ZW_R_DROP_SPOOF_ND;
  if (p.icmp_type == 136 && !is_link_local_v6(p.nd_target) &&
      (c.no_addrs || !owns(ep, p.nd_target)))
    return ZW_R_DROP_SPOOF_ND;
  if (p.nd_lladdr && c.mac && *p.nd_lladdr != *c.mac) return ZW_R_DROP_SPOOF_ND;
  return ZW_R_PASS_ND;
}

// What a VM may say about itself. nullopt: go on to conntrack and policy.
std::optional<zw_reason> hygiene_from_vm(const Endpoint& ep, const Checks& c, const Packet& p) {
  if (c.mac && p.src_mac != *c.mac) return ZW_R_DROP_SPOOF_MAC;
  if (p.kind == Kind::kArp) return check_arp(ep, c, p);
  if (p.kind == Kind::kNd) return check_nd(ep, c, p);
  const FlowKey& t = p.tuple;
  if (t.proto == kUdp) {
    if ((t.sport == 67 || t.sport == 547) && c.h.dhcp_server)
      return ZW_R_DROP_GUEST_DHCP;  // a server in the guest
    if ((t.sport == 68 && t.dport == 67) || (t.sport == 546 && t.dport == 547))
      return ZW_R_PASS_DHCP;  // a client asking, before or after it has an address
  }
  if (!c.h.ip) return std::nullopt;
  if (c.no_addrs) return ZW_R_DROP_NO_ADDRESS;
  if (is_link_local_v6(t.src)) return std::nullopt;
  if (is_unspecified(t.src) || is_group(t.src) || !owns(ep, t.src)) return ZW_R_DROP_SPOOF_IP;
  return std::nullopt;
}

// What may be delivered to a VM whose addresses are known: unicast IP for
// one of them (a bridge floods unknown unicast).
std::optional<zw_reason> hygiene_to_vm(const Endpoint& ep, const Checks& c, const Packet& p) {
  if (!c.h.ip || c.no_addrs || p.kind != Kind::kIp) return std::nullopt;
  const Ip& dst = p.tuple.dst;
  if (is_group(dst) || is_link_local_v6(dst) || owns(ep, dst)) return std::nullopt;
  return ZW_R_DROP_NOT_FOR_VM;
}

Verdict done(zw_reason r, RuleRef rule = {}) { return {r < ZW_R_FIRST_DROP, r, std::move(rule)}; }

}  // namespace

Ip Ip::from(const net::Addr& a) {
  Ip ip;
  ip.v6 = !a.is_v4();
  if (ip.v6)
    ip.b = a.bytes;
  else
    std::copy_n(a.bytes.begin() + 12, 4, ip.b.begin());
  return ip;
}

std::string Ip::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(v6 ? AF_INET6 : AF_INET, b.data(), buf, sizeof buf);
  return buf;
}

std::string RuleRef::str() const {
  switch (kind) {
    case Kind::kNone:
      return "";
    case Kind::kIntra:
      return "default:intra_zone";
    case Kind::kInter:
      return "default:inter_zone";
    case Kind::kRule:
      break;
  }
  return name;
}

std::string FlowKey::str() const {
  return src.str() + ":" + std::to_string(sport) + " -> " + dst.str() + ":" +
         std::to_string(dport) + " proto " + std::to_string(proto);
}

std::string Verdict::str() const {
  std::string s = std::string(pass ? "pass " : "drop ") + engine::reason_name(reason);
  if (rule.kind != RuleRef::Kind::kNone) s += " rule " + rule.str();
  return s;
}

PolicyAnswer decide(const policy::Policy& p, const std::string& src_zone,
                    const std::string& dst_zone, uint8_t proto, uint16_t port) {
  auto audit_zone = [&](const std::string& z) {
    auto it = p.zones.find(z);
    return it != p.zones.end() && it->second.mode == policy::ZoneMode::kAudit;
  };
  // A deny passes (audited) when the rule or either zone is in audit mode.
  const bool zone_audit = audit_zone(src_zone) || audit_zone(dst_zone);
  auto names = [](const std::vector<std::string>& list, const std::string& z) {
    return std::any_of(list.begin(), list.end(),
                       [&](const std::string& n) { return n == policy::kZoneAny || n == z; });
  };
  for (const auto& rule : p.rules) {
    if (!names(rule.from, src_zone) || !names(rule.to, dst_zone)) continue;
    if (rule.proto && *rule.proto != proto) continue;
    if (!rule.ports.empty() &&
        (!has_ports(proto) ||
         std::none_of(rule.ports.begin(), rule.ports.end(),
                      [&](const policy::PortRange& r) { return r.lo <= port && port <= r.hi; })))
      continue;
    if (!rule.icmp_types.empty() &&
        (!is_icmp(proto) ||
         std::find(rule.icmp_types.begin(), rule.icmp_types.end(), port) == rule.icmp_types.end()))
      continue;
    bool allow = rule.action == policy::Action::kAllow;
    return {{RuleRef::Kind::kRule, rule.name}, allow, !allow && (rule.audit || zone_audit)};
  }
  const bool intra = src_zone == dst_zone;
  bool allow = (intra ? p.defaults.intra_zone : p.defaults.inter_zone) == policy::Action::kAllow;
  return {{intra ? RuleRef::Kind::kIntra : RuleRef::Kind::kInter, ""}, allow, !allow && zone_audit};
}

std::string zone_of(const World& w, const Ip& a) {
  for (const auto& e : w.endpoints)
    if (owns(e, a)) return e.zone;  // VIPs: all holders are in one zone
  const std::string* best = nullptr;
  int best_len = -1;
  for (const auto& [name, z] : w.policy->zones) {
    for (const auto& c : z.cidrs) {
      if (c.v4 == a.v6) continue;  // a prefix covers addresses of its own family only
      const uint8_t* want = c.v4 ? c.addr.bytes.data() + 12 : c.addr.bytes.data();
      bool in = true;
      for (int bit = 0; bit < c.len && in; ++bit) {
        uint8_t m = static_cast<uint8_t>(0x80 >> (bit % 8));
        in = (a.b[bit / 8] & m) == (want[bit / 8] & m);
      }
      if (in && c.len > best_len) {
        best = &name;
        best_len = c.len;
      }
    }
  }
  return best ? *best : policy::kZoneWorld;
}

Verdict judge(const World& w, Hook hook, const std::string& ifname, std::span<const uint8_t> frame,
              Flows& flows) {
  // 1-2: a policy, and an endpoint for the interface, or fail closed.
  if (!w.policy) return done(ZW_R_DROP_NO_POLICY);
  const Endpoint* ep = endpoint_of(w, ifname);
  if (!ep) return done(ZW_R_DROP_NO_ENDPOINT);
  // 3: parse.
  auto parsed = read_frame(frame);
  if (auto* why = std::get_if<zw_reason>(&parsed)) return done(*why);
  const Packet& p = std::get<Packet>(parsed);
  const FlowKey& t = p.tuple;
  const Checks c = checks_of(w, *ep);
  if (hook == Hook::kFromVm) {
    if (auto r = hygiene_from_vm(*ep, c, p)) return done(*r);
  } else if (p.kind == Kind::kIp && t.proto == kUdp &&
             ((t.sport == 67 && t.dport == 68) || (t.sport == 547 && t.dport == 546))) {
    return done(ZW_R_PASS_DHCP);  // a DHCP server answering the VM
  } else if (auto r = hygiene_to_vm(*ep, c, p)) {
    return done(*r);
  }
  if (p.kind == Kind::kArp) return done(ZW_R_PASS_ARP);
  if (p.kind == Kind::kNd) return done(ZW_R_PASS_ND);
  // 4: ICMP errors pass only for a tracked flow, either direction.
  if (p.icmp_error) {
    auto it = flows.find(p.inner);
    if (it == flows.end()) it = flows.find(p.inner.reversed());
    if (it == flows.end()) return done(ZW_R_DROP_ICMP_UNRELATED);
    return done(ZW_R_PASS_RELATED, it->second.rule);
  }
  // Multicast and broadcast have no single peer: judged per packet, never
  // tracked; the sender's zone to the world (from the VM), the sender's zone
  // to the receiver's (to the VM).
  if (is_group(t.dst)) {
    std::string sz = hook == Hook::kFromVm ? ep->zone : zone_of(w, t.src);
    std::string dz = hook == Hook::kFromVm ? std::string(policy::kZoneWorld) : ep->zone;
    PolicyAnswer a = decide(*w.policy, sz, dz, t.proto, p.policy_port);
    return done(a.allow ? ZW_R_PASS_MCAST : a.audit ? ZW_R_PASS_AUDIT : ZW_R_DROP_POLICY, a.rule);
  }
  // 5: conntrack, as-is (original direction) then reversed (reply).
  bool reply = false;
  auto it = flows.find(t);
  if (it == flows.end()) {
    it = flows.find(t.reversed());
    reply = it != flows.end();
  }
  // An echo/timestamp request only in its flow's original direction, a
  // reply only in the reply direction; otherwise as if there were no flow.
  if (it != flows.end() && (t.proto == kIcmp || t.proto == kIcmp6)) {
    const unsigned type = p.policy_port;
    const bool request = t.proto == kIcmp ? (type == 8 || type == 13) : type == 128;
    const bool answer = t.proto == kIcmp ? (type == 0 || type == 14) : type == 129;
    if ((request && reply) || (answer && !reply)) it = flows.end();
  }
  if (it != flows.end()) {
    Flow& f = it->second;
    if (f.generation == w.generation) return done(f.audit ? ZW_R_PASS_AUDIT : ZW_R_PASS_CT, f.rule);
    // An older generation's flow: judged again in its original direction.
    const FlowKey& orig = it->first;
    const bool ep_is_src = (hook == Hook::kFromVm) != reply;
    std::string sz = ep_is_src ? ep->zone : zone_of(w, orig.src);
    std::string dz = ep_is_src ? zone_of(w, orig.dst) : ep->zone;
    PolicyAnswer a = decide(*w.policy, sz, dz, orig.proto, f.policy_port);
    if (a.allow || a.audit) {
      f.generation = w.generation;
      f.rule = a.rule;
      f.audit = !a.allow;
      return done(a.allow ? ZW_R_PASS_CT : ZW_R_PASS_AUDIT, a.rule);
    }
    flows.erase(it);
    return done(ZW_R_DROP_REVOKED, a.rule);
  }
  // 6: a new flow. TCP starts with a SYN without ACK, nothing else.
  if (t.proto == kTcp && (p.tcp_flags & 0x12) != 0x02) return done(ZW_R_DROP_TCP_NO_SYN);
  std::string sz = hook == Hook::kFromVm ? ep->zone : zone_of(w, t.src);
  std::string dz = hook == Hook::kFromVm ? zone_of(w, t.dst) : ep->zone;
  // 7: the policy; a tracked flow is charged to this interface, up to its limit.
  PolicyAnswer a = decide(*w.policy, sz, dz, t.proto, p.policy_port);
  if (a.allow || a.audit) {
    size_t owned = std::count_if(flows.begin(), flows.end(),
                                 [&](const auto& kv) { return kv.second.owner == ep->ifname; });
    if (owned >= policy::max_flows_of(*w.policy, ep->zone)) return done(ZW_R_DROP_CT_LIMIT, a.rule);
    // A flow already tracked under this tuple (an echo in the wrong
    // direction) stays as it is, as the datapath's insert does.
    if (!flows.contains(t) && !flows.contains(t.reversed()))
      flows[t] = {ep->ifname, w.generation, a.rule, p.policy_port, !a.allow};
    return done(a.allow ? ZW_R_PASS_NEW : ZW_R_PASS_AUDIT, a.rule);
  }
  return done(ZW_R_DROP_POLICY, a.rule);
}

std::string describe(std::span<const uint8_t> frame) {
  Reader r{frame};
  if (!r.has(0, 14)) return "runt frame (" + std::to_string(frame.size()) + " bytes)";
  char head[64];
  std::snprintf(head, sizeof head, "%02x:%02x:%02x:%02x:%02x:%02x ethertype 0x%04x, ", frame[6],
                frame[7], frame[8], frame[9], frame[10], frame[11], r.u16(12));
  std::string s = head;
  auto parsed = read_frame(frame);
  if (auto* why = std::get_if<zw_reason>(&parsed))
    return s + "unreadable: " + engine::reason_name(*why);
  const Packet& p = std::get<Packet>(parsed);
  if (p.kind == Kind::kArp) {
    Ip spa;
    std::copy(p.arp_spa.begin(), p.arp_spa.end(), spa.b.begin());
    return s + "ARP sender " + net::mac_str(p.arp_sha) + " " + spa.str();
  }
  s += (p.tuple.src.v6 ? "IPv6 " : "IPv4 ") + p.tuple.str();
  if (p.tuple.proto == kTcp) {
    char f[16];
    std::snprintf(f, sizeof f, " flags 0x%02x", p.tcp_flags);
    s += f;
  }
  if (is_icmp(p.tuple.proto)) s += " type " + std::to_string(p.icmp_type);
  if (p.kind == Kind::kNd) s += " (ND/MLD)";
  if (p.icmp_error) s += " quoting " + p.inner.str();
  return s;
}

}  // namespace zw::model
