// state.json (de)serialisation and the pin-directory lock.
#include "engine/state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace zw::engine {

using nlohmann::json;

Paths make_paths(const std::string& pin_dir, const std::string& state_dir) {
  Paths p{pin_dir, state_dir};
  while (p.pin_dir.size() > 1 && p.pin_dir.back() == '/') p.pin_dir.pop_back();
  if (p.state_dir.empty()) {
    if (p.pin_dir == "/sys/fs/bpf/zonewall")
      p.state_dir = "/run/zonewall";
    else
      p.state_dir = "/run/zonewall-" + std::filesystem::path(p.pin_dir).filename().string();
  }
  return p;
}

namespace {
json to_json(const State& s) {
  json eps = json::array();
  for (const auto& e : s.endpoints) {
    eps.push_back({{"key", e.key},
                   {"vm", e.vm_name},
                   {"uuid", e.vm_uuid},
                   {"ifname", e.ifname},
                   {"ifindex", e.ifindex},
                   {"attach", e.attach},
                   {"id", e.id},
                   {"zone", e.zone},
                   {"mac", e.mac},
                   {"addrs", e.addrs},
                   {"allowed", e.allowed},
                   {"created_clsact", e.created_clsact}});
  }
  json rules = json::array();
  for (const auto& r : s.rules)
    rules.push_back({{"id", r.id}, {"name", r.name}, {"action", r.action}, {"summary", r.summary}});
  return {{"version", 1},
          {"generation", s.generation},
          {"policy_source", s.policy_source},
          {"policy_files", s.policy_files},
          {"inventory_source", s.inventory_source},
          {"applied_at", s.applied_at},
          {"zones", s.zones},
          {"rule_ids", s.rule_ids},
          {"rules", rules},
          {"defaults", s.defaults},
          {"endpoints", eps}};
}

State from_json(const json& j) {
  State s;
  s.generation = j.at("generation").get<uint32_t>();
  s.policy_source = j.value("policy_source", "");
  s.policy_files = j.value("policy_files", std::vector<std::string>{});
  s.inventory_source = j.value("inventory_source", "");
  s.applied_at = j.value("applied_at", "");
  s.zones = j.value("zones", std::map<std::string, uint16_t>{});
  s.rule_ids = j.value("rule_ids", std::map<std::string, uint32_t>{});
  s.defaults = j.value("defaults", std::map<std::string, std::string>{});
  for (const auto& r : j.value("rules", json::array()))
    s.rules.push_back({r.at("id").get<uint32_t>(), r.at("name").get<std::string>(),
                       r.value("action", ""), r.value("summary", "")});
  for (const auto& e : j.value("endpoints", json::array())) {
    EndpointState es;
    es.key = e.value("key", "");
    es.vm_name = e.value("vm", "");
    es.vm_uuid = e.value("uuid", "");
    es.ifname = e.value("ifname", "");
    es.ifindex = e.value("ifindex", 0u);
    es.attach = e.value("attach", "tc");
    es.id = e.value("id", 0u);
    es.zone = e.value("zone", "");
    es.mac = e.value("mac", "");
    es.addrs = e.value("addrs", std::vector<std::string>{});
    es.allowed = e.value("allowed", std::vector<std::string>{});
    es.created_clsact = e.value("created_clsact", false);
    s.endpoints.push_back(std::move(es));
  }
  return s;
}

// The state file is written on every apply (10,000 endpoints: megabytes):
// streamed straight to text, not through a JSON document. One object per
// line inside the arrays, keys sorted as the document would have them.
class Writer {
 public:
  std::string out;

  void str(std::string_view v) {
    out += '"';
    for (unsigned char c : v) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c < 0x20) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04x", c);
        out += buf;
      } else {
        out += static_cast<char>(c);
      }
    }
    out += '"';
  }
  void key(std::string_view k) {
    sep();
    str(k);
    out += ':';
    first_ = true;
  }
  void num(uint64_t v) {
    sep();
    out += std::to_string(v);
  }
  void boolean(bool v) {
    sep();
    out += v ? "true" : "false";
  }
  void string(std::string_view v) {
    sep();
    str(v);
  }
  void open(char c) {
    sep();
    out += c;
    first_ = true;
  }
  void close(char c) {
    out += c;
    first_ = false;
  }
  void newline() { out += '\n'; }
  template <typename T>
  void field(std::string_view k, const T& v) {
    key(k);
    value(v);
  }
  void value(const std::string& v) { string(v); }
  void value(uint32_t v) { num(v); }
  void value(uint16_t v) { num(v); }
  void value(bool v) { boolean(v); }
  void value(const std::vector<std::string>& v) {
    open('[');
    for (const auto& x : v) string(x);
    close(']');
  }
  template <typename V>
  void value(const std::map<std::string, V>& m) {
    open('{');
    for (const auto& [k, v] : m) field(k, v);
    close('}');
  }

 private:
  void sep() {
    if (!first_) out += ',';
    first_ = false;
  }
  bool first_ = true;
};

}  // namespace

std::string state_to_json(const State& s, int indent) {
  if (indent >= 0) return to_json(s).dump(indent);
  Writer w;
  w.open('{');
  w.field("applied_at", s.applied_at);
  w.field("defaults", s.defaults);
  w.key("endpoints");
  w.open('[');
  for (const auto& e : s.endpoints) {
    w.newline();
    w.open('{');
    w.field("addrs", e.addrs);
    w.field("allowed", e.allowed);
    w.field("attach", e.attach);
    w.field("created_clsact", e.created_clsact);
    w.field("id", e.id);
    w.field("ifindex", e.ifindex);
    w.field("ifname", e.ifname);
    w.field("key", e.key);
    w.field("mac", e.mac);
    w.field("uuid", e.vm_uuid);
    w.field("vm", e.vm_name);
    w.field("zone", e.zone);
    w.close('}');
  }
  w.close(']');
  w.newline();
  w.field("generation", s.generation);
  w.field("inventory_source", s.inventory_source);
  w.field("policy_files", s.policy_files);
  w.field("policy_source", s.policy_source);
  w.key("rule_ids");
  w.value(s.rule_ids);
  w.newline();
  w.key("rules");
  w.open('[');
  for (const auto& r : s.rules) {
    w.newline();
    w.open('{');
    w.field("action", r.action);
    w.field("id", r.id);
    w.field("name", r.name);
    w.field("summary", r.summary);
    w.close('}');
  }
  w.close(']');
  w.newline();
  w.field("version", uint32_t{1});
  w.field("zones", s.zones);
  w.close('}');
  return std::move(w.out);
}

Result<std::optional<State>> read_state(const Paths& paths) {
  std::ifstream in(paths.state_file());
  if (!in) {
    if (errno == ENOENT) return std::optional<State>{};
    return fail(Error::sys("read " + paths.state_file()));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return std::optional<State>(from_json(json::parse(ss.str())));
  } catch (const json::exception& e) {
    return fail(Error(ErrorKind::kSystem, paths.state_file() + ": corrupt state: " + e.what()));
  }
}

Status write_state(const Paths& paths, const State& s) {
  std::error_code ec;
  std::filesystem::create_directories(paths.state_dir, ec);
  if (ec) return fail(Error(ErrorKind::kSystem, "create " + paths.state_dir, ec.value()));
  std::string tmp = paths.state_file() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << state_to_json(s, -1) << '\n';
    out.flush();
    if (!out) return fail(Error::sys("write " + tmp));
  }
  if (::rename(tmp.c_str(), paths.state_file().c_str()) != 0)
    return fail(Error::sys("rename " + tmp));
  return {};
}

Result<PinLock> PinLock::acquire(const std::string& pin_dir) {
  std::error_code ec;
  std::filesystem::create_directories(pin_dir, ec);
  if (ec) return fail(Error(ErrorKind::kSystem, "create " + pin_dir, ec.value()));
  UniqueFd fd(::open(pin_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return fail(Error::sys("open " + pin_dir));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return fail(Error(ErrorKind::kBusy, "another zonewall command holds the lock on " + pin_dir));
    return fail(Error::sys("flock " + pin_dir));
  }
  return PinLock(std::move(fd));
}

}  // namespace zw::engine
