// Attaching the programs to a VM interface: tc clsact ingress/egress filters
// (kernel-owned, survive the controller) and XDP links pinned in bpffs (an
// unpinned link would detach when the controller exits: fail open).
// Replacing a program is atomic in both cases (filter replace, link update).
#pragma once

#include <cstdint>
#include <string>

#include "util/result.h"

namespace zw::datapath {

enum class TcHook { kIngress, kEgress };

// Our filter's identity on the clsact qdisc.
inline constexpr uint32_t kTcHandle = 0x5a57;  // "ZW"
inline constexpr uint32_t kTcPriority = 1;     // ahead of anything else

// Creates the clsact qdisc if missing; true if this call created it.
Result<bool> ensure_clsact(int ifindex);
Status attach_tc(int ifindex, TcHook hook, int prog_fd);
Status detach_tc(int ifindex, TcHook hook);             // absent is fine
Result<uint32_t> tc_prog_id(int ifindex, TcHook hook);  // 0 if none of ours
Status destroy_clsact(int ifindex);                     // absent is fine

// XDP link pinned at link_pin: created, or updated in place if it exists.
Status attach_xdp(int ifindex, int prog_fd, const std::string& link_pin);
Status detach_xdp(const std::string& link_pin);  // absent is fine
// Program id behind a pinned XDP link, and the ifindex it is on (0, 0 if none).
struct XdpLinkInfo {
  uint32_t prog_id = 0;
  uint32_t ifindex = 0;
};
Result<XdpLinkInfo> xdp_link_info(const std::string& link_pin);

uint32_t prog_id_of_fd(int prog_fd);
uint32_t map_id_of_fd(int map_fd);
// True if program `prog_id` uses map `map_id`: how `down` recognises the
// programs of its own instance (and not another pin dir's) on any interface.
bool prog_uses_map(uint32_t prog_id, uint32_t map_id);

}  // namespace zw::datapath
