// The cluster's key layout in etcd and the JSON records under it (policy,
// endpoint, host), with validation of everything read back: a malformed
// record is reported with its key and ignored, never half-used. Plus the
// View: what a daemon knows of the store, kept up to date from a Watcher's
// events, and the remote endpoints it turns into inventory entries. Pure:
// no I/O. The contract is docs/cluster.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cluster/etcd.h"
#include "inventory/endpoint.h"
#include "policy/model.h"
#include "util/result.h"

namespace zw::cluster {

inline constexpr const char* kDefaultPrefix = "/zonewall";

struct Layout {
  std::string prefix = kDefaultPrefix;  // no trailing '/'

  std::string policy() const { return prefix + "/policy"; }
  std::string history(int64_t revision) const {
    return prefix + "/policy-history/" + std::to_string(revision);
  }
  std::string endpoints() const { return prefix + "/endpoints/"; }
  std::string endpoints_of(const std::string& host) const { return endpoints() + host + "/"; }
  std::string endpoint(const std::string& host, const std::string& vm) const {
    return endpoints_of(host) + vm;
  }
  std::string hosts() const { return prefix + "/hosts/"; }
  std::string host(const std::string& h) const { return hosts() + h; }
  // What a daemon watches: [watch_from, watch_end) holds endpoints/,
  // hosts/ and policy but not policy-history/ (which only grows).
  std::string watch_from() const { return endpoints(); }
  std::string watch_end() const { return policy() + std::string(1, '\0'); }
};

// "/zonewall", "zonewall/" -> "/zonewall"; errors on empty or "//".
Result<std::string> normalize_prefix(const std::string& p);
// A host or VM key segment: non-empty, no '/', printable, <= 253 bytes.
Status check_segment(const std::string& s, const std::string& what);

struct PolicyRecord {
  int format = 1;
  std::string digest;                        // sha256 hex of the canonical policy
  std::string source;                        // what apply was given
  std::string applied_by;                    // user@host
  std::string time;                          // RFC3339
  std::map<std::string, std::string> files;  // relative name -> text
};

struct EndpointRecord {
  struct Interface {
    std::optional<net::Mac> mac;
    std::vector<net::Addr> addrs;
    std::vector<net::Addr> allowed;
  };
  std::string host;
  std::string uuid;  // lower case, may be empty
  std::string name;
  std::optional<std::string> zone_tag;
  std::vector<Interface> interfaces;
  std::string state = "running";  // running | migrating-in | migrating-out
  std::string time;
  // The VM's key segment: its uuid, else its name.
  std::string id() const { return uuid.empty() ? name : uuid; }
};

struct HostRecord {
  std::string host;
  int64_t policy_revision = 0;  // 0: none yet
  std::string policy_digest;
  int64_t local_endpoints = 0;
  int64_t remote_endpoints = 0;
  std::string etcd = "connected";
  std::string since;  // RFC3339
  std::string version;
};

std::string to_json(const PolicyRecord& r);
std::string to_json(const EndpointRecord& r);
std::string to_json(const HostRecord& r);
// `key` names the record in errors ("/zonewall/endpoints/h1/...: /interfaces/0/mac: ...").
Result<PolicyRecord> parse_policy(const std::string& text, const std::string& key);
Result<EndpointRecord> parse_endpoint(const std::string& text, const std::string& key);
Result<HostRecord> parse_host(const std::string& text, const std::string& key);

// The canonical digest of a set of policy files (name and text of each, in
// name order): sha256 hex.
std::string policy_digest(const std::map<std::string, std::string>& files);

// This host's VMs as endpoint records: one per VM (uuid, else name), its
// interfaces in inventory order. Endpoints without a name and uuid are
// skipped.
std::vector<EndpointRecord> records_of(const inventory::Inventory& local, const std::string& host,
                                       const std::string& time);

std::string now_rfc3339();

// What a daemon knows of the store.
class View {
 public:
  View(Layout l, std::string self) : l_(std::move(l)), self_(std::move(self)) {}

  struct Changed {
    bool policy = false;
    bool endpoints = false;  // another host's endpoint records
  };
  // Applies one watch event (kReset replaces everything).
  Changed apply(const WatchEvent& ev);

  struct Policy {
    int64_t revision = 0;  // the key's mod_revision
    PolicyRecord record;
  };
  const std::optional<Policy>& policy() const { return policy_; }
  int64_t revision() const { return revision_; }
  size_t remote_records() const { return remote_.size(); }
  const std::map<std::string, HostRecord>& hosts() const { return hosts_; }

  struct Remote {
    std::vector<inventory::Endpoint> endpoints;  // no ifname: zoned addresses only
    std::vector<std::string> warnings;           // ambiguity, malformed records
    size_t vms = 0;                              // remote VMs used
  };
  // The other hosts' VMs as inventory entries without an interface, to be
  // added to `local`. A VM also running here (same uuid: a migration) is
  // left to the local entry; two records of one VM (migration overlap)
  // yield one (the newer). An address claimed by two different VMs is
  // ambiguous: no remote claim of it is used (the local VM keeps its own;
  // otherwise it is judged as no VM's address), and a warning names both.
  Remote remote_endpoints(const inventory::Inventory& local) const;

 private:
  struct Stored {
    int64_t mod_revision = 0;
    EndpointRecord record;
  };
  void put(const KeyValue& kv, Changed& c);
  void erase(const std::string& key, Changed& c);

  Layout l_;
  std::string self_;
  std::optional<Policy> policy_;
  std::map<std::string, Stored> remote_;  // key -> record (other hosts)
  std::map<std::string, HostRecord> hosts_;
  int64_t revision_ = 0;
};

// Remote entries whose zone the local policy cannot decide (a zone tag it
// does not define, several matching zones) are kept, but as unzoned
// (no name, uuid or tag): fail closed for them, with a warning, instead of
// failing the whole reconcile.
void sanitize_remote(const policy::Policy& p, std::vector<inventory::Endpoint>& remote,
                     std::vector<std::string>& warnings);

}  // namespace zw::cluster
