// Event naming and formatting, and the daemon's event collector.
#include "engine/flows.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <cstdio>
#include <cstring>
#include <memory>

#include "datapath/events.h"
#include "engine/inspect.h"
#include "util/log.h"

namespace zw::engine {

using nlohmann::json;

FlowNames flow_names(const State& s) {
  FlowNames n;
  for (const auto& e : s.endpoints) {
    n.endpoints[e.id] = {e.vm_name, e.ifname, e.zone};
    for (const auto& a : e.addrs) {
      // Addresses are stored with or without a prefix length.
      auto addr = net::parse_addr(a.substr(0, a.find('/')));
      if (addr) n.vm_of_addr[*addr] = e.vm_name;
    }
  }
  n.zones[ZW_ZONE_WORLD] = "world";
  n.zones[ZW_ZONE_UNZONED] = "unzoned";
  for (const auto& [name, id] : s.zones) n.zones[id] = name;
  n.rules[ZW_RULE_DEFAULT_INTRA] = "default:intra_zone";
  n.rules[ZW_RULE_DEFAULT_INTER] = "default:inter_zone";
  for (const auto& r : s.rules) n.rules[r.id] = r.name;
  return n;
}

int64_t monotonic_to_realtime_ns() {
  timespec m{}, r{};
  clock_gettime(CLOCK_MONOTONIC, &m);
  clock_gettime(CLOCK_REALTIME, &r);
  return (int64_t(r.tv_sec) - m.tv_sec) * 1000000000ll + (int64_t(r.tv_nsec) - m.tv_nsec);
}

namespace {

std::string iso_time(int64_t real_ns) {
  time_t sec = static_cast<time_t>(real_ns / 1000000000ll);
  tm t{};
  gmtime_r(&sec, &t);
  char buf[64];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  std::snprintf(buf + n, sizeof buf - n, ".%06lldZ",
                static_cast<long long>((real_ns % 1000000000ll) / 1000));
  return buf;
}

const char* proto_name(uint8_t p) {
  switch (p) {
    case 1:
      return "icmp";
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 58:
      return "icmpv6";
    case 132:
      return "sctp";
  }
  return nullptr;
}

bool has_ports(uint8_t p) { return p == 6 || p == 17 || p == 132; }

std::string zone_name(const FlowNames& n, uint16_t id) {
  if (id == ZW_ZONE_NONE) return "";
  auto it = n.zones.find(id);
  return it != n.zones.end() ? it->second : "zone#" + std::to_string(id);
}

}  // namespace

json event_json(const zw_event& e, const FlowNames& n, int64_t mono_to_real_ns) {
  const bool pass = e.reason < ZW_R_FIRST_DROP;
  const bool from_vm = e.hook == 0;
  json j;
  j["time"] = iso_time(static_cast<int64_t>(e.ts_ns) + mono_to_real_ns);
  j["verdict"] = e.reason == ZW_R_PASS_AUDIT ? "audit" : pass ? "allow" : "deny";
  j["reason"] = reason_name(e.reason);
  if (e.rule_id != ZW_RULE_NONE) {
    auto it = n.rules.find(e.rule_id);
    j["rule"] = it != n.rules.end() ? it->second : "rule#" + std::to_string(e.rule_id);
  } else {
    j["rule"] = nullptr;
  }
  j["hook"] = from_vm ? "from_vm" : "to_vm";
  j["generation"] = e.gen;
  j["len"] = e.len;
  std::string hook_vm, hook_zone;
  if (auto it = n.endpoints.find(e.ep_id); it != n.endpoints.end()) {
    hook_vm = it->second.vm;
    hook_zone = it->second.zone;
    j["vm"] = hook_vm;
    j["ifname"] = it->second.ifname;
  } else {
    j["vm"] = nullptr;
    char name[IF_NAMESIZE] = {};
    j["ifname"] = if_indextoname(e.ifindex, name) ? json(name) : json(nullptr);
  }
  j["ifindex"] = e.ifindex;
  auto side = [&](const uint8_t* a, uint16_t port_net, uint16_t zone, bool is_hook_vm) {
    net::Addr addr;
    std::memcpy(addr.bytes.data(), a, 16);
    json s{{"addr", addr.str()}};
    if (has_ports(e.proto) && !(e.flags & ZW_EVF_ARP)) s["port"] = ntohs(port_net);
    auto v = n.vm_of_addr.find(addr);
    if (v != n.vm_of_addr.end())
      s["vm"] = v->second;
    else if (is_hook_vm && !hook_vm.empty())
      s["vm"] = hook_vm;
    else
      s["vm"] = nullptr;
    std::string z = zone_name(n, zone);
    if (z.empty() && is_hook_vm) z = hook_zone;
    s["zone"] = z.empty() ? json(nullptr) : json(z);
    return s;
  };
  if (e.flags & ZW_EVF_ARP) {
    j["proto"] = "arp";
    j["src"] = side(e.saddr, 0, e.src_zone, from_vm);
    j["dst"] = nullptr;
    return j;
  }
  const char* pn = proto_name(e.proto);
  j["proto"] = pn ? json(pn) : json(e.proto);
  j["src"] = side(e.saddr, e.sport, e.src_zone, from_vm);
  j["dst"] = side(e.daddr, e.dport, e.dst_zone, !from_vm);
  if (e.proto == 1 || e.proto == 58) j["icmp_type"] = e.icmp_type;
  return j;
}

std::string event_text(const json& ev) {
  auto str = [](const json& v) { return v.is_string() ? v.get<std::string>() : std::string("-"); };
  auto side = [&](const json& s) {
    if (!s.is_object()) return std::string("-");
    std::string a = s["addr"].get<std::string>();
    if (a.find(':') != std::string::npos && s.contains("port")) a = "[" + a + "]";
    if (s.contains("port")) a += ":" + std::to_string(s["port"].get<int>());
    std::string who = str(s["vm"]);
    std::string zone = str(s["zone"]);
    return a + " (" + who + "/" + zone + ")";
  };
  std::string proto = ev["proto"].is_string() ? ev["proto"].get<std::string>()
                                              : std::to_string(ev["proto"].get<int>());
  if (ev.contains("icmp_type")) proto += " type " + std::to_string(ev["icmp_type"].get<int>());
  char buf[1024];
  std::snprintf(buf, sizeof buf, "%s %-5s %s -> %s %s rule=%s reason=%s on=%s/%s",
                ev["time"].get<std::string>().c_str(), ev["verdict"].get<std::string>().c_str(),
                side(ev["src"]).c_str(), side(ev["dst"]).c_str(), proto.c_str(),
                str(ev["rule"]).c_str(), ev["reason"].get<std::string>().c_str(),
                str(ev["ifname"]).c_str(), ev["hook"].get<std::string>().c_str());
  return buf;
}

FlowCollector::FlowCollector(Options o) : o_(std::move(o)) {}

FlowCollector::~FlowCollector() { stop(); }

Status FlowCollector::start(int events_map_fd) {
  if (o_.flow_log == "stderr") {
    log_ = stderr;
  } else if (!o_.flow_log.empty()) {
    log_ = std::fopen(o_.flow_log.c_str(), "ae");
    if (!log_) return fail(Error::sys("open flow log " + o_.flow_log));
  }
  mono_to_real_ = monotonic_to_realtime_ns();
  refresh_names();
  auto reader =
      datapath::EventReader::open(events_map_fd, [this](const zw_event& e) { deliver(e); });
  if (!reader) return fail(std::move(reader.error()));
  thread_ = std::thread(
      [this, r = std::make_shared<datapath::EventReader>(std::move(*reader))] { loop(*r); });
  return {};
}

void FlowCollector::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (log_) {
    if (log_ != stderr) std::fclose(log_);
    log_ = nullptr;
  }
}

void FlowCollector::refresh_names() {
  struct stat st {};
  int64_t mtime = -1;
  if (::stat(o_.paths.state_file().c_str(), &st) == 0)
    mtime = int64_t(st.st_mtim.tv_sec) * 1000000000ll + st.st_mtim.tv_nsec;
  if (mtime == names_mtime_) return;
  auto s = read_state(o_.paths);
  if (!s) {
    log::warn("flows: cannot read state; events keep numeric ids", {{"error", s.error().str()}});
    return;
  }
  names_ = flow_names(s->value_or(State{}));
  names_mtime_ = mtime;
}

void FlowCollector::deliver(const zw_event& e) {
  ++received_;
  json j = event_json(e, names_, mono_to_real_);
  std::string line = j.dump() + "\n";
  if (log_) std::fputs(line.c_str(), log_);
  std::lock_guard lk(mu_);
  recent_.push_back(std::move(j));
  while (recent_.size() > o_.keep) recent_.pop_front();
  for (auto it = followers_.begin(); it != followers_.end();) {
    ssize_t w = ::send(it->get(), line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0 && errno != EAGAIN && errno != EINTR) {
      it = followers_.erase(it);  // hung up
      continue;
    }
    ++it;
  }
}

void FlowCollector::loop(datapath::EventReader& reader) {
  while (!stop_) {
    refresh_names();
    auto n = reader.poll(200);
    if (!n) {
      log::error("flows: reading events failed", {{"error", n.error().str()}});
      return;
    }
    if (*n > 0 && log_) std::fflush(log_);
  }
}

std::vector<json> FlowCollector::recent(size_t limit) const {
  std::lock_guard lk(mu_);
  size_t skip = recent_.size() > limit ? recent_.size() - limit : 0;
  return {recent_.begin() + static_cast<std::ptrdiff_t>(skip), recent_.end()};
}

void FlowCollector::follow(UniqueFd client) {
  std::lock_guard lk(mu_);
  followers_.push_back(std::move(client));
}

}  // namespace zw::engine
