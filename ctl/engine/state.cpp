// state.json (de)serialisation and the pin-directory lock.
#include "engine/state.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

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
}  // namespace

std::string state_to_json(const State& s, int indent) { return to_json(s).dump(indent); }

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
    out << state_to_json(s) << '\n';
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
