// The etcd client against a real etcd (tests/unit/etcd_fixture.h): kv,
// txn compares, leases, and the watch (order, resume across an etcd
// restart, compaction reported as a resync).
#include <gtest/gtest.h>
#include <poll.h>

#include <chrono>
#include <thread>

#include "cluster/etcd.h"
#include "cluster/store.h"
#include "etcd_fixture.h"

namespace zw::cluster {
namespace {

using test::EtcdServer;
using Kind = WatchEvent::Kind;

Client client_for(const EtcdServer& s) {
  auto c = Client::make({s.url()});
  EXPECT_TRUE(c) << c.error().str();
  return std::move(*c);
}

// Waits for events until `pred` holds on everything received so far.
template <typename Pred>
std::vector<WatchEvent> collect(Watcher& w, Pred pred, int timeout_ms = 10000) {
  std::vector<WatchEvent> got;
  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!pred(got) && std::chrono::steady_clock::now() < end) {
    pollfd p{w.fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    for (auto& e : w.drain()) got.push_back(std::move(e));
  }
  return got;
}

TEST(ClusterBase64, RoundTripsBinaryAndPadding) {
  for (const std::string& s :
       std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10z", 4)}) {
    auto d = base64_decode(base64_encode(s));
    ASSERT_TRUE(d) << d.error().str();
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(base64_encode("/zonewall/policy"), "L3pvbmV3YWxsL3BvbGljeQ==");
  EXPECT_FALSE(base64_decode("abc"));
  EXPECT_FALSE(base64_decode("a*c="));
}

TEST(ClusterEtcd, SplitsEndpointsAndComputesPrefixEnd) {
  EXPECT_EQ(split_endpoints(" http://a:1/, http://b:2,,"),
            (std::vector<std::string>{"http://a:1", "http://b:2"}));
  EXPECT_EQ(prefix_end("/zw/"), "/zw0");
  EXPECT_EQ(prefix_end(std::string("a\xff")), "b");
  EXPECT_FALSE(Client::make({}));
  EXPECT_FALSE(Client::make({"127.0.0.1:2379"}));
}

TEST(ClusterEtcd, PutGetPrefixAndDelete) {
  EtcdServer s;
  auto c = client_for(s);
  ASSERT_TRUE(c.put("/t/a", "1"));
  ASSERT_TRUE(c.put("/t/b", std::string("two\0bytes", 9)));
  ASSERT_TRUE(c.put("/u/c", "3"));
  auto one = c.range("/t/a");
  ASSERT_TRUE(one) << one.error().str();
  ASSERT_EQ(one->kvs.size(), 1u);
  EXPECT_EQ(one->kvs[0].value, "1");
  EXPECT_EQ(one->kvs[0].version, 1);
  auto all = c.range("/t/", true);
  ASSERT_TRUE(all);
  ASSERT_EQ(all->kvs.size(), 2u);
  EXPECT_EQ(all->kvs[1].value, std::string("two\0bytes", 9));
  EXPECT_GE(all->revision, all->kvs[1].mod_revision);
  auto none = c.range("/nothing");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->kvs.empty());
  // An old revision still reads the old value.
  int64_t before = all->revision;
  ASSERT_TRUE(c.put("/t/a", "changed"));
  auto old = c.range("/t/a", false, before);
  ASSERT_TRUE(old);
  EXPECT_EQ(old->kvs.at(0).value, "1");
  auto n = c.del("/t/", true);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2);
  EXPECT_TRUE(c.range("/t/", true)->kvs.empty());
  EXPECT_EQ(c.range("/u/c")->kvs.size(), 1u);
}

TEST(ClusterEtcd, TxnComparesOnRevisionVersionAndValue) {
  EtcdServer s;
  auto c = client_for(s);
  // Create-if-absent: version 0.
  Compare absent{.key = "/k", .target = Compare::Target::kVersion, .number = 0};
  auto t1 = c.txn({absent}, {{.key = "/k", .value = "v1"}, {.key = "/h/1", .value = "x"}});
  ASSERT_TRUE(t1) << t1.error().str();
  EXPECT_TRUE(t1->succeeded);
  auto t2 = c.txn({absent}, {{.key = "/k", .value = "v2"}});
  ASSERT_TRUE(t2);
  EXPECT_FALSE(t2->succeeded);
  EXPECT_EQ(c.range("/k")->kvs.at(0).value, "v1");
  int64_t mod = c.range("/k")->kvs.at(0).mod_revision;
  // Compare-and-swap on mod_revision: a stale revision fails, nothing written.
  auto stale = c.txn({{.key = "/k", .target = Compare::Target::kMod, .number = mod - 1}},
                     {{.key = "/k", .value = "stale"}}, {{.key = "/failed", .value = "yes"}});
  ASSERT_TRUE(stale);
  EXPECT_FALSE(stale->succeeded);
  EXPECT_EQ(c.range("/k")->kvs.at(0).value, "v1");
  EXPECT_EQ(c.range("/failed")->kvs.at(0).value, "yes");  // the failure branch ran
  auto ok = c.txn({{.key = "/k", .target = Compare::Target::kMod, .number = mod}},
                  {{.key = "/k", .value = "v3"}, {.kind = Op::Kind::kDeletePrefix, .key = "/h/"}});
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->succeeded);
  EXPECT_TRUE(c.range("/h/", true)->kvs.empty());
  auto byval = c.txn({{.key = "/k", .target = Compare::Target::kValue, .value = "v3"}},
                     {{.kind = Op::Kind::kDelete, .key = "/k"}});
  ASSERT_TRUE(byval);
  EXPECT_TRUE(byval->succeeded);
  EXPECT_TRUE(c.range("/k")->kvs.empty());
}

TEST(ClusterEtcd, LeaseExpiryRemovesKeysAndRevokeToo) {
  EtcdServer s;
  auto c = client_for(s);
  auto lease = c.lease_grant(2);
  ASSERT_TRUE(lease) << lease.error().str();
  ASSERT_TRUE(c.put("/l/a", "x", *lease));
  auto ttl = c.lease_keepalive(*lease);
  ASSERT_TRUE(ttl) << ttl.error().str();
  EXPECT_GE(*ttl, 1);
  EXPECT_EQ(c.range("/l/a")->kvs.at(0).lease, *lease);
  // Not kept alive: gone within TTL + slack.
  bool gone = false;
  for (int i = 0; i < 60 && !gone; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gone = c.range("/l/a")->kvs.empty();
  }
  EXPECT_TRUE(gone);
  auto dead = c.lease_keepalive(*lease);
  ASSERT_FALSE(dead);
  EXPECT_EQ(dead.error().kind(), ErrorKind::kNotFound);

  auto l2 = c.lease_grant(30);
  ASSERT_TRUE(l2);
  ASSERT_TRUE(c.put("/l/b", "y", *l2));
  ASSERT_TRUE(c.lease_revoke(*l2));
  EXPECT_TRUE(c.range("/l/b")->kvs.empty());
}

TEST(ClusterEtcd, FailsOverToTheNextEndpointAndNamesThemWhenNoneAnswers) {
  EtcdServer s;
  std::string dead = "http://127.0.0.1:" + std::to_string(test::free_port());
  auto c = Client::make({dead, s.url()});
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->put("/f", "1"));
  EXPECT_EQ(c->range("/f")->kvs.at(0).value, "1");
  auto only_dead = Client::make({dead});
  auto r = only_dead->range("/f");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().str().find(dead), std::string::npos) << r.error().str();
  EXPECT_NE(r.error().str().find("range"), std::string::npos) << r.error().str();
}

TEST(ClusterWatch, SeesTheSnapshotThenPutsAndDeletesInOrder) {
  EtcdServer s;
  auto c = client_for(s);
  ASSERT_TRUE(c.put("/w/pre", "0"));
  ASSERT_TRUE(c.put("/other", "x"));
  auto w = Watcher::start({s.url()}, "/w/");
  ASSERT_TRUE(w) << w.error().str();
  auto first = collect(**w, [](auto& g) { return !g.empty(); });
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(first[0].kind, Kind::kReset);
  ASSERT_EQ(first[0].snapshot.size(), 1u);
  EXPECT_EQ(first[0].snapshot[0].key, "/w/pre");
  EXPECT_FALSE(first[0].compacted);
  // Wait until the stream is open so the changes arrive as events.
  for (int i = 0; i < 100 && !(*w)->connected(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE((*w)->connected());
  ASSERT_TRUE(c.put("/w/a", "1"));
  ASSERT_TRUE(c.put("/other", "not watched"));
  ASSERT_TRUE(c.put("/w/a", "2"));
  ASSERT_TRUE(c.del("/w/pre"));
  auto got = collect(**w, [](auto& g) { return g.size() >= 3; });
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].kind, Kind::kPut);
  EXPECT_EQ(got[0].kv.value, "1");
  EXPECT_EQ(got[1].kind, Kind::kPut);
  EXPECT_EQ(got[1].kv.value, "2");
  EXPECT_EQ(got[2].kind, Kind::kDelete);
  EXPECT_EQ(got[2].kv.key, "/w/pre");
  EXPECT_LT(got[0].revision, got[1].revision);
  EXPECT_LT(got[1].revision, got[2].revision);
}

TEST(ClusterWatch, ResumesAfterEtcdRestartsWithoutLosingChanges) {
  EtcdServer s;
  auto c = client_for(s);
  auto w = Watcher::start({s.url()}, "/r/", {.connect_ms = 300, .request_ms = 1000});
  ASSERT_TRUE(w);
  ASSERT_EQ(collect(**w, [](auto& g) { return !g.empty(); }).at(0).kind, Kind::kReset);
  for (int i = 0; i < 100 && !(*w)->connected(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(c.put("/r/1", "a"));
  ASSERT_EQ(collect(**w, [](auto& g) { return !g.empty(); }).size(), 1u);
  s.stop();
  for (int i = 0; i < 100 && (*w)->connected(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE((*w)->connected());
  s.start();
  // Written before the watcher is back: it must still see them, in order,
  // resuming after the last revision it delivered (no reset).
  auto c2 = client_for(s);
  ASSERT_TRUE(c2.put("/r/2", "b"));
  ASSERT_TRUE(c2.del("/r/1"));
  auto got = collect(
      **w, [](auto& g) { return g.size() >= 2; }, 15000);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].kind, Kind::kPut);
  EXPECT_EQ(got[0].kv.key, "/r/2");
  EXPECT_EQ(got[1].kind, Kind::kDelete);
  EXPECT_TRUE((*w)->connected());
  EXPECT_EQ((*w)->compactions(), 0u);
}

TEST(ClusterWatch, ReportsCompactionAndResyncsWithAFullRead) {
  EtcdServer s;
  auto c = client_for(s);
  ASSERT_TRUE(c.put("/c/gone", "1"));
  int64_t from = *c.put("/c/keep", "1");
  ASSERT_TRUE(c.del("/c/gone"));
  int64_t rev = 0;
  for (int i = 0; i < 5; ++i) rev = *c.put("/unrelated", std::to_string(i));
  ASSERT_TRUE(c.compact(rev));
  // Resuming at a revision that was compacted away: "must resync".
  auto w = Watcher::start({s.url()}, "/c/", {}, from);
  ASSERT_TRUE(w);
  auto got = collect(**w, [](auto& g) { return !g.empty(); });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].kind, Kind::kReset);
  EXPECT_TRUE(got[0].compacted);
  ASSERT_EQ(got[0].snapshot.size(), 1u);
  EXPECT_EQ(got[0].snapshot[0].key, "/c/keep");
  EXPECT_GE(got[0].revision, rev);
  EXPECT_EQ((*w)->compactions(), 1u);
  // And it watches on from the full read.
  for (int i = 0; i < 100 && !(*w)->connected(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(c.put("/c/after", "2"));
  auto more = collect(**w, [](auto& g) { return !g.empty(); });
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].kv.key, "/c/after");
}

TEST(ClusterWatch, FromARevisionDeliversTheHistorySinceThen) {
  EtcdServer s;
  auto c = client_for(s);
  int64_t from = *c.put("/h/a", "1");
  ASSERT_TRUE(c.put("/h/a", "2"));
  auto w = Watcher::start({s.url()}, "/h/", {}, from);
  ASSERT_TRUE(w);
  auto got = collect(**w, [](auto& g) { return g.size() >= 2; });
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].kv.value, "1");
  EXPECT_EQ(got[1].kv.value, "2");
}

TEST(ClusterWatch, ARangeWatchSeesOnlyItsRange) {
  EtcdServer s;
  auto c = client_for(s);
  // What a daemon watches: endpoints/, hosts/ and policy, not policy-history/.
  Layout l{"/zw"};
  ASSERT_TRUE(c.put(l.history(1), "old"));
  ASSERT_TRUE(c.put(l.policy(), "p"));
  auto w = Watcher::start_range({s.url()}, l.watch_from(), l.watch_end());
  ASSERT_TRUE(w);
  auto first = collect(**w, [](auto& g) { return !g.empty(); });
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(first[0].snapshot.size(), 1u);
  EXPECT_EQ(first[0].snapshot[0].key, "/zw/policy");
  for (int i = 0; i < 100 && !(*w)->connected(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(c.put(l.history(2), "not seen"));
  ASSERT_TRUE(c.put(l.endpoint("h1", "vm"), "e"));
  ASSERT_TRUE(c.put(l.host("h1"), "h"));
  ASSERT_TRUE(c.put("/zw/policz", "not seen"));
  ASSERT_TRUE(c.put(l.policy(), "p2"));
  auto got = collect(**w, [](auto& g) { return g.size() >= 3; });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (auto& e : (*w)->drain()) got.push_back(std::move(e));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].kv.key, "/zw/endpoints/h1/vm");
  EXPECT_EQ(got[1].kv.key, "/zw/hosts/h1");
  EXPECT_EQ(got[2].kv.value, "p2");
  auto r = c.range_between(l.watch_from(), l.watch_end());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->kvs.size(), 3u);
}

}  // namespace
}  // namespace zw::cluster
