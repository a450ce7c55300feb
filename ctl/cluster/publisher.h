// Keeps this host's records in etcd: a lease (TTL, keepalive every TTL/3)
// and, under it, one endpoint record per local VM plus the host record.
// Runs on its own thread so a slow or absent etcd never holds the daemon's
// event loop; the daemon only hands it the records it wants published.
// A lease that expired (host cut off longer than the TTL) is replaced and
// everything republished; records of VMs that left are deleted.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cluster/etcd.h"
#include "cluster/store.h"
#include "util/fd.h"
#include "util/result.h"

namespace zw::cluster {

class Publisher {
 public:
  struct Options {
    std::vector<std::string> endpoints;
    Layout layout;
    std::string host;
    int lease_ttl = 10;
    Timeouts timeouts;
  };
  static Result<std::unique_ptr<Publisher>> start(Options o);
  // Stops the thread. The lease is left to expire (a restarting daemon
  // republishes the same keys before other hosts notice).
  ~Publisher();
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // What should be in etcd now. `endpoints` nullopt: leave the endpoint
  // records as they are (nothing known yet); only the host record.
  void publish(std::optional<std::vector<EndpointRecord>> endpoints, HostRecord host);
  // The last round with etcd succeeded (lease alive, records written).
  bool connected() const { return connected_.load(); }
  // Readable when connected() changed.
  int fd() const { return evfd_.get(); }
  void clear_fd();
  // Publishes done (tests).
  uint64_t rounds() const { return rounds_.load(); }

 private:
  explicit Publisher(Options o) : o_(std::move(o)) {}
  void loop();
  // One round: lease, then the records. False on any etcd failure.
  bool round(Client& c);
  void set_connected(bool v);

  Options o_;
  UniqueFd evfd_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, dirty_ = false;
  std::optional<std::map<std::string, std::string>> want_eps_;  // key -> value
  std::optional<std::pair<std::string, std::string>> want_host_;
  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> rounds_{0};
  // Thread only.
  int64_t lease_ = 0;
  bool cleaned_ = false;                        // stale own records removed for this lease
  std::map<std::string, std::string> written_;  // what etcd holds under our lease
  std::thread thread_;
};

}  // namespace zw::cluster
