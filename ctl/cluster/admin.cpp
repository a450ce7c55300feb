// Cluster administration from the CLI: publishing a policy, reading status.
#include "cluster/admin.h"

#include <filesystem>
#include <fstream>

#include "policy/json.h"
#include "util/json_doc.h"

namespace zw::cluster {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

Result<std::map<std::string, std::string>> read_once(const std::string& path) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name.empty() || name[0] == '.' || it->path().extension() != ".json") continue;
      auto t = jsondoc::read_file(it->path().string());
      if (!t) return fail(std::move(t.error()));
      out[name] = std::move(*t);
    }
    if (ec) return fail(Error::sys(path + ": cannot list", ec.value()));
  } else {
    auto t = jsondoc::read_file(path);
    if (!t) return fail(std::move(t.error()));
    std::string name = fs::path(path).filename().string();
    if (!name.ends_with(".json") || name[0] == '.') name = "policy.json";
    out[name] = std::move(*t);
  }
  return out;
}

}  // namespace

Result<std::map<std::string, std::string>> read_policy_files(const std::string& path,
                                                             const std::function<Status()>& check) {
  auto before = read_once(path);
  if (!before) return before;
  if (auto st = check(); !st) return fail(std::move(st.error()));
  auto after = read_once(path);
  if (!after) return after;
  if (*before != *after)
    return fail(Error(ErrorKind::kBusy, path + ": policy changed while being read"));
  return before;
}

Result<policy::Policy> materialize(const std::map<std::string, std::string>& files,
                                   const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) return fail(Error::sys(dir + ": cannot create", ec.value()));
  for (const auto& [name, text] : files) {
    std::ofstream f(dir + "/" + name, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f.flush()) return fail(Error::sys(dir + "/" + name + ": cannot write"));
  }
  return policy::load(dir);
}

Result<Published> publish_policy(Client& c, const Layout& l, PolicyRecord rec) {
  rec.digest = policy_digest(rec.files);
  std::string value = to_json(rec);
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto cur = c.range(l.policy());
    if (!cur) return fail(std::move(cur.error()));
    int64_t mod = cur->kvs.empty() ? 0 : cur->kvs[0].mod_revision;
    if (!cur->kvs.empty()) {
      auto old = parse_policy(cur->kvs[0].value, l.policy());
      if (old && old->digest == rec.digest)
        return Published{.revision = mod, .digest = rec.digest, .unchanged = true};
    }
    Compare guard{.key = l.policy(), .target = Compare::Target::kMod, .number = mod};
    auto t = c.txn({guard}, {{.key = l.policy(), .value = value}});
    if (!t) return fail(std::move(t.error()).wrap("publish policy"));
    if (!t->succeeded) continue;  // someone else applied meanwhile: look again
    // The audit copy under the revision the txn made (its number is known
    // only now; losing it loses history, never the policy).
    (void)c.put(l.history(t->revision), value);
    return Published{.revision = t->revision, .digest = rec.digest};
  }
  return fail(Error(ErrorKind::kBusy, "publish policy: the cluster policy keeps changing"));
}

Result<json> cluster_status(Client& c, const Layout& l) {
  auto pol = c.range(l.policy());
  if (!pol) return fail(std::move(pol.error()));
  // Host records at the same revision as the policy read.
  auto hosts = c.range(l.hosts(), true, pol->revision);
  if (!hosts) return fail(std::move(hosts.error()));
  int64_t rev = 0;
  std::string digest;
  if (!pol->kvs.empty()) {
    rev = pol->kvs[0].mod_revision;
    if (auto p = parse_policy(pol->kvs[0].value, l.policy()); p) digest = p->digest;
  }
  json hs = json::array();
  bool converged = true;
  json bad = json::array();
  for (const auto& kv : hosts->kvs) {
    auto h = parse_host(kv.value, kv.key);
    if (!h) {
      bad.push_back(h.error().str());
      converged = false;
      continue;
    }
    bool ok = h->policy_revision == rev && h->etcd == "connected";
    converged = converged && ok;
    hs.push_back({{"host", h->host},
                  {"policy_revision", h->policy_revision},
                  {"policy_digest", h->policy_digest},
                  {"converged", ok},
                  {"local_endpoints", h->local_endpoints},
                  {"remote_endpoints", h->remote_endpoints},
                  {"etcd", h->etcd},
                  {"since", h->since},
                  {"version", h->version}});
  }
  json out{{"policy_revision", rev},
           {"policy_digest", digest},
           {"converged", converged},
           {"hosts", hs},
           {"revision", pol->revision}};
  if (!bad.empty()) out["malformed"] = bad;
  return out;
}

}  // namespace zw::cluster
