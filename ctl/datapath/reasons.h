// Names of the datapath's reasons (enum zw_reason in the ABI header), as
// shown by stats, flows, trace and metrics. The one table; keep the order of
// the enum.
#pragma once

#include <cstddef>
#include <iterator>
#include <optional>
#include <string_view>

#include "zonewall/abi/zonewall.h"

namespace zw::datapath {

inline constexpr const char* kReasonNames[] = {
    "pass_new",        "pass_ct",          "pass_related",
    "pass_arp",        "pass_nd",          "pass_audit",
    "pass_dhcp",       "pass_mcast",       "drop_policy",
    "drop_revoked",    "drop_no_endpoint", "drop_no_policy",
    "drop_malformed",  "drop_fragment",    "drop_vlan",
    "drop_ethertype",  "drop_ipv6_ext",    "drop_icmp_unrelated",
    "drop_spoof_mac",  "drop_spoof_ip",    "drop_spoof_arp",
    "drop_guest_dhcp", "drop_guest_ra",    "drop_tcp_no_syn",
    "drop_no_address", "drop_spoof_nd",    "drop_not_for_vm",
    "drop_ct_limit",   "drop_ct_full",
};
static_assert(std::size(kReasonNames) == ZW_R_MAX, "one name per enum zw_reason");

inline const char* reason_name(int r) {
  return r >= 0 && r < ZW_R_MAX ? kReasonNames[r] : "unknown";
}

inline std::optional<int> reason_from_name(std::string_view n) {
  for (std::size_t i = 0; i < std::size(kReasonNames); ++i)
    if (n == kReasonNames[i]) return static_cast<int>(i);
  return std::nullopt;
}

inline bool reason_passes(int r) { return r >= 0 && r < ZW_R_FIRST_DROP; }

}  // namespace zw::datapath
