// An etcd v3 client over etcd's JSON gateway (/v3/kv/*, /v3/lease/*,
// /v3/watch) with libcurl. Keys and values travel base64-encoded; 64-bit
// numbers arrive as JSON strings. Every call tries the endpoints in turn,
// starting with the last one that answered; errors name the endpoint(s) and
// the operation. Why the gateway and not gRPC: see docs/cluster.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "util/fd.h"
#include "util/result.h"

namespace zw::cluster {

struct Timeouts {
  long connect_ms = 1000;
  long request_ms = 3000;
};

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct RangeResult {
  std::vector<KeyValue> kvs;
  int64_t revision = 0;  // the store's revision the read saw
};

struct Compare {
  enum class Target { kVersion, kCreate, kMod, kValue };
  enum class Op { kEqual, kGreater, kLess, kNotEqual };
  std::string key;
  Target target = Target::kMod;
  Op op = Op::kEqual;
  int64_t number = 0;  // version / create / mod revision
  std::string value;   // Target::kValue
};

struct Op {
  enum class Kind { kPut, kDelete, kDeletePrefix };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;
  int64_t lease = 0;
};

struct TxnResult {
  bool succeeded = false;
  int64_t revision = 0;  // the store's revision after the txn
};

// "http://a:2379,http://b:2379" -> list; empty items and whitespace dropped.
std::vector<std::string> split_endpoints(const std::string& csv);

// The key just past every key starting with `prefix` (etcd's range_end).
std::string prefix_end(const std::string& prefix);

std::string base64_encode(const std::string& in);
Result<std::string> base64_decode(const std::string& in);

class Client {
 public:
  static Result<Client> make(std::vector<std::string> endpoints, Timeouts t = {});
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  // `prefix`: every key starting with `key`. `revision` 0: the newest.
  Result<RangeResult> range(const std::string& key, bool prefix = false, int64_t revision = 0);
  // Every key in [key, range_end); range_end "" = `key` alone.
  Result<RangeResult> range_between(const std::string& key, const std::string& range_end,
                                    int64_t revision = 0);
  // Returns the store revision after the put.
  Result<int64_t> put(const std::string& key, const std::string& value, int64_t lease = 0);
  // Returns how many keys were deleted.
  Result<int64_t> del(const std::string& key, bool prefix = false);
  Result<TxnResult> txn(const std::vector<Compare>& compares, const std::vector<Op>& success,
                        const std::vector<Op>& failure = {});
  Result<int64_t> lease_grant(int64_t ttl_seconds);
  // The lease's remaining TTL; kNotFound once the lease has expired.
  Result<int64_t> lease_keepalive(int64_t id);
  Status lease_revoke(int64_t id);
  // Compacts the history up to `revision` (tests; operators use etcdctl).
  Status compact(int64_t revision);

  const std::vector<std::string>& endpoints() const;

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> i);
  std::unique_ptr<Impl> impl_;
};

// One change seen by a Watcher.
struct WatchEvent {
  enum class Kind {
    kPut,
    kDelete,
    // A full read of the prefix replaces everything known so far: the first
    // event, and again after the watched history was compacted away while
    // disconnected (`compacted` true: "must resync").
    kReset,
  };
  Kind kind = Kind::kPut;
  KeyValue kv;                     // kPut, kDelete (value empty)
  std::vector<KeyValue> snapshot;  // kReset
  bool compacted = false;          // kReset after a compaction
  int64_t revision = 0;            // the store revision this event brings us to
};

// Watches every key under a prefix on its own thread: first a range read
// (a kReset event), then /v3/watch from that revision + 1. On a broken
// stream it reconnects to the next endpoint and resumes at the last seen
// revision + 1; when that revision is compacted it reads the prefix again
// (kReset, compacted). Events queue up; the eventfd becomes readable when
// there is something to drain. Never blocks its reader.
class Watcher {
 public:
  // `from` > 0: no initial read; the events from that revision on (a
  // compacted `from` is reported and resynced like any other).
  static Result<std::unique_ptr<Watcher>> start(std::vector<std::string> endpoints,
                                                std::string prefix, Timeouts t = {},
                                                int64_t from = 0);
  // Every key in [key, range_end) instead of a prefix.
  static Result<std::unique_ptr<Watcher>> start_range(std::vector<std::string> endpoints,
                                                      std::string key, std::string range_end,
                                                      Timeouts t = {}, int64_t from = 0);
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  int fd() const { return evfd_.get(); }
  // Takes the queued events (and clears the eventfd).
  std::vector<WatchEvent> drain();
  // A stream is open (or was open at the last check) to some endpoint.
  bool connected() const { return connected_.load(); }
  // Times the watch had to start over from a full read after a compaction.
  uint64_t compactions() const { return compactions_.load(); }
  // Asks the thread to drop its stream and reconnect (e.g. the lease's
  // keepalive found etcd unreachable: a silent peer may hold the stream).
  void reconnect() { kick_.store(true); }

 private:
  Watcher(std::vector<std::string> endpoints, std::string key, std::string end, Timeouts t);
  void loop();
  void push(std::vector<WatchEvent> evs);
  // One stream from `from` on endpoint `ep`; returns when it breaks. Sets
  // `compacted` when etcd says `from` is gone.
  void stream(const std::string& ep, int64_t from, bool& compacted);

  std::vector<std::string> endpoints_;
  std::string key_, end_;  // the watched range
  Timeouts t_;
  UniqueFd evfd_;
  std::mutex mu_;
  std::deque<WatchEvent> queue_;
  std::atomic<bool> stop_{false}, kick_{false}, connected_{false};
  std::atomic<uint64_t> compactions_{0};
  int64_t revision_ = 0;  // last revision delivered (thread only)
  std::thread thread_;
};

}  // namespace zw::cluster
