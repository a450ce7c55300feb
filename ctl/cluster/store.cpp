// Records of the cluster store: JSON codecs with validation, and the View.
#include "cluster/store.h"

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <ctime>

#include "inventory/zones.h"
#include "util/json_doc.h"
#include "util/log.h"

namespace zw::cluster {

using nlohmann::json;

namespace {

json addrs_json(const std::vector<net::Addr>& v) {
  json a = json::array();
  for (const auto& x : v) a.push_back(x.str());
  return a;
}

// Reads a JSON object from an etcd value; errors name the key.
std::optional<json> object_of(const std::string& text, const std::string& key,
                              std::vector<std::string>& errors) {
  auto j = jsondoc::parse(text, key, errors);
  if (!j) return std::nullopt;
  if (!j->is_object()) {
    errors.push_back(key + ": expected an object, got " + jsondoc::show(*j));
    return std::nullopt;
  }
  return j;
}

std::string str_field(jsondoc::Walker& w, const json& o, const char* f, bool required) {
  auto it = o.find(f);
  if (it == o.end()) {
    if (required) w.error("", std::string("missing field \"") + f + "\"");
    return {};
  }
  if (!w.expect_string(*it, "/" + std::string(f))) return {};
  return it->get<std::string>();
}

int64_t int_field(jsondoc::Walker& w, const json& o, const char* f, bool required) {
  auto it = o.find(f);
  if (it == o.end()) {
    if (required) w.error("", std::string("missing field \"") + f + "\"");
    return 0;
  }
  if (!it->is_number_integer() || it->get<int64_t>() < 0) {
    w.error("/" + std::string(f), "expected a non-negative integer, got " + jsondoc::show(*it));
    return 0;
  }
  return it->get<int64_t>();
}

std::vector<net::Addr> addr_list(jsondoc::Walker& w, const json& o, const char* f,
                                 const std::string& ptr) {
  std::vector<net::Addr> out;
  auto it = o.find(f);
  if (it == o.end()) return out;
  std::string p = ptr + "/" + f;
  if (!w.expect_array(*it, p)) return out;
  for (size_t i = 0; i < it->size(); ++i) {
    const auto& v = (*it)[i];
    std::string pi = p + "/" + std::to_string(i);
    if (!w.expect_string(v, pi)) continue;
    auto a = net::parse_addr(v.get<std::string>());
    if (!a) {
      w.error(pi, jsondoc::show(v) + " is not an IP address");
      continue;
    }
    out.push_back(*a);
  }
  return out;
}

}  // namespace

Result<std::string> normalize_prefix(const std::string& p) {
  std::string s = p;
  while (!s.empty() && s.back() == '/') s.pop_back();
  if (s.empty()) return fail(Error::invalid("cluster prefix '" + p + "': empty"));
  if (s.front() != '/') s = "/" + s;
  if (s.find("//") != std::string::npos)
    return fail(Error::invalid("cluster prefix '" + p + "': contains '//'"));
  return s;
}

Status check_segment(const std::string& s, const std::string& what) {
  if (s.empty()) return fail(Error::invalid(what + ": empty"));
  if (s.size() > 253) return fail(Error::invalid(what + " '" + s + "': longer than 253 bytes"));
  for (unsigned char c : s)
    if (c == '/' || c < 0x21 || c == 0x7f)
      return fail(Error::invalid(what + " '" + s + "': no '/', spaces or control characters"));
  return {};
}

std::string now_rfc3339() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string policy_digest(const std::map<std::string, std::string>& files) {
  // name NUL text NUL, in name order: no two file sets share an encoding.
  std::string canon;
  for (const auto& [n, t] : files) {
    canon += n;
    canon += '\0';
    canon += t;
    canon += '\0';
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(canon.data(), canon.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += hex[md[i] >> 4];
    out += hex[md[i] & 15];
  }
  return out;
}

// ---- codecs ----------------------------------------------------------------

std::string to_json(const PolicyRecord& r) {
  return json{{"format", r.format},         {"digest", r.digest}, {"source", r.source},
              {"applied_by", r.applied_by}, {"time", r.time},     {"files", r.files}}
      .dump();
}

std::string to_json(const EndpointRecord& r) {
  json ifs = json::array();
  for (const auto& i : r.interfaces) {
    json o{{"addrs", addrs_json(i.addrs)}, {"allowed", addrs_json(i.allowed)}};
    o["mac"] = i.mac ? json(net::mac_str(*i.mac)) : json(nullptr);
    ifs.push_back(std::move(o));
  }
  json o{{"host", r.host},    {"uuid", r.uuid},   {"name", r.name},
         {"interfaces", ifs}, {"state", r.state}, {"time", r.time}};
  o["zone_tag"] = r.zone_tag ? json(*r.zone_tag) : json(nullptr);
  return o.dump();
}

std::string to_json(const HostRecord& r) {
  return json{{"host", r.host},
              {"policy_revision", r.policy_revision},
              {"policy_digest", r.policy_digest},
              {"local_endpoints", r.local_endpoints},
              {"remote_endpoints", r.remote_endpoints},
              {"etcd", r.etcd},
              {"since", r.since},
              {"version", r.version}}
      .dump();
}

Result<PolicyRecord> parse_policy(const std::string& text, const std::string& key) {
  std::vector<std::string> errors;
  auto j = object_of(text, key, errors);
  if (!j) return fail(jsondoc::invalid(errors));
  jsondoc::Walker w(key, errors);
  w.check_fields(*j, "", {"format", "digest", "source", "applied_by", "time", "files"});
  PolicyRecord r;
  r.format = static_cast<int>(int_field(w, *j, "format", true));
  if (errors.empty() && r.format != 1)
    w.error("/format", "format " + std::to_string(r.format) + " is not supported (1)");
  r.digest = str_field(w, *j, "digest", true);
  r.source = str_field(w, *j, "source", false);
  r.applied_by = str_field(w, *j, "applied_by", false);
  r.time = str_field(w, *j, "time", false);
  auto f = j->find("files");
  if (f == j->end()) {
    w.error("", "missing field \"files\"");
  } else if (w.expect_object(*f, "/files")) {
    for (const auto& [name, text] : f->items()) {
      std::string p = "/files/" + jsondoc::token(name);
      if (!w.expect_string(text, p)) continue;
      if (name.empty() || name.find('/') != std::string::npos || name[0] == '.' ||
          !name.ends_with(".json")) {
        w.error(p, "a policy file name is NAME.json, without '/'");
        continue;
      }
      r.files[name] = text.get<std::string>();
    }
    if (r.files.empty()) w.error("/files", "no policy files");
  }
  if (errors.empty() && policy_digest(r.files) != r.digest)
    w.error("/digest", "does not match the files (sha256 " + policy_digest(r.files) + ")");
  if (!errors.empty()) return fail(jsondoc::invalid(errors));
  return r;
}

Result<EndpointRecord> parse_endpoint(const std::string& text, const std::string& key) {
  std::vector<std::string> errors;
  auto j = object_of(text, key, errors);
  if (!j) return fail(jsondoc::invalid(errors));
  jsondoc::Walker w(key, errors);
  w.check_fields(*j, "", {"host", "uuid", "name", "zone_tag", "interfaces", "state", "time"});
  EndpointRecord r;
  r.host = str_field(w, *j, "host", true);
  r.uuid = str_field(w, *j, "uuid", false);
  r.name = str_field(w, *j, "name", false);
  if (!r.uuid.empty()) {
    if (!jsondoc::is_uuid(r.uuid))
      w.error("/uuid", "\"" + r.uuid + "\" is not a UUID");
    else
      r.uuid = jsondoc::lower(r.uuid);
  }
  if (r.uuid.empty() && r.name.empty()) w.error("", "neither \"uuid\" nor \"name\"");
  if (auto z = j->find("zone_tag"); z != j->end() && !z->is_null())
    if (w.expect_string(*z, "/zone_tag")) r.zone_tag = z->get<std::string>();
  if (j->contains("state")) {
    r.state = str_field(w, *j, "state", false);
    if (r.state != "running" && r.state != "migrating-in" && r.state != "migrating-out")
      w.error("/state", "\"" + r.state + "\" is not running, migrating-in or migrating-out");
  }
  r.time = str_field(w, *j, "time", false);
  auto ifs = j->find("interfaces");
  if (ifs == j->end()) {
    w.error("", "missing field \"interfaces\"");
  } else if (w.expect_array(*ifs, "/interfaces")) {
    for (size_t i = 0; i < ifs->size(); ++i) {
      const auto& o = (*ifs)[i];
      std::string p = "/interfaces/" + std::to_string(i);
      if (!w.expect_object(o, p)) continue;
      w.check_fields(o, p, {"mac", "addrs", "allowed"});
      EndpointRecord::Interface itf;
      if (auto m = o.find("mac"); m != o.end() && !m->is_null()) {
        if (w.expect_string(*m, p + "/mac")) {
          itf.mac = net::parse_mac(m->get<std::string>());
          if (!itf.mac) w.error(p + "/mac", jsondoc::show(*m) + " is not a MAC address");
        }
      }
      itf.addrs = addr_list(w, o, "addrs", p);
      itf.allowed = addr_list(w, o, "allowed", p);
      r.interfaces.push_back(std::move(itf));
    }
  }
  // The key says whose record it is: PFX/endpoints/<host>/<vm>.
  auto slash = key.rfind('/');
  auto hslash =
      slash == std::string::npos || slash == 0 ? std::string::npos : key.rfind('/', slash - 1);
  if (errors.empty() && hslash != std::string::npos) {
    std::string khost = key.substr(hslash + 1, slash - hslash - 1);
    std::string kvm = key.substr(slash + 1);
    if (khost != r.host)
      w.error("/host", "\"" + r.host + "\" is not the host of the key ('" + khost + "')");
    if (kvm != r.id() && jsondoc::lower(kvm) != r.id())
      w.error("", "the key's VM '" + kvm + "' is not the record's uuid/name '" + r.id() + "'");
  }
  if (!errors.empty()) return fail(jsondoc::invalid(errors));
  return r;
}

Result<HostRecord> parse_host(const std::string& text, const std::string& key) {
  std::vector<std::string> errors;
  auto j = object_of(text, key, errors);
  if (!j) return fail(jsondoc::invalid(errors));
  jsondoc::Walker w(key, errors);
  HostRecord r;
  r.host = str_field(w, *j, "host", true);
  r.policy_revision = int_field(w, *j, "policy_revision", true);
  r.policy_digest = str_field(w, *j, "policy_digest", false);
  r.local_endpoints = int_field(w, *j, "local_endpoints", false);
  r.remote_endpoints = int_field(w, *j, "remote_endpoints", false);
  r.etcd = j->contains("etcd") ? str_field(w, *j, "etcd", false) : "connected";
  r.since = str_field(w, *j, "since", false);
  r.version = str_field(w, *j, "version", false);
  if (!errors.empty()) return fail(jsondoc::invalid(errors));
  return r;
}

std::vector<EndpointRecord> records_of(const inventory::Inventory& local, const std::string& host,
                                       const std::string& time) {
  std::vector<EndpointRecord> out;
  std::map<std::string, size_t> at;  // VM id -> index in out
  for (const auto& e : local.endpoints) {
    std::string uuid = jsondoc::lower(e.vm_uuid);
    std::string id = uuid.empty() ? e.vm_name : uuid;
    if (id.empty() || !check_segment(id, "VM")) continue;
    auto [it, fresh] = at.try_emplace(id, out.size());
    if (fresh) {
      EndpointRecord r;
      r.host = host;
      r.uuid = uuid;
      r.name = e.vm_name;
      r.zone_tag = e.zone_tag;
      r.time = time;
      out.push_back(std::move(r));
    }
    out[it->second].interfaces.push_back({.mac = e.mac, .addrs = e.addrs, .allowed = e.allowed});
  }
  return out;
}

// ---- View ------------------------------------------------------------------

void View::put(const KeyValue& kv, Changed& c) {
  const std::string& k = kv.key;
  if (k == l_.policy()) {
    auto r = parse_policy(kv.value, k);
    if (!r) {
      // Keep enforcing the last good one; apply never writes such a record.
      log::error(
          "cluster policy record malformed; ignored",
          {{"key", k}, {"revision", std::to_string(kv.mod_revision)}, {"error", r.error().str()}});
      return;
    }
    policy_ = Policy{kv.mod_revision, std::move(*r)};
    c.policy = true;
    return;
  }
  if (k.starts_with(l_.hosts())) {
    auto r = parse_host(kv.value, k);
    if (r) hosts_[k.substr(l_.hosts().size())] = std::move(*r);
    return;
  }
  if (!k.starts_with(l_.endpoints())) return;
  std::string rest = k.substr(l_.endpoints().size());
  auto slash = rest.find('/');
  if (slash == std::string::npos) return;
  if (rest.substr(0, slash) == self_) return;  // our own records: the local inventory rules
  auto r = parse_endpoint(kv.value, k);
  if (!r) {
    log::warn("cluster endpoint record malformed; ignored",
              {{"key", k}, {"error", r.error().str()}});
    // A previous good version of it no longer stands either.
    erase(k, c);
    return;
  }
  remote_[k] = Stored{kv.mod_revision, std::move(*r)};
  c.endpoints = true;
}

void View::erase(const std::string& key, Changed& c) {
  if (key == l_.policy()) {
    // Deleting the policy does not unenforce it: the last one stays.
    log::warn("cluster policy deleted from the store; the last one stays enforced", {{"key", key}});
    return;
  }
  if (key.starts_with(l_.hosts())) {
    hosts_.erase(key.substr(l_.hosts().size()));
    return;
  }
  if (remote_.erase(key)) c.endpoints = true;
}

View::Changed View::apply(const WatchEvent& ev) {
  Changed c;
  switch (ev.kind) {
    case WatchEvent::Kind::kReset: {
      auto old_policy_rev = policy_ ? policy_->revision : 0;
      auto old = std::move(remote_);
      remote_.clear();
      hosts_.clear();
      bool saw_policy = false;
      for (const auto& kv : ev.snapshot) {
        if (kv.key == l_.policy()) saw_policy = true;
        put(kv, c);
      }
      (void)saw_policy;
      c.policy = (policy_ ? policy_->revision : 0) != old_policy_rev;
      // Changed unless exactly the same records at the same revisions.
      bool same = old.size() == remote_.size() &&
                  std::equal(old.begin(), old.end(), remote_.begin(), [](auto& a, auto& b) {
                    return a.first == b.first && a.second.mod_revision == b.second.mod_revision;
                  });
      c.endpoints = !same;
      break;
    }
    case WatchEvent::Kind::kPut:
      put(ev.kv, c);
      break;
    case WatchEvent::Kind::kDelete:
      erase(ev.kv.key, c);
      break;
  }
  if (ev.revision > revision_) revision_ = ev.revision;
  return c;
}

View::Remote View::remote_endpoints(const inventory::Inventory& local) const {
  Remote out;
  std::set<std::string> local_vms;              // uuid:..., name:...
  std::map<net::Addr, std::string> local_addr;  // own address -> "VM 'x' (local)"
  std::set<net::Addr> local_allowed;
  for (const auto& e : local.endpoints) {
    std::string uuid = jsondoc::lower(e.vm_uuid);
    local_vms.insert(uuid.empty() ? "name:" + e.vm_name : "uuid:" + uuid);
    for (const auto& a : e.addrs) local_addr.emplace(a, "VM '" + e.vm_name + "' (this host)");
    for (const auto& a : e.allowed) local_allowed.insert(a);
  }
  // One record per VM: the newest (a migration's destination publishes after
  // the source did; the source deletes its own once the VM left).
  std::map<std::string, const std::pair<const std::string, Stored>*> per_vm;
  for (const auto& kv : remote_) {
    const auto& r = kv.second.record;
    std::string id = r.uuid.empty() ? "name:" + r.name : "uuid:" + r.uuid;
    if (local_vms.count(id)) continue;
    auto [it, fresh] = per_vm.try_emplace(id, &kv);
    if (!fresh && it->second->second.mod_revision < kv.second.mod_revision) it->second = &kv;
  }
  // Who claims each address, by VM.
  std::map<net::Addr, std::map<std::string, std::string>> claims;  // addr -> vm id -> key
  for (const auto& [id, kv] : per_vm)
    for (const auto& itf : kv->second.record.interfaces)
      for (const auto& a : itf.addrs) claims[a].try_emplace(id, kv->first);
  std::set<net::Addr> refused;
  for (const auto& [a, who] : claims) {
    if (auto l = local_addr.find(a); l != local_addr.end()) {
      for (const auto& [id, key] : who)
        out.warnings.push_back("cluster: address " + a.str() + " claimed by " + key +
                               " belongs to " + l->second + "; the remote claim is not used");
      refused.insert(a);
    } else if (local_allowed.count(a)) {
      for (const auto& [id, key] : who)
        out.warnings.push_back("cluster: address " + a.str() + " claimed by " + key +
                               " is a shared address of VMs on this host; the remote claim is "
                               "not used");
      refused.insert(a);
    } else if (who.size() > 1) {
      std::string list;
      for (const auto& [id, key] : who) list += (list.empty() ? "" : " and ") + key;
      out.warnings.push_back("cluster: address " + a.str() + " is claimed by " + list +
                             "; ambiguous, neither claim is used (judged as no VM's address)");
      refused.insert(a);
    }
  }
  for (const auto& [id, kv] : per_vm) {
    const auto& r = kv->second.record;
    bool any = false;
    for (size_t i = 0; i < r.interfaces.size(); ++i) {
      const auto& itf = r.interfaces[i];
      inventory::Endpoint e;
      e.vm_name = r.name;
      e.vm_uuid = r.uuid;
      e.zone_tag = r.zone_tag;
      e.mac = itf.mac;
      e.source = "etcd " + kv->first + ": /interfaces/" + std::to_string(i);
      for (const auto& a : itf.addrs)
        if (!refused.count(a)) e.addrs.push_back(a);
      for (const auto& a : itf.allowed)
        // A shared address is zoned by the VMs here when they have it; an
        // address someone owns is not shared.
        if (!local_allowed.count(a) && !local_addr.count(a) && !claims.count(a))
          e.allowed.push_back(a);
      if (e.addrs.empty() && e.allowed.empty()) continue;  // nothing to zone
      out.endpoints.push_back(std::move(e));
      any = true;
    }
    if (any) ++out.vms;
  }
  // A VIP shared by remote VMs of different zones is left to build_desired's
  // check; the same VIP twice from one zone is fine there.
  return out;
}

void sanitize_remote(const policy::Policy& p, std::vector<inventory::Endpoint>& remote,
                     std::vector<std::string>& warnings) {
  inventory::Inventory all{remote};
  if (!inventory::assign_zones(p, all)) {
    for (auto& e : remote) {
      inventory::Inventory one{{e}};
      auto r = inventory::assign_zones(p, one);
      if (r) continue;
      warnings.push_back(e.source + ": remote VM '" + e.vm_name +
                         "' has no zone under this policy (" + r.error().str() +
                         "); its addresses are in zone unzoned");
      e.vm_name = "";
      e.vm_uuid = "";
      e.zone_tag.reset();
    }
  }
  // A shared address (allowed pair) belongs to one zone: remote VMs of
  // different zones sharing one cannot all be right; none is used.
  auto zoned = inventory::assign_zones(p, inventory::Inventory{remote});
  if (!zoned) return;  // cannot happen after the pass above
  std::map<net::Addr, std::set<std::string>> zones_of;
  for (const auto& a : *zoned)
    for (const auto& addr : a.endpoint.allowed) zones_of[addr].insert(a.zone);
  std::set<net::Addr> split;
  for (const auto& [addr, zs] : zones_of)
    if (zs.size() > 1) {
      std::string list;
      for (const auto& z : zs) list += (list.empty() ? "'" : ", '") + z + "'";
      warnings.push_back("cluster: shared address " + addr.str() +
                         " is allowed for remote VMs of zones " + list + "; not used");
      split.insert(addr);
    }
  if (split.empty()) return;
  for (auto& e : remote)
    std::erase_if(e.allowed, [&](const net::Addr& a) { return split.count(a) > 0; });
}

}  // namespace zw::cluster
