// libvirt inventory: domain XML parsing (libxml2 + XPath, as libvirt itself
// does), the connection wrapper, address queries and domain events.
#include "inventory/libvirt.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <tuple>

#include "util/json_doc.h"
#include "util/log.h"

namespace zw::inventory {

namespace {

// ---------------------------------------------------------------------------
// libxml2 handles

struct XmlDocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
struct XmlParserFree {
  void operator()(xmlParserCtxt* c) const { xmlFreeParserCtxt(c); }
};
struct XPathCtxFree {
  void operator()(xmlXPathContext* c) const { xmlXPathFreeContext(c); }
};
struct XPathObjFree {
  void operator()(xmlXPathObject* o) const { xmlXPathFreeObject(o); }
};
struct XmlCharFree {
  void operator()(xmlChar* p) const { xmlFree(p); }
};
using XmlDoc = std::unique_ptr<xmlDoc, XmlDocFree>;
using XmlParser = std::unique_ptr<xmlParserCtxt, XmlParserFree>;
using XPathCtx = std::unique_ptr<xmlXPathContext, XPathCtxFree>;
using XPathObj = std::unique_ptr<xmlXPathObject, XPathObjFree>;
using XmlStr = std::unique_ptr<xmlChar, XmlCharFree>;

std::string take(xmlChar* s) {
  XmlStr owned(s);
  return owned ? std::string(reinterpret_cast<const char*>(owned.get())) : std::string();
}

std::string_view name_of(const xmlNode* n) { return reinterpret_cast<const char*>(n->name); }

bool in_ns(const xmlNode* n, const char* uri) {
  if (uri == nullptr) return n->ns == nullptr || n->ns->href == nullptr;
  return n->ns != nullptr && n->ns->href != nullptr &&
         std::string_view(reinterpret_cast<const char*>(n->ns->href)) == uri;
}

// Attribute without a namespace; nullopt when absent.
std::optional<std::string> attr(xmlNode* n, const char* name) {
  xmlChar* v = xmlGetNoNsProp(n, reinterpret_cast<const xmlChar*>(name));
  if (v == nullptr) return std::nullopt;
  return take(v);
}

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::vector<xmlNode*> element_children(xmlNode* n) {
  std::vector<xmlNode*> out;
  for (xmlNode* c = n->children; c != nullptr; c = c->next)
    if (c->type == XML_ELEMENT_NODE) out.push_back(c);
  return out;
}

// Child elements of `n` named `name` in no namespace (libvirt's own elements).
std::vector<xmlNode*> children_named(xmlNode* n, std::string_view name) {
  std::vector<xmlNode*> out;
  for (xmlNode* c : element_children(n))
    if (name_of(c) == name && in_ns(c, nullptr)) out.push_back(c);
  return out;
}

std::vector<xmlNode*> select(xmlXPathContext* ctx, const char* expr) {
  XPathObj obj(xmlXPathEvalExpression(reinterpret_cast<const xmlChar*>(expr), ctx));
  std::vector<xmlNode*> out;
  if (obj && obj->type == XPATH_NODESET && obj->nodesetval != nullptr)
    for (int i = 0; i < obj->nodesetval->nodeNr; ++i) out.push_back(obj->nodesetval->nodeTab[i]);
  return out;
}

std::string squote(std::string_view s) {
  constexpr std::size_t kMax = 80;
  std::string out = "'";
  out += s.size() > kMax ? std::string(s.substr(0, kMax)) + "..." : std::string(s);
  return out + "'";
}

// [a-z0-9][a-z0-9_-]{0,62}, the policy's zone-name rule.
bool valid_zone_name(std::string_view s) {
  auto lower_alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (s.empty() || s.size() > 63 || !lower_alnum(s[0])) return false;
  return std::all_of(s.begin(), s.end(),
                     [&](char c) { return lower_alnum(c) || c == '_' || c == '-'; });
}

// A VM's MAC, or why the text is not one (parse_mac plus what no VM NIC has).
// One rule for <interface><mac address> and the metadata's <interface mac>.
std::optional<net::Mac> vm_mac(const std::string& text, std::string& why) {
  auto m = net::parse_mac(text);
  if (!m) {
    why = squote(text) + " is not a MAC address";
  } else if ((*m)[0] & 1) {
    why = squote(text) + " is a multicast MAC, not a VM's";
  } else if (*m == net::Mac{}) {
    why = "00:00:00:00:00:00 is not a VM's address";
  } else {
    return m;
  }
  return std::nullopt;
}

// One of ours inside <vm>: virsh puts the children in the namespace,
// hand-written XML may leave them unqualified. Either is ours.
bool ours(const xmlNode* n, std::string_view name) {
  return name_of(n) == name && (in_ns(n, kMetadataUri) || in_ns(n, nullptr));
}

// <metadata><zonewall:vm>: the zone tag and per-interface addresses.
struct MetaInterface {
  std::string text;  // the mac attribute as written, for messages
  net::Mac mac{};
  std::vector<net::Addr> addrs;
  std::vector<net::Addr> allowed;
};
struct Metadata {
  std::optional<std::string> zone;
  std::vector<MetaInterface> interfaces;
};

using Complain = std::function<void(const std::string&)>;

std::optional<std::string> parse_zone(const std::vector<xmlNode*>& zones, const Complain& bad) {
  if (zones.empty()) return std::nullopt;
  if (zones.size() > 1) {
    bad(std::to_string(zones.size()) + " <zone> elements in <vm>; expected one");
    return std::nullopt;
  }
  if (!element_children(zones[0]).empty()) {
    bad("<zone> must hold only the zone name, not elements");
    return std::nullopt;
  }
  std::string zone = trim(take(xmlNodeGetContent(zones[0])));
  if (zone.empty()) {
    bad("<zone> is empty");
    return std::nullopt;
  }
  if (!valid_zone_name(zone)) {
    bad("zone " + squote(zone) +
        " is not a zone name (lower-case letters, digits, '_' and '-', starting with a letter "
        "or digit, at most 63 characters)");
    return std::nullopt;
  }
  return zone;
}

// <interface mac="…"><ip>addr</ip>…</interface>; nullopt when the MAC is
// missing or invalid. Bad <ip>s are reported and left out.
std::optional<MetaInterface> parse_meta_interface(xmlNode* n, const Complain& bad) {
  MetaInterface mi;
  auto text = attr(n, "mac");
  if (!text) {
    bad("<interface> has no mac attribute");
    return std::nullopt;
  }
  mi.text = *text;
  std::string why;
  auto m = vm_mac(*text, why);
  if (!m) {
    bad("interface mac: " + why);
    return std::nullopt;
  }
  mi.mac = *m;
  const std::string where = "interface " + squote(*text) + ": ";
  for (xmlNode* c : element_children(n)) {
    const bool is_ip = ours(c, "ip"), is_allowed = ours(c, "allowed-address");
    if (!is_ip && !is_allowed) {
      bad(where + "unknown element <" + std::string(name_of(c)) +
          "> in <interface> (expected <ip> or <allowed-address>)");
      continue;
    }
    const char* el = is_ip ? "ip" : "allowed-address";
    if (!element_children(c).empty()) {
      bad(where + "<" + el + "> must hold only one address, not elements");
      continue;
    }
    std::string ip = trim(take(xmlNodeGetContent(c)));
    auto a = net::parse_addr(ip);
    if (!a) {
      bad(where + el + " " + squote(ip) + " is not an IPv4 or IPv6 address" +
          (ip.find('/') != std::string::npos ? " (one address, no prefix length)" : ""));
      continue;
    }
    auto& list = is_ip ? mi.addrs : mi.allowed;
    if (std::find(list.begin(), list.end(), *a) == list.end()) list.push_back(*a);
  }
  return mi;
}

// Errors go to `errors` as "<where>: metadata: <what>".
Metadata parse_metadata(xmlXPathContext* ctx, const std::string& where,
                        std::vector<std::string>& errors) {
  Metadata meta;
  auto vms = select(ctx, "/domain/metadata/zw:vm");
  const Complain bad = [&](const std::string& what) {
    errors.push_back(where + ": metadata: " + what);
  };
  auto others = select(ctx, "/domain/metadata/zw:*[local-name() != 'vm']");
  for (xmlNode* o : others)
    bad("unknown element <" + std::string(name_of(o)) + "> in " + kMetadataUri +
        " (expected <vm>)");
  if (vms.empty()) return meta;
  if (vms.size() > 1) {
    bad(std::to_string(vms.size()) + " <vm> elements in " + kMetadataUri + "; expected one");
    return meta;
  }
  std::vector<xmlNode*> zones, interfaces;
  for (xmlNode* c : element_children(vms[0])) {
    if (ours(c, "zone")) {
      zones.push_back(c);
    } else if (ours(c, "interface")) {
      interfaces.push_back(c);
    } else {
      bad("unknown element <" + std::string(name_of(c)) +
          "> in <vm> (expected <zone> or <interface>)");
    }
  }
  if (zones.empty() && interfaces.empty()) {
    bad("empty zonewall metadata: <vm> has neither <zone> nor <interface>");
    return meta;
  }
  meta.zone = parse_zone(zones, bad);
  for (xmlNode* n : interfaces) {
    auto mi = parse_meta_interface(n, bad);
    if (!mi) continue;
    auto same = std::find_if(meta.interfaces.begin(), meta.interfaces.end(),
                             [&](const MetaInterface& o) { return o.mac == mi->mac; });
    if (same != meta.interfaces.end()) {
      bad("interface " + squote(mi->text) + " is listed twice in <vm> (also as " +
          squote(same->text) + "); give each interface one <interface>");
      continue;
    }
    meta.interfaces.push_back(std::move(*mi));
  }
  return meta;
}

// The metadata's addresses join the endpoints with the same MAC, after the
// XML's own. A metadata MAC that no <interface><mac> of the domain has is an
// error: a typo must not leave a VM silently without its addresses.
void apply_metadata_addresses(const Metadata& meta, const std::vector<xmlNode*>& ifaces,
                              const std::string& where, std::vector<Endpoint>& eps,
                              std::vector<std::string>& errors) {
  if (meta.interfaces.empty()) return;
  // From the XML rather than `eps`: an interface left out for its own error
  // still has its MAC, and that error is the one to report.
  std::vector<net::Mac> domain_macs;
  std::string listed;
  for (xmlNode* ifc : ifaces) {
    auto macs = children_named(ifc, "mac");
    if (macs.empty()) continue;
    auto m = net::parse_mac(attr(macs[0], "address").value_or(""));
    if (!m) continue;
    domain_macs.push_back(*m);
    listed += (listed.empty() ? "" : ", ") + net::mac_str(*m);
  }
  for (const MetaInterface& mi : meta.interfaces) {
    if (std::find(domain_macs.begin(), domain_macs.end(), mi.mac) == domain_macs.end()) {
      errors.push_back(where + ": metadata: interface " + squote(mi.text) +
                       ": the domain has no <interface> with this MAC (" +
                       (listed.empty() ? std::string("it has none") : "it has " + listed) + ")");
      continue;
    }
    for (Endpoint& ep : eps) {
      if (ep.mac != mi.mac) continue;
      for (const net::Addr& a : mi.addrs)
        if (std::find(ep.addrs.begin(), ep.addrs.end(), a) == ep.addrs.end()) ep.addrs.push_back(a);
      for (const net::Addr& a : mi.allowed)
        if (std::find(ep.allowed.begin(), ep.allowed.end(), a) == ep.allowed.end())
          ep.allowed.push_back(a);
    }
  }
}

void parse_interface(xmlNode* ifc, std::size_t index, const Endpoint& base,
                     const std::string& domain_where, std::vector<Endpoint>& out,
                     std::vector<std::string>& errors) {
  Endpoint ep = base;
  ep.libvirt_type = attr(ifc, "type").value_or("");
  bool managed_tap = true;  // <target managed='no'>: a tap made by someone else, not libvirt
  if (auto targets = children_named(ifc, "target"); !targets.empty()) {
    ep.ifname = attr(targets[0], "dev").value_or("");
    managed_tap = attr(targets[0], "managed").value_or("yes") != "no";
  }
  std::string where = domain_where + " interface " + std::to_string(index);
  if (!ep.ifname.empty()) where += " (" + ep.ifname + ")";
  ep.source = where;
  const std::size_t errors_before = errors.size();

  if (auto macs = children_named(ifc, "mac"); !macs.empty()) {
    auto text = attr(macs[0], "address");
    std::string why;
    if (!text) {
      errors.push_back(where + ": mac: <mac> has no address attribute");
    } else if (auto m = vm_mac(*text, why)) {
      ep.mac = *m;
    } else {
      errors.push_back(where + ": mac: " + why);
    }
  }
  // <ip> directly under <interface>: addresses libvirt configures on the guest
  // side. <source><ip> (host side of a type='ethernet' tap) is not the VM's.
  std::size_t k = 0;
  for (xmlNode* ip : children_named(ifc, "ip")) {
    std::string ipw = where + ": ip " + std::to_string(k++);
    auto text = attr(ip, "address");
    if (!text) {
      errors.push_back(ipw + ": <ip> has no address attribute");
      continue;
    }
    auto a = net::parse_addr(*text);
    if (!a) {
      errors.push_back(ipw + ": " + squote(*text) + " is not an IPv4 or IPv6 address");
      continue;
    }
    if (std::find(ep.addrs.begin(), ep.addrs.end(), *a) == ep.addrs.end()) ep.addrs.push_back(*a);
  }
  // A tap libvirt itself creates (QEMU's ethernet, bridge and network
  // NICs), with the guest's MAC turned into the host side's
  // (libvirt_tap_mac); and where it will appear when a stopped domain
  // starts: under the name the config gives explicitly (libvirt drops the
  // names it generates, vnetN, from a stopped domain's XML). read_domain()
  // keeps config_ifname for stopped domains only.
  ep.libvirt_tap = managed_tap && ep.mac &&
                   (ep.libvirt_type == "ethernet" || ep.libvirt_type == "bridge" ||
                    ep.libvirt_type == "network");
  if (ep.libvirt_tap) ep.config_ifname = ep.ifname;
  if (errors.size() == errors_before) out.push_back(std::move(ep));
}

// ---------------------------------------------------------------------------
// libvirt handles and errors

struct DomainFree {
  void operator()(virDomain* d) const { virDomainFree(d); }
};
using Domain = std::unique_ptr<virDomain, DomainFree>;

struct CFree {
  void operator()(void* p) const { std::free(p); }
};
using CString = std::unique_ptr<char, CFree>;

// Owns the array virConnectListAllDomains returns.
class DomainList {
 public:
  DomainList() = default;
  DomainList(const DomainList&) = delete;
  DomainList& operator=(const DomainList&) = delete;
  ~DomainList() {
    for (int i = 0; i < n_; ++i) virDomainFree(doms_[i]);
    std::free(doms_);
  }
  virDomainPtr** out() { return &doms_; }
  void set_size(int n) { n_ = n; }
  int size() const { return n_; }
  virDomainPtr operator[](int i) const { return doms_[i]; }

 private:
  virDomainPtr* doms_ = nullptr;
  int n_ = 0;
};

// Owns the array virDomainInterfaceAddresses returns.
class IfaceList {
 public:
  IfaceList() = default;
  IfaceList(const IfaceList&) = delete;
  IfaceList& operator=(const IfaceList&) = delete;
  ~IfaceList() {
    for (int i = 0; i < n_; ++i) virDomainInterfaceFree(ifaces_[i]);
    std::free(ifaces_);
  }
  virDomainInterfacePtr** out() { return &ifaces_; }
  void set_size(int n) { n_ = n; }
  int size() const { return n_; }
  virDomainInterfacePtr operator[](int i) const { return ifaces_[i]; }

 private:
  virDomainInterfacePtr* ifaces_ = nullptr;
  int n_ = 0;
};

// libvirt's last error on this thread, for our messages.
std::string last_error() {
  const char* m = virGetLastErrorMessage();
  return m != nullptr ? std::string(m) : std::string("unknown libvirt error");
}

int last_error_code() {
  virErrorPtr e = virGetLastError();
  return e != nullptr ? e->code : VIR_ERR_OK;
}

// libvirt prints every error to stderr unless told otherwise; we take the text
// from virGetLastErrorMessage() where it matters and keep the rest at debug.
void quiet_error(void*, virErrorPtr e) {
  if (e != nullptr && e->message != nullptr) log::debug("libvirt", {{"error", e->message}});
}

void install_error_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    xmlInitParser();
    virSetErrorFunc(nullptr, quiet_error);
  });
}

std::string lower_uuid(virDomainPtr d) {
  char buf[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(d, buf) < 0) return {};
  return jsondoc::lower(buf);
}

std::string domain_name(virDomainPtr d) {
  const char* n = virDomainGetName(d);
  return n != nullptr ? n : "";
}

// Never a VM's own address, whatever a guest agent says: loopback,
// unspecified, multicast.
bool host_address(const net::Addr& a) {
  const auto& b = a.bytes;
  if (a.is_v4())
    return b[12] != 127 && (b[12] | b[13] | b[14] | b[15]) != 0 && (b[12] & 0xf0) != 0xe0;
  net::Addr loopback6;
  loopback6.bytes[15] = 1;
  return a != loopback6 && a != net::Addr{} && b[0] != 0xff;
}

struct AddrSource {
  unsigned int id;
  const char* name;
};

// Addresses the address sources report, merged by MAC into `eps` (one domain's).
void add_queried_addresses(virDomainPtr dom, const LibvirtOptions& o, const std::string& where,
                           std::vector<Endpoint>& eps, std::vector<std::string>& warnings) {
  std::vector<AddrSource> sources;
  if (o.addr_lease) sources.push_back({VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, "lease"});
  if (o.addr_arp) sources.push_back({VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP, "arp"});
  if (o.addr_agent) sources.push_back({VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, "agent"});
  for (const auto& src : sources) {
    IfaceList ifaces;
    int n = virDomainInterfaceAddresses(dom, ifaces.out(), src.id, 0);
    if (n < 0) {
      warnings.push_back(where + ": " + src.name + " addresses: " + last_error());
      continue;
    }
    ifaces.set_size(n);
    for (int i = 0; i < ifaces.size(); ++i) {
      virDomainInterfacePtr ifc = ifaces[i];
      if (ifc->hwaddr == nullptr) continue;
      auto mac = net::parse_mac(ifc->hwaddr);
      if (!mac) continue;
      for (auto& ep : eps) {
        if (ep.mac != mac) continue;
        // Leases exist only on libvirt-managed networks (the test driver
        // invents one for every interface; no real driver does).
        if (src.id == VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE && ep.libvirt_type != "network")
          continue;
        for (unsigned int k = 0; k < ifc->naddrs; ++k) {
          if (ifc->addrs[k].addr == nullptr) continue;
          auto a = net::parse_addr(ifc->addrs[k].addr);
          if (!a) continue;
          if (!host_address(*a)) continue;
          if (std::find(ep.addrs.begin(), ep.addrs.end(), *a) == ep.addrs.end())
            ep.addrs.push_back(*a);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Event loop

struct EventLoop {
  std::mutex mu;
  std::thread thread;
  std::atomic<bool> stop{false};
  int wake_timer = -1;

  bool running() {
    std::lock_guard lock(mu);
    return thread.joinable();
  }
  void halt() {
    std::lock_guard lock(mu);
    if (!thread.joinable()) return;
    stop = true;
    virEventUpdateTimeout(wake_timer, 0);
    thread.join();
    virEventRemoveTimeout(wake_timer);
    wake_timer = -1;
  }
  ~EventLoop() { halt(); }  // a joinable std::thread at exit would terminate()
};

EventLoop& event_loop() {
  static EventLoop loop;
  return loop;
}

// ---------------------------------------------------------------------------
// Event mapping

const char* lifecycle_detail(int event, int detail) {
  switch (event) {
    case VIR_DOMAIN_EVENT_DEFINED:
      switch (detail) {
        case VIR_DOMAIN_EVENT_DEFINED_ADDED:
          return "added";
        case VIR_DOMAIN_EVENT_DEFINED_UPDATED:
          return "updated";
        case VIR_DOMAIN_EVENT_DEFINED_RENAMED:
          return "renamed";
        case VIR_DOMAIN_EVENT_DEFINED_FROM_SNAPSHOT:
          return "from snapshot";
      }
      break;
    case VIR_DOMAIN_EVENT_UNDEFINED:
      switch (detail) {
        case VIR_DOMAIN_EVENT_UNDEFINED_REMOVED:
          return "removed";
        case VIR_DOMAIN_EVENT_UNDEFINED_RENAMED:
          return "renamed";
      }
      break;
    case VIR_DOMAIN_EVENT_STARTED:
      switch (detail) {
        case VIR_DOMAIN_EVENT_STARTED_BOOTED:
          return "booted";
        case VIR_DOMAIN_EVENT_STARTED_MIGRATED:
          return "migrated";
        case VIR_DOMAIN_EVENT_STARTED_RESTORED:
          return "restored";
        case VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT:
          return "from snapshot";
        case VIR_DOMAIN_EVENT_STARTED_WAKEUP:
          return "wakeup";
      }
      break;
    case VIR_DOMAIN_EVENT_SUSPENDED:
      switch (detail) {
        case VIR_DOMAIN_EVENT_SUSPENDED_PAUSED:
          return "suspended: paused";
        case VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED:
          return "suspended: migrated";
        case VIR_DOMAIN_EVENT_SUSPENDED_IOERROR:
          return "suspended: I/O error";
        case VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG:
          return "suspended: watchdog";
        case VIR_DOMAIN_EVENT_SUSPENDED_RESTORED:
          return "suspended: restored";
        case VIR_DOMAIN_EVENT_SUSPENDED_FROM_SNAPSHOT:
          return "suspended: from snapshot";
        case VIR_DOMAIN_EVENT_SUSPENDED_API_ERROR:
          return "suspended: API error";
        case VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY:
          return "suspended: postcopy";
        case VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY_FAILED:
          return "suspended: postcopy failed";
      }
      return "suspended";
    case VIR_DOMAIN_EVENT_RESUMED:
      switch (detail) {
        case VIR_DOMAIN_EVENT_RESUMED_UNPAUSED:
          return "resumed: unpaused";
        case VIR_DOMAIN_EVENT_RESUMED_MIGRATED:
          return "resumed: migrated";
        case VIR_DOMAIN_EVENT_RESUMED_FROM_SNAPSHOT:
          return "resumed: from snapshot";
        case VIR_DOMAIN_EVENT_RESUMED_POSTCOPY:
          return "resumed: postcopy";
        case VIR_DOMAIN_EVENT_RESUMED_POSTCOPY_FAILED:
          return "resumed: postcopy failed";
      }
      return "resumed";
    case VIR_DOMAIN_EVENT_STOPPED:
      switch (detail) {
        case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
          return "shutdown";
        case VIR_DOMAIN_EVENT_STOPPED_DESTROYED:
          return "destroyed";
        case VIR_DOMAIN_EVENT_STOPPED_CRASHED:
          return "crashed";
        case VIR_DOMAIN_EVENT_STOPPED_MIGRATED:
          return "migrated";
        case VIR_DOMAIN_EVENT_STOPPED_SAVED:
          return "saved";
        case VIR_DOMAIN_EVENT_STOPPED_FAILED:
          return "failed";
        case VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT:
          return "from snapshot";
      }
      break;
    case VIR_DOMAIN_EVENT_SHUTDOWN:
      switch (detail) {
        case VIR_DOMAIN_EVENT_SHUTDOWN_FINISHED:
          return "shutdown: finished";
        case VIR_DOMAIN_EVENT_SHUTDOWN_GUEST:
          return "shutdown: guest";
        case VIR_DOMAIN_EVENT_SHUTDOWN_HOST:
          return "shutdown: host";
      }
      return "shutdown";
    case VIR_DOMAIN_EVENT_PMSUSPENDED:
      return detail == VIR_DOMAIN_EVENT_PMSUSPENDED_DISK ? "pmsuspended: disk" : "pmsuspended";
    case VIR_DOMAIN_EVENT_CRASHED:
      return "crashed";
  }
  return "unknown";
}

DomainEvent::Kind lifecycle_kind(int event, int detail) {
  using K = DomainEvent::Kind;
  switch (event) {
    case VIR_DOMAIN_EVENT_DEFINED:
      return K::kDefined;
    case VIR_DOMAIN_EVENT_UNDEFINED:
      return K::kUndefined;
    case VIR_DOMAIN_EVENT_STARTED:
      return detail == VIR_DOMAIN_EVENT_STARTED_MIGRATED ? K::kMigratedIn : K::kStarted;
    case VIR_DOMAIN_EVENT_STOPPED:
      return detail == VIR_DOMAIN_EVENT_STOPPED_MIGRATED ? K::kMigratedOut : K::kStopped;
  }
  return K::kOther;
}

const char* close_reason(int reason) {
  switch (reason) {
    case VIR_CONNECT_CLOSE_REASON_ERROR:
      return "error";
    case VIR_CONNECT_CLOSE_REASON_EOF:
      return "eof";
    case VIR_CONNECT_CLOSE_REASON_KEEPALIVE:
      return "keepalive";
    case VIR_CONNECT_CLOSE_REASON_CLIENT:
      return "client";
  }
  return "unknown";
}

}  // namespace

// ---------------------------------------------------------------------------
// Domain XML

Result<std::vector<Endpoint>> parse_domain_xml(const std::string& xml, const std::string& source) {
  install_error_handler();
  std::vector<std::string> errors;
  XmlParser parser(xmlNewParserCtxt());
  if (!parser) return fail(Error::sys(source + ": domain XML: out of memory", ENOMEM));
  // NONET: never fetch anything; no NOENT: entities are not expanded.
  XmlDoc doc(xmlCtxtReadMemory(parser.get(), xml.data(), static_cast<int>(xml.size()), "domain.xml",
                               nullptr, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (!doc) {
    const xmlError* e = xmlCtxtGetLastError(parser.get());
    std::string what = e != nullptr && e->message != nullptr ? trim(e->message) : "not XML";
    std::string at = e != nullptr ? "line " + std::to_string(e->line) + ": " : "";
    return fail(Error::invalid(source + ": domain XML: " + at + what));
  }
  xmlNode* root = xmlDocGetRootElement(doc.get());
  if (root == nullptr || name_of(root) != "domain" || !in_ns(root, nullptr))
    return fail(Error::invalid(source + ": domain XML: the root element is not <domain>"));
  XPathCtx ctx(xmlXPathNewContext(doc.get()));
  if (!ctx || xmlXPathRegisterNs(ctx.get(), reinterpret_cast<const xmlChar*>("zw"),
                                 reinterpret_cast<const xmlChar*>(kMetadataUri)) != 0)
    return fail(Error::sys(source + ": domain XML: cannot set up XPath", ENOMEM));

  Endpoint base;
  auto names = select(ctx.get(), "/domain/name");
  if (names.empty()) return fail(Error::invalid(source + ": domain XML: no <name>"));
  base.vm_name = trim(take(xmlNodeGetContent(names[0])));
  if (base.vm_name.empty()) return fail(Error::invalid(source + ": domain XML: empty <name>"));
  const std::string where = source + ": domain '" + base.vm_name + "'";

  if (auto uuids = select(ctx.get(), "/domain/uuid"); !uuids.empty()) {
    std::string u = trim(take(xmlNodeGetContent(uuids[0])));
    if (jsondoc::is_uuid(u)) {
      base.vm_uuid = jsondoc::lower(u);
    } else {
      errors.push_back(where + ": uuid: " + squote(u) +
                       " is not a UUID (8-4-4-4-12 hexadecimal digits)");
    }
  }
  Metadata meta = parse_metadata(ctx.get(), where, errors);
  base.zone_tag = meta.zone;

  std::vector<Endpoint> out;
  auto ifaces = select(ctx.get(), "/domain/devices/interface");
  for (std::size_t i = 0; i < ifaces.size(); ++i)
    parse_interface(ifaces[i], i, base, where, out, errors);
  apply_metadata_addresses(meta, ifaces, where, out, errors);
  if (!errors.empty()) return fail(jsondoc::invalid(errors));
  return out;
}

net::Mac libvirt_tap_mac(const net::Mac& guest) {
  net::Mac tap = guest;
  tap[0] = guest[0] == 0xfe ? 0xfa : 0xfe;
  return tap;
}

// ---------------------------------------------------------------------------
// Event loop

Status start_event_loop() {
  install_error_handler();
  static std::once_flag once;
  static int registered = -1;
  static std::string why;
  std::call_once(once, [] {
    registered = virEventRegisterDefaultImpl();
    if (registered < 0) why = last_error();
  });
  if (registered < 0) return fail(Error(ErrorKind::kSystem, "libvirt: event loop: " + why));

  EventLoop& loop = event_loop();
  std::lock_guard lock(loop.mu);
  if (loop.thread.joinable()) return {};
  // A disabled timer that stop_event_loop() arms to wake the poll() the thread
  // sleeps in; without it the thread would only notice `stop` at the next event.
  loop.wake_timer = virEventAddTimeout(
      -1, [](int, void*) {}, nullptr, nullptr);
  if (loop.wake_timer < 0)
    return fail(
        Error(ErrorKind::kSystem, "libvirt: event loop: cannot add a timer: " + last_error()));
  loop.stop = false;
  loop.thread = std::thread([&loop] {
    while (!loop.stop.load()) {
      if (virEventRunDefaultImpl() < 0) {
        log::error("libvirt event loop failed; domain events stop", {{"error", last_error()}});
        break;
      }
    }
  });
  return {};
}

void stop_event_loop() { event_loop().halt(); }

// ---------------------------------------------------------------------------
// Connection

const char* to_string(DomainEvent::Kind k) {
  using K = DomainEvent::Kind;
  switch (k) {
    case K::kDefined:
      return "defined";
    case K::kUndefined:
      return "undefined";
    case K::kStarted:
      return "started";
    case K::kStopped:
      return "stopped";
    case K::kMigratedIn:
      return "migrated-in";
    case K::kMigratedOut:
      return "migrated-out";
    case K::kMetadataChanged:
      return "metadata-changed";
    case K::kDeviceChanged:
      return "device-changed";
    case K::kOther:
      return "other";
    case K::kConnectionLost:
      return "connection-lost";
  }
  return "?";
}

// Shared between the Libvirt object and libvirt's callback registrations (each
// holds a shared_ptr, freed by libvirt's free callback), so a moved or
// destroyed Libvirt never leaves libvirt with a dangling opaque pointer.
// `active` under `mu` makes "after the destructor, cb never runs" hold even if
// libvirt is dispatching at that moment; recursive so that cb may itself
// destroy the Libvirt object.
struct Libvirt::WatchState {
  std::recursive_mutex mu;
  bool active = true;
  EventCallback cb;

  void deliver(const DomainEvent& ev) {
    std::lock_guard lock(mu);
    if (!active || !cb) return;
    cb(ev);
  }
  void deactivate() {
    std::lock_guard lock(mu);
    active = false;
  }

  static WatchState& of(void* opaque) {
    return **static_cast<std::shared_ptr<WatchState>*>(opaque);
  }
  static void free_ref(void* opaque) { delete static_cast<std::shared_ptr<WatchState>*>(opaque); }
  static void deliver_domain(void* opaque, DomainEvent::Kind kind, virDomainPtr dom,
                             std::string detail) {
    of(opaque).deliver({kind, domain_name(dom), lower_uuid(dom), std::move(detail)});
  }

  static void on_lifecycle(virConnectPtr, virDomainPtr dom, int event, int detail, void* opaque) {
    deliver_domain(opaque, lifecycle_kind(event, detail), dom, lifecycle_detail(event, detail));
  }
  static void on_metadata(virConnectPtr, virDomainPtr dom, int type, const char* nsuri,
                          void* opaque) {
    if (type != VIR_DOMAIN_METADATA_ELEMENT || nsuri == nullptr ||
        std::string_view(nsuri) != kMetadataUri)
      return;
    deliver_domain(opaque, DomainEvent::Kind::kMetadataChanged, dom, nsuri);
  }
  static void on_device_added(virConnectPtr, virDomainPtr dom, const char* alias, void* opaque) {
    deliver_domain(opaque, DomainEvent::Kind::kDeviceChanged, dom,
                   std::string("added ") + (alias != nullptr ? alias : "?"));
  }
  static void on_device_removed(virConnectPtr, virDomainPtr dom, const char* alias, void* opaque) {
    deliver_domain(opaque, DomainEvent::Kind::kDeviceChanged, dom,
                   std::string("removed ") + (alias != nullptr ? alias : "?"));
  }
  static void on_close(virConnectPtr, int reason, void* opaque) {
    static_cast<WatchState*>(opaque)->deliver(
        {DomainEvent::Kind::kConnectionLost, "", "", close_reason(reason)});
  }
};

Libvirt::Libvirt(virConnectPtr conn, LibvirtOptions opts) : conn_(conn), opts_(std::move(opts)) {}

Libvirt::Libvirt(Libvirt&& o) noexcept
    : conn_(std::exchange(o.conn_, nullptr)),
      opts_(std::move(o.opts_)),
      callback_ids_(std::move(o.callback_ids_)),
      close_registered_(std::exchange(o.close_registered_, false)),
      watch_(std::move(o.watch_)) {
  o.callback_ids_.clear();
}

Libvirt& Libvirt::operator=(Libvirt&& o) noexcept {
  if (this != &o) {
    release();
    conn_ = std::exchange(o.conn_, nullptr);
    opts_ = std::move(o.opts_);
    callback_ids_ = std::move(o.callback_ids_);
    o.callback_ids_.clear();
    close_registered_ = std::exchange(o.close_registered_, false);
    watch_ = std::move(o.watch_);
  }
  return *this;
}

Libvirt::~Libvirt() { release(); }

void Libvirt::release() noexcept {
  if (watch_) watch_->deactivate();  // waits for a callback in progress
  if (conn_ != nullptr) {
    for (int id : callback_ids_) virConnectDomainEventDeregisterAny(conn_, id);
    // Fails harmlessly if the remote driver already dropped it after firing.
    if (close_registered_ && virConnectUnregisterCloseCallback(conn_, &WatchState::on_close) < 0)
      virResetLastError();
    virConnectClose(conn_);
  }
  conn_ = nullptr;
  callback_ids_.clear();
  close_registered_ = false;
  watch_.reset();
}

Result<Libvirt> Libvirt::connect(const LibvirtOptions& o) {
  install_error_handler();
  const std::string who = "libvirt " + o.uri;
  // Read-only is all zonewall needs, except the guest-agent query.
  virConnectPtr c =
      o.addr_agent ? virConnectOpen(o.uri.c_str()) : virConnectOpenReadOnly(o.uri.c_str());
  if (c == nullptr)
    return fail(Error(ErrorKind::kSystem, who + ": cannot connect: " + last_error()));
  Libvirt lv(c, o);
  // Detects a dead daemon within ~30 s. Keepalive messages travel through the
  // event loop, so only with one running; local drivers (test://) refuse it,
  // which is fine.
  if (event_loop().running() && virConnectSetKeepAlive(c, 5, 5) < 0) virResetLastError();
  return lv;
}

bool Libvirt::alive() const { return conn_ != nullptr && virConnectIsAlive(conn_) == 1; }

namespace {

// One domain's endpoints; nullopt when it vanished meanwhile (undefined
// between listing and reading); an error (a warning for the caller) naming it.
Result<std::optional<std::vector<Endpoint>>> read_domain(virDomainPtr dom, const LibvirtOptions& o,
                                                         const std::string& who,
                                                         std::vector<std::string>& warnings) {
  const std::string name = domain_name(dom);
  CString xml(virDomainGetXMLDesc(dom, 0));
  if (!xml) {
    if (last_error_code() == VIR_ERR_NO_DOMAIN) return std::nullopt;
    return fail(Error(ErrorKind::kSystem,
                      who + ": domain '" + name + "': cannot read its XML: " + last_error()));
  }
  auto eps = parse_domain_xml(xml.get(), who);
  if (!eps) return fail(std::move(eps.error()));
  if (eps->empty()) {
    log::info("libvirt domain has no interfaces; nothing to enforce",
              {{"uri", o.uri}, {"domain", name}});
    return std::optional(std::move(*eps));
  }
  if (virDomainIsActive(dom) == 1) {
    add_queried_addresses(dom, o, who + ": domain '" + name + "'", *eps, warnings);
    for (auto& ep : *eps) ep.config_ifname.clear();
  } else {
    // A stopped domain owns no interface, even when its config names one
    // (<target dev='…'/> kept in the inactive XML; a tap that outlives the
    // VM): its addresses stay zoned, but an interface of that name is not
    // the VM's and gets no endpoint (hooked, it drops). The name stays as
    // config_ifname: where its tap will appear when it starts.
    for (auto& ep : *eps) ep.ifname.clear();
  }
  return std::optional(std::move(*eps));
}

// One snapshot of several domains' reads: libvirt lists domains in no
// stable order, so endpoints are sorted (the same hypervisor state always
// gives the same inventory, and the daemon sees no change).
Snapshot flatten(const std::map<std::string, Snapshot>& domains) {
  Snapshot snap;
  for (const auto& [uuid, d] : domains) {
    snap.inventory.endpoints.insert(snap.inventory.endpoints.end(), d.inventory.endpoints.begin(),
                                    d.inventory.endpoints.end());
    snap.warnings.insert(snap.warnings.end(), d.warnings.begin(), d.warnings.end());
  }
  std::stable_sort(snap.inventory.endpoints.begin(), snap.inventory.endpoints.end(),
                   [](const Endpoint& a, const Endpoint& b) {
                     return std::tie(a.vm_name, a.vm_uuid) < std::tie(b.vm_name, b.vm_uuid);
                   });
  std::sort(snap.warnings.begin(), snap.warnings.end());
  return snap;
}

}  // namespace

Result<std::map<std::string, Snapshot>> Libvirt::domains() {
  const std::string who = "libvirt " + opts_.uri;
  if (conn_ == nullptr) return fail(Error(ErrorKind::kSystem, who + ": not connected"));
  DomainList doms;
  int n = virConnectListAllDomains(
      conn_, doms.out(), VIR_CONNECT_LIST_DOMAINS_ACTIVE | VIR_CONNECT_LIST_DOMAINS_INACTIVE);
  if (n < 0) return fail(Error(ErrorKind::kSystem, who + ": cannot list domains: " + last_error()));
  doms.set_size(n);
  std::map<std::string, Snapshot> out;
  for (int i = 0; i < doms.size(); ++i) {
    Snapshot d;
    auto eps = read_domain(doms[i], opts_, who, d.warnings);
    if (!eps) {
      d.warnings.push_back(eps.error().str() + " (domain skipped)");
    } else if (!*eps) {
      continue;  // undefined meanwhile: just gone
    } else {
      d.inventory.endpoints = std::move(**eps);
    }
    out[lower_uuid(doms[i])] = std::move(d);
  }
  return out;
}

Result<Snapshot> Libvirt::snapshot() {
  auto all = domains();
  if (!all) return fail(std::move(all.error()));
  return flatten(*all);
}

Result<std::optional<Snapshot>> Libvirt::domain(const std::string& name_or_uuid) {
  const std::string who = "libvirt " + opts_.uri;
  if (conn_ == nullptr) return fail(Error(ErrorKind::kSystem, who + ": not connected"));
  Domain dom(jsondoc::is_uuid(name_or_uuid)
                 ? virDomainLookupByUUIDString(conn_, name_or_uuid.c_str())
                 : virDomainLookupByName(conn_, name_or_uuid.c_str()));
  if (!dom) {
    if (last_error_code() == VIR_ERR_NO_DOMAIN) return std::optional<Snapshot>();
    return fail(Error(ErrorKind::kSystem,
                      who + ": domain '" + name_or_uuid + "': lookup failed: " + last_error()));
  }
  Snapshot snap;
  auto eps = read_domain(dom.get(), opts_, who, snap.warnings);
  if (!eps) {
    snap.warnings.push_back(eps.error().str() + " (domain skipped)");
  } else if (!*eps) {
    return std::optional<Snapshot>();
  } else {
    snap.inventory.endpoints = std::move(**eps);
  }
  return std::optional<Snapshot>(std::move(snap));
}

Status Libvirt::watch(EventCallback cb) {
  const std::string who = "libvirt " + opts_.uri;
  if (conn_ == nullptr) return fail(Error(ErrorKind::kSystem, who + ": not connected"));
  if (watch_) return fail(Error::invalid(who + ": watch: already watching this connection"));
  auto state = std::make_shared<WatchState>();
  state->cb = std::move(cb);

  struct Reg {
    int id;
    virConnectDomainEventGenericCallback fn;
  };
  const Reg regs[] = {
      {VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(&WatchState::on_lifecycle)},
      {VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, VIR_DOMAIN_EVENT_CALLBACK(&WatchState::on_metadata)},
      {VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, VIR_DOMAIN_EVENT_CALLBACK(&WatchState::on_device_added)},
      {VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
       VIR_DOMAIN_EVENT_CALLBACK(&WatchState::on_device_removed)},
  };
  std::vector<int> ids;
  auto undo = [&] {
    state->deactivate();
    for (int id : ids) virConnectDomainEventDeregisterAny(conn_, id);
  };
  for (const Reg& r : regs) {
    auto* ref = new std::shared_ptr<WatchState>(state);
    int id =
        virConnectDomainEventRegisterAny(conn_, nullptr, r.id, r.fn, ref, &WatchState::free_ref);
    if (id < 0) {
      std::string why = last_error();
      delete ref;  // libvirt does not call the free callback on failure
      undo();
      return fail(
          Error(ErrorKind::kSystem, who + ": watch: cannot register for domain events (" +
                                        std::to_string(r.id) + "): " + why +
                                        " (was start_event_loop() called before connect()?)"));
    }
    ids.push_back(id);
  }
  // No free callback here: only the remote driver stores close callbacks (and
  // calls them under its lock, so none runs after unregistering); `watch_`
  // keeps the state alive until release() has unregistered.
  if (virConnectRegisterCloseCallback(conn_, &WatchState::on_close, state.get(), nullptr) < 0) {
    std::string why = last_error();
    undo();
    return fail(
        Error(ErrorKind::kSystem, who + ": watch: cannot register a close callback: " + why));
  }
  callback_ids_ = std::move(ids);
  close_registered_ = true;
  watch_ = std::move(state);
  return {};
}

void DomainCache::mark(const std::string& uuid) {
  if (uuid.empty())
    all_ = true;
  else
    stale_.insert(jsondoc::lower(uuid));
}

void DomainCache::mark_vm(const std::string& name) {
  for (const auto& [uuid, d] : domains_)
    for (const auto& e : d.inventory.endpoints)
      if (e.vm_name == name) {
        stale_.insert(uuid);
        return;
      }
  all_ = true;  // not a domain it knows: only a full read finds it
}

Result<DomainCache::Read> DomainCache::update(Libvirt& lv) {
  if (all_) {
    auto all = lv.domains();
    if (!all) return fail(std::move(all.error()));
    Read r{.full = true, .domains = all->size()};
    domains_ = std::move(*all);
    all_ = false;
    stale_.clear();
    return r;
  }
  // Every read first, then the changes: a failed read changes nothing and
  // the marks stay for the next update.
  std::map<std::string, std::optional<Snapshot>> fresh;
  for (const auto& uuid : stale_) {
    auto d = lv.domain(uuid);
    if (!d) return fail(std::move(d.error()));
    fresh[uuid] = std::move(*d);
  }
  Read r{.full = false, .domains = fresh.size()};
  for (auto& [uuid, d] : fresh) {
    if (d)
      domains_[uuid] = std::move(*d);
    else
      domains_.erase(uuid);  // undefined (or a transient domain stopped)
  }
  stale_.clear();
  return r;
}

Snapshot DomainCache::snapshot() const { return flatten(domains_); }

}  // namespace zw::inventory
