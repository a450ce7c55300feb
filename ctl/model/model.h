// The reference model: the datapath's verdict in plain C++, written from the
// policy contract (docs/policy.md) and the documented datapath behaviour
// (docs/datapath.md, docs/security.md), not from the compiled tables. It
// parses the frame itself (an independent second parser), keeps its own flow
// table, and answers what the BPF programs must answer: pass or drop, the
// reason (enum zw_reason) and the deciding rule. The differential test and
// the datapath fuzzer hold the real programs to it.
//
// Not modelled: time (flow timeouts: callers keep runs short), the global
// table being full (drop_ct_full), tc's VLAN metadata (a tag in skb metadata
// is only set by real NICs/veths, never by BPF_PROG_TEST_RUN).
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "policy/model.h"
#include "util/net.h"
#include "zonewall/abi/zonewall.h"

namespace zw::model {

enum class Hook : uint8_t { kFromVm, kToVm };

// An IP address in its own family: IPv4 uses bytes [0, 4).
struct Ip {
  bool v6 = false;
  std::array<uint8_t, 16> b{};
  auto operator<=>(const Ip&) const = default;
  static Ip from(const net::Addr& a);
  std::string str() const;
};

// One VM interface as the control plane was told about it. Which hygiene
// checks apply and its flow limit come from its zone in the policy.
struct Endpoint {
  std::string ifname;
  std::string zone;             // user zone name, or "unzoned"
  std::optional<net::Mac> mac;  // known: frames from the VM must carry it
  std::vector<Ip> addrs;        // its own addresses
  std::vector<Ip> allowed;      // allowed address pairs (VIPs) it may also use
};

// The deciding rule: none, a default, or a user rule by name.
struct RuleRef {
  enum class Kind : uint8_t { kNone, kIntra, kInter, kRule };
  Kind kind = Kind::kNone;
  std::string name;  // kRule only
  auto operator<=>(const RuleRef&) const = default;
  // As `zonewall stats` names it: "", "default:intra_zone", "default:inter_zone", or the name.
  std::string str() const;
};

// A flow as the datapath keys it: the original direction's addresses and
// ports (ICMP echo: the identifier in both), protocol.
struct FlowKey {
  Ip src, dst;
  uint16_t sport = 0, dport = 0;  // host order
  uint8_t proto = 0;
  auto operator<=>(const FlowKey&) const = default;
  FlowKey reversed() const { return {dst, src, dport, sport, proto}; }
  std::string str() const;
};

struct Flow {
  std::string owner;        // the interface whose hook created it (charged to its limit)
  uint64_t generation = 0;  // the policy generation that allowed it
  RuleRef rule;
  uint16_t policy_port = 0;  // the port / ICMP type the policy judged
  bool audit = false;        // passes only because of audit
};

// The model's conntrack.
using Flows = std::map<FlowKey, Flow>;

// What the control plane has applied: the policy, the endpoints, and a
// generation number the caller bumps on every apply (flows allowed under an
// older generation are judged again).
struct World {
  const policy::Policy* policy = nullptr;  // nullptr: nothing applied yet
  std::vector<Endpoint> endpoints;
  uint64_t generation = 0;
};

struct Verdict {
  bool pass = false;
  zw_reason reason = ZW_R_DROP_MALFORMED;
  RuleRef rule;
  auto operator<=>(const Verdict&) const = default;
  std::string str() const;
};

// Judges one frame arriving at `ifname` on `hook`, updating `flows` exactly as
// the datapath updates its conntrack.
Verdict judge(const World& w, Hook hook, const std::string& ifname, std::span<const uint8_t> frame,
              Flows& flows);

// First-match over the policy's ordered rules for a zone pair (zone names,
// including "world" and "unzoned"); `port` is the destination port of
// TCP/UDP/SCTP or the ICMP/ICMPv6 type. Returns the deciding rule, whether
// it allows, and whether a deny only audits.
struct PolicyAnswer {
  RuleRef rule;
  bool allow = false;
  bool audit = false;
};
PolicyAnswer decide(const policy::Policy& p, const std::string& src_zone,
                    const std::string& dst_zone, uint8_t proto, uint16_t port);

// The zone an address belongs to: a VM's own address or allowed address
// (VIP, zoned like its holders), else the longest prefix among the external
// zones' CIDRs of the same family, else "world".
std::string zone_of(const World& w, const Ip& a);

// A one-line description of a frame ("ARP ...", "IPv6 ... udp 546 -> 547").
std::string describe(std::span<const uint8_t> frame);

}  // namespace zw::model
