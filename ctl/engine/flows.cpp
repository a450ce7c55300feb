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
#include "util/text.h"

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
  // Floor division: a time before 1970 (a clock set back) keeps a positive
  // fraction instead of printing ".-00001".
  int64_t sec_part = real_ns / 1000000000ll, ns_part = real_ns % 1000000000ll;
  if (ns_part < 0) {
    ns_part += 1000000000ll;
    --sec_part;
  }
  time_t sec = static_cast<time_t>(sec_part);
  tm t{};
  gmtime_r(&sec, &t);
  char buf[64];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  std::snprintf(buf + n, sizeof buf - n, ".%06lldZ", static_cast<long long>(ns_part / 1000));
  return buf;
}

using text::printable;

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
  if (it != n.zones.end()) return it->second;
  // Built-in even when nothing is named (no state.json yet).
  if (id == ZW_ZONE_WORLD) return "world";
  if (id == ZW_ZONE_UNZONED) return "unzoned";
  return "zone#" + std::to_string(id);
}

std::string rule_name(const FlowNames& n, uint32_t id) {
  auto it = n.rules.find(id);
  if (it != n.rules.end()) return it->second;
  if (id == ZW_RULE_DEFAULT_INTRA) return "default:intra_zone";
  if (id == ZW_RULE_DEFAULT_INTER) return "default:inter_zone";
  return "rule#" + std::to_string(id);
}

}  // namespace

json event_json(const zw_event& e, const FlowNames& n, int64_t mono_to_real_ns) {
  const bool pass = e.reason < ZW_R_FIRST_DROP;
  const bool from_vm = e.hook == 0;
  json j;
  j["time"] = iso_time(static_cast<int64_t>(e.ts_ns) + mono_to_real_ns);
  j["verdict"] = e.reason == ZW_R_PASS_AUDIT ? "audit" : pass ? "allow" : "deny";
  j["reason"] = reason_name(e.reason);
  j["rule"] = e.rule_id != ZW_RULE_NONE ? json(rule_name(n, e.rule_id)) : json(nullptr);
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
    // An interface name is any bytes but '/', ':' and white space: not
    // necessarily UTF-8, which the JSON encoder would throw on.
    j["ifname"] = if_indextoname(e.ifindex, name) ? json(printable(name, true)) : json(nullptr);
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
  // Tolerant: an event from another version may lack a field ("-" then).
  auto str = [](const json& o, const char* k) {
    if (!o.is_object() || !o.contains(k)) return std::string("-");
    const json& v = o[k];
    if (v.is_string()) return printable(v.get<std::string>(), false);
    if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
    return std::string("-");
  };
  auto side = [&](const json& s) {
    if (!s.is_object()) return std::string("-");
    std::string a = str(s, "addr");
    bool port = s.contains("port") && s["port"].is_number_unsigned();
    if (a.find(':') != std::string::npos && port) a = "[" + a + "]";
    if (port) a += ":" + std::to_string(s["port"].get<uint64_t>());
    return a + " (" + str(s, "vm") + "/" + str(s, "zone") + ")";
  };
  std::string proto = str(ev, "proto");
  if (ev.contains("icmp_type") && ev["icmp_type"].is_number_unsigned())
    proto += " type " + std::to_string(ev["icmp_type"].get<uint64_t>());
  std::string verdict = str(ev, "verdict");
  if (verdict.size() < 5) verdict.resize(5, ' ');
  static const json kNone;
  auto field = [](const json& o, const char* k) -> const json& {
    return o.is_object() && o.contains(k) ? o[k] : kNone;
  };
  return str(ev, "time") + " " + verdict + " " + side(field(ev, "src")) + " -> " +
         side(field(ev, "dst")) + " " + proto + " rule=" + str(ev, "rule") +
         " reason=" + str(ev, "reason") + " on=" + str(ev, "ifname") + "/" + str(ev, "hook");
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
  // Never throws: a name that is not UTF-8 must not end the reader thread
  // (and with it the daemon).
  std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
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
