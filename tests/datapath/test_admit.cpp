// Admission (engine/admit.h) against the real maps: a VM interface the last
// apply named but could not hook is put under exactly the endpoint that
// apply decided (the next apply finds nothing to write for it), frames run
// through the production program then get that VM's policy; and admission
// refuses, writing nothing, whenever the live maps are not as that apply
// left them. Private network namespace, veths, unique pins; root.
#include <gtest/gtest.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "datapath/attach.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "datapath/test_run.h"
#include "engine/admit.h"
#include "engine/reconcile.h"
#include "inventory/static_json.h"
#include "packet.h"
#include "policy/json.h"

namespace zw {
namespace {

const char* kPolicy = R"({
  "version": 1,
  "zones": {"web": {"vms": ["web-*"]}, "db": {"vms": ["db-*"]}},
  "rules": [{"name": "web-db-pg", "from": "web", "to": "db", "proto": "tcp", "ports": [5432], "action": "allow"}]
})";

const char* kInventory = R"({"vms": [
  {"name": "web-1", "interfaces": [{"name": "zwaW", "mac": "52:54:00:40:00:01", "ips": ["10.4.0.1", "fd04::1"], "allowed_addresses": ["10.4.0.100"]}]},
  {"name": "db-1", "interfaces": [{"name": "zwaD", "mac": "52:54:00:40:00:02", "ips": ["10.4.0.2"]}]}
]})";

class AdmitTest : public ::testing::Test {
 protected:
  static inline bool ready_ = false;
  static inline std::string why_;
  static inline engine::Paths paths_;

  static bool sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }

  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      why_ = "admission tests need root (CAP_BPF, CAP_NET_ADMIN)";
      return;
    }
    if (unshare(CLONE_NEWNET) != 0) {
      why_ = "unshare(CLONE_NEWNET) failed";
      return;
    }
    sh("ip link set lo up; sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
       "net.ipv6.conf.default.disable_ipv6=1");
    if (!sh("ip link add zwaD type veth peer name zwaDp && ip link set zwaD up")) {
      why_ = "cannot create veth zwaD";
      return;
    }
    paths_ = engine::make_paths("/sys/fs/bpf/zw-admit-" + std::to_string(getpid()));
    datapath::install_libbpf_logger();
    if (auto st = datapath::ensure_bpffs(paths_.pin_dir); !st) {
      why_ = st.error().str();
      return;
    }
    ready_ = true;
  }

  static void TearDownTestSuite() {
    if (!paths_.pin_dir.empty())
      if (auto lock = engine::PinLock::acquire(paths_.pin_dir)) (void)engine::down(paths_);
  }

  void SetUp() override {
    if (ready_) return;
    if (std::getenv("CI") || std::getenv("ZW_REQUIRE_PRIVILEGED"))
      FAIL() << "cannot run admission tests in CI: " << why_;
    GTEST_SKIP() << why_;
  }

  void TearDown() override { sh("ip link del zwaW 2>/dev/null"); }

  static Result<engine::ApplyReport> apply() {
    auto p = policy::parse(kPolicy, "admit-policy.json");
    if (!p) return fail(std::move(p.error()));
    auto inv = inventory::parse_static(kInventory, "admit-inventory.json");
    if (!inv) return fail(std::move(inv.error()));
    auto lock = engine::PinLock::acquire(paths_.pin_dir);
    if (!lock) return fail(std::move(lock.error()));
    engine::ApplyInput in{.policy = &*p,
                          .inventory = &*inv,
                          .policy_source = "admit-policy.json",
                          .inventory_source = "admit-inventory.json"};
    in.admissions = true;
    return engine::apply(paths_, in);
  }

  // Every entry of the maps admission writes, as raw bytes.
  static std::string snapshot(const datapath::Maps& m) {
    std::string out;
    auto add = [&](auto entries) {
      ASSERT_TRUE(entries.has_value());
      for (const auto& [k, v] : *entries) {
        out.append(reinterpret_cast<const char*>(&k), sizeof k);
        out.append(reinterpret_cast<const char*>(&v), sizeof v);
      }
    };
    add(datapath::map_entries<zw_endpoint_key, zw_endpoint_val>(m.endpoints.get()));
    add(datapath::map_entries<zw_addr_key, zw_addr_val>(m.addrs.get()));
    add(datapath::map_entries<zw_pair_key, uint32_t>(m.pairs.get()));
    return out;
  }

  static bool passes(uint32_t ifindex, const std::string& src, const std::string& dst,
                     uint16_t port) {
    auto fd = datapath::open_pinned_prog(paths_.pin_dir, datapath::Prog::kFromVmTc);
    EXPECT_TRUE(fd.has_value());
    if (!fd) return false;
    static uint16_t sport = 40000;
    auto frame = test::ip(src, dst, 6, test::tcp(sport++, port));
    const uint8_t mac[6] = {0x52, 0x54, 0, 0x40, 0, 0x01};
    std::copy(mac, mac + 6, frame.begin() + 6);
    auto r = datapath::test_run(fd->get(), datapath::Prog::kFromVmTc, ifindex, frame);
    EXPECT_TRUE(r.has_value());
    return r && r->pass;
  }

  // zwaW created now, hooked as the daemon's tap thread would have.
  static uint32_t create_web_interface() {
    EXPECT_TRUE(sh("ip link add zwaW type veth peer name zwaWp && ip link set zwaW up"));
    uint32_t ifx = if_nametoindex("zwaW");
    auto obj = datapath::open_pinned_prog(paths_.pin_dir, datapath::Prog::kFromVmTc);
    EXPECT_TRUE(obj.has_value());
    EXPECT_TRUE(datapath::ensure_clsact(static_cast<int>(ifx)).has_value());
    EXPECT_TRUE(datapath::attach_tc(static_cast<int>(ifx), datapath::TcHook::kIngress, obj->get())
                    .has_value());
    return ifx;
  }
};

TEST_F(AdmitTest, NewInterfaceGetsExactlyWhatTheNextApplyWouldWrite) {
  auto rep = apply();
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  ASSERT_TRUE(rep->admissions);
  ASSERT_TRUE(rep->admissions->count("zwaW"));
  const engine::Admissible& a = rep->admissions->at("zwaW");
  EXPECT_EQ(a.ifindex, 0u) << "zwaW did not exist at the apply";
  EXPECT_EQ(a.generation, rep->generation);
  EXPECT_EQ(a.own.size(), 2u);
  EXPECT_EQ(a.allowed.size(), 1u);

  uint32_t ifx = create_web_interface();
  EXPECT_FALSE(passes(ifx, "10.4.0.1", "10.4.0.2", 5432)) << "no endpoint yet: fail closed";
  auto maps = datapath::open_pinned_maps(paths_.pin_dir);
  ASSERT_TRUE(maps.has_value());
  std::string why;
  auto r = engine::admit(*maps, a, ifx, &why);
  ASSERT_TRUE(r.has_value()) << r.error().str();
  ASSERT_TRUE(r->has_value()) << why;
  EXPECT_EQ((*r)->entries_written, 4u) << "endpoint, two addresses, one allowed pair";

  zw_endpoint ep{};
  ASSERT_TRUE(datapath::lookup_endpoint(maps->endpoints.get(), rep->generation, ifx, &ep));
  EXPECT_EQ(std::memcmp(&ep, &a.value, sizeof ep), 0);
  zw_addr_info ai{};
  ASSERT_TRUE(datapath::lookup_addr(maps->addrs.get(), rep->generation, a.own[0].addr, &ai));
  EXPECT_EQ(ai.ifindex, ifx);

  // The VM's policy, through the production program on its interface.
  EXPECT_TRUE(passes(ifx, "10.4.0.1", "10.4.0.2", 5432)) << "web-db-pg";
  EXPECT_FALSE(passes(ifx, "10.4.0.1", "10.4.0.2", 5433)) << "no rule for 5433";
  EXPECT_FALSE(passes(ifx, "10.4.0.2", "10.4.0.1", 5432)) << "db-1's address from web-1";
  EXPECT_TRUE(passes(ifx, "10.4.0.100", "10.4.0.2", 5432)) << "its allowed address pair";

  // Admitting it again: refused, nothing written.
  std::string before = snapshot(*maps);
  auto again = engine::admit(*maps, a, ifx, &why);
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->has_value());
  EXPECT_EQ(snapshot(*maps), before);

  // The next apply finds the admitted entries exactly as it wants them.
  auto next = apply();
  ASSERT_TRUE(next.has_value()) << next.error().str();
  EXPECT_EQ(next->changes["zw_endpoints"].written, 0u);
  EXPECT_EQ(next->changes["zw_addrs"].written, 0u);
  EXPECT_EQ(next->changes["zw_pairs"].written, 0u);
  EXPECT_EQ(next->admissions->at("zwaW").ifindex, ifx);
  EXPECT_TRUE(passes(ifx, "10.4.0.1", "10.4.0.2", 5432));
}

TEST_F(AdmitTest, RefusesAndWritesNothingWhenTheMapsMovedOn) {
  auto rep = apply();
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  const engine::Admissible stale = rep->admissions->at("zwaW");
  auto next = apply();  // another generation is live now
  ASSERT_TRUE(next.has_value()) << next.error().str();
  uint32_t ifx = create_web_interface();
  auto maps = datapath::open_pinned_maps(paths_.pin_dir);
  ASSERT_TRUE(maps.has_value());
  const std::string before = snapshot(*maps);
  auto refused = [&](const engine::Admissible& a, uint32_t index, const char* expect) {
    std::string why;
    auto r = engine::admit(*maps, a, index, &why);
    ASSERT_TRUE(r.has_value()) << r.error().str();
    EXPECT_FALSE(r->has_value()) << expect;
    EXPECT_NE(why.find(expect), std::string::npos) << why;
    EXPECT_EQ(snapshot(*maps), before) << "a refusal wrote something: " << expect;
  };
  refused(stale, ifx, "is live");

  engine::Admissible a = next->admissions->at("zwaW");
  // The VM's interface of the last apply still exists (zwaD stands in).
  engine::Admissible old_alive = a;
  old_alive.ifindex = if_nametoindex("zwaD");
  refused(old_alive, ifx, "still exists");
  // Its address belongs to another VM's interface in the maps.
  engine::Admissible other = next->admissions->at("zwaD");
  other.ifindex = 0;
  refused(other, ifx, "another zone or owner");
  // The index already has an endpoint (db-1's).
  refused(a, if_nametoindex("zwaD"), "already has an endpoint");
  // And the genuine one still goes through.
  std::string why;
  auto ok = engine::admit(*maps, a, ifx, &why);
  ASSERT_TRUE(ok.has_value());
  EXPECT_TRUE(ok->has_value()) << why;
  EXPECT_TRUE(passes(ifx, "10.4.0.1", "10.4.0.2", 5432));
}

}  // namespace
}  // namespace zw
