// LinkWatcher / list_links against the real kernel: veths, taps, renames,
// bridge ports and a forced overrun, in a private network namespace (root).
// Also measures tap-creation-to-event latency (printed, not asserted).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "inventory/netlink.h"
#include "util/fd.h"

extern char** environ;

namespace zw {
namespace {

using inventory::LinkEvent;
using inventory::LinkWatcher;
using Kind = LinkEvent::Kind;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

bool sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }

const char* kind_str(Kind k) {
  switch (k) {
    case Kind::kAdded:
      return "added";
    case Kind::kRemoved:
      return "removed";
    case Kind::kChanged:
      return "changed";
  }
  return "?";
}

std::string dump(const std::vector<LinkEvent>& evs) {
  std::ostringstream o;
  for (const auto& e : evs)
    o << "  " << kind_str(e.kind) << " " << e.ifindex << " " << e.ifname << " kind=" << e.kind_name
      << (e.up ? " up" : " down") << "\n";
  return o.str();
}

// Deletes the named links when the test ends, passed or not.
struct LinkCleanup {
  std::vector<std::string> names;
  ~LinkCleanup() {
    for (const auto& n : names) sh("ip link del " + n + " 2>/dev/null");
  }
};

// What a watcher reported so far.
struct Seen {
  std::vector<LinkEvent> events;
  bool lost = false;  // some drain() returned true

  const LinkEvent* find(Kind k, const std::string& name) const {
    for (const auto& e : events)
      if (e.kind == k && e.ifname == name) return &e;
    return nullptr;
  }
  const LinkEvent* find(Kind k, uint32_t ifindex) const {
    for (const auto& e : events)
      if (e.kind == k && e.ifindex == ifindex) return &e;
    return nullptr;
  }
};

// poll()s the watcher and drains it until done(seen) holds or the deadline
// passes. Every wait in this file goes through here: no sleeps.
::testing::AssertionResult wait_until(LinkWatcher& w, Seen& seen,
                                      const std::function<bool(const Seen&)>& done,
                                      std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (!done(seen)) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= 0ms)
      return ::testing::AssertionFailure() << "timed out; events so far:\n" << dump(seen.events);
    pollfd p{.fd = w.fd(), .events = POLLIN, .revents = 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()) + 1);
    if (n < 0 && errno != EINTR)
      return ::testing::AssertionFailure() << "poll: " << std::strerror(errno);
    if (n <= 0) continue;
    auto r = w.drain([&](const LinkEvent& e) { seen.events.push_back(e); });
    if (!r) return ::testing::AssertionFailure() << "drain: " << r.error().str();
    seen.lost |= *r;
  }
  return ::testing::AssertionSuccess();
}

// Spawns argv without a shell and without waiting for it.
pid_t spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return -1;
  return pid;
}

bool reaped_ok(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

struct Stats {
  double min, median, p99, max;
};

Stats stats_of(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  auto rank = [&](double q) {  // nearest rank
    size_t i = static_cast<size_t>(q * us.size() + 0.999999);
    return us[std::clamp<size_t>(i, 1, us.size()) - 1];
  };
  return {us.front(), rank(0.5), rank(0.99), us.back()};
}

// Opens a default watcher as `var` or fails the test.
#define OPEN_WATCHER(var)                                              \
  auto var##_opened = LinkWatcher::open();                             \
  ASSERT_TRUE(var##_opened.has_value()) << var##_opened.error().str(); \
  LinkWatcher& var = *var##_opened

class LinkWatcherTest : public ::testing::Test {
 protected:
  static inline bool ready_ = false;
  static inline std::string why_;

  // Our own fresh namespace, whichever suite of this binary ran before.
  static void SetUpTestSuite() {
    ready_ = false;
    if (geteuid() != 0) {
      why_ = "link watcher tests need root (CAP_NET_ADMIN, a private network namespace)";
      return;
    }
    if (unshare(CLONE_NEWNET) != 0) {
      why_ = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    if (!sh("ip link set lo up")) {
      why_ = "ip link set lo up failed (is iproute2 installed?)";
      return;
    }
    if (::access("/dev/net/tun", R_OK | W_OK) != 0) {
      why_ = "/dev/net/tun is missing";
      return;
    }
    ready_ = true;
  }

  void SetUp() override {
    if (ready_) return;
    if (std::getenv("CI") || std::getenv("ZW_REQUIRE_PRIVILEGED"))
      FAIL() << "cannot run link watcher tests in CI: " << why_;
    GTEST_SKIP() << why_;
  }
};

TEST_F(LinkWatcherTest, VethPairIsTwoAddedEventsThenUpIsChanged) {
  OPEN_WATCHER(w);
  LinkCleanup cleanup{{"zwv0"}};
  ASSERT_TRUE(sh("ip link add zwv0 type veth peer name zwv1"));
  Seen seen;
  ASSERT_TRUE(wait_until(w, seen, [](const Seen& s) {
    return s.find(Kind::kAdded, "zwv0") && s.find(Kind::kAdded, "zwv1");
  }));
  for (const char* n : {"zwv0", "zwv1"}) {
    const LinkEvent* e = seen.find(Kind::kAdded, n);
    EXPECT_EQ(e->ifindex, if_nametoindex(n)) << n;
    EXPECT_EQ(e->kind_name, "veth") << n;
    EXPECT_FALSE(e->up) << n;
  }
  EXPECT_EQ(std::count_if(seen.events.begin(), seen.events.end(),
                          [](const LinkEvent& e) { return e.kind == Kind::kAdded; }),
            2)
      << dump(seen.events);

  const uint32_t v0 = if_nametoindex("zwv0"), v1 = if_nametoindex("zwv1");
  seen = {};
  ASSERT_TRUE(sh("ip link set zwv0 up"));
  ASSERT_TRUE(wait_until(w, seen, [&](const Seen& s) {
    return std::any_of(s.events.begin(), s.events.end(), [&](const LinkEvent& e) {
      return e.kind == Kind::kChanged && e.ifindex == v0 && e.up;
    });
  }));
  EXPECT_EQ(seen.find(Kind::kAdded, v0), nullptr) << dump(seen.events);

  // Deleting one end removes both.
  seen = {};
  ASSERT_TRUE(sh("ip link del zwv0"));
  ASSERT_TRUE(wait_until(w, seen, [&](const Seen& s) {
    return s.find(Kind::kRemoved, v0) && s.find(Kind::kRemoved, v1);
  }));
  EXPECT_EQ(seen.find(Kind::kRemoved, v0)->ifname, "zwv0");
  EXPECT_EQ(seen.find(Kind::kRemoved, v1)->ifname, "zwv1");
  EXPECT_FALSE(seen.lost);
}

TEST_F(LinkWatcherTest, TapAddedAsTunThenRemovedWithSameIfindex) {
  OPEN_WATCHER(w);
  LinkCleanup cleanup{{"zwtap0"}};
  ASSERT_TRUE(sh("ip tuntap add dev zwtap0 mode tap"));
  Seen seen;
  ASSERT_TRUE(wait_until(w, seen, [](const Seen& s) { return s.find(Kind::kAdded, "zwtap0"); }));
  const LinkEvent added = *seen.find(Kind::kAdded, "zwtap0");
  EXPECT_EQ(added.kind_name, "tun");
  EXPECT_EQ(added.ifindex, if_nametoindex("zwtap0"));
  EXPECT_NE(added.ifindex, 0u);

  ASSERT_TRUE(sh("ip tuntap del dev zwtap0 mode tap"));
  ASSERT_TRUE(
      wait_until(w, seen, [&](const Seen& s) { return s.find(Kind::kRemoved, added.ifindex); }));
  const LinkEvent* removed = seen.find(Kind::kRemoved, added.ifindex);
  EXPECT_EQ(removed->ifname, "zwtap0");
  EXPECT_EQ(removed->kind_name, "tun");
  EXPECT_EQ(if_nametoindex("zwtap0"), 0u);
  EXPECT_FALSE(seen.lost);
}

TEST_F(LinkWatcherTest, RecreatedTapIsRemovedThenAddedWithNewIfindex) {
  OPEN_WATCHER(w);
  LinkCleanup cleanup{{"zwtap1"}};
  ASSERT_TRUE(sh("ip tuntap add dev zwtap1 mode tap"));
  Seen seen;
  ASSERT_TRUE(wait_until(w, seen, [](const Seen& s) { return s.find(Kind::kAdded, "zwtap1"); }));
  const uint32_t first = seen.find(Kind::kAdded, "zwtap1")->ifindex;

  seen = {};
  ASSERT_TRUE(sh("ip tuntap del dev zwtap1 mode tap && ip tuntap add dev zwtap1 mode tap"));
  ASSERT_TRUE(wait_until(w, seen, [](const Seen& s) { return s.find(Kind::kAdded, "zwtap1"); }));
  const uint32_t second = if_nametoindex("zwtap1");
  EXPECT_NE(second, first);
  EXPECT_NE(second, 0u);
  // Exactly: removed(first) ... then added(second), in that order.
  auto removed = std::find_if(seen.events.begin(), seen.events.end(),
                              [&](const LinkEvent& e) { return e.kind == Kind::kRemoved; });
  auto added = std::find_if(seen.events.begin(), seen.events.end(),
                            [&](const LinkEvent& e) { return e.kind == Kind::kAdded; });
  ASSERT_NE(removed, seen.events.end()) << dump(seen.events);
  EXPECT_EQ(removed->ifindex, first);
  EXPECT_EQ(removed->ifname, "zwtap1");
  EXPECT_EQ(added->ifindex, second);
  EXPECT_LT(removed - seen.events.begin(), added - seen.events.begin()) << dump(seen.events);
  EXPECT_FALSE(seen.lost);
}

TEST_F(LinkWatcherTest, RenameIsChangedWithNewName) {
  OPEN_WATCHER(w);
  LinkCleanup cleanup{{"zwtap2", "zwtap2r"}};
  ASSERT_TRUE(sh("ip tuntap add dev zwtap2 mode tap"));
  Seen seen;
  ASSERT_TRUE(wait_until(w, seen, [](const Seen& s) { return s.find(Kind::kAdded, "zwtap2"); }));
  const uint32_t ifindex = seen.find(Kind::kAdded, "zwtap2")->ifindex;

  seen = {};
  ASSERT_TRUE(sh("ip link set zwtap2 name zwtap2r"));
  ASSERT_TRUE(wait_until(w, seen, [](const Seen& s) { return s.find(Kind::kChanged, "zwtap2r"); }));
  const LinkEvent* renamed = seen.find(Kind::kChanged, "zwtap2r");
  EXPECT_EQ(renamed->ifindex, ifindex);
  EXPECT_EQ(renamed->kind_name, "tun");
  EXPECT_EQ(seen.find(Kind::kAdded, ifindex), nullptr) << dump(seen.events);

  ASSERT_TRUE(sh("ip link del zwtap2r"));
  ASSERT_TRUE(wait_until(w, seen, [&](const Seen& s) { return s.find(Kind::kRemoved, ifindex); }));
  EXPECT_EQ(seen.find(Kind::kRemoved, ifindex)->ifname, "zwtap2r");
}

TEST_F(LinkWatcherTest, ListLinksHasLoAndCreatedLinks) {
  LinkCleanup cleanup{{"zwl0", "zwltap"}};
  ASSERT_TRUE(sh("ip link add zwl0 type veth peer name zwl1 && ip tuntap add dev zwltap mode tap"));
  auto links = inventory::list_links();
  ASSERT_TRUE(links.has_value()) << links.error().str();
  auto get = [&](const std::string& n) -> const LinkEvent* {
    for (const auto& l : *links)
      if (l.ifname == n) return &l;
    return nullptr;
  };
  const LinkEvent* lo = get("lo");
  ASSERT_NE(lo, nullptr);
  EXPECT_EQ(lo->ifindex, 1u);
  EXPECT_TRUE(lo->up);
  EXPECT_EQ(lo->kind_name, "");
  for (const char* n : {"zwl0", "zwl1"}) {
    ASSERT_NE(get(n), nullptr) << n;
    EXPECT_EQ(get(n)->kind_name, "veth");
    EXPECT_EQ(get(n)->ifindex, if_nametoindex(n));
  }
  ASSERT_NE(get("zwltap"), nullptr);
  EXPECT_EQ(get("zwltap")->kind_name, "tun");
  for (const auto& l : *links) EXPECT_EQ(l.kind, Kind::kAdded);
  EXPECT_TRUE(
      std::is_sorted(links->begin(), links->end(),
                     [](const LinkEvent& a, const LinkEvent& b) { return a.ifindex < b.ifindex; }));
}

// Links that existed before open() are known to the watcher: changed, not added.
TEST_F(LinkWatcherTest, LinksPresentAtOpenAreNotAddedAgain) {
  LinkCleanup cleanup{{"zwtap3"}};
  ASSERT_TRUE(sh("ip tuntap add dev zwtap3 mode tap"));
  const uint32_t ifindex = if_nametoindex("zwtap3");
  OPEN_WATCHER(w);
  ASSERT_TRUE(sh("ip link set zwtap3 up"));
  Seen seen;
  ASSERT_TRUE(wait_until(w, seen, [&](const Seen& s) { return s.find(Kind::kChanged, ifindex); }));
  EXPECT_EQ(seen.find(Kind::kAdded, ifindex), nullptr) << dump(seen.events);
  EXPECT_TRUE(seen.find(Kind::kChanged, ifindex)->up);
}

// The watcher belongs to the namespace it was opened in: links created in
// another namespace never show up, whatever namespace the thread moves to.
TEST_F(LinkWatcherTest, WatcherSeesOnlyItsOwnNamespace) {
  UniqueFd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(home);
  OPEN_WATCHER(w);
  LinkCleanup cleanup{{"zwhome"}};
  ASSERT_EQ(unshare(CLONE_NEWNET), 0) << std::strerror(errno);
  const bool made = sh("ip tuntap add dev zwaway mode tap");  // dies with the namespace
  ASSERT_EQ(setns(home.get(), CLONE_NEWNET), 0) << std::strerror(errno);
  ASSERT_TRUE(made);
  ASSERT_EQ(if_nametoindex("zwaway"), 0u);
  ASSERT_TRUE(sh("ip tuntap add dev zwhome mode tap"));
  Seen seen;
  ASSERT_TRUE(wait_until(w, seen, [](const Seen& s) { return s.find(Kind::kAdded, "zwhome"); }));
  for (const auto& e : seen.events) EXPECT_NE(e.ifname, "zwaway") << dump(seen.events);
}

// AF_BRIDGE messages about ports (RTM_DELLINK on leaving the bridge) are not
// link removals: a VM's veth moved off a bridge is still there.
TEST_F(LinkWatcherTest, BridgePortLeavingIsNotRemoval) {
  OPEN_WATCHER(w);
  LinkCleanup cleanup{{"zwb0", "zwbp0", "zwsentinel"}};
  ASSERT_TRUE(sh("ip link add zwb0 type bridge && ip link add zwbp0 type veth peer name zwbp1"));
  ASSERT_TRUE(sh("ip link set zwbp0 master zwb0 && ip link set zwbp0 nomaster"));
  const uint32_t port = if_nametoindex("zwbp0");
  // Messages arrive in order: once the sentinel shows, everything before it did.
  ASSERT_TRUE(sh("ip tuntap add dev zwsentinel mode tap"));
  Seen seen;
  ASSERT_TRUE(
      wait_until(w, seen, [](const Seen& s) { return s.find(Kind::kAdded, "zwsentinel"); }));
  EXPECT_EQ(seen.find(Kind::kRemoved, port), nullptr) << dump(seen.events);
  const LinkEvent* bridge = seen.find(Kind::kAdded, "zwb0");
  ASSERT_NE(bridge, nullptr);
  EXPECT_EQ(bridge->kind_name, "bridge");
  EXPECT_NE(seen.find(Kind::kAdded, port), nullptr);
  EXPECT_FALSE(seen.lost);
}

// A burst of 500 links: a watcher with a tiny receive buffer must report the
// overrun (and reseed its table); one with the default buffer must lose nothing.
TEST_F(LinkWatcherTest, OverrunIsReportedAndDefaultBufferHoldsBurst) {
  constexpr int kPairs = 250;
  auto tiny = LinkWatcher::open(16 << 10);
  ASSERT_TRUE(tiny.has_value()) << tiny.error().str();
  OPEN_WATCHER(big);
  EXPECT_LE(tiny->rcvbuf(), 64 << 10);
  // The kernel doubles what it is given; root gets past net.core.rmem_max.
  EXPECT_EQ(big.rcvbuf(), 2 * LinkWatcher::kDefaultRcvBuf) << "SO_RCVBUFFORCE did not apply";

  char dir_tmpl[] = "/tmp/zw-nl-XXXXXX";
  ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
  const std::string dir = dir_tmpl;
  std::string add, del;
  for (int i = 0; i < kPairs; ++i) {
    char n[16];
    std::snprintf(n, sizeof n, "zwo%03d", i);
    add += std::string("link add ") + n + " type veth peer name " + n + "p\n";
    del += std::string("link del ") + n + "\n";
  }
  auto write = [](const std::string& path, const std::string& text) {
    FILE* f = std::fopen(path.c_str(), "w");
    if (!f) return false;
    const bool ok = std::fputs(text.c_str(), f) >= 0;
    return std::fclose(f) == 0 && ok;
  };
  ASSERT_TRUE(write(dir + "/add", add) && write(dir + "/del", del));
  struct BatchCleanup {
    std::string dir;
    ~BatchCleanup() {
      sh("ip -force -batch " + dir + "/del >/dev/null 2>&1");
      sh("rm -rf " + dir);
    }
  } batch_cleanup{dir};

  // Nobody reads while the burst runs: the kernel queues (or drops) it all.
  ASSERT_TRUE(sh("ip -batch " + dir + "/add"));

  Seen t;
  pollfd p{.fd = tiny->fd(), .events = POLLIN, .revents = 0};
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  auto r = tiny->drain([&](const LinkEvent& e) { t.events.push_back(e); });
  ASSERT_TRUE(r.has_value()) << r.error().str();
  const auto tiny_added = std::count_if(t.events.begin(), t.events.end(),
                                        [](const LinkEvent& e) { return e.kind == Kind::kAdded; });
  std::printf("[ overrun  ] tiny watcher: SO_RCVBUF %d, %zu events, %ld kAdded of %d, overrun %s\n",
              tiny->rcvbuf(), t.events.size(), static_cast<long>(tiny_added), 2 * kPairs,
              *r ? "yes" : "no");
  EXPECT_TRUE(*r) << "a 16 KiB buffer held a 500-link burst";
  EXPECT_LT(tiny_added, 2 * kPairs);

  // The default watcher sees every link, with nothing lost.
  Seen b;
  ASSERT_TRUE(wait_until(big, b, [&](const Seen& s) {
    return s.find(Kind::kAdded, std::string("zwo") + std::to_string(kPairs - 1) + "p");
  }));
  std::set<std::string> added;
  for (const auto& e : b.events)
    if (e.kind == Kind::kAdded) added.insert(e.ifname);
  EXPECT_EQ(added.size(), 2u * kPairs);
  EXPECT_FALSE(b.lost);
  std::printf("[ overrun  ] default watcher: SO_RCVBUF %d, %zu events, %zu kAdded, overrun %s\n",
              big.rcvbuf(), b.events.size(), added.size(), b.lost ? "yes" : "no");

  // Resync source: the dump has every link of the burst.
  auto links = inventory::list_links();
  ASSERT_TRUE(links.has_value()) << links.error().str();
  size_t burst = 0;
  for (const auto& l : *links) burst += l.ifname.starts_with("zwo");
  EXPECT_EQ(burst, 2u * kPairs);

  // The tiny watcher still works, and its reseeded table knows the last link
  // (whose kAdded was dropped): bringing it up is a change, not an addition.
  const std::string last = "zwo" + std::to_string(kPairs - 1);
  const uint32_t last_ifindex = if_nametoindex(last.c_str());
  ASSERT_EQ(t.find(Kind::kAdded, last_ifindex), nullptr)
      << "expected the last kAdded to be dropped";
  t = {};
  ASSERT_TRUE(sh("ip link set " + last + " up"));
  ASSERT_TRUE(
      wait_until(*tiny, t, [&](const Seen& s) { return s.find(Kind::kChanged, last_ifindex); }));
  EXPECT_EQ(t.find(Kind::kAdded, last_ifindex), nullptr) << dump(t.events);
  EXPECT_TRUE(t.find(Kind::kChanged, last_ifindex)->up);
  EXPECT_FALSE(t.lost);
}

// Latency from the start of `ip tuntap add` to the kAdded event processed,
// and, to separate the watcher from fork/exec, from an in-process TUNSETIFF.
// Reported, not asserted: it depends on the machine.
TEST_F(LinkWatcherTest, TapAddedLatency) {
  constexpr int kTaps = 50;
  OPEN_WATCHER(w);
  LinkCleanup cleanup;
  std::vector<double> via_ip, via_ioctl;
  for (int i = 0; i < kTaps; ++i) {
    const std::string name = "zwlat" + std::to_string(i);
    cleanup.names.push_back(name);
    double us = -1;
    const auto t0 = Clock::now();
    const pid_t pid = spawn({"ip", "tuntap", "add", "dev", name, "mode", "tap"});
    ASSERT_GT(pid, 0);
    const auto deadline = t0 + 5s;
    while (us < 0 && Clock::now() < deadline) {
      pollfd p{.fd = w.fd(), .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      auto r = w.drain([&](const LinkEvent& e) {
        if (e.kind == Kind::kAdded && e.ifname == name)
          us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      });
      ASSERT_TRUE(r.has_value()) << r.error().str();
      EXPECT_FALSE(*r);
    }
    ASSERT_TRUE(reaped_ok(pid)) << "ip tuntap add " << name;
    ASSERT_GE(us, 0) << "no kAdded for " << name;
    via_ip.push_back(us);
  }
  for (int i = 0; i < kTaps; ++i) {
    const std::string name = "zwioc" + std::to_string(i);
    double us = -1;
    const auto t0 = Clock::now();
    UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(tun);
    ifreq ifr{};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name.c_str());
    ASSERT_EQ(::ioctl(tun.get(), TUNSETIFF, &ifr), 0) << std::strerror(errno);
    const auto deadline = t0 + 5s;
    while (us < 0 && Clock::now() < deadline) {
      pollfd p{.fd = w.fd(), .events = POLLIN, .revents = 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      auto r = w.drain([&](const LinkEvent& e) {
        if (e.kind == Kind::kAdded && e.ifname == name)
          us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      });
      ASSERT_TRUE(r.has_value()) << r.error().str();
    }
    ASSERT_GE(us, 0) << "no kAdded for " << name;
    via_ioctl.push_back(us);
    // Closing the fd of a non-persistent tap deletes it.
  }
  const Stats a = stats_of(via_ip), b = stats_of(via_ioctl);
  auto print = [&](const char* what, const Stats& st) {
    std::printf(
        "[ latency  ] %s -> kAdded processed, %d taps: min %.0f us, median %.0f us, p99 %.0f us, "
        "max %.0f us\n",
        what, kTaps, st.min, st.median, st.p99, st.max);
  };
  print("ip tuntap add", a);
  print("TUNSETIFF", b);
  RecordProperty("ip_tuntap_to_event_us_min", static_cast<int>(a.min));
  RecordProperty("ip_tuntap_to_event_us_median", static_cast<int>(a.median));
  RecordProperty("ip_tuntap_to_event_us_p99", static_cast<int>(a.p99));
  RecordProperty("tunsetiff_to_event_us_min", static_cast<int>(b.min));
  RecordProperty("tunsetiff_to_event_us_median", static_cast<int>(b.median));
  RecordProperty("tunsetiff_to_event_us_p99", static_cast<int>(b.p99));
}

}  // namespace
}  // namespace zw
