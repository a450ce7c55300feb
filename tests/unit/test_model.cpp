// The reference model on hand-written cases, each taken from docs/security.md
// and docs/datapath.md: the model must say what the documentation says before
// it may judge the datapath (tests/datapath/test_differential.cpp).
#include <gtest/gtest.h>

#include "../datapath/packet.h"
#include "model/model.h"
#include "policy/json.h"

using namespace zw;
using namespace zw::model;
using test::Bytes;

namespace {

constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmp6 = 58, kGre = 47;

const char* kPolicy = R"({
  "version": 1,
  "defaults": {"intra_zone": "allow", "inter_zone": "deny"},
  "zones": {
    "web": {"vms": ["web-*"]},
    "db": {"vms": ["db-*"]},
    "lab": {"vms": ["lab-*"], "mode": "audit"},
    "office": {"cidrs": ["198.51.100.0/24", "2001:db8:1::/48"]},
    "office-desk": {"cidrs": ["198.51.100.128/25"]},
    "v6all": {"cidrs": ["::/0"]}
  },
  "rules": [
    {"name": "web-db-pg", "from": "web", "to": "db", "proto": "tcp", "ports": [5432], "action": "allow"},
    {"name": "web-db-range", "from": "web", "to": "db", "proto": "tcp", "ports": ["8000-8999"], "action": "allow"},
    {"name": "office-web-http", "from": "office", "to": "web", "proto": "tcp", "ports": [80], "action": "allow"},
    {"name": "desk-web-ssh", "from": "office-desk", "to": "web", "proto": "tcp", "ports": [22], "action": "allow"},
    {"name": "ping", "from": "*", "to": "*", "proto": "icmp", "icmp_types": [8], "action": "allow"},
    {"name": "gre-audit", "from": "web", "to": "world", "proto": 47, "action": "deny", "audit": true},
    {"name": "db-web-deny", "from": "db", "to": "web", "action": "deny"}
  ]
})";

class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto p = policy::parse(kPolicy, "model-test.json");
    ASSERT_TRUE(p.has_value()) << p.error().str();
    policy_ = *p;
    world_.policy = &policy_;
    world_.generation = 1;
    world_.endpoints = {
        ep("tapA", "web", 1, {"10.1.0.1", "fd00::1"}), ep("tapB", "db", 2, {"10.1.0.2", "fd00::2"}),
        ep("tapC", "web", 3, {"10.1.0.3", "fd00::3"}), ep("tapL", "lab", 4, {"10.1.0.4"})};
  }

  static Endpoint ep(const std::string& ifname, const std::string& zone, uint8_t last,
                     std::vector<std::string> addrs) {
    Endpoint e{ifname, zone, net::Mac{0x52, 0x54, 0, 0, 0, last}, {}, {}};
    for (const auto& a : addrs) e.addrs.push_back(Ip::from(*net::parse_addr(a)));
    return e;
  }

  // A frame as the VM behind `ifname` sends it: its own source MAC.
  Bytes own(const std::string& ifname, Bytes f) {
    for (const auto& e : world_.endpoints)
      if (e.ifname == ifname && e.mac) std::copy(e.mac->begin(), e.mac->end(), f.begin() + 6);
    return f;
  }
  Verdict from(const std::string& ifname, const Bytes& f) {
    return judge(world_, Hook::kFromVm, ifname, own(ifname, f), flows_);
  }
  Verdict to(const std::string& ifname, const Bytes& f) {
    return judge(world_, Hook::kToVm, ifname, f, flows_);
  }
  static Verdict v(zw_reason r, const std::string& rule = "") {
    RuleRef ref;
    if (rule == "default:intra_zone")
      ref.kind = RuleRef::Kind::kIntra;
    else if (rule == "default:inter_zone")
      ref.kind = RuleRef::Kind::kInter;
    else if (!rule.empty())
      ref = {RuleRef::Kind::kRule, rule};
    return {r < ZW_R_FIRST_DROP, r, ref};
  }

  policy::Policy policy_;
  World world_;
  Flows flows_;
};

#define EXPECT_VERDICT(got, want) EXPECT_EQ((got).str(), (want).str())

TEST_F(ModelTest, NoPolicyAndNoEndpointFailClosed) {
  Bytes syn = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(1000, 5432));
  World empty;
  EXPECT_VERDICT(judge(empty, Hook::kFromVm, "tapA", syn, flows_), v(ZW_R_DROP_NO_POLICY));
  EXPECT_VERDICT(from("tapZ", syn), v(ZW_R_DROP_NO_ENDPOINT));
  EXPECT_TRUE(flows_.empty());
}

TEST_F(ModelTest, FirstMatchRulesDefaultsAndZonesOfAddresses) {
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(1000, 5432))),
                 v(ZW_R_PASS_NEW, "web-db-pg"));
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(1000, 8999))),
                 v(ZW_R_PASS_NEW, "web-db-range"));
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(1000, 9000))),
                 v(ZW_R_DROP_POLICY, "default:inter_zone"));
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.3", kUdp, test::udp(1000, 53))),
                 v(ZW_R_PASS_NEW, "default:intra_zone"));
  EXPECT_VERDICT(from("tapB", test::ip("10.1.0.2", "10.1.0.1", kIcmp, test::icmp(8))),
                 v(ZW_R_PASS_NEW, "ping"));  // "*" before the deny
  EXPECT_VERDICT(from("tapB", test::ip("10.1.0.2", "10.1.0.1", kIcmp, test::icmp(13, 0, 99))),
                 v(ZW_R_DROP_POLICY, "db-web-deny"));
  // A flow is (addresses, protocol, identifier): a timestamp request with the
  // echo's identifier rides on the echo's flow.
  EXPECT_VERDICT(from("tapB", test::ip("10.1.0.2", "10.1.0.1", kIcmp, test::icmp(13))),
                 v(ZW_R_PASS_CT, "ping"));
  // Longest prefix: 198.51.100.200 is office-desk, .1 is office.
  EXPECT_VERDICT(to("tapA", test::ip("198.51.100.200", "10.1.0.1", kTcp, test::tcp(1000, 22))),
                 v(ZW_R_PASS_NEW, "desk-web-ssh"));
  EXPECT_VERDICT(to("tapA", test::ip("198.51.100.1", "10.1.0.1", kTcp, test::tcp(1000, 22))),
                 v(ZW_R_DROP_POLICY, "default:inter_zone"));
  EXPECT_VERDICT(to("tapA", test::ip("2001:db8:1::9", "fd00::1", kTcp, test::tcp(1000, 80))),
                 v(ZW_R_PASS_NEW, "office-web-http"));
  // A VM's own address wins over a CIDR zone (::/0 covers fd00::2).
  EXPECT_EQ(zone_of(world_, Ip::from(*net::parse_addr("fd00::2"))), "db");
  EXPECT_EQ(zone_of(world_, Ip::from(*net::parse_addr("2001:db8:9::1"))), "v6all");
  // An IPv6 prefix never claims IPv4 addresses.
  EXPECT_EQ(zone_of(world_, Ip::from(*net::parse_addr("192.0.2.1"))), "world");
}

TEST_F(ModelTest, AuditPassesDeniesAndTracksThemFlagged) {
  Bytes gre = test::ip("10.1.0.1", "192.0.2.1", kGre, Bytes(8, 0));
  EXPECT_VERDICT(from("tapA", gre), v(ZW_R_PASS_AUDIT, "gre-audit"));
  EXPECT_VERDICT(from("tapA", gre), v(ZW_R_PASS_AUDIT, "gre-audit"));  // tracked, still audit
  // An audit zone turns the default deny into a pass, on either side.
  EXPECT_VERDICT(from("tapL", test::ip("10.1.0.4", "10.1.0.2", kUdp, test::udp(1, 2))),
                 v(ZW_R_PASS_AUDIT, "default:inter_zone"));
  EXPECT_VERDICT(from("tapB", test::ip("10.1.0.2", "10.1.0.4", kUdp, test::udp(1, 2))),
                 v(ZW_R_PASS_AUDIT, "default:inter_zone"));
}

TEST_F(ModelTest, ConntrackRepliesAndOnlyASynOpensTcp) {
  Bytes syn = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(40000, 5432, 0x02));
  Bytes synack = test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(5432, 40000, 0x12));
  EXPECT_VERDICT(from("tapB", synack), v(ZW_R_DROP_TCP_NO_SYN));  // nothing tracked yet
  EXPECT_VERDICT(from("tapA", syn), v(ZW_R_PASS_NEW, "web-db-pg"));
  EXPECT_VERDICT(to("tapB", syn), v(ZW_R_PASS_CT, "web-db-pg"));
  EXPECT_VERDICT(from("tapB", synack), v(ZW_R_PASS_CT, "web-db-pg"));
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(40001, 5432, 0x10))),
                 v(ZW_R_DROP_TCP_NO_SYN));  // ACK scan
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(40001, 5432, 0x00))),
                 v(ZW_R_DROP_TCP_NO_SYN));  // null scan
  EXPECT_EQ(flows_.size(), 1u);
  // Echo: the identifier is the flow's port, both ways.
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.2", kIcmp, test::icmp(8, 0, 77))),
                 v(ZW_R_PASS_NEW, "ping"));
  EXPECT_VERDICT(from("tapB", test::ip("10.1.0.2", "10.1.0.1", kIcmp, test::icmp(0, 0, 77))),
                 v(ZW_R_PASS_CT, "ping"));
  EXPECT_VERDICT(from("tapB", test::ip("10.1.0.2", "10.1.0.1", kIcmp, test::icmp(0, 0, 78))),
                 v(ZW_R_DROP_POLICY, "db-web-deny"));  // unsolicited reply: a new flow
}

TEST_F(ModelTest, IcmpErrorsRelateOnlyToTrackedFlows) {
  Bytes udp = test::ip("10.1.0.1", "10.1.0.3", kUdp, test::udp(5000, 53));
  Bytes quoted = test::strip_eth(udp);
  Bytes err = test::icmp(3, 3);
  err.insert(err.end(), quoted.begin(), quoted.begin() + 28);
  Bytes unreach = test::ip("10.1.0.3", "10.1.0.1", kIcmp, err);
  EXPECT_VERDICT(from("tapC", unreach), v(ZW_R_DROP_ICMP_UNRELATED));
  EXPECT_VERDICT(from("tapA", udp), v(ZW_R_PASS_NEW, "default:intra_zone"));
  EXPECT_VERDICT(from("tapC", unreach), v(ZW_R_PASS_RELATED, "default:intra_zone"));
  // A quote too short for its ports relates to nothing.
  Bytes shortq = test::icmp(3, 3);
  shortq.insert(shortq.end(), quoted.begin(), quoted.begin() + 24);
  EXPECT_VERDICT(from("tapC", test::ip("10.1.0.3", "10.1.0.1", kIcmp, shortq)),
                 v(ZW_R_DROP_ICMP_UNRELATED));
  // Errors never create state.
  EXPECT_EQ(flows_.size(), 1u);
}

TEST_F(ModelTest, HygieneOnWhatGuestsSend) {
  Bytes f = test::ip("10.1.0.1", "10.1.0.3", kUdp, test::udp(1, 2));
  Bytes other_mac = f;
  other_mac[11] = 0x99;
  EXPECT_VERDICT(judge(world_, Hook::kFromVm, "tapA", other_mac, flows_), v(ZW_R_DROP_SPOOF_MAC));
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.2", "10.1.0.3", kUdp, test::udp(1, 2))),
                 v(ZW_R_DROP_SPOOF_IP));
  EXPECT_VERDICT(from("tapA", test::ip("0.0.0.0", "10.1.0.3", kUdp, test::udp(1, 2))),
                 v(ZW_R_DROP_SPOOF_IP));
  EXPECT_VERDICT(from("tapA", test::ip("fe80::1", "fd00::3", kUdp, test::udp(1, 2))),
                 v(ZW_R_PASS_NEW, "default:intra_zone"));  // link-local: on to the policy
  EXPECT_VERDICT(from("tapA", test::ip("0.0.0.0", "255.255.255.255", kUdp, test::udp(68, 67))),
                 v(ZW_R_PASS_DHCP));
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.3", kUdp, test::udp(67, 68))),
                 v(ZW_R_DROP_GUEST_DHCP));
  EXPECT_VERDICT(to("tapA", test::ip("10.1.0.9", "10.1.0.1", kUdp, test::udp(67, 68))),
                 v(ZW_R_PASS_DHCP));
  EXPECT_VERDICT(from("tapA", test::ip("fe80::1", "ff02::1", kIcmp6, test::icmp(134))),
                 v(ZW_R_DROP_GUEST_RA));
  EXPECT_VERDICT(from("tapA", test::ip("fe80::1", "ff02::1", kIcmp6, test::nd(135, "fd00::9"))),
                 v(ZW_R_PASS_ND));
  EXPECT_VERDICT(from("tapA", test::ip("fe80::1", "ff02::1", kIcmp6, test::icmp(135))),
                 v(ZW_R_DROP_MALFORMED));  // an NS without its target
  // ARP: sender MAC and address must be the VM's; probes from 0.0.0.0 pass.
  auto arp = [&](uint8_t mac_last, const char* spa) {
    Bytes b = test::eth(0x0806);
    b.insert(b.end(), {0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0, 0, mac_last});
    uint8_t a[4];
    inet_pton(AF_INET, spa, a);
    b.insert(b.end(), a, a + 4);
    b.insert(b.end(), 10, 0);
    return b;
  };
  EXPECT_VERDICT(from("tapA", arp(1, "10.1.0.1")), v(ZW_R_PASS_ARP));
  EXPECT_VERDICT(from("tapA", arp(1, "0.0.0.0")), v(ZW_R_PASS_ARP));
  EXPECT_VERDICT(from("tapA", arp(1, "10.1.0.2")), v(ZW_R_DROP_SPOOF_ARP));
  EXPECT_VERDICT(from("tapA", arp(2, "10.1.0.1")), v(ZW_R_DROP_SPOOF_ARP));
  EXPECT_VERDICT(to("tapA", arp(2, "10.1.0.2")), v(ZW_R_PASS_ARP));
}

TEST_F(ModelTest, OddFramesHaveTheirReasons) {
  Bytes f = test::ip("10.1.0.1", "10.1.0.3", kUdp, test::udp(1, 2));
  Bytes vlan = f;
  vlan[12] = 0x81, vlan[13] = 0x00;
  EXPECT_VERDICT(from("tapA", vlan), v(ZW_R_DROP_VLAN));
  vlan[12] = 0x88, vlan[13] = 0xa8;
  EXPECT_VERDICT(from("tapA", vlan), v(ZW_R_DROP_VLAN));
  Bytes other = f;
  other[12] = 0x88, other[13] = 0xb5;
  EXPECT_VERDICT(from("tapA", other), v(ZW_R_DROP_ETHERTYPE));
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.3", kUdp, test::udp(1, 2), 0x2000)),
                 v(ZW_R_DROP_FRAGMENT));
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.3", kUdp, test::udp(1, 2), 0x0001)),
                 v(ZW_R_DROP_FRAGMENT));
  EXPECT_VERDICT(from("tapA", Bytes(f.begin(), f.begin() + 40)), v(ZW_R_DROP_MALFORMED));
  Bytes tcp_short = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(1, 5432));
  tcp_short.resize(tcp_short.size() - 1);
  EXPECT_VERDICT(from("tapA", tcp_short), v(ZW_R_DROP_MALFORMED));
  // IPv4 options are skipped by IHL.
  Bytes opts = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(1, 5432));
  opts[14] = 0x46;
  opts.insert(opts.begin() + 34, {1, 1, 1, 0});
  EXPECT_VERDICT(from("tapA", opts), v(ZW_R_PASS_NEW, "web-db-pg"));
}

// IPv6 with `n` destination-options headers before TCP.
Bytes ipv6_chain(int n, uint8_t last = kTcp) {
  Bytes l4 = test::tcp(1000, 5432);
  Bytes chain;
  for (int i = 0; i < n; ++i)
    chain.insert(chain.end(), {uint8_t(i + 1 < n ? 60 : last), 0, 1, 4, 0, 0, 0, 0});
  chain.insert(chain.end(), l4.begin(), l4.end());
  return test::ip("fd00::1", "fd00::2", n ? 60 : last, chain);
}

TEST_F(ModelTest, Ipv6ExtensionHeadersUpToTheBound) {
  EXPECT_VERDICT(from("tapA", ipv6_chain(ZW_MAX_IPV6_EXT)), v(ZW_R_PASS_NEW, "web-db-pg"));
  EXPECT_VERDICT(from("tapA", ipv6_chain(ZW_MAX_IPV6_EXT + 1)), v(ZW_R_DROP_IPV6_EXT));
  EXPECT_VERDICT(from("tapA", ipv6_chain(2, 44)), v(ZW_R_DROP_FRAGMENT));
  Bytes cut = ipv6_chain(3);
  cut.resize(14 + 40 + 12);
  EXPECT_VERDICT(from("tapA", cut), v(ZW_R_DROP_MALFORMED));
}

TEST_F(ModelTest, NewGenerationRejudgesTrackedFlows) {
  Bytes syn = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(40000, 5432));
  Bytes ack = test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(5432, 40000, 0x10));
  Bytes syn2 = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(40001, 8080));
  EXPECT_VERDICT(from("tapA", syn), v(ZW_R_PASS_NEW, "web-db-pg"));
  EXPECT_VERDICT(from("tapA", syn2), v(ZW_R_PASS_NEW, "web-db-range"));
  // Remove web-db-pg: its flow is revoked (judged by the default now), the
  // other stays and carries the new generation.
  policy_.rules.erase(policy_.rules.begin());
  world_.generation = 2;
  EXPECT_VERDICT(to("tapA", ack), v(ZW_R_DROP_REVOKED, "default:inter_zone"));
  EXPECT_VERDICT(to("tapA", ack), v(ZW_R_DROP_TCP_NO_SYN));  // gone
  EXPECT_VERDICT(from("tapA", syn2), v(ZW_R_PASS_CT, "web-db-range"));
  EXPECT_EQ(flows_.size(), 1u);
  EXPECT_EQ(flows_.begin()->second.generation, 2u);
}

TEST_F(ModelTest, NeighbourDiscoveryCannotClaimOthers) {
  const uint8_t own[6] = {0x52, 0x54, 0, 0, 0, 1}, other[6] = {0x52, 0x54, 0, 0, 0, 2};
  auto nd_from = [&](const char* src, const Bytes& msg) {
    return from("tapA", test::ip(src, "ff02::1", kIcmp6, msg));
  };
  EXPECT_VERDICT(nd_from("fd00::1", test::nd(136, "fd00::1", own)), v(ZW_R_PASS_ND));
  EXPECT_VERDICT(nd_from("fd00::1", test::nd(136, "fd00::2", own)), v(ZW_R_DROP_SPOOF_ND));
  EXPECT_VERDICT(nd_from("fe80::1", test::nd(136, "fe80::1", other)), v(ZW_R_DROP_SPOOF_ND));
  EXPECT_VERDICT(nd_from("fd00::2", test::nd(135, "fd00::9", own)), v(ZW_R_DROP_SPOOF_ND));
  EXPECT_VERDICT(nd_from("::", test::nd(135, "fd00::1")), v(ZW_R_PASS_ND));  // DAD
  EXPECT_VERDICT(nd_from("fe80::1", test::nd(137, "fd00::9")), v(ZW_R_DROP_GUEST_RA));
  EXPECT_VERDICT(nd_from("fe80::1", test::nd(133, "", own)), v(ZW_R_PASS_ND));
  Bytes zero_len = test::nd(135, "fd00::9", own);
  zero_len[25] = 0;
  EXPECT_VERDICT(nd_from("fe80::1", zero_len), v(ZW_R_DROP_MALFORMED));
}

TEST_F(ModelTest, AddressesDecideWhatAVmMaySendAndReceive) {
  // No address known: only what obtains one.
  world_.endpoints.push_back({"tapN", "web", net::Mac{0x52, 0x54, 0, 0, 0, 9}, {}, {}});
  auto n = [&](Bytes f) {
    f[11] = 9;
    return judge(world_, Hook::kFromVm, "tapN", f, flows_);
  };
  EXPECT_VERDICT(n(test::ip("10.1.0.9", "10.1.0.2", kUdp, test::udp(1, 53))),
                 v(ZW_R_DROP_NO_ADDRESS));
  EXPECT_VERDICT(n(test::ip("0.0.0.0", "255.255.255.255", kUdp, test::udp(68, 67))),
                 v(ZW_R_PASS_DHCP));
  // Unicast to a VM must be for one of its addresses.
  EXPECT_VERDICT(to("tapA", test::ip("10.1.0.2", "10.1.0.3", kUdp, test::udp(1, 53))),
                 v(ZW_R_DROP_NOT_FOR_VM));
  // A VIP: its holder may send from it; it is zoned like its holders.
  world_.endpoints[0].allowed.push_back(Ip::from(*net::parse_addr("10.1.0.100")));
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.100", "10.1.0.3", kUdp, test::udp(1, 53))),
                 v(ZW_R_PASS_NEW, "default:intra_zone"));
  EXPECT_EQ(zone_of(world_, Ip::from(*net::parse_addr("10.1.0.100"))), "web");
  EXPECT_VERDICT(from("tapC", test::ip("10.1.0.100", "10.1.0.1", kUdp, test::udp(1, 53))),
                 v(ZW_R_DROP_SPOOF_IP));
  // ICMP across families and IPv4-mapped IPv6 addresses are malformed.
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.3", kIcmp6, test::icmp(135))),
                 v(ZW_R_DROP_MALFORMED));
  EXPECT_VERDICT(from("tapA", test::ip("fd00::1", "::ffff:10.1.0.3", kUdp, test::udp(1, 2))),
                 v(ZW_R_DROP_MALFORMED));
}

TEST_F(ModelTest, MulticastIsJudgedPerPacketAndNeverTracked) {
  Bytes mdns = test::ip("10.1.0.1", "224.0.0.251", kUdp, test::udp(5353, 5353));
  EXPECT_VERDICT(from("tapA", mdns), v(ZW_R_DROP_POLICY, "default:inter_zone"));  // web -> world
  EXPECT_VERDICT(to("tapC", mdns), v(ZW_R_PASS_MCAST, "default:intra_zone"));     // web -> web
  EXPECT_VERDICT(to("tapB", mdns), v(ZW_R_DROP_POLICY, "default:inter_zone"));
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "255.255.255.255", kIcmp, test::icmp(8))),
                 v(ZW_R_PASS_MCAST, "ping"));
  EXPECT_TRUE(flows_.empty());
}

TEST_F(ModelTest, HygieneSwitchesAndFlowLimitsComeFromTheZone) {
  policy_.zones.at("web").hygiene.ip = false;
  policy_.zones.at("web").hygiene.mac = false;
  policy_.zones.at("web").max_flows = 1;
  Bytes other_mac = test::ip("10.1.0.2", "10.1.0.3", kUdp, test::udp(1, 2));
  other_mac[11] = 0x77;
  EXPECT_VERDICT(judge(world_, Hook::kFromVm, "tapA", other_mac, flows_),
                 v(ZW_R_PASS_NEW, "default:intra_zone"));  // spoofing allowed in this zone
  EXPECT_VERDICT(from("tapA", test::ip("10.1.0.1", "10.1.0.3", kUdp, test::udp(2, 2))),
                 v(ZW_R_DROP_CT_LIMIT, "default:intra_zone"));  // one flow per interface
  EXPECT_VERDICT(from("tapC", test::ip("10.1.0.3", "10.1.0.1", kUdp, test::udp(3, 2))),
                 v(ZW_R_PASS_NEW, "default:intra_zone"));  // another VM's own budget
  EXPECT_EQ(flows_.size(), 2u);
}

TEST(ModelDescribe, NamesWhatItRead) {
  Bytes f = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(1, 5432));
  EXPECT_NE(describe(f).find("10.1.0.1:1 -> 10.1.0.2:5432 proto 6 flags 0x02"), std::string::npos);
  EXPECT_NE(describe(Bytes(5, 0)).find("runt"), std::string::npos);
}

}  // namespace
