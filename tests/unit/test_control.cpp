// Who may do what over the daemon's control socket (the decision only; the
// e2e test test_control_credentials.sh runs it with real users).
#include <gtest/gtest.h>

#include "daemon/control.h"

namespace zw::daemon {
namespace {

Access groups() {
  Access a;
  a.read_gid = 700;
  a.read_group = "zw-read";
  a.apply_gid = 701;
  a.apply_group = "zw-admin";
  return a;
}

Peer user(gid_t primary, std::vector<gid_t> supplementary = {}) {
  return Peer{.uid = 1000, .gid = primary, .pid = 42, .groups = std::move(supplementary)};
}

TEST(ControlAccess, ReadOnlyAndStateChangingCommands) {
  for (const char* c : {"ping", "status", "stats", "flows"})
    EXPECT_EQ(required_role(c), Role::kRead) << c;
  for (const char* c : {"apply", "reload", "down", "some-new-command", ""})
    EXPECT_EQ(required_role(c), Role::kApply) << c;
}

TEST(ControlAccess, RootMayDoEverything) {
  Peer root{.uid = 0, .gid = 0, .pid = 1, .groups = {}};
  EXPECT_FALSE(refusal({}, root, "apply"));
  EXPECT_FALSE(refusal(groups(), root, "apply"));
}

TEST(ControlAccess, ReadGroupReadsOnly) {
  auto a = groups();
  EXPECT_FALSE(refusal(a, user(100, {700}), "status"));
  EXPECT_FALSE(refusal(a, user(700), "stats"));  // primary group counts too
  auto why = refusal(a, user(100, {700}), "apply");
  ASSERT_TRUE(why);
  EXPECT_EQ(*why,
            "permission denied: 'apply' needs root or membership of group 'zw-admin' (caller uid "
            "1000, pid 42)");
}

TEST(ControlAccess, ApplyGroupMayAlsoRead) {
  auto a = groups();
  EXPECT_FALSE(refusal(a, user(100, {701}), "apply"));
  EXPECT_FALSE(refusal(a, user(100, {701}), "status"));
}

TEST(ControlAccess, StrangersAndNoGroups) {
  auto why = refusal(groups(), user(100, {5, 6}), "status");
  ASSERT_TRUE(why);
  EXPECT_EQ(*why,
            "permission denied: 'status' needs root or membership of group 'zw-read' or group "
            "'zw-admin' (caller uid 1000, pid 42)");
  why = refusal({}, user(100), "status");
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("no group is configured"), std::string::npos) << *why;
}

}  // namespace
}  // namespace zw::daemon
