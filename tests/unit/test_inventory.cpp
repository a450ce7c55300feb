// Static JSON inventory: flattening into endpoints and every validation error
// (file + JSON pointer, all of them at once).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "inventory/static_json.h"

using namespace zw;
using namespace zw::inventory;

namespace {

std::string errors_of(const Result<Inventory>& r) {
  return r.has_value() ? std::string("(parsed fine)") : r.error().message();
}

void expect_error(const std::string& text, const std::string& want) {
  auto inv = parse_static(text, "inv.json");
  ASSERT_FALSE(inv.has_value()) << "expected: " << want;
  EXPECT_EQ(inv.error().kind(), ErrorKind::kInvalid);
  EXPECT_NE(inv.error().message().find(want), std::string::npos)
      << "expected: " << want << "\ngot: " << inv.error().message();
}

std::string one_vm(const std::string& iface) {
  return R"({"vms": [{"name": "web-1", "interfaces": [)" + iface + "]}]}";
}

}  // namespace

TEST(Inventory, ParsesAndFlattens) {
  auto inv = parse_static(R"({"vms": [
    {"name": "web-1", "uuid": "6F1C2E4A-9B7D-4C3E-8A1F-2D5B6C7E8F90", "zone": "web",
     "interfaces": [{"name": "zwweb1", "mac": "52:54:00:00:00:11", "ips": ["10.70.0.11", "fd70::11"], "attach": "xdp"},
                    {"name": "zwweb1b", "ips": []}]},
    {"name": "db-1", "interfaces": [{"name": "vnet0", "attach": "tc", "ips": ["10.70.0.21"]}]}
  ]})",
                          "inv.json");
  ASSERT_TRUE(inv.has_value()) << errors_of(inv);
  ASSERT_EQ(inv->endpoints.size(), 3u);
  const Endpoint& e = inv->endpoints[0];
  EXPECT_EQ(e.vm_name, "web-1");
  EXPECT_EQ(e.vm_uuid, "6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90");
  EXPECT_EQ(e.zone_tag, std::optional<std::string>("web"));
  EXPECT_EQ(e.ifname, "zwweb1");
  ASSERT_TRUE(e.mac.has_value());
  EXPECT_EQ(net::mac_str(*e.mac), "52:54:00:00:00:11");
  ASSERT_EQ(e.addrs.size(), 2u);
  EXPECT_EQ(e.addrs[0].str(), "10.70.0.11");
  EXPECT_EQ(e.addrs[1].str(), "fd70::11");
  EXPECT_EQ(e.attach, std::optional<std::string>("xdp"));
  EXPECT_EQ(e.source, "inv.json: /vms/0/interfaces/0");
  const Endpoint& e1 = inv->endpoints[1];
  EXPECT_EQ(e1.vm_name, "web-1");
  EXPECT_EQ(e1.ifname, "zwweb1b");
  EXPECT_FALSE(e1.mac.has_value());
  EXPECT_FALSE(e1.attach.has_value());
  EXPECT_TRUE(e1.addrs.empty());
  EXPECT_EQ(e1.source, "inv.json: /vms/0/interfaces/1");
  const Endpoint& e2 = inv->endpoints[2];
  EXPECT_EQ(e2.vm_uuid, "");
  EXPECT_FALSE(e2.zone_tag.has_value());
  EXPECT_EQ(e2.attach, std::optional<std::string>("tc"));
}

TEST(Inventory, EmptyInventoryIsValid) {
  auto inv = parse_static(R"({"vms": []})", "inv.json");
  ASSERT_TRUE(inv.has_value()) << errors_of(inv);
  EXPECT_TRUE(inv->endpoints.empty());
}

TEST(Inventory, ValidationErrors) {
  expect_error(R"({"vms": [], "hosts": []})", "inv.json: /hosts: unknown field 'hosts'");
  expect_error(R"({})", "inv.json: /vms: required field missing");
  expect_error(R"({"vms": {}})", "inv.json: /vms: expected an array");
  expect_error(R"({"vms": [{"name": "a", "interfaces": [{"name": "t0"}], "cpu": 2}]})",
               "inv.json: /vms/0/cpu: unknown field 'cpu'");
  expect_error(one_vm(R"({"name": "t0", "ip": ["10.0.0.1"]})"),
               "inv.json: /vms/0/interfaces/0/ip: unknown field 'ip'");
  expect_error(R"({"vms": [{"interfaces": [{"name": "t0"}]}]})",
               "inv.json: /vms/0/name: required field missing");
  expect_error(R"({"vms": [{"name": "", "interfaces": [{"name": "t0"}]}]})",
               "inv.json: /vms/0/name: must not be empty");
  expect_error(R"({"vms": [{"name": "a"}]})",
               "inv.json: /vms/0/interfaces: required field missing");
  expect_error(R"({"vms": [{"name": "a", "interfaces": []}]})",
               "inv.json: /vms/0/interfaces: a VM needs at least one interface");
  expect_error(R"({"vms": [{"name": "a", "uuid": "not-a-uuid", "interfaces": [{"name": "t0"}]}]})",
               "inv.json: /vms/0/uuid: \"not-a-uuid\" is not a UUID");
  expect_error(R"({"vms": [{"name": "a", "zone": 3, "interfaces": [{"name": "t0"}]}]})",
               "inv.json: /vms/0/zone: expected a string");
  expect_error(one_vm(R"({"name": "t0", "mac": "52:54:00:00:00"})"),
               "inv.json: /vms/0/interfaces/0/mac: \"52:54:00:00:00\" is not a MAC address");
  expect_error(one_vm(R"({"name": "t0", "mac": "01:00:5e:00:00:01"})"),
               "inv.json: /vms/0/interfaces/0/mac: \"01:00:5e:00:00:01\" is a multicast MAC");
  expect_error(one_vm(R"({"name": "t0", "mac": "00:00:00:00:00:00"})"),
               "inv.json: /vms/0/interfaces/0/mac: 00:00:00:00:00:00 is not a VM's address");
  expect_error(
      one_vm(R"({"name": "t0", "ips": ["10.0.0.1", "10.0.0.300"]})"),
      "inv.json: /vms/0/interfaces/0/ips/1: \"10.0.0.300\" is not an IPv4 or IPv6 address");
  expect_error(
      one_vm(R"({"name": "t0", "ips": ["10.0.0.0/24"]})"),
      "inv.json: /vms/0/interfaces/0/ips/0: \"10.0.0.0/24\" is not an IPv4 or IPv6 address");
  expect_error(
      one_vm(R"({"name": "t0", "allowed_addresses": ["10.0.0.100", "vip"]})"),
      "inv.json: /vms/0/interfaces/0/allowed_addresses/1: \"vip\" is not an IPv4 or IPv6 address");
  expect_error(one_vm(R"({"name": "t0", "allowed_addresses": "10.0.0.100"})"),
               "inv.json: /vms/0/interfaces/0/allowed_addresses: expected an array");
  expect_error(one_vm(R"({"name": "t0", "attach": "skb"})"),
               "inv.json: /vms/0/interfaces/0/attach: expected \"tc\" or \"xdp\", got \"skb\"");
  expect_error(one_vm(R"({"mac": "52:54:00:00:00:01"})"),
               "inv.json: /vms/0/interfaces/0/name: required field missing");
  for (const char* bad : {"", "a-name-of-16-chr", "tap/0", "tap 0", "tap:0", ".", ".."})
    expect_error(one_vm(R"({"name": ")" + std::string(bad) + R"("})"),
                 "inv.json: /vms/0/interfaces/0/name: ");
  auto ok15 = parse_static(one_vm(R"({"name": "a-name-of-15chr"})"), "inv.json");
  EXPECT_TRUE(ok15.has_value()) << errors_of(ok15);
  expect_error("{\"vms\": [\n  {\"name\": \"a\",,}\n]}", "inv.json: line 2, column 16: ");
}

TEST(Inventory, DuplicatesAcrossVms) {
  auto inv = parse_static(R"({"vms": [
    {"name": "a", "uuid": "6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90",
     "interfaces": [{"name": "t0", "ips": ["10.0.0.1", "fd00::1"]}, {"name": "t0"}]},
    {"name": "b", "uuid": "6F1C2E4A-9B7D-4C3E-8A1F-2D5B6C7E8F90",
     "interfaces": [{"name": "t1", "ips": ["10.0.0.2", "FD00::1"]}]},
    {"name": "a", "interfaces": [{"name": "t2", "ips": ["10.0.0.1"]}]}
  ]})",
                          "inv.json");
  ASSERT_FALSE(inv.has_value());
  const std::string& m = inv.error().message();
  for (const char* want :
       {"inv.json: /vms/0/interfaces/1/name: interface 't0' is already used at /vms/0/interfaces/0",
        "inv.json: /vms/1/uuid: UUID 6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90 is already used at "
        "/vms/0",
        "inv.json: /vms/1/interfaces/0/ips/1: fd00::1 is already used by VM 'a' "
        "(/vms/0/interfaces/0/ips/1)",
        "inv.json: /vms/2/name: VM name 'a' is already used at /vms/0",
        "inv.json: /vms/2/interfaces/0/ips/0: 10.0.0.1 is already used by VM 'a' "
        "(/vms/0/interfaces/0/ips/0)"})
    EXPECT_NE(m.find(want), std::string::npos) << "expected: " << want << "\ngot: " << m;
  EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 4) << m;
}

TEST(Inventory, LoadStatic) {
  auto missing = load_static("/nonexistent/inventory.json");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().message(), "/nonexistent/inventory.json: no such file or directory");
  auto path = std::filesystem::temp_directory_path() / "zw_unit_inventory.json";
  std::ofstream(path)
      << R"({"vms": [{"name": "x", "interfaces": [{"name": "tapx", "mac": "52:54:00:00:00:01"}]}]})";
  auto inv = load_static(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(inv.has_value()) << errors_of(inv);
  ASSERT_EQ(inv->endpoints.size(), 1u);
  EXPECT_EQ(inv->endpoints[0].source, path.string() + ": /vms/0/interfaces/0");
}
