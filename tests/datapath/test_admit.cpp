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
#include <tuple>
#include <vector>

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

  void TearDown() override {
    for (const char* n : {"zwaW", "zwaS", "zwaQ"})
      sh(std::string("ip link del ") + n + " 2>/dev/null");
  }

  static Result<engine::ApplyReport> apply() {
    auto inv = inventory::parse_static(kInventory, "admit-inventory.json");
    if (!inv) return fail(std::move(inv.error()));
    return apply(*inv);
  }

  static Result<engine::ApplyReport> apply(const inventory::Inventory& inv) {
    auto p = policy::parse(kPolicy, "admit-policy.json");
    if (!p) return fail(std::move(p.error()));
    auto lock = engine::PinLock::acquire(paths_.pin_dir);
    if (!lock) return fail(std::move(lock.error()));
    engine::ApplyInput in{.policy = &*p,
                          .inventory = &inv,
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
                     uint16_t port, uint8_t mac_last = 0x01) {
    auto fd = datapath::open_pinned_prog(paths_.pin_dir, datapath::Prog::kFromVmTc);
    EXPECT_TRUE(fd.has_value());
    if (!fd) return false;
    static uint16_t sport = 40000;
    auto frame = test::ip(src, dst, 6, test::tcp(sport++, port));
    const uint8_t mac[6] = {0x52, 0x54, 0, 0x40, 0, mac_last};
    std::copy(mac, mac + 6, frame.begin() + 6);
    auto r = datapath::test_run(fd->get(), datapath::Prog::kFromVmTc, ifindex, frame);
    EXPECT_TRUE(r.has_value());
    return r && r->pass;
  }

  // zwaW created now, hooked as the daemon's tap thread would have.
  static uint32_t create_web_interface(const std::string& name = "zwaW",
                                       const std::string& mac = "") {
    EXPECT_TRUE(sh("ip link add " + name + (mac.empty() ? "" : " address " + mac) +
                   " type veth peer name " + name + "p && ip link set " + name + " up"));
    uint32_t ifx = if_nametoindex(name.c_str());
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

// The admin's inventory plus stopped libvirt domains whose persistent config
// names a tap (as inventory::Libvirt reports them: no ifname, config_ifname).
inventory::Inventory with_stopped(
    std::vector<std::tuple<std::string, std::string, std::string, std::string>> stopped) {
  auto inv = inventory::parse_static(kInventory, "admit-inventory.json");
  EXPECT_TRUE(inv.has_value());
  for (const auto& [vm, tap, mac, ip] : stopped) {
    inventory::Endpoint e;
    e.vm_name = vm;
    e.config_ifname = tap;
    e.mac = net::parse_mac(mac);
    e.addrs.push_back(*net::parse_addr(ip));
    e.libvirt_type = "bridge";
    e.libvirt_tap = true;
    e.source = "libvirt test: domain '" + vm + "' interface 0";
    inv->endpoints.push_back(std::move(e));
  }
  return *inv;
}

// A stopped domain's VM gets, on the tap libvirt creates when it starts,
// exactly what the apply computed for it: admitted only once the tap has
// the host-side MAC libvirt gives it (fe: + the guest MAC's last five
// bytes), nothing written before; and the apply that then sees the VM
// running on that tap writes nothing for it.
TEST_F(AdmitTest, StartingVmTapIsAdmittedOnlyWithLibvirtsMac) {
  auto rep = apply(with_stopped({{"web-2", "zwaS", "52:54:00:40:00:03", "10.4.0.3"}}));
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  ASSERT_TRUE(rep->admissions->count("zwaS"));
  const engine::Admissible& a = rep->admissions->at("zwaS");
  EXPECT_TRUE(a.prospective);
  EXPECT_EQ(a.ifindex, 0u);
  ASSERT_TRUE(a.tap_mac.has_value());
  EXPECT_EQ(net::mac_str(*a.tap_mac), "fe:54:00:40:00:03");
  EXPECT_FALSE(rep->admissions->at("zwaW").prospective);

  // libvirt creates the tap first (a random MAC), sets its MAC after.
  uint32_t ifx = create_web_interface("zwaS", "02:11:22:33:44:55");
  auto maps = datapath::open_pinned_maps(paths_.pin_dir);
  ASSERT_TRUE(maps.has_value());
  const std::string before = snapshot(*maps);
  std::string why;
  bool retry = false;
  auto early = engine::admit(*maps, a, ifx, &why, &retry);
  ASSERT_TRUE(early.has_value()) << early.error().str();
  EXPECT_FALSE(early->has_value());
  EXPECT_TRUE(retry) << "the MAC may still come: " << why;
  EXPECT_NE(why.find("fe:54:00:40:00:03"), std::string::npos) << why;
  EXPECT_EQ(snapshot(*maps), before) << "a refusal wrote something";
  EXPECT_FALSE(passes(ifx, "10.4.0.3", "10.4.0.2", 5432, 0x03)) << "fail closed meanwhile";

  ASSERT_TRUE(sh("ip link set zwaS address fe:54:00:40:00:03"));
  auto r = engine::admit(*maps, a, ifx, &why, &retry);
  ASSERT_TRUE(r.has_value()) << r.error().str();
  ASSERT_TRUE(r->has_value()) << why;
  EXPECT_EQ((*r)->entries_written, 2u) << "its endpoint and its address";
  zw_endpoint ep{};
  ASSERT_TRUE(datapath::lookup_endpoint(maps->endpoints.get(), rep->generation, ifx, &ep));
  EXPECT_EQ(std::memcmp(&ep, &a.value, sizeof ep), 0);
  EXPECT_EQ(ep.zone, rep->state->zones.at("web"));
  // web-2's policy, as web: through the production program on its tap.
  EXPECT_TRUE(passes(ifx, "10.4.0.3", "10.4.0.2", 5432, 0x03)) << "web-db-pg";
  EXPECT_FALSE(passes(ifx, "10.4.0.3", "10.4.0.2", 5433, 0x03)) << "no rule for 5433";
  EXPECT_FALSE(passes(ifx, "10.4.0.1", "10.4.0.2", 5432, 0x03)) << "web-1's address";
  EXPECT_FALSE(passes(ifx, "10.4.0.3", "10.4.0.2", 5432, 0x01)) << "another MAC";

  // Libvirt then reports it running on that tap: nothing left to write.
  auto running = with_stopped({});
  inventory::Endpoint e;
  e.vm_name = "web-2";
  e.ifname = "zwaS";
  e.mac = net::parse_mac("52:54:00:40:00:03");
  e.addrs.push_back(*net::parse_addr("10.4.0.3"));
  e.libvirt_type = "bridge";
  e.libvirt_tap = true;
  e.source = "libvirt test: domain 'web-2' interface 0 (zwaS)";
  running.endpoints.push_back(e);
  auto next = apply(running);
  ASSERT_TRUE(next.has_value()) << next.error().str();
  EXPECT_EQ(next->changes["zw_endpoints"].written, 0u);
  EXPECT_EQ(next->changes["zw_addrs"].written, 0u);
  EXPECT_EQ(next->changes["zw_pairs"].written, 0u);
  EXPECT_FALSE(next->admissions->at("zwaS").prospective);
  EXPECT_EQ(next->admissions->at("zwaS").ifindex, ifx);
  ASSERT_TRUE(next->admissions->at("zwaS").tap_mac.has_value())
      << "a running libvirt VM's recreated tap must have libvirt's MAC too";
  EXPECT_EQ(net::mac_str(*next->admissions->at("zwaS").tap_mac), "fe:54:00:40:00:03");
  EXPECT_FALSE(next->admissions->at("zwaW").tap_mac.has_value()) << "a static entry's";
  EXPECT_TRUE(passes(ifx, "10.4.0.3", "10.4.0.2", 5432, 0x03));
}

// A stopped domain's tap name is admissible only when nothing else claims
// it: not when two stopped VM interfaces name it, not when a running VM (or
// a static entry) has an interface of that name.
TEST_F(AdmitTest, StartingVmTapNameMustBeUnambiguous) {
  auto rep = apply(with_stopped({{"web-2", "zwaS", "52:54:00:40:00:03", "10.4.0.3"},
                                 {"web-3", "zwaQ", "52:54:00:40:00:04", "10.4.0.4"},
                                 {"db-3", "zwaQ", "52:54:00:40:00:05", "10.4.0.5"},
                                 {"web-4", "zwaD", "52:54:00:40:00:06", "10.4.0.6"}}));
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  EXPECT_TRUE(rep->admissions->at("zwaS").prospective);
  EXPECT_FALSE(rep->admissions->count("zwaQ")) << "two stopped domains name it";
  ASSERT_TRUE(rep->admissions->count("zwaD"));
  EXPECT_FALSE(rep->admissions->at("zwaD").prospective) << "db-1 runs on it";
  EXPECT_EQ(rep->admissions->at("zwaD").vm, "db-1");

  // A tap under the ambiguous name, with either VM's libvirt MAC, gets
  // nothing: there is nothing to admit it as.
  uint32_t ifx = create_web_interface("zwaQ", "fe:54:00:40:00:04");
  auto maps = datapath::open_pinned_maps(paths_.pin_dir);
  ASSERT_TRUE(maps.has_value());
  zw_endpoint ep{};
  EXPECT_FALSE(datapath::lookup_endpoint(maps->endpoints.get(), rep->generation, ifx, &ep));
  EXPECT_FALSE(passes(ifx, "10.4.0.4", "10.4.0.2", 5432, 0x04));
}

// Refusals of a starting VM's tap write nothing: a generation moved on,
// a MAC that is not libvirt's for that VM, addresses the maps give another
// owner, another VM's interface (an index that already has an endpoint).
TEST_F(AdmitTest, RefusedStartingVmTapWritesNothing) {
  auto inv = with_stopped({{"web-2", "zwaS", "52:54:00:40:00:03", "10.4.0.3"}});
  auto rep = apply(inv);
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  const engine::Admissible stale = rep->admissions->at("zwaS");
  auto next = apply(inv);
  ASSERT_TRUE(next.has_value()) << next.error().str();
  const engine::Admissible a = next->admissions->at("zwaS");
  uint32_t ifx = create_web_interface("zwaS", "fe:54:00:40:00:03");
  auto maps = datapath::open_pinned_maps(paths_.pin_dir);
  ASSERT_TRUE(maps.has_value());
  const std::string before = snapshot(*maps);
  auto refused = [&](const engine::Admissible& x, uint32_t index, const char* expect,
                     bool want_retry) {
    std::string why;
    bool retry = !want_retry;
    auto r = engine::admit(*maps, x, index, &why, &retry);
    ASSERT_TRUE(r.has_value()) << r.error().str();
    EXPECT_FALSE(r->has_value()) << expect;
    EXPECT_NE(why.find(expect), std::string::npos) << why;
    EXPECT_EQ(retry, want_retry) << why;
    EXPECT_EQ(snapshot(*maps), before) << "a refusal wrote something: " << expect;
  };
  refused(stale, ifx, "is live", false);
  engine::Admissible other_vm = a;  // the tap of another VM with this name
  other_vm.tap_mac = net::parse_mac("fe:54:00:40:00:09");
  refused(other_vm, ifx, "is not fe:54:00:40:00:09", true);
  engine::Admissible taken = a;  // db-1's address: its owner is zwaD
  taken.own = next->admissions->at("zwaD").own;
  refused(taken, ifx, "another zone or owner", false);
  refused(a, if_nametoindex("zwaD"), "is not fe:54:00:40:00:03", true);  // db-1's tap
  ASSERT_TRUE(sh("ip link set zwaD address fe:54:00:40:00:03"));         // ... even with that MAC
  refused(a, if_nametoindex("zwaD"), "already has an endpoint", false);
  EXPECT_FALSE(passes(ifx, "10.4.0.3", "10.4.0.2", 5432, 0x03));

  std::string why;
  auto ok = engine::admit(*maps, a, ifx, &why);
  ASSERT_TRUE(ok.has_value());
  EXPECT_TRUE(ok->has_value()) << why;
  EXPECT_TRUE(passes(ifx, "10.4.0.3", "10.4.0.2", 5432, 0x03));
}

// A stopped domain whose tap libvirt will name itself (vnetN): keyed by the
// MAC its tap will have, admitted on a tap with that MAC whatever its name,
// and only when no other VM interface has that guest MAC.
TEST_F(AdmitTest, StartingVmTapLibvirtNamesIsAdmittedByItsMac) {
  auto rep = apply(with_stopped({{"web-5", "", "52:54:00:40:00:07", "10.4.0.7"},
                                 {"web-6", "", "52:54:00:40:00:08", "10.4.0.8"},
                                 {"db-6", "", "52:54:00:40:00:08", "10.4.0.9"},
                                 {"web-7", "", "52:54:00:40:00:02", "10.4.0.10"}}));
  ASSERT_TRUE(rep.has_value()) << rep.error().str();
  ASSERT_TRUE(rep->admissions->count("fe:54:00:40:00:07"));
  const engine::Admissible& a = rep->admissions->at("fe:54:00:40:00:07");
  EXPECT_TRUE(a.prospective);
  EXPECT_EQ(a.vm, "web-5");
  EXPECT_FALSE(rep->admissions->count("fe:54:00:40:00:08")) << "two stopped VMs have that MAC";
  EXPECT_FALSE(rep->admissions->count("fe:54:00:40:00:02")) << "db-1 (running) has that MAC";

  uint32_t ifx = create_web_interface("zwaQ", "fe:54:00:40:00:07");
  auto maps = datapath::open_pinned_maps(paths_.pin_dir);
  ASSERT_TRUE(maps.has_value());
  std::string why;
  auto r = engine::admit(*maps, a, ifx, &why);
  ASSERT_TRUE(r.has_value()) << r.error().str();
  ASSERT_TRUE(r->has_value()) << why;
  zw_endpoint ep{};
  ASSERT_TRUE(datapath::lookup_endpoint(maps->endpoints.get(), rep->generation, ifx, &ep));
  EXPECT_EQ(ep.zone, rep->state->zones.at("web"));
  EXPECT_TRUE(passes(ifx, "10.4.0.7", "10.4.0.2", 5432, 0x07));
  EXPECT_FALSE(passes(ifx, "10.4.0.7", "10.4.0.2", 5433, 0x07));
}

}  // namespace
}  // namespace zw
