// One VM interface as every inventory source (static JSON, libvirt) describes
// it, and the inventory as a whole. Zone membership is decided elsewhere
// (inventory/zones.h), from the policy.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "util/net.h"

namespace zw::inventory {

struct Endpoint {
  std::string vm_name;
  std::string vm_uuid;                  // lower-case canonical, may be empty
  std::optional<std::string> zone_tag;  // zone named by the VM itself (libvirt metadata)
  std::string ifname;                   // host-side interface (tap, veth)
  std::optional<net::Mac> mac;          // the VM's MAC (guest side)
  std::vector<net::Addr> addrs;         // the VM's addresses on this interface
  std::vector<net::Addr> allowed;       // allowed address pairs: VIPs it may also send from
  std::optional<std::string> attach;    // "tc" | "xdp": from-VM hook; unset = default
  std::string libvirt_type;  // <interface type=…> ("network", "bridge", "ethernet"); "" if static
  // libvirt creates this interface's tap and gives it the host-side MAC
  // inventory::libvirt_tap_mac(mac) (QEMU's ethernet, bridge and network
  // NICs; not a tap someone else made, <target managed='no'>).
  bool libvirt_tap = false;
  // A stopped libvirt domain's interface: the tap name its persistent config
  // gives (<target dev>), where its tap will appear when the domain starts;
  // empty when libvirt will name it itself (vnetN). The VM does not own it
  // (ifname stays empty); the daemon may admit a tap that appears with that
  // name (or, unnamed, with that MAC) (engine/admit.h). Empty for running
  // domains and static entries.
  std::string config_ifname;
  std::string source;  // "inventory.json: /vms/2/interfaces/0"
};

struct Inventory {
  std::vector<Endpoint> endpoints;
};

}  // namespace zw::inventory
