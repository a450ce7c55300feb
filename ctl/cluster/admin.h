// What `zonewall apply --cluster` and `zonewall status --cluster` do with
// the store: publish a validated policy in one transaction, read every
// host's status and whether the cluster has converged.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "cluster/etcd.h"
#include "cluster/store.h"
#include "policy/model.h"
#include "util/result.h"

namespace zw::cluster {

// The files `policy::load(path)` reads (a file, or a directory's *.json in
// name order) by their names, and their text. Read twice around `check`
// (the validation of `path`): if the files changed in between, kBusy.
Result<std::map<std::string, std::string>> read_policy_files(const std::string& path,
                                                             const std::function<Status()>& check);

// Writes `files` into directory `dir` (replaced) and loads the policy from
// it: how a daemon turns a policy record into a Policy.
Result<policy::Policy> materialize(const std::map<std::string, std::string>& files,
                                   const std::string& dir);

struct Published {
  int64_t revision = 0;
  std::string digest;
  bool unchanged = false;  // the store already held this very policy
};
// PFX/policy in one txn, guarded by the current PFX/policy's mod_revision
// (a concurrent apply cannot interleave; on a lost race it reads and tries
// again); then the audit copy PFX/policy-history/<revision>.
Result<Published> publish_policy(Client& c, const Layout& l, PolicyRecord rec);

// {"policy_revision", "policy_digest", "converged", "hosts": [...]}.
Result<nlohmann::json> cluster_status(Client& c, const Layout& l);

}  // namespace zw::cluster
