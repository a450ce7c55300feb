// Policy JSON v1: per-file parse and validation, then the merge of a
// directory's files and the checks that span files (names, CIDRs, UUIDs, refs).
#include "policy/json.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>
#include <system_error>

#include "util/json_doc.h"
#include "zonewall/abi/zonewall.h"

namespace zw::policy {

namespace {

namespace fs = std::filesystem;
using jsondoc::token;
using jsondoc::Walker;
using nlohmann::json;

struct Ref {
  std::string name;
  std::string pointer;
};

struct RawZone {
  Zone zone;
  std::vector<std::string> cidr_pointers;  // parallel to zone.cidrs
  std::vector<std::string> uuid_pointers;  // parallel to zone.uuids
};

struct RawRule {
  Rule rule;
  std::vector<Ref> from;
  std::vector<Ref> to;
};

// One file's content, kept even when parts are invalid so that the
// cross-file checks still see the zone names it defines.
struct Fragment {
  std::string file;
  bool parsed = false;
  std::vector<RawZone> zones;
  std::optional<Defaults> defaults;
  std::vector<RawRule> rules;
};

bool is_alnum_lower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_alnum_lower(c) || (c >= 'A' && c <= 'Z'); }

// [a-z0-9][a-z0-9_-]{0,62}
bool valid_zone_name(std::string_view s) {
  if (s.empty() || s.size() > 63 || !is_alnum_lower(s[0])) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_alnum_lower(c) || c == '_' || c == '-'; });
}

// [A-Za-z0-9][A-Za-z0-9_.-]{0,62}
bool valid_rule_name(std::string_view s) {
  if (s.empty() || s.size() > 63 || !is_alnum(s[0])) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_alnum(c) || c == '_' || c == '.' || c == '-'; });
}

bool is_builtin_zone(std::string_view s) {
  return s == kZoneWorld || s == kZoneUnzoned || s == kZoneAny;
}

bool is_port_proto(uint8_t p) { return p == 6 || p == 17 || p == 132; }
bool is_icmp_proto(uint8_t p) { return p == 1 || p == 58; }

// An integer JSON value in [lo, hi], or nullopt.
std::optional<int64_t> int_in(const json& v, int64_t lo, int64_t hi) {
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo)))
      return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) {
    auto i = v.get<int64_t>();
    if (i < lo || i > hi) return std::nullopt;
    return i;
  }
  return std::nullopt;
}

// "lo-hi" with 1 <= lo <= hi <= 65535, digits only.
std::optional<PortRange> parse_range(std::string_view s) {
  auto dash = s.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 >= s.size()) return std::nullopt;
  auto num = [](std::string_view t) -> std::optional<uint32_t> {
    if (t.empty() || t.size() > 5) return std::nullopt;
    uint32_t v = 0;
    for (char c : t) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + static_cast<uint32_t>(c - '0');
    }
    return v;
  };
  auto lo = num(s.substr(0, dash));
  auto hi = num(s.substr(dash + 1));
  if (!lo || !hi || *lo < 1 || *hi > 65535 || *lo > *hi) return std::nullopt;
  return PortRange{static_cast<uint16_t>(*lo), static_cast<uint16_t>(*hi)};
}

class FileParser {
 public:
  FileParser(Fragment& frag, std::vector<std::string>& errors) : f_(frag), w_(frag.file, errors) {}

  void document(const json& doc) {
    if (!w_.expect_object(doc, "")) return;
    w_.check_fields(doc, "", {"version", "description", "defaults", "zones", "rules"});
    if (!doc.contains("version")) {
      w_.error("/version", "required field missing (use \"version\": 1)");
    } else if (auto v = int_in(doc["version"], 1, 1); !v) {
      w_.error("/version", "unsupported version " + jsondoc::show(doc["version"]) +
                               " (this zonewall reads version 1)");
    }
    if (doc.contains("description")) w_.expect_string(doc["description"], "/description");
    if (doc.contains("defaults")) defaults(doc["defaults"]);
    if (doc.contains("zones")) zones(doc["zones"]);
    if (doc.contains("rules")) rules(doc["rules"]);
  }

 private:
  std::optional<Action> action(const json& v, const std::string& ptr) {
    if (v.is_string()) {
      const auto& s = v.get_ref<const std::string&>();
      if (s == "allow") return Action::kAllow;
      if (s == "deny") return Action::kDeny;
    }
    w_.error(ptr, "expected \"allow\" or \"deny\", got " + jsondoc::show(v));
    return std::nullopt;
  }

  void defaults(const json& v) {
    if (!w_.expect_object(v, "/defaults")) return;
    w_.check_fields(v, "/defaults", {"intra_zone", "inter_zone", "hygiene", "max_flows"});
    Defaults d;
    if (v.contains("intra_zone"))
      if (auto a = action(v["intra_zone"], "/defaults/intra_zone")) d.intra_zone = *a;
    if (v.contains("inter_zone"))
      if (auto a = action(v["inter_zone"], "/defaults/inter_zone")) d.inter_zone = *a;
    if (v.contains("hygiene")) d.hygiene = hygiene(v["hygiene"], "/defaults/hygiene").over({});
    if (v.contains("max_flows"))
      if (auto n = max_flows(v["max_flows"], "/defaults/max_flows")) d.max_flows = *n;
    f_.defaults = d;
  }

  // A non-empty array of strings; calls `each(string, pointer)` per item.
  template <typename F>
  bool string_list(const json& obj, const char* key, const std::string& zptr, F&& each) {
    if (!obj.contains(key)) return false;
    std::string ptr = zptr + "/" + key;
    const json& arr = obj[key];
    if (!w_.expect_array(arr, ptr)) return true;
    if (arr.empty()) w_.error(ptr, "must not be empty (leave the field out instead)");
    for (std::size_t i = 0; i < arr.size(); ++i) {
      std::string ip = ptr + "/" + std::to_string(i);
      if (!w_.expect_string(arr[i], ip)) continue;
      each(arr[i].get<std::string>(), ip);
    }
    return true;
  }

  void zones(const json& v) {
    if (!w_.expect_object(v, "/zones")) return;
    for (const auto& [name, zv] : v.items()) {
      std::string zptr = "/zones/" + token(name);
      bool keep = true;
      if (is_builtin_zone(name)) {
        w_.error(zptr, "'" + name + "' is a built-in zone and cannot be defined");
        keep = false;
      } else if (!valid_zone_name(name)) {
        w_.error(zptr, "'" + name +
                           "' is not a valid zone name (lower-case letters, digits, '_' and '-', "
                           "starting with a letter or digit, at most 63 characters)");
        keep = false;
      }
      RawZone rz;
      rz.zone.name = name;
      rz.zone.origin = {f_.file, zptr};
      if (w_.expect_object(zv, zptr)) zone_body(zv, zptr, rz);
      if (keep) f_.zones.push_back(std::move(rz));
    }
  }

  void zone_body(const json& zv, const std::string& zptr, RawZone& rz) {
    w_.check_fields(zv, zptr,
                    {"vms", "uuids", "cidrs", "mode", "hygiene", "max_flows", "log", "description"});
    Zone& z = rz.zone;
    bool has_vms = string_list(zv, "vms", zptr, [&](const std::string& s, const std::string& p) {
      if (s.empty()) {
        w_.error(p, "a VM name glob must not be empty");
        return;
      }
      z.vm_globs.push_back(s);
    });
    bool has_uuids =
        string_list(zv, "uuids", zptr, [&](const std::string& s, const std::string& p) {
          if (!jsondoc::is_uuid(s)) {
            w_.error(p, jsondoc::show(json(s)) + " is not a UUID (8-4-4-4-12 hexadecimal digits)");
            return;
          }
          z.uuids.push_back(jsondoc::lower(s));
          rz.uuid_pointers.push_back(p);
        });
    bool has_cidrs =
        string_list(zv, "cidrs", zptr, [&](const std::string& s, const std::string& p) {
          std::string why;
          auto c = net::parse_cidr(s, &why);
          if (!c) {
            w_.error(p, jsondoc::show(json(s)) + " is not a CIDR: " + why);
            return;
          }
          z.cidrs.push_back(*c);
          rz.cidr_pointers.push_back(p);
        });
    if (!has_vms && !has_uuids && !has_cidrs)
      w_.error(zptr, "a zone needs at least one of \"vms\", \"uuids\" or \"cidrs\"");
    if (has_cidrs && (has_vms || has_uuids))
      w_.error(zptr,
               "a zone holds either VMs (\"vms\", \"uuids\") or external addresses "
               "(\"cidrs\"), not both");
    if (zv.contains("mode")) {
      const json& m = zv["mode"];
      if (m == "enforce") {
        z.mode = ZoneMode::kEnforce;
      } else if (m == "audit") {
        z.mode = ZoneMode::kAudit;
      } else {
        w_.error(zptr + "/mode", "expected \"enforce\" or \"audit\", got " + jsondoc::show(m));
      }
    }
    if (zv.contains("hygiene")) {
      z.hygiene = hygiene(zv["hygiene"], zptr + "/hygiene");
      if (has_cidrs)
        w_.error(zptr + "/hygiene", "hygiene checks apply to VM zones, not to external addresses");
    }
    if (zv.contains("max_flows")) {
      z.max_flows = max_flows(zv["max_flows"], zptr + "/max_flows");
      if (has_cidrs)
        w_.error(zptr + "/max_flows",
                 "a conntrack limit applies to VM zones, not to external addresses");
    }
    if (zv.contains("description")) w_.expect_string(zv["description"], zptr + "/description");
    if (zv.contains("log")) zone_log(zv["log"], zptr + "/log", z);
  }

  // "log": {"deny": bool, "new_flows": bool}
  void zone_log(const json& v, const std::string& ptr, Zone& z) {
    if (!w_.expect_object(v, ptr)) return;
    w_.check_fields(v, ptr, {"deny", "new_flows"});
    if (v.contains("deny") && w_.expect_bool(v["deny"], ptr + "/deny"))
      z.log_deny = v["deny"].get<bool>();
    if (v.contains("new_flows") && w_.expect_bool(v["new_flows"], ptr + "/new_flows"))
      z.log_new_flows = v["new_flows"].get<bool>();
  }

  std::optional<uint32_t> max_flows(const json& v, const std::string& ptr) {
    if (v.is_number_integer() && v.get<int64_t>() >= 1 && v.get<int64_t>() <= kMaxFlowsCeiling)
      return static_cast<uint32_t>(v.get<int64_t>());
    w_.error(ptr, jsondoc::show(v) + " is not a flow count (1-" + std::to_string(kMaxFlowsCeiling) +
                      ", the conntrack table's size)");
    return std::nullopt;
  }

  HygieneOverride hygiene(const json& v, const std::string& ptr) {
    HygieneOverride h;
    if (!w_.expect_object(v, ptr)) return h;
    w_.check_fields(v, ptr, {"mac", "ip", "arp", "nd", "ra", "dhcp_server"});
    auto flag = [&](const char* key, std::optional<bool>& out) {
      if (v.contains(key) && w_.expect_bool(v[key], ptr + "/" + key)) out = v[key].get<bool>();
    };
    flag("mac", h.mac);
    flag("ip", h.ip);
    flag("arp", h.arp);
    flag("nd", h.nd);
    flag("ra", h.ra);
    flag("dhcp_server", h.dhcp_server);
    return h;
  }

  void rules(const json& v) {
    if (!w_.expect_array(v, "/rules")) return;
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::string rptr = "/rules/" + std::to_string(i);
      if (!w_.expect_object(v[i], rptr)) continue;
      rule(v[i], rptr);
    }
  }

  std::vector<Ref> zone_refs(const json& r, const char* key, const std::string& rptr) {
    std::vector<Ref> refs;
    std::string ptr = rptr + "/" + key;
    if (!r.contains(key)) {
      w_.error(ptr, "required field missing (a zone name, a list of them, or \"*\")");
      return refs;
    }
    const json& v = r[key];
    if (v.is_string()) {
      refs.push_back({v.get<std::string>(), ptr});
    } else if (v.is_array()) {
      if (v.empty()) w_.error(ptr, "must name at least one zone");
      for (std::size_t i = 0; i < v.size(); ++i) {
        std::string ip = ptr + "/" + std::to_string(i);
        if (w_.expect_string(v[i], ip)) refs.push_back({v[i].get<std::string>(), ip});
      }
      bool star =
          std::any_of(refs.begin(), refs.end(), [](const Ref& x) { return x.name == kZoneAny; });
      if (star && v.size() > 1) w_.error(ptr, "\"*\" means every zone and must stand alone");
    } else {
      w_.error(ptr, "expected a zone name or an array of zone names, got " + jsondoc::show(v));
    }
    return refs;
  }

  std::optional<uint8_t> proto(const json& v, const std::string& ptr) {
    if (v.is_string()) {
      static const std::pair<const char*, uint8_t> kNames[] = {
          {"tcp", 6}, {"udp", 17}, {"sctp", 132}, {"icmp", 1}, {"icmpv6", 58}};
      for (const auto& [n, num] : kNames)
        if (v == n) return num;
    } else if (auto n = int_in(v, 0, 255)) {
      return static_cast<uint8_t>(*n);
    }
    w_.error(ptr, "unknown protocol " + jsondoc::show(v) +
                      " (tcp, udp, sctp, icmp, icmpv6 or a number 0-255)");
    return std::nullopt;
  }

  void rule(const json& r, const std::string& rptr) {
    w_.check_fields(r, rptr,
                    {"name", "description", "from", "to", "proto", "ports", "icmp_types", "action",
                     "audit", "log"});
    RawRule rr;
    Rule& rule = rr.rule;
    rule.origin = {f_.file, rptr};
    if (!r.contains("name")) {
      w_.error(rptr + "/name", "required field missing");
    } else if (w_.expect_string(r["name"], rptr + "/name")) {
      rule.name = r["name"].get<std::string>();
      if (!valid_rule_name(rule.name))
        w_.error(rptr + "/name",
                 "'" + rule.name +
                     "' is not a valid rule name (letters, digits, '_', '.' and "
                     "'-', starting with a letter or digit, at most 63 characters)");
    }
    if (r.contains("description")) w_.expect_string(r["description"], rptr + "/description");
    rr.from = zone_refs(r, "from", rptr);
    rr.to = zone_refs(r, "to", rptr);
    for (const auto& x : rr.from) rule.from.push_back(x.name);
    for (const auto& x : rr.to) rule.to.push_back(x.name);

    bool proto_ok = true;
    if (r.contains("proto")) {
      rule.proto = proto(r["proto"], rptr + "/proto");
      proto_ok = rule.proto.has_value();
    }
    if (r.contains("ports")) ports(r["ports"], rptr + "/ports", rule, proto_ok);
    if (r.contains("icmp_types")) icmp_types(r["icmp_types"], rptr + "/icmp_types", rule, proto_ok);

    if (!r.contains("action")) {
      w_.error(rptr + "/action", "required field missing (\"allow\" or \"deny\")");
    } else if (auto a = action(r["action"], rptr + "/action")) {
      rule.action = *a;
    }
    if (r.contains("audit") && w_.expect_bool(r["audit"], rptr + "/audit")) {
      rule.audit = r["audit"].get<bool>();
      if (rule.audit && rule.action == Action::kAllow && r.contains("action"))
        w_.error(rptr + "/audit", "audit applies to deny rules only (an allow already passes)");
    }
    if (r.contains("log") && w_.expect_bool(r["log"], rptr + "/log"))
      rule.log = r["log"].get<bool>();
    f_.rules.push_back(std::move(rr));
  }

  void ports(const json& v, const std::string& ptr, Rule& rule, bool proto_ok) {
    if (proto_ok && !(rule.proto && is_port_proto(*rule.proto)))
      w_.error(ptr, "ports need \"proto\": \"tcp\", \"udp\" or \"sctp\"");
    if (!w_.expect_array(v, ptr)) return;
    if (v.empty()) w_.error(ptr, "must not be empty (leave the field out for every port)");
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::string ip = ptr + "/" + std::to_string(i);
      const json& x = v[i];
      if (x.is_string()) {
        if (auto pr = parse_range(x.get_ref<const std::string&>())) {
          rule.ports.push_back(*pr);
        } else {
          w_.error(ip, jsondoc::show(x) +
                           " is not a port range (\"lo-hi\" with 1 <= lo <= hi <= 65535)");
        }
      } else if (auto p = int_in(x, 1, 65535)) {
        rule.ports.push_back({static_cast<uint16_t>(*p), static_cast<uint16_t>(*p)});
      } else {
        w_.error(ip, jsondoc::show(x) + " is not a port (1-65535)");
      }
    }
  }

  void icmp_types(const json& v, const std::string& ptr, Rule& rule, bool proto_ok) {
    if (proto_ok && !(rule.proto && is_icmp_proto(*rule.proto)))
      w_.error(ptr, "icmp_types need \"proto\": \"icmp\" or \"icmpv6\"");
    if (!w_.expect_array(v, ptr)) return;
    if (v.empty()) w_.error(ptr, "must not be empty (leave the field out for every type)");
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (auto t = int_in(v[i], 0, 255)) {
        rule.icmp_types.push_back(static_cast<uint8_t>(*t));
      } else {
        w_.error(ptr + "/" + std::to_string(i),
                 jsondoc::show(v[i]) + " is not an ICMP type (0-255)");
      }
    }
  }

  Fragment& f_;
  Walker w_;
};

Fragment parse_fragment(const std::string& text, const std::string& file,
                        std::vector<std::string>& errors) {
  Fragment f;
  f.file = file;
  auto doc = jsondoc::parse(text, file, errors);
  if (!doc) return f;
  f.parsed = true;
  FileParser(f, errors).document(*doc);
  return f;
}

// Merges fragments in order and runs the checks that span zones and files.
Result<Policy> merge(std::vector<Fragment> frags, std::vector<std::string> errors) {
  Policy p;
  std::optional<std::string> defaults_file;
  bool all_parsed = true;
  for (auto& f : frags) {
    p.files.push_back(f.file);
    all_parsed = all_parsed && f.parsed;
    for (auto& rz : f.zones) {
      auto it = p.zones.find(rz.zone.name);
      if (it != p.zones.end()) {
        errors.push_back(rz.zone.origin.str() + ": zone '" + rz.zone.name +
                         "' is already defined at " + it->second.origin.str());
        continue;
      }
      p.zones.emplace(rz.zone.name, rz.zone);
    }
    if (f.defaults) {
      if (defaults_file) {
        errors.push_back(f.file + ": /defaults: defaults are already set in " + *defaults_file +
                         "; set them in one file only");
      } else {
        defaults_file = f.file;
        p.defaults = *f.defaults;
      }
    }
  }

  // Same CIDR or UUID in two zones: the address or VM would have two zones.
  std::map<net::Cidr, std::pair<std::string, Origin>> cidr_owner;
  std::map<std::string, std::pair<std::string, Origin>> uuid_owner;
  for (const auto& f : frags) {
    for (const auto& rz : f.zones) {
      if (p.zones.at(rz.zone.name).origin.file != rz.zone.origin.file) continue;  // duplicate zone
      for (std::size_t i = 0; i < rz.zone.cidrs.size(); ++i) {
        Origin o{f.file, rz.cidr_pointers[i]};
        auto [it, fresh] = cidr_owner.try_emplace(rz.zone.cidrs[i], rz.zone.name, o);
        if (!fresh)
          errors.push_back(o.str() + ": " + rz.zone.cidrs[i].str() +
                           (it->second.first == rz.zone.name ? " is listed twice in zone '"
                                                             : " is already in zone '") +
                           it->second.first + "' (" + it->second.second.str() + ")");
      }
      for (std::size_t i = 0; i < rz.zone.uuids.size(); ++i) {
        Origin o{f.file, rz.uuid_pointers[i]};
        auto [it, fresh] = uuid_owner.try_emplace(rz.zone.uuids[i], rz.zone.name, o);
        if (!fresh)
          errors.push_back(o.str() + ": UUID " + rz.zone.uuids[i] +
                           (it->second.first == rz.zone.name ? " is listed twice in zone '"
                                                             : " is already in zone '") +
                           it->second.first + "' (" + it->second.second.str() + ")");
      }
    }
  }

  std::map<std::string, Origin> rule_names;
  for (auto& f : frags) {
    for (auto& rr : f.rules) {
      if (!rr.rule.name.empty()) {
        auto [it, fresh] = rule_names.try_emplace(rr.rule.name, rr.rule.origin);
        if (!fresh)
          errors.push_back(rr.rule.origin.str() + "/name: duplicate rule name '" + rr.rule.name +
                           "' (first at " + it->second.str() + ")");
      }
      // A file that failed to parse may define the zone; do not guess.
      if (all_parsed) {
        for (const auto* refs : {&rr.from, &rr.to})
          for (const auto& ref : *refs)
            if (!is_builtin_zone(ref.name) && !p.zones.count(ref.name))
              errors.push_back(f.file + ": " + ref.pointer + ": zone '" + ref.name +
                               "' is not defined");
      }
      p.rules.push_back(std::move(rr.rule));
    }
  }

  constexpr std::size_t kMaxUserZones = ZW_MAX_ZONES - ZW_ZONE_FIRST_USER;
  constexpr std::size_t kMaxUserRules = ZW_MAX_RULES - ZW_RULE_FIRST_USER;
  std::string first = frags.empty() ? std::string("policy") : frags.front().file;
  if (p.zones.size() > kMaxUserZones)
    errors.push_back(first + ": /zones: " + std::to_string(p.zones.size()) +
                     " zones, more than the datapath holds (" + std::to_string(kMaxUserZones) +
                     ")");
  if (p.rules.size() > kMaxUserRules)
    errors.push_back(first + ": /rules: " + std::to_string(p.rules.size()) +
                     " rules, more than the datapath holds (" + std::to_string(kMaxUserRules) +
                     ")");

  if (!errors.empty()) return fail(jsondoc::invalid(errors));
  return p;
}

}  // namespace

Result<Policy> parse(const std::string& text, const std::string& file) {
  std::vector<std::string> errors;
  std::vector<Fragment> frags;
  frags.push_back(parse_fragment(text, file, errors));
  return merge(std::move(frags), std::move(errors));
}

namespace {

// What one read of a policy path saw: the directory (its own inode and
// times change when an entry is added, removed or renamed) and, per file,
// its identity, size and times. Two equal stamps around a read mean the
// files read are one state of the path, not a mixture of two.
struct FileStamp {
  std::string path;
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

struct PathStamp {
  bool is_dir = false;
  FileStamp self;                // the directory, or the single file
  std::vector<FileStamp> files;  // the *.json files to read, in file-name order
  bool operator==(const PathStamp&) const = default;
};

int64_t ns_of(const timespec& t) { return int64_t{t.tv_sec} * 1000000000 + t.tv_nsec; }

Result<FileStamp> stamp_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return fail(Error::invalid(path + ": no such file or directory"));
    return fail(Error::sys(path));
  }
  return FileStamp{path, st.st_dev, st.st_ino, st.st_size, ns_of(st.st_mtim), ns_of(st.st_ctim)};
}

Result<PathStamp> stamp_path(const std::string& path) {
  PathStamp ps;
  auto self = stamp_file(path);
  if (!self) return fail(std::move(self.error()));
  ps.self = std::move(*self);
  std::error_code ec;
  ps.is_dir = fs::is_directory(path, ec);
  if (!ps.is_dir) return ps;
  std::vector<fs::path> found;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    const auto& name = it->path().filename().string();
    // Hidden files are editor and VCS droppings, not policy.
    if (name.empty() || name[0] == '.' || it->path().extension() != ".json") continue;
    std::error_code fec;
    if (!it->is_regular_file(fec)) continue;
    found.push_back(it->path());
  }
  if (ec) return fail(Error::sys(path, ec.value()));
  std::sort(found.begin(), found.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename() < b.filename(); });
  for (const auto& f : found) {
    auto s = stamp_file(f.string());
    if (!s) {
      // Gone between the listing and the stat: a changing directory; the
      // stamp after the read differs and the reader tries again.
      ps.files.push_back(FileStamp{f.string()});
      continue;
    }
    ps.files.push_back(std::move(*s));
  }
  return ps;
}

}  // namespace

Result<Policy> load(const std::string& path) { return load(path, LoadHooks{}); }

Result<Policy> load(const std::string& path, const LoadHooks& hooks) {
  const int attempts = std::max(1, hooks.attempts);
  for (int attempt = 0; attempt < attempts; ++attempt) {
    auto before = stamp_path(path);
    if (!before) return fail(std::move(before.error()));
    if (before->is_dir && before->files.empty())
      return fail(Error::invalid(path + ": no *.json files in this directory"));
    // Read every file first; judge them only once the path is known not to
    // have changed meanwhile (a file removed mid-read is a change, not an error).
    std::vector<Result<std::string>> texts;
    for (const auto& f : before->files.empty() ? std::vector{before->self} : before->files) {
      texts.push_back(jsondoc::read_file(f.path));
      if (hooks.after_read) hooks.after_read(f.path);
    }
    auto after = stamp_path(path);
    if (after && *after == *before) {
      std::vector<std::string> errors;
      std::vector<Fragment> frags;
      for (size_t i = 0; i < texts.size(); ++i) {
        const std::string& file = before->is_dir ? before->files[i].path : path;
        if (!texts[i]) {
          if (texts[i].error().kind() == ErrorKind::kSystem)
            return fail(std::move(texts[i].error()));
          errors.push_back(texts[i].error().message());
          Fragment f;
          f.file = file;
          frags.push_back(std::move(f));
          continue;
        }
        frags.push_back(parse_fragment(*texts[i], file, errors));
      }
      return merge(std::move(frags), std::move(errors));
    }
  }
  return fail(
      Error(ErrorKind::kBusy, path + ": policy " + (fs::is_directory(path) ? "directory" : "file") +
                                  " changed while being read (" + std::to_string(attempts) +
                                  " attempts); nothing applied, try again once it is written"));
}

}  // namespace zw::policy
