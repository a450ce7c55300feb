// The daemon configuration file: defaults, every key, and the errors (file +
// JSON pointer) for bad values, unknown keys and unknown groups.
#include <gtest/gtest.h>
#include <net/if.h>

#include "config/config.h"

namespace zw::config {
namespace {

std::string error_of(const std::string& text) {
  auto c = parse(text, "zw.json");
  if (c) return "(accepted)";
  return c.error().str();
}

TEST(Config, EmptyObjectIsTheBuiltInDefaults) {
  auto c = parse("{}", "zw.json");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->policy, "");
  EXPECT_EQ(c->libvirt, std::optional<std::string>("qemu:///system"));
  EXPECT_EQ(c->pin_dir, "/sys/fs/bpf/zonewall");
  EXPECT_EQ(c->state_dir, "");
  EXPECT_EQ(c->tap_patterns, std::vector<std::string>{"vnet*"});
  EXPECT_EQ(c->attach_default, "tc");
  EXPECT_TRUE(c->attach_rules.empty());
  EXPECT_EQ(c->resync_seconds, 30);
  EXPECT_FALSE(c->read_group);
  EXPECT_FALSE(c->apply_group);
  EXPECT_EQ(c->log_level, "info");
}

// The file the package installs as /etc/zonewall/zonewall.json changes
// nothing: every key at its built-in default (plus the policy path).
TEST(Config, ShippedFileIsTheDefaults) {
  auto c = load(std::string(ZW_SOURCE_DIR) + "/packaging/etc/zonewall.json", true);
  ASSERT_TRUE(c) << c.error().str();
  Config d;
  EXPECT_EQ(c->policy, "/etc/zonewall/policy");
  EXPECT_EQ(c->inventory, d.inventory);
  EXPECT_EQ(c->libvirt, d.libvirt);
  EXPECT_EQ(c->pin_dir, d.pin_dir);
  EXPECT_EQ(c->state_dir, d.state_dir);
  EXPECT_EQ(c->tap_patterns, d.tap_patterns);
  EXPECT_EQ(c->attach_default, d.attach_default);
  EXPECT_TRUE(c->attach_rules.empty());
  EXPECT_EQ(c->resync_seconds, d.resync_seconds);
  EXPECT_EQ(c->metrics_listen, d.metrics_listen);
  EXPECT_EQ(c->flow_log, d.flow_log);
  EXPECT_EQ(c->flow_log_rate, d.flow_log_rate);
  EXPECT_EQ(c->fail_mode, d.fail_mode);
  EXPECT_FALSE(c->read_group);
  EXPECT_FALSE(c->apply_group);
  EXPECT_EQ(c->log_level, d.log_level);
}

TEST(Config, EveryKey) {
  auto c = parse(R"({
    "policy": "/srv/policy", "inventory": "/srv/inv.json", "libvirt": null,
    "pin_dir": "/sys/fs/bpf/zw2", "state_dir": "/run/zw2", "tap_patterns": ["vnet*", "tap*"],
    "attach": {"default": "xdp", "interfaces": [{"match": "vnet1*", "mode": "tc"}],
               "kinds": {"veth": "tc", "tap": "xdp"}},
    "resync_seconds": 5, "metrics": {"listen": "[::1]:9469"},
    "flow_log": {"destination": "/var/log/zonewall/flows.log", "rate": 50},
    "fail_mode": "closed", "control_socket": {"read_group": "root", "apply_group": null},
    "log_level": "debug"})",
                 "zw.json");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->policy, "/srv/policy");
  EXPECT_EQ(c->inventory, "/srv/inv.json");
  EXPECT_FALSE(c->libvirt);
  EXPECT_EQ(c->state_dir, "/run/zw2");
  EXPECT_EQ(c->tap_patterns.size(), 2u);
  EXPECT_EQ(c->attach_default, "xdp");
  ASSERT_EQ(c->attach_rules.size(), 3u);
  EXPECT_EQ(c->attach_rules[0].match, "vnet1*");  // globs first, then kinds
  EXPECT_EQ(c->resync_seconds, 5);
  EXPECT_EQ(c->metrics_listen, "[::1]:9469");
  EXPECT_EQ(c->flow_log_rate, 50u);
  ASSERT_TRUE(c->read_group);
  EXPECT_EQ(c->read_group->gid, 0u);
  EXPECT_FALSE(c->apply_group);
}

TEST(Config, ErrorsNameFileAndPointer) {
  EXPECT_EQ(error_of(R"({"polcy": "/x"})"),
            "zw.json: /polcy: unknown field 'polcy' (known: $schema, description, policy, "
            "inventory, libvirt, pin_dir, state_dir, tap_patterns, attach, resync_seconds, "
            "metrics, flow_log, fail_mode, control_socket, log_level, cluster)");
  EXPECT_EQ(error_of(R"({"policy": "relative/p"})"),
            "zw.json: /policy: \"relative/p\" is not an absolute path");
  EXPECT_EQ(error_of(R"({"resync_seconds": "30"})"),
            "zw.json: /resync_seconds: expected an integer from 1 to 86400, got \"30\"");
  EXPECT_EQ(error_of(R"({"attach": {"interfaces": [{"match": "x*", "mode": "dpdk"}]}})"),
            "zw.json: /attach/interfaces/0/mode: expected \"tc\" or \"xdp\", got \"dpdk\"");
  EXPECT_EQ(error_of(R"({"attach": {"kinds": {"bond": "tc"}}})"),
            "zw.json: /attach/kinds/bond: unknown field 'bond' (known: tap, veth)");
  EXPECT_EQ(error_of(R"({"metrics": {"listen": "localhost:99999"}})"),
            "zw.json: /metrics/listen: '99999' is not a port (1-65535)");
  EXPECT_EQ(error_of(R"({"metrics": {"listen": "::1:9469"}})"),
            "zw.json: /metrics/listen: '::1' is not an IPv4 address (write IPv6 as [addr]:port)");
  EXPECT_EQ(error_of(R"({"flow_log": {"destination": "syslog"}})"),
            "zw.json: /flow_log/destination: \"syslog\": expected \"stderr\", an absolute file "
            "path, or null (off)");
  EXPECT_EQ(error_of(R"({"flow_log": {"rate": 0}})"),
            "zw.json: /flow_log/rate: expected events per second per VM interface from 1 to "
            "1000000, got 0");
  EXPECT_EQ(error_of(R"({"fail_mode": "open"})"),
            "zw.json: /fail_mode: \"open\" is not supported by this build: the datapath always "
            "fails closed");
  EXPECT_EQ(error_of(R"({"control_socket": {"apply_group": "zw-no-such-group-93"}})"),
            "zw.json: /control_socket/apply_group: group 'zw-no-such-group-93' does not exist "
            "(groupadd --system zw-no-such-group-93)");
  EXPECT_EQ(error_of(R"({"libvirt": "qemu"})"),
            "zw.json: /libvirt: \"qemu\" is not a libvirt URI (qemu:///system, test:///default, "
            "...); null for no libvirt");
  EXPECT_NE(error_of("{\"policy\": \"/a\",}").find("zw.json: line 1, column"), std::string::npos);
  EXPECT_EQ(error_of("[]"), "zw.json: /: expected an object, got an array");
}

TEST(Config, AllErrorsAtOnce) {
  auto e = error_of(R"({"log_level": "loud", "tap_patterns": [""], "pin_dir": 3})");
  EXPECT_NE(e.find("/log_level"), std::string::npos) << e;
  EXPECT_NE(e.find("/tap_patterns/0: must not be empty"), std::string::npos) << e;
  EXPECT_NE(e.find("/pin_dir: expected a path, got 3"), std::string::npos) << e;
}

TEST(Config, MissingFile) {
  auto opt = load("/nonexistent/zonewall.json", false);
  ASSERT_TRUE(opt);  // the default path is optional
  EXPECT_EQ(opt->source, "");
  auto req = load("/nonexistent/zonewall.json", true);
  ASSERT_FALSE(req);
  EXPECT_NE(req.error().str().find("/nonexistent/zonewall.json"), std::string::npos);
}

TEST(Config, AttachModeGlobThenKindThenDefault) {
  std::vector<AttachRule> rules = {{.match = "vnet9*", .kind = "", .mode = "xdp"},
                                   {.match = "", .kind = "tap", .mode = "xdp"}};
  EXPECT_EQ(attach_mode(rules, "tc", "vnet91"), "xdp");  // glob, no device needed
  EXPECT_EQ(attach_mode(rules, "tc", "lo"), "tc");       // loopback is neither kind
  EXPECT_EQ(attach_mode({}, "xdp", "anything"), "xdp");
  EXPECT_EQ(device_kind("lo"), "");
  EXPECT_EQ(device_kind("zw-absent-if0"), "");
}

}  // namespace
}  // namespace zw::config

namespace zw::config {
namespace {

TEST(Config, ClusterKeys) {
  auto c = parse(R"({"cluster": {"endpoints": ["http://10.0.0.1:2379", "http://10.0.0.2:2379"],
                     "host": "h1", "prefix": "/zw", "lease_ttl": 6}})",
                 "zw.json");
  ASSERT_TRUE(c) << c.error().str();
  EXPECT_EQ(c->cluster.endpoints.size(), 2u);
  EXPECT_EQ(c->cluster.host, "h1");
  EXPECT_EQ(c->cluster.prefix, "/zw");
  EXPECT_EQ(c->cluster.lease_ttl, 6);
  auto bad = parse(
      R"({"cluster": {"endpoints": ["10.0.0.1:2379"], "host": "a/b", "prefix": "zw", "lease_ttl": 1, "x": 1}})",
      "zw.json");
  ASSERT_FALSE(bad);
  std::string m = bad.error().str();
  for (const char* p : {"/cluster/endpoints/0", "/cluster/host", "/cluster/prefix",
                        "/cluster/lease_ttl", "/cluster/x"})
    EXPECT_NE(m.find(std::string("zw.json: ") + p), std::string::npos) << p << "\n" << m;
}

}  // namespace
}  // namespace zw::config
