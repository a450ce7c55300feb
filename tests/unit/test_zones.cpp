// Zone assignment: globs, UUIDs, zone tags, unzoned, and the errors for VMs
// matched by two zones or tagged with a zone the policy lacks.
#include <gtest/gtest.h>

#include "inventory/zones.h"
#include "policy/json.h"

using namespace zw;
using namespace zw::inventory;

namespace {

policy::Policy policy_of(const std::string& text) {
  auto p = policy::parse(text, "p.json");
  EXPECT_TRUE(p.has_value()) << (p ? "" : p.error().message());
  return p.value_or(policy::Policy{});
}

Endpoint ep(std::string name, std::string uuid = "",
            std::optional<std::string> tag = std::nullopt) {
  Endpoint e;
  e.vm_name = std::move(name);
  e.vm_uuid = std::move(uuid);
  e.zone_tag = std::move(tag);
  e.ifname = "tap-" + e.vm_name;
  e.source = "inv.json: /vms/" + e.vm_name;
  return e;
}

const char* kPolicy = R"({"version": 1, "zones": {
  "web":    {"vms": ["web-*", "www?"]},
  "db":     {"uuids": ["6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90"], "vms": ["db-[0-9]"]},
  "tagged": {"vms": ["never-matches-anything"]},
  "office": {"cidrs": ["10.70.0.192/26"]}
}})";

}  // namespace

TEST(Zones, GlobUuidTagAndUnzoned) {
  auto p = policy_of(kPolicy);
  Inventory inv;
  inv.endpoints = {ep("web-1"),
                   ep("www1"),
                   ep("db-7"),
                   ep("backup", "6F1C2E4A-9B7D-4C3E-8A1F-2D5B6C7E8F90"),
                   ep("stray", "", "tagged"),
                   ep("nobody"),
                   ep("db-77"),
                   ep("www12")};
  auto a = assign_zones(p, inv);
  ASSERT_TRUE(a.has_value()) << a.error().message();
  ASSERT_EQ(a->size(), inv.endpoints.size());
  std::vector<std::string> zones;
  for (const auto& x : *a) zones.push_back(x.zone);
  EXPECT_EQ(zones, (std::vector<std::string>{"web", "web", "db", "db", "tagged", "unzoned",
                                             "unzoned", "unzoned"}));
  EXPECT_EQ((*a)[0].endpoint.ifname, "tap-web-1");
}

TEST(Zones, SameZoneTwiceIsFine) {
  auto p = policy_of(kPolicy);
  Inventory inv;
  inv.endpoints = {ep("db-1", "6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90", "db")};
  auto a = assign_zones(p, inv);
  ASSERT_TRUE(a.has_value()) << a.error().message();
  EXPECT_EQ((*a)[0].zone, "db");
}

TEST(Zones, TwoZonesIsAnErrorNamingBoth) {
  auto p = policy_of(kPolicy);
  Inventory inv;
  inv.endpoints = {ep("web-db", "6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90")};
  auto a = assign_zones(p, inv);
  ASSERT_FALSE(a.has_value());
  EXPECT_EQ(a.error().kind(), ErrorKind::kInvalid);
  EXPECT_EQ(a.error().message(),
            "inv.json: /vms/web-db: VM 'web-db' matches zones 'db' (uuid "
            "6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90) and 'web' (vms glob 'web-*'); a VM must be in "
            "one zone");
}

TEST(Zones, TagConflictsWithGlob) {
  auto p = policy_of(kPolicy);
  Inventory inv;
  inv.endpoints = {ep("web-3", "", "tagged")};
  auto a = assign_zones(p, inv);
  ASSERT_FALSE(a.has_value());
  EXPECT_NE(a.error().message().find("'tagged' (zone tag) and 'web' (vms glob 'web-*')"),
            std::string::npos)
      << a.error().message();
}

TEST(Zones, BadTagsAndAllErrorsCollected) {
  auto p = policy_of(kPolicy);
  Inventory inv;
  inv.endpoints = {ep("a", "", "nosuch"), ep("b", "", "office"), ep("web-ok"),
                   ep("web-x", "", "db")};
  auto a = assign_zones(p, inv);
  ASSERT_FALSE(a.has_value());
  const std::string& m = a.error().message();
  EXPECT_NE(
      m.find("inv.json: /vms/a: VM 'a' has zone tag 'nosuch', which the policy does not define"),
      std::string::npos)
      << m;
  EXPECT_NE(m.find("inv.json: /vms/b: VM 'b' has zone tag 'office', an external (cidrs) zone"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("inv.json: /vms/web-x: VM 'web-x' matches zones 'db' (zone tag) and 'web'"),
            std::string::npos)
      << m;
  EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 2) << m;
}

TEST(Zones, CidrZonesNeverHoldVms) {
  auto p = policy_of(R"({"version": 1, "zones": {"ext": {"cidrs": ["10.0.0.0/8"]}}})");
  Inventory inv;
  inv.endpoints = {ep("10.0.0.1")};
  auto a = assign_zones(p, inv);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ((*a)[0].zone, "unzoned");
}
