// The daemon against libvirt's test driver, in-process: domains defined,
// started, re-tagged through metadata, destroyed and undefined must each be
// reconciled into the pinned maps; a tap matching the tap patterns is hooked
// (fail closed) before any VM claims it. Private network namespace, veths
// standing in for taps, unique pins; root.
#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "daemon/daemon.h"
#include "datapath/attach.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "datapath/test_run.h"
#include "engine/reconcile.h"
#include "engine/state.h"
#include "inventory/libvirt.h"
#include "libvirt_tap.h"
#include "packet.h"

namespace zw {
namespace {

using Clock = std::chrono::steady_clock;

const char* kPolicy = R"({
  "version": 1,
  "zones": {"web": {"vms": ["web-*"]}, "db": {"vms": ["db-*"]}},
  "rules": [{"name": "web-db-pg", "from": "web", "to": "db", "proto": "tcp", "ports": [5432], "action": "allow"}]
})";

std::string domain_xml(const std::string& name, const std::string& uuid, const std::string& ifname,
                       const std::string& mac, const std::string& ip,
                       const std::string& zone_tag = "") {
  std::string meta = zone_tag.empty()
                         ? ""
                         : "<metadata><zonewall:vm xmlns:zonewall='" +
                               std::string(inventory::kMetadataUri) + "'><zonewall:zone>" +
                               zone_tag + "</zonewall:zone></zonewall:vm></metadata>";
  return "<domain type='test'><name>" + name + "</name><uuid>" + uuid + "</uuid>" + meta +
         "<memory>65536</memory><os><type>hvm</type></os><devices>"
         "<interface type='ethernet'><mac address='" +
         mac + "'/><target dev='" + ifname + "'/><ip address='" + ip +
         "' prefix='24'/></interface></devices></domain>";
}

class DaemonLibvirtTest : public ::testing::Test {
 protected:
  static inline bool ready_ = false;
  static inline std::string why_;
  static inline std::string tmp_;
  static inline daemon::Options opt_;
  static inline virConnectPtr conn_ = nullptr;

  static bool sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }

  // Stops, undefines and releases a domain (whatever state it is in).
  static void remove_domain(virDomainPtr dom) {
    virDomainDestroy(dom);
    virDomainUndefine(dom);
    virDomainFree(dom);
  }

  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      why_ = "daemon tests need root (CAP_BPF, CAP_NET_ADMIN)";
      return;
    }
    if (unshare(CLONE_NEWNET) != 0) {
      why_ = "unshare(CLONE_NEWNET) failed";
      return;
    }
    sh("ip link set lo up; sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
       "net.ipv6.conf.default.disable_ipv6=1");
    char tmpl[] = "/tmp/zw-daemon-XXXXXX";
    tmp_ = mkdtemp(tmpl);
    std::string policy = tmp_ + "/policy.json";
    FILE* f = std::fopen(policy.c_str(), "w");
    std::fputs(kPolicy, f);
    std::fclose(f);
    for (const char* n : {"zwl-web1", "zwl-db1", "zwl-app1"})
      sh(std::string("ip link add ") + n + " type veth peer name " + n + "p && ip link set " + n +
         " up");
    opt_.paths = engine::make_paths("/sys/fs/bpf/zw-daemon-" + std::to_string(getpid()));
    opt_.policy_path = policy;
    opt_.libvirt_uri = "test:///default";
    opt_.tap_patterns = {"zwl-*"};
    opt_.resync_seconds = 3600;
    opt_.libvirt_lease_addrs = false;  // the test driver invents leases
    datapath::install_libbpf_logger();
    conn_ = virConnectOpen("test:///default");
    if (!conn_) {
      why_ = "cannot open test:///default";
      return;
    }
    ready_ = true;
  }

  static void TearDownTestSuite() {
    if (conn_) virConnectClose(conn_);
    if (!opt_.paths.pin_dir.empty()) {
      if (auto lock = engine::PinLock::acquire(opt_.paths.pin_dir)) (void)engine::down(opt_.paths);
    }
    if (!tmp_.empty()) sh("rm -rf " + tmp_);
  }

  void SetUp() override {
    if (ready_) return;
    if (std::getenv("CI") || std::getenv("ZW_REQUIRE_PRIVILEGED"))
      FAIL() << "cannot run daemon tests in CI: " << why_;
    GTEST_SKIP() << why_;
  }

  // Steps the daemon until `cond` holds or 5 s pass.
  static bool step_until(daemon::Daemon& d, const std::function<bool()>& cond, int ms = 5000) {
    auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    while (Clock::now() < deadline) {
      d.step(20);
      if (cond()) return true;
    }
    return cond();
  }

  // A domain of the starting-VM tests on the test driver: `id` (two hex
  // digits) ends its UUID and its MAC 52:54:00:30:00:<id>.
  static virDomainPtr define(const std::string& name, const std::string& id,
                             const std::string& ifname, const std::string& ip,
                             const std::string& zone_tag = "") {
    return virDomainDefineXML(conn_, domain_xml(name, "11111111-2222-3333-4444-0000000000" + id,
                                                ifname, "52:54:00:30:00:" + id, ip, zone_tag)
                                         .c_str());
  }

  // Sets a running domain's live zonewall metadata (a metadata-change event).
  static int set_metadata(virDomainPtr dom, const std::string& xml) {
    return virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml.c_str(),
                                inventory::kMetadataKey, inventory::kMetadataUri,
                                VIR_DOMAIN_AFFECT_LIVE);
  }

  // True once the daemon's state has an endpoint of every one of `vms`
  // (running or stopped).
  static bool in_state(std::initializer_list<const char*> vms) {
    auto st = engine::read_state(opt_.paths);
    if (!st || !*st) return false;
    for (const char* vm : vms) {
      bool found = false;
      for (const auto& e : (*st)->endpoints) found = found || e.vm_name == vm;
      if (!found) return false;
    }
    return true;
  }

  // The zone name the live generation gives the endpoint on `ifname`
  // ("" when there is none).
  static std::string live_zone(const std::string& ifname) {
    auto maps = datapath::open_pinned_maps(opt_.paths.pin_dir);
    if (!maps) return "";
    auto cfg = datapath::ConfigView::map(maps->config.get());
    if (!cfg) return "";
    zw_endpoint ep{};
    uint32_t ifx = if_nametoindex(ifname.c_str());
    if (!datapath::lookup_endpoint(maps->endpoints.get(), cfg->active_gen(), ifx, &ep)) return "";
    auto st = engine::read_state(opt_.paths);
    if (!st || !*st) return "";
    for (const auto& [name, id] : (*st)->zones)
      if (id == ep.zone) return name;
    return "?";
  }

  // Waits (without stepping the daemon) until `ifname` is hooked, up to 1 s.
  static bool wait_hooked(const std::string& ifname) {
    auto deadline = Clock::now() + std::chrono::seconds(1);
    while (Clock::now() < deadline) {
      if (hooked(ifname)) return true;
      usleep(200);
    }
    return hooked(ifname);
  }

  // Waits (without stepping the daemon: only its tap thread runs) until
  // `ifname`'s live zone is `zone`, up to `ms`. Microseconds from `since`,
  // or -1.
  static long wait_zone(const std::string& ifname, const std::string& zone, int ms,
                        Clock::time_point since) {
    auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    for (;;) {
      bool there = live_zone(ifname) == zone;
      auto now = Clock::now();
      if (there)
        return static_cast<long>(
            std::chrono::duration_cast<std::chrono::microseconds>(now - since).count());
      if (now >= deadline) return -1;
      usleep(50);
    }
  }

  // A starting VM's tap as libvirt makes it: created (a random MAC), then
  // given the host-side MAC, then up. When it existed, and when it had its
  // MAC (each `ip` command takes milliseconds; libvirt's ioctls do not).
  struct Made {
    Clock::time_point created, mac_set;
  };
  static Made create_tap(const std::string& name, const std::string& mac) {
    Made m;
    EXPECT_TRUE(sh("ip link add " + name + " type veth peer name " + name + "p"));
    m.created = Clock::now();
    EXPECT_TRUE(sh("ip link set " + name + " address " + mac));
    m.mac_set = Clock::now();
    EXPECT_TRUE(sh("ip link set " + name + " up"));
    return m;
  }

  static bool hooked(const std::string& ifname) {
    int ifx = static_cast<int>(if_nametoindex(ifname.c_str()));
    auto in = datapath::tc_prog_id(ifx, datapath::TcHook::kIngress);
    auto eg = datapath::tc_prog_id(ifx, datapath::TcHook::kEgress);
    return in && eg && *in != 0 && *eg != 0;
  }

  // Verdict of the from-VM program for a TCP SYN sent on `ifname`.
  static bool passes(const std::string& ifname, const std::string& src, const std::string& dst,
                     uint16_t port, uint8_t mac_last = 0) {
    auto fd = datapath::open_pinned_prog(opt_.paths.pin_dir, datapath::Prog::kFromVmTc);
    EXPECT_TRUE(fd.has_value());
    if (!fd) return false;
    static uint16_t sport = 30000;
    auto frame = test::ip(src, dst, 6, test::tcp(sport++, port));
    const uint8_t mac[6] = {0x52, 0x54, 0, 0x30, 0, mac_last};  // the domains' MACs
    std::copy(mac, mac + 6, frame.begin() + 6);
    auto r = datapath::test_run(fd->get(), datapath::Prog::kFromVmTc,
                                if_nametoindex(ifname.c_str()), frame);
    EXPECT_TRUE(r.has_value());
    return r && r->pass;
  }
};

TEST_F(DaemonLibvirtTest, DomainLifecycleIsReconciledIntoTheMaps) {
  daemon::Daemon d(opt_);
  auto st = d.start();
  ASSERT_TRUE(st.has_value()) << st.error().str();

  virDomainPtr web =
      virDomainDefineXML(conn_, domain_xml("web-1", "11111111-2222-3333-4444-000000000001",
                                           "zwl-web1", "52:54:00:30:00:01", "10.3.0.1")
                                    .c_str());
  ASSERT_NE(web, nullptr);
  virDomainPtr db =
      virDomainDefineXML(conn_, domain_xml("db-1", "11111111-2222-3333-4444-000000000002",
                                           "zwl-db1", "52:54:00:30:00:02", "10.3.0.2")
                                    .c_str());
  ASSERT_NE(db, nullptr);
  ASSERT_EQ(virDomainCreate(web), 0);
  ASSERT_EQ(virDomainCreate(db), 0);
  EXPECT_TRUE(
      step_until(d, [] { return live_zone("zwl-web1") == "web" && live_zone("zwl-db1") == "db"; }))
      << "web=" << live_zone("zwl-web1") << " db=" << live_zone("zwl-db1");
  EXPECT_TRUE(hooked("zwl-web1"));
  EXPECT_TRUE(passes("zwl-web1", "10.3.0.1", "10.3.0.2", 5432, 0x01));
  EXPECT_FALSE(passes("zwl-web1", "10.3.0.1", "10.3.0.2", 5433, 0x01));

  // An untagged VM whose name no glob matches is unzoned; a zone tag in its
  // metadata moves it, and the maps follow the metadata-change event.
  virDomainPtr app =
      virDomainDefineXML(conn_, domain_xml("app-1", "11111111-2222-3333-4444-000000000003",
                                           "zwl-app1", "52:54:00:30:00:03", "10.3.0.3")
                                    .c_str());
  ASSERT_NE(app, nullptr);
  ASSERT_EQ(virDomainCreate(app), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-app1") == "unzoned"; }))
      << live_zone("zwl-app1");
  ASSERT_EQ(set_metadata(app, "<vm><zone>web</zone></vm>"), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-app1") == "web"; }))
      << live_zone("zwl-app1");
  EXPECT_TRUE(passes("zwl-app1", "10.3.0.3", "10.3.0.2", 5432, 0x03));

  // Destroyed and undefined: gone from the maps, but its tap stays hooked
  // and drops everything (it matches the tap patterns).
  ASSERT_EQ(virDomainDestroy(app), 0);
  ASSERT_EQ(virDomainUndefine(app), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-app1").empty(); })) << live_zone("zwl-app1");
  EXPECT_TRUE(hooked("zwl-app1"));
  EXPECT_FALSE(passes("zwl-app1", "10.3.0.3", "10.3.0.2", 5432, 0x03));
  // The others are untouched.
  EXPECT_EQ(live_zone("zwl-web1"), "web");
  EXPECT_TRUE(passes("zwl-web1", "10.3.0.1", "10.3.0.2", 5432, 0x01));

  remove_domain(web);
  remove_domain(db);
  virDomainFree(app);  // destroyed and undefined above
  step_until(d, [] { return live_zone("zwl-web1").empty(); });
}

// A libvirt event is followed by a read of the domain it names, not of
// every domain (seconds with 10,000 of them): the first reconcile reads
// them all, each lifecycle or metadata event one.
TEST_F(DaemonLibvirtTest, AnEventRereadsOnlyItsDomain) {
  std::vector<virDomainPtr> idle;
  for (int i = 0; i < 12; ++i) {
    char id[3];
    std::snprintf(id, sizeof id, "%02x", 0xe0 + i);
    idle.push_back(define("idle-" + std::string(id), id, "zwl-i" + std::string(id),
                          "10.3.1." + std::to_string(i + 1)));
    ASSERT_NE(idle.back(), nullptr);
  }
  virDomainPtr web = define("web-1", "01", "zwl-web1", "10.3.0.1");
  virDomainPtr db = define("db-1", "02", "zwl-db1", "10.3.0.2");
  ASSERT_NE(web, nullptr);
  ASSERT_NE(db, nullptr);
  ASSERT_EQ(virDomainCreate(db), 0);
  daemon::Daemon d(opt_);
  ASSERT_TRUE(d.start().has_value());
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-db1") == "db" && in_state({"idle-e0"}); }));
  const auto first = d.counters();
  EXPECT_EQ(first.libvirt_full_reads, 1u);
  EXPECT_EQ(first.libvirt_domains_reread, 0u);

  ASSERT_EQ(virDomainCreate(web), 0);  // STARTED
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-web1") == "web"; }))
      << live_zone("zwl-web1");
  EXPECT_TRUE(passes("zwl-web1", "10.3.0.1", "10.3.0.2", 5432, 0x01));
  auto c = d.counters();
  EXPECT_EQ(c.libvirt_full_reads, 1u) << "an event read every domain";
  EXPECT_GE(c.libvirt_domains_reread, 1u);
  EXPECT_LE(c.libvirt_domains_reread, 2u) << "more than the one domain the event named";

  // A metadata change moves a VM: one more domain read.
  virDomainPtr app = define("app-1", "03", "zwl-app1", "10.3.0.3");
  ASSERT_NE(app, nullptr);
  ASSERT_EQ(virDomainCreate(app), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-app1") == "unzoned"; }))
      << live_zone("zwl-app1");
  const uint64_t before = d.counters().libvirt_domains_reread;
  ASSERT_EQ(set_metadata(app, "<vm><zone>web</zone></vm>"), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-app1") == "web"; }))
      << live_zone("zwl-app1");
  c = d.counters();
  EXPECT_EQ(c.libvirt_full_reads, 1u);
  EXPECT_EQ(c.libvirt_domains_reread, before + 1);
  EXPECT_TRUE(passes("zwl-app1", "10.3.0.3", "10.3.0.2", 5432, 0x03));

  // Undefined while running, then destroyed (a transient domain's end):
  // read, found gone, dropped.
  ASSERT_EQ(virDomainUndefine(app), 0);
  ASSERT_EQ(virDomainDestroy(app), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-app1").empty() && !in_state({"app-1"}); }))
      << live_zone("zwl-app1");
  EXPECT_EQ(d.counters().libvirt_full_reads, 1u);
  virDomainFree(app);
  remove_domain(web);
  remove_domain(db);
  for (auto* dom : idle) remove_domain(dom);
  step_until(d, [] { return live_zone("zwl-db1").empty(); });
}

// The resync reads every domain again (what an event could have missed).
TEST_F(DaemonLibvirtTest, ResyncReadsEveryDomainAgain) {
  daemon::Options o = opt_;
  o.resync_seconds = 1;
  daemon::Daemon d(o);
  ASSERT_TRUE(d.start().has_value());
  EXPECT_TRUE(step_until(d, [&] { return d.counters().libvirt_full_reads == 1; }));
  EXPECT_TRUE(step_until(d, [&] { return d.counters().libvirt_full_reads == 2; }, 3000))
      << d.counters().libvirt_full_reads;
}

TEST_F(DaemonLibvirtTest, NewTapIsHookedBeforeItsVmIsKnown) {
  daemon::Daemon d(opt_);
  auto st = d.start();
  ASSERT_TRUE(st.has_value()) << st.error().str();
  d.step(0);
  auto t0 = Clock::now();
  ASSERT_TRUE(sh("ip link add zwl-new1 type veth peer name zwl-new1p && ip link set zwl-new1 up"));
  auto created = Clock::now();
  EXPECT_TRUE(step_until(d, [] { return hooked("zwl-new1"); }));
  auto us = [](auto a, auto b) {
    return std::chrono::duration_cast<std::chrono::microseconds>(b - a).count();
  };
  std::printf(
      "[ measure  ] tap created -> hooked: %ld us after `ip link add` returned (%ld us incl. the "
      "command)\n",
      static_cast<long>(us(created, Clock::now())), static_cast<long>(us(t0, Clock::now())));
  // Unknown to libvirt: everything it sends is dropped.
  EXPECT_FALSE(passes("zwl-new1", "10.3.0.9", "10.3.0.2", 5432, 0x09));

  // Its VM appears: enforced by zone from then on.
  virDomainPtr dom =
      virDomainDefineXML(conn_, domain_xml("web-9", "11111111-2222-3333-4444-000000000009",
                                           "zwl-new1", "52:54:00:30:00:09", "10.3.0.9")
                                    .c_str());
  ASSERT_NE(dom, nullptr);
  ASSERT_EQ(virDomainCreate(dom), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-new1") == "web"; }))
      << live_zone("zwl-new1");
  remove_domain(dom);
  sh("ip link del zwl-new1");
}

// Hooking a tap must not wait for the event loop: a reconcile can block in
// libvirt for seconds (a domain being destroyed). Here the loop is not run
// at all while the tap appears.
TEST_F(DaemonLibvirtTest, TapIsHookedWhileTheLoopIsBusy) {
  daemon::Daemon d(opt_);
  ASSERT_TRUE(d.start().has_value());
  ASSERT_TRUE(sh("ip link add zwl-busy type veth peer name zwl-busyp && ip link set zwl-busy up"));
  auto created = Clock::now();
  EXPECT_TRUE(wait_hooked("zwl-busy"));
  std::printf(
      "[ measure  ] tap hooked %ld us after `ip link add` returned, loop idle\n",
      static_cast<long>(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - created).count()));
  EXPECT_FALSE(passes("zwl-busy", "10.3.0.50", "10.3.0.1", 80, 0x50));
  sh("ip link del zwl-busy");
}

// Live migration seen from one host's side: the VM leaves (its tap goes) and
// comes back with the same UUID and metadata on a new tap. Its zone travels in
// the metadata; the new tap is hooked fail-closed at once and enforced by zone
// on the next reconcile.
TEST_F(DaemonLibvirtTest, MigratedVmKeepsItsZoneOnANewTap) {
  daemon::Daemon d(opt_);
  ASSERT_TRUE(d.start().has_value());
  const std::string uuid = "11111111-2222-3333-4444-0000000000a7";
  ASSERT_TRUE(sh("ip link add zwl-mA type veth peer name zwl-mAp && ip link set zwl-mA up"));
  virDomainPtr dom = virDomainDefineXML(
      conn_, domain_xml("app-7", uuid, "zwl-mA", "52:54:00:30:00:a7", "10.3.0.7", "db").c_str());
  ASSERT_NE(dom, nullptr);
  ASSERT_EQ(virDomainCreate(dom), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-mA") == "db"; })) << live_zone("zwl-mA");

  // Migrated out: stopped and undefined here, its tap deleted.
  ASSERT_EQ(virDomainDestroy(dom), 0);
  ASSERT_EQ(virDomainUndefine(dom), 0);
  virDomainFree(dom);
  ASSERT_TRUE(sh("ip link del zwl-mA"));
  step_until(
      d, [] { return false; }, 200);  // let the removal settle (bounded)

  // Migrated in: a new tap, then the same domain (UUID, metadata) on it.
  auto t0 = Clock::now();
  ASSERT_TRUE(sh("ip link add zwl-mB type veth peer name zwl-mBp && ip link set zwl-mB up"));
  auto created = Clock::now();
  EXPECT_TRUE(wait_hooked("zwl-mB")) << "the new tap must be hooked before its VM is known";
  EXPECT_FALSE(passes("zwl-mB", "10.3.0.7", "10.3.0.1", 80, 0xa7));
  dom = virDomainDefineXML(
      conn_, domain_xml("app-7", uuid, "zwl-mB", "52:54:00:30:00:a7", "10.3.0.7", "db").c_str());
  ASSERT_NE(dom, nullptr);
  ASSERT_EQ(virDomainCreate(dom), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-mB") == "db"; })) << live_zone("zwl-mB");
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - created).count();
  std::printf(
      "[ measure  ] migrated VM: new tap created -> enforced by zone: %ld us "
      "(hooked fail-closed in between; %ld us incl. `ip link add`)\n",
      static_cast<long>(us),
      static_cast<long>(
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count()));
  remove_domain(dom);
  sh("ip link del zwl-mB");
}

// A running VM's tap is recreated under the same name (a VM restarted by
// its own hand, a NIC re-plugged): the daemon's tap thread hooks it and
// admits it (engine/admit.h) without the loop running at all, so the VM's
// policy is in force before any reconcile; the reconcile after it agrees.
TEST_F(DaemonLibvirtTest, RecreatedTapOfARunningVmIsAdmittedWithoutAReconcile) {
  daemon::Daemon d(opt_);
  ASSERT_TRUE(d.start().has_value());
  ASSERT_TRUE(
      sh("ip link add zwl-adW type veth peer name zwl-adWp && ip link set zwl-adW up && "
         "ip link add zwl-adD type veth peer name zwl-adDp && ip link set zwl-adD up"));
  virDomainPtr web =
      virDomainDefineXML(conn_, domain_xml("web-8", "11111111-2222-3333-4444-0000000000b8",
                                           "zwl-adW", "52:54:00:30:00:b8", "10.3.0.28")
                                    .c_str());
  virDomainPtr db =
      virDomainDefineXML(conn_, domain_xml("db-8", "11111111-2222-3333-4444-0000000000b9",
                                           "zwl-adD", "52:54:00:30:00:b9", "10.3.0.29")
                                    .c_str());
  ASSERT_NE(web, nullptr);
  ASSERT_NE(db, nullptr);
  ASSERT_EQ(virDomainCreate(web), 0);
  ASSERT_EQ(virDomainCreate(db), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-adW") == "web"; }));
  EXPECT_TRUE(passes("zwl-adW", "10.3.0.28", "10.3.0.29", 5432, 0xb8));

  // The tap goes; the reconcile takes its endpoint away.
  ASSERT_TRUE(sh("ip link del zwl-adW"));
  EXPECT_TRUE(step_until(d, [] {
    auto st = engine::read_state(opt_.paths);
    if (!st || !*st) return false;
    for (const auto& e : (*st)->endpoints)
      if (e.ifname == "zwl-adW") return e.ifindex == 0;
    return false;
  }));

  // It comes back: the loop is not stepped from here until enforced. First
  // with a MAC that is not the one libvirt gives this VM's tap (a tap name
  // libvirt generated may be another VM's by now): not admitted.
  ASSERT_TRUE(
      sh("ip link add zwl-adW address fe:54:00:30:00:99 type veth peer name zwl-adWp && "
         "ip link set zwl-adW up"));
  EXPECT_EQ(wait_zone("zwl-adW", "web", 300, Clock::now()), -1) << "admitted with another MAC";
  EXPECT_TRUE(hooked("zwl-adW"));
  EXPECT_FALSE(passes("zwl-adW", "10.3.0.28", "10.3.0.29", 5432, 0xb8));
  ASSERT_TRUE(sh("ip link del zwl-adW"));
  // As libvirt makes it: fe: and the guest's MAC.
  ASSERT_TRUE(
      sh("ip link add zwl-adW address fe:54:00:30:00:b8 type veth peer name zwl-adWp && "
         "ip link set zwl-adW up"));
  auto created = Clock::now();
  Clock::time_point deadline = created + std::chrono::seconds(2);
  while (live_zone("zwl-adW") != "web" && Clock::now() < deadline) usleep(100);
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - created).count();
  ASSERT_EQ(live_zone("zwl-adW"), "web") << "not admitted without the loop";
  std::printf("[ measure  ] recreated tap -> its VM's endpoint live: %ld us, no reconcile\n",
              static_cast<long>(us));
  EXPECT_TRUE(passes("zwl-adW", "10.3.0.28", "10.3.0.29", 5432, 0xb8)) << "allowed by web-db-pg";
  EXPECT_FALSE(passes("zwl-adW", "10.3.0.28", "10.3.0.29", 5433, 0xb8)) << "no rule";
  EXPECT_FALSE(passes("zwl-adW", "10.3.0.29", "10.3.0.28", 5432, 0xb8)) << "db-8's address";

  // The reconcile that follows keeps it as it is: the same zone, the same
  // verdicts, and its apply had nothing left to write for that endpoint.
  const uint64_t before = d.applies();
  EXPECT_TRUE(step_until(d, [&] { return d.applies() > before; }));
  EXPECT_EQ(live_zone("zwl-adW"), "web");
  EXPECT_TRUE(passes("zwl-adW", "10.3.0.28", "10.3.0.29", 5432, 0xb8));
  auto st = engine::read_state(opt_.paths);
  ASSERT_TRUE(st && *st);
  bool found = false;
  for (const auto& e : (*st)->endpoints)
    if (e.ifname == "zwl-adW") {
      found = true;
      EXPECT_EQ(e.ifindex, if_nametoindex("zwl-adW"));
    }
  EXPECT_TRUE(found);

  // Admitted, then gone before any reconcile looked: the reconcile must
  // still run (the maps moved since the last apply) and take the dead
  // interface's endpoint out again.
  ASSERT_TRUE(sh("ip link del zwl-adW"));
  EXPECT_TRUE(step_until(d, [&] { return d.applies() > before + 1; }));
  ASSERT_TRUE(
      sh("ip link add zwl-adW address fe:54:00:30:00:b8 type veth peer name zwl-adWp && "
         "ip link set zwl-adW up"));
  const uint32_t dead = if_nametoindex("zwl-adW");
  deadline = Clock::now() + std::chrono::seconds(2);
  while (live_zone("zwl-adW") != "web" && Clock::now() < deadline) usleep(100);
  ASSERT_EQ(live_zone("zwl-adW"), "web");
  ASSERT_TRUE(sh("ip link del zwl-adW"));
  const uint64_t applied = d.applies();
  EXPECT_TRUE(step_until(d, [&] { return d.applies() > applied; }))
      << "no reconcile after an admitted tap vanished";
  auto maps = datapath::open_pinned_maps(opt_.paths.pin_dir);
  ASSERT_TRUE(maps.has_value());
  zw_endpoint_val gone{};
  EXPECT_FALSE(datapath::map_lookup(maps->endpoints.get(), zw_endpoint_key{dead}, &gone))
      << "the vanished interface's endpoint is still in the maps";
  remove_domain(web);
  remove_domain(db);
  sh("ip link del zwl-adD");
}

// A libvirt VM that starts: its domain was defined, not running, at the
// last apply, its config naming its tap. The tap libvirt creates for it is
// admitted by the tap thread the moment it has libvirt's host-side MAC
// (fe: + the guest's), with the loop not running at all (so long before
// libvirt's STARTED event could be handled), and judged by the VM's zone;
// the reconcile after STARTED finds nothing left to write.
TEST_F(DaemonLibvirtTest, StartingVmTapIsEnforcedBeforeItsStartedEvent) {
  daemon::Daemon d(opt_);
  ASSERT_TRUE(d.start().has_value());
  ASSERT_TRUE(sh("ip link add zwl-sD type veth peer name zwl-sDp && ip link set zwl-sD up"));
  virDomainPtr db = define("db-s", "c2", "zwl-sD", "10.3.0.42");
  virDomainPtr web = define("web-s", "c1", "zwl-sW", "10.3.0.41");
  ASSERT_NE(db, nullptr);
  ASSERT_NE(web, nullptr);
  ASSERT_EQ(virDomainCreate(db), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-sD") == "db" && in_state({"web-s"}); }))
      << "web-s (stopped) and db-s (running) not applied";
  const auto before = d.counters();

  // From here the loop is not stepped: only the tap thread acts.
  // A real tap, made as libvirtd makes it (ioctls: created, MAC, up).
  const net::Mac tap_mac = *net::parse_mac("fe:54:00:30:00:c1");
  auto tap = std::make_unique<test::LibvirtTap>("zwl-sW", &tap_mac);
  ASSERT_TRUE(tap->ok());
  long us = wait_zone("zwl-sW", "web", 2000, tap->created);
  ASSERT_GE(us, 0) << "the starting VM's tap was not admitted without a reconcile";
  std::printf(
      "[ measure  ] starting VM's tap -> its endpoint live: %ld us after it was created, "
      "%ld us after libvirt's MAC was set; no reconcile\n",
      us,
      static_cast<long>(
          us - std::chrono::duration_cast<std::chrono::microseconds>(tap->mac_set - tap->created)
                   .count()));
  EXPECT_EQ(d.counters().admitted_prospective, before.admitted_prospective + 1);
  EXPECT_TRUE(passes("zwl-sW", "10.3.0.41", "10.3.0.42", 5432, 0xc1)) << "web-db-pg";
  EXPECT_FALSE(passes("zwl-sW", "10.3.0.41", "10.3.0.42", 5433, 0xc1)) << "no rule";
  EXPECT_FALSE(passes("zwl-sW", "10.3.0.42", "10.3.0.41", 5432, 0xc1)) << "db-s's address";
  EXPECT_FALSE(passes("zwl-sW", "10.3.0.41", "10.3.0.42", 5432, 0xc2)) << "db-s's MAC";

  // libvirt reports it running (STARTED): the reconcile agrees and has
  // nothing left to write for it.
  ASSERT_EQ(virDomainCreate(web), 0);
  EXPECT_TRUE(step_until(d, [&] { return d.counters().applies > before.applies; }));
  auto c = d.counters();
  EXPECT_EQ(c.confirmed, before.confirmed + 1);
  EXPECT_EQ(c.corrected, before.corrected);
  EXPECT_EQ(c.withdrawn, before.withdrawn);
  for (const char* m : {"zw_endpoints", "zw_addrs", "zw_pairs"})
    EXPECT_EQ(c.last_written[m], 0u) << m << ": the reconcile after STARTED wrote entries";
  EXPECT_EQ(live_zone("zwl-sW"), "web");
  EXPECT_TRUE(passes("zwl-sW", "10.3.0.41", "10.3.0.42", 5432, 0xc1));
  auto st = engine::read_state(opt_.paths);
  ASSERT_TRUE(st && *st);
  bool found = false;
  for (const auto& e : (*st)->endpoints)
    if (e.vm_name == "web-s") {
      found = true;
      EXPECT_EQ(e.ifname, "zwl-sW");
      EXPECT_EQ(e.ifindex, if_nametoindex("zwl-sW"));
    }
  EXPECT_TRUE(found);
  remove_domain(web);
  remove_domain(db);
  tap.reset();
  sh("ip link del zwl-sD");
  step_until(d, [] { return live_zone("zwl-sD").empty(); });
}

// What a starting VM's tap name must not open: a name two stopped domains
// name, a tap without the MAC libvirt gives that VM's tap. Both stay hooked
// and drop everything (nothing written) until a reconcile decides; a VM
// libvirt reports running on its tap then gets its endpoint as always.
TEST_F(DaemonLibvirtTest, StartingVmTapRefusedWhenAmbiguousOrWithAnotherMac) {
  daemon::Daemon d(opt_);
  ASSERT_TRUE(d.start().has_value());
  virDomainPtr a = define("web-a", "d1", "zwl-amb", "10.3.0.51");
  virDomainPtr b = define("db-b", "d2", "zwl-amb", "10.3.0.52");
  virDomainPtr w = define("web-w", "d3", "zwl-wmac", "10.3.0.53");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(w, nullptr);
  EXPECT_TRUE(step_until(d, [] { return in_state({"web-a", "db-b", "web-w"}); }));
  const auto before = d.counters();
  auto maps = datapath::open_pinned_maps(opt_.paths.pin_dir);
  ASSERT_TRUE(maps.has_value());
  auto endpoints = [&] {
    auto e = datapath::map_entries<zw_endpoint_key, zw_endpoint_val>(maps->endpoints.get());
    return e ? e->size() : size_t{0};
  };
  const size_t n_before = endpoints();

  // web-a's own libvirt MAC on the name both domains give their tap.
  auto t1 = create_tap("zwl-amb", "fe:54:00:30:00:d1").created;
  // Another MAC than libvirt's for web-w (fe:...:d3).
  auto t2 = create_tap("zwl-wmac", "fe:54:00:30:00:99").created;
  EXPECT_EQ(wait_zone("zwl-amb", "web", 300, t1), -1) << "ambiguous name admitted";
  EXPECT_EQ(wait_zone("zwl-wmac", "web", 300, t2), -1) << "tap with another MAC admitted";
  EXPECT_TRUE(hooked("zwl-amb"));
  EXPECT_TRUE(hooked("zwl-wmac"));
  EXPECT_FALSE(passes("zwl-amb", "10.3.0.51", "10.3.0.1", 80, 0xd1));
  EXPECT_FALSE(passes("zwl-wmac", "10.3.0.53", "10.3.0.1", 80, 0xd3));
  EXPECT_EQ(d.counters().admitted, before.admitted);
  EXPECT_EQ(endpoints(), n_before) << "a refused admission wrote an endpoint";

  // libvirt says web-w runs on zwl-wmac: the reconcile enforces it (identity
  // is the name libvirt reports for a running domain).
  ASSERT_EQ(virDomainCreate(w), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-wmac") == "web"; }));
  EXPECT_EQ(live_zone("zwl-amb"), "") << "still ambiguous, still nobody's";
  EXPECT_EQ(d.counters().admitted_prospective, before.admitted_prospective);
  for (auto* dom : {a, b, w}) remove_domain(dom);
  sh("ip link del zwl-amb; ip link del zwl-wmac");
  step_until(d, [] { return live_zone("zwl-wmac").empty(); });
}

// A starting VM whose live definition differs from its config (its zone
// tag changed for this run only): admitted as its config says, then the
// reconcile that reads the live definition corrects it, and says so.
TEST_F(DaemonLibvirtTest, StartingVmWhoseLiveDefinitionDiffersIsCorrected) {
  daemon::Daemon d(opt_);
  ASSERT_TRUE(d.start().has_value());
  virDomainPtr x = define("app-x", "e1", "zwl-xW", "10.3.0.61", "web");
  ASSERT_NE(x, nullptr);
  EXPECT_TRUE(step_until(d, [] { return in_state({"app-x"}); }));
  const auto before = d.counters();
  // Started, then re-tagged for this run only; the loop hears of neither yet.
  ASSERT_EQ(virDomainCreate(x), 0);
  ASSERT_EQ(set_metadata(x, "<vm><zone>db</zone></vm>"), 0);
  auto created = create_tap("zwl-xW", "fe:54:00:30:00:e1").created;
  ASSERT_GE(wait_zone("zwl-xW", "web", 2000, created), 0) << "not admitted as its config says";
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-xW") == "db"; })) << live_zone("zwl-xW");
  auto c = d.counters();
  EXPECT_EQ(c.corrected, before.corrected + 1);
  EXPECT_EQ(c.confirmed, before.confirmed);
  EXPECT_GT(c.last_written["zw_endpoints"], 0u) << "the corrected endpoint was not written";
  remove_domain(x);
  sh("ip link del zwl-xW");
  step_until(d, [] { return live_zone("zwl-xW").empty(); });
}

// A static inventory is parsed again only when the file changed (the daemon
// keeps the parsed copy across events): an edit is still seen by the very
// next reconcile, here one a tap event causes, without SIGHUP or resync.
TEST_F(DaemonLibvirtTest, StaticInventoryEditIsSeenByTheNextReconcile) {
  daemon::Options o = opt_;
  o.libvirt_uri.clear();
  o.inventory_path = tmp_ + "/static-inventory.json";
  auto write_inventory = [&](const std::string& vm) {
    FILE* f = std::fopen((o.inventory_path + ".tmp").c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fprintf(f,
                 R"({"vms": [{"name": "%s", "interfaces": [{"name": "zwl-st1", "mac": )"
                 R"("52:54:00:30:00:c1", "ips": ["10.3.0.41"]}]}]})",
                 vm.c_str());
    std::fclose(f);
    ASSERT_EQ(std::rename((o.inventory_path + ".tmp").c_str(), o.inventory_path.c_str()), 0);
  };
  write_inventory("web-41");
  ASSERT_TRUE(sh("ip link add zwl-st1 type veth peer name zwl-st1p && ip link set zwl-st1 up"));
  daemon::Daemon d(o);
  ASSERT_TRUE(d.start().has_value());
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-st1") == "web"; })) << live_zone("zwl-st1");
  // The same VM renamed into the db zone; a new tap makes the loop reconcile.
  write_inventory("db-41");
  const uint64_t before = d.applies();
  ASSERT_TRUE(sh("ip link add zwl-st2 type veth peer name zwl-st2p"));
  EXPECT_TRUE(step_until(d, [&] { return d.applies() > before; }));
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-st1") == "db"; }))
      << "the edited inventory was not read: " << live_zone("zwl-st1");
  sh("ip link del zwl-st1; ip link del zwl-st2");
}

// Bad input from the hypervisor: one domain's metadata turns malformed. That
// domain is skipped (a warning names it) and its tap keeps dropping; every
// other VM stays enforced as before.
TEST_F(DaemonLibvirtTest, MalformedMetadataSkipsOnlyThatDomain) {
  daemon::Daemon d(opt_);
  ASSERT_TRUE(d.start().has_value());
  virDomainPtr web =
      virDomainDefineXML(conn_, domain_xml("web-1", "11111111-2222-3333-4444-000000000001",
                                           "zwl-web1", "52:54:00:30:00:01", "10.3.0.1")
                                    .c_str());
  virDomainPtr app =
      virDomainDefineXML(conn_, domain_xml("app-1", "11111111-2222-3333-4444-000000000003",
                                           "zwl-app1", "52:54:00:30:00:03", "10.3.0.3", "db")
                                    .c_str());
  ASSERT_NE(web, nullptr);
  ASSERT_NE(app, nullptr);
  ASSERT_EQ(virDomainCreate(web), 0);
  ASSERT_EQ(virDomainCreate(app), 0);
  EXPECT_TRUE(step_until(
      d, [] { return live_zone("zwl-web1") == "web" && live_zone("zwl-app1") == "db"; }));
  // Two zone elements: malformed.
  ASSERT_EQ(set_metadata(app, "<vm><zone>db</zone><zone>web</zone></vm>"), 0);
  EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-app1").empty(); })) << live_zone("zwl-app1");
  EXPECT_TRUE(hooked("zwl-app1"));
  EXPECT_FALSE(passes("zwl-app1", "10.3.0.3", "10.3.0.1", 80, 0x03));
  EXPECT_EQ(live_zone("zwl-web1"), "web");
  EXPECT_TRUE(hooked("zwl-web1"));
  for (auto* dom : {web, app}) remove_domain(dom);
  step_until(d, [] { return live_zone("zwl-web1").empty(); });
}

// Libvirt events duplicated, bunched up and missed (issue 7): the daemon
// acts on "something changed", never on the event's content, so it must end
// where libvirt is whatever the events said on the way.
TEST_F(DaemonLibvirtTest, DuplicatedBunchedAndMissedEventsConverge) {
  const std::string web_uuid = "11111111-2222-3333-4444-000000000001";
  const std::string app_uuid = "11111111-2222-3333-4444-000000000003";
  auto web_xml = domain_xml("web-1", web_uuid, "zwl-web1", "52:54:00:30:00:01", "10.3.0.1");
  virDomainPtr web = nullptr, app = nullptr;
  virDomainPtr db =
      virDomainDefineXML(conn_, domain_xml("db-1", "11111111-2222-3333-4444-000000000002",
                                           "zwl-db1", "52:54:00:30:00:02", "10.3.0.2")
                                    .c_str());
  ASSERT_NE(db, nullptr);
  ASSERT_EQ(virDomainCreate(db), 0);
  {
    daemon::Daemon d(opt_);
    ASSERT_TRUE(d.start().has_value());
    // Duplicates: the same definition twice, a second start of a running
    // domain (refused by libvirt), the definition once more while running.
    web = virDomainDefineXML(conn_, web_xml.c_str());
    ASSERT_NE(web, nullptr);
    virDomainFree(virDomainDefineXML(conn_, web_xml.c_str()));
    ASSERT_EQ(virDomainCreate(web), 0);
    EXPECT_NE(virDomainCreate(web), 0);
    virDomainFree(virDomainDefineXML(conn_, web_xml.c_str()));
    EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-web1") == "web"; }))
        << live_zone("zwl-web1");
    EXPECT_TRUE(passes("zwl-web1", "10.3.0.1", "10.3.0.2", 5432, 0x01));

    // Bunched: start -> destroy -> start with no reconcile in between ends
    // running; destroy -> start -> destroy ends stopped (tap hooked, no
    // endpoint: drops).
    ASSERT_EQ(virDomainDestroy(web), 0);
    ASSERT_EQ(virDomainCreate(web), 0);
    ASSERT_EQ(virDomainDestroy(web), 0);
    ASSERT_EQ(virDomainCreate(web), 0);
    uint64_t before = d.applies();
    EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-web1") == "web"; }));
    for (int i = 0; i < 10; ++i) d.step(10);
    EXPECT_EQ(d.applies(), before) << "four events, nothing changed in the end: no apply";
    EXPECT_TRUE(passes("zwl-web1", "10.3.0.1", "10.3.0.2", 5432, 0x01));
    ASSERT_EQ(virDomainDestroy(web), 0);
    ASSERT_EQ(virDomainCreate(web), 0);
    ASSERT_EQ(virDomainDestroy(web), 0);
    EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-web1").empty(); }))
        << live_zone("zwl-web1");
    EXPECT_TRUE(hooked("zwl-web1"));
    EXPECT_FALSE(passes("zwl-web1", "10.3.0.1", "10.3.0.2", 5432, 0x01));

    app = virDomainDefineXML(
        conn_,
        domain_xml("app-1", app_uuid, "zwl-app1", "52:54:00:30:00:03", "10.3.0.3", "db").c_str());
    ASSERT_NE(app, nullptr);
    ASSERT_EQ(virDomainCreate(app), 0);
    EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-app1") == "db"; }));
  }
  // Missed: no daemon listens while web-1 starts and app-1 is re-tagged;
  // the next daemon's first reconcile reads libvirt as it is.
  ASSERT_EQ(virDomainCreate(web), 0);
  ASSERT_EQ(set_metadata(app, "<vm><zone>web</zone></vm>"), 0);
  EXPECT_EQ(live_zone("zwl-web1"), "") << "nothing listened: still as the last daemon left it";
  EXPECT_EQ(live_zone("zwl-app1"), "db");
  {
    daemon::Daemon d(opt_);
    ASSERT_TRUE(d.start().has_value());
    EXPECT_TRUE(step_until(
        d, [] { return live_zone("zwl-web1") == "web" && live_zone("zwl-app1") == "web"; }))
        << "web-1: " << live_zone("zwl-web1") << ", app-1: " << live_zone("zwl-app1");
    EXPECT_TRUE(passes("zwl-app1", "10.3.0.3", "10.3.0.2", 5432, 0x03));
    remove_domain(web);
    remove_domain(app);
    remove_domain(db);
    EXPECT_TRUE(step_until(d, [] {
      return live_zone("zwl-web1").empty() && live_zone("zwl-app1").empty() &&
             live_zone("zwl-db1").empty();
    }));
  }
}

TEST_F(DaemonLibvirtTest, UnreachableLibvirtLeavesEnforcementUntouched) {
  // First a daemon that knows the VMs.
  virDomainPtr web =
      virDomainDefineXML(conn_, domain_xml("web-1", "11111111-2222-3333-4444-000000000001",
                                           "zwl-web1", "52:54:00:30:00:01", "10.3.0.1")
                                    .c_str());
  ASSERT_NE(web, nullptr);
  ASSERT_EQ(virDomainCreate(web), 0);
  {
    daemon::Daemon d(opt_);
    ASSERT_TRUE(d.start().has_value());
    EXPECT_TRUE(step_until(d, [] { return live_zone("zwl-web1") == "web"; }));
  }
  // A restart whose libvirt is unreachable must not flush what is enforced.
  daemon::Options o = opt_;
  o.libvirt_uri = "qemu+unix:///system?socket=/nonexistent/zonewall-test.sock";
  daemon::Daemon d(o);
  ASSERT_TRUE(d.start().has_value());
  for (int i = 0; i < 10; ++i) d.step(20);
  EXPECT_EQ(d.applies(), 0u);
  EXPECT_EQ(live_zone("zwl-web1"), "web");
  EXPECT_TRUE(hooked("zwl-web1"));
  remove_domain(web);
}

}  // namespace
}  // namespace zw
