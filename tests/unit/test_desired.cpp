// engine::build_desired: counter slots (endpoint ids) and the interface
// capacity. VMs without an interface here (stopped, or on another host of a
// cluster) take no interface slot and never a counter slot an interface
// needs.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "engine/desired.h"
#include "policy/json.h"

namespace zw::engine {
namespace {

policy::Policy one_zone() {
  auto p =
      policy::parse(R"({"version": 1, "zones": {"all": {"vms": ["*"]}}, "rules": []})", "p.json");
  EXPECT_TRUE(p) << p.error().str();
  return *p;
}

// VM n with one address and, unless `stopped`, an interface "t<n>".
inventory::Endpoint vm(uint32_t n, bool stopped) {
  inventory::Endpoint e;
  e.vm_name = (stopped ? "s" : "v") + std::to_string(n);
  e.ifname = stopped ? "" : "t" + std::to_string(n);
  e.addrs.push_back(*net::parse_addr("10." + std::to_string(64 + (n >> 16)) + "." +
                                     std::to_string((n >> 8) & 255) + "." +
                                     std::to_string(n & 255)));
  if (stopped)
    e.addrs.front() = *net::parse_addr("11." + std::to_string(n >> 8 & 255) + "." +
                                       std::to_string(n & 255) + ".1");
  e.source = "test: " + e.vm_name;
  return e;
}

Result<Desired> build(const policy::Policy& p, const inventory::Inventory& inv,
                      const std::optional<State>& prev) {
  return build_desired(p, inv, prev, "tc", [](const std::string&) { return 0u; });
}

TEST(Desired, InterfaceLessVmsDoNotCountAgainstTheInterfaceSlots) {
  auto p = one_zone();
  inventory::Inventory inv;
  for (uint32_t i = 0; i < ZW_MAX_ENDPOINTS; ++i) inv.endpoints.push_back(vm(i, false));
  for (uint32_t i = 0; i < 300; ++i) inv.endpoints.push_back(vm(i, true));
  auto d = build(p, inv, std::nullopt);
  ASSERT_TRUE(d) << d.error().str();
  std::set<uint32_t> ids;
  for (const auto& e : d->endpoints) {
    if (e.ep.ifname.empty()) {
      EXPECT_EQ(e.value.id, kNoEndpointId) << e.ep.vm_name;
    } else {
      EXPECT_LT(e.value.id, ZW_MAX_ENDPOINTS) << e.ep.vm_name;
      EXPECT_TRUE(ids.insert(e.value.id).second) << "id " << e.value.id << " twice";
    }
  }
  EXPECT_EQ(ids.size(), ZW_MAX_ENDPOINTS);
  // Their addresses are zoned all the same.
  EXPECT_EQ(d->addrs.size(), ZW_MAX_ENDPOINTS + 300);

  inv.endpoints.push_back(vm(ZW_MAX_ENDPOINTS, false));  // one interface too many
  auto over = build(p, inv, std::nullopt);
  ASSERT_FALSE(over);
  EXPECT_NE(over.error().str().find("16385 VM interfaces exceed the endpoint map (16384)"),
            std::string::npos)
      << over.error().str();
}

TEST(Desired, AStoppedVmKeepsItsSlotUntilAnInterfaceNeedsIt) {
  auto p = one_zone();
  State prev;
  prev.endpoints.push_back({});
  inventory::Inventory inv;
  for (uint32_t i = 0; i < 10; ++i) inv.endpoints.push_back(vm(i, false));
  inv.endpoints.push_back(vm(0, true));
  prev.endpoints.back().key = endpoint_key(inv.endpoints.back());
  prev.endpoints.back().id = 3;
  auto d = build(p, inv, prev);
  ASSERT_TRUE(d) << d.error().str();
  std::set<uint32_t> ifids;
  for (const auto& e : d->endpoints) {
    if (e.ep.ifname.empty())
      EXPECT_EQ(e.value.id, 3u);  // its counters stay its own
    else
      ifids.insert(e.value.id);
  }
  EXPECT_EQ(ifids.count(3), 0u);
  EXPECT_EQ(ifids.size(), 10u);

  // Every slot needed by interfaces: the stopped VM gives its slot up.
  inv.endpoints.pop_back();
  for (uint32_t i = 10; i < ZW_MAX_ENDPOINTS; ++i) inv.endpoints.push_back(vm(i, false));
  inv.endpoints.push_back(vm(0, true));
  auto full = build(p, inv, prev);
  ASSERT_TRUE(full) << full.error().str();
  std::set<uint32_t> all;
  for (const auto& e : full->endpoints) {
    if (e.ep.ifname.empty())
      EXPECT_EQ(e.value.id, kNoEndpointId);
    else
      EXPECT_TRUE(all.insert(e.value.id).second && e.value.id < ZW_MAX_ENDPOINTS);
  }
  EXPECT_EQ(all.size(), ZW_MAX_ENDPOINTS);
}

}  // namespace
}  // namespace zw::engine
