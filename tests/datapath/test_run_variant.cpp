// The dry-run/verdict variant (ZW_RUN_DRY | ZW_RUN_VERDICT) that `trace` and
// `test` load: it returns the encoded verdict, sees the live maps (policy and
// conntrack), and changes nothing: no conntrack entry, no counter, and the
// pinned and attached production programs stay what they were.
#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "datapath/attach.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "datapath/test_run.h"
#include "engine/inspect.h"
#include "engine/reconcile.h"
#include "engine/state.h"
#include "inventory/static_json.h"
#include "packet.h"
#include "policy/json.h"
#include "util/fd.h"

namespace zw {
namespace {

using datapath::Prog;
using test::Bytes;

constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1;

const char* kPolicy = R"({
  "version": 1,
  "defaults": {"intra_zone": "allow", "inter_zone": "deny"},
  "zones": {"web": {"vms": ["web-*"]}, "db": {"vms": ["db-*"]}},
  "rules": [
    {"name": "web-db-pg", "from": "web", "to": "db", "proto": "tcp", "ports": [5432], "action": "allow"},
    {"name": "web-db-dns", "from": "web", "to": "db", "proto": "udp", "ports": [53], "action": "allow"},
    {"name": "db-web-deny", "from": "db", "to": "web", "action": "deny"}
  ]
})";

const char* kInventory = R"({"vms": [
  {"name": "web-1", "interfaces": [{"name": "zwvA", "mac": "52:54:00:00:00:01", "ips": ["10.1.0.1", "fd00::1"]}]},
  {"name": "db-1", "interfaces": [{"name": "zwvB", "mac": "52:54:00:00:00:02", "ips": ["10.1.0.2", "fd00::2"]}]}
]})";

class RunVariantTest : public ::testing::Test {
 protected:
  static inline bool ready_ = false;
  static inline std::string why_;
  static inline engine::Paths paths_;
  static inline std::map<std::string, uint32_t> ifx_;
  static inline std::map<std::string, uint32_t> rule_ids_;
  static inline std::optional<datapath::Object> variant_;

  static bool sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }

  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      why_ = "datapath tests need root (CAP_BPF, CAP_NET_ADMIN)";
      return;
    }
    if (unshare(CLONE_NEWNET) != 0) {
      why_ = "unshare(CLONE_NEWNET) failed";
      return;
    }
    paths_ = engine::make_paths("/sys/fs/bpf/zw-obs-trace-var-" + std::to_string(getpid()));
    datapath::install_libbpf_logger();
    sh("ip link set lo up");
    sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
    for (const char* n : {"zwvA", "zwvB"}) {
      std::string h = n;
      if (!sh("ip link add " + h + " type veth peer name " + h + "p && ip link set " + h +
              " up && ip link set " + h + "p up")) {
        why_ = "cannot create veth " + h;
        return;
      }
      ifx_[h] = if_nametoindex(n);
    }
    auto p = policy::parse(kPolicy, "variant-policy.json");
    auto inv = inventory::parse_static(kInventory, "variant-inventory.json");
    if (!p || !inv) {
      why_ = "bad fixture";
      return;
    }
    {
      auto lock = engine::PinLock::acquire(paths_.pin_dir);
      if (!lock) {
        why_ = lock.error().str();
        return;
      }
      engine::ApplyInput in{
          .policy = &*p, .inventory = &*inv, .policy_source = "p", .inventory_source = "i"};
      if (auto rep = engine::apply(paths_, in); !rep) {
        why_ = "apply: " + rep.error().str();
        return;
      }
    }
    auto st = engine::read_state(paths_);
    if (!st || !*st) {
      why_ = "no state after apply";
      return;
    }
    rule_ids_ = (**st).rule_ids;
    auto v = datapath::Object::load(
        paths_.pin_dir,
        {.run_mode = ZW_RUN_DRY | ZW_RUN_VERDICT, .pin_progs = false, .create_maps = false});
    if (!v) {
      why_ = "load variant: " + v.error().str();
      return;
    }
    variant_.emplace(std::move(*v));
    ready_ = true;
  }

  static void TearDownTestSuite() {
    variant_.reset();
    if (!paths_.pin_dir.empty())
      if (auto lock = engine::PinLock::acquire(paths_.pin_dir)) (void)engine::down(paths_);
  }

  void SetUp() override {
    if (ready_) return;
    if (std::getenv("CI") || std::getenv("ZW_REQUIRE_PRIVILEGED"))
      FAIL() << "cannot run datapath tests in CI: " << why_;
    GTEST_SKIP() << why_;
  }

  static Bytes with_mac(uint8_t last, Bytes f) {
    const uint8_t mac[6] = {0x52, 0x54, 0, 0, 0, last};
    std::copy(mac, mac + 6, f.begin() + 6);
    return f;
  }

  static datapath::RunVerdict verdict(Prog p, const std::string& ifname, const Bytes& f) {
    auto r = datapath::test_run_verdict(variant_->prog_fd(p), p, ifx_.at(ifname), f);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().str());
    return r ? *r : datapath::RunVerdict{ZW_RULE_NONE, ZW_R_MAX};
  }

  // Everything a packet could change: conntrack keys and entries, every
  // reason, rule and endpoint counter.
  static std::string snapshot() {
    auto maps = datapath::open_pinned_maps(paths_.pin_dir);
    EXPECT_TRUE(maps.has_value());
    if (!maps) return "";
    std::string out;
    auto keys = datapath::map_keys<zw_ct_key>(maps->ct.get());
    EXPECT_TRUE(keys.has_value());
    for (const auto& k : *keys) {
      zw_ct_entry e{};
      if (datapath::map_lookup(maps->ct.get(), k, &e))
        out += "ct " + std::to_string(k.sport) + ">" + std::to_string(k.dport) + " seen " +
               std::to_string(e.last_seen_ns) + " gen " + std::to_string(e.gen) + "\n";
    }
    auto st = engine::stats(paths_);
    EXPECT_TRUE(st.has_value());
    if (st) {
      // Relative to now, so it moves by itself; last_hit_ns moves only with
      // the packet counts compared here.
      for (auto& r : (*st)["rules"]) r.erase("last_hit_seconds_ago");
      out += st->dump(1);
    }
    return out;
  }

  static size_t ct_entries() {
    auto maps = datapath::open_pinned_maps(paths_.pin_dir);
    auto keys = datapath::map_keys<zw_ct_key>(maps->ct.get());
    return keys ? keys->size() : 0;
  }
};

TEST_F(RunVariantTest, ReturnsEncodedVerdictWithoutSideEffects) {
  std::string before = snapshot();
  size_t ct_before = ct_entries();
  auto syn = with_mac(1, test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(41000, 5432)));
  auto v = verdict(Prog::kFromVmTc, "zwvA", syn);
  EXPECT_EQ(v.reason, ZW_R_PASS_NEW);
  EXPECT_EQ(v.rule_id, rule_ids_.at("web-db-pg"));
  EXPECT_TRUE(v.pass());
  // Same code, XDP flavour (a real interface of this namespace).
  v = verdict(Prog::kFromVmXdp, "zwvA", syn);
  EXPECT_EQ(v.reason, ZW_R_PASS_NEW);
  EXPECT_EQ(v.rule_id, rule_ids_.at("web-db-pg"));
  // No flow was created, so the receiving side judges the SYN itself.
  v = verdict(Prog::kToVmTc, "zwvB", syn);
  EXPECT_EQ(v.reason, ZW_R_PASS_NEW);
  EXPECT_EQ(v.rule_id, rule_ids_.at("web-db-pg"));

  v = verdict(Prog::kFromVmTc, "zwvA",
              with_mac(1, test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(41001, 5433))));
  EXPECT_EQ(v.reason, ZW_R_DROP_POLICY);
  EXPECT_EQ(v.rule_id, static_cast<uint32_t>(ZW_RULE_DEFAULT_INTER));
  EXPECT_FALSE(v.pass());
  v = verdict(Prog::kFromVmTc, "zwvB",
              with_mac(2, test::ip("10.1.0.2", "10.1.0.1", kUdp, test::udp(5000, 53))));
  EXPECT_EQ(v.reason, ZW_R_DROP_POLICY);
  EXPECT_EQ(v.rule_id, rule_ids_.at("db-web-deny"));
  // Anti-spoofing runs too: web-1 claiming db-1's address.
  v = verdict(Prog::kFromVmTc, "zwvA",
              with_mac(1, test::ip("10.1.0.2", "10.1.0.1", kIcmp, test::icmp(8))));
  EXPECT_EQ(v.reason, ZW_R_DROP_SPOOF_IP);
  EXPECT_EQ(v.rule_id, static_cast<uint32_t>(ZW_RULE_NONE));

  EXPECT_EQ(ct_entries(), ct_before);
  EXPECT_EQ(snapshot(), before) << "the dry run changed conntrack or counters";
}

TEST_F(RunVariantTest, SeesLiveConntrackWithoutRefreshingIt) {
  // A real flow through the production program (which does create state).
  auto prod = datapath::open_pinned_prog(paths_.pin_dir, Prog::kFromVmTc);
  ASSERT_TRUE(prod.has_value());
  auto syn = with_mac(1, test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(42000, 5432)));
  auto r = datapath::test_run(prod->get(), Prog::kFromVmTc, ifx_.at("zwvA"), syn);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->pass);
  std::string before = snapshot();
  // The dry run's reply finds that flow: decided by conntrack, not policy
  // (db -> web is denied by db-web-deny for a new flow).
  auto synack = with_mac(2, test::ip("10.1.0.2", "10.1.0.1", kTcp, test::tcp(5432, 42000, 0x12)));
  sleep(1);  // past ZW_CT_REFRESH_NS: a production lookup would refresh last_seen
  auto v = verdict(Prog::kFromVmTc, "zwvB", synack);
  EXPECT_EQ(v.reason, ZW_R_PASS_CT);
  EXPECT_EQ(v.rule_id, rule_ids_.at("web-db-pg"));
  EXPECT_EQ(snapshot(), before);
}

TEST_F(RunVariantTest, SyntheticIfindexThroughCb) {
  // Not an endpoint of the policy: the interface is taken from cb[0].
  auto syn = with_mac(1, test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(43000, 5432)));
  auto r =
      datapath::test_run_verdict(variant_->prog_fd(Prog::kFromVmTc), Prog::kFromVmTc, 987654, syn);
  ASSERT_TRUE(r.has_value()) << r.error().str();
  EXPECT_EQ(r->reason, ZW_R_DROP_NO_ENDPOINT);
}

TEST_F(RunVariantTest, ProductionProgramsUntouched) {
  // The variant was loaded after apply: pins and attached filters are still
  // the production instance, which still returns plain actions.
  for (Prog p : {Prog::kFromVmXdp, Prog::kFromVmTc, Prog::kToVmTc}) {
    auto fd = datapath::open_pinned_prog(paths_.pin_dir, p);
    ASSERT_TRUE(fd.has_value());
    EXPECT_NE(datapath::prog_id_of_fd(fd->get()), datapath::prog_id_of_fd(variant_->prog_fd(p)));
  }
  auto pinned_in = datapath::open_pinned_prog(paths_.pin_dir, Prog::kFromVmTc);
  auto pinned_out = datapath::open_pinned_prog(paths_.pin_dir, Prog::kToVmTc);
  auto in = datapath::tc_prog_id(static_cast<int>(ifx_.at("zwvA")), datapath::TcHook::kIngress);
  auto out = datapath::tc_prog_id(static_cast<int>(ifx_.at("zwvA")), datapath::TcHook::kEgress);
  ASSERT_TRUE(in.has_value() && out.has_value());
  EXPECT_EQ(*in, datapath::prog_id_of_fd(pinned_in->get()));
  EXPECT_EQ(*out, datapath::prog_id_of_fd(pinned_out->get()));

  auto syn = with_mac(1, test::ip("10.1.0.1", "10.1.0.2", kTcp, test::tcp(44000, 5433)));
  auto r = datapath::test_run(pinned_in->get(), Prog::kFromVmTc, ifx_.at("zwvA"), syn);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->retval, 2u);  // TC_ACT_SHOT, not an encoded verdict
}

TEST_F(RunVariantTest, VariantNeedsPinnedMaps) {
  auto v = datapath::Object::load(
      paths_.pin_dir + "-absent",
      {.run_mode = ZW_RUN_DRY | ZW_RUN_VERDICT, .pin_progs = false, .create_maps = false});
  ASSERT_FALSE(v.has_value());
  EXPECT_EQ(v.error().kind(), ErrorKind::kNotFound);
  EXPECT_NE(v.error().str().find("zw_config"), std::string::npos) << v.error().str();
}

// An upgrade whose datapath layout differs from the pinned maps' must say
// which maps and what to do, and change nothing (the old programs go on).
TEST_F(RunVariantTest, PinnedMapsOfAnotherLayoutAreNamedAndLeftAlone) {
  std::string dir = paths_.pin_dir + "-layout";
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::string d;
    ~Cleanup() { std::filesystem::remove_all(d); }
  } cleanup{dir};
  UniqueFd old(bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "zw_st_rule", 4, 24, 16, nullptr));
  ASSERT_TRUE(old) << "bpf_map_create";
  ASSERT_EQ(bpf_obj_pin(old.get(), (dir + "/zw_st_rule").c_str()), 0);

  auto obj = datapath::Object::load(dir, {});
  ASSERT_FALSE(obj.has_value());
  EXPECT_EQ(obj.error().kind(), ErrorKind::kInvalid);
  const std::string msg = obj.error().str();
  EXPECT_NE(msg.find("zw_st_rule: value size 24 pinned, " + std::to_string(sizeof(zw_rule_stats)) +
                     " in this build"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("zw_st_rule: max entries 16 pinned"), std::string::npos) << msg;
  EXPECT_NE(msg.find("zonewall down"), std::string::npos) << msg;
  // No map was created or pinned, no program loaded.
  EXPECT_FALSE(std::filesystem::exists(dir + "/zw_config"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/progs/zw_from_vm_tc"));
}

}  // namespace
}  // namespace zw
