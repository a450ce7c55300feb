// The policy compiler (first-match rules -> disjoint PORT/BLOCK/PROTO/DEFAULT
// entries), the reference evaluator it is tested against, and a simulation
// of the datapath's lookup order over compiled entries.
#include "policy/compile.h"

#include <algorithm>
#include <compare>
#include <cstring>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>

namespace zw::policy {

namespace {

constexpr uint8_t kTcp = 6, kUdp = 17, kSctp = 132, kIcmp = 1, kIcmp6 = 58;

bool port_proto(uint16_t p) { return p == kTcp || p == kUdp || p == kSctp; }
bool icmp_proto(uint16_t p) { return p == kIcmp || p == kIcmp6; }

// Largest port/type value the datapath can look up for this protocol; 0 for
// protocols judged without a port.
uint32_t domain_max(uint8_t p) { return port_proto(p) ? 65535 : icmp_proto(p) ? 255 : 0; }

// A verdict compared by (rule_id, action, flags), as the datapath returns it.
struct Verd {
  uint32_t id = 0;
  uint8_t action = 0;
  uint8_t flags = 0;
  auto operator<=>(const Verd&) const = default;
  zw_verdict raw() const {
    zw_verdict v{};
    v.rule_id = id;
    v.action = action;
    v.flags = flags;
    return v;
  }
};

uint8_t act(Action a) { return a == Action::kAllow ? ZW_ACT_ALLOW : ZW_ACT_DENY; }

// What the two zones of a pair ask for: audit mode, and which decisions
// become events. Default-constructed: two zones without settings.
struct PairMode {
  bool audit = false;
  bool log_deny = true;
  bool log_new = false;
  auto operator<=>(const PairMode&) const = default;
};

PairMode zone_mode(const Zone* z) {
  if (!z) return {};
  return {z->mode == ZoneMode::kAudit, z->log_deny, z->log_new_flows};
}

// Either zone in audit audits; either zone silencing denies silences them;
// either zone asking for new flows gets them.
PairMode pair_mode(const PairMode& s, const PairMode& d) {
  return {s.audit || d.audit, s.log_deny && d.log_deny, s.log_new || d.log_new};
}

Verd rule_verdict(uint32_t id, Action a, bool rule_audit, std::optional<bool> rule_log,
                  const PairMode& m) {
  uint8_t flags = (a == Action::kDeny && (rule_audit || m.audit)) ? ZW_VF_AUDIT : 0;
  if (rule_log.value_or(a == Action::kDeny ? m.log_deny : m.log_new)) flags |= ZW_VF_LOG;
  return {id, act(a), flags};
}

Verd default_verdict(const Defaults& d, bool intra, const PairMode& m) {
  Action a = intra ? d.intra_zone : d.inter_zone;
  uint32_t id = intra ? ZW_RULE_DEFAULT_INTRA : ZW_RULE_DEFAULT_INTER;
  return rule_verdict(id, a, false, std::nullopt, m);
}

// A rule resolved to zone indexes and port/type intervals.
struct CRule {
  bool from_any = false;
  bool to_any = false;
  std::vector<uint32_t> from;  // zone indexes
  std::vector<uint32_t> to;
  std::optional<uint8_t> proto;
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // empty: the whole domain
  uint32_t id = 0;
  Action action = Action::kDeny;
  bool audit = false;
  std::optional<bool> log;
};

// One entry of an encoding, without zones: stamped onto every pair using it.
struct Enc {
  uint8_t kind;
  uint16_t proto;
  uint16_t port;
  Verd v;
};

struct Interval {
  uint32_t lo, hi;
  Verd v;
};

struct VecHash {
  std::size_t operator()(const std::vector<uint32_t>& v) const {
    std::size_t h = 1469598103934665603ull;
    for (auto x : v) h = (h ^ x) * 1099511628211ull;
    return h ^ v.size();
  }
};

// Most common verdict by count; ties go to `prefer`, then the smallest.
Verd majority(const std::vector<std::pair<Verd, uint32_t>>& counts, const Verd& prefer) {
  Verd best = counts.front().first;
  uint32_t best_n = 0;
  for (const auto& [v, n] : counts) {
    bool better = n > best_n || (n == best_n &&
                                 ((v == prefer && best != prefer) || (best != prefer && v < best)));
    if (better) {
      best = v;
      best_n = n;
    }
  }
  return best;
}

void add_count(std::vector<std::pair<Verd, uint32_t>>& counts, const Verd& v, uint32_t n) {
  for (auto& [cv, cn] : counts)
    if (cv == v) {
      cn += n;
      return;
    }
  counts.emplace_back(v, n);
}

class Compiler {
 public:
  Compiler(const Policy& p, const Ids& ids) : p_(p) {
    for (const auto& [name, id] : ids.zone) {
      zone_index_[name] = static_cast<uint32_t>(zone_ids_.size());
      zone_ids_.push_back(id);
      auto z = p.zones.find(name);
      zone_mode_.push_back(zone_mode(z != p.zones.end() ? &z->second : nullptr));
    }
    for (const auto& r : p.rules) rules_.push_back(resolve(r, ids));
  }

  Result<Compiled> run() {
    const uint32_t nz = static_cast<uint32_t>(zone_ids_.size());
    std::vector<std::vector<uint32_t>> ex_from(nz);
    std::vector<uint32_t> star_from;
    for (uint32_t r = 0; r < rules_.size(); ++r) {
      if (rules_[r].from_any) {
        star_from.push_back(r);
        continue;
      }
      for (auto s : rules_[r].from)
        if (ex_from[s].empty() || ex_from[s].back() != r) ex_from[s].push_back(r);
    }

    struct Pair {
      uint32_t s, d, enc;
    };
    std::vector<Pair> pairs;
    std::size_t total = 2;  // the DEFAULT entries
    std::vector<std::vector<uint32_t>> per_d(nz);
    std::vector<uint32_t> touched;
    for (uint32_t s = 0; s < nz; ++s) {
      std::vector<uint32_t> rs = merged(star_from, ex_from[s]);
      std::vector<uint32_t> star_to;
      touched.clear();
      for (auto r : rs) {
        if (rules_[r].to_any) {
          star_to.push_back(r);
          continue;
        }
        for (auto d : rules_[r].to) {
          if (per_d[d].empty()) touched.push_back(d);
          if (per_d[d].empty() || per_d[d].back() != r) per_d[d].push_back(r);
        }
      }
      uint32_t star_list = intern(truncated(star_to));
      for (uint32_t d = 0; d < nz; ++d) {
        uint32_t list = per_d[d].empty() ? star_list : intern(truncated(merged(star_to, per_d[d])));
        uint32_t enc = encoding(list, s == d, pair_mode(zone_mode_[s], zone_mode_[d]));
        if (encodings_[enc].empty()) continue;
        pairs.push_back({s, d, enc});
        total += encodings_[enc].size();
      }
      for (auto d : touched) per_d[d].clear();
    }
    if (total > ZW_MAX_POLICY)
      return fail(Error::invalid("policy compiles to " + std::to_string(total) +
                                 " map entries, more than the datapath holds (" +
                                 std::to_string(ZW_MAX_POLICY) + ")"));

    Compiled c;
    c.entries.reserve(total);
    for (uint16_t port : {0, 1}) {
      PolicyEntry e{};
      e.key.kind = ZW_KIND_DEFAULT;
      e.key.port = port;
      bool intra = port == 0;
      e.value = default_verdict(p_.defaults, intra, PairMode{}).raw();
      c.entries.push_back(e);
    }
    for (const auto& pr : pairs) {
      for (const auto& en : encodings_[pr.enc]) {
        PolicyEntry e{};
        e.key.src_zone = zone_ids_[pr.s];
        e.key.dst_zone = zone_ids_[pr.d];
        e.key.proto = en.proto;
        e.key.kind = en.kind;
        e.key.port = en.port;
        e.value = en.v.raw();
        c.entries.push_back(e);
      }
    }
    std::sort(c.entries.begin(), c.entries.end(), [](const PolicyEntry& a, const PolicyEntry& b) {
      return std::memcmp(&a.key, &b.key, sizeof a.key) < 0;
    });
    return c;
  }

 private:
  CRule resolve(const Rule& r, const Ids& ids) {
    CRule c;
    auto zones = [&](const std::vector<std::string>& names, bool& any, std::vector<uint32_t>& out) {
      for (const auto& n : names) {
        if (n == kZoneAny) {
          any = true;
        } else if (auto it = zone_index_.find(n); it != zone_index_.end()) {
          out.push_back(it->second);
        }
      }
      std::sort(out.begin(), out.end());
      out.erase(std::unique(out.begin(), out.end()), out.end());
    };
    zones(r.from, c.from_any, c.from);
    zones(r.to, c.to_any, c.to);
    c.proto = r.proto;
    for (const auto& pr : r.ports) c.ranges.emplace_back(pr.lo, pr.hi);
    for (auto t : r.icmp_types) c.ranges.emplace_back(t, t);
    auto it = ids.rule.find(r.name);
    c.id = it != ids.rule.end() ? it->second : 0;
    c.action = r.action;
    c.audit = r.audit;
    c.log = r.log;
    return c;
  }

  static std::vector<uint32_t> merged(const std::vector<uint32_t>& a,
                                      const std::vector<uint32_t>& b) {
    std::vector<uint32_t> out;
    out.reserve(a.size() + b.size());
    std::merge(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
    return out;
  }

  // Rules after the first protocol-less one can never decide anything.
  std::vector<uint32_t> truncated(std::vector<uint32_t> list) const {
    for (std::size_t i = 0; i < list.size(); ++i)
      if (!rules_[list[i]].proto) {
        list.resize(i + 1);
        break;
      }
    return list;
  }

  uint32_t intern(std::vector<uint32_t> list) {
    auto [it, fresh] =
        lists_.try_emplace(std::move(list), static_cast<uint32_t>(list_store_.size()));
    if (fresh) list_store_.push_back(&it->first);
    return it->second;
  }

  uint32_t encoding(uint32_t list, bool intra, const PairMode& mode) {
    auto key = std::make_tuple(list, intra, mode);
    if (auto it = enc_cache_.find(key); it != enc_cache_.end()) return it->second;
    uint32_t id = static_cast<uint32_t>(encodings_.size());
    encodings_.push_back(encode(*list_store_[list], intra, mode));
    enc_cache_.emplace(key, id);
    return id;
  }

  // The entries one (src, dst) pair needs, given the rules that apply to it
  // in order (already cut after the first protocol-less rule).
  std::vector<Enc> encode(const std::vector<uint32_t>& list, bool intra,
                          const PairMode& mode) const {
    std::vector<Enc> out;
    const Verd base = default_verdict(p_.defaults, intra, PairMode{});  // the DEFAULT entry
    Verd fany = default_verdict(p_.defaults, intra, mode);
    std::set<uint8_t> protos;
    for (auto r : list) {
      const CRule& cr = rules_[r];
      if (cr.proto) {
        protos.insert(*cr.proto);
      } else {
        fany = rule_verdict(cr.id, cr.action, cr.audit, cr.log, mode);
        break;  // rules after it never decide
      }
    }
    if (fany != base) out.push_back({ZW_KIND_PROTO, ZW_PROTO_ANY, 0, fany});
    for (auto proto : protos) encode_proto(list, proto, mode, fany, out);
    return out;
  }

  // f_P as merged intervals over [0, domain_max(P)]: the first applicable
  // rule covering each point, `fallthrough` where none does.
  std::vector<Interval> intervals(const std::vector<uint32_t>& list, uint8_t proto,
                                  const PairMode& mode, const Verd& fallthrough) const {
    const uint32_t max = domain_max(proto);
    struct Event {
      uint32_t at;
      bool add;
      uint32_t pos;
    };
    std::vector<Event> events;
    for (uint32_t pos = 0; pos < list.size(); ++pos) {
      const CRule& cr = rules_[list[pos]];
      if (cr.proto && *cr.proto != proto) continue;
      if (cr.ranges.empty()) {
        events.push_back({0, true, pos});
        continue;
      }
      for (const auto& [lo, hi] : cr.ranges) {
        if (lo > max) continue;
        events.push_back({lo, true, pos});
        if (std::min(hi, max) + 1 <= max) events.push_back({std::min(hi, max) + 1, false, pos});
      }
    }
    std::sort(events.begin(), events.end(),
              [](const Event& a, const Event& b) { return a.at < b.at; });
    std::multiset<uint32_t> active;
    std::vector<Interval> out;
    auto verdict = [&]() {
      if (active.empty()) return fallthrough;
      const CRule& cr = rules_[list[*active.begin()]];
      return rule_verdict(cr.id, cr.action, cr.audit, cr.log, mode);
    };
    uint32_t at = 0;
    std::size_t i = 0;
    while (at <= max) {
      while (i < events.size() && events[i].at == at) {
        if (events[i].add) {
          active.insert(events[i].pos);
        } else {
          active.erase(active.find(events[i].pos));
        }
        ++i;
      }
      uint32_t next = i < events.size() ? events[i].at : max + 1;
      Verd v = verdict();
      if (!out.empty() && out.back().v == v) {
        out.back().hi = next - 1;
      } else {
        out.push_back({at, next - 1, v});
      }
      at = next;
    }
    return out;
  }

  void encode_proto(const std::vector<uint32_t>& list, uint8_t proto, const PairMode& mode,
                    const Verd& fallthrough, std::vector<Enc>& out) const {
    std::vector<Interval> f = intervals(list, proto, mode, fallthrough);
    std::vector<std::pair<Verd, uint32_t>> counts;
    for (const auto& iv : f) add_count(counts, iv.v, iv.hi - iv.lo + 1);
    const Verd bg = majority(counts, fallthrough);
    if (bg != fallthrough) out.push_back({ZW_KIND_PROTO, proto, 0, bg});
    if (!port_proto(proto) && !icmp_proto(proto)) return;  // no PORT/BLOCK lookups

    const uint32_t max = domain_max(proto);
    std::size_t i = 0;
    for (uint32_t b = 0; (b << ZW_BLOCK_SHIFT) <= max; ++b) {
      const uint32_t lo = b << ZW_BLOCK_SHIFT;
      const uint32_t hi = std::min(lo + (1u << ZW_BLOCK_SHIFT) - 1, max);
      while (f[i].hi < lo) ++i;
      if (f[i].hi >= hi) {  // uniform block
        if (f[i].v != bg) out.push_back({ZW_KIND_BLOCK, proto, static_cast<uint16_t>(b), f[i].v});
        continue;
      }
      counts.clear();
      for (std::size_t j = i; j < f.size() && f[j].lo <= hi; ++j)
        add_count(counts, f[j].v, std::min(f[j].hi, hi) - std::max(f[j].lo, lo) + 1);
      const Verd m = majority(counts, bg);
      if (m != bg) out.push_back({ZW_KIND_BLOCK, proto, static_cast<uint16_t>(b), m});
      for (std::size_t j = i; j < f.size() && f[j].lo <= hi; ++j) {
        if (f[j].v == m) continue;
        for (uint32_t x = std::max(f[j].lo, lo); x <= std::min(f[j].hi, hi); ++x)
          out.push_back({ZW_KIND_PORT, proto, static_cast<uint16_t>(x), f[j].v});
      }
    }
  }

  const Policy& p_;
  std::map<std::string, uint32_t> zone_index_;
  std::vector<uint16_t> zone_ids_;
  std::vector<PairMode> zone_mode_;
  std::vector<CRule> rules_;
  std::unordered_map<std::vector<uint32_t>, uint32_t, VecHash> lists_;
  std::vector<const std::vector<uint32_t>*> list_store_;
  std::map<std::tuple<uint32_t, bool, PairMode>, uint32_t> enc_cache_;
  std::vector<std::vector<Enc>> encodings_;
};

bool key_less(const zw_policy_key& a, const zw_policy_key& b) {
  return std::memcmp(&a, &b, sizeof a) < 0;
}

}  // namespace

Ids assign_zone_ids(const Policy& p, const std::map<std::string, uint16_t>& previous) {
  Ids ids;
  ids.zone[kZoneWorld] = ZW_ZONE_WORLD;
  ids.zone[kZoneUnzoned] = ZW_ZONE_UNZONED;
  std::set<uint16_t> used;
  for (const auto& [name, _] : p.zones) {
    auto it = previous.find(name);
    if (it == previous.end() || it->second < ZW_ZONE_FIRST_USER || it->second >= ZW_MAX_ZONES ||
        !used.insert(it->second).second)
      continue;
    ids.zone[name] = it->second;
  }
  uint16_t next = ZW_ZONE_FIRST_USER;
  for (const auto& [name, _] : p.zones) {
    if (ids.zone.count(name)) continue;
    while (used.count(next)) ++next;
    ids.zone[name] = next;
    used.insert(next);
  }
  return ids;
}

Result<std::map<std::string, uint32_t>> assign_rule_ids(
    const Policy& p, const std::map<std::string, uint32_t>& previous) {
  std::map<std::string, uint32_t> out;
  std::set<uint32_t> used;
  for (const auto& r : p.rules) {
    auto it = previous.find(r.name);
    if (it == previous.end() || it->second < ZW_RULE_FIRST_USER || it->second >= ZW_MAX_RULES ||
        used.count(it->second))
      continue;
    out[r.name] = it->second;
    used.insert(it->second);
  }
  uint32_t next = ZW_RULE_FIRST_USER;
  for (const auto& r : p.rules) {
    if (out.count(r.name)) continue;
    while (used.count(next)) ++next;
    if (next >= ZW_MAX_RULES)
      return fail(Error::invalid("policy: " + std::to_string(p.rules.size()) +
                                 " rules, rule ids would reach ZW_MAX_RULES (" +
                                 std::to_string(ZW_MAX_RULES) + ")"));
    out[r.name] = next;
    used.insert(next);
  }
  return out;
}

Result<Compiled> compile(const Policy& p, const Ids& ids) { return Compiler(p, ids).run(); }

zw_verdict evaluate(const Policy& p, const Ids& ids, uint16_t src_zone, uint16_t dst_zone,
                    uint8_t proto, uint16_t port) {
  std::string_view src, dst;
  for (const auto& [name, id] : ids.zone) {
    if (id == src_zone) src = name;
    if (id == dst_zone) dst = name;
  }
  auto mode_of = [&](std::string_view n) {
    auto it = p.zones.find(std::string(n));
    return zone_mode(it != p.zones.end() ? &it->second : nullptr);
  };
  const PairMode mode = pair_mode(mode_of(src), mode_of(dst));
  auto in = [](const std::vector<std::string>& zones, std::string_view z) {
    for (const auto& n : zones)
      if (n == kZoneAny || (!z.empty() && n == z)) return true;
    return false;
  };
  for (const auto& r : p.rules) {
    if (!in(r.from, src) || !in(r.to, dst)) continue;
    if (r.proto && *r.proto != proto) continue;
    if (!r.ports.empty()) {
      if (!port_proto(proto)) continue;
      bool hit = std::any_of(r.ports.begin(), r.ports.end(),
                             [&](const PortRange& pr) { return port >= pr.lo && port <= pr.hi; });
      if (!hit) continue;
    }
    if (!r.icmp_types.empty()) {
      if (!icmp_proto(proto)) continue;
      if (std::find(r.icmp_types.begin(), r.icmp_types.end(), port) == r.icmp_types.end()) continue;
    }
    auto it = ids.rule.find(r.name);
    return rule_verdict(it != ids.rule.end() ? it->second : 0, r.action, r.audit, r.log, mode)
        .raw();
  }
  return default_verdict(p.defaults, src_zone == dst_zone, mode).raw();
}

zw_verdict lookup(const Compiled& c, uint16_t src_zone, uint16_t dst_zone, uint8_t proto,
                  uint16_t port) {
  auto find = [&](uint16_t s, uint16_t d, uint16_t pr, uint8_t kind,
                  uint16_t pt) -> const zw_verdict* {
    zw_policy_key k{};
    k.src_zone = s;
    k.dst_zone = d;
    k.proto = pr;
    k.kind = kind;
    k.port = pt;
    auto it = std::lower_bound(
        c.entries.begin(), c.entries.end(), k,
        [](const PolicyEntry& e, const zw_policy_key& key) { return key_less(e.key, key); });
    if (it != c.entries.end() && std::memcmp(&it->key, &k, sizeof k) == 0) return &it->value;
    return nullptr;
  };
  if (port_proto(proto) || icmp_proto(proto)) {
    if (auto v = find(src_zone, dst_zone, proto, ZW_KIND_PORT, port)) return *v;
    if (auto v = find(src_zone, dst_zone, proto, ZW_KIND_BLOCK,
                      static_cast<uint16_t>(port >> ZW_BLOCK_SHIFT)))
      return *v;
  }
  if (auto v = find(src_zone, dst_zone, proto, ZW_KIND_PROTO, 0)) return *v;
  if (auto v = find(src_zone, dst_zone, ZW_PROTO_ANY, ZW_KIND_PROTO, 0)) return *v;
  if (auto v = find(0, 0, 0, ZW_KIND_DEFAULT, src_zone == dst_zone ? 0 : 1)) return *v;
  zw_verdict none{};
  none.action = ZW_ACT_DENY;
  return none;
}

}  // namespace zw::policy
