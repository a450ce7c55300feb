// `zonewall trace` and the engine of `zonewall test`: a packet described by
// its endpoints (VM name, name/interface, UUID or address) is built as a
// frame and run through the datapath's own programs, loaded as the
// dry-run/verdict variant (ZW_RUN_DRY | ZW_RUN_VERDICT) against the pinned
// maps, on every hook a real packet between those endpoints would meet.
// Read-only: no conntrack entry, no counter, no program replaced.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "datapath/object.h"
#include "engine/state.h"
#include "policy/model.h"
#include "util/net.h"
#include "util/result.h"

namespace zw::engine {

struct TraceRequest {
  std::string from;  // VM name, VM/ifname, UUID, interface name or address
  std::string to;
  uint8_t proto = 6;                 // IP protocol number
  std::optional<uint16_t> port;      // destination port (tcp/udp/sctp)
  std::optional<uint16_t> sport;     // source port (default 40000); ICMP echo id
  std::optional<uint8_t> icmp_type;  // default echo request (8 / 128)
  int family = 0;                    // 4, 6; 0: from the endpoints
  uint8_t tcp_flags = 0x02;          // SYN: a new connection
};

// "tcp", "udp", "icmp", "icmpv6", "sctp" or a number 0..255.
std::optional<uint8_t> parse_proto(std::string_view s);
std::string proto_name(uint8_t proto);
// "syn", "syn,ack", "ack", "fin", "rst", "psh", "urg" (comma-separated).
std::optional<uint8_t> parse_tcp_flags(std::string_view s);

// One frame as the VM (or the outside, for an address) would send it.
struct FrameSpec {
  std::array<uint8_t, 6> src_mac{}, dst_mac{};
  net::Addr src, dst;
  uint8_t proto = 6;
  uint16_t sport = 0, dport = 0;  // host order; ICMP: dport is the type
  uint8_t tcp_flags = 0x02;
};
std::vector<uint8_t> build_frame(const FrameSpec& f);

// The live (or private, for `test`) datapath a trace runs against.
class Tracer {
 public:
  // Loads the dry-run/verdict variant against the maps pinned under
  // paths.pin_dir (they must exist unless create_maps: `test` fills a
  // private pin dir after this). Never pins programs.
  static Result<Tracer> open(const Paths& paths, bool create_maps = false);

  // The program instance (for engine::apply of `test`: writes the maps
  // without attaching anything).
  const datapath::Object& programs() const { return obj_; }

  // Reads state.json and the active generation (after open, and after an
  // apply into a private pin dir). `policy` (optional) names rule origins.
  Status refresh(const policy::Policy* policy = nullptr);

  // Runs the packet: JSON with the endpoints, the packet, one entry per hook
  // (verdict, reason, rule with origin, zones, what decided) and the overall
  // "verdict": "allow" (every hook passes) or "deny".
  Result<nlohmann::json> trace(const TraceRequest& r) const;

 private:
  Tracer(Paths paths, datapath::Object obj) : paths_(std::move(paths)), obj_(std::move(obj)) {}
  Paths paths_;
  datapath::Object obj_;
  State state_;
  uint32_t gen_ = 0;
  std::map<std::string, std::string> origins_;  // rule name -> "file: /pointer"
};

// Human rendering of a trace result.
std::string format_trace(const nlohmann::json& t);

}  // namespace zw::engine
