// Expectation files and the private datapath `zonewall test` runs them in.
#include "engine/expect.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <set>
#include <sstream>

#include "datapath/maps.h"
#include "engine/reconcile.h"
#include "util/json_doc.h"

namespace zw::engine {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string join_lines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : "\n") + s;
  return out;
}

std::optional<int64_t> int_in(const json& v, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) return std::nullopt;
  auto i = v.get<int64_t>();
  if (i < lo || i > hi) return std::nullopt;
  return i;
}

bool port_proto(uint8_t p) { return p == 6 || p == 17 || p == 132; }
bool icmp_proto(uint8_t p) { return p == 1 || p == 58; }

std::optional<Expectation> one(const json& o, const std::string& ptr, jsondoc::Walker& w) {
  if (!w.expect_object(o, ptr)) return std::nullopt;
  w.check_fields(o, ptr,
                 {"name", "from", "to", "proto", "port", "sport", "icmp_type", "family", "flags",
                  "expect", "rule"});
  Expectation e;
  e.origin = w.file() + ": " + (ptr.empty() ? "/" : ptr);
  bool ok = true;
  auto str = [&](const char* key, bool required) -> std::optional<std::string> {
    std::string p = ptr + "/" + key;
    if (!o.contains(key)) {
      if (required) {
        w.error(p, "required field missing");
        ok = false;
      }
      return std::nullopt;
    }
    if (!w.expect_string(o[key], p)) {
      ok = false;
      return std::nullopt;
    }
    const auto& s = o[key].get_ref<const std::string&>();
    if (s.empty()) {
      w.error(p, "must not be empty");
      ok = false;
      return std::nullopt;
    }
    return s;
  };
  auto from = str("from", true);
  auto to = str("to", true);
  auto name = str("name", false);
  e.rule = str("rule", false);
  if (from) e.req.from = *from;
  if (to) e.req.to = *to;

  if (!o.contains("proto")) {
    w.error(ptr + "/proto", "required field missing (tcp, udp, icmp, icmpv6, sctp or 0-255)");
    ok = false;
  } else {
    const json& v = o["proto"];
    std::optional<uint8_t> p;
    if (v.is_string())
      p = parse_proto(v.get<std::string>());
    else if (auto n = int_in(v, 0, 255))
      p = static_cast<uint8_t>(*n);
    if (!p) {
      w.error(ptr + "/proto",
              "expected tcp, udp, icmp, icmpv6, sctp or 0-255, got " + jsondoc::show(v));
      ok = false;
    } else {
      e.req.proto = *p;
    }
  }
  if (o.contains("port")) {
    if (ok && !port_proto(e.req.proto)) {
      w.error(ptr + "/port", "only for tcp, udp and sctp (use icmp_type for ICMP)");
      ok = false;
    } else if (auto n = int_in(o["port"], 0, 65535)) {
      e.req.port = static_cast<uint16_t>(*n);
    } else {
      w.error(ptr + "/port", jsondoc::show(o["port"]) + " is not a port (0-65535)");
      ok = false;
    }
  } else if (ok && port_proto(e.req.proto)) {
    w.error(ptr + "/port", "required for " + proto_name(e.req.proto));
    ok = false;
  }
  if (o.contains("sport")) {
    if (auto n = int_in(o["sport"], 0, 65535)) {
      e.req.sport = static_cast<uint16_t>(*n);
    } else {
      w.error(ptr + "/sport", jsondoc::show(o["sport"]) + " is not a port (0-65535)");
      ok = false;
    }
  }
  if (o.contains("icmp_type")) {
    if (ok && !icmp_proto(e.req.proto)) {
      w.error(ptr + "/icmp_type", "only for icmp and icmpv6");
      ok = false;
    } else if (auto n = int_in(o["icmp_type"], 0, 255)) {
      e.req.icmp_type = static_cast<uint8_t>(*n);
    } else {
      w.error(ptr + "/icmp_type", jsondoc::show(o["icmp_type"]) + " is not an ICMP type (0-255)");
      ok = false;
    }
  }
  if (o.contains("family")) {
    if (auto n = int_in(o["family"], 4, 6); n && *n != 5) {
      e.req.family = static_cast<int>(*n);
    } else {
      w.error(ptr + "/family", "expected 4 or 6, got " + jsondoc::show(o["family"]));
      ok = false;
    }
  }
  if (auto fl = str("flags", false)) {
    if (auto f = parse_tcp_flags(*fl); f && e.req.proto == 6) {
      e.req.tcp_flags = *f;
    } else {
      w.error(ptr + "/flags", e.req.proto != 6
                                  ? "only for tcp"
                                  : "'" + *fl + "': comma-separated syn,ack,fin,rst,psh,urg");
      ok = false;
    }
  }
  if (!o.contains("expect")) {
    w.error(ptr + "/expect", "required field missing (\"allow\" or \"deny\")");
    ok = false;
  } else if (o["expect"] == "allow" || o["expect"] == "deny") {
    e.allow = o["expect"] == "allow";
  } else {
    w.error(ptr + "/expect", "expected \"allow\" or \"deny\", got " + jsondoc::show(o["expect"]));
    ok = false;
  }
  if (!ok) return std::nullopt;
  if (name) {
    e.name = *name;
  } else {
    e.name = e.req.from + " -> " + e.req.to + " " + proto_name(e.req.proto);
    if (e.req.port) e.name += "/" + std::to_string(*e.req.port);
    if (e.req.icmp_type) e.name += " type " + std::to_string(*e.req.icmp_type);
    if (e.req.family) e.name += " IPv" + std::to_string(e.req.family);
  }
  return e;
}

// Removes the private pin and state dirs on every path out.
struct PrivateDirs {
  Paths paths;
  ~PrivateDirs() {
    std::error_code ec;
    if (!paths.pin_dir.empty()) fs::remove_all(paths.pin_dir, ec);
    if (!paths.state_dir.empty()) fs::remove_all(paths.state_dir, ec);
  }
};

// The hook whose verdict is the answer: the dropping one, else the first.
const json* deciding_hook(const json& t) {
  const json* first = nullptr;
  for (const auto& h : t["hooks"]) {
    if (h["verdict"] == "drop") return &h;
    if (!first && h["verdict"] == "pass") first = &h;
  }
  return first;
}

}  // namespace

Result<std::vector<Expectation>> parse_expectations(const std::string& text,
                                                    const std::string& file) {
  std::vector<std::string> errors;
  auto doc = jsondoc::parse(text, file, errors);
  if (!doc) return fail(Error::invalid(join_lines(errors)));
  jsondoc::Walker w(file, errors);
  std::vector<Expectation> out;
  if (w.expect_array(*doc, "")) {
    if (doc->empty()) w.error("", "no expectations (an empty array tests nothing)");
    for (size_t i = 0; i < doc->size(); ++i)
      if (auto e = one((*doc)[i], "/" + std::to_string(i), w)) out.push_back(std::move(*e));
  }
  if (!errors.empty()) return fail(Error::invalid(join_lines(errors)));
  return out;
}

Result<std::vector<Expectation>> load_expectations(const std::string& path) {
  std::error_code ec;
  std::vector<std::string> files;
  if (fs::is_directory(path, ec)) {
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
      std::string n = it->path().filename();
      if (!n.empty() && n[0] != '.' && it->path().extension() == ".json")
        files.push_back(it->path().string());
    }
    if (ec) return fail(Error::sys(path, ec.value()));
    std::sort(files.begin(), files.end());
    if (files.empty()) return fail(Error::invalid(path + ": no *.json expectation files"));
  } else {
    files.push_back(path);
  }
  std::vector<Expectation> all;
  std::vector<std::string> errors;
  for (const auto& f : files) {
    auto text = jsondoc::read_file(f);
    if (!text) {
      errors.push_back(text.error().str());
      continue;
    }
    auto ex = parse_expectations(*text, f);
    if (!ex) {
      errors.push_back(ex.error().str());
      continue;
    }
    for (auto& e : *ex) all.push_back(std::move(e));
  }
  if (!errors.empty()) return fail(Error::invalid(join_lines(errors)));
  return all;
}

std::optional<std::string> default_expectations(const std::string& policy_path) {
  std::error_code ec;
  if (!fs::is_directory(policy_path, ec)) return std::nullopt;
  return (fs::path(policy_path) / "tests").string();
}

inventory::Inventory synthetic_inventory(const std::vector<Expectation>& ex) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const auto& e : ex)
    for (const auto& n : {e.req.from, e.req.to})
      if (!net::parse_addr(n) && seen.insert(n).second) names.push_back(n);
  inventory::Inventory inv;
  for (size_t i = 0; i < names.size(); ++i) {
    unsigned hi = (i + 1) >> 8, lo = (i + 1) & 0xff;
    inventory::Endpoint ep;
    ep.vm_name = names[i];
    ep.ifname = "zwt" + std::to_string(i);
    ep.mac = net::Mac{0x52, 0x54, 0x00, 0x7e, static_cast<uint8_t>(hi), static_cast<uint8_t>(lo)};
    ep.addrs.push_back(*net::parse_addr("10.255." + std::to_string(hi) + "." + std::to_string(lo)));
    std::ostringstream v6;
    v6 << "fd7e::" << std::hex << (i + 1);
    ep.addrs.push_back(*net::parse_addr(v6.str()));
    ep.source = "synthetic: VM '" + names[i] + "' of the expectations";
    inv.endpoints.push_back(std::move(ep));
  }
  return inv;
}

Result<json> run_expectations(const policy::Policy& p, const std::string& policy_source,
                              const inventory::Inventory& inv, const std::vector<Expectation>& ex) {
  PrivateDirs dirs;
  std::random_device rd;
  std::string tag = std::to_string(getpid()) + "-" + std::to_string(rd() % 1000000);
  dirs.paths.pin_dir = "/sys/fs/bpf/zw-test-" + tag;
  char tmpl[] = "/tmp/zw-test-XXXXXX";
  if (!mkdtemp(tmpl)) return fail(Error::sys("mkdtemp /tmp/zw-test-XXXXXX"));
  dirs.paths.state_dir = tmpl;
  if (auto st = datapath::ensure_bpffs(dirs.paths.pin_dir); !st) return fail(std::move(st.error()));

  auto tracer = Tracer::open(dirs.paths, /*create_maps=*/true);
  if (!tracer) return fail(std::move(tracer.error()).wrap("test"));
  {
    auto lock = PinLock::acquire(dirs.paths.pin_dir);
    if (!lock) return fail(std::move(lock.error()));
    // Synthetic interface indexes: the tc programs of the verdict variant
    // take them from cb[0]; nothing has to exist, nothing is attached.
    std::map<std::string, uint32_t> ifx;
    for (const auto& e : inv.endpoints) ifx.emplace(e.ifname, 1000000 + ifx.size());
    ApplyInput in;
    in.policy = &p;
    in.inventory = &inv;
    in.programs = &tracer->programs();
    in.policy_source = policy_source;
    in.inventory_source = "test";
    in.resolve = [ifx](const std::string& n) {
      auto it = ifx.find(n);
      return it == ifx.end() ? 0u : it->second;
    };
    in.attach = false;
    auto rep = apply(dirs.paths, in);
    if (!rep) return fail(std::move(rep.error()).wrap("test"));
  }
  if (auto st = tracer->refresh(&p); !st) return fail(std::move(st.error()).wrap("test"));

  json results = json::array();
  size_t passed = 0;
  for (const auto& e : ex) {
    json r{{"name", e.name},
           {"origin", e.origin},
           {"expect", e.allow ? "allow" : "deny"},
           {"rule_expected", e.rule ? json(*e.rule) : json(nullptr)}};
    auto t = tracer->trace(e.req);
    if (!t) {
      r["pass"] = false;
      r["got"] = nullptr;
      r["message"] = t.error().str();
      results.push_back(r);
      continue;
    }
    const json* h = deciding_hook(*t);
    std::string got = (*t)["verdict"];
    json rule = h && !(*h)["rule"].is_null() ? (*h)["rule"]["name"] : json(nullptr);
    r["got"] = got;
    r["rule"] = rule;
    r["reason"] = h ? (*h)["reason"] : json(nullptr);
    r["hook"] = h ? (*h)["hook"] : json(nullptr);
    bool verdict_ok = got == (e.allow ? "allow" : "deny");
    bool rule_ok = !e.rule || (rule.is_string() && rule.get<std::string>() == *e.rule);
    r["pass"] = verdict_ok && rule_ok;
    std::string by = h ? std::string((*h)["reason"]) + " at " + std::string((*h)["hook"]) +
                             (rule.is_string() ? ", rule " + rule.get<std::string>() : "")
                       : "no hook";
    if (!verdict_ok)
      r["message"] =
          "expected " + std::string(e.allow ? "allow" : "deny") + ", got " + got + " (" + by + ")";
    else if (!rule_ok)
      r["message"] = "expected rule " + *e.rule + ", decided by " +
                     (rule.is_string() ? rule.get<std::string>() : std::string("no rule")) + " (" +
                     by + ")";
    else
      r["message"] = got + " (" + by + ")";
    r["trace"] = *t;
    passed += r["pass"].get<bool>();
    results.push_back(r);
  }
  return json{{"ok", passed == ex.size()},
              {"passed", passed},
              {"failed", ex.size() - passed},
              {"results", results}};
}

std::string format_test_results(const json& r) {
  std::ostringstream o;
  for (const auto& x : r["results"]) {
    bool pass = x["pass"].get<bool>();
    o << (pass ? "PASS  " : "FAIL  ") << x["name"].get<std::string>() << ": "
      << x["message"].get<std::string>();
    if (!pass) o << "\n      at " << x["origin"].get<std::string>();
    o << "\n";
  }
  o << r["passed"] << " passed, " << r["failed"] << " failed\n";
  return o.str();
}

}  // namespace zw::engine
