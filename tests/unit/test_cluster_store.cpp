// The cluster store's records (round trips, validation naming key and JSON
// pointer) and the View (remote endpoints, migration overlap, ambiguous
// claims fail closed, malformed records ignored, resets).
#include <gtest/gtest.h>

#include "cluster/store.h"
#include "inventory/zones.h"
#include "policy/json.h"

namespace zw::cluster {
namespace {

const Layout L{};
const std::string U1 = "11111111-1111-1111-1111-111111111111";
const std::string U2 = "22222222-2222-2222-2222-222222222222";
const std::string U3 = "33333333-3333-3333-3333-333333333333";

net::Addr A(const char* s) { return *net::parse_addr(s); }

EndpointRecord rec(const std::string& host, const std::string& uuid, const std::string& name,
                   std::vector<const char*> addrs) {
  EndpointRecord r;
  r.host = host;
  r.uuid = uuid;
  r.name = name;
  EndpointRecord::Interface i;
  i.mac = net::parse_mac("52:54:00:00:00:01");
  for (auto a : addrs) i.addrs.push_back(A(a));
  r.interfaces.push_back(i);
  r.time = "2026-11-25T00:00:00Z";
  return r;
}

WatchEvent put_ev(const std::string& key, const std::string& value, int64_t rev) {
  WatchEvent e;
  e.kind = WatchEvent::Kind::kPut;
  e.kv = {.key = key, .value = value, .create_revision = rev, .mod_revision = rev, .version = 1};
  e.revision = rev;
  return e;
}
WatchEvent del_ev(const std::string& key, int64_t rev) {
  WatchEvent e;
  e.kind = WatchEvent::Kind::kDelete;
  e.kv.key = key;
  e.revision = rev;
  return e;
}
WatchEvent put_rec(const EndpointRecord& r, int64_t rev) {
  return put_ev(L.endpoint(r.host, r.id()), to_json(r), rev);
}

TEST(ClusterStore, EndpointRecordRoundTrips) {
  auto r = rec("h1", U1, "web1", {"10.0.0.5", "fd00::5"});
  r.zone_tag = "web";
  r.interfaces[0].allowed.push_back(A("10.0.0.100"));
  r.state = "migrating-in";
  std::string key = L.endpoint("h1", U1);
  auto back = parse_endpoint(to_json(r), key);
  ASSERT_TRUE(back) << back.error().str();
  EXPECT_EQ(back->host, "h1");
  EXPECT_EQ(back->uuid, U1);
  EXPECT_EQ(back->name, "web1");
  EXPECT_EQ(back->zone_tag, "web");
  EXPECT_EQ(back->state, "migrating-in");
  ASSERT_EQ(back->interfaces.size(), 1u);
  EXPECT_EQ(back->interfaces[0].addrs, r.interfaces[0].addrs);
  EXPECT_EQ(back->interfaces[0].allowed, r.interfaces[0].allowed);
  EXPECT_EQ(back->interfaces[0].mac, r.interfaces[0].mac);
}

TEST(ClusterStore, EndpointRecordErrorsNameKeyAndPointer) {
  std::string key = "/zonewall/endpoints/h1/" + U1;
  auto bad = parse_endpoint(
      R"({"host":"h1","uuid":")" + U1 +
          R"(","name":"w","interfaces":[{"mac":"zz","addrs":["10.0.0.1","nope"]}],"state":"x"})",
      key);
  ASSERT_FALSE(bad);
  std::string m = bad.error().str();
  EXPECT_NE(m.find(key + ": /interfaces/0/mac"), std::string::npos) << m;
  EXPECT_NE(m.find(key + ": /interfaces/0/addrs/1"), std::string::npos) << m;
  EXPECT_NE(m.find("/state"), std::string::npos) << m;
  // A record under another host's key is refused: h2 cannot speak as h1.
  auto spoof = parse_endpoint(to_json(rec("h2", U1, "w", {"10.0.0.1"})), key);
  ASSERT_FALSE(spoof);
  EXPECT_NE(spoof.error().str().find("not the host of the key"), std::string::npos);
  // ... nor a record whose VM is not the one the key names.
  EXPECT_FALSE(parse_endpoint(to_json(rec("h1", U2, "w", {"10.0.0.1"})), key));
  EXPECT_FALSE(parse_endpoint("not json", key));
  EXPECT_FALSE(parse_endpoint("[1]", key));
  EXPECT_FALSE(parse_endpoint(R"({"host":"h1","interfaces":[]})", key));  // no uuid/name
}

TEST(ClusterStore, PolicyRecordChecksDigestAndFileNames) {
  PolicyRecord p;
  p.files = {{"a.json", "{}"}, {"b.json", "[]"}};
  p.digest = policy_digest(p.files);
  p.source = "policies/x";
  auto back = parse_policy(to_json(p), "/zonewall/policy");
  ASSERT_TRUE(back) << back.error().str();
  EXPECT_EQ(back->files, p.files);
  // The digest covers names and texts: moving text between files changes it.
  EXPECT_NE(policy_digest({{"a.json", "{}["}, {"b.json", "]"}}), p.digest);
  auto tampered = p;
  tampered.files["a.json"] = "{ }";
  auto t = parse_policy(to_json(tampered), "/zonewall/policy");
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().str().find("/zonewall/policy: /digest"), std::string::npos)
      << t.error().str();
  auto evil = p;
  evil.files = {{"../x.json", "{}"}};
  evil.digest = policy_digest(evil.files);
  EXPECT_FALSE(parse_policy(to_json(evil), "/zonewall/policy"));
  auto fmt = parse_policy(R"({"format":2,"digest":"","files":{}})", "/zonewall/policy");
  ASSERT_FALSE(fmt);
  EXPECT_NE(fmt.error().str().find("/format"), std::string::npos);
}

TEST(ClusterStore, HostRecordRoundTripsAndPrefixesNormalize) {
  HostRecord h{.host = "h1",
               .policy_revision = 7,
               .policy_digest = "d",
               .local_endpoints = 2,
               .remote_endpoints = 3,
               .etcd = "connected",
               .since = "t",
               .version = "zonewall 0.1"};
  auto back = parse_host(to_json(h), "/zonewall/hosts/h1");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->policy_revision, 7);
  EXPECT_EQ(back->remote_endpoints, 3);
  EXPECT_FALSE(parse_host(R"({"host":"h1","policy_revision":-1})", "k"));
  EXPECT_EQ(*normalize_prefix("zonewall/"), "/zonewall");
  EXPECT_EQ(*normalize_prefix("/a/b"), "/a/b");
  EXPECT_FALSE(normalize_prefix("/"));
  EXPECT_FALSE(normalize_prefix("/a//b"));
  EXPECT_FALSE(check_segment("a/b", "host"));
  EXPECT_FALSE(check_segment("", "host"));
  EXPECT_TRUE(check_segment("h1.example", "host"));
}

TEST(ClusterStore, RecordsOfGroupsInterfacesByVm) {
  inventory::Inventory inv;
  inventory::Endpoint a{
      .vm_name = "web1", .vm_uuid = "11111111-1111-1111-1111-111111111111", .ifname = "vnet0"};
  a.addrs = {A("10.0.0.1")};
  auto b = a;
  b.ifname = "vnet1";
  b.addrs = {A("10.0.1.1")};
  inventory::Endpoint c{.vm_name = "plain", .ifname = "veth0"};
  c.addrs = {A("10.0.0.9")};
  inv.endpoints = {a, b, c};
  auto r = records_of(inv, "h1", "t");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].id(), U1);
  EXPECT_EQ(r[0].interfaces.size(), 2u);
  EXPECT_EQ(r[1].id(), "plain");
}

TEST(ClusterView, RemoteEndpointsHaveNoInterfaceAndSkipOurOwn) {
  View v(L, "h1");
  auto c1 = v.apply(put_rec(rec("h2", U2, "db1", {"10.0.0.2"}), 5));
  EXPECT_TRUE(c1.endpoints);
  auto c2 = v.apply(put_rec(rec("h1", U1, "web1", {"10.0.0.1"}), 6));  // ours: ignored
  EXPECT_FALSE(c2.endpoints);
  auto r = v.remote_endpoints({});
  ASSERT_EQ(r.endpoints.size(), 1u);
  EXPECT_EQ(r.endpoints[0].vm_name, "db1");
  EXPECT_TRUE(r.endpoints[0].ifname.empty());
  EXPECT_EQ(r.endpoints[0].addrs, std::vector<net::Addr>{A("10.0.0.2")});
  EXPECT_EQ(r.vms, 1u);
  EXPECT_EQ(v.revision(), 6);
  // Deleted (lease expiry, migration away): gone.
  EXPECT_TRUE(v.apply(del_ev(L.endpoint("h2", U2), 7)).endpoints);
  EXPECT_TRUE(v.remote_endpoints({}).endpoints.empty());
}

TEST(ClusterView, AmbiguousAddressIsUsedByNeitherAndNamed) {
  View v(L, "h1");
  v.apply(put_rec(rec("h2", U2, "a", {"10.0.0.7", "10.0.0.2"}), 5));
  v.apply(put_rec(rec("h3", U3, "b", {"10.0.0.7", "10.0.0.3"}), 6));
  auto r = v.remote_endpoints({});
  ASSERT_EQ(r.endpoints.size(), 2u);
  for (const auto& e : r.endpoints)
    for (const auto& a : e.addrs) EXPECT_NE(a, A("10.0.0.7"));
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("10.0.0.7"), std::string::npos);
  EXPECT_NE(r.warnings[0].find("/h2/"), std::string::npos);
  EXPECT_NE(r.warnings[0].find("/h3/"), std::string::npos);
  // A remote claim on a local VM's own address: the local VM keeps it.
  inventory::Inventory local;
  inventory::Endpoint mine{.vm_name = "mine", .vm_uuid = U1, .ifname = "vnet0"};
  mine.addrs = {A("10.0.0.3")};
  local.endpoints = {mine};
  auto r2 = v.remote_endpoints(local);
  for (const auto& e : r2.endpoints)
    for (const auto& a : e.addrs) EXPECT_NE(a, A("10.0.0.3"));
  EXPECT_EQ(r2.warnings.size(), 2u);
}

TEST(ClusterView, MigrationOverlapYieldsOneEntryAndLocalWins) {
  View v(L, "h1");
  auto src = rec("h2", U2, "vm", {"10.0.0.2"});
  src.state = "migrating-out";
  v.apply(put_rec(src, 5));
  auto dst = rec("h3", U2, "vm", {"10.0.0.2"});
  dst.state = "migrating-in";
  v.apply(put_rec(dst, 9));
  auto r = v.remote_endpoints({});
  ASSERT_EQ(r.endpoints.size(), 1u) << "one VM, two records: not ambiguous";
  EXPECT_TRUE(r.warnings.empty());
  EXPECT_NE(r.endpoints[0].source.find("/h3/"), std::string::npos);  // the newer record
  // Migrating to this host: the local entry is the VM; no remote entry.
  inventory::Inventory local;
  inventory::Endpoint here{.vm_name = "vm", .vm_uuid = U2, .ifname = "vnet3"};
  here.addrs = {A("10.0.0.2")};
  local.endpoints = {here};
  auto r2 = v.remote_endpoints(local);
  EXPECT_TRUE(r2.endpoints.empty());
  EXPECT_TRUE(r2.warnings.empty());
}

TEST(ClusterView, MalformedRecordIsIgnoredAndReplacesNothingHalfway) {
  View v(L, "h1");
  v.apply(put_rec(rec("h2", U2, "db", {"10.0.0.2"}), 5));
  ASSERT_EQ(v.remote_endpoints({}).endpoints.size(), 1u);
  // The same key rewritten with garbage: the old version no longer stands,
  // the garbage is not used.
  auto c = v.apply(put_ev(L.endpoint("h2", U2), R"({"host":"h2","interfaces":"x"})", 6));
  EXPECT_TRUE(c.endpoints);
  EXPECT_TRUE(v.remote_endpoints({}).endpoints.empty());
  // A bad policy record keeps the previous good one.
  PolicyRecord p;
  p.files = {{"p.json", "{}"}};
  p.digest = policy_digest(p.files);
  EXPECT_TRUE(v.apply(put_ev(L.policy(), to_json(p), 7)).policy);
  EXPECT_FALSE(v.apply(put_ev(L.policy(), "{broken", 8)).policy);
  ASSERT_TRUE(v.policy());
  EXPECT_EQ(v.policy()->revision, 7);
  // Deleting the policy key does not unenforce it.
  EXPECT_FALSE(v.apply(del_ev(L.policy(), 9)).policy);
  EXPECT_TRUE(v.policy());
}

TEST(ClusterView, ResetReplacesEverythingAndReportsOnlyRealChanges) {
  View v(L, "h1");
  v.apply(put_rec(rec("h2", U2, "a", {"10.0.0.2"}), 5));
  v.apply(put_rec(rec("h3", U3, "b", {"10.0.0.3"}), 6));
  WatchEvent reset;
  reset.kind = WatchEvent::Kind::kReset;
  reset.revision = 20;
  auto b = rec("h3", U3, "b", {"10.0.0.3"});
  reset.snapshot.push_back({.key = L.endpoint("h3", U3), .value = to_json(b), .mod_revision = 6});
  auto c = v.apply(reset);
  EXPECT_TRUE(c.endpoints);
  auto r = v.remote_endpoints({});
  ASSERT_EQ(r.endpoints.size(), 1u);
  EXPECT_EQ(r.endpoints[0].vm_name, "b");
  EXPECT_FALSE(v.apply(reset).endpoints);  // the same snapshot again: nothing changed
}

TEST(ClusterView, UnknownZoneTagOfARemoteVmIsUnzonedNotAFailure) {
  auto p = policy::parse(R"({"version":1,"zones":{"web":{"vms":["web*"]},"db":{"vms":["db*"]}}})",
                         "p.json");
  ASSERT_TRUE(p) << p.error().str();
  View v(L, "h1");
  auto odd = rec("h2", U2, "web9", {"10.0.0.9"});
  odd.zone_tag = "newzone";  // a zone of a newer policy revision
  v.apply(put_rec(odd, 5));
  v.apply(put_rec(rec("h2", U3, "db1", {"10.0.0.10"}), 6));
  auto r = v.remote_endpoints({});
  std::vector<std::string> w;
  sanitize_remote(*p, r.endpoints, w);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_NE(w[0].find("newzone"), std::string::npos) << w[0];
  inventory::Inventory inv{r.endpoints};
  auto z = inventory::assign_zones(*p, inv);
  ASSERT_TRUE(z) << z.error().str();
  std::map<std::string, std::string> zone_of;
  for (const auto& a : *z) zone_of[a.endpoint.addrs.at(0).str()] = a.zone;
  EXPECT_EQ(zone_of["10.0.0.9"], policy::kZoneUnzoned);
  EXPECT_EQ(zone_of["10.0.0.10"], "db");
}

TEST(ClusterView, SharedAddressConflictsNeverFailTheWholeReconcile) {
  auto p = policy::parse(R"({"version":1,"zones":{"web":{"vms":["web*"]},"db":{"vms":["db*"]}}})",
                         "p.json");
  ASSERT_TRUE(p) << p.error().str();
  View v(L, "h1");
  auto w = rec("h2", U2, "web2", {"10.0.0.2"});
  w.interfaces[0].allowed = {A("10.0.0.100"), A("10.0.0.101")};
  auto d = rec("h3", U3, "db3", {"10.0.0.3"});
  d.interfaces[0].allowed = {A("10.0.0.100")};  // the same VIP in another zone
  v.apply(put_rec(w, 5));
  v.apply(put_rec(d, 6));
  // A VM here shares 10.0.0.50; a remote VM claims it as its own address.
  auto x = rec("h3", "44444444-4444-4444-4444-444444444444", "web4", {"10.0.0.50"});
  v.apply(put_rec(x, 7));
  inventory::Inventory local;
  inventory::Endpoint mine{.vm_name = "web1", .vm_uuid = U1, .ifname = "vnet0"};
  mine.addrs = {A("10.0.0.1")};
  mine.allowed = {A("10.0.0.50")};
  local.endpoints = {mine};
  auto r = v.remote_endpoints(local);
  sanitize_remote(*p, r.endpoints, r.warnings);
  std::string all;
  for (const auto& m : r.warnings) all += m + "\n";
  EXPECT_NE(all.find("10.0.0.100"), std::string::npos) << all;
  EXPECT_NE(all.find("10.0.0.50"), std::string::npos) << all;
  inventory::Inventory inv = local;
  for (auto& e : r.endpoints) inv.endpoints.push_back(e);
  auto z = inventory::assign_zones(*p, inv);
  ASSERT_TRUE(z) << z.error().str();
  for (const auto& a : *z) {
    for (const auto& s : a.endpoint.allowed) EXPECT_NE(s, A("10.0.0.100"));
    if (!a.endpoint.ifname.empty()) continue;
    for (const auto& s : a.endpoint.addrs) EXPECT_NE(s, A("10.0.0.50"));
  }
  // The unambiguous VIP stays.
  bool kept = false;
  for (const auto& e : r.endpoints)
    for (const auto& s : e.allowed) kept = kept || s == A("10.0.0.101");
  EXPECT_TRUE(kept);
}

}  // namespace
}  // namespace zw::cluster
