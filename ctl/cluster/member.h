// One host's membership in the cluster, as the daemon drives it from its
// event loop: the Watcher (policy and every host's endpoints, on its own
// thread), the View it keeps, and the Publisher (this host's records under
// its lease, on its own thread). Nothing here blocks on etcd: the loop
// polls watch_fd() and publisher_fd() like its other inputs.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cluster/etcd.h"
#include "cluster/publisher.h"
#include "cluster/store.h"
#include "inventory/endpoint.h"
#include "policy/model.h"
#include "util/result.h"

namespace zw::cluster {

class Member {
 public:
  struct Options {
    std::vector<std::string> endpoints;
    std::string host;
    std::string prefix = kDefaultPrefix;
    int lease_ttl = 10;
    std::string policy_dir;  // where a policy revision is written out to be loaded
    Timeouts timeouts;
  };
  static Result<std::unique_ptr<Member>> start(Options o);

  int watch_fd() const { return watch_->fd(); }
  int publisher_fd() const { return pub_->fd(); }

  // Drains the watcher into the view. What changed for the datapath.
  View::Changed on_watch();
  // The publisher's connection changed (clears its fd). True when the
  // etcd state shown in status changed.
  bool on_publisher();

  // A full view has arrived (the first read): remote endpoints are known.
  bool synced() const { return synced_; }
  // The store's policy when it is newer than the one last taken: written
  // out and loaded (nullopt: nothing new). An invalid one is an error,
  // logged, and not offered again.
  std::optional<Result<policy::Policy>> take_policy();
  int64_t loaded_revision() const { return loaded_revision_; }

  // Adds the other hosts' VMs to `inv` (entries without an interface),
  // zoned under `p`. Returns the warnings (ambiguous claims, unzoned).
  std::vector<std::string> add_remote(const policy::Policy& p, inventory::Inventory& inv);

  // After an apply: publishes `local` and the host record saying which
  // policy revision is enforced.
  void enforced(const inventory::Inventory& local, int64_t revision);
  // Before any policy: the host record alone (revision 0).
  void announce();

  bool connected() const;
  // The "cluster" section of `zonewall status`.
  nlohmann::json status() const;

 private:
  explicit Member(Options o) : o_(std::move(o)), view_(Layout{o_.prefix}, o_.host) {}
  HostRecord host_record(int64_t revision);

  Options o_;
  std::unique_ptr<Watcher> watch_;
  std::unique_ptr<Publisher> pub_;
  View view_;
  bool synced_ = false;
  int64_t loaded_revision_ = 0, offered_revision_ = 0;
  std::string loaded_digest_;
  int64_t enforced_revision_ = 0;
  int64_t applied_etcd_revision_ = 0;  // the store revision the last apply saw
  std::string since_;
  size_t local_vms_ = 0, remote_vms_ = 0;
  std::vector<EndpointRecord> last_local_;
  bool have_local_ = false;
};

}  // namespace zw::cluster
