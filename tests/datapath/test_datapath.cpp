// Datapath tests: the production BPF object, maps filled by the real
// control plane (engine::apply), frames run with BPF_PROG_TEST_RUN. Each
// case asserts the verdict, the reason counted, and the rule counted.
// Runs in a private network namespace with veth pairs standing in for VM
// taps; pins live under a unique bpffs directory and are removed after.
#include <gtest/gtest.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "daemon/metrics.h"
#include "datapath/attach.h"
#include "datapath/events.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "datapath/test_run.h"
#include "engine/conntrack.h"
#include "engine/flows.h"
#include "engine/inspect.h"
#include "engine/reconcile.h"
#include "engine/state.h"
#include "inventory/static_json.h"
#include "packet.h"
#include "policy/json.h"

namespace zw {
namespace {

using datapath::Prog;
using test::Bytes;

constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmp6 = 58;

const char* kPolicy = R"({
  "version": 1,
  "defaults": {"intra_zone": "allow", "inter_zone": "deny"},
  "zones": {
    "web": {"vms": ["web-*"]},
    "db": {"vms": ["db-*"]},
    "office": {"cidrs": ["198.51.100.0/24", "2001:db8:1::/48"]}
  },
  "rules": [
    {"name": "web-db-pg", "from": "web", "to": "db", "proto": "tcp", "ports": [5432], "action": "allow"},
    {"name": "web-db-range", "from": "web", "to": "db", "proto": "tcp", "ports": ["8000-8999"], "action": "allow"},
    {"name": "web-db-dns", "from": "web", "to": "db", "proto": "udp", "ports": [53], "action": "allow"},
    {"name": "office-web-http", "from": "office", "to": "web", "proto": "tcp", "ports": [80], "action": "allow"},
    {"name": "ping", "from": "*", "to": "*", "proto": "icmp", "icmp_types": [8], "action": "allow"},
    {"name": "ping6", "from": "*", "to": "*", "proto": "icmpv6", "icmp_types": [128], "action": "allow"},
    {"name": "db-web-deny", "from": "db", "to": "web", "action": "deny"}
  ]
})";

// The same without web-db-pg: applying it must cut established pg flows.
std::string policy_without_pg() {
  std::string p = kPolicy;
  auto start = p.find(R"({"name": "web-db-pg")");
  auto end = p.find('\n', start);
  p.erase(start, end - start + 1);
  return p;
}

// A policy where web-db-pg is audit-only: denies pass and are counted.
const char* kAuditPolicy = R"({
  "version": 1,
  "zones": {"web": {"vms": ["web-*"], "mode": "audit"}, "db": {"vms": ["db-*"]}},
  "rules": []
})";

struct Iface {
  std::string host;  // host side: where zonewall attaches
  uint32_t ifindex = 0;
};

class DatapathTest : public ::testing::Test {
 protected:
  static inline bool ready_ = false;
  static inline std::string why_;
  static inline engine::Paths paths_;
  static inline std::map<std::string, Iface> ifs_;
  static inline std::string tmp_;

  static bool sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }

  static std::string write_tmp(const std::string& name, const std::string& text) {
    std::string path = tmp_ + "/" + name;
    FILE* f = std::fopen(path.c_str(), "w");
    std::fputs(text.c_str(), f);
    std::fclose(f);
    return path;
  }

  static Result<engine::ApplyReport> apply_text(
      const std::string& policy_text, const std::string& attach = "tc",
      const std::string& extra_vm = "", std::function<void(std::string_view)> observe = {}) {
    auto p = policy::parse(policy_text, "test-policy.json");
    if (!p) return fail(std::move(p.error()));
    std::string inv_text = std::string(R"({"vms": [
      {"name": "web-1", "interfaces": [{"name": "zwdA", "mac": "52:54:00:00:00:01", "ips": ["10.1.0.1", "fd00::1"]}]},
      {"name": "db-1", "interfaces": [{"name": "zwdB", "mac": "52:54:00:00:00:02", "ips": ["10.1.0.2", "fd00::2"]}]},
      {"name": "web-2", "interfaces": [{"name": "zwdC", "mac": "52:54:00:00:00:03", "ips": ["10.1.0.3", "fd00::3"]}]})") +
                           extra_vm + "]}";
    auto inv = inventory::parse_static(inv_text, "test-inventory.json");
    if (!inv) return fail(std::move(inv.error()));
    auto lock = engine::PinLock::acquire(paths_.pin_dir);
    if (!lock) return fail(std::move(lock.error()));
    engine::ApplyInput in{.policy = &*p,
                          .inventory = &*inv,
                          .policy_source = "test-policy.json",
                          .inventory_source = "test-inventory.json",
                          .default_attach = attach,
                          .keep_hooked = {}};
    in.observe = std::move(observe);
    return engine::apply(paths_, in);
  }

  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      why_ = "datapath tests need root (CAP_BPF, CAP_NET_ADMIN)";
      return;
    }
    if (unshare(CLONE_NEWNET) != 0) {
      why_ = "unshare(CLONE_NEWNET) failed";
      return;
    }
    char tmpl[] = "/tmp/zw-dp-XXXXXX";
    tmp_ = mkdtemp(tmpl);
    paths_ = engine::make_paths("/sys/fs/bpf/zw-dp-" + std::to_string(getpid()));
    datapath::install_libbpf_logger();
    if (auto st = datapath::ensure_bpffs(paths_.pin_dir); !st) {
      why_ = st.error().str();
      return;
    }
    sh("ip link set lo up");
    // The kernel's own IPv6 chatter (DAD, MLD, RS) on the veths would reach
    // the attached programs and move counters under the tests' feet.
    sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
    for (const char* n : {"zwdA", "zwdB", "zwdC", "zwdX", "zwdF"}) {
      std::string host = n;
      if (!sh("ip link add " + host + " type veth peer name " + host + "p && ip link set " + host +
              " up && ip link set " + host + "p up")) {
        why_ = "cannot create veth " + host;
        return;
      }
      ifs_[host] = {host, if_nametoindex(host.c_str())};
    }
    auto rep = apply_text(kPolicy);
    if (!rep) {
      why_ = "apply: " + rep.error().str();
      return;
    }
    ready_ = true;
  }

  static void TearDownTestSuite() {
    if (!paths_.pin_dir.empty()) {
      if (auto lock = engine::PinLock::acquire(paths_.pin_dir)) (void)engine::down(paths_);
    }
    if (!tmp_.empty()) sh("rm -rf " + tmp_);
    // The veths die with this process's network namespace.
  }

  void SetUp() override {
    if (ready_) return;
    if (std::getenv("CI") || std::getenv("ZW_REQUIRE_PRIVILEGED"))
      FAIL() << "cannot run datapath tests in CI: " << why_;
    GTEST_SKIP() << why_;
  }

  // Every entry of the two-slot maps holds the same in both slots (no apply
  // running, nothing left of an interrupted or failed one); returns the
  // number of entries per map.
  template <typename K, typename V, typename S>
  static size_t settled_entries(const char* name, int fd, S (*slot)(const V&, int)) {
    auto entries = datapath::map_entries<K, V>(fd);
    EXPECT_TRUE(entries.has_value()) << name;
    if (!entries) return 0;
    for (const auto& [k, v] : *entries) {
      S a = slot(v, 0), b = slot(v, 1);
      EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0) << name << ": an entry is not settled";
    }
    return entries->size();
  }
  static std::map<std::string, size_t> expect_settled() {
    std::map<std::string, size_t> n;
    auto m = datapath::open_pinned_maps(paths_.pin_dir);
    EXPECT_TRUE(m.has_value());
    if (!m) return n;
    n["zw_endpoints"] = settled_entries<zw_endpoint_key, zw_endpoint_val, zw_endpoint>(
        "zw_endpoints", m->endpoints.get(),
        [](const zw_endpoint_val& v, int i) { return v.slot[i]; });
    n["zw_addrs"] = settled_entries<zw_addr_key, zw_addr_val, zw_addr_info>(
        "zw_addrs", m->addrs.get(), [](const zw_addr_val& v, int i) { return v.slot[i]; });
    n["zw_cidrs"] = settled_entries<zw_cidr_key, zw_addr_val, zw_addr_info>(
        "zw_cidrs", m->cidrs.get(), [](const zw_addr_val& v, int i) { return v.slot[i]; });
    n["zw_policy"] = settled_entries<zw_policy_key, zw_policy_val, zw_verdict>(
        "zw_policy", m->policy.get(), [](const zw_policy_val& v, int i) { return v.slot[i]; });
    n["zw_zpairs"] = settled_entries<zw_zpair_key, zw_zpair, uint8_t>(
        "zw_zpairs", m->zpairs.get(), [](const zw_zpair& v, int i) { return v.kinds[i]; });
    n["zw_pairs"] = settled_entries<zw_pair_key, uint32_t, uint32_t>(
        "zw_pairs", m->pairs.get(), [](const uint32_t& v, int i) { return (v >> i) & 1u; });
    return n;
  }

  // Reason and rule counters, summed over CPUs.
  struct Counts {
    std::map<std::string, uint64_t> reasons;
    std::map<std::string, uint64_t> rules;
  };
  static Counts counts() {
    Counts c;
    auto st = engine::stats(paths_);
    EXPECT_TRUE(st.has_value()) << (st ? "" : st.error().str());
    if (!st) return c;
    for (const auto& [name, v] : (*st)["reasons"].items())
      c.reasons[name] = v["packets"].get<uint64_t>();
    for (const auto& r : (*st)["rules"])
      c.rules[r["name"].get<std::string>()] = r["packets"].get<uint64_t>();
    return c;
  }

  struct Outcome {
    bool pass = false;
    std::string reason;  // the one reason counter that moved
    std::string rule;    // the one rule counter that moved, "" if none
  };

  static Outcome run(Prog prog, const std::string& ifname, const Bytes& frame) {
    Outcome o;
    auto fd = datapath::open_pinned_prog(paths_.pin_dir, prog);
    EXPECT_TRUE(fd.has_value());
    if (!fd) return o;
    Counts before = counts();
    auto r = datapath::test_run(fd->get(), prog, ifs_.at(ifname).ifindex, frame);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().str());
    if (!r) return o;
    o.pass = r->pass;
    Counts after = counts();
    for (const auto& [name, n] : after.reasons) {
      uint64_t d = n - before.reasons[name];
      if (d == 0) continue;
      EXPECT_EQ(d, 1u) << "reason " << name << " counted " << d << " times for one packet";
      EXPECT_TRUE(o.reason.empty()) << "two reasons counted: " << o.reason << ", " << name;
      o.reason = name;
    }
    for (const auto& [name, n] : after.rules) {
      if (n == before.rules[name]) continue;
      EXPECT_TRUE(o.rule.empty()) << "two rules counted: " << o.rule << ", " << name;
      o.rule = name;
    }
    return o;
  }

  // The VM's own MAC on each test interface (the inventory's).
  static Bytes with_vm_mac(const std::string& ifname, Bytes f) {
    static const std::map<std::string, uint8_t> last = {{"zwdA", 1}, {"zwdB", 2}, {"zwdC", 3}};
    if (auto it = last.find(ifname); it != last.end() && f.size() >= 12) {
      const uint8_t mac[6] = {0x52, 0x54, 0, 0, 0, it->second};
      std::copy(mac, mac + 6, f.begin() + 6);
    }
    return f;
  }
  // Shorthands: what web-1 (zwdA) sends, what db-1 (zwdB) receives, etc.
  static Outcome from_vm(const std::string& ifname, const Bytes& f) {
    return run(Prog::kFromVmTc, ifname, with_vm_mac(ifname, f));
  }
  static Outcome from_vm_xdp(const std::string& ifname, const Bytes& f) {
    return run(Prog::kFromVmXdp, ifname, with_vm_mac(ifname, f));
  }
  static Outcome to_vm(const std::string& ifname, const Bytes& f) {
    return run(Prog::kToVmTc, ifname, f);
  }
};

#define EXPECT_OUTCOME(o, want_pass, want_reason, want_rule) \
  do {                                                       \
    auto _o = (o);                                           \
    EXPECT_EQ(_o.pass, want_pass);                           \
    EXPECT_EQ(_o.reason, want_reason);                       \
    EXPECT_EQ(_o.rule, want_rule);                           \
  } while (0)

TEST_F(DatapathTest, AllProgramsPassTheVerifierAndArePinned) {
  for (Prog p : {Prog::kFromVmXdp, Prog::kFromVmTc, Prog::kToVmTc}) {
    auto fd = datapath::open_pinned_prog(paths_.pin_dir, p);
    ASSERT_TRUE(fd.has_value()) << datapath::prog_name(p);
    EXPECT_NE(datapath::prog_id_of_fd(fd->get()), 0u);
  }
}

TEST_F(DatapathTest, AllowedTcpCreatesFlowAndRepliesPass) {
  auto syn = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(40000, 5432));
  EXPECT_OUTCOME(from_vm("zwdA", syn), true, "pass_new", "web-db-pg");
  // The receiving VM's hook finds the flow the sender's hook created.
  EXPECT_OUTCOME(to_vm("zwdB", syn), true, "pass_ct", "web-db-pg");
  auto synack = test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(5432, 40000, 0x12));
  EXPECT_OUTCOME(from_vm("zwdB", synack), true, "pass_ct", "web-db-pg");
  EXPECT_OUTCOME(to_vm("zwdA", synack), true, "pass_ct", "web-db-pg");
}

TEST_F(DatapathTest, DeniedByDefaultAndByRule) {
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(40001, 5433))),
                 false, "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(40002, 80))),
                 false, "drop_policy", "db-web-deny");
  // A reply-looking packet without a flow cannot open one.
  EXPECT_OUTCOME(
      from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(5432, 40999, 0x12))), false,
      "drop_tcp_no_syn", "");
}

TEST_F(DatapathTest, PortRangesAndBlockEdges) {
  struct {
    uint16_t port;
    bool pass;
    const char* rule;
  } cases[] = {
      {7999, false, "default:inter_zone"}, {8000, true, "web-db-range"},
      {8191, true, "web-db-range"},        {8192, true, "web-db-range"},
      {8448, true, "web-db-range"},        {8959, true, "web-db-range"},
      {8960, true, "web-db-range"},        {8999, true, "web-db-range"},
      {9000, false, "default:inter_zone"}, {9216, false, "default:inter_zone"},
      {7935, false, "default:inter_zone"}, {5432 + 256, false, "default:inter_zone"},
  };
  uint16_t sport = 41000;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.port);
    auto o = from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(sport++, c.port)));
    EXPECT_OUTCOME(o, c.pass, c.pass ? "pass_new" : "drop_policy", c.rule);
  }
}

TEST_F(DatapathTest, OnlyASynOpensATcpFlow) {
  // ACK scan, stray RST, FIN, SYN-ACK and a null scan to a port the policy
  // allows: none of them starts a flow.
  uint16_t sport = 54000;
  for (uint8_t flags : {0x10, 0x04, 0x01, 0x11, 0x12, 0x00, 0x14}) {
    SCOPED_TRACE(static_cast<int>(flags));
    EXPECT_OUTCOME(
        from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(sport++, 5432, flags))),
        false, "drop_tcp_no_syn", "");
    EXPECT_OUTCOME(
        to_vm("zwdA", test::ip("198.51.100.7", "10.1.0.1", kTcp, test::tcp(sport++, 80, flags))),
        false, "drop_tcp_no_syn", "");
  }
  // A SYN does; then the same packets belong to the flow and pass.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(sport, 5432))),
                 true, "pass_new", "web-db-pg");
  EXPECT_OUTCOME(
      from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(sport, 5432, 0x10))), true,
      "pass_ct", "web-db-pg");
  EXPECT_OUTCOME(
      from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(5432, sport, 0x14))), true,
      "pass_ct", "web-db-pg");
  // A TCP header cut short of its flags is malformed, not a guess.
  auto full = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(sport + 1, 5432));
  Bytes cut(full.begin(), full.begin() + 14 + 20 + 12);
  EXPECT_OUTCOME(from_vm("zwdA", cut), false, "drop_malformed", "");
}

TEST_F(DatapathTest, UdpAllowedAndReplied) {
  auto q = test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(53000, 53));
  EXPECT_OUTCOME(from_vm("zwdA", q), true, "pass_new", "web-db-dns");
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kUdp, test::udp(53, 53000))),
                 true, "pass_ct", "web-db-dns");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(53000, 54))),
                 false, "drop_policy", "default:inter_zone");
}

TEST_F(DatapathTest, IcmpEchoAndReply) {
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kIcmp, test::icmp(8, 0, 77))),
                 true, "pass_new", "ping");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kIcmp, test::icmp(0, 0, 77))),
                 true, "pass_ct", "ping");
  // An echo reply nobody asked for is not a reply.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kIcmp, test::icmp(0, 0, 78))),
                 false, "drop_policy", "default:inter_zone");
  // Timestamp requests are not allowed by the ping rule.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kIcmp, test::icmp(13, 0, 79))),
                 false, "drop_policy", "default:inter_zone");
  // A request sent back along an allowed ping's flow (same identifier) is
  // not its reply: the policy judges it. With ping allowed db -> web only,
  // web's request to db is denied at either hook; a reply in the request's
  // direction neither passes. The ping itself goes on.
  std::string one_way = kPolicy;
  const std::string any = R"({"name": "ping", "from": "*", "to": "*")";
  one_way.replace(one_way.find(any), any.size(), R"({"name": "ping", "from": "db", "to": "web")");
  auto rep = apply_text(one_way);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  auto back = test::ip("10.1.0.1", "10.1.0.2", kIcmp, test::icmp(8, 0, 77));
  EXPECT_OUTCOME(from_vm("zwdA", back), false, "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(to_vm("zwdB", back), false, "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(run(Prog::kFromVmXdp, "zwdA", back), false, "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kIcmp, test::icmp(0, 0, 77))),
                 false, "drop_policy", "db-web-deny");
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kIcmp, test::icmp(8, 0, 77))),
                 true, "pass_ct", "ping");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kIcmp, test::icmp(0, 0, 77))),
                 true, "pass_ct", "ping");
  auto restore = apply_text(kPolicy);
  ASSERT_TRUE(restore.has_value()) << restore.error().str();
}

TEST_F(DatapathTest, IcmpErrorsPassOnlyForTrackedFlows) {
  auto flow = test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(53111, 53));
  ASSERT_TRUE(from_vm("zwdA", flow).pass);
  // db-1 answers with port unreachable quoting web-1's datagram.
  Bytes err = test::icmp(3, 3, 0, 0);
  Bytes quoted = test::strip_eth(flow);
  err.insert(err.end(), quoted.begin(), quoted.end());
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kIcmp, err)), true,
                 "pass_related", "web-db-dns");
  Bytes stray = test::icmp(3, 3, 0, 0);
  Bytes other = test::strip_eth(test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(53999, 53)));
  stray.insert(stray.end(), other.begin(), other.end());
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kIcmp, stray)), false,
                 "drop_icmp_unrelated", "");
}

TEST_F(DatapathTest, Ipv6TcpIcmpv6AndNeighbourDiscovery) {
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fd00::1", "fd00::2", kTcp, test::tcp(42000, 5432))),
                 true, "pass_new", "web-db-pg");
  EXPECT_OUTCOME(
      from_vm("zwdB", test::ip("fd00::2", "fd00::1", kTcp, test::tcp(5432, 42000, 0x12))), true,
      "pass_ct", "web-db-pg");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fd00::1", "fd00::2", kTcp, test::tcp(42001, 5433))),
                 false, "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fd00::1", "fd00::2", kIcmp6, test::icmp(128, 0, 5))),
                 true, "pass_new", "ping6");
  // Neighbour solicitation: passes whatever the policy, counted as ND.
  const uint8_t own[6] = {0x52, 0x54, 0, 0, 0, 0x01};
  EXPECT_OUTCOME(
      from_vm("zwdA", test::ip("fd00::1", "ff02::1:ff00:2", kIcmp6, test::nd(135, "fd00::2", own))),
      true, "pass_nd", "");
}

TEST_F(DatapathTest, ExternalCidrZonesAndWorld) {
  EXPECT_OUTCOME(to_vm("zwdA", test::ip("198.51.100.7", "10.1.0.1", kTcp, test::tcp(43000, 80))),
                 true, "pass_new", "office-web-http");
  EXPECT_OUTCOME(to_vm("zwdA", test::ip("2001:db8:1::9", "fd00::1", kTcp, test::tcp(43001, 80))),
                 true, "pass_new", "office-web-http");
  EXPECT_OUTCOME(to_vm("zwdA", test::ip("203.0.113.9", "10.1.0.1", kTcp, test::tcp(43002, 80))),
                 false, "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(to_vm("zwdA", test::ip("198.51.100.7", "10.1.0.1", kTcp, test::tcp(43003, 22))),
                 false, "drop_policy", "default:inter_zone");
}

TEST_F(DatapathTest, IntraZoneDefault) {
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.3", kTcp, test::tcp(44000, 22))),
                 true, "pass_new", "default:intra_zone");
}

// An ARP request from the VM: sender MAC and IPv4 address as given.
Bytes arp_request(const uint8_t (&sha)[6], const char* spa, const char* tpa) {
  const uint8_t mac[6] = {0x52, 0x54, 0, 0, 0, 0x01};
  Bytes a = test::eth(0x0806, mac);
  a.insert(a.end(), {0, 1, 8, 0, 6, 4, 0, 1});
  a.insert(a.end(), sha, sha + 6);
  uint8_t ip4[4];
  inet_pton(AF_INET, spa, ip4);
  a.insert(a.end(), ip4, ip4 + 4);
  a.insert(a.end(), 6, 0);
  inet_pton(AF_INET, tpa, ip4);
  a.insert(a.end(), ip4, ip4 + 4);
  return a;
}

TEST_F(DatapathTest, ArpPasses) {
  const uint8_t own[6] = {0x52, 0x54, 0, 0, 0, 0x01};
  EXPECT_OUTCOME(from_vm("zwdA", arp_request(own, "10.1.0.1", "10.1.0.2")), true, "pass_arp", "");
  // An ARP probe (sender 0.0.0.0) before the address is in use.
  EXPECT_OUTCOME(from_vm("zwdA", arp_request(own, "0.0.0.0", "10.1.0.1")), true, "pass_arp", "");
}

TEST_F(DatapathTest, GuestsCanOnlySpeakAsThemselves) {
  const uint8_t own[6] = {0x52, 0x54, 0, 0, 0, 0x01};
  const uint8_t other[6] = {0x52, 0x54, 0, 0, 0, 0x02};
  auto pg = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(53000, 5432));
  // Source MAC of another VM (run() sends the frame as built, with db-1's MAC).
  Bytes spoofed_mac = pg;
  std::copy(other, other + 6, spoofed_mac.begin() + 6);
  EXPECT_OUTCOME(run(Prog::kFromVmTc, "zwdA", spoofed_mac), false, "drop_spoof_mac", "");
  EXPECT_OUTCOME(run(Prog::kFromVmXdp, "zwdA", spoofed_mac), false, "drop_spoof_mac", "");
  // Another VM's address, an address nobody has, and the unspecified ones.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.3", "10.1.0.2", kTcp, test::tcp(53001, 5432))),
                 false, "drop_spoof_ip", "");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.9.9.9", "10.1.0.2", kTcp, test::tcp(53002, 5432))),
                 false, "drop_spoof_ip", "");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("0.0.0.0", "10.1.0.2", kTcp, test::tcp(53003, 5432))),
                 false, "drop_spoof_ip", "");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fd00::2", "fd00::3", kTcp, test::tcp(53004, 22))), false,
                 "drop_spoof_ip", "");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("::", "fd00::2", kTcp, test::tcp(53005, 5432))), false,
                 "drop_spoof_ip", "");
  // ARP claiming another VM's address or MAC.
  EXPECT_OUTCOME(from_vm("zwdA", arp_request(own, "10.1.0.2", "10.1.0.3")), false, "drop_spoof_arp",
                 "");
  EXPECT_OUTCOME(from_vm("zwdA", arp_request(other, "10.1.0.1", "10.1.0.3")), false,
                 "drop_spoof_arp", "");
  // The real sender still gets through.
  EXPECT_OUTCOME(from_vm("zwdA", pg), true, "pass_new", "web-db-pg");
  // Link-local IPv6 sources are the VM's own by construction; judged by policy.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fe80::1", "fe80::2", kTcp, test::tcp(53006, 5432))),
                 false, "drop_policy", "default:inter_zone");
}

TEST_F(DatapathTest, NeighbourDiscoveryCannotClaimOthers) {
  const uint8_t own[6] = {0x52, 0x54, 0, 0, 0, 0x01};
  const uint8_t other[6] = {0x52, 0x54, 0, 0, 0, 0x02};
  auto nd_from_a = [&](const std::string& src, const std::string& dst, const Bytes& msg) {
    return from_vm("zwdA", test::ip(src, dst, kIcmp6, msg));
  };
  // Its own address and MAC, link-local targets, duplicate address detection from ::.
  EXPECT_OUTCOME(nd_from_a("fd00::1", "fd00::2", test::nd(136, "fd00::1", own)), true, "pass_nd",
                 "");
  EXPECT_OUTCOME(nd_from_a("fe80::1", "ff02::1", test::nd(136, "fe80::1", own)), true, "pass_nd",
                 "");
  EXPECT_OUTCOME(nd_from_a("::", "ff02::1:ff00:1", test::nd(135, "fd00::1")), true, "pass_nd", "");
  EXPECT_OUTCOME(nd_from_a("fe80::1", "ff02::2", test::nd(133, "", own)), true, "pass_nd", "");
  // Advertising another VM's address, or its own with another MAC: the
  // neighbour caches of the others would send that VM's traffic here.
  EXPECT_OUTCOME(nd_from_a("fe80::1", "ff02::1", test::nd(136, "fd00::2", own)), false,
                 "drop_spoof_nd", "");
  EXPECT_OUTCOME(nd_from_a("fd00::1", "ff02::1", test::nd(136, "fd00::1", other)), false,
                 "drop_spoof_nd", "");
  EXPECT_OUTCOME(nd_from_a("fd00::1", "ff02::1:ff00:3", test::nd(135, "fd00::3", other)), false,
                 "drop_spoof_nd", "");
  // Soliciting from another VM's address.
  EXPECT_OUTCOME(nd_from_a("fd00::2", "ff02::1:ff00:3", test::nd(135, "fd00::3", own)), false,
                 "drop_spoof_nd", "");
  // A redirect is a router's message; a cut NS and a zero-length option are malformed.
  EXPECT_OUTCOME(nd_from_a("fe80::1", "fd00::2", test::nd(137, "fd00::9")), false, "drop_guest_ra",
                 "");
  EXPECT_OUTCOME(nd_from_a("fd00::1", "ff02::1:ff00:2", test::icmp(135)), false, "drop_malformed",
                 "");
  Bytes zero_opt = test::nd(135, "fd00::2", own);
  zero_opt[25] = 0;
  EXPECT_OUTCOME(nd_from_a("fd00::1", "ff02::1:ff00:2", zero_opt), false, "drop_malformed", "");
}

TEST_F(DatapathTest, VmWithoutKnownAddressesMayOnlyObtainOne) {
  auto rep = apply_text(
      kPolicy, "tc",
      R"(,{"name": "web-9", "interfaces": [{"name": "zwdF", "mac": "52:54:00:00:00:09"}]})");
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  const uint8_t mac9[6] = {0x52, 0x54, 0, 0, 0, 0x09};
  auto send = [&](const Bytes& f) {
    Bytes g = f;
    std::copy(mac9, mac9 + 6, g.begin() + 6);
    return run(Prog::kFromVmTc, "zwdF", g);
  };
  EXPECT_OUTCOME(send(test::ip("0.0.0.0", "255.255.255.255", kUdp, test::udp(68, 67))), true,
                 "pass_dhcp", "");
  EXPECT_OUTCOME(send(arp_request(mac9, "0.0.0.0", "10.1.0.9")), true, "pass_arp", "");
  EXPECT_OUTCOME(send(test::ip("::", "ff02::1:ff00:9", kIcmp6, test::nd(135, "fd00::9"))), true,
                 "pass_nd", "");
  EXPECT_OUTCOME(send(test::ip("fe80::9", "ff02::2", kIcmp6, test::nd(133, "", mac9))), true,
                 "pass_nd", "");
  // Anything else waits for the address to be known, whatever the policy.
  EXPECT_OUTCOME(send(test::ip("10.1.0.9", "10.1.0.3", kTcp, test::tcp(46000, 80))), false,
                 "drop_no_address", "");
  EXPECT_OUTCOME(send(test::ip("fe80::9", "fe80::3", kIcmp6, test::icmp(128))), false,
                 "drop_no_address", "");
  EXPECT_OUTCOME(send(arp_request(mac9, "10.1.0.9", "10.1.0.3")), false, "drop_spoof_arp", "");
  EXPECT_OUTCOME(send(test::ip("fe80::9", "ff02::1", kIcmp6, test::nd(136, "fd00::9", mac9))),
                 false, "drop_spoof_nd", "");
  auto back = apply_text(kPolicy);
  ASSERT_TRUE(back.has_value()) << back.error().str();
}

TEST_F(DatapathTest, AllowedAddressPairsLetZoneMembersShareAnAddress) {
  const char* vms =
      R"(,{"name": "web-9", "interfaces": [{"name": "zwdF", "mac": "52:54:00:00:00:09", "ips": ["10.1.0.9"], "allowed_addresses": ["10.1.0.100", "fd00::100"]}]})"
      R"(,{"name": "web-8", "interfaces": [{"name": "zwdX", "mac": "52:54:00:00:00:08", "ips": ["10.1.0.8"], "allowed_addresses": ["10.1.0.100"]}]})";
  auto rep = apply_text(kPolicy, "tc", vms);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  auto send = [&](const std::string& ifname, uint8_t mac_last, const Bytes& f) {
    Bytes g = f;
    const uint8_t mac[6] = {0x52, 0x54, 0, 0, 0, mac_last};
    std::copy(mac, mac + 6, g.begin() + 6);
    return run(Prog::kFromVmTc, ifname, g);
  };
  // Both holders of the VIP may send from it, as the zone it shares (web).
  EXPECT_OUTCOME(send("zwdF", 9, test::ip("10.1.0.100", "10.1.0.2", kTcp, test::tcp(47000, 5432))),
                 true, "pass_new", "web-db-pg");
  EXPECT_OUTCOME(send("zwdX", 8, test::ip("10.1.0.100", "10.1.0.2", kTcp, test::tcp(47001, 5432))),
                 true, "pass_new", "web-db-pg");
  EXPECT_OUTCOME(send("zwdF", 9, test::ip("fd00::100", "fd00::2", kTcp, test::tcp(47002, 5432))),
                 true, "pass_new", "web-db-pg");
  const uint8_t mac9[6] = {0x52, 0x54, 0, 0, 0, 0x09};
  EXPECT_OUTCOME(send("zwdF", 9, arp_request(mac9, "10.1.0.100", "10.1.0.2")), true, "pass_arp",
                 "");
  // Not granted to web-8 for IPv6, nor to web-1 at all.
  EXPECT_OUTCOME(send("zwdX", 8, test::ip("fd00::100", "fd00::2", kTcp, test::tcp(47003, 5432))),
                 false, "drop_spoof_ip", "");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.100", "10.1.0.2", kTcp, test::tcp(47004, 5432))),
                 false, "drop_spoof_ip", "");
  // Traffic to the VIP is judged by its zone and delivered to its holders.
  EXPECT_OUTCOME(to_vm("zwdF", test::ip("10.1.0.2", "10.1.0.100", kTcp, test::tcp(47005, 80))),
                 false, "drop_policy", "db-web-deny");
  EXPECT_OUTCOME(to_vm("zwdF", test::ip("10.1.0.3", "10.1.0.100", kTcp, test::tcp(47006, 80))),
                 true, "pass_new", "default:intra_zone");

  // A shared address belongs to one zone, and is nobody's own address.
  auto cross = apply_text(
      kPolicy, "tc",
      R"(,{"name": "db-9", "interfaces": [{"name": "zwdF", "ips": ["10.1.0.9"], "allowed_addresses": ["10.1.0.100"]}]})"
      R"(,{"name": "web-8", "interfaces": [{"name": "zwdX", "ips": ["10.1.0.8"], "allowed_addresses": ["10.1.0.100"]}]})");
  ASSERT_FALSE(cross.has_value());
  EXPECT_NE(cross.error().str().find("allowed address 10.1.0.100 is in zone"), std::string::npos)
      << cross.error().str();
  auto own = apply_text(
      kPolicy, "tc",
      R"(,{"name": "web-9", "interfaces": [{"name": "zwdF", "ips": ["10.1.0.9"], "allowed_addresses": ["10.1.0.2"]}]})");
  ASSERT_FALSE(own.has_value());
  EXPECT_NE(own.error().str().find("is the own address of"), std::string::npos)
      << own.error().str();
  auto back = apply_text(kPolicy);
  ASSERT_TRUE(back.has_value()) << back.error().str();
}

TEST_F(DatapathTest, UnicastForAnotherVmIsNotDelivered) {
  // A bridge floods unknown unicast: db-1's traffic must not reach web-1.
  EXPECT_OUTCOME(to_vm("zwdA", test::ip("10.1.0.3", "10.1.0.2", kUdp, test::udp(48100, 53))), false,
                 "drop_not_for_vm", "");
  EXPECT_OUTCOME(to_vm("zwdA", test::ip("fd00::3", "fd00::2", kUdp, test::udp(48100, 53))), false,
                 "drop_not_for_vm", "");
  EXPECT_OUTCOME(to_vm("zwdA", test::ip("10.1.0.3", "10.1.0.1", kUdp, test::udp(48101, 53))), true,
                 "pass_new", "default:intra_zone");
}

TEST_F(DatapathTest, MulticastAndBroadcastAreJudgedPerPacketAtBothEnds) {
  std::string policy = kPolicy;
  policy.insert(
      policy.find(R"(    {"name": "db-web-deny")"),
      R"(    {"name": "web-mdns", "from": "web", "to": "world", "proto": "udp", "ports": [5353, 9999], "action": "allow"},
)");
  auto rep = apply_text(policy);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  auto maps = datapath::open_pinned_maps(paths_.pin_dir);
  ASSERT_TRUE(maps.has_value());
  auto flows = [&] { return datapath::map_keys<zw_ct_key>(maps->ct.get())->size(); };
  size_t before = flows();
  for (const char* dst : {"224.0.0.251", "ff02::fb", "255.255.255.255"}) {
    SCOPED_TRACE(dst);
    bool v6 = test::is_v6(dst);
    uint16_t port = std::string(dst) == "255.255.255.255" ? 9999 : 5353;
    auto m = test::ip(v6 ? "fd00::1" : "10.1.0.1", dst, kUdp, test::udp(port, port));
    // The sender's zone to the world, then each receiver's zone.
    EXPECT_OUTCOME(from_vm("zwdA", m), true, "pass_mcast", "web-mdns");
    EXPECT_OUTCOME(to_vm("zwdC", m), true, "pass_mcast", "default:intra_zone");
    EXPECT_OUTCOME(to_vm("zwdB", m), false, "drop_policy", "default:inter_zone");
    // Not a flow: the receivers cannot answer the group through it, and a
    // zone without a rule to the world cannot send to it.
    auto m2 = test::ip(v6 ? "fd00::2" : "10.1.0.2", dst, kUdp, test::udp(port, port));
    EXPECT_OUTCOME(from_vm("zwdB", m2), false, "drop_policy", "default:inter_zone");
  }
  EXPECT_EQ(flows(), before) << "multicast created conntrack entries";
  auto back = apply_text(kPolicy);
  ASSERT_TRUE(back.has_value()) << back.error().str();
}

TEST_F(DatapathTest, HygieneChecksAreSwitchedPerZone) {
  // Defaults switch source-address checks off; db turns them back on; web
  // switches every check off.
  const char* p = R"({
    "version": 1,
    "defaults": {"hygiene": {"ip": false}},
    "zones": {
      "web": {"vms": ["web-*"], "hygiene": {"mac": false, "arp": false, "nd": false, "ra": false, "dhcp_server": false}},
      "db": {"vms": ["db-*"], "hygiene": {"ip": true}}
    },
    "rules": [{"name": "any-udp", "from": "*", "to": "*", "proto": "udp", "action": "allow"}]
  })";
  auto rep = apply_text(p);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  const uint8_t other[6] = {0x52, 0x54, 0, 0, 0, 0x02};
  Bytes spoofed_mac = test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(48200, 7));
  std::copy(other, other + 6, spoofed_mac.begin() + 6);
  EXPECT_OUTCOME(run(Prog::kFromVmTc, "zwdA", spoofed_mac), true, "pass_new", "any-udp");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.9.9.9", "10.1.0.2", kUdp, test::udp(48201, 7))), true,
                 "pass_new", "any-udp");
  EXPECT_OUTCOME(from_vm("zwdA", arp_request(other, "10.1.0.2", "10.1.0.3")), true, "pass_arp", "");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fe80::1", "ff02::1", kIcmp6, test::nd(134))), true,
                 "pass_nd", "");
  EXPECT_OUTCOME(
      from_vm("zwdA", test::ip("fe80::1", "ff02::1", kIcmp6, test::nd(136, "fd00::2", other))),
      true, "pass_nd", "");
  // A DHCP server in web is judged by the policy like any UDP.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "255.255.255.255", kUdp, test::udp(67, 68))),
                 true, "pass_mcast", "any-udp");
  // db keeps every check, its ip check from its own setting.
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.9.9.9", "10.1.0.1", kUdp, test::udp(48202, 7))),
                 false, "drop_spoof_ip", "");
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("fe80::2", "ff02::1", kIcmp6, test::nd(134))), false,
                 "drop_guest_ra", "");
  auto back = apply_text(kPolicy);
  ASSERT_TRUE(back.has_value()) << back.error().str();
}

TEST_F(DatapathTest, ConntrackLimitKeepsOneVmFromExhaustingFlows) {
  std::string policy = kPolicy;
  policy.replace(policy.find(R"("web": {"vms": ["web-*"]})"),
                 std::string(R"("web": {"vms": ["web-*"]})").size(),
                 R"("web": {"vms": ["web-*"], "max_flows": 4})");
  auto rep = apply_text(policy);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  auto maps = datapath::open_pinned_maps(paths_.pin_dir);
  ASSERT_TRUE(maps.has_value());
  // Whatever earlier tests left: expire it all, so counts start at zero.
  auto far = engine::sweep_conntrack(*maps, ~0ULL >> 1);
  ASSERT_TRUE(far.has_value()) << far.error().str();
  auto usage = [&](const std::string& vm) -> uint64_t {
    auto st = engine::stats(paths_);
    for (const auto& e : (*st)["endpoints"])
      if (e["vm"] == vm) return e["tracked_flows"].get<uint64_t>();
    return ~0ULL;
  };
  ASSERT_EQ(usage("web-1"), 0u);
  // A flood from web-1: four flows, then the limit.
  for (uint16_t i = 0; i < 4; ++i)
    EXPECT_OUTCOME(
        from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(49100 + i, 53))), true,
        "pass_new", "web-db-dns");
  EXPECT_EQ(usage("web-1"), 4u);
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(49104, 53))),
                 false, "drop_ct_limit", "web-db-dns");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(49105, 5432))),
                 false, "drop_ct_limit", "web-db-pg");
  // Its established flows go on; db-1 (default limit) is not affected.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(49100, 53))),
                 true, "pass_ct", "web-db-dns");
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kIcmp, test::icmp(8, 0, 77))),
                 true, "pass_new", "ping");
  EXPECT_EQ(usage("db-1"), 1u);
  auto st = engine::stats(paths_);
  ASSERT_TRUE(st.has_value());
  for (const auto& e : (*st)["endpoints"])
    if (e["vm"] == "web-1") {
      EXPECT_EQ(e["max_flows"], 4);
    }
  // The sweep reclaims idle flows and their charge: web-1 may open flows again.
  auto sw = engine::sweep_conntrack(*maps, ~0ULL >> 1);
  ASSERT_TRUE(sw.has_value()) << sw.error().str();
  EXPECT_EQ(sw->expired, 5u);
  EXPECT_EQ(usage("web-1"), 0u);
  EXPECT_EQ(usage("db-1"), 0u);
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(49106, 53))),
                 true, "pass_new", "web-db-dns");
  // A revoked flow is deleted by the datapath and uncharged too.
  std::string no_dns = policy;
  no_dns.erase(no_dns.find(R"(    {"name": "web-db-dns")"),
               no_dns.find('\n', no_dns.find(R"(    {"name": "web-db-dns")")) + 1 -
                   no_dns.find(R"(    {"name": "web-db-dns")"));
  auto rev = apply_text(no_dns);
  ASSERT_TRUE(rev.has_value()) << rev.error().str();
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(49106, 53))),
                 false, "drop_revoked", "default:inter_zone");
  EXPECT_EQ(usage("web-1"), 0u);
  auto back = apply_text(kPolicy);
  ASSERT_TRUE(back.has_value()) << back.error().str();
}

TEST_F(DatapathTest, IcmpOfTheOtherFamilyAndMappedAddressesAreMalformed) {
  // Found by the differential test: IPv4 carrying protocol 58 took the
  // neighbour discovery path (no policy, no source check).
  const uint8_t own[6] = {0x52, 0x54, 0, 0, 0, 0x01};
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.9.9.9", "10.1.0.2", kIcmp6, test::nd(135, "", own))),
                 false, "drop_malformed", "");
  EXPECT_OUTCOME(to_vm("zwdB", test::ip("10.1.0.1", "10.1.0.2", kIcmp6, test::icmp(143))), false,
                 "drop_malformed", "");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fd00::1", "fd00::2", kIcmp, test::icmp(8))), false,
                 "drop_malformed", "");
  // ::ffff:10.1.0.1 would alias web-1's IPv4 address.
  EXPECT_OUTCOME(
      from_vm("zwdA", test::ip("::ffff:10.1.0.1", "fd00::2", kTcp, test::tcp(48300, 5432))), false,
      "drop_malformed", "");
  EXPECT_OUTCOME(
      to_vm("zwdB", test::ip("fd00::1", "::ffff:10.1.0.2", kTcp, test::tcp(48301, 5432))), false,
      "drop_malformed", "");
}

TEST_F(DatapathTest, AnIpv6CidrZoneDoesNotClaimIpv4) {
  // Found by the differential test: ::/0 shared its trie with IPv4-mapped
  // addresses and claimed every IPv4 address no VM has.
  std::string policy = kPolicy;
  policy.replace(policy.find(R"("office": {)"), 0, R"("v6": {"cidrs": ["::/0"]}, )");
  policy.insert(
      policy.find(R"(    {"name": "db-web-deny")"),
      R"(    {"name": "web-v6", "from": "web", "to": "v6", "proto": "tcp", "action": "allow"},
)");
  auto rep = apply_text(policy);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fd00::1", "2001:db8::9", kTcp, test::tcp(48400, 443))),
                 true, "pass_new", "web-v6");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "192.0.2.9", kTcp, test::tcp(48401, 443))),
                 false, "drop_policy", "default:inter_zone");
  // IPv4 prefixes still win inside the IPv4 range.
  EXPECT_OUTCOME(to_vm("zwdA", test::ip("198.51.100.7", "10.1.0.1", kTcp, test::tcp(48402, 80))),
                 true, "pass_new", "office-web-http");
  auto back = apply_text(kPolicy);
  ASSERT_TRUE(back.has_value()) << back.error().str();
}

TEST_F(DatapathTest, Ipv6UnicastThatEndsLikeMappedIpv4MulticastIsUnicast) {
  // Found by the datapath fuzzer: an IPv6 address with ffff in its bytes
  // 10-11 and 224 or more in byte 12 (2001:db8:1::ffff:e000:1) was taken
  // for IPv4 multicast: delivered to a VM it is not for, and judged
  // against the world instead of its own zone (office), with no flow.
  std::string policy = kPolicy;
  policy.insert(
      policy.find(R"(    {"name": "db-web-deny")"),
      R"(    {"name": "web-world", "from": "web", "to": "world", "proto": "tcp", "action": "allow"},
)");
  auto rep = apply_text(policy);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  const char* odd = "2001:db8:1::ffff:e000:1";
  EXPECT_OUTCOME(to_vm("zwdA", test::ip("fd00::2", odd, kUdp, test::udp(48500, 53))), false,
                 "drop_not_for_vm", "");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fd00::1", odd, kTcp, test::tcp(48501, 443))), false,
                 "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(
      from_vm("zwdA", test::ip("fd00::1", "2001:db8:2::ffff:e000:1", kTcp, test::tcp(48502, 443))),
      true, "pass_new", "web-world");
  // As a source it is unicast too: office may reach web on 80, as a flow.
  EXPECT_OUTCOME(to_vm("zwdA", test::ip(odd, "fd00::1", kTcp, test::tcp(48503, 80))), true,
                 "pass_new", "office-web-http");
  auto back = apply_text(kPolicy);
  ASSERT_TRUE(back.has_value()) << back.error().str();
}

TEST_F(DatapathTest, ClosedTcpConnectionsLeaveConntrackInSeconds) {
  auto maps = datapath::open_pinned_maps(paths_.pin_dir);
  ASSERT_TRUE(maps.has_value());
  // The tracked flow of web-1:sport -> db-1:5432, whichever way its key runs.
  auto find = [&](uint16_t sport) -> std::optional<zw_ct_entry> {
    auto keys = datapath::map_keys<zw_ct_key>(maps->ct.get());
    for (const auto& k : *keys) {
      uint16_t a = ntohs(k.sport), b = ntohs(k.dport);
      if (k.proto == kTcp && ((a == sport && b == 5432) || (a == 5432 && b == sport))) {
        zw_ct_entry e{};
        if (datapath::map_lookup(maps->ct.get(), k, &e)) return e;
      }
    }
    return std::nullopt;
  };
  auto syn = [](uint16_t sport, uint8_t flags) {
    return test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(sport, 5432, flags));
  };
  auto back = [](uint16_t sport, uint8_t flags) {
    return test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(5432, sport, flags));
  };
  for (uint16_t sp : {49500, 49501, 49502, 49503})
    EXPECT_OUTCOME(from_vm("zwdA", syn(sp, 0x02)), true, "pass_new", "web-db-pg");
  // A reset (either side), a FIN, nothing, and a reset followed by a new SYN
  // on the same tuple (port reuse).
  EXPECT_OUTCOME(from_vm("zwdA", syn(49500, 0x14)), true, "pass_ct", "web-db-pg");
  EXPECT_OUTCOME(from_vm("zwdB", back(49501, 0x11)), true, "pass_ct", "web-db-pg");
  EXPECT_OUTCOME(to_vm("zwdA", back(49503, 0x04)), true, "pass_ct", "web-db-pg");
  EXPECT_OUTCOME(from_vm("zwdA", syn(49503, 0x02)), true, "pass_ct", "web-db-pg");
  uint64_t t = 0;
  for (uint16_t sp : {49500, 49501, 49502, 49503}) {
    auto e = find(sp);
    ASSERT_TRUE(e.has_value()) << sp;
    t = std::max<uint64_t>(t, e->last_seen_ns);
  }
  EXPECT_TRUE(find(49500)->flags & ZW_CTF_RST);
  EXPECT_TRUE(find(49501)->flags & ZW_CTF_FIN);
  EXPECT_FALSE(find(49503)->flags & (ZW_CTF_RST | ZW_CTF_FIN));
  // 11 s later the reset connection is gone, the others are not; 121 s
  // later the closed one too; the established ones live for the hour.
  ASSERT_TRUE(engine::sweep_conntrack(*maps, t + 11'000'000'000ULL).has_value());
  EXPECT_FALSE(find(49500).has_value());
  EXPECT_TRUE(find(49501).has_value());
  EXPECT_TRUE(find(49502).has_value());
  EXPECT_TRUE(find(49503).has_value());
  ASSERT_TRUE(engine::sweep_conntrack(*maps, t + 121'000'000'000ULL).has_value());
  EXPECT_FALSE(find(49501).has_value());
  EXPECT_TRUE(find(49502).has_value());
  EXPECT_TRUE(find(49503).has_value());
}

TEST_F(DatapathTest, DhcpClientsPassServersAndRouterAdvertsFromGuestsDont) {
  // DHCP discover from 0.0.0.0 and a DHCPv6 solicit: pass whatever the policy.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("0.0.0.0", "255.255.255.255", kUdp, test::udp(68, 67))),
                 true, "pass_dhcp", "");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fe80::1", "ff02::1:2", kUdp, test::udp(546, 547))), true,
                 "pass_dhcp", "");
  // The server's answers reach the VM.
  EXPECT_OUTCOME(to_vm("zwdA", test::ip("10.1.0.254", "255.255.255.255", kUdp, test::udp(67, 68))),
                 true, "pass_dhcp", "");
  // A guest playing DHCP server or router: dropped.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "255.255.255.255", kUdp, test::udp(67, 68))),
                 false, "drop_guest_dhcp", "");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fe80::1", "ff02::1", kUdp, test::udp(547, 546))), false,
                 "drop_guest_dhcp", "");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fe80::1", "ff02::1", kIcmp6, test::icmp(134))), false,
                 "drop_guest_ra", "");
}

TEST_F(DatapathTest, UnknownInterfaceFailsClosed) {
  EXPECT_OUTCOME(from_vm("zwdX", test::ip("10.1.0.9", "10.1.0.2", kTcp, test::tcp(45000, 5432))),
                 false, "drop_no_endpoint", "");
  EXPECT_OUTCOME(to_vm("zwdX", test::ip("10.1.0.2", "10.1.0.9", kTcp, test::tcp(5432, 45000))),
                 false, "drop_no_endpoint", "");
}

TEST_F(DatapathTest, OddFramesAreDroppedWithAReason) {
  Bytes vlan = test::eth(0x8100);
  vlan.insert(vlan.end(), {0, 10, 0x08, 0x00});
  Bytes inner = test::strip_eth(test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(46000, 5432)));
  vlan.insert(vlan.end(), inner.begin(), inner.end());
  EXPECT_OUTCOME(from_vm("zwdA", vlan), false, "drop_vlan", "");
  EXPECT_OUTCOME(from_vm_xdp("zwdA", vlan), false, "drop_vlan", "");

  Bytes lldp = test::eth(0x88cc);
  lldp.resize(60, 0);
  EXPECT_OUTCOME(from_vm("zwdA", lldp), false, "drop_ethertype", "");

  auto full = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(46001, 5432));
  Bytes truncated(full.begin(), full.begin() + 14 + 20 + 3);
  EXPECT_OUTCOME(from_vm("zwdA", truncated), false, "drop_malformed", "");

  EXPECT_OUTCOME(
      from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(46002, 53), 0x2000)), false,
      "drop_fragment", "");
  EXPECT_OUTCOME(
      from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(46003, 53), 0x0010)), false,
      "drop_fragment", "");
  // IPv6 fragment header (44).
  Bytes frag6{17, 0, 0, 0, 0, 0, 0, 1};
  Bytes u = test::udp(46004, 53);
  frag6.insert(frag6.end(), u.begin(), u.end());
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fd00::1", "fd00::2", 44, frag6)), false, "drop_fragment",
                 "");
}

TEST_F(DatapathTest, Ipv6ExtensionHeadersAreWalkedUpToTheBound) {
  // Hop-by-hop (8 bytes) then TCP: judged on the TCP port.
  Bytes hbh{kTcp, 0, 1, 4, 0, 0, 0, 0};
  Bytes t = test::tcp(47000, 5432);
  Bytes one = hbh;
  one.insert(one.end(), t.begin(), t.end());
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fd00::1", "fd00::2", 0, one)), true, "pass_new",
                 "web-db-pg");
  // A chain of destination-options headers longer than ZW_MAX_IPV6_EXT.
  Bytes chain;
  for (int i = 0; i < ZW_MAX_IPV6_EXT + 1; ++i)
    chain.insert(chain.end(), {60, 0, 1, 4, 0, 0, 0, 0});
  chain[(ZW_MAX_IPV6_EXT)*8] = kTcp;
  Bytes t2 = test::tcp(47001, 5432);
  chain.insert(chain.end(), t2.begin(), t2.end());
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fd00::1", "fd00::2", 60, chain)), false, "drop_ipv6_ext",
                 "");
}

TEST_F(DatapathTest, XdpProgramJudgesLikeTc) {
  EXPECT_OUTCOME(
      from_vm_xdp("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(48000, 5432))), true,
      "pass_new", "web-db-pg");
  EXPECT_OUTCOME(
      from_vm_xdp("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(48001, 5433))), false,
      "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(
      from_vm_xdp("zwdX", test::ip("10.1.0.9", "10.1.0.2", kTcp, test::tcp(48002, 5432))), false,
      "drop_no_endpoint", "");
}

// Runs last among the flow tests (gtest runs in declaration order): it
// swaps the policy and restores it.
TEST_F(DatapathTest, GenerationFlipRejudgesEstablishedFlows) {
  auto pg = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(49000, 5432));
  auto pg_reply = test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(5432, 49000, 0x10));
  auto range = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(49001, 8080));
  ASSERT_TRUE(from_vm("zwdA", pg).pass);
  ASSERT_TRUE(from_vm("zwdA", range).pass);

  auto rep = apply_text(policy_without_pg());
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  EXPECT_EQ(rep->generation, rep->previous_generation + 1);
  // The revoked flow stops at once, in either direction; the other survives.
  EXPECT_OUTCOME(to_vm("zwdA", pg_reply), false, "drop_revoked", "default:inter_zone");
  EXPECT_OUTCOME(from_vm("zwdA", pg), false, "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(from_vm("zwdA", range), true, "pass_ct", "web-db-range");
  EXPECT_OUTCOME(from_vm("zwdA", range), true, "pass_ct", "web-db-range");

  // Only the live generation is left in the maps: every entry settled.
  auto st = engine::status(paths_);
  ASSERT_TRUE(st.has_value());
  expect_settled();

  auto back = apply_text(kPolicy);
  ASSERT_TRUE(back.has_value()) << back.error().str();
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(49002, 5432))),
                 true, "pass_new", "web-db-pg");
}

// Denied packets without a flow are remembered per program instance
// (zw_deny_cache): a repeat must get exactly what the full judgement gives,
// including every check made before the policy, and a new generation must
// judge again.
TEST_F(DatapathTest, RepeatedDeniedPacketsGetTheSameAnswerAsTheFirst) {
  const uint8_t other[6] = {0x52, 0x54, 0, 0, 0, 0x02};
  auto denied = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(49500, 5433));
  for (int i = 0; i < 3; ++i) {
    EXPECT_OUTCOME(from_vm("zwdA", denied), false, "drop_policy", "default:inter_zone");
    EXPECT_OUTCOME(to_vm("zwdB", denied), false, "drop_policy", "default:inter_zone");
    EXPECT_OUTCOME(run(Prog::kFromVmXdp, "zwdA", denied), false, "drop_policy",
                   "default:inter_zone");
  }
  // The same addresses, protocol and port, but what comes before the policy
  // differs: the cached denial must not answer for them.
  Bytes spoofed_mac = denied;
  std::copy(other, other + 6, spoofed_mac.begin() + 6);
  EXPECT_OUTCOME(run(Prog::kFromVmTc, "zwdA", spoofed_mac), false, "drop_spoof_mac", "");
  EXPECT_OUTCOME(run(Prog::kFromVmXdp, "zwdA", spoofed_mac), false, "drop_spoof_mac", "");
  EXPECT_OUTCOME(
      from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(49500, 5433, 0x10))), false,
      "drop_tcp_no_syn", "");
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(49500, 5433))),
                 false, "drop_spoof_ip", "");
  // Denied under one generation, allowed under the next (and back).
  auto pg = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(49501, 5432));
  auto without = apply_text(policy_without_pg());
  ASSERT_TRUE(without.has_value()) << without.error().str();
  EXPECT_OUTCOME(from_vm("zwdA", pg), false, "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(from_vm("zwdA", pg), false, "drop_policy", "default:inter_zone");
  auto with = apply_text(kPolicy);
  ASSERT_TRUE(with.has_value()) << with.error().str();
  EXPECT_OUTCOME(from_vm("zwdA", pg), true, "pass_new", "web-db-pg");
  EXPECT_OUTCOME(from_vm("zwdA", pg), true, "pass_ct", "web-db-pg");
}

// The flow cache (lib/cache.h) answers for established packets from the
// frame, before any parsing: it must give exactly what conntrack gives, never
// outlive its flow by more than its validity, and never skip the source MAC
// check or a TCP control segment's state change.
TEST_F(DatapathTest, FlowCacheAnswersOnlyWhatConntrackWould) {
  auto maps = datapath::open_pinned_maps(paths_.pin_dir);
  ASSERT_TRUE(maps.has_value());
  auto q = test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(40200, 53));
  auto a = test::ip("10.1.0.2", "10.1.0.1", kUdp, test::udp(53, 40200));
  EXPECT_OUTCOME(from_vm("zwdA", q), true, "pass_new", "web-db-dns");
  // Conntrack, then the cache (filled by the hit before it), both hooks,
  // both directions, XDP too: every packet counted once, on its rule.
  for (int i = 0; i < 3; ++i) {
    EXPECT_OUTCOME(from_vm("zwdA", q), true, "pass_ct", "web-db-dns");
    EXPECT_OUTCOME(from_vm_xdp("zwdA", q), true, "pass_ct", "web-db-dns");
    EXPECT_OUTCOME(to_vm("zwdB", q), true, "pass_ct", "web-db-dns");
    EXPECT_OUTCOME(from_vm("zwdB", a), true, "pass_ct", "web-db-dns");
    EXPECT_OUTCOME(to_vm("zwdA", a), true, "pass_ct", "web-db-dns");
  }
  // On another VM's interface (its direction belongs to zwdA): judged, not cached.
  EXPECT_OUTCOME(from_vm("zwdC", q), false, "drop_spoof_ip", "");
  // Another source MAC on the cached tuple: the MAC check comes first.
  Bytes spoofed = with_vm_mac("zwdA", q);
  spoofed[11] = 0x7f;
  EXPECT_OUTCOME(run(Prog::kFromVmTc, "zwdA", spoofed), false, "drop_spoof_mac", "");
  EXPECT_OUTCOME(run(Prog::kFromVmXdp, "zwdA", spoofed), false, "drop_spoof_mac", "");

  // A TCP FIN after cached data segments still reaches conntrack.
  auto seg = [](uint8_t flags) {
    return test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(40201, 5432, flags));
  };
  EXPECT_OUTCOME(from_vm("zwdA", seg(0x02)), true, "pass_new", "web-db-pg");
  for (int i = 0; i < 3; ++i) EXPECT_OUTCOME(from_vm("zwdA", seg(0x10)), true, "pass_ct", "web-db-pg");
  EXPECT_OUTCOME(from_vm("zwdA", seg(0x11)), true, "pass_ct", "web-db-pg");
  bool fin = false;
  auto keys = datapath::map_keys<zw_ct_key>(maps->ct.get());
  ASSERT_TRUE(keys.has_value());
  for (const auto& k : *keys) {
    zw_ct_entry e{};
    if (k.proto == kTcp && (ntohs(k.sport) == 40201 || ntohs(k.dport) == 40201) &&
        datapath::map_lookup(maps->ct.get(), k, &e))
      fin = e.flags & ZW_CTF_FIN;
  }
  EXPECT_TRUE(fin) << "the FIN did not reach the flow's conntrack entry";

  // The sweep deleting flows (here every flow: its clock far ahead) bumps
  // the conntrack epoch: the cache stops answering at once.
  EXPECT_OUTCOME(from_vm("zwdA", q), true, "pass_ct", "web-db-dns");
  auto swept = engine::sweep_conntrack(*maps, ~0ULL >> 1);
  ASSERT_TRUE(swept.has_value());
  EXPECT_GE(swept->expired, 2u);
  EXPECT_OUTCOME(from_vm("zwdA", q), true, "pass_new", "web-db-dns");
  EXPECT_OUTCOME(from_vm("zwdA", q), true, "pass_ct", "web-db-dns");
  EXPECT_OUTCOME(from_vm("zwdA", q), true, "pass_ct", "web-db-dns");

  // The flow's entry removed otherwise (no epoch bump): within
  // ZW_FC_VALID_JIFFIES (1 s at HZ 100, less at any higher HZ) the cache
  // stops answering and the packet is judged again: a new flow.
  size_t removed = 0;
  keys = datapath::map_keys<zw_ct_key>(maps->ct.get());
  ASSERT_TRUE(keys.has_value());
  auto usage = datapath::CtUsageView::map(maps->ct_count.get());
  auto buckets = datapath::CtBucketsView::map(maps->ct_born.get());
  ASSERT_TRUE(usage && buckets);
  for (const auto& k : *keys)
    if (k.proto == kUdp && (ntohs(k.sport) == 40200 || ntohs(k.dport) == 40200)) {
      zw_ct_entry e{};
      ASSERT_TRUE(datapath::map_lookup(maps->ct.get(), k, &e));
      ASSERT_TRUE(datapath::ct_forget(maps->ct.get(), *usage, *buckets, k, e));
      ++removed;
    }
  ASSERT_EQ(removed, 1u);
  usleep(1100 * 1000);
  EXPECT_OUTCOME(from_vm("zwdA", q), true, "pass_new", "web-db-dns");
}

// A denied packet is answered from the frame only while no flow of its
// tuple was created since it was judged (zw_ct_born): a reply to a flow the
// other side opens afterwards passes.
TEST_F(DatapathTest, ACachedDenialNeverHidesAFlowCreatedSince) {
  // db-1 -> web-1 is denied; the same tuple is later the reply direction of
  // web-1's DNS query to db-1 from that port.
  auto stray = test::ip("10.1.0.2", "10.1.0.1", kUdp, test::udp(53, 40300));
  auto query = test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(40300, 53));
  for (int i = 0; i < 3; ++i) {
    EXPECT_OUTCOME(from_vm("zwdB", stray), false, "drop_policy", "db-web-deny");
    EXPECT_OUTCOME(run(Prog::kFromVmXdp, "zwdB", with_vm_mac("zwdB", stray)), false,
                   "drop_policy", "db-web-deny");
    EXPECT_OUTCOME(to_vm("zwdA", stray), false, "drop_policy", "db-web-deny");
  }
  EXPECT_OUTCOME(from_vm("zwdA", query), true, "pass_new", "web-db-dns");
  for (int i = 0; i < 2; ++i) {
    EXPECT_OUTCOME(from_vm("zwdB", stray), true, "pass_ct", "web-db-dns");
    EXPECT_OUTCOME(run(Prog::kFromVmXdp, "zwdB", with_vm_mac("zwdB", stray)), true, "pass_ct",
                   "web-db-dns");
    EXPECT_OUTCOME(to_vm("zwdA", stray), true, "pass_ct", "web-db-dns");
  }
  // A TCP SYN the same way: denied and cached, then the other side's SYN
  // opens the flow and the first one's tuple is its reply's.
  auto syn_back = test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(5432, 40301, 0x02));
  for (int i = 0; i < 3; ++i)
    EXPECT_OUTCOME(from_vm("zwdB", syn_back), false, "drop_policy", "db-web-deny");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(40301, 5432))),
                 true, "pass_new", "web-db-pg");
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kTcp,
                                          test::tcp(5432, 40301, 0x12))),
                 true, "pass_ct", "web-db-pg");
}

// The live flows of a tuple's bucket (zw_ct_born, low half) let the datapath
// skip the conntrack lookup when there are none: a count is only lowered
// after a delete it won, so a flow sharing the bucket with a deleted one is
// still found, and the counts always add up to the table.
TEST_F(DatapathTest, BucketLiveCountsNeverHideAFlow) {
  auto maps = datapath::open_pinned_maps(paths_.pin_dir);
  ASSERT_TRUE(maps.has_value());
  auto usage = datapath::CtUsageView::map(maps->ct_count.get());
  auto buckets = datapath::CtBucketsView::map(maps->ct_born.get());
  ASSERT_TRUE(usage && buckets);
  auto syn = [](uint16_t sport) {
    return test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(sport, 5432, 0x02));
  };
  auto syn_ack = [](uint16_t sport) {
    return test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(5432, sport, 0x12));
  };
  auto key_of = [&](uint16_t sport) -> std::optional<zw_ct_key> {
    auto keys = datapath::map_keys<zw_ct_key>(maps->ct.get());
    for (const auto& k : *keys)
      if (k.proto == kTcp && (ntohs(k.sport) == sport || ntohs(k.dport) == sport)) return k;
    return std::nullopt;
  };
  auto live_sum = [&] {
    uint64_t n = 0;
    for (uint32_t s = 0; s < ZW_CT_BORN_SLOTS; ++s) n += zw_ctb_live(buckets->word(s));
    return n;
  };
  auto table = [&] { return datapath::map_keys<zw_ct_key>(maps->ct.get())->size(); };

  // A probe flow gives the key's layout (the datapath's own); two source
  // ports whose flows share a bucket are found from it with the
  // controller's slot function, which must agree with the datapath's.
  EXPECT_OUTCOME(from_vm("zwdA", syn(42000)), true, "pass_new", "web-db-pg");
  auto k0 = key_of(42000);
  ASSERT_TRUE(k0.has_value());
  uint32_t s0 = datapath::CtBucketsView::slot_of(*k0);
  EXPECT_EQ(zw_ctb_live(buckets->word(s0)), 1u);
  EXPECT_GE(zw_ctb_born(buckets->word(s0)), 1u);
  auto with_port = [&](uint16_t sport) {
    zw_ct_key k = *k0;
    (ntohs(k.sport) == 42000 ? k.sport : k.dport) = htons(sport);
    return k;
  };
  std::map<uint32_t, uint16_t> seen;
  uint16_t a = 0, b = 0;
  for (uint32_t p = 42001; p < 65535 && !b; ++p) {
    uint32_t slot = datapath::CtBucketsView::slot_of(with_port(static_cast<uint16_t>(p)));
    if (slot == s0) continue;  // keep the probe's bucket out of it
    auto [it, fresh] = seen.emplace(slot, static_cast<uint16_t>(p));
    if (!fresh) a = it->second, b = static_cast<uint16_t>(p);
  }
  ASSERT_NE(b, 0) << "no two source ports share a bucket";
  uint32_t slot = datapath::CtBucketsView::slot_of(with_port(a));
  uint64_t before = buckets->word(slot);
  EXPECT_OUTCOME(from_vm("zwdA", syn(a)), true, "pass_new", "web-db-pg");
  EXPECT_OUTCOME(from_vm("zwdA", syn(b)), true, "pass_new", "web-db-pg");
  EXPECT_EQ(buckets->word(slot), before + 2 * ZW_CTB_ONE_FLOW);
  EXPECT_EQ(live_sum(), table());

  // a's flow deleted from user space: b's is still found (a SYN-ACK never
  // comes from the flow cache), both hooks.
  auto ka = key_of(a);
  ASSERT_TRUE(ka.has_value());
  zw_ct_entry ea{};
  ASSERT_TRUE(datapath::map_lookup(maps->ct.get(), *ka, &ea));
  ASSERT_TRUE(datapath::ct_forget(maps->ct.get(), *usage, *buckets, *ka, ea));
  EXPECT_FALSE(datapath::ct_forget(maps->ct.get(), *usage, *buckets, *ka, ea))
      << "a second delete must not count";
  EXPECT_EQ(zw_ctb_live(buckets->word(slot)), zw_ctb_live(before) + 1);
  EXPECT_OUTCOME(from_vm("zwdB", syn_ack(b)), true, "pass_ct", "web-db-pg");
  EXPECT_OUTCOME(to_vm("zwdA", syn_ack(b)), true, "pass_ct", "web-db-pg");
  EXPECT_OUTCOME(from_vm("zwdB", syn_ack(a)), false, "drop_tcp_no_syn", "");
  EXPECT_EQ(live_sum(), table());

  // b's flow idle for long (its entry aged in place, not re-inserted): the
  // datapath deletes it when it meets it and takes its own count off; the
  // sweep deletes the probe's.
  auto kb = key_of(b);
  ASSERT_TRUE(kb.has_value());
  zw_ct_entry eb{};
  ASSERT_TRUE(datapath::map_lookup(maps->ct.get(), *kb, &eb));
  eb.last_seen_ns = 1;
  ASSERT_TRUE(datapath::map_update(maps->ct.get(), *kb, eb, BPF_EXIST).has_value());
  EXPECT_EQ(zw_ctb_live(buckets->word(slot)), zw_ctb_live(before) + 1);
  EXPECT_OUTCOME(from_vm("zwdB", syn_ack(b)), false, "drop_tcp_no_syn", "");
  EXPECT_FALSE(key_of(b).has_value());
  EXPECT_EQ(buckets->word(slot), before + 2 * ZW_CTB_ONE_FLOW - 2);
  EXPECT_EQ(live_sum(), table());
  ASSERT_TRUE(engine::sweep_conntrack(*maps, ~0ULL >> 1).has_value());
  EXPECT_EQ(table(), 0u);
  EXPECT_EQ(live_sum(), 0u);
  EXPECT_EQ(zw_ctb_born(buckets->word(slot)), zw_ctb_born(before) + 2)
      << "births only grow";
  // No live flow anywhere: every packet without a flow is judged as one.
  EXPECT_OUTCOME(from_vm("zwdB", syn_ack(b)), false, "drop_tcp_no_syn", "");
  EXPECT_OUTCOME(from_vm("zwdA", syn(b)), true, "pass_new", "web-db-pg");
  EXPECT_OUTCOME(from_vm("zwdB", syn_ack(b)), true, "pass_ct", "web-db-pg");
}

TEST_F(DatapathTest, AuditZonePassesWhatItWouldDrop) {
  auto rep = apply_text(kAuditPolicy);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(50000, 3306))),
                 true, "pass_audit", "default:inter_zone");
  EXPECT_OUTCOME(
      from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(3306, 50000, 0x12))), true,
      "pass_audit", "default:inter_zone");
  auto back = apply_text(kPolicy);
  ASSERT_TRUE(back.has_value()) << back.error().str();
}

TEST_F(DatapathTest, FailedApplyLeavesNoHookAndKeepsThePolicy) {
  auto cfg_gen = [] {
    auto st = engine::status(paths_);
    return st ? (*st)["active_generation"].get<uint32_t>() : 0u;
  };
  uint32_t before = cfg_gen();
  // Someone else's XDP program (attached through netlink, not a link) makes
  // our XDP link creation on zwdF fail with EBUSY, after its tc egress hook
  // is already in place.
  ASSERT_TRUE(
      sh("ip link set dev zwdF xdpgeneric pinned " + paths_.pin_dir + "/progs/zw_from_vm_xdp"));
  auto rep = apply_text(
      kPolicy, "tc",
      R"(,{"name": "web-9", "interfaces": [{"name": "zwdF", "ips": ["10.1.0.9"], "attach": "xdp"}]})");
  sh("ip link set dev zwdF xdpgeneric off");
  ASSERT_FALSE(rep.has_value());
  EXPECT_NE(rep.error().str().find("zwdF"), std::string::npos) << rep.error().str();
  uint32_t zwdf = ifs_.at("zwdF").ifindex;
  for (auto hook : {datapath::TcHook::kIngress, datapath::TcHook::kEgress}) {
    auto id = datapath::tc_prog_id(static_cast<int>(zwdf), hook);
    ASSERT_TRUE(id.has_value());
    EXPECT_EQ(*id, 0u) << "a failed apply left a hook on zwdF";
  }
  EXPECT_EQ(cfg_gen(), before);
  // The live policy is untouched: same verdicts, and only its generation in the maps.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(51000, 5432))),
                 true, "pass_new", "web-db-pg");
  expect_settled();
}

TEST_F(DatapathTest, InterfaceVanishingMidApplyOnlySkipsThatInterface) {
  auto p = policy::parse(kPolicy, "test-policy.json");
  ASSERT_TRUE(p.has_value());
  auto inv = inventory::parse_static(R"({"vms": [
      {"name": "web-1", "interfaces": [{"name": "zwdA", "ips": ["10.1.0.1", "fd00::1"]}]},
      {"name": "db-1", "interfaces": [{"name": "zwdB", "ips": ["10.1.0.2", "fd00::2"]}]},
      {"name": "web-2", "interfaces": [{"name": "zwdC", "ips": ["10.1.0.3", "fd00::3"]}]}]})",
                                     "inv.json");
  ASSERT_TRUE(inv.has_value());
  std::optional<engine::PinLock> lock;
  if (auto l = engine::PinLock::acquire(paths_.pin_dir)) lock.emplace(std::move(*l));
  ASSERT_TRUE(lock.has_value());
  // zwdC "exists" when resolved but is gone by the time it is hooked.
  engine::ApplyInput in{.policy = &*p,
                        .inventory = &*inv,
                        .policy_source = "test-policy.json",
                        .inventory_source = "inv.json",
                        .default_attach = "tc",
                        .keep_hooked = {},
                        .resolve = [](const std::string& n) -> uint32_t {
                          return n == "zwdC" ? 0x7ffffff0u : if_nametoindex(n.c_str());
                        }};
  auto rep = engine::apply(paths_, in);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  EXPECT_EQ(rep->vanished, 1u);
  EXPECT_EQ(rep->attached, 2u);
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(52000, 5432))),
                 true, "pass_new", "web-db-pg");
  lock.reset();
  auto back = apply_text(kPolicy);
  ASSERT_TRUE(back.has_value()) << back.error().str();
}

TEST_F(DatapathTest, StatusReportsEveryEndpointEnforced) {
  auto st = engine::status(paths_);
  ASSERT_TRUE(st.has_value()) << st.error().str();
  EXPECT_EQ((*st)["endpoints"].size(), 3u);
  EXPECT_EQ((*st)["endpoints_enforced"].get<size_t>(), 3u) << st->dump(2);
}

// ---- events, zone pairs -----------------------------------------------

// Web asks for new-flow events; db silences denies; rules override both.
const char* kLogPolicy = R"({
  "version": 1,
  "zones": {
    "web": {"vms": ["web-*"], "log": {"new_flows": true}},
    "db": {"vms": ["db-*"], "log": {"deny": false}}
  },
  "rules": [
    {"name": "web-db-pg", "from": "web", "to": "db", "proto": "tcp", "ports": [5432], "action": "allow"},
    {"name": "web-db-dns", "from": "web", "to": "db", "proto": "udp", "ports": [53], "action": "allow", "log": false},
    {"name": "db-web-deny", "from": "db", "to": "web", "action": "deny", "log": true}
  ]
})";

class EventsTest : public DatapathTest {
 protected:
  // Everything waiting in the ring buffer, oldest first.
  static std::vector<zw_event> drain() {
    std::vector<zw_event> out;
    auto maps = datapath::open_pinned_maps(paths_.pin_dir);
    EXPECT_TRUE(maps.has_value());
    if (!maps) return out;
    auto r = datapath::EventReader::open(maps->events.get(),
                                         [&](const zw_event& e) { out.push_back(e); });
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().str());
    if (r) {
      EXPECT_TRUE(r->poll(0).has_value());
    }
    return out;
  }
  static void set_rate(uint32_t rate, uint32_t burst) {
    auto maps = datapath::open_pinned_maps(paths_.pin_dir);
    ASSERT_TRUE(maps.has_value());
    auto cfg = datapath::ConfigView::map(maps->config.get());
    ASSERT_TRUE(cfg.has_value());
    cfg->set_event_rate(rate, burst);
  }
  // Fills an endpoint's bucket with exactly `tokens` events now.
  static void fill_bucket(uint32_t ep_id, uint64_t tokens) {
    auto maps = datapath::open_pinned_maps(paths_.pin_dir);
    ASSERT_TRUE(maps.has_value());
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    zw_ev_bucket b{tokens * 1000000000ull, uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec};
    ASSERT_TRUE(datapath::map_update(maps->ev_bucket.get(), ep_id, b).has_value());
  }
  static engine::State state() {
    auto st = engine::read_state(paths_);
    EXPECT_TRUE(st && *st);
    return st && *st ? **st : engine::State{};
  }
  static uint32_t ep_id(const std::string& ifname) {
    for (const auto& e : state().endpoints)
      if (e.ifname == ifname) return e.id;
    ADD_FAILURE() << "no endpoint " << ifname;
    return 0;
  }
  static nlohmann::json ev_stats(const std::string& ifname) {
    auto st = engine::stats(paths_);
    EXPECT_TRUE(st.has_value());
    for (const auto& e : (*st)["endpoints"])
      if (e["ifname"] == ifname) return e["events"];
    return {};
  }
  void SetUp() override {
    DatapathTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    set_rate(ZW_EV_RATE_MAX, ZW_EV_RATE_MAX);
    drain();
  }
  void TearDown() override {
    set_rate(0, 0);
    drain();
    auto back = apply_text(kPolicy);
    EXPECT_TRUE(back.has_value()) << back.error().str();
  }
};

TEST_F(EventsTest, DeniedPacketEventCarriesEverything) {
  auto frame = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(45000, 5433));
  EXPECT_OUTCOME(from_vm("zwdA", frame), false, "drop_policy", "default:inter_zone");
  auto evs = drain();
  ASSERT_EQ(evs.size(), 1u);
  const zw_event& e = evs[0];
  engine::State st = state();
  EXPECT_EQ(e.reason, ZW_R_DROP_POLICY);
  EXPECT_EQ(e.rule_id, uint32_t{ZW_RULE_DEFAULT_INTER});
  EXPECT_EQ(e.hook, 0);
  EXPECT_EQ(e.ifindex, ifs_.at("zwdA").ifindex);
  EXPECT_EQ(e.ep_id, ep_id("zwdA"));
  EXPECT_EQ(e.src_zone, st.zones.at("web"));
  EXPECT_EQ(e.dst_zone, st.zones.at("db"));
  EXPECT_EQ(e.proto, kTcp);
  EXPECT_EQ(ntohs(e.sport), 45000);
  EXPECT_EQ(ntohs(e.dport), 5433);
  EXPECT_EQ(e.len, frame.size());
  EXPECT_EQ(e.gen, st.generation);
  EXPECT_EQ(net::Addr{std::to_array(e.saddr)}.str(), "10.1.0.1");
  EXPECT_EQ(net::Addr{std::to_array(e.daddr)}.str(), "10.1.0.2");
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t now = uint64_t(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
  EXPECT_LE(e.ts_ns, now);
  EXPECT_GT(e.ts_ns, now - 5000000000ull);
  // Named from state.json.
  auto j = engine::event_json(e, engine::flow_names(st), engine::monotonic_to_realtime_ns());
  EXPECT_EQ(j["verdict"], "deny");
  EXPECT_EQ(j["reason"], "drop_policy");
  EXPECT_EQ(j["rule"], "default:inter_zone");
  EXPECT_EQ(j["vm"], "web-1");
  EXPECT_EQ(j["src"]["vm"], "web-1");
  EXPECT_EQ(j["src"]["zone"], "web");
  EXPECT_EQ(j["dst"]["vm"], "db-1");
  EXPECT_EQ(j["dst"]["zone"], "db");
  EXPECT_EQ(j["dst"]["port"], 5433);
  EXPECT_EQ(j["proto"], "tcp");
  // IPv6 and ICMP: the type travels; an allowed new flow is silent by default.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("fd00::1", "fd00::2", kIcmp6, test::icmp(129, 0, 9))),
                 false, "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(45001, 5432))),
                 true, "pass_new", "web-db-pg");
  evs = drain();
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(net::Addr{std::to_array(evs[0].daddr)}.str(), "fd00::2");
  EXPECT_EQ(evs[0].proto, kIcmp6);
  EXPECT_EQ(evs[0].icmp_type, 129);
}

TEST_F(EventsTest, NonPolicyDropsAreReported) {
  // A spoofed source and a TCP packet without a flow: no rule, still events.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.77", "10.1.0.2", kTcp, test::tcp(45100, 5432))),
                 false, "drop_spoof_ip", "");
  EXPECT_OUTCOME(
      from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(45101, 5432, 0x10))), false,
      "drop_tcp_no_syn", "");
  auto evs = drain();
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(evs[0].reason, ZW_R_DROP_SPOOF_IP);
  EXPECT_EQ(evs[0].rule_id, uint32_t{ZW_RULE_NONE});
  EXPECT_EQ(evs[1].reason, ZW_R_DROP_TCP_NO_SYN);
}

TEST_F(EventsTest, LogSwitchesPerRuleAndZone) {
  auto rep = apply_text(kLogPolicy);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  drain();
  engine::State st = state();
  // web asks for new flows: reported.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(46000, 5432))),
                 true, "pass_new", "web-db-pg");
  // ... and reported once: the flow's further packets are not.
  EXPECT_OUTCOME(to_vm("zwdB", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(46000, 5432))),
                 true, "pass_ct", "web-db-pg");
  // The rule silences it.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kUdp, test::udp(46001, 53))),
                 true, "pass_new", "web-db-dns");
  // db silences denies from and to it: web -> db default deny is quiet.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(46002, 22))),
                 false, "drop_policy", "default:inter_zone");
  // The rule asks for its denies although db does not.
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(46003, 80))),
                 false, "drop_policy", "db-web-deny");
  auto evs = drain();
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(evs[0].reason, ZW_R_PASS_NEW);
  EXPECT_EQ(evs[0].rule_id, st.rule_ids.at("web-db-pg"));
  EXPECT_EQ(ntohs(evs[0].dport), 5432);
  EXPECT_EQ(evs[1].reason, ZW_R_DROP_POLICY);
  EXPECT_EQ(evs[1].rule_id, st.rule_ids.at("db-web-deny"));
  EXPECT_EQ(evs[1].ep_id, ep_id("zwdB"));
  auto j = engine::event_json(evs[0], engine::flow_names(st), 0);
  EXPECT_EQ(j["verdict"], "allow");
  EXPECT_EQ(j["rule"], "web-db-pg");
}

TEST_F(EventsTest, AuditShowsAsAudit) {
  auto rep = apply_text(kAuditPolicy);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  drain();
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(47000, 3306))),
                 true, "pass_audit", "default:inter_zone");
  // The audited flow's reply is not a new event.
  EXPECT_OUTCOME(
      from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(3306, 47000, 0x12))), true,
      "pass_audit", "default:inter_zone");
  auto evs = drain();
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].reason, ZW_R_PASS_AUDIT);
  auto j = engine::event_json(evs[0], engine::flow_names(state()), 0);
  EXPECT_EQ(j["verdict"], "audit");
  EXPECT_EQ(j["reason"], "pass_audit");
  // Audit traffic counts as audit on its zone pair.
  auto st = engine::stats(paths_);
  ASSERT_TRUE(st.has_value());
  bool found = false;
  for (const auto& zp : (*st)["zone_pairs"])
    if (zp["src_zone"] == "web" && zp["dst_zone"] == "db") {
      found = true;
      EXPECT_GE(zp["audit"]["packets"].get<uint64_t>(), 2u);
    }
  EXPECT_TRUE(found) << (*st)["zone_pairs"].dump();
}

// A deny rule in audit mode, and an enforcing deny rule that lands in an
// audit zone for one destination and not for another.
const char* kAuditRulePolicy = R"({
  "version": 1,
  "defaults": {"intra_zone": "allow", "inter_zone": "deny"},
  "zones": {
    "web": {"vms": ["web-1"]},
    "db": {"vms": ["db-*"]},
    "canary": {"vms": ["web-2"], "mode": "audit"}
  },
  "rules": [
    {"name": "no-mysql", "from": "web", "to": "db", "proto": "tcp", "ports": [3306], "action": "deny", "audit": true},
    {"name": "db-out-deny", "from": "db", "to": "*", "action": "deny"}
  ]
})";

TEST_F(EventsTest, AuditCountedPerRuleAndZonePair) {
  auto rep = apply_text(kAuditRulePolicy);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  drain();
  // Counters live as long as the pins (and zone ids are reused by name):
  // what this test adds is after - before.
  auto read = [] {
    auto st = engine::stats(paths_);
    EXPECT_TRUE(st.has_value()) << st.error().str();
    return st ? *st : nlohmann::json{};
  };
  auto rule = [](const nlohmann::json& st, const char* name, const char* k) {
    for (const auto& r : st["rules"])
      if (r["name"] == name) return r[k].get<uint64_t>();
    ADD_FAILURE() << "no rule " << name;
    return uint64_t{0};
  };
  auto pair = [](const nlohmann::json& st, const char* s, const char* d, const char* k) {
    for (const auto& zp : st["zone_pairs"])
      if (zp["src_zone"] == s && zp["dst_zone"] == d) return zp[k]["packets"].get<uint64_t>();
    return uint64_t{0};
  };
  auto st0 = read();
  // The audit rule passes what it would drop, and so does its reply.
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(47100, 3306))),
                 true, "pass_audit", "no-mysql");
  EXPECT_OUTCOME(
      from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(3306, 47100, 0x12))), true,
      "pass_audit", "no-mysql");
  // The enforcing rule: audited into the audit zone, dropped into web.
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.3", kTcp, test::tcp(47101, 80))),
                 true, "pass_audit", "db-out-deny");
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(47102, 80))),
                 false, "drop_policy", "db-out-deny");
  auto st1 = read();
  auto drule = [&](const char* name, const char* k) {
    return rule(st1, name, k) - rule(st0, name, k);
  };
  auto dpair = [&](const char* s, const char* d, const char* k) {
    return pair(st1, s, d, k) - pair(st0, s, d, k);
  };
  EXPECT_EQ(drule("no-mysql", "packets"), 2u);
  EXPECT_EQ(drule("no-mysql", "audit_packets"), 2u);
  EXPECT_EQ(drule("db-out-deny", "packets"), 2u);
  EXPECT_EQ(drule("db-out-deny", "audit_packets"), 1u);
  EXPECT_EQ(drule("default:inter_zone", "audit_packets"), 0u);
  for (const auto& r : st1["rules"])
    if (r["name"] == "no-mysql") {
      EXPECT_EQ(r["action"], "deny (audit)");
    }
  EXPECT_EQ(dpair("web", "db", "audit"), 2u);
  EXPECT_EQ(dpair("web", "db", "pass"), 0u);
  EXPECT_EQ(dpair("db", "canary", "audit"), 1u);
  EXPECT_EQ(dpair("db", "canary", "drop"), 0u);
  EXPECT_EQ(dpair("db", "web", "drop"), 1u);
  EXPECT_EQ(dpair("db", "web", "audit"), 0u);
  // The same numbers in the metrics the daemon serves.
  std::string text = daemon::render_metrics(
      st1, nlohmann::json{{"endpoints", nlohmann::json::array()}, {"endpoints_enforced", 0}},
      daemon::ApplyInfo{});
  for (const char* name : {"no-mysql", "db-out-deny"})
    EXPECT_NE(text.find("zonewall_rule_audit_packets_total{rule=\"" + std::string(name) + "\"} " +
                        std::to_string(rule(st1, name, "audit_packets")) + "\n"),
              std::string::npos)
        << text;
  EXPECT_NE(text.find("zonewall_zone_pair_packets_total{src_zone=\"db\",dst_zone=\"canary\","
                      "verdict=\"audit\"} " +
                      std::to_string(pair(st1, "db", "canary", "audit")) + "\n"),
            std::string::npos)
      << text;
  // Each audited new flow is one "audit" event (the reply is not new).
  auto names = engine::flow_names(state());
  size_t audits = 0;
  for (const auto& e : drain())
    if (engine::event_json(e, names, 0)["verdict"] == "audit") ++audits;
  EXPECT_EQ(audits, 2u);
}

TEST_F(EventsTest, RateLimitPerEndpointCountsSuppressed) {
  set_rate(1, 5);
  uint32_t a = ep_id("zwdA"), b = ep_id("zwdB");
  fill_bucket(a, 5);
  fill_bucket(b, 5);
  auto before_a = ev_stats("zwdA"), before_b = ev_stats("zwdB");
  auto fd = datapath::open_pinned_prog(paths_.pin_dir, Prog::kFromVmTc);
  ASSERT_TRUE(fd.has_value());
  // web-1 floods 40 denied packets; the bucket lets 5 (6 if a second passes) through.
  for (uint16_t i = 0; i < 40; ++i) {
    auto r = datapath::test_run(
        fd->get(), Prog::kFromVmTc, ifs_.at("zwdA").ifindex,
        with_vm_mac("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(48000 + i, 1))));
    ASSERT_TRUE(r.has_value());
    ASSERT_FALSE(r->pass);
  }
  // db-1's own denies still get through: its bucket is its own.
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(48100, 80))),
                 false, "drop_policy", "db-web-deny");
  auto evs = drain();
  size_t from_a = 0, from_b = 0;
  for (const auto& e : evs) {
    from_a += e.ep_id == a;
    from_b += e.ep_id == b;
  }
  EXPECT_GE(from_a, 5u);
  EXPECT_LE(from_a, 6u);
  EXPECT_EQ(from_b, 1u);
  auto after_a = ev_stats("zwdA"), after_b = ev_stats("zwdB");
  uint64_t emitted = after_a["emitted"].get<uint64_t>() - before_a["emitted"].get<uint64_t>();
  uint64_t suppressed =
      after_a["suppressed"].get<uint64_t>() - before_a["suppressed"].get<uint64_t>();
  EXPECT_EQ(emitted, from_a);
  EXPECT_EQ(suppressed, 40u - from_a);
  EXPECT_EQ(after_b["suppressed"], before_b["suppressed"]);
  EXPECT_EQ(after_a["lost"], before_a["lost"]);
}

TEST_F(EventsTest, ZonePairCounters) {
  auto pair_of = [](const std::string& s, const std::string& d) {
    auto st = engine::stats(paths_);
    EXPECT_TRUE(st.has_value());
    for (const auto& zp : (*st)["zone_pairs"])
      if (zp["src_zone"] == s && zp["dst_zone"] == d) return zp;
    return nlohmann::json{{"pass", {{"packets", 0}, {"bytes", 0}}},
                          {"drop", {{"packets", 0}, {"bytes", 0}}},
                          {"audit", {{"packets", 0}, {"bytes", 0}}}};
  };
  auto n = [](const nlohmann::json& zp, const char* k) { return zp[k]["packets"].get<uint64_t>(); };
  auto wd0 = pair_of("web", "db"), dw0 = pair_of("db", "web");
  auto syn = test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(49500, 5432));
  auto synack = test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(5432, 49500, 0x12));
  EXPECT_OUTCOME(from_vm("zwdA", syn), true, "pass_new", "web-db-pg");
  EXPECT_OUTCOME(to_vm("zwdB", syn), true, "pass_ct", "web-db-pg");
  EXPECT_OUTCOME(from_vm("zwdB", synack), true, "pass_ct", "web-db-pg");
  EXPECT_OUTCOME(from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(49501, 1))),
                 false, "drop_policy", "default:inter_zone");
  EXPECT_OUTCOME(from_vm("zwdB", test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(49502, 80))),
                 false, "drop_policy", "db-web-deny");
  auto wd1 = pair_of("web", "db"), dw1 = pair_of("db", "web");
  // Replies count on their flow's pair (web -> db), not on db -> web.
  EXPECT_EQ(n(wd1, "pass") - n(wd0, "pass"), 3u);
  EXPECT_EQ(n(wd1, "drop") - n(wd0, "drop"), 1u);
  EXPECT_EQ(n(dw1, "pass") - n(dw0, "pass"), 0u);
  EXPECT_EQ(n(dw1, "drop") - n(dw0, "drop"), 1u);
  EXPECT_EQ(wd1["pass"]["bytes"].get<uint64_t>() - wd0["pass"]["bytes"].get<uint64_t>(),
            2 * syn.size() + synack.size());
}

// The maps an apply wrote to, "map:written/deleted" in name order.
std::string changes(const engine::ApplyReport& r) {
  std::string out;
  for (const auto& [name, c] : r.changes)
    if (c.written || c.deleted)
      out += (out.empty() ? "" : " ") + name + ":" + std::to_string(c.written) + "/" +
             std::to_string(c.deleted);
  return out;
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

}  // namespace

// Incremental apply: an unchanged policy writes nothing; one changed rule
// writes its own entries only (endpoints and addresses untouched), its rule
// id and counter carry on, and packets are judged by the old policy until
// the flip and by the new one from the flip on, never a mixture.
TEST_F(DatapathTest, IncrementalApplyOneRuleChanged) {
  ASSERT_TRUE(apply_text(kPolicy).has_value());
  auto same = apply_text(kPolicy);
  ASSERT_TRUE(same.has_value()) << same.error().str();
  EXPECT_EQ(same->entries_written, 0u);
  EXPECT_EQ(same->entries_deleted, 0u);
  EXPECT_EQ(changes(*same), "");

  uint16_t sport = 52000;
  auto probe = [&](uint16_t port) {
    return from_vm("zwdA", test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(sport++, port)));
  };
  EXPECT_OUTCOME(probe(5432), true, "pass_new", "web-db-pg");
  uint64_t pg_hits = counts().rules["web-db-pg"];
  auto ids_before = engine::read_state(paths_);
  ASSERT_TRUE(ids_before.has_value() && ids_before->has_value());

  const std::string changed = replaced(kPolicy, R"("ports": [5432])", R"("ports": [5433])");
  int points = 0;
  auto rep = apply_text(changed, "tc", "", [&](std::string_view at) {
    ++points;
    bool flipped = at == "after-flip";
    SCOPED_TRACE(std::string(at));
    EXPECT_OUTCOME(probe(5432), !flipped, flipped ? "drop_policy" : "pass_new",
                   flipped ? "default:inter_zone" : "web-db-pg");
    EXPECT_OUTCOME(probe(5433), flipped, flipped ? "pass_new" : "drop_policy",
                   flipped ? "web-db-pg" : "default:inter_zone");
    EXPECT_OUTCOME(probe(8080), true, "pass_new", "web-db-range");
  });
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  EXPECT_EQ(points, 2);
  // The old port's entry: new slot emptied, then deleted; the new port's:
  // written, then settled. Nothing else.
  EXPECT_EQ(changes(*rep), "zw_policy:3/1");
  expect_settled();
  auto ids_after = engine::read_state(paths_);
  ASSERT_TRUE(ids_after.has_value() && ids_after->has_value());
  EXPECT_EQ((*ids_after)->rule_ids, (*ids_before)->rule_ids);
  EXPECT_EQ((*ids_after)->zones, (*ids_before)->zones);
  EXPECT_OUTCOME(probe(5433), true, "pass_new", "web-db-pg");
  EXPECT_GT(counts().rules["web-db-pg"], pg_hits) << "the rule's counter did not carry on";

  auto back = apply_text(kPolicy);
  ASSERT_TRUE(back.has_value()) << back.error().str();
  EXPECT_EQ(changes(*back), "zw_policy:3/1");
  expect_settled();
}

// One VM added, then its address changed, then removed: only its endpoint
// and address entries are written, each switch happens at the flip.
TEST_F(DatapathTest, IncrementalApplyOneVmAddedChangedRemoved) {
  ASSERT_TRUE(apply_text(kPolicy).has_value());
  uint16_t sport = 53000;
  auto from_x = [&](const char* src) {
    return from_vm("zwdX", test::ip(src, "10.1.0.2", kTcp, test::tcp(sport++, 5432)));
  };
  const std::string vm9 =
      R"(,{"name": "web-9", "interfaces": [{"name": "zwdX", "ips": ["10.1.0.9"]}]})";
  const std::string vm19 =
      R"(,{"name": "web-9", "interfaces": [{"name": "zwdX", "ips": ["10.1.0.19"]}]})";

  auto added = apply_text(kPolicy, "tc", vm9, [&](std::string_view at) {
    SCOPED_TRACE(std::string(at));
    if (at == "after-write")
      EXPECT_OUTCOME(from_x("10.1.0.9"), false, "drop_no_endpoint", "");
    else
      EXPECT_OUTCOME(from_x("10.1.0.9"), true, "pass_new", "web-db-pg");
  });
  ASSERT_TRUE(added.has_value()) << added.error().str();
  EXPECT_EQ(changes(*added), "zw_addrs:2/0 zw_endpoints:2/0");
  expect_settled();

  auto moved = apply_text(kPolicy, "tc", vm19, [&](std::string_view at) {
    SCOPED_TRACE(std::string(at));
    bool flipped = at == "after-flip";
    EXPECT_OUTCOME(from_x("10.1.0.9"), !flipped, flipped ? "drop_spoof_ip" : "pass_new",
                   flipped ? "" : "web-db-pg");
    EXPECT_OUTCOME(from_x("10.1.0.19"), flipped, flipped ? "pass_new" : "drop_spoof_ip",
                   flipped ? "web-db-pg" : "");
  });
  ASSERT_TRUE(moved.has_value()) << moved.error().str();
  EXPECT_EQ(changes(*moved), "zw_addrs:3/1");  // the endpoint itself is unchanged
  expect_settled();

  auto removed = apply_text(kPolicy, "tc", "", [&](std::string_view at) {
    SCOPED_TRACE(std::string(at));
    if (at == "after-write")
      EXPECT_OUTCOME(from_x("10.1.0.19"), true, "pass_new", "web-db-pg");
    else
      EXPECT_OUTCOME(from_x("10.1.0.19"), false, "drop_no_endpoint", "");
  });
  ASSERT_TRUE(removed.has_value()) << removed.error().str();
  EXPECT_EQ(changes(*removed), "zw_addrs:1/1 zw_endpoints:1/1");
  auto n = expect_settled();
  EXPECT_EQ(n["zw_endpoints"], 3u);  // zwdA, zwdB, zwdC
}

// A CIDR-zone prefix added inside another zone's prefix, then removed: the
// shared LPM trie must not let the new /25 shadow the old generation's /24
// before the flip, nor the old /25 shadow the new generation's /24 after it.
TEST_F(DatapathTest, IncrementalApplyCidrPrefixAddedRemoved) {
  // Without the "*" ping rules, a new zone adds no policy entries.
  std::string base = replaced(
      kPolicy,
      R"(    {"name": "ping", "from": "*", "to": "*", "proto": "icmp", "icmp_types": [8], "action": "allow"},)"
      "\n",
      "");
  base = replaced(
      base,
      R"(    {"name": "ping6", "from": "*", "to": "*", "proto": "icmpv6", "icmp_types": [128], "action": "allow"},)"
      "\n",
      "");
  const std::string lab =
      replaced(base, R"("office": {"cidrs": ["198.51.100.0/24", "2001:db8:1::/48"]})",
               R"("office": {"cidrs": ["198.51.100.0/24", "2001:db8:1::/48"]},
    "lab": {"cidrs": ["198.51.100.128/25"]})");
  ASSERT_TRUE(apply_text(base).has_value());
  uint16_t sport = 54000;
  auto from_ext = [&](const char* src) {
    return to_vm("zwdA", test::ip(src, "10.1.0.1", kTcp, test::tcp(sport++, 80)));
  };
  EXPECT_OUTCOME(from_ext("198.51.100.200"), true, "pass_new", "office-web-http");

  auto added = apply_text(lab, "tc", "", [&](std::string_view at) {
    SCOPED_TRACE(std::string(at));
    bool flipped = at == "after-flip";
    EXPECT_OUTCOME(from_ext("198.51.100.200"), !flipped, flipped ? "drop_policy" : "pass_new",
                   flipped ? "default:inter_zone" : "office-web-http");
    EXPECT_OUTCOME(from_ext("198.51.100.1"), true, "pass_new", "office-web-http");
  });
  ASSERT_TRUE(added.has_value()) << added.error().str();
  EXPECT_EQ(changes(*added), "zw_cidrs:2/0");
  expect_settled();
  EXPECT_OUTCOME(from_ext("198.51.100.200"), false, "drop_policy", "default:inter_zone");

  auto removed = apply_text(base, "tc", "", [&](std::string_view at) {
    SCOPED_TRACE(std::string(at));
    bool flipped = at == "after-flip";
    EXPECT_OUTCOME(from_ext("198.51.100.200"), flipped, flipped ? "pass_new" : "drop_policy",
                   flipped ? "office-web-http" : "default:inter_zone");
  });
  ASSERT_TRUE(removed.has_value()) << removed.error().str();
  EXPECT_EQ(changes(*removed), "zw_cidrs:1/1");
  auto n = expect_settled();
  EXPECT_EQ(n["zw_cidrs"], 2u);  // office's two prefixes
  EXPECT_OUTCOME(from_ext("198.51.100.200"), true, "pass_new", "office-web-http");

  ASSERT_TRUE(apply_text(kPolicy).has_value());
}

}  // namespace zw

