// libvirt inventory: domain XML parsing (fixtures), snapshots of the libvirt
// test driver (tests/data/libvirt/node.xml), domain events on test:///default,
// and the virsh metadata command docs/libvirt.md gives. No daemon, no root.
#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>

#include "inventory/libvirt.h"
#include "util/json_doc.h"

using namespace zw;
using namespace zw::inventory;
using Kind = DomainEvent::Kind;

namespace {

const std::string kData = ZW_SOURCE_DIR "/tests/data/libvirt/";
const std::string kNodeUri = "test://" + kData + "node.xml";
const std::string kSrc = "libvirt test:///x";

std::string read(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string error_of(const Result<std::vector<Endpoint>>& r) {
  return r ? std::string("(parsed fine)") : r.error().message();
}

std::vector<std::string> addrs_of(const Endpoint& e) {
  std::vector<std::string> out;
  for (const auto& a : e.addrs) out.push_back(a.str());
  return out;
}

const Endpoint* find_ep(const Inventory& inv, const std::string& vm, const std::string& ifname) {
  for (const auto& e : inv.endpoints)
    if (e.vm_name == vm && e.ifname == ifname) return &e;
  return nullptr;
}

// A domain XML with the given metadata and one interface.
std::string domain_with(const std::string& metadata, const std::string& iface =
                                                         "<interface type='ethernet'>"
                                                         "<mac address='52:54:00:00:00:01'/>"
                                                         "<target dev='zwt-t1'/></interface>") {
  return "<domain type='kvm'><name>web-1</name><metadata>" + metadata + "</metadata><devices>" +
         iface + "</devices></domain>";
}

const std::string kNs = "xmlns:zonewall=\"http://zonewall.org/xmlns/libvirt/1.0\"";

void expect_error(const std::string& xml, const std::string& want) {
  auto r = parse_domain_xml(xml, kSrc);
  ASSERT_FALSE(r.has_value()) << "expected: " << want;
  EXPECT_EQ(r.error().kind(), ErrorKind::kInvalid);
  EXPECT_NE(r.error().message().find(want), std::string::npos)
      << "expected: " << want << "\ngot: " << r.error().message();
}

struct ConnClose {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
using RawConn = std::unique_ptr<virConnect, ConnClose>;
struct DomFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using RawDom = std::unique_ptr<virDomain, DomFree>;

// Events for one domain name (test:///default is shared by the whole process),
// handed from libvirt's event thread to the test thread.
class Recorder {
 public:
  explicit Recorder(std::string domain) : domain_(std::move(domain)) {}
  void operator()(const DomainEvent& ev) {
    if (ev.name != domain_ && ev.kind != Kind::kConnectionLost) return;
    std::lock_guard lock(mu_);
    events_.push_back(ev);
    cv_.notify_all();
  }
  // Waits until `n` events arrived (or 10 s passed); returns what arrived.
  std::vector<DomainEvent> wait_for(std::size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(10), [&] { return events_.size() >= n; });
    return events_;
  }
  std::size_t count() {
    std::lock_guard lock(mu_);
    return events_.size();
  }

 private:
  std::string domain_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<DomainEvent> events_;
};

std::string kinds(const std::vector<DomainEvent>& evs) {
  std::string out;
  for (const auto& e : evs) out += std::string(out.empty() ? "" : ", ") + to_string(e.kind);
  return out;
}

class EventLoopGuard {
 public:
  EventLoopGuard() { started = start_event_loop().has_value(); }
  ~EventLoopGuard() { stop_event_loop(); }
  bool started = false;
};

// Runs a shell command, returns its stdout and exit status.
std::pair<std::string, int> run(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return {"", -1};
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int rc = pclose(p);
  return {out, rc};
}

}  // namespace

// ---------------------------------------------------------------------------
// parse_domain_xml

TEST(LibvirtXml, RunningDomainWithMetadataAndIps) {
  auto r = parse_domain_xml(read(kData + "domain-good.xml"), "libvirt qemu:///system");
  ASSERT_TRUE(r.has_value()) << error_of(r);
  ASSERT_EQ(r->size(), 2u);
  const Endpoint& a = (*r)[0];
  EXPECT_EQ(a.vm_name, "web-1");
  EXPECT_EQ(a.vm_uuid, "6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90");  // lower-cased
  EXPECT_EQ(a.zone_tag, std::optional<std::string>("web"));
  EXPECT_EQ(a.ifname, "vnet3");
  ASSERT_TRUE(a.mac.has_value());
  EXPECT_EQ(net::mac_str(*a.mac), "52:54:00:ab:01:01");
  // The repeated <ip> is listed once; IPv6 kept.
  EXPECT_EQ(addrs_of(a), (std::vector<std::string>{"10.70.0.11", "fd70::11"}));
  EXPECT_FALSE(a.attach.has_value());
  EXPECT_EQ(a.source, "libvirt qemu:///system: domain 'web-1' interface 0 (vnet3)");

  const Endpoint& b = (*r)[1];
  EXPECT_EQ(b.vm_name, "web-1");
  EXPECT_EQ(b.zone_tag, std::optional<std::string>("web"));
  EXPECT_EQ(b.ifname, "vnet4");
  EXPECT_EQ(net::mac_str(*b.mac), "52:54:00:ab:01:02");
  EXPECT_TRUE(b.addrs.empty());
  EXPECT_EQ(b.source, "libvirt qemu:///system: domain 'web-1' interface 1 (vnet4)");
}

TEST(LibvirtXml, NoInterfacesIsNoEndpointsNotAnError) {
  auto r = parse_domain_xml(read(kData + "domain-no-interfaces.xml"), kSrc);
  ASSERT_TRUE(r.has_value()) << error_of(r);
  EXPECT_TRUE(r->empty());
}

TEST(LibvirtXml, InactiveDomainWithoutTargetStillYieldsItsEndpoint) {
  auto r = parse_domain_xml(read(kData + "domain-inactive.xml"), kSrc);
  ASSERT_TRUE(r.has_value()) << error_of(r);
  ASSERT_EQ(r->size(), 1u);
  const Endpoint& e = (*r)[0];
  EXPECT_EQ(e.vm_name, "db-1");
  EXPECT_EQ(e.ifname, "");
  EXPECT_FALSE(e.zone_tag.has_value());
  EXPECT_EQ(net::mac_str(*e.mac), "52:54:00:ab:02:01");
  EXPECT_EQ(addrs_of(e), (std::vector<std::string>{"10.70.0.21"}));
  EXPECT_EQ(e.source, kSrc + ": domain 'db-1' interface 0");
}

// Which interfaces get a tap libvirt creates, with the host-side MAC it
// derives from the guest's (Endpoint::libvirt_tap), and the name it will
// have (config_ifname: "" when libvirt names it itself).
TEST(LibvirtXml, ConfigTapNameOnlyForTapsLibvirtCreates) {
  auto one = [](const std::string& iface) {
    auto r = parse_domain_xml(domain_with("", iface), kSrc);
    EXPECT_TRUE(r.has_value()) << error_of(r);
    EXPECT_EQ(r ? r->size() : 0u, 1u);
    if (!r || r->size() != 1) return std::string("?");
    const Endpoint& e = (*r)[0];
    return e.libvirt_tap ? "tap:" + e.config_ifname : std::string("-");
  };
  const std::string mac = "<mac address='52:54:00:00:00:01'/>";
  for (const char* type : {"ethernet", "bridge", "network"})
    EXPECT_EQ(one(std::string("<interface type='") + type + "'>" + mac +
                  "<target dev='zwt-t1'/></interface>"),
              "tap:zwt-t1")
        << type;
  EXPECT_EQ(
      one("<interface type='ethernet'>" + mac + "<target dev='zwt-t1' managed='no'/></interface>"),
      "-")
      << "a tap someone else made: libvirt neither creates it nor sets its MAC";
  EXPECT_EQ(one("<interface type='direct'>" + mac + "<target dev='zwt-t1'/></interface>"), "-")
      << "macvtap: the guest's own MAC";
  EXPECT_EQ(one("<interface type='vhostuser'>" + mac + "<target dev='zwt-t1'/></interface>"), "-");
  EXPECT_EQ(one("<interface type='bridge'>" + mac + "</interface>"), "tap:")
      << "no name: libvirt names it (vnetN)";
  EXPECT_EQ(one("<interface type='bridge'><target dev='zwt-t1'/></interface>"), "-")
      << "no MAC to derive the tap's from";

  EXPECT_EQ(net::mac_str(libvirt_tap_mac(*net::parse_mac("52:54:00:00:00:01"))),
            "fe:54:00:00:00:01");
  EXPECT_EQ(net::mac_str(libvirt_tap_mac(*net::parse_mac("fe:54:00:00:00:01"))),
            "fa:54:00:00:00:01")
      << "libvirt never gives the tap the guest's own MAC";
}

TEST(LibvirtXml, MetadataMatchedByNamespaceUriNotPrefix) {
  auto r = parse_domain_xml(read(kData + "domain-handwritten-metadata.xml"), kSrc);
  ASSERT_TRUE(r.has_value()) << error_of(r);
  ASSERT_EQ(r->size(), 1u);
  // Prefix "zw", unqualified <zone> with whitespace around the name; the
  // look-alike element in another namespace is ignored.
  EXPECT_EQ((*r)[0].zone_tag, std::optional<std::string>("app"));
  EXPECT_EQ((*r)[0].vm_uuid, "");  // no <uuid>: empty, not an error
}

TEST(LibvirtXml, ZonewallPrefixInAnotherNamespaceIsNotOurs) {
  auto r = parse_domain_xml(domain_with("<zonewall:vm xmlns:zonewall=\"http://example.com/other\">"
                                        "<zonewall:zone>web</zonewall:zone></zonewall:vm>"),
                            kSrc);
  ASSERT_TRUE(r.has_value()) << error_of(r);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_FALSE((*r)[0].zone_tag.has_value());
}

TEST(LibvirtXml, MalformedMetadataIsAnErrorNamingTheDomain) {
  const std::string pre = kSrc + ": domain 'web-1': metadata: ";
  expect_error(domain_with("<zonewall:vm " + kNs + "/>"),
               pre + "empty zonewall metadata: <vm> has neither <zone> nor <interface>");
  expect_error(
      domain_with("<zonewall:vm " + kNs + "><zonewall:zone></zonewall:zone></zonewall:vm>"),
      pre + "<zone> is empty");
  expect_error(
      domain_with("<zonewall:vm " + kNs + "><zonewall:zone>  </zonewall:zone></zonewall:vm>"),
      pre + "<zone> is empty");
  expect_error(
      domain_with("<zonewall:vm " + kNs + "><zonewall:zone>Web</zonewall:zone></zonewall:vm>"),
      pre + "zone 'Web' is not a zone name");
  expect_error(
      domain_with("<zonewall:vm " + kNs + "><zonewall:zone>-web</zonewall:zone></zonewall:vm>"),
      pre + "zone '-web' is not a zone name");
  expect_error(domain_with("<zonewall:vm " + kNs + "><zonewall:zone>" + std::string(64, 'a') +
                           "</zonewall:zone></zonewall:vm>"),
               "is not a zone name");
  expect_error(domain_with("<zonewall:vm " + kNs +
                           "><zonewall:zone>web</zonewall:zone>"
                           "<zonewall:zone>db</zonewall:zone></zonewall:vm>"),
               pre + "2 <zone> elements in <vm>; expected one");
  expect_error(domain_with("<zonewall:vm " + kNs +
                           "><zonewall:zone>web</zonewall:zone>"
                           "<zonewall:tier>1</zonewall:tier></zonewall:vm>"),
               pre + "unknown element <tier> in <vm> (expected <zone> or <interface>)");
  expect_error(domain_with("<zonewall:vm " + kNs +
                           "><zonewall:zone><b>web</b></zonewall:zone>"
                           "</zonewall:vm>"),
               pre + "<zone> must hold only the zone name");
  expect_error(domain_with("<zonewall:vm " + kNs +
                           "><zonewall:zone>web</zonewall:zone></zonewall:vm>"
                           "<zw2:vm xmlns:zw2=\"http://zonewall.org/xmlns/libvirt/1.0\">"
                           "<zw2:zone>db</zw2:zone></zw2:vm>"),
               pre + "2 <vm> elements");
  expect_error(domain_with("<zonewall:zone " + kNs + ">web</zonewall:zone>"),
               pre + "unknown element <zone> in " + std::string(kMetadataUri));
  // Largest valid name: 63 characters.
  auto ok = parse_domain_xml(domain_with("<zonewall:vm " + kNs + "><zonewall:zone>" +
                                         std::string(63, 'a') + "</zonewall:zone></zonewall:vm>"),
                             kSrc);
  ASSERT_TRUE(ok.has_value()) << error_of(ok);
  EXPECT_EQ((*ok)[0].zone_tag, std::optional<std::string>(std::string(63, 'a')));
}

// ---------------------------------------------------------------------------
// Addresses from the metadata: <zonewall:interface mac="…"><zonewall:ip>…

TEST(LibvirtXml, MetadataAddressesJoinTheInterfaceWithThatMac) {
  auto r = parse_domain_xml(read(kData + "domain-metadata-addresses.xml"), kSrc);
  ASSERT_TRUE(r.has_value()) << error_of(r);
  ASSERT_EQ(r->size(), 2u);
  const Endpoint& a = (*r)[0];
  EXPECT_EQ(a.zone_tag, std::optional<std::string>("web"));
  EXPECT_EQ(a.ifname, "vnet8");
  // Metadata MAC 52:54:00:80:00:1A, interface MAC 52:54:00:80:00:1a: the same.
  EXPECT_EQ(addrs_of(a), (std::vector<std::string>{"10.80.0.11", "fd80::11"}));
  const Endpoint& b = (*r)[1];
  EXPECT_EQ(b.ifname, "vnet9");
  // The XML <ip> first; the metadata's after it, trimmed, its repeat dropped.
  EXPECT_EQ(addrs_of(b), (std::vector<std::string>{"10.81.0.2", "10.81.0.12", "fd81::12"}));
  ASSERT_EQ(b.allowed.size(), 1u);
  EXPECT_EQ(b.allowed[0].str(), "10.81.0.100");
  EXPECT_TRUE(a.allowed.empty());
}

TEST(LibvirtXml, MetadataAddressesHandwrittenUnprefixedWithoutZone) {
  auto r = parse_domain_xml(read(kData + "domain-metadata-addresses-unprefixed.xml"), kSrc);
  ASSERT_TRUE(r.has_value()) << error_of(r);
  ASSERT_EQ(r->size(), 3u);
  for (const Endpoint& e : *r) EXPECT_FALSE(e.zone_tag.has_value()) << e.source;
  EXPECT_EQ(addrs_of((*r)[0]), (std::vector<std::string>{"10.80.1.21", "fd80:1::21"}));
  EXPECT_EQ(addrs_of((*r)[1]), (std::vector<std::string>{"10.80.2.21"}));
  EXPECT_TRUE((*r)[2].addrs.empty());  // declared with no <ip>: no addresses, not an error
}

TEST(LibvirtXml, MetadataAddressErrorsNameDomainAndMac) {
  const std::string pre = kSrc + ": domain 'web-9': metadata: ";
  auto fixture = [](const std::string& name) {
    return read(kData + "domain-metadata-" + name + ".xml");
  };
  expect_error(fixture("unknown-mac"),
               pre +
                   "interface '52:54:00:80:00:99': the domain has no <interface> with this MAC "
                   "(it has 52:54:00:80:00:21)");
  expect_error(fixture("bad-mac"), pre + "interface mac: '52:54:00:80:00' is not a MAC address");
  expect_error(fixture("duplicate-interface"),
               pre +
                   "interface '52:54:00:80:00:2B' is listed twice in <vm> (also as "
                   "'52:54:00:80:00:2b')");
  expect_error(fixture("interface-without-mac"), pre + "<interface> has no mac attribute");
  expect_error(fixture("empty-vm"), pre + "empty zonewall metadata");
  expect_error(fixture("unknown-element"),
               pre + "unknown element <addresses> in <vm> (expected <zone> or <interface>)");
  // Every bad <ip> at once, each naming the MAC and the value.
  auto r = parse_domain_xml(fixture("bad-ip"), kSrc);
  ASSERT_FALSE(r.has_value());
  const std::string msg = r.error().message();
  EXPECT_NE(msg.find(pre + "interface '52:54:00:80:00:21': ip '10.80.0.21/24' is not an IPv4 or "
                           "IPv6 address (one address, no prefix length)"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find(pre + "interface '52:54:00:80:00:21': ip 'fd80::zz' is not an IPv4 or IPv6 "
                           "address"),
            std::string::npos)
      << msg;

  // Inline: the other MAC rules, odd <ip> content, odd children.
  const std::string pre1 = kSrc + ": domain 'web-1': metadata: ";  // domain_with's NIC: ...:00:01
  auto vm = [](const std::string& body) {
    return domain_with("<zonewall:vm " + kNs + ">" + body + "</zonewall:vm>");
  };
  expect_error(vm("<zonewall:interface mac='01:00:5e:00:00:01'/>"),
               pre1 + "interface mac: '01:00:5e:00:00:01' is a multicast MAC, not a VM's");
  expect_error(vm("<zonewall:interface mac='00:00:00:00:00:00'/>"),
               pre1 + "interface mac: 00:00:00:00:00:00 is not a VM's address");
  expect_error(vm("<zonewall:interface mac='52:54:00:00:00:01'><zonewall:ip> </zonewall:ip>"
                  "</zonewall:interface>"),
               pre1 + "interface '52:54:00:00:00:01': ip '' is not an IPv4 or IPv6 address");
  expect_error(vm("<zonewall:interface mac='52:54:00:00:00:01'><zonewall:ip>10.0.0.1 10.0.0.2"
                  "</zonewall:ip></zonewall:interface>"),
               pre1 + "interface '52:54:00:00:00:01': ip '10.0.0.1 10.0.0.2' is not an IPv4");
  expect_error(vm("<zonewall:interface mac='52:54:00:00:00:01'><zonewall:ip><b>10.0.0.1</b>"
                  "</zonewall:ip></zonewall:interface>"),
               pre1 + "interface '52:54:00:00:00:01': <ip> must hold only one address");
  expect_error(vm("<zonewall:interface mac='52:54:00:00:00:01'><zonewall:addr>10.0.0.1"
                  "</zonewall:addr></zonewall:interface>"),
               pre1 +
                   "interface '52:54:00:00:00:01': unknown element <addr> in <interface> "
                   "(expected <ip> or <allowed-address>)");
  expect_error(vm("<zonewall:interface mac='52:54:00:00:00:01'><zonewall:allowed-address>"
                  "10.0.0.0/24</zonewall:allowed-address></zonewall:interface>"),
               pre1 +
                   "interface '52:54:00:00:00:01': allowed-address '10.0.0.0/24' is not an IPv4 "
                   "or IPv6 address (one address, no prefix length)");
  expect_error(vm("<zonewall:interface mac='52:54:00:00:00:01'/>"
                  "<zonewall:zone>web</zonewall:zone><zonewall:zone>db</zonewall:zone>"),
               pre1 + "2 <zone> elements in <vm>; expected one");
  // A domain without interfaces has no MAC to match.
  expect_error(
      "<domain><name>web-1</name><metadata><zonewall:vm " + kNs +
          "><zonewall:interface mac='52:54:00:00:00:02'/></zonewall:vm></metadata></domain>",
      pre1 +
          "interface '52:54:00:00:00:02': the domain has no <interface> with this MAC "
          "(it has none)");
  // The interface's own error is the one reported, not a spurious "no such MAC".
  auto own = parse_domain_xml(
      domain_with("<zonewall:vm " + kNs +
                      "><zonewall:interface mac='52:54:00:00:00:01'>"
                      "<zonewall:ip>10.0.0.1</zonewall:ip></zonewall:interface></zonewall:vm>",
                  "<interface type='ethernet'><mac address='52:54:00:00:00:01'/>"
                  "<target dev='zwt-t1'/><ip address='nope'/></interface>"),
      kSrc);
  ASSERT_FALSE(own.has_value());
  EXPECT_NE(own.error().message().find("interface 0 (zwt-t1): ip 0: 'nope'"), std::string::npos)
      << own.error().message();
  EXPECT_EQ(own.error().message().find("metadata"), std::string::npos) << own.error().message();
  // Attributes other than mac are not ours to judge; an in-namespace <ip>
  // inside an unqualified <interface> and vice versa are both fine.
  auto mixed = parse_domain_xml(vm("<interface mac='52:54:00:00:00:01' "
                                   "note='x'><zonewall:ip>10.0.0.1</zonewall:ip><ip>10.0.0.2</ip>"
                                   "</interface>"),
                                kSrc);
  ASSERT_TRUE(mixed.has_value()) << error_of(mixed);
  EXPECT_EQ(addrs_of((*mixed)[0]), (std::vector<std::string>{"10.0.0.1", "10.0.0.2"}));
  EXPECT_FALSE((*mixed)[0].zone_tag.has_value());
}

TEST(LibvirtXml, InvalidMacOrIpNamesDomainAndInterface) {
  const std::string where = kSrc + ": domain 'web-1' interface 0 (zwt-t1): ";
  expect_error(domain_with("",
                           "<interface type='ethernet'><mac address='52:54:00:zz:00:01'/>"
                           "<target dev='zwt-t1'/></interface>"),
               where + "mac: '52:54:00:zz:00:01' is not a MAC address");
  expect_error(domain_with("",
                           "<interface type='ethernet'><mac address='01:00:5e:00:00:01'/>"
                           "<target dev='zwt-t1'/></interface>"),
               where + "mac: '01:00:5e:00:00:01' is a multicast MAC");
  expect_error(domain_with("",
                           "<interface type='ethernet'><target dev='zwt-t1'/>"
                           "<ip address='10.0.0.300' prefix='24'/></interface>"),
               where + "ip 0: '10.0.0.300' is not an IPv4 or IPv6 address");
  expect_error(domain_with("",
                           "<interface type='ethernet'><target dev='zwt-t1'/>"
                           "<ip address='10.0.0.1'/><ip prefix='24'/></interface>"),
               where + "ip 1: <ip> has no address attribute");
  // Every error at once, each naming its interface.
  auto r = parse_domain_xml(
      domain_with("",
                  "<interface type='ethernet'><mac address='nope'/></interface>"
                  "<interface type='ethernet'><target dev='zwt-t2'/><ip address='x'/></interface>"),
      kSrc);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find(kSrc + ": domain 'web-1' interface 0: mac: 'nope'"),
            std::string::npos)
      << r.error().message();
  EXPECT_NE(r.error().message().find(kSrc + ": domain 'web-1' interface 1 (zwt-t2): ip 0: 'x'"),
            std::string::npos)
      << r.error().message();
}

TEST(LibvirtXml, NotADomain) {
  expect_error("<domain><name>x</name>", kSrc + ": domain XML: line 1: ");
  expect_error("<network><name>x</name></network>",
               kSrc + ": domain XML: the root element is not <domain>");
  expect_error("<domain type='kvm'><devices/></domain>", kSrc + ": domain XML: no <name>");
  expect_error("<domain><name>web-1</name><uuid>not-a-uuid</uuid></domain>",
               kSrc + ": domain 'web-1': uuid: 'not-a-uuid' is not a UUID");
  // External entities are neither fetched nor expanded.
  auto r = parse_domain_xml(
      "<?xml version='1.0'?><!DOCTYPE d [<!ENTITY e SYSTEM 'file:///etc/hostname'>]>"
      "<domain><name>&e;</name></domain>",
      kSrc);
  if (r) {
    EXPECT_TRUE(r->empty());
  } else {
    EXPECT_EQ(r.error().message().find(read("/etc/hostname")), std::string::npos);
  }
}

// ---------------------------------------------------------------------------
// Connection and snapshot (test driver, custom node file)

TEST(LibvirtConnect, UnreachableUriFailsFastNamingIt) {
  const std::string uri = "qemu+unix:///system?socket=/nonexistent/zonewall-test.sock";
  auto t0 = std::chrono::steady_clock::now();
  auto c = Libvirt::connect({.uri = uri});
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().kind(), ErrorKind::kSystem);
  const std::string msg = c.error().str();
  EXPECT_EQ(msg.rfind("libvirt " + uri + ": cannot connect: ", 0), 0u) << msg;
  EXPECT_NE(msg.find("/nonexistent/zonewall-test.sock"), std::string::npos) << msg;
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(LibvirtSnapshot, EveryDomainActiveAndInactive) {
  auto c = Libvirt::connect({.uri = kNodeUri, .addr_lease = false});
  ASSERT_TRUE(c.has_value()) << c.error().str();
  EXPECT_TRUE(c->alive());
  EXPECT_EQ(c->uri(), kNodeUri);
  auto s = c->snapshot();
  ASSERT_TRUE(s.has_value()) << s.error().str();
  const Inventory& inv = s->inventory;

  std::set<std::string> vms;
  for (const auto& e : inv.endpoints) vms.insert(e.vm_name);
  // build-1 has no interface; bad-1 is skipped (see the warning).
  EXPECT_EQ(vms, (std::set<std::string>{"web-1", "db-1", "old-1"}));
  EXPECT_EQ(inv.endpoints.size(), 4u);

  const Endpoint* w = find_ep(inv, "web-1", "zwt-web1");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->vm_uuid, "6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90");
  EXPECT_EQ(w->zone_tag, std::optional<std::string>("web"));
  EXPECT_EQ(net::mac_str(*w->mac), "52:54:00:00:01:01");
  EXPECT_EQ(addrs_of(*w), (std::vector<std::string>{"10.70.0.11", "fd70::11"}));
  EXPECT_EQ(w->source, "libvirt " + kNodeUri + ": domain 'web-1' interface 0 (zwt-web1)");

  const Endpoint* wb = find_ep(inv, "web-1", "zwt-web1b");
  ASSERT_NE(wb, nullptr);
  EXPECT_EQ(wb->zone_tag, std::optional<std::string>("web"));
  EXPECT_TRUE(wb->addrs.empty());  // lease source off

  const Endpoint* d = find_ep(inv, "db-1", "zwt-db1");
  ASSERT_NE(d, nullptr);
  EXPECT_FALSE(d->zone_tag.has_value());  // zoned by a glob, if at all
  EXPECT_EQ(addrs_of(*d), (std::vector<std::string>{"10.70.0.21"}));

  // Inactive domains count: their addresses are zoned. But a stopped VM owns
  // no interface, whatever <target dev> its config keeps: no ifname.
  EXPECT_EQ(find_ep(inv, "old-1", "zwt-old1"), nullptr);
  const Endpoint* o = find_ep(inv, "old-1", "");
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->vm_uuid, "a3f1c9e2-5b7d-4e60-8f12-9d8c7b6a5e40");
  EXPECT_EQ(addrs_of(*o), (std::vector<std::string>{"10.70.0.31"}));
  // ... it keeps the name as where its tap will appear when it starts
  // (prospective admission), and running domains do not have one.
  EXPECT_EQ(o->config_ifname, "zwt-old1");
  EXPECT_TRUE(o->libvirt_tap);
  EXPECT_EQ(w->config_ifname, "");
  EXPECT_TRUE(w->libvirt_tap) << "its tap is libvirt's too: a recreated one needs its MAC";
  EXPECT_EQ(d->config_ifname, "");

  ASSERT_EQ(s->warnings.size(), 1u);
  const std::string& warn = s->warnings[0];
  EXPECT_NE(warn.find("libvirt " + kNodeUri +
                      ": domain 'bad-1': metadata: zone 'Web Tier' is not a zone name"),
            std::string::npos)
      << warn;
  EXPECT_NE(warn.find("(domain skipped)"), std::string::npos) << warn;
}

TEST(LibvirtSnapshot, LeaseAddressesJoinTheInterfaceWithThatMac) {
  // The test driver makes leases up: an address from the network's DHCP range
  // for NICs on a libvirt network (zwt-net: 192.168.70.100-199), some
  // 192.168.0.x for others. Only running domains are asked.
  auto c = Libvirt::connect({.uri = kNodeUri, .addr_lease = true});
  ASSERT_TRUE(c.has_value()) << c.error().str();
  auto s = c->snapshot();
  ASSERT_TRUE(s.has_value()) << s.error().str();
  auto in_zwt_net = [](const net::Addr& a) {
    return a.is_v4() && a.bytes[12] == 192 && a.bytes[13] == 168 && a.bytes[14] == 70 &&
           a.bytes[15] >= 100 && a.bytes[15] <= 199;
  };
  const Endpoint* wb = find_ep(s->inventory, "web-1", "zwt-web1b");
  ASSERT_NE(wb, nullptr);
  ASSERT_EQ(wb->addrs.size(), 1u) << wb->addrs.size();
  EXPECT_TRUE(in_zwt_net(wb->addrs[0])) << wb->addrs[0].str();

  const Endpoint* d = find_ep(s->inventory, "db-1", "zwt-db1");
  ASSERT_NE(d, nullptr);
  ASSERT_EQ(d->addrs.size(), 2u);
  EXPECT_EQ(d->addrs[0].str(), "10.70.0.21");  // from the XML, first
  EXPECT_TRUE(in_zwt_net(d->addrs[1])) << d->addrs[1].str();
  EXPECT_NE(d->addrs[1], wb->addrs[0]);  // matched by MAC, not spread around

  // type='ethernet': no libvirt network, so no lease, whatever the test
  // driver invents: exactly the XML's addresses.
  const Endpoint* w = find_ep(s->inventory, "web-1", "zwt-web1");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(addrs_of(*w), (std::vector<std::string>{"10.70.0.11", "fd70::11"}));

  const Endpoint* o = find_ep(s->inventory, "old-1", "");  // not running: no interface
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(addrs_of(*o), (std::vector<std::string>{"10.70.0.31"}));  // not running: not asked
  EXPECT_EQ(s->warnings.size(), 1u);                                  // still just bad-1
}

TEST(LibvirtSnapshot, OneDomainByNameOrUuid) {
  auto c = Libvirt::connect({.uri = kNodeUri, .addr_lease = false});
  ASSERT_TRUE(c.has_value()) << c.error().str();

  auto web = c->domain("web-1");
  ASSERT_TRUE(web.has_value()) << web.error().str();
  ASSERT_TRUE(web->has_value());
  EXPECT_EQ((*web)->inventory.endpoints.size(), 2u);
  EXPECT_TRUE((*web)->warnings.empty());

  auto old = c->domain("A3F1C9E2-5B7D-4E60-8F12-9D8C7B6A5E40");
  ASSERT_TRUE(old.has_value()) << old.error().str();
  ASSERT_TRUE(old->has_value());
  ASSERT_EQ((*old)->inventory.endpoints.size(), 1u);
  EXPECT_EQ((*old)->inventory.endpoints[0].vm_name, "old-1");

  auto bad = c->domain("bad-1");
  ASSERT_TRUE(bad.has_value()) << bad.error().str();
  ASSERT_TRUE(bad->has_value());
  EXPECT_TRUE((*bad)->inventory.endpoints.empty());
  EXPECT_EQ((*bad)->warnings.size(), 1u);

  auto gone = c->domain("no-such-vm");
  ASSERT_TRUE(gone.has_value()) << gone.error().str();
  EXPECT_FALSE(gone->has_value());
}

TEST(LibvirtSnapshot, MovedConnectionKeepsWorking) {
  auto c = Libvirt::connect({.uri = kNodeUri, .addr_lease = false});
  ASSERT_TRUE(c.has_value()) << c.error().str();
  Libvirt a = std::move(*c);
  Libvirt b = std::move(a);
  EXPECT_FALSE(a.alive());  // NOLINT(bugprone-use-after-move): moved-from is closed
  EXPECT_FALSE(a.snapshot().has_value());
  auto s = b.snapshot();
  ASSERT_TRUE(s.has_value()) << s.error().str();
  EXPECT_EQ(s->inventory.endpoints.size(), 4u);
}

TEST(LibvirtSnapshot, MetadataAddressesSetOnARunningDomain) {
  // What an admin does for a QEMU domain (which refuses <ip> in <interface>):
  // virDomainSetMetadata, here on test:///default (shared by the process, so
  // a unique name, and undefined however the test ends).
  const std::string name = "zwt-meta-" + std::to_string(getpid());
  RawConn admin(virConnectOpen("test:///default"));
  ASSERT_TRUE(admin);
  const std::string xml = "<domain type='test'><name>" + name +
                          "</name><memory>65536</memory><os><type>hvm</type></os><devices>"
                          "<interface type='ethernet'><mac address='52:54:00:80:00:11'/><target "
                          "dev='zwt-m1'/></interface>"
                          "<interface type='ethernet'><mac address='52:54:00:80:00:12'/><target "
                          "dev='zwt-m2'/></interface>"
                          "</devices></domain>";
  RawDom dom(virDomainDefineXML(admin.get(), xml.c_str()));
  ASSERT_TRUE(dom) << virGetLastErrorMessage();
  struct Cleanup {
    virDomainPtr d;
    ~Cleanup() {
      if (virDomainIsActive(d) == 1) virDomainDestroy(d);
      virDomainUndefine(d);
    }
  } cleanup{dom.get()};
  ASSERT_EQ(virDomainCreate(dom.get()), 0) << virGetLastErrorMessage();

  // Lease source on, as by default: the test driver's invented leases stay
  // off these type='ethernet' NICs, so the addresses are exactly the metadata's.
  auto c = Libvirt::connect({.uri = "test:///default", .addr_lease = true});
  ASSERT_TRUE(c.has_value()) << c.error().str();
  auto before = c->snapshot();
  ASSERT_TRUE(before.has_value()) << before.error().str();
  const Endpoint* m1 = find_ep(before->inventory, name, "zwt-m1");
  ASSERT_NE(m1, nullptr);
  EXPECT_TRUE(m1->addrs.empty());

  ASSERT_EQ(virDomainSetMetadata(dom.get(), VIR_DOMAIN_METADATA_ELEMENT,
                                 "<vm><zone>web</zone>"
                                 "<interface mac='52:54:00:80:00:12'>"
                                 "<ip>10.80.0.12</ip><ip>fd80::12</ip></interface></vm>",
                                 kMetadataKey, kMetadataUri, VIR_DOMAIN_AFFECT_LIVE),
            0)
      << virGetLastErrorMessage();
  auto s = c->snapshot();
  ASSERT_TRUE(s.has_value()) << s.error().str();
  for (const auto& w : s->warnings) EXPECT_EQ(w.find(name), std::string::npos) << w;
  m1 = find_ep(s->inventory, name, "zwt-m1");
  const Endpoint* m2 = find_ep(s->inventory, name, "zwt-m2");
  ASSERT_NE(m1, nullptr);
  ASSERT_NE(m2, nullptr);
  EXPECT_EQ(m2->zone_tag, std::optional<std::string>("web"));
  EXPECT_EQ(net::mac_str(*m2->mac), "52:54:00:80:00:12");
  EXPECT_EQ(addrs_of(*m2), (std::vector<std::string>{"10.80.0.12", "fd80::12"}));
  EXPECT_TRUE(m1->addrs.empty());  // the other NIC: not declared, none

  // A MAC the domain lacks: the domain is skipped with a warning naming it.
  ASSERT_EQ(virDomainSetMetadata(dom.get(), VIR_DOMAIN_METADATA_ELEMENT,
                                 "<vm><interface mac='52:54:00:80:00:13'><ip>10.80.0.13</ip>"
                                 "</interface></vm>",
                                 kMetadataKey, kMetadataUri, VIR_DOMAIN_AFFECT_LIVE),
            0)
      << virGetLastErrorMessage();
  auto bad = c->snapshot();
  ASSERT_TRUE(bad.has_value()) << bad.error().str();
  EXPECT_EQ(find_ep(bad->inventory, name, "zwt-m2"), nullptr);
  bool warned = false;
  for (const auto& w : bad->warnings)
    warned |= w.find("domain '" + name +
                     "': metadata: interface '52:54:00:80:00:13': the domain "
                     "has no <interface> with this MAC") != std::string::npos;
  EXPECT_TRUE(warned) << ::testing::PrintToString(bad->warnings);
}

// ---------------------------------------------------------------------------
// DomainCache: the daemon's view, read whole once, then domain by domain

namespace {

std::string cache_uuid(const std::string& id) { return "5c0ffee0-0000-4000-8000-0000000000" + id; }

std::string cache_domain_xml(const std::string& name, const std::string& id) {
  return "<domain type='test'><name>" + name + "</name><uuid>" + cache_uuid(id) +
         "</uuid><memory>65536</memory><os><type>hvm</type></os><devices>"
         "<interface type='ethernet'><mac address='52:54:00:00:0a:" + id + "'/>"
         "<target dev='zwt-c" + id + "'/></interface></devices></domain>";
}

// Every endpoint as one line, and the warnings: what an apply is given.
std::vector<std::string> lines_of(const Snapshot& s) {
  std::vector<std::string> out;
  for (const auto& e : s.inventory.endpoints) {
    std::ostringstream l;
    l << e.vm_name << '|' << e.vm_uuid << '|' << e.ifname << '|' << e.config_ifname << '|'
      << (e.mac ? net::mac_str(*e.mac) : "") << '|' << e.zone_tag.value_or("-");
    for (const auto& a : e.addrs) l << '|' << a.str();
    out.push_back(l.str());
  }
  for (const auto& w : s.warnings) out.push_back("warning: " + w);
  return out;
}

// The cache's domains of this test ("cache-*"), as vm/ifname.
std::set<std::string> cached(const DomainCache& c) {
  std::set<std::string> out;
  for (const auto& e : c.snapshot().inventory.endpoints)
    if (e.vm_name.rfind("cache-", 0) == 0) out.insert(e.vm_name + "/" + e.ifname);
  return out;
}

}  // namespace

TEST(LibvirtDomainCache, ReadsEveryDomainOnceThenOnlyTheMarkedOnes) {
  RawConn admin(virConnectOpen("test:///default"));
  ASSERT_NE(admin, nullptr);
  RawDom a(virDomainDefineXML(admin.get(), cache_domain_xml("cache-a", "01").c_str()));
  RawDom b(virDomainDefineXML(admin.get(), cache_domain_xml("cache-b", "02").c_str()));
  ASSERT_TRUE(a && b);
  ASSERT_EQ(virDomainCreate(a.get()), 0);
  auto c = Libvirt::connect({.uri = "test:///default", .addr_lease = false});
  ASSERT_TRUE(c.has_value()) << c.error().str();

  DomainCache cache;
  auto r = cache.update(*c);
  ASSERT_TRUE(r.has_value()) << r.error().str();
  EXPECT_TRUE(r->full);
  const int listed = virConnectNumOfDomains(admin.get()) + virConnectNumOfDefinedDomains(admin.get());
  EXPECT_EQ(r->domains, static_cast<size_t>(listed));
  EXPECT_EQ(cached(cache), (std::set<std::string>{"cache-a/zwt-c01", "cache-b/"}));
  EXPECT_EQ(lines_of(cache.snapshot()), lines_of(*c->snapshot()));

  // Changes nobody marked are not read: the cache does not look.
  ASSERT_EQ(virDomainCreate(b.get()), 0);
  RawDom d(virDomainDefineXML(admin.get(), cache_domain_xml("cache-d", "04").c_str()));
  ASSERT_TRUE(d);
  ASSERT_EQ(virDomainDestroy(a.get()), 0);
  ASSERT_EQ(virDomainUndefine(a.get()), 0);
  r = cache.update(*c);
  ASSERT_TRUE(r.has_value()) << r.error().str();
  EXPECT_FALSE(r->full);
  EXPECT_EQ(r->domains, 0u);
  EXPECT_EQ(cached(cache), (std::set<std::string>{"cache-a/zwt-c01", "cache-b/"}));

  // Marked, as events name them (UUIDs in any case): exactly those read, a
  // domain gone is dropped, and the view is a whole snapshot's again.
  cache.mark(cache_uuid("01"));
  std::string upper = cache_uuid("02");
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  cache.mark(upper);
  cache.mark(cache_uuid("04"));
  r = cache.update(*c);
  ASSERT_TRUE(r.has_value()) << r.error().str();
  EXPECT_FALSE(r->full);
  EXPECT_EQ(r->domains, 3u);
  EXPECT_EQ(cached(cache), (std::set<std::string>{"cache-b/zwt-c02", "cache-d/"}));
  EXPECT_EQ(lines_of(cache.snapshot()), lines_of(*c->snapshot()));

  // A read that fails changes nothing and keeps the marks for the next.
  ASSERT_EQ(virDomainCreate(d.get()), 0);
  cache.mark(cache_uuid("04"));
  Libvirt moved = std::move(*c);  // *c: closed
  EXPECT_FALSE(cache.update(*c).has_value());
  EXPECT_EQ(cached(cache), (std::set<std::string>{"cache-b/zwt-c02", "cache-d/"}));
  r = cache.update(moved);
  ASSERT_TRUE(r.has_value()) << r.error().str();
  EXPECT_EQ(r->domains, 1u);
  EXPECT_EQ(cached(cache), (std::set<std::string>{"cache-b/zwt-c02", "cache-d/zwt-c04"}));

  // By name: a cached domain's is one read; a name it does not know, or an
  // event without a UUID, or mark_all: every domain.
  cache.mark_vm("cache-b");
  r = cache.update(moved);
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->full);
  EXPECT_EQ(r->domains, 1u);
  for (const auto& how : {std::function<void()>([&] { cache.mark_vm("cache-nope"); }),
                          std::function<void()>([&] { cache.mark(""); }),
                          std::function<void()>([&] { cache.mark_all(); })}) {
    how();
    r = cache.update(moved);
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(r->full);
  }
  EXPECT_EQ(lines_of(cache.snapshot()), lines_of(*moved.snapshot()));

  for (auto* dom : {b.get(), d.get()}) {
    virDomainDestroy(dom);
    virDomainUndefine(dom);
  }
}

// ---------------------------------------------------------------------------
// Events (test:///default: shared by every connection in this process)

namespace {

std::string event_domain_xml(const std::string& name) {
  return "<domain type='test'><name>" + name +
         "</name><memory>65536</memory><os><type>hvm</type></os><devices>"
         "<interface type='ethernet'><mac address='52:54:00:00:09:01'/>"
         "<target dev='zwt-ev1'/></interface></devices></domain>";
}

}  // namespace

TEST(LibvirtEvents, LifecycleAndMetadataInOrder) {
  EventLoopGuard loop;
  ASSERT_TRUE(loop.started);
  auto c = Libvirt::connect({.uri = "test:///default", .addr_lease = false});
  ASSERT_TRUE(c.has_value()) << c.error().str();
  const std::string name = "zwt-ev-" + std::to_string(getpid());
  Recorder rec(name);
  auto w = c->watch(std::ref(rec));
  ASSERT_TRUE(w.has_value()) << w.error().str();
  EXPECT_FALSE(c->watch([](const DomainEvent&) {}).has_value());  // one watch per connection

  RawConn admin(virConnectOpen("test:///default"));
  ASSERT_TRUE(admin);
  RawDom dom(virDomainDefineXML(admin.get(), event_domain_xml(name).c_str()));
  ASSERT_TRUE(dom) << virGetLastErrorMessage();
  ASSERT_EQ(virDomainCreate(dom.get()), 0) << virGetLastErrorMessage();
  ASSERT_EQ(
      virDomainSetMetadata(dom.get(), VIR_DOMAIN_METADATA_ELEMENT, "<vm><zone>web</zone></vm>",
                           kMetadataKey, kMetadataUri, VIR_DOMAIN_AFFECT_LIVE),
      0)
      << virGetLastErrorMessage();
  // Metadata in another namespace is not ours: no event.
  ASSERT_EQ(virDomainSetMetadata(dom.get(), VIR_DOMAIN_METADATA_ELEMENT, "<x>1</x>", "other",
                                 "http://example.com/other", VIR_DOMAIN_AFFECT_LIVE),
            0);
  ASSERT_EQ(virDomainDestroy(dom.get()), 0) << virGetLastErrorMessage();
  ASSERT_EQ(virDomainUndefine(dom.get()), 0) << virGetLastErrorMessage();

  auto evs = rec.wait_for(5);
  ASSERT_EQ(evs.size(), 5u) << kinds(evs);
  EXPECT_EQ(kinds(evs), "defined, started, metadata-changed, stopped, undefined");
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  ASSERT_EQ(virDomainGetUUIDString(dom.get(), uuid), 0);
  for (const auto& e : evs) {
    EXPECT_EQ(e.name, name);
    EXPECT_EQ(e.uuid, jsondoc::lower(uuid));
  }
  EXPECT_EQ(evs[0].detail, "added");
  EXPECT_EQ(evs[1].detail, "booted");
  EXPECT_EQ(evs[2].detail, kMetadataUri);
  EXPECT_EQ(evs[3].detail, "destroyed");
  EXPECT_EQ(evs[4].detail, "removed");
}

TEST(LibvirtEvents, NoCallbackAfterDestructionAndLoopRestarts) {
  EventLoopGuard loop;
  ASSERT_TRUE(loop.started);
  const std::string name = "zwt-ev2-" + std::to_string(getpid());
  Recorder early(name), late(name);
  auto a = Libvirt::connect({.uri = "test:///default", .addr_lease = false});
  ASSERT_TRUE(a.has_value()) << a.error().str();
  ASSERT_TRUE(a->watch(std::ref(early)).has_value());
  auto b = Libvirt::connect({.uri = "test:///default", .addr_lease = false});
  ASSERT_TRUE(b.has_value()) << b.error().str();
  ASSERT_TRUE(b->watch(std::ref(late)).has_value());

  RawConn admin(virConnectOpen("test:///default"));
  ASSERT_TRUE(admin);
  RawDom dom(virDomainDefineXML(admin.get(), event_domain_xml(name).c_str()));
  ASSERT_TRUE(dom) << virGetLastErrorMessage();
  ASSERT_EQ(early.wait_for(1).size(), 1u);
  ASSERT_EQ(late.wait_for(1).size(), 1u);

  *a = Libvirt::connect({.uri = kNodeUri, .addr_lease = false}).value();  // drops the watch
  ASSERT_EQ(virDomainUndefine(dom.get()), 0) << virGetLastErrorMessage();
  // One event thread dispatches in registration order: once `late` has the
  // undefine, `early` would have had it too.
  auto evs = late.wait_for(2);
  ASSERT_EQ(evs.size(), 2u) << kinds(evs);
  EXPECT_EQ(evs[1].kind, Kind::kUndefined);
  EXPECT_EQ(early.count(), 1u);
}

TEST(LibvirtEvents, StartStopStartLoop) {
  ASSERT_TRUE(start_event_loop().has_value());
  ASSERT_TRUE(start_event_loop().has_value());  // idempotent
  stop_event_loop();
  stop_event_loop();  // idempotent
  EventLoopGuard loop;
  ASSERT_TRUE(loop.started);
  const std::string name = "zwt-ev3-" + std::to_string(getpid());
  Recorder rec(name);
  auto c = Libvirt::connect({.uri = "test:///default", .addr_lease = false});
  ASSERT_TRUE(c.has_value()) << c.error().str();
  ASSERT_TRUE(c->watch(std::ref(rec)).has_value());
  RawConn admin(virConnectOpen("test:///default"));
  ASSERT_TRUE(admin);
  RawDom dom(virDomainDefineXML(admin.get(), event_domain_xml(name).c_str()));
  ASSERT_TRUE(dom) << virGetLastErrorMessage();
  ASSERT_EQ(virDomainUndefine(dom.get()), 0);
  auto evs = rec.wait_for(2);
  EXPECT_EQ(kinds(evs), "defined, undefined");
}

// ---------------------------------------------------------------------------
// The virsh command docs/libvirt.md gives (libvirt-clients, in scripts/setup.sh)

TEST(LibvirtVirsh, DocumentedMetadataCommandSetsZoneAndAddresses) {
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/virsh"))
      << "virsh missing: install libvirt-clients (scripts/setup.sh)";
  auto dir = std::filesystem::temp_directory_path() / ("zw-virsh-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto xml_path = dir / "dom.xml";
  // The NICs the documented command names (52:54:00:80:00:11) and one more.
  std::ofstream(xml_path) << "<domain type='test'><name>zwt-virsh</name><memory>65536</memory>"
                             "<os><type>hvm</type></os><devices>"
                             "<interface type='ethernet'><mac address='52:54:00:80:00:11'/><target "
                             "dev='zwt-v1'/></interface>"
                             "<interface type='ethernet'><mac address='52:54:00:80:00:12'/><target "
                             "dev='zwt-v2'/></interface>"
                             "</devices></domain>";
  // One virsh process: test:///default lives as long as the connection. The
  // metadata arguments are docs/libvirt.md's, verbatim.
  const std::string cmd =
      "virsh -q -c test:///default \"define " + xml_path.string() +
      "; start zwt-virsh"
      "; metadata zwt-virsh http://zonewall.org/xmlns/libvirt/1.0 --key zonewall"
      " --set '<vm><zone>web</zone><interface mac=\\\"52:54:00:80:00:11\\\">"
      "<ip>10.80.0.11</ip><ip>fd80::11</ip></interface></vm>' --live --config"
      "; dumpxml zwt-virsh; echo ==INACTIVE==; dumpxml --inactive zwt-virsh\" 2>&1";
  auto [out, rc] = run(cmd);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(rc, 0) << out;
  auto split = out.find("==INACTIVE==");
  ASSERT_NE(split, std::string::npos) << out;
  auto xml_start = out.find("<domain");
  ASSERT_NE(xml_start, std::string::npos) << out;
  const std::string live = out.substr(xml_start, split - xml_start);
  const std::string config = out.substr(out.find("<domain", split));
  for (const std::string* x : {&live, &config}) {
    // virsh qualifies every element; the mac attribute stays unqualified.
    EXPECT_NE(x->find("<zonewall:interface mac=\"52:54:00:80:00:11\">"), std::string::npos) << *x;
    auto r = parse_domain_xml(*x, "virsh");
    ASSERT_TRUE(r.has_value()) << error_of(r) << "\n" << *x;
    ASSERT_EQ(r->size(), 2u);
    EXPECT_EQ((*r)[0].zone_tag, std::optional<std::string>("web")) << *x;
    EXPECT_EQ(addrs_of((*r)[0]), (std::vector<std::string>{"10.80.0.11", "fd80::11"})) << *x;
    EXPECT_TRUE((*r)[1].addrs.empty()) << *x;
  }
}
