// Resolving trace endpoints against the state, building the frame, running
// the verdict variant on each hook, naming what decided.
#include "engine/trace.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "datapath/maps.h"
#include "datapath/test_run.h"
#include "engine/inspect.h"
#include "policy/json.h"
#include "zonewall/abi/zonewall.h"

namespace zw::engine {

namespace dp = zw::datapath;
using nlohmann::json;

namespace {

constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmp6 = 58, kSctp = 132;
constexpr uint16_t kDefaultSport = 40000;

void put16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(v >> 8);
  b.push_back(v & 0xff);
}

bool has_ports(uint8_t proto) { return proto == kTcp || proto == kUdp || proto == kSctp; }
bool is_icmp(uint8_t proto) { return proto == kIcmp || proto == kIcmp6; }

// One side of the packet: a VM interface (with the address it uses) or an
// address outside every VM.
struct Side {
  const EndpointState* ep = nullptr;
  net::Addr addr;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::vector<net::Addr> addrs_of(const EndpointState& e, int family) {
  std::vector<net::Addr> out;
  for (const auto& s : e.addrs)
    if (auto a = net::parse_addr(s); a && (family == 0 || a->is_v4() == (family == 4)))
      out.push_back(*a);
  return out;
}

// Candidates for a VM spelling, or the endpoint owning an address.
struct Spelled {
  std::vector<const EndpointState*> eps;
  std::optional<net::Addr> addr;
};

Result<Spelled> spell(const State& st, const std::string& s, const char* which) {
  Spelled out;
  if (auto a = net::parse_addr(s)) {
    out.addr = *a;
    for (const auto& e : st.endpoints)
      for (const auto& x : addrs_of(e, 0))
        if (x == *a) out.eps.push_back(&e);
    return out;
  }
  std::string ls = lower(s);
  for (const auto& e : st.endpoints)
    if (e.vm_name == s || (!e.vm_uuid.empty() && e.vm_uuid == ls) || e.ifname == s ||
        e.vm_name + "/" + e.ifname == s)
      out.eps.push_back(&e);
  if (out.eps.empty())
    return fail(Error(ErrorKind::kInvalid,
                      std::string("trace: --") + which + " '" + s +
                          "': no such VM, UUID, interface or address in the applied state "
                          "(zonewall status lists them)"));
  return out;
}

Result<Side> pick(const Spelled& sp, int family, const std::string& s, const char* which) {
  Side side;
  if (sp.addr) {
    side.addr = *sp.addr;
    if (!sp.eps.empty()) side.ep = sp.eps.front();
    return side;
  }
  std::vector<const EndpointState*> fit;
  for (const auto* e : sp.eps)
    if (!addrs_of(*e, family).empty()) fit.push_back(e);
  if (fit.empty())
    return fail(Error::invalid(std::string("trace: --") + which + " '" + s + "' has no IPv" +
                               std::to_string(family) + " address"));
  for (const auto* e : fit)
    if (e->vm_name != fit.front()->vm_name)
      return fail(Error::invalid(std::string("trace: --") + which + " '" + s +
                                 "' names interfaces of several VMs; give VM/INTERFACE"));
  side.ep = fit.front();
  side.addr = addrs_of(*side.ep, family).front();
  return side;
}

int family_of(const Spelled& a, const Spelled& b) {
  if (a.addr) return a.addr->is_v4() ? 4 : 6;
  if (b.addr) return b.addr->is_v4() ? 4 : 6;
  auto any = [](const Spelled& s, int f) {
    return std::any_of(s.eps.begin(), s.eps.end(),
                       [&](const EndpointState* e) { return !addrs_of(*e, f).empty(); });
  };
  return any(a, 4) && any(b, 4) ? 4 : 6;
}

const char* decided_by(int reason) {
  switch (reason) {
    case ZW_R_PASS_CT:
    case ZW_R_PASS_RELATED:
    case ZW_R_DROP_REVOKED:
      return "conntrack";
    case ZW_R_PASS_NEW:
    case ZW_R_PASS_AUDIT:
    case ZW_R_DROP_POLICY:
      return "policy";
    default:
      return "datapath";  // parsing, hygiene, protocol exceptions
  }
}

json side_json(const Side& s, const std::string& zone) {
  json j{{"address", s.addr.str()}, {"zone", zone}};
  if (s.ep) {
    j["vm"] = s.ep->vm_name;
    j["ifname"] = s.ep->ifname;
  }
  return j;
}

std::string flags_str(uint8_t f) {
  static const std::pair<uint8_t, const char*> names[] = {
      {0x02, "syn"}, {0x10, "ack"}, {0x01, "fin"}, {0x04, "rst"}, {0x08, "psh"}, {0x20, "urg"}};
  std::string out;
  for (auto [bit, n] : names)
    if (f & bit) out += (out.empty() ? "" : ",") + std::string(n);
  return out.empty() ? "none" : out;
}

}  // namespace

std::optional<uint8_t> parse_proto(std::string_view s) {
  if (s == "tcp") return kTcp;
  if (s == "udp") return kUdp;
  if (s == "icmp") return kIcmp;
  if (s == "icmpv6") return kIcmp6;
  if (s == "sctp") return kSctp;
  if (s.empty() || s.size() > 3 || !std::all_of(s.begin(), s.end(), ::isdigit)) return std::nullopt;
  int n = std::stoi(std::string(s));
  if (n > 255) return std::nullopt;
  return static_cast<uint8_t>(n);
}

std::string proto_name(uint8_t p) {
  switch (p) {
    case kTcp:
      return "tcp";
    case kUdp:
      return "udp";
    case kIcmp:
      return "icmp";
    case kIcmp6:
      return "icmpv6";
    case kSctp:
      return "sctp";
  }
  return std::to_string(p);
}

std::optional<uint8_t> parse_tcp_flags(std::string_view s) {
  uint8_t f = 0;
  while (!s.empty()) {
    auto comma = s.find(',');
    auto tok = s.substr(0, comma);
    if (tok == "syn")
      f |= 0x02;
    else if (tok == "ack")
      f |= 0x10;
    else if (tok == "fin")
      f |= 0x01;
    else if (tok == "rst")
      f |= 0x04;
    else if (tok == "psh")
      f |= 0x08;
    else if (tok == "urg")
      f |= 0x20;
    else if (tok != "none")
      return std::nullopt;
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return f;
}

std::vector<uint8_t> build_frame(const FrameSpec& f) {
  std::vector<uint8_t> l4;
  if (f.proto == kTcp) {
    put16(l4, f.sport);
    put16(l4, f.dport);
    l4.insert(l4.end(), {0, 0, 0, 1, 0, 0, 0, 0, 0x50, f.tcp_flags, 0xff, 0xff, 0, 0, 0, 0});
  } else if (f.proto == kUdp) {
    put16(l4, f.sport);
    put16(l4, f.dport);
    put16(l4, 12);
    put16(l4, 0);
    l4.insert(l4.end(), 4, 0);
  } else if (f.proto == kSctp) {
    put16(l4, f.sport);
    put16(l4, f.dport);
    l4.insert(l4.end(), 12, 0);  // verification tag, checksum, a chunk header
  } else if (is_icmp(f.proto)) {
    l4 = {static_cast<uint8_t>(f.dport), 0, 0, 0};
    put16(l4, f.sport);  // echo identifier
    put16(l4, 1);
  } else {
    l4.assign(8, 0);
  }
  std::vector<uint8_t> b(f.dst_mac.begin(), f.dst_mac.end());
  b.insert(b.end(), f.src_mac.begin(), f.src_mac.end());
  if (f.src.is_v4()) {
    put16(b, 0x0800);
    b.insert(b.end(), {0x45, 0});
    put16(b, static_cast<uint16_t>(20 + l4.size()));
    b.insert(b.end(), {0, 1, 0x40, 0, 64, f.proto, 0, 0});  // DF, TTL 64
    b.insert(b.end(), f.src.bytes.begin() + 12, f.src.bytes.end());
    b.insert(b.end(), f.dst.bytes.begin() + 12, f.dst.bytes.end());
  } else {
    put16(b, 0x86dd);
    b.insert(b.end(), {0x60, 0, 0, 0});
    put16(b, static_cast<uint16_t>(l4.size()));
    b.push_back(f.proto);
    b.push_back(64);
    b.insert(b.end(), f.src.bytes.begin(), f.src.bytes.end());
    b.insert(b.end(), f.dst.bytes.begin(), f.dst.bytes.end());
  }
  b.insert(b.end(), l4.begin(), l4.end());
  return b;
}

Result<Tracer> Tracer::open(const Paths& paths, bool create_maps) {
  auto obj = dp::Object::load(
      paths.pin_dir,
      {.run_mode = ZW_RUN_DRY | ZW_RUN_VERDICT, .pin_progs = false, .create_maps = create_maps});
  if (!obj) {
    if (obj.error().kind() == ErrorKind::kNotFound)
      return fail(Error(ErrorKind::kNotFound, "nothing applied under " + paths.pin_dir));
    return fail(std::move(obj.error()).wrap("load the dry-run/verdict program variant"));
  }
  return Tracer(paths, std::move(*obj));
}

Status Tracer::refresh(const policy::Policy* policy) {
  auto st = read_state(paths_);
  if (!st) return fail(std::move(st.error()));
  if (!*st)
    return fail(Error(ErrorKind::kNotFound,
                      "no state under " + paths_.state_dir + " (nothing applied here?)"));
  state_ = std::move(**st);
  auto maps = obj_.maps();
  if (!maps) return fail(std::move(maps.error()));
  auto cfg = dp::ConfigView::map(maps->config.get());
  if (!cfg) return fail(std::move(cfg.error()));
  gen_ = cfg->active_gen();
  origins_.clear();
  std::optional<policy::Policy> loaded;
  if (!policy && !state_.policy_source.empty()) {
    // Origins as the policy reads now (it may have been edited since).
    if (auto p = policy::load(state_.policy_source)) loaded.emplace(std::move(*p));
    policy = loaded ? &*loaded : nullptr;
  }
  if (policy)
    for (const auto& r : policy->rules) origins_[r.name] = r.origin.str();
  return {};
}

Result<json> Tracer::trace(const TraceRequest& r) const {
  auto from_sp = spell(state_, r.from, "from");
  if (!from_sp) return fail(std::move(from_sp.error()));
  auto to_sp = spell(state_, r.to, "to");
  if (!to_sp) return fail(std::move(to_sp.error()));
  int family = r.family            ? r.family
               : r.proto == kIcmp6 ? 6
               : r.proto == kIcmp  ? 4
                                   : family_of(*from_sp, *to_sp);
  auto from = pick(*from_sp, family, r.from, "from");
  if (!from) return fail(std::move(from.error()));
  auto to = pick(*to_sp, family, r.to, "to");
  if (!to) return fail(std::move(to.error()));
  if (from->addr.is_v4() != to->addr.is_v4() || from->addr.is_v4() != (family == 4))
    return fail(Error::invalid("trace: --from " + from->addr.str() + " and --to " + to->addr.str() +
                               " are not both IPv" + std::to_string(family)));
  if (!from->ep && !to->ep)
    return fail(Error::invalid("trace: neither --from nor --to is a VM: no hook would see it"));
  if ((r.proto == kIcmp && family == 6) || (r.proto == kIcmp6 && family == 4))
    return fail(Error::invalid("trace: " + proto_name(r.proto) + " over IPv" +
                               std::to_string(family) + " (use " +
                               (family == 6 ? "icmpv6" : "icmp") + ")"));
  if (has_ports(r.proto) && !r.port)
    return fail(Error::invalid("trace: " + proto_name(r.proto) + " needs --port"));

  FrameSpec f;
  f.src_mac = {0x02, 0, 0, 0, 0, 0x01};  // an outside sender: a router's MAC
  f.dst_mac = {0x02, 0, 0, 0, 0, 0x02};
  if (from->ep)
    if (auto m = net::parse_mac(from->ep->mac)) f.src_mac = *m;
  if (to->ep)
    if (auto m = net::parse_mac(to->ep->mac)) f.dst_mac = *m;
  f.src = from->addr;
  f.dst = to->addr;
  f.proto = r.proto;
  f.sport = r.sport.value_or(kDefaultSport);
  f.dport = r.port.value_or(0);
  if (is_icmp(r.proto)) f.dport = r.icmp_type.value_or(r.proto == kIcmp ? 8 : 128);
  f.tcp_flags = r.tcp_flags;
  auto frame = build_frame(f);

  std::map<uint16_t, std::string> zone_names;
  for (const auto& [n, id] : state_.zones) zone_names[id] = n;
  auto maps = obj_.maps();
  if (!maps) return fail(std::move(maps.error()));
  auto zone_of = [&](const net::Addr& a) -> std::string {
    zw_addr_info info{};
    uint16_t z = ZW_ZONE_WORLD;
    if (dp::lookup_addr(maps->addrs.get(), gen_, a.bytes.data(), &info) ||
        dp::lookup_cidr(maps->cidrs.get(), gen_, a.bytes.data(), &info))
      z = info.zone;
    auto it = zone_names.find(z);
    return it == zone_names.end() ? "zone#" + std::to_string(z) : it->second;
  };
  auto rule_json = [&](uint32_t id) -> json {
    if (id == ZW_RULE_NONE) return nullptr;
    if (id == ZW_RULE_DEFAULT_INTRA || id == ZW_RULE_DEFAULT_INTER) {
      const char* k = id == ZW_RULE_DEFAULT_INTRA ? "intra_zone" : "inter_zone";
      auto it = state_.defaults.find(k);
      return {{"id", id},
              {"name", std::string("default:") + k},
              {"action", it == state_.defaults.end() ? "?" : it->second},
              {"summary", "no rule matched: defaults." + std::string(k)}};
    }
    for (const auto& ri : state_.rules)
      if (ri.id == id) {
        json j{{"id", id}, {"name", ri.name}, {"action", ri.action}, {"summary", ri.summary}};
        if (auto it = origins_.find(ri.name); it != origins_.end()) j["origin"] = it->second;
        return j;
      }
    return {{"id", id}, {"name", "rule#" + std::to_string(id)}};
  };

  std::string src_zone = from->ep ? from->ep->zone : zone_of(from->addr);
  std::string dst_zone = to->ep ? to->ep->zone : zone_of(to->addr);
  json hooks = json::array();
  bool all_pass = true;
  auto run_hook = [&](const char* hook, const EndpointState& ep, bool from_vm) -> Status {
    json h{{"hook", hook}, {"vm", ep.vm_name}, {"ifname", ep.ifname}};
    if (ep.ifindex == 0) {
      h["verdict"] = "not_enforced";
      h["note"] = "interface absent at apply: no program on it";
      hooks.push_back(h);
      return {};
    }
    dp::Prog prog = !from_vm             ? dp::Prog::kToVmTc
                    : ep.attach == "xdp" ? dp::Prog::kFromVmXdp
                                         : dp::Prog::kFromVmTc;
    auto v = dp::test_run_verdict(obj_.prog_fd(prog), prog, ep.ifindex, frame);
    if (!v && prog == dp::Prog::kFromVmXdp) {
      // XDP needs the interface in this namespace; tc runs the same code.
      h["note"] = "XDP program not runnable here (" + v.error().str() +
                  "); ran the same code as zw_from_vm_tc";
      prog = dp::Prog::kFromVmTc;
      v = dp::test_run_verdict(obj_.prog_fd(prog), prog, ep.ifindex, frame);
    }
    if (!v) return fail(std::move(v.error()).wrap(std::string("trace: ") + hook));
    h["program"] = dp::prog_name(prog);
    h["verdict"] = v->pass() ? "pass" : "drop";
    h["reason"] = reason_name(v->reason);
    h["decided_by"] = decided_by(v->reason);
    h["rule"] = rule_json(v->rule_id);
    // The zones the datapath judged: the hook's VM by its endpoint, the
    // other side by its address.
    h["src_zone"] = from_vm ? ep.zone : zone_of(from->addr);
    h["dst_zone"] = from_vm ? zone_of(to->addr) : ep.zone;
    all_pass = all_pass && v->pass();
    hooks.push_back(h);
    return {};
  };
  if (from->ep)
    if (auto st = run_hook("from-vm", *from->ep, true); !st) return fail(std::move(st.error()));
  if (to->ep && all_pass)
    if (auto st = run_hook("to-vm", *to->ep, false); !st) return fail(std::move(st.error()));

  json pkt{{"family", family}, {"proto", proto_name(r.proto)}};
  if (has_ports(r.proto)) {
    pkt["sport"] = f.sport;
    pkt["dport"] = f.dport;
  }
  if (r.proto == kTcp) pkt["flags"] = flags_str(f.tcp_flags);
  if (is_icmp(r.proto)) {
    pkt["icmp_type"] = f.dport;
    pkt["icmp_id"] = f.sport;
  }
  return json{{"from", side_json(*from, src_zone)},
              {"to", side_json(*to, dst_zone)},
              {"packet", pkt},
              {"generation", gen_},
              {"hooks", hooks},
              {"verdict", all_pass ? "allow" : "deny"},
              {"conntrack", "dry run: sees the live conntrack table, creates and changes nothing"}};
}

std::string format_trace(const json& t) {
  std::ostringstream o;
  auto side = [](const json& s) {
    std::string out = s.contains("vm")
                          ? s["vm"].get<std::string>() + " (" + s["ifname"].get<std::string>() +
                                ", " + s["address"].get<std::string>() + ")"
                          : s["address"].get<std::string>();
    return out + " [zone " + s["zone"].get<std::string>() + "]";
  };
  const json& p = t["packet"];
  o << side(t["from"]) << " -> " << side(t["to"]) << "\n";
  o << "  " << p["proto"].get<std::string>() << " IPv" << p["family"].get<int>();
  if (p.contains("dport")) o << " " << p["sport"] << " -> " << p["dport"];
  if (p.contains("flags")) o << " [" << p["flags"].get<std::string>() << "]";
  if (p.contains("icmp_type")) o << " type " << p["icmp_type"];
  o << ", generation " << t["generation"] << "\n";
  for (const auto& h : t["hooks"]) {
    o << "  " << h["hook"].get<std::string>() << " on " << h["ifname"].get<std::string>() << " ("
      << h["vm"].get<std::string>() << "): ";
    if (h["verdict"] == "not_enforced") {
      o << "not enforced: " << h["note"].get<std::string>() << "\n";
      continue;
    }
    o << (h["verdict"] == "pass" ? "PASS" : "DROP") << "  " << h["reason"].get<std::string>()
      << "  by " << h["decided_by"].get<std::string>() << "\n";
    o << "    zones " << h["src_zone"].get<std::string>() << " -> "
      << h["dst_zone"].get<std::string>() << "\n";
    if (!h["rule"].is_null()) {
      const json& r = h["rule"];
      o << "    rule " << r["name"].get<std::string>();
      if (r.contains("action")) o << " (" << r["action"].get<std::string>() << ")";
      if (r.contains("summary")) o << ": " << r["summary"].get<std::string>();
      if (r.contains("origin")) o << "  [" << r["origin"].get<std::string>() << "]";
      o << "\n";
    }
    if (h["decided_by"] == "conntrack")
      o << "    an existing tracked flow decided this, not the policy for a new one\n";
    if (h.contains("note")) o << "    note: " << h["note"].get<std::string>() << "\n";
  }
  o << "verdict: " << (t["verdict"] == "allow" ? "ALLOW" : "DENY")
    << "  (dry run against live maps and conntrack; nothing changed)\n";
  return o.str();
}

}  // namespace zw::engine
