// Admission: a VM interface the last apply knew by name but could not hook
// (it did not exist yet, or the tap was recreated with a new index) is put
// under its policy the moment it appears, with a handful of map writes
// instead of a full reconcile (inventory read, compile, plan: 0.2 s at
// 10,000 VMs). Until then the tap is hooked and drops everything (no
// endpoint), so admission shortens a VM's wait; it never opens anything the
// last apply did not already decide.
//
// What is written is exactly what the next apply would write for that
// interface: its endpoint, its own addresses' owning interface, its allowed
// address pairs, in both slots (as a settled apply leaves them). Admission
// refuses, and leaves the interface to the full reconcile that follows,
// whenever the live maps are not as that apply left them: another
// generation is live, an address has another owner, an entry is not
// settled.
//
// A libvirt VM that *starts* is admitted the same way, prospectively: the
// apply also computes, for every stopped domain whose persistent config
// has libvirt create its tap, what that VM would get if it ran on that tap,
// when unambiguous: by the tap name the config gives (<target dev>,
// Endpoint::config_ifname; exactly one stopped domain names it, no running
// VM or static entry uses it), or, when libvirt names the tap itself, by
// the guest MAC (no other VM interface has it). A tap is admitted only when
// its own MAC is the one libvirt gives the tap it creates for that VM
// (inventory::libvirt_tap_mac): a guest can set neither a host interface's
// name nor its MAC, so only libvirt starting that VM (or root on the host)
// can make such a tap appear. (A running libvirt VM's recreated tap must
// have that MAC too: a name libvirt generated may be handed to another VM.)
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "datapath/maps.h"
#include "util/net.h"
#include "util/result.h"
#include "zonewall/abi/zonewall.h"

namespace zw::engine {

struct Admissible {
  std::string vm;           // for logs
  uint32_t generation = 0;  // the apply that computed it
  uint32_t ifindex = 0;     // the interface's index at that apply (0: it did not exist)
  zw_endpoint value{};
  std::vector<zw_addr_key> own;      // the VM's addresses
  std::vector<zw_addr_key> allowed;  // its allowed address pairs
  // A stopped libvirt domain's interface (see above).
  bool prospective = false;
  // Set: admitted only on an interface whose own MAC is this (a libvirt tap).
  std::optional<net::Mac> tap_mac;
};

// By interface name: every endpoint of an apply that names an interface,
// and the stopped domains' interfaces whose config names their tap. A
// stopped domain's interface whose tap libvirt will name itself (vnetN) is
// keyed by the MAC its tap will have, admission_key(tap_mac): "fe:54:…"
// is never an interface name (the kernel refuses ':' in them).
using Admissions = std::map<std::string, Admissible>;
inline std::string admission_key(const net::Mac& tap_mac) { return net::mac_str(tap_mac); }

struct AdmitReport {
  size_t entries_written = 0;
};

// Puts the interface `ifindex` under `a` in the live generation. nullopt
// with `why` set: not admissible (nothing written), the caller reconciles.
// `retry` (optional) is set when the refusal may not last on this very
// interface: its MAC is not (yet) tap_mac, as libvirt sets it only after
// creating the tap.
Result<std::optional<AdmitReport>> admit(const datapath::Maps& maps, const Admissible& a,
                                         uint32_t ifindex, std::string* why, bool* retry = nullptr);

// The interface's own MAC (ioctl, in the calling thread's network
// namespace); nullopt when it has none or no longer exists.
std::optional<net::Mac> link_mac(uint32_t ifindex);

}  // namespace zw::engine
