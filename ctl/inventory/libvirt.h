// The libvirt inventory source: domain XML -> Endpoints (pure, libxml2), a
// connection wrapper for snapshots and domain events. No zone decisions here.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "inventory/endpoint.h"
#include "util/result.h"

// Opaque libvirt handle, so that users of this header need not include libvirt.
struct _virConnect;

namespace zw::inventory {

// Domain metadata, matched by namespace URI (the key is the prefix virsh writes):
//   <zonewall:vm xmlns:zonewall="..."><zonewall:zone>web</zonewall:zone>
//     <zonewall:interface
//     mac="52:54:00:…"><zonewall:ip>10.80.0.11</zonewall:ip></zonewall:interface>
//   </zonewall:vm>
// The zone tag and, per interface by MAC, the VM's addresses (QEMU domains
// cannot carry <ip> in <interface>; metadata is the host admin's, so trusted).
inline constexpr const char* kMetadataUri = "http://zonewall.org/xmlns/libvirt/1.0";
inline constexpr const char* kMetadataKey = "zonewall";

struct LibvirtOptions {
  std::string uri = "qemu:///system";
  bool addr_lease = true;  // libvirt's own DHCP leases (host-controlled: trusted)
  bool addr_arp = false;   // host ARP table (guest-controlled: opt-in)
  bool addr_agent =
      false;  // QEMU guest agent (guest-controlled: opt-in; needs a read-write connection)
};

struct DomainEvent {
  enum class Kind {
    kDefined,  // new or changed persistent config (define, edit, rename, snapshot revert)
    kUndefined,
    kStarted,          // booted, restored, woken up, from snapshot
    kStopped,          // shut down, destroyed, crashed, saved, failed
    kMigratedIn,       // started on this host by an incoming migration
    kMigratedOut,      // stopped on this host because it migrated away
    kMetadataChanged,  // zonewall metadata (kMetadataUri) only; other namespaces are not reported
    kDeviceChanged,   // a device was hot-plugged or unplugged (detail "added net1", "removed net1")
    kOther,           // suspended, resumed, shutdown requested, pmsuspended, crashed-but-kept
    kConnectionLost,  // the connection closed (detail: eof, error, keepalive, client)
  };
  Kind kind = Kind::kOther;
  std::string name;    // domain name; empty for kConnectionLost
  std::string uuid;    // lower-case; empty for kConnectionLost
  std::string detail;  // libvirt's detail, lower-case words ("booted", "migrated", "destroyed")
};

const char* to_string(DomainEvent::Kind k);

// Every domain of a connection flattened into endpoints. Domains that cannot be
// read or parsed are skipped with a warning naming them; the others still count.
struct Snapshot {
  Inventory inventory;
  std::vector<std::string> warnings;
};

// Parses one domain XML into one Endpoint per <devices><interface>, in document
// order (pure; no libvirt needed). `source` names where the XML came from
// ("libvirt qemu:///system"); endpoints get "<source>: domain 'web-1' interface 0 (vnet3)".
// Errors (kInvalid, one line each, all of them): XML syntax, a missing <name>,
// a bad <uuid>, malformed zonewall metadata ("<source>: domain 'web-1': metadata: ..."),
// metadata addresses for a MAC the domain does not have,
// an invalid MAC or <ip> address ("<source>: domain 'web-1' interface 1 (vnet4): mac: ...").
// A domain without interfaces yields an empty vector; an interface without
// <target dev> (a defined domain that is not running) yields ifname "".
// Addresses: the interface's own <ip> elements, then the metadata's.
Result<std::vector<Endpoint>> parse_domain_xml(const std::string& xml, const std::string& source);

// The MAC libvirt gives the host side of a tap it creates for a guest NIC
// with MAC `guest` (qemuInterfaceEthernetConnect, virNetDevTapCreateInBridgePort):
// the guest's with its first byte replaced by 0xfe (0xfa when it already is
// 0xfe), so that the tap never has the guest's own address and a Linux
// bridge never takes it as its own (bridges take the lowest port MAC).
net::Mac libvirt_tap_mac(const net::Mac& guest);

// Registers libvirt's default event implementation (once per process) and
// starts a thread running it. Call it before the connect() whose events you
// want. Idempotent while running. stop_event_loop() wakes the thread and joins
// it; a static guard calls it at exit. A stopped loop can be started again.
Status start_event_loop();
void stop_event_loop();

// RAII over one libvirt connection (move-only). Read-only unless addr_agent
// (the guest-agent query needs a read-write connection).
class Libvirt {
 public:
  using EventCallback = std::function<void(const DomainEvent&)>;

  // Errors name the URI: "libvirt qemu:///system: cannot connect: <libvirt's reason>".
  static Result<Libvirt> connect(const LibvirtOptions& o);

  Libvirt(Libvirt&& o) noexcept;
  Libvirt& operator=(Libvirt&& o) noexcept;
  Libvirt(const Libvirt&) = delete;
  Libvirt& operator=(const Libvirt&) = delete;
  ~Libvirt();

  // Every domain, active and inactive (live XML for running ones). For active
  // domains the enabled address sources are queried and their addresses added
  // to the interface with the same MAC (deduplicated); a failing query is a
  // warning, the XML addresses stay. Hard error only when libvirt itself fails
  // (listing the domains).
  Result<Snapshot> snapshot();

  // The same reads, domain by domain: each domain's endpoints and warnings
  // under its UUID (lower-case).
  Result<std::map<std::string, Snapshot>> domains();

  // One domain by name or UUID, as snapshot() would report it; nullopt when no
  // such domain exists (e.g. just undefined). Handy after a DomainEvent.
  Result<std::optional<Snapshot>> domain(const std::string& name_or_uuid);

  // Registers lifecycle, metadata-change, device-added/removed and close
  // callbacks; every event calls `cb` ON THE EVENT-LOOP THREAD (see
  // start_event_loop), one at a time. After the destructor returns, `cb` is not
  // running and will not be called again. One watch per connection; a second
  // call is an error.
  Status watch(EventCallback cb);

  // False once the connection is closed or broken (keepalive timed out, EOF).
  bool alive() const;
  const std::string& uri() const { return opts_.uri; }

 private:
  struct WatchState;
  Libvirt(_virConnect* conn, LibvirtOptions opts);
  void release() noexcept;

  _virConnect* conn_ = nullptr;
  LibvirtOptions opts_;
  std::vector<int> callback_ids_;
  bool close_registered_ = false;
  std::shared_ptr<WatchState> watch_;
};

// A libvirt host's domains as last read, domain by domain (by UUID), for a
// daemon that follows them: read whole at first and whenever mark_all()
// asks (a new connection, a resync), otherwise only the domains marked since
// the last update, which a lifecycle event names. One event costs one
// domain's read instead of every domain's (seconds with 10,000 domains).
// Not thread-safe: one thread marks and updates.
class DomainCache {
 public:
  void mark(const std::string& uuid);  // this domain again (empty: every domain)
  void mark_vm(const std::string& name);  // the cached domain of that name (unknown: every one)
  void mark_all() { all_ = true; }

  struct Read {
    bool full = false;   // every domain was read
    size_t domains = 0;  // domains read
  };
  // Reads what the marks ask for. On an error nothing changes and the marks
  // stay, for the next update.
  Result<Read> update(Libvirt& lv);

  // What Libvirt::snapshot() gives, for the domains as last read.
  Snapshot snapshot() const;

 private:
  std::map<std::string, Snapshot> domains_;
  std::set<std::string> stale_;
  bool all_ = true;
};

}  // namespace zw::inventory
