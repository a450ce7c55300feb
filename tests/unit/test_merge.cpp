// Static inventory overrides on top of libvirt's: matching (UUID, name,
// interface), what is replaced, what is kept, what is appended.
#include <gtest/gtest.h>

#include "inventory/merge.h"
#include "inventory/static_json.h"

using namespace zw;
using namespace zw::inventory;

namespace {

net::Addr ip(const char* s) { return *net::parse_addr(s); }
net::Mac mac(const char* s) { return *net::parse_mac(s); }

Endpoint lv(std::string vm, std::string uuid, std::string ifname, std::vector<net::Addr> addrs,
            std::optional<std::string> zone = std::nullopt) {
  Endpoint e;
  e.vm_name = std::move(vm);
  e.vm_uuid = std::move(uuid);
  e.ifname = std::move(ifname);
  e.addrs = std::move(addrs);
  e.zone_tag = std::move(zone);
  e.mac = mac("52:54:00:00:00:01");
  e.source = "libvirt test:///x: domain '" + e.vm_name + "' interface 0";
  return e;
}

Inventory static_inv(const std::string& json) {
  auto inv = parse_static(json, "inv.json");
  EXPECT_TRUE(inv.has_value()) << (inv ? "" : inv.error().message());
  return inv.value_or(Inventory{});
}

std::vector<std::string> strs(const std::vector<net::Addr>& v) {
  std::vector<std::string> out;
  for (const auto& a : v) out.push_back(a.str());
  return out;
}

const std::string kWebUuid = "6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90";

}  // namespace

TEST(Merge, StaticOverridesAddressesMacAndAttachOfTheMatchedInterface) {
  Inventory from_lv{{lv("web-1", kWebUuid, "vnet3", {ip("192.168.122.5")}, "web"),
                     lv("web-1", kWebUuid, "vnet4", {ip("192.168.122.6")}, "web")}};
  Inventory st = static_inv(R"({"vms": [{"name": "web-1", "interfaces": [
      {"name": "vnet4", "mac": "52:54:00:aa:00:04", "ips": ["10.70.0.11", "fd70::11"], "attach": "xdp"}]}]})");
  Inventory out = apply_overrides(from_lv, st);
  ASSERT_EQ(out.endpoints.size(), 2u);
  // Untouched.
  EXPECT_EQ(strs(out.endpoints[0].addrs), (std::vector<std::string>{"192.168.122.5"}));
  EXPECT_FALSE(out.endpoints[0].attach.has_value());
  EXPECT_EQ(out.endpoints[0].source, from_lv.endpoints[0].source);
  // Overridden; identity and zone tag stay libvirt's.
  const Endpoint& e = out.endpoints[1];
  EXPECT_EQ(e.vm_name, "web-1");
  EXPECT_EQ(e.vm_uuid, kWebUuid);
  EXPECT_EQ(e.zone_tag, std::optional<std::string>("web"));
  EXPECT_EQ(e.ifname, "vnet4");
  EXPECT_EQ(strs(e.addrs), (std::vector<std::string>{"10.70.0.11", "fd70::11"}));
  EXPECT_EQ(net::mac_str(*e.mac), "52:54:00:aa:00:04");
  EXPECT_EQ(e.attach, std::optional<std::string>("xdp"));
  EXPECT_EQ(e.source,
            from_lv.endpoints[1].source + " (overridden by inv.json: /vms/0/interfaces/0)");
}

TEST(Merge, WhatTheStaticEntryDoesNotSayIsKept) {
  Inventory from_lv{{lv("web-1", kWebUuid, "vnet3", {ip("192.168.122.5")}, "web")}};
  Inventory st = static_inv(
      R"({"vms": [{"name": "web-1", "interfaces": [{"name": "vnet3", "attach": "tc"}]}]})");
  Inventory out = apply_overrides(from_lv, st);
  ASSERT_EQ(out.endpoints.size(), 1u);
  EXPECT_EQ(strs(out.endpoints[0].addrs), (std::vector<std::string>{"192.168.122.5"}));
  EXPECT_EQ(net::mac_str(*out.endpoints[0].mac), "52:54:00:00:00:01");
  EXPECT_EQ(out.endpoints[0].zone_tag, std::optional<std::string>("web"));
  EXPECT_EQ(out.endpoints[0].attach, std::optional<std::string>("tc"));
}

TEST(Merge, StaticZoneReplacesTheMetadataTag) {
  Inventory from_lv{{lv("web-1", kWebUuid, "vnet3", {}, "web")}};
  Inventory st = static_inv(
      R"({"vms": [{"name": "web-1", "zone": "db", "interfaces": [{"name": "vnet3"}]}]})");
  Inventory out = apply_overrides(from_lv, st);
  ASSERT_EQ(out.endpoints.size(), 1u);
  EXPECT_EQ(out.endpoints[0].zone_tag, std::optional<std::string>("db"));
}

TEST(Merge, MatchesByUuidAcrossARename) {
  Inventory from_lv{{lv("web-1-renamed", kWebUuid, "vnet3", {})}};
  Inventory st =
      static_inv(R"({"vms": [{"name": "web-1", "uuid": "6F1C2E4A-9B7D-4C3E-8A1F-2D5B6C7E8F90",
      "interfaces": [{"name": "vnet3", "ips": ["10.70.0.11"]}]}]})");
  Inventory out = apply_overrides(from_lv, st);
  ASSERT_EQ(out.endpoints.size(), 1u);
  EXPECT_EQ(out.endpoints[0].vm_name, "web-1-renamed");
  EXPECT_EQ(strs(out.endpoints[0].addrs), (std::vector<std::string>{"10.70.0.11"}));
}

TEST(Merge, SameNameDifferentUuidIsAnotherVm) {
  // web-1 was deleted and re-created: the static entry was about the old one.
  Inventory from_lv{
      {lv("web-1", "0b6e3a52-7c1d-4f8e-9a2b-3c4d5e6f7081", "vnet3", {ip("192.168.122.5")})}};
  Inventory st =
      static_inv(R"({"vms": [{"name": "web-1", "uuid": "6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90",
      "interfaces": [{"name": "vnet3", "ips": ["10.70.0.11"]}]}]})");
  Inventory out = apply_overrides(from_lv, st);
  ASSERT_EQ(out.endpoints.size(), 2u);
  EXPECT_EQ(strs(out.endpoints[0].addrs), (std::vector<std::string>{"192.168.122.5"}));
  EXPECT_EQ(out.endpoints[1].source, "inv.json: /vms/0/interfaces/0");  // appended as is
}

TEST(Merge, NameMatchesWhenOnlyOneSideHasAUuid) {
  Inventory from_lv{{lv("web-1", kWebUuid, "vnet3", {})}};
  Inventory st = static_inv(
      R"({"vms": [{"name": "web-1", "interfaces": [{"name": "vnet3", "ips": ["10.70.0.11"]}]}]})");
  Inventory out = apply_overrides(from_lv, st);
  ASSERT_EQ(out.endpoints.size(), 1u);
  EXPECT_EQ(strs(out.endpoints[0].addrs), (std::vector<std::string>{"10.70.0.11"}));
}

TEST(Merge, InterfaceNameMustMatchToo) {
  // A libvirt endpoint without a tap name (domain not running) matches nothing.
  Inventory from_lv{{lv("web-1", kWebUuid, "vnet3", {}), lv("web-1", kWebUuid, "", {})}};
  Inventory st = static_inv(
      R"({"vms": [{"name": "web-1", "interfaces": [{"name": "vnet9", "ips": ["10.70.0.11"]}]}]})");
  Inventory out = apply_overrides(from_lv, st);
  ASSERT_EQ(out.endpoints.size(), 3u);
  EXPECT_TRUE(out.endpoints[0].addrs.empty());
  EXPECT_TRUE(out.endpoints[1].addrs.empty());
  EXPECT_EQ(out.endpoints[2].ifname, "vnet9");
  EXPECT_EQ(strs(out.endpoints[2].addrs), (std::vector<std::string>{"10.70.0.11"}));
}

TEST(Merge, UnmatchedStaticEntriesAppendedInOrderAfterLibvirts) {
  Inventory from_lv{{lv("web-1", kWebUuid, "vnet3", {}), lv("db-1", "", "vnet5", {})}};
  Inventory st = static_inv(R"({"vms": [
      {"name": "lab-a", "zone": "lab", "interfaces": [{"name": "zwlaba", "ips": ["10.99.0.1"]}]},
      {"name": "db-1", "interfaces": [{"name": "vnet5", "ips": ["10.70.0.21"]}]},
      {"name": "lab-b", "interfaces": [{"name": "zwlabb", "mac": "52:54:00:99:00:02"}]}]})");
  Inventory out = apply_overrides(from_lv, st);
  ASSERT_EQ(out.endpoints.size(), 4u);
  EXPECT_EQ(out.endpoints[0].vm_name, "web-1");
  EXPECT_EQ(out.endpoints[1].vm_name, "db-1");
  EXPECT_EQ(strs(out.endpoints[1].addrs), (std::vector<std::string>{"10.70.0.21"}));
  EXPECT_EQ(out.endpoints[2].vm_name, "lab-a");
  EXPECT_EQ(out.endpoints[2].zone_tag, std::optional<std::string>("lab"));
  EXPECT_EQ(out.endpoints[3].vm_name, "lab-b");
  EXPECT_EQ(net::mac_str(*out.endpoints[3].mac), "52:54:00:99:00:02");
}

TEST(Merge, EmptySidesAreIdentities) {
  Inventory st = static_inv(
      R"({"vms": [{"name": "a", "interfaces": [{"name": "zwa", "ips": ["10.0.0.1"]}]}]})");
  Inventory out = apply_overrides(Inventory{}, st);
  ASSERT_EQ(out.endpoints.size(), 1u);
  EXPECT_EQ(out.endpoints[0].source, st.endpoints[0].source);
  Inventory from_lv{{lv("web-1", kWebUuid, "vnet3", {ip("192.168.122.5")})}};
  Inventory same = apply_overrides(from_lv, Inventory{});
  ASSERT_EQ(same.endpoints.size(), 1u);
  EXPECT_EQ(same.endpoints[0].source, from_lv.endpoints[0].source);
  EXPECT_EQ(strs(same.endpoints[0].addrs), (std::vector<std::string>{"192.168.122.5"}));
}
