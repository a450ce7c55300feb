// state.json: the streamed writer and the reader agree (every field, odd
// characters included), and the file is the same JSON document the
// pretty-printed form describes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/state.h"

namespace zw::engine {
namespace {

State sample() {
  State s;
  s.generation = 7;
  s.policy_source = "/etc/zonewall/policy.d";
  s.policy_files = {"a.json", "b \"quoted\".json"};
  s.inventory_source = "libvirt";
  s.applied_at = "2026-11-25T00:00:00Z";
  s.zones = {{"world", 1}, {"unzoned", 2}, {"web", 3}, {"db\\x", 4}};
  s.rule_ids = {{"web-db", 3}, {"tab\there", 4}};
  s.rules = {{3, "web-db", "allow", "web -> db tcp 5432"}, {4, "tab\there", "deny", "x\ny"}};
  s.defaults = {{"intra_zone", "allow"}, {"inter_zone", "deny"}};
  for (uint32_t i = 0; i < 3; ++i) {
    EndpointState e;
    e.key = "uuid:" + std::to_string(i) + "|mac:52:54:00:00:00:0" + std::to_string(i);
    e.vm_name = "vm-" + std::to_string(i);
    e.vm_uuid = std::to_string(i);
    e.ifname = "vnet" + std::to_string(i);
    e.ifindex = 100 + i;
    e.attach = i ? "tc" : "xdp";
    e.id = i;
    e.zone = "web";
    e.mac = "52:54:00:00:00:0" + std::to_string(i);
    e.addrs = {"10.0.0." + std::to_string(i), "fd00::" + std::to_string(i)};
    e.allowed = i == 1 ? std::vector<std::string>{"10.0.0.100"} : std::vector<std::string>{};
    e.created_clsact = i == 2;
    s.endpoints.push_back(e);
  }
  return s;
}

TEST(StateFile, StreamedFormIsTheSameDocument) {
  State s = sample();
  auto streamed = nlohmann::json::parse(state_to_json(s, -1));
  auto pretty = nlohmann::json::parse(state_to_json(s, 2));
  EXPECT_EQ(streamed, pretty);
}

TEST(StateFile, WriteThenReadKeepsEveryField) {
  char tmpl[] = "/tmp/zw-state-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  Paths p;
  p.pin_dir = std::string(tmpl) + "/pins";
  p.state_dir = std::string(tmpl) + "/state";
  State s = sample();
  ASSERT_TRUE(write_state(p, s).has_value());
  auto r = read_state(p);
  std::filesystem::remove_all(tmpl);
  ASSERT_TRUE(r.has_value()) << r.error().str();
  ASSERT_TRUE(r->has_value());
  const State& t = **r;
  EXPECT_EQ(t.generation, s.generation);
  EXPECT_EQ(t.policy_files, s.policy_files);
  EXPECT_EQ(t.zones, s.zones);
  EXPECT_EQ(t.rule_ids, s.rule_ids);
  ASSERT_EQ(t.rules.size(), s.rules.size());
  EXPECT_EQ(t.rules[1].summary, "x\ny");
  ASSERT_EQ(t.endpoints.size(), s.endpoints.size());
  for (size_t i = 0; i < s.endpoints.size(); ++i) {
    EXPECT_EQ(t.endpoints[i].key, s.endpoints[i].key);
    EXPECT_EQ(t.endpoints[i].addrs, s.endpoints[i].addrs);
    EXPECT_EQ(t.endpoints[i].allowed, s.endpoints[i].allowed);
    EXPECT_EQ(t.endpoints[i].ifindex, s.endpoints[i].ifindex);
    EXPECT_EQ(t.endpoints[i].attach, s.endpoints[i].attach);
    EXPECT_EQ(t.endpoints[i].created_clsact, s.endpoints[i].created_clsact);
  }
}

}  // namespace
}  // namespace zw::engine
