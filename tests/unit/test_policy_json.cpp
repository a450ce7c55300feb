// Policy JSON v1: the shipped examples, every fixture under
// policies/testdata (valid ones load, invalid ones fail with the expected
// "<file>: <pointer>: " message), directory merging and the parser limits.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "policy/json.h"

namespace fs = std::filesystem;
using namespace zw;
using namespace zw::policy;

namespace {

const std::string kSrc = ZW_SOURCE_DIR;

std::string errors_of(const Result<Policy>& r) {
  return r.has_value() ? std::string("(loaded fine)") : r.error().message();
}

// A scratch directory removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("zw_unit_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
  static inline int counter = 0;
};

}  // namespace

TEST(PolicyJson, LabExample) {
  auto p = load(kSrc + "/policies/examples/lab.json");
  ASSERT_TRUE(p.has_value()) << errors_of(p);
  ASSERT_EQ(p->zones.size(), 4u);
  EXPECT_EQ(p->zones.at("web").vm_globs, std::vector<std::string>{"web-*"});
  const Zone& office = p->zones.at("office");
  ASSERT_EQ(office.cidrs.size(), 2u);
  EXPECT_EQ(office.cidrs[0].str(), "10.70.0.192/26");
  EXPECT_TRUE(office.cidrs[0].v4);
  EXPECT_EQ(office.cidrs[1].str(), "fd70::c0/122");
  EXPECT_FALSE(office.cidrs[1].v4);
  EXPECT_EQ(office.origin.path, "/zones/office");
  EXPECT_EQ(p->defaults.intra_zone, Action::kAllow);
  EXPECT_EQ(p->defaults.inter_zone, Action::kDeny);
  ASSERT_EQ(p->rules.size(), 7u);
  const Rule& r0 = p->rules[0];
  EXPECT_EQ(r0.name, "web-to-db-postgres");
  EXPECT_EQ(r0.from, std::vector<std::string>{"web"});
  EXPECT_EQ(r0.to, std::vector<std::string>{"db"});
  EXPECT_EQ(r0.proto, std::optional<uint8_t>(6));
  ASSERT_EQ(r0.ports.size(), 1u);
  EXPECT_EQ(r0.ports[0].lo, 5432);
  EXPECT_EQ(r0.ports[0].hi, 5432);
  EXPECT_EQ(r0.action, Action::kAllow);
  EXPECT_EQ(r0.origin.path, "/rules/0");
  EXPECT_EQ(r0.origin.file, kSrc + "/policies/examples/lab.json");
  EXPECT_EQ(p->rules[2].to, std::vector<std::string>{"*"});
  EXPECT_EQ(p->rules[3].proto, std::optional<uint8_t>(1));
  EXPECT_EQ(p->rules[3].icmp_types, std::vector<uint8_t>{8});
  EXPECT_EQ(p->rules[4].proto, std::optional<uint8_t>(58));
  const Rule& r5 = p->rules[5];
  ASSERT_EQ(r5.ports.size(), 3u);
  EXPECT_EQ(r5.ports[2].lo, 8000);
  EXPECT_EQ(r5.ports[2].hi, 8099);
  const Rule& r6 = p->rules[6];
  EXPECT_FALSE(r6.proto.has_value());
  EXPECT_EQ(r6.action, Action::kDeny);
  EXPECT_FALSE(r6.audit);
  EXPECT_EQ(p->files, std::vector<std::string>{kSrc + "/policies/examples/lab.json"});
}

TEST(PolicyJson, AllExamplesLoad) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(kSrc + "/policies/examples")) {
    auto p = load(e.path().string());
    EXPECT_TRUE(p.has_value()) << e.path() << ": " << errors_of(p);
    ++n;
  }
  EXPECT_GE(n, 4);
}

TEST(PolicyJson, MultiFileExample) {
  auto p = load(kSrc + "/policies/examples/multi-file");
  ASSERT_TRUE(p.has_value()) << errors_of(p);
  ASSERT_EQ(p->files.size(), 2u);
  EXPECT_EQ(fs::path(p->files[0]).filename(), "00-zones.json");
  EXPECT_EQ(fs::path(p->files[1]).filename(), "10-rules.json");
  EXPECT_EQ(p->zones.at("cache").mode, ZoneMode::kAudit);
  ASSERT_EQ(p->rules.size(), 4u);
  EXPECT_EQ(fs::path(p->rules[0].origin.file).filename(), "10-rules.json");
}

TEST(PolicyJson, EveryValidFixtureLoads) {
  int n = 0;
  for (const auto& e : fs::directory_iterator(kSrc + "/policies/testdata/valid")) {
    auto p = load(e.path().string());
    EXPECT_TRUE(p.has_value()) << e.path() << ": " << errors_of(p);
    ++n;
  }
  EXPECT_GE(n, 6);
}

TEST(PolicyJson, EveryInvalidFixtureFailsWithItsMessage) {
  const std::string dir = kSrc + "/policies/testdata/invalid";
  std::ifstream in(dir + "/EXPECTED.json");
  ASSERT_TRUE(in) << "missing EXPECTED.json";
  auto expected = nlohmann::json::parse(in);
  std::vector<std::string> seen;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name == "EXPECTED.json") continue;
    seen.push_back(name);
    ASSERT_TRUE(expected.contains(name)) << name << " has no entry in EXPECTED.json";
    auto p = load(e.path().string());
    ASSERT_FALSE(p.has_value()) << name << " loaded but should not";
    EXPECT_EQ(p.error().kind(), ErrorKind::kInvalid) << name;
    const auto& want = expected[name];
    std::vector<std::string> subs;
    if (want.is_array()) {
      for (const auto& s : want) subs.push_back(s.get<std::string>());
    } else {
      subs.push_back(want.get<std::string>());
    }
    for (const auto& s : subs)
      EXPECT_NE(p.error().message().find(s), std::string::npos)
          << name << "\n  expected: " << s << "\n  got:      " << p.error().message();
  }
  for (const auto& [name, _] : expected.items())
    EXPECT_NE(std::find(seen.begin(), seen.end(), name), seen.end())
        << "EXPECTED.json names " << name << " which does not exist";
  EXPECT_GE(seen.size(), 60u);
}

TEST(PolicyJson, EveryErrorLineNamesFileAndPointer) {
  auto p = load(kSrc + "/policies/testdata/invalid/collect-all.json");
  ASSERT_FALSE(p.has_value());
  std::string msg = p.error().message();
  size_t lines = 1 + static_cast<size_t>(std::count(msg.begin(), msg.end(), '\n'));
  EXPECT_EQ(lines, 4u) << msg;
  std::istringstream ss(msg);
  for (std::string line; std::getline(ss, line);)
    EXPECT_EQ(line.rfind(kSrc + "/policies/testdata/invalid/collect-all.json: /", 0), 0u) << line;
}

TEST(PolicyJson, ParseDefaultsAndNormalisation) {
  auto p = parse(R"({
    "version": 1,
    "zones": {"db": {"uuids": ["6F1C2E4A-9B7D-4C3E-8A1F-2D5B6C7E8F90"]},
              "ext": {"cidrs": ["FD70:0:0::0/64"]}},
    "rules": [
      {"name": "a", "from": ["db", "world"], "to": "unzoned", "proto": 17, "ports": ["53-53"], "action": "allow"},
      {"name": "b", "from": "*", "to": "ext", "proto": "sctp", "action": "deny", "audit": true},
      {"name": "c", "from": "db", "to": "db", "proto": 47, "action": "allow", "audit": false}
    ]})",
                 "mem.json");
  ASSERT_TRUE(p.has_value()) << errors_of(p);
  EXPECT_EQ(p->defaults.intra_zone, Action::kAllow);
  EXPECT_EQ(p->defaults.inter_zone, Action::kDeny);
  EXPECT_EQ(p->zones.at("db").uuids[0], "6f1c2e4a-9b7d-4c3e-8a1f-2d5b6c7e8f90");
  EXPECT_EQ(p->zones.at("db").mode, ZoneMode::kEnforce);
  EXPECT_EQ(p->zones.at("ext").cidrs[0].str(), "fd70::/64");
  EXPECT_EQ(p->rules[0].from, (std::vector<std::string>{"db", "world"}));
  EXPECT_EQ(p->rules[0].proto, std::optional<uint8_t>(17));
  EXPECT_EQ(p->rules[0].ports[0].lo, 53);
  EXPECT_EQ(p->rules[0].ports[0].hi, 53);
  EXPECT_EQ(p->rules[1].proto, std::optional<uint8_t>(132));
  EXPECT_TRUE(p->rules[1].ports.empty());
  EXPECT_TRUE(p->rules[1].audit);
  EXPECT_EQ(p->rules[2].proto, std::optional<uint8_t>(47));
  EXPECT_EQ(p->files, std::vector<std::string>{"mem.json"});
  EXPECT_EQ(p->rules[1].origin.str(), "mem.json: /rules/1");
}

TEST(PolicyJson, DefaultsPartial) {
  auto p = parse(R"({"version": 1, "defaults": {"inter_zone": "allow"}})", "d.json");
  ASSERT_TRUE(p.has_value()) << errors_of(p);
  EXPECT_EQ(p->defaults.intra_zone, Action::kAllow);
  EXPECT_EQ(p->defaults.inter_zone, Action::kAllow);
  p = parse(R"({"version": 1, "defaults": {"intra_zone": "deny"}})", "d.json");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->defaults.intra_zone, Action::kDeny);
  EXPECT_EQ(p->defaults.inter_zone, Action::kDeny);
}

TEST(PolicyJson, HygieneDefaultsAndZoneOverrides) {
  auto p = parse(R"({"version": 1, "defaults": {"hygiene": {"ip": false, "ra": false}},
    "zones": {"web": {"vms": ["web-*"], "hygiene": {"ip": true, "mac": false}},
              "db": {"vms": ["db-*"]}}})",
                 "h.json");
  ASSERT_TRUE(p.has_value()) << errors_of(p);
  auto web = hygiene_of(*p, "web"), db = hygiene_of(*p, "db"), un = hygiene_of(*p, "unzoned");
  EXPECT_TRUE(web.ip);  // the zone's own setting wins
  EXPECT_FALSE(web.mac);
  EXPECT_FALSE(web.ra);  // inherited from the defaults
  EXPECT_TRUE(web.arp);  // on unless switched off
  EXPECT_FALSE(db.ip);
  EXPECT_TRUE(db.mac);
  EXPECT_FALSE(un.ip);
  auto plain = parse(R"({"version": 1})", "p.json");
  ASSERT_TRUE(plain.has_value());
  auto h = hygiene_of(*plain, "unzoned");
  EXPECT_TRUE(h.mac && h.ip && h.arp && h.nd && h.ra && h.dhcp_server);
}

TEST(PolicyJson, SyntaxErrorLineAndColumn) {
  auto p = parse("{\n  \"version\": 1,\n  \"zones\": x\n}\n", "s.json");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().message().rfind("s.json: line 3, column 12: ", 0), 0u) << p.error().message();
  p = parse("{\"version\": 1} trailing", "t.json");
  ASSERT_FALSE(p.has_value());
  // nlohmann reports the last byte it read: the end of the bad token.
  EXPECT_EQ(p.error().message().rfind("t.json: line 1, column 18: ", 0), 0u) << p.error().message();
}

TEST(PolicyJson, NestingLimitIsSixtyFour) {
  auto nested = [](int levels) {  // the root object is level 1
    std::string v = std::string(levels - 1, '[') + std::string(levels - 1, ']');
    return R"({"version": 1, "description": "x", "zones": {}, "rules": [], "x": )" + v + "}";
  };
  // 64 levels parse (then fail only on the unknown field), 65 do not.
  auto ok = parse(nested(64), "n.json");
  ASSERT_FALSE(ok.has_value());
  EXPECT_NE(ok.error().message().find("n.json: /x: unknown field"), std::string::npos)
      << ok.error().message();
  auto deep = parse(nested(65), "n.json");
  ASSERT_FALSE(deep.has_value());
  EXPECT_NE(deep.error().message().find("nested deeper than 64 levels"), std::string::npos);
  // Far deeper input must not exhaust the stack either.
  auto very = parse(std::string(1000000, '['), "v.json");
  ASSERT_FALSE(very.has_value());
  EXPECT_NE(very.error().message().find("nested deeper than 64 levels"), std::string::npos);
}

TEST(PolicyJson, MissingPathIsNamed) {
  auto p = load("/nonexistent/zonewall/policy.json");
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().message(), "/nonexistent/zonewall/policy.json: no such file or directory");
}

TEST(PolicyJson, OversizedFileRejected) {
  TempDir t;
  std::string big = R"({"version": 1, "description": ")" + std::string(16u << 20, 'a') + "\"}";
  auto path = t.write("big.json", big);
  auto p = load(path);
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message().find(path + ": "), std::string::npos);
  EXPECT_NE(p.error().message().find("16 MiB"), std::string::npos) << p.error().message();
}

TEST(PolicyJson, DirectoryMergeOrderAndIgnoredFiles) {
  TempDir t;
  t.write(
      "b.json",
      R"({"version": 1, "rules": [{"name": "r-b", "from": "x", "to": "*", "action": "deny"}]})");
  t.write("a.json", R"({"version": 1, "zones": {"x": {"vms": ["x-*"]}},
                        "rules": [{"name": "r-a", "from": "*", "to": "x", "action": "allow"}]})");
  t.write("c.json.bak", "not json");
  t.write(".hidden.json", "not json either");
  t.write("README.md", "# notes");
  fs::create_directory(t.path / "sub.json");  // a directory named *.json is not a file
  auto p = load(t.path.string());
  ASSERT_TRUE(p.has_value()) << errors_of(p);
  ASSERT_EQ(p->files.size(), 2u);
  EXPECT_EQ(p->files[0], (t.path / "a.json").string());
  EXPECT_EQ(p->files[1], (t.path / "b.json").string());
  ASSERT_EQ(p->rules.size(), 2u);
  EXPECT_EQ(p->rules[0].name, "r-a");
  EXPECT_EQ(p->rules[1].name, "r-b");
  EXPECT_EQ(p->rules[1].origin.str(), (t.path / "b.json").string() + ": /rules/0");
}

TEST(PolicyJson, DirectoryErrorsFromSeveralFilesAreAllReported) {
  TempDir t;
  t.write(
      "a.json",
      R"({"version": 1, "zones": {"x": {"vms": ["x-*"]}}, "rules": [{"name": "r", "from": "x", "to": "x", "proto": "tcp", "ports": [0], "action": "allow"}]})");
  t.write("b.json", R"({"version": 3, "zones": {"x": {"vms": ["y-*"]}}})");
  auto p = load(t.path.string());
  ASSERT_FALSE(p.has_value());
  const std::string& m = p.error().message();
  EXPECT_NE(m.find((t.path / "a.json").string() + ": /rules/0/ports/0: 0 is not a port"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find((t.path / "b.json").string() + ": /version: unsupported version 3"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find((t.path / "b.json").string() + ": /zones/x: zone 'x' is already defined at " +
                   (t.path / "a.json").string()),
            std::string::npos)
      << m;
}

TEST(PolicyJson, UndefinedZoneNotReportedWhenAnotherFileFailedToParse) {
  TempDir t;
  t.write("a.json", "{ broken");
  t.write("b.json",
          R"({"version": 1, "rules": [{"name": "r", "from": "x", "to": "x", "action": "allow"}]})");
  auto p = load(t.path.string());
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message().find("a.json: line 1"), std::string::npos);
  EXPECT_EQ(p.error().message().find("is not defined"), std::string::npos) << p.error().message();
}

TEST(PolicyJson, BuiltinZonesNeedNoDefinition) {
  auto p = parse(R"({"version": 1, "rules": [
      {"name": "a", "from": "world", "to": "unzoned", "action": "deny"},
      {"name": "b", "from": "*", "to": ["world"], "action": "allow"}]})",
                 "b.json");
  ASSERT_TRUE(p.has_value()) << errors_of(p);
  EXPECT_TRUE(p->zones.empty());
}

TEST(PolicyJson, NameLimits) {
  std::string z63(63, 'a'), r63 = "R" + std::string(62, '.');
  auto p = parse(R"({"version": 1, "zones": {")" + z63 + R"(": {"vms": ["v"]}},
                     "rules": [{"name": ")" +
                     r63 + R"(", "from": ")" + z63 + R"(", "to": "*", "action": "allow"}]})",
                 "n.json");
  EXPECT_TRUE(p.has_value()) << errors_of(p);
  p = parse(
      R"({"version": 1, "rules": [{"name": "-x", "from": "*", "to": "*", "action": "allow"}]})",
      "n.json");
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message().find("n.json: /rules/0/name: '-x' is not a valid rule name"),
            std::string::npos);
}

// A policy directory edited while it is read (issue 7): the reader must
// never return a mixture of the old and the new files. The hook runs after
// each file is read, standing in for a writer that races the reader.
namespace {

const char* kDirA = R"({"version": 1, "zones": {"x": {"vms": ["x-*"]}},
  "rules": [{"name": "%s", "from": "x", "to": "x", "proto": "tcp", "ports": [22], "action": "allow"}]})";
const char* kDirB =
    R"({"version": 1, "rules": [{"name": "%s", "from": "*", "to": "x", "action": "deny"}]})";

std::string fill(const char* fmt, const std::string& name) {
  std::string out = fmt;
  return out.replace(out.find("%s"), 2, name);
}

std::vector<std::string> rule_names(const Policy& p) {
  std::vector<std::string> n;
  for (const auto& r : p.rules) n.push_back(r.name);
  return n;
}

}  // namespace

TEST(PolicyJson, DirectoryChangedDuringReadIsReadAgainNeverMixed) {
  TempDir t;
  t.write("a.json", fill(kDirA, "allow-ssh"));
  t.write("b.json", fill(kDirB, "deny-all"));
  // The old and the new policy each pass validation, and so would the
  // mixture (old a.json + new b.json): only the stamps can tell. Same sizes,
  // same inodes (rewritten in place): the hardest case for a stat check.
  LoadHooks h;
  std::vector<std::string> reads;
  h.after_read = [&](const std::string& f) {
    reads.push_back(fs::path(f).filename().string());
    if (reads.size() == 1) {
      t.write("a.json", fill(kDirA, "allow-web"));
      t.write("b.json", fill(kDirB, "deny-web"));
    }
  };
  auto p = load(t.path.string(), h);
  ASSERT_TRUE(p.has_value()) << errors_of(p);
  EXPECT_EQ(rule_names(*p), (std::vector<std::string>{"allow-web", "deny-web"}));
  EXPECT_EQ(reads, (std::vector<std::string>{"a.json", "b.json", "a.json", "b.json"}));
}

TEST(PolicyJson, DirectoryThatKeepsChangingIsRefusedByName) {
  TempDir t;
  t.write("a.json", fill(kDirA, "allow-ssh"));
  t.write("b.json", fill(kDirB, "deny-all"));
  LoadHooks h;
  int n = 0;
  h.after_read = [&](const std::string&) {
    t.write("b.json", fill(kDirB, ++n % 2 ? "deny-web" : "deny-all"));
  };
  auto p = load(t.path.string(), h);
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().kind(), ErrorKind::kBusy);
  EXPECT_EQ(p.error().message(),
            t.path.string() +
                ": policy directory changed while being read (3 attempts); nothing applied, "
                "try again once it is written");
  EXPECT_EQ(n, 6);  // two files, three attempts
  // Once the writer stops, the same directory loads.
  auto q = load(t.path.string());
  ASSERT_TRUE(q.has_value()) << errors_of(q);
}

TEST(PolicyJson, FileAddedOrRemovedDuringReadIsNoticed) {
  TempDir t;
  t.write("a.json", fill(kDirA, "allow-ssh"));
  t.write("b.json", fill(kDirB, "deny-all"));
  {
    LoadHooks h;
    bool done = false;
    h.after_read = [&](const std::string&) {
      if (!std::exchange(done, true)) t.write("c.json", fill(kDirB, "deny-new"));
    };
    auto p = load(t.path.string(), h);
    ASSERT_TRUE(p.has_value()) << errors_of(p);
    EXPECT_EQ(rule_names(*p), (std::vector<std::string>{"allow-ssh", "deny-all", "deny-new"}));
    EXPECT_EQ(p->files.size(), 3u);
  }
  {
    // b.json and c.json removed after a.json was read: not "no such file",
    // but the directory as it is now.
    LoadHooks h;
    bool done = false;
    h.after_read = [&](const std::string&) {
      if (std::exchange(done, true)) return;
      fs::remove(t.path / "b.json");
      fs::remove(t.path / "c.json");
    };
    auto p = load(t.path.string(), h);
    ASSERT_TRUE(p.has_value()) << errors_of(p);
    EXPECT_EQ(rule_names(*p), (std::vector<std::string>{"allow-ssh"}));
  }
}

TEST(PolicyJson, SingleFileReplacedDuringReadIsReadAgain) {
  TempDir t;
  std::string f = t.write("p.json", fill(kDirA, "allow-ssh"));
  LoadHooks h;
  int n = 0;
  h.after_read = [&](const std::string&) {
    // An editor's save: write a new file, rename it over the old one.
    if (n++ == 0) {
      t.write("p.json.tmp", fill(kDirA, "allow-web"));
      fs::rename(t.path / "p.json.tmp", f);
    }
  };
  auto p = load(f, h);
  ASSERT_TRUE(p.has_value()) << errors_of(p);
  EXPECT_EQ(rule_names(*p), (std::vector<std::string>{"allow-web"}));
  EXPECT_EQ(n, 2);
}
