// The plan: desired state built exactly as apply builds it, compared with
// the state file and the live maps; conntrack walked and re-judged.
#include "engine/plan.h"

#include <arpa/inet.h>
#include <net/if.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "datapath/maps.h"
#include "engine/desired.h"
#include "engine/inspect.h"
#include "util/clock.h"
#include "zonewall/abi/zonewall.h"

namespace zw::engine {

namespace dp = zw::datapath;
using nlohmann::json;

namespace {

uint64_t timeout_ns(uint8_t proto) {
  switch (proto) {
    case 6:
      return ZW_CT_TIMEOUT_TCP_NS;
    case 17:
      return ZW_CT_TIMEOUT_UDP_NS;
    case 1:
    case 58:
      return ZW_CT_TIMEOUT_ICMP_NS;
    default:
      return ZW_CT_TIMEOUT_OTHER_NS;
  }
}

std::string proto_str(uint8_t p) {
  switch (p) {
    case 6:
      return "tcp";
    case 17:
      return "udp";
    case 1:
      return "icmp";
    case 58:
      return "icmpv6";
    case 132:
      return "sctp";
  }
  return std::to_string(p);
}

net::Addr addr_of(const uint8_t* b) {
  net::Addr a;
  std::memcpy(a.bytes.data(), b, 16);
  return a;
}

// The VM interfaces as last applied, as an inventory (no libvirt zone tags:
// the state does not keep them).
inventory::Inventory inventory_from_state(const State& s) {
  inventory::Inventory inv;
  for (const auto& e : s.endpoints) {
    inventory::Endpoint ep;
    ep.vm_name = e.vm_name;
    ep.vm_uuid = e.vm_uuid;
    ep.ifname = e.ifname;
    ep.mac = net::parse_mac(e.mac);
    for (const auto& a : e.addrs)
      if (auto x = net::parse_addr(a)) ep.addrs.push_back(*x);
    if (!e.attach.empty()) ep.attach = e.attach;
    ep.source = "state: " + e.vm_name + " (" + e.ifname + ")";
    inv.endpoints.push_back(std::move(ep));
  }
  return inv;
}

std::string rule_name(uint32_t id, const std::map<uint32_t, std::string>& names) {
  if (id == ZW_RULE_DEFAULT_INTRA) return "default:intra_zone";
  if (id == ZW_RULE_DEFAULT_INTER) return "default:inter_zone";
  if (id == ZW_RULE_NONE) return "";
  auto it = names.find(id);
  return it == names.end() ? "rule#" + std::to_string(id) : it->second;
}

std::string action_str(policy::Action a) { return a == policy::Action::kAllow ? "allow" : "deny"; }

// What the live maps answer, as zw_addr_of and zw_judge in bpf/lib/policy.h
// do (without the zone-pair summary, which only skips lookups that miss): a flow the live policy
// already denies (re-judged on its next packet) is not one the new policy cuts.
uint16_t live_zone_of(const dp::Maps& m, uint32_t gen, const net::Addr& a) {
  zw_addr_info info{};
  if (dp::lookup_addr(m.addrs.get(), gen, a.bytes.data(), &info) ||
      dp::lookup_cidr(m.cidrs.get(), gen, a.bytes.data(), &info))
    return info.zone;
  return ZW_ZONE_WORLD;
}

zw_verdict live_judge(const dp::Maps& m, uint32_t gen, uint16_t sz, uint16_t dz, uint8_t proto,
                      uint16_t port) {
  zw_policy_key k{};
  zw_verdict v{};
  auto hit = [&](uint16_t s, uint16_t d, uint16_t pr, uint8_t kind, uint16_t pt) {
    k.src_zone = s;
    k.dst_zone = d;
    k.proto = pr;
    k.kind = kind;
    k.port = pt;
    return dp::lookup_policy(m.policy.get(), gen, k, &v);
  };
  bool ported = proto == 6 || proto == 17 || proto == 132 || proto == 1 || proto == 58;
  if (ported && (hit(sz, dz, proto, ZW_KIND_PORT, port) ||
                 hit(sz, dz, proto, ZW_KIND_BLOCK, port >> ZW_BLOCK_SHIFT)))
    return v;
  if (hit(sz, dz, proto, ZW_KIND_PROTO, 0) || hit(sz, dz, ZW_PROTO_ANY, ZW_KIND_PROTO, 0)) return v;
  // The defaults live in the config, per generation parity.
  zw_config cfg{};
  if (!dp::map_lookup(m.config.get(), uint32_t{0}, &cfg)) return zw_verdict{};  // deny
  return cfg.dflt[gen & 1][sz == dz ? 0 : 1];
}

}  // namespace

model::World desired_world(const policy::Policy& p, const Desired& d) {
  model::World w;
  w.policy = &p;
  for (const auto& de : d.endpoints) {
    model::Endpoint e{.ifname = de.ep.ifname, .zone = de.zone, .mac = de.ep.mac};
    for (const auto& a : de.ep.addrs) e.addrs.push_back(model::Ip::from(a));
    for (const auto& a : de.ep.allowed) e.allowed.push_back(model::Ip::from(a));
    w.endpoints.push_back(std::move(e));
  }
  return w;
}

FlowJudgement judge_flow(const model::World& w, const net::Addr& src, const net::Addr& dst,
                         uint8_t proto, uint16_t port) {
  FlowJudgement j;
  j.src_zone = model::zone_of(w, model::Ip::from(src));
  j.dst_zone = model::zone_of(w, model::Ip::from(dst));
  j.answer = model::decide(*w.policy, j.src_zone, j.dst_zone, proto, port);
  return j;
}

json diff_rules(const std::vector<RuleInfo>& before, const std::vector<RuleInfo>& after) {
  std::map<std::string, const RuleInfo*> b, a;
  for (const auto& r : before) b[r.name] = &r;
  for (const auto& r : after) a[r.name] = &r;
  // First-match order of the rules present in both.
  std::vector<std::string> order_b, order_a;
  for (const auto& r : before)
    if (a.count(r.name)) order_b.push_back(r.name);
  for (const auto& r : after)
    if (b.count(r.name)) order_a.push_back(r.name);
  auto pos = [](const std::vector<RuleInfo>& v, const std::string& n) {
    for (size_t i = 0; i < v.size(); ++i)
      if (v[i].name == n) return i + 1;
    return size_t{0};
  };
  auto rule_json = [](const RuleInfo& r) {
    return json{{"name", r.name}, {"action", r.action}, {"match", r.summary}};
  };
  json added = json::array(), removed = json::array(), changed = json::array();
  for (const auto& r : after)
    if (!b.count(r.name)) added.push_back(rule_json(r));
  for (const auto& r : before)
    if (!a.count(r.name)) removed.push_back(rule_json(r));
  for (size_t i = 0; i < order_a.size(); ++i) {
    const std::string& n = order_a[i];
    const RuleInfo& ob = *b[n];
    const RuleInfo& oa = *a[n];
    json c{{"name", n}};
    if (ob.summary != oa.summary) c["match"] = {{"from", ob.summary}, {"to", oa.summary}};
    if (ob.action != oa.action) c["action"] = {{"from", ob.action}, {"to", oa.action}};
    auto it = std::find(order_b.begin(), order_b.end(), n);
    if (static_cast<size_t>(it - order_b.begin()) != i)
      c["position"] = {{"from", pos(before, n)}, {"to", pos(after, n)}};
    if (c.size() > 1) changed.push_back(c);
  }
  return {{"added", added}, {"removed", removed}, {"changed", changed}};
}

json diff_endpoints(const std::vector<EndpointState>& before,
                    const std::vector<EndpointState>& after) {
  std::map<std::string, const EndpointState*> b, a;
  for (const auto& e : before) b[e.key] = &e;
  for (const auto& e : after) a[e.key] = &e;
  auto ep_json = [](const EndpointState& e) {
    return json{{"vm", e.vm_name}, {"ifname", e.ifname}, {"zone", e.zone}};
  };
  json added = json::array(), removed = json::array(), moves = json::array();
  for (const auto& e : after) {
    auto it = b.find(e.key);
    if (it == b.end())
      added.push_back(ep_json(e));
    else if (it->second->zone != e.zone)
      moves.push_back(
          {{"vm", e.vm_name}, {"ifname", e.ifname}, {"from", it->second->zone}, {"to", e.zone}});
  }
  for (const auto& e : before)
    if (!a.count(e.key)) removed.push_back(ep_json(e));
  return {{"added", added}, {"removed", removed}, {"zone_changes", moves}};
}

Result<json> plan(const Paths& paths, const policy::Policy& p, const std::string& policy_source,
                  const inventory::Inventory* inventory) {
  auto lv = open_live(paths);
  if (!lv) return fail(std::move(lv.error()));
  if (lv->state.generation == 0)
    return fail(Error(ErrorKind::kNotFound, "nothing applied under " + paths.pin_dir + " (no " +
                                                paths.state_file() + ")"));
  const State& live = lv->state;
  const dp::Maps* maps = &lv->maps;
  const uint32_t gen = lv->gen;

  inventory::Inventory from_state;
  if (!inventory) {
    from_state = inventory_from_state(live);
    inventory = &from_state;
  }
  // Interfaces resolve as apply would, but an interface of the live state
  // keeps its index (a plan may run in another namespace than the taps).
  std::unordered_map<std::string, uint32_t> live_ifindex;
  for (const auto& e : live.endpoints)
    if (e.ifindex) live_ifindex.emplace(e.ifname, e.ifindex);
  const net::InterfaceIndexes here;
  auto resolve = [&](const std::string& n) -> uint32_t {
    auto it = live_ifindex.find(n);
    return it != live_ifindex.end() ? it->second : here(n);
  };
  auto d = build_desired(p, *inventory, live, "tc", resolve);
  if (!d) return fail(std::move(d.error()).wrap("plan"));

  std::map<uint16_t, std::string> live_zone_name;
  for (const auto& [n, id] : live.zones) live_zone_name[id] = n;

  // ---- zones ----
  auto user_zone = [](const std::string& n) {
    return n != policy::kZoneWorld && n != policy::kZoneUnzoned;
  };
  std::map<std::string, std::set<std::string>> live_cidrs, new_cidrs, live_members, new_members;
  if (auto entries = dp::map_entries<zw_cidr_key, zw_addr_val>(maps->cidrs.get())) {
    for (const auto& [k, v] : *entries) {
      const zw_addr_info& info = v.slot[ZW_SLOT(gen)];
      // Only the generation's own prefixes (not answers inherited from a
      // covering one, nor the other generation's).
      if (info.zone == ZW_ZONE_NONE || (info.flags & ZW_AIF_INHERITED)) continue;
      net::Cidr c;
      c.addr = addr_of(k.addr);
      int bits = static_cast<int>(k.prefixlen);
      c.v4 = c.addr.is_v4() && bits >= 96;
      c.len = c.v4 ? bits - 96 : bits;
      live_cidrs[live_zone_name.count(info.zone) ? live_zone_name[info.zone] : "?"].insert(c.str());
    }
  }
  for (const auto& [n, z] : p.zones)
    for (const auto& c : z.cidrs) new_cidrs[n].insert(c.str());
  for (const auto& e : live.endpoints) live_members[e.zone].insert(e.vm_name);
  for (const auto& e : d->endpoints) new_members[e.zone].insert(e.ep.vm_name);
  json z_added = json::array(), z_removed = json::array(), z_changed = json::array();
  for (const auto& [n, z] : p.zones)
    if (!live.zones.count(n)) z_added.push_back(n);
  for (const auto& [n, id] : live.zones)
    if (user_zone(n) && !p.zones.count(n)) z_removed.push_back(n);
  auto set_diff = [](const std::set<std::string>& a, const std::set<std::string>& b) {
    json out = json::array();
    for (const auto& x : b)
      if (!a.count(x)) out.push_back("+" + x);
    for (const auto& x : a)
      if (!b.count(x)) out.push_back("-" + x);
    return out;
  };
  for (const auto& [n, z] : p.zones) {
    if (!live.zones.count(n)) continue;
    json c{{"name", n}};
    if (auto cd = set_diff(live_cidrs[n], new_cidrs[n]); !cd.empty()) c["cidrs"] = cd;
    if (auto md = set_diff(live_members[n], new_members[n]); !md.empty()) c["members"] = md;
    if (c.size() > 1) z_changed.push_back(c);
  }

  // ---- defaults ----
  json defaults = json::array();
  for (auto [k, a] : {std::pair{"intra_zone", p.defaults.intra_zone},
                      std::pair{"inter_zone", p.defaults.inter_zone}}) {
    auto it = live.defaults.find(k);
    std::string was = it == live.defaults.end() ? "?" : it->second;
    if (was != action_str(a))
      defaults.push_back({{"name", k}, {"from", was}, {"to", action_str(a)}});
  }

  // ---- endpoints ----
  std::vector<EndpointState> after;
  for (const auto& e : d->endpoints) {
    EndpointState es;
    es.key = endpoint_key(e.ep);
    es.vm_name = e.ep.vm_name;
    es.ifname = e.ep.ifname;
    es.zone = e.zone;
    after.push_back(std::move(es));
  }

  // ---- established flows the new policy cuts ----
  const model::World world = desired_world(p, *d);
  std::map<uint32_t, std::string> live_rule_names;
  for (const auto& r : live.rules) live_rule_names[r.id] = r.name;
  std::map<net::Addr, std::string> vm_of;
  for (const auto& e : live.endpoints)
    for (const auto& a : e.addrs)
      if (auto x = net::parse_addr(a)) vm_of[*x] = e.vm_name;
  for (const auto& e : d->endpoints)
    for (const auto& a : e.ep.addrs) vm_of.emplace(a, e.ep.vm_name);

  const uint64_t now = monotonic_ns();
  json cut = json::array();
  size_t tracked = 0;
  auto keys = dp::map_keys<zw_ct_key>(maps->ct.get());
  if (!keys) return fail(std::move(keys.error()).wrap("plan: walk zw_ct"));
  for (const auto& k : *keys) {
    zw_ct_entry e{};
    if (!dp::map_lookup(maps->ct.get(), k, &e)) continue;  // gone meanwhile
    if (now > e.last_seen_ns && now - e.last_seen_ns > timeout_ns(k.proto)) continue;
    net::Addr s = addr_of(k.saddr), t = addr_of(k.daddr);
    zw_verdict lv = live_judge(*maps, gen, live_zone_of(*maps, gen, s), live_zone_of(*maps, gen, t),
                               k.proto, e.policy_port);
    if (lv.action != ZW_ACT_ALLOW && !(lv.flags & ZW_VF_AUDIT)) continue;  // already dead
    ++tracked;
    const FlowJudgement v = judge_flow(world, s, t, k.proto, e.policy_port);
    if (!v.cut()) continue;
    auto side = [&](const net::Addr& a, uint16_t port, const std::string& z) {
      json j{{"address", a.str()}, {"zone", z}};
      if (k.proto == 6 || k.proto == 17 || k.proto == 132) j["port"] = ntohs(port);
      if (auto it = vm_of.find(a); it != vm_of.end()) j["vm"] = it->second;
      return j;
    };
    json f{{"proto", proto_str(k.proto)},
           {"src", side(s, k.sport, v.src_zone)},
           {"dst", side(t, k.dport, v.dst_zone)},
           {"allowed_by", rule_name(e.rule_id, live_rule_names)},
           {"cut_by", v.answer.rule.str()}};
    if (k.proto == 1 || k.proto == 58) f["icmp_type"] = e.policy_port;
    cut.push_back(f);
  }
  std::sort(cut.begin(), cut.end(),
            [](const json& a, const json& b) { return a.dump() < b.dump(); });

  json rules = diff_rules(live.rules, d->rules);
  json eps = diff_endpoints(live.endpoints, after);
  bool changes = !z_added.empty() || !z_removed.empty() || !z_changed.empty() ||
                 !defaults.empty() || !rules["added"].empty() || !rules["removed"].empty() ||
                 !rules["changed"].empty() || !eps["added"].empty() || !eps["removed"].empty() ||
                 !eps["zone_changes"].empty() || !cut.empty();
  return json{{"generation", gen},
              {"policy", policy_source},
              {"applied_policy", live.policy_source},
              {"changes", changes},
              {"zones", {{"added", z_added}, {"removed", z_removed}, {"changed", z_changed}}},
              {"defaults", defaults},
              {"rules", rules},
              {"endpoints", eps},
              {"flows_tracked", tracked},
              {"flows_cut", cut}};
}

std::string format_plan(const json& pl) {
  std::ostringstream o;
  o << "plan: " << pl["policy"].get<std::string>() << " against generation " << pl["generation"]
    << " (" << pl["applied_policy"].get<std::string>() << ")\n";
  auto list = [](const json& a) {
    std::string s;
    for (const auto& x : a) s += (s.empty() ? "" : " ") + x.get<std::string>();
    return s;
  };
  const json& z = pl["zones"];
  if (!z["added"].empty() || !z["removed"].empty() || !z["changed"].empty()) {
    o << "zones:\n";
    for (const auto& n : z["added"]) o << "  + " << n.get<std::string>() << "\n";
    for (const auto& n : z["removed"]) o << "  - " << n.get<std::string>() << "\n";
    for (const auto& c : z["changed"]) {
      o << "  ~ " << c["name"].get<std::string>() << ":";
      if (c.contains("cidrs")) o << " cidrs " << list(c["cidrs"]);
      if (c.contains("members"))
        o << (c.contains("cidrs") ? ";" : "") << " members " << list(c["members"]);
      o << "\n";
    }
  }
  if (!pl["defaults"].empty()) {
    o << "defaults:\n";
    for (const auto& d : pl["defaults"])
      o << "  ~ " << d["name"].get<std::string>() << ": " << d["from"].get<std::string>() << " -> "
        << d["to"].get<std::string>() << "\n";
  }
  const json& r = pl["rules"];
  if (!r["added"].empty() || !r["removed"].empty() || !r["changed"].empty()) {
    o << "rules:\n";
    for (const auto& x : r["added"])
      o << "  + " << x["name"].get<std::string>() << " (" << x["action"].get<std::string>()
        << "): " << x["match"].get<std::string>() << "\n";
    for (const auto& x : r["removed"])
      o << "  - " << x["name"].get<std::string>() << " (" << x["action"].get<std::string>()
        << "): " << x["match"].get<std::string>() << "\n";
    for (const auto& x : r["changed"]) {
      o << "  ~ " << x["name"].get<std::string>() << ":";
      std::string sep;
      for (const char* k : {"match", "action", "position"}) {
        if (!x.contains(k)) continue;
        const json& c = x[k];
        auto v = [](const json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); };
        o << sep << " " << k << " " << v(c["from"]) << " -> " << v(c["to"]);
        sep = ";";
      }
      o << "\n";
    }
  }
  const json& e = pl["endpoints"];
  if (!e["added"].empty() || !e["removed"].empty() || !e["zone_changes"].empty()) {
    o << "VM interfaces:\n";
    for (const auto& x : e["added"])
      o << "  + " << x["vm"].get<std::string>() << " (" << x["ifname"].get<std::string>()
        << ") in zone " << x["zone"].get<std::string>() << "\n";
    for (const auto& x : e["removed"])
      o << "  - " << x["vm"].get<std::string>() << " (" << x["ifname"].get<std::string>()
        << "), was in zone " << x["zone"].get<std::string>() << "\n";
    for (const auto& x : e["zone_changes"])
      o << "  ~ " << x["vm"].get<std::string>() << " (" << x["ifname"].get<std::string>()
        << "): zone " << x["from"].get<std::string>() << " -> " << x["to"].get<std::string>()
        << "\n";
  }
  const json& cut = pl["flows_cut"];
  o << "established flows cut: " << cut.size() << " of " << pl["flows_tracked"] << " tracked\n";
  for (const auto& f : cut) {
    auto side = [](const json& s) {
      std::string out = s["address"].get<std::string>();
      if (s.contains("port")) {
        bool v6 = out.find(':') != std::string::npos;
        out = (v6 ? "[" + out + "]" : out) + ":" + std::to_string(s["port"].get<int>());
      }
      out += " (";
      if (s.contains("vm")) out += s["vm"].get<std::string>() + ", ";
      return out + "zone " + s["zone"].get<std::string>() + ")";
    };
    o << "  " << f["proto"].get<std::string>() << " " << side(f["src"]) << " -> " << side(f["dst"]);
    if (f.contains("icmp_type")) o << " type " << f["icmp_type"];
    o << ": allowed by " << f["allowed_by"].get<std::string>() << ", cut by "
      << f["cut_by"].get<std::string>() << "\n";
  }
  o << (pl["changes"].get<bool>() ? "changes: apply would change the above\n"
                                  : "no changes: the live datapath already matches\n");
  return o.str();
}

}  // namespace zw::engine
