// Combining inventory sources: libvirt says which VMs exist; the static JSON
// inventory overrides what the operator knows better (addresses, MAC, attach).
#pragma once

#include "inventory/endpoint.h"

namespace zw::inventory {

// Each static endpoint overrides the libvirt endpoints it matches: same
// interface name and the same VM, by UUID when both sides have one, else by
// name. On a match the static entry's addresses replace libvirt's when it
// lists any (an entry without addresses keeps libvirt's), and its MAC, attach
// mode and zone tag replace libvirt's when given; the source names both.
// Static endpoints that match nothing are appended as they are, in order.
// Libvirt endpoints keep their order.
Inventory apply_overrides(Inventory from_libvirt, const Inventory& static_inv);

}  // namespace zw::inventory
