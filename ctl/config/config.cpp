// Daemon configuration JSON: one object, every key optional, unknown keys
// rejected, each error "<file>: <pointer>: <what>" (as for policies).
#include "config/config.h"

#include <fnmatch.h>
#include <grp.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "util/fd.h"
#include "util/json_doc.h"
#include "util/net.h"

namespace zw::config {

namespace {

using jsondoc::Walker;
using nlohmann::json;

constexpr int kMaxResync = 86400;
constexpr unsigned kMaxFlowRate = 1000000;

bool is_mode(const json& v) { return v == "tc" || v == "xdp"; }

// [a-z_][a-z0-9_-]*[$]? up to 32 characters (useradd's default NAME_REGEX).
bool valid_group_name(const std::string& s) {
  if (s.empty() || s.size() > 32) return false;
  if (!(s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z'))) return false;
  for (size_t i = 1; i < s.size(); ++i) {
    char c = s[i];
    bool ok = c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (c == '$' && i + 1 == s.size());
    if (!ok) return false;
  }
  return true;
}

// "127.0.0.1:9469", "[::1]:9469" or ":9469" (all addresses).
bool valid_listen(const std::string& s, std::string& why) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) {
    why = "expected ADDRESS:PORT (\"127.0.0.1:9469\", \"[::1]:9469\", \":9469\")";
    return false;
  }
  std::string host = s.substr(0, colon), port = s.substr(colon + 1);
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
      std::stoi(port) > 65535) {
    why = "'" + port + "' is not a port (1-65535)";
    return false;
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (host.find(':') == std::string::npos || !net::parse_addr(host)) {
      why = "'" + host + "' is not an IPv6 address";
      return false;
    }
  } else if (!host.empty() && (host.find(':') != std::string::npos || !net::parse_addr(host))) {
    why = "'" + host + "' is not an IPv4 address (write IPv6 as [addr]:port)";
    return false;
  }
  return true;
}

class Parser {
 public:
  Parser(const std::string& file, std::vector<std::string>& errors) : w_(file, errors) {
    c_.source = file;
  }

  Config document(const json& doc) {
    if (!w_.expect_object(doc, "")) return c_;
    w_.check_fields(doc, "",
                    {"$schema", "description", "policy", "inventory", "libvirt", "pin_dir",
                     "state_dir", "tap_patterns", "attach", "resync_seconds", "metrics", "flow_log",
                     "fail_mode", "control_socket", "log_level", "cluster"});
    if (doc.contains("$schema")) w_.expect_string(doc["$schema"], "/$schema");
    if (doc.contains("description")) w_.expect_string(doc["description"], "/description");
    path(doc, "/policy", "policy", c_.policy, false);
    path(doc, "/inventory", "inventory", c_.inventory, true);
    if (doc.contains("libvirt")) {
      const json& v = doc["libvirt"];
      if (v.is_null())
        c_.libvirt.reset();
      else if (!w_.expect_string(v, "/libvirt"))
        ;
      else if (v.get_ref<const std::string&>().find(':') == std::string::npos)
        w_.error("/libvirt", jsondoc::show(v) +
                                 " is not a libvirt URI (qemu:///system, test:///default, ...); "
                                 "null for no libvirt");
      else
        c_.libvirt = v.get<std::string>();
    }
    path(doc, "/pin_dir", "pin_dir", c_.pin_dir, false);
    path(doc, "/state_dir", "state_dir", c_.state_dir, true);
    if (doc.contains("tap_patterns") && w_.expect_array(doc["tap_patterns"], "/tap_patterns")) {
      c_.tap_patterns.clear();
      const json& a = doc["tap_patterns"];
      for (size_t i = 0; i < a.size(); ++i) {
        std::string p = "/tap_patterns/" + std::to_string(i);
        if (!w_.expect_string(a[i], p)) continue;
        if (a[i].get_ref<const std::string&>().empty())
          w_.error(p, "must not be empty");
        else
          c_.tap_patterns.push_back(a[i]);
      }
    }
    if (doc.contains("attach")) attach(doc["attach"]);
    if (doc.contains("resync_seconds")) {
      const json& v = doc["resync_seconds"];
      if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMaxResync)
        w_.error("/resync_seconds", "expected an integer from 1 to " + std::to_string(kMaxResync) +
                                        ", got " + jsondoc::show(v));
      else
        c_.resync_seconds = v.get<int>();
    }
    if (doc.contains("metrics") && w_.expect_object(doc["metrics"], "/metrics")) {
      const json& m = doc["metrics"];
      w_.check_fields(m, "/metrics", {"listen"});
      if (m.contains("listen") && !m["listen"].is_null() &&
          w_.expect_string(m["listen"], "/metrics/listen")) {
        std::string why;
        if (valid_listen(m["listen"], why))
          c_.metrics_listen = m["listen"];
        else
          w_.error("/metrics/listen", why);
      }
    }
    if (doc.contains("flow_log") && w_.expect_object(doc["flow_log"], "/flow_log")) {
      const json& f = doc["flow_log"];
      w_.check_fields(f, "/flow_log", {"destination", "rate"});
      if (f.contains("destination") && !f["destination"].is_null() &&
          w_.expect_string(f["destination"], "/flow_log/destination")) {
        const auto& d = f["destination"].get_ref<const std::string&>();
        if (d == "stderr" || (!d.empty() && d[0] == '/'))
          c_.flow_log = d;
        else
          w_.error("/flow_log/destination",
                   jsondoc::show(f["destination"]) +
                       ": expected \"stderr\", an absolute file path, or null (off)");
      }
      if (f.contains("rate")) {
        const json& v = f["rate"];
        if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMaxFlowRate)
          w_.error("/flow_log/rate", "expected events per second per VM interface from 1 to " +
                                         std::to_string(kMaxFlowRate) + ", got " +
                                         jsondoc::show(v));
        else
          c_.flow_log_rate = v.get<unsigned>();
      }
    }
    if (doc.contains("cluster") && w_.expect_object(doc["cluster"], "/cluster"))
      cluster(doc["cluster"]);
    if (doc.contains("fail_mode")) {
      const json& v = doc["fail_mode"];
      if (v == "closed")
        c_.fail_mode = "closed";
      else if (v == "open")
        w_.error("/fail_mode",
                 "\"open\" is not supported by this build: the datapath always fails closed");
      else
        w_.error("/fail_mode", "expected \"closed\", got " + jsondoc::show(v));
    }
    if (doc.contains("control_socket") &&
        w_.expect_object(doc["control_socket"], "/control_socket")) {
      const json& s = doc["control_socket"];
      w_.check_fields(s, "/control_socket", {"read_group", "apply_group"});
      group(s, "read_group", c_.read_group);
      group(s, "apply_group", c_.apply_group);
    }
    if (doc.contains("log_level")) {
      const json& v = doc["log_level"];
      if (v == "error" || v == "warn" || v == "info" || v == "debug")
        c_.log_level = v;
      else
        w_.error("/log_level",
                 "expected \"error\", \"warn\", \"info\" or \"debug\", got " + jsondoc::show(v));
    }
    return c_;
  }

 private:
  // An absolute path (or null where `nullable`: the built-in behaviour).
  void path(const json& doc, const std::string& ptr, const char* key, std::string& out,
            bool nullable) {
    if (!doc.contains(key)) return;
    const json& v = doc[key];
    if (nullable && v.is_null()) {
      out.clear();
      return;
    }
    if (!v.is_string()) {
      w_.error(ptr, std::string("expected ") + (nullable ? "a path or null" : "a path") + ", got " +
                        jsondoc::show(v));
      return;
    }
    const auto& s = v.get_ref<const std::string&>();
    if (s.empty() || s[0] != '/')
      w_.error(ptr, jsondoc::show(v) + " is not an absolute path");
    else
      out = s;
  }

  void attach(const json& a) {
    if (!w_.expect_object(a, "/attach")) return;
    w_.check_fields(a, "/attach", {"default", "interfaces", "kinds"});
    if (a.contains("default")) {
      if (is_mode(a["default"]))
        c_.attach_default = a["default"];
      else
        w_.error("/attach/default",
                 "expected \"tc\" or \"xdp\", got " + jsondoc::show(a["default"]));
    }
    if (a.contains("interfaces") && w_.expect_array(a["interfaces"], "/attach/interfaces")) {
      const json& list = a["interfaces"];
      for (size_t i = 0; i < list.size(); ++i) {
        std::string p = "/attach/interfaces/" + std::to_string(i);
        const json& r = list[i];
        if (!w_.expect_object(r, p)) continue;
        w_.check_fields(r, p, {"match", "mode"});
        AttachRule rule;
        if (!r.contains("match"))
          w_.error(p + "/match", "required field missing");
        else if (w_.expect_string(r["match"], p + "/match")) {
          rule.match = r["match"];
          if (rule.match.empty()) w_.error(p + "/match", "must not be empty");
        }
        if (!r.contains("mode"))
          w_.error(p + "/mode", "required field missing");
        else if (!is_mode(r["mode"]))
          w_.error(p + "/mode", "expected \"tc\" or \"xdp\", got " + jsondoc::show(r["mode"]));
        else
          rule.mode = r["mode"];
        if (!rule.match.empty() && !rule.mode.empty()) c_.attach_rules.push_back(rule);
      }
    }
    if (a.contains("kinds") && w_.expect_object(a["kinds"], "/attach/kinds")) {
      const json& k = a["kinds"];
      w_.check_fields(k, "/attach/kinds", {"tap", "veth"});
      for (const char* kind : {"tap", "veth"}) {
        if (!k.contains(kind)) continue;
        if (is_mode(k[kind]))
          c_.attach_rules.push_back({.match = "", .kind = kind, .mode = k[kind]});
        else
          w_.error(std::string("/attach/kinds/") + kind,
                   "expected \"tc\" or \"xdp\", got " + jsondoc::show(k[kind]));
      }
    }
  }

  void cluster(const json& c) {
    w_.check_fields(c, "/cluster", {"endpoints", "host", "prefix", "lease_ttl"});
    if (c.contains("endpoints") && w_.expect_array(c["endpoints"], "/cluster/endpoints")) {
      for (size_t i = 0; i < c["endpoints"].size(); ++i) {
        const json& e = c["endpoints"][i];
        std::string p = "/cluster/endpoints/" + std::to_string(i);
        if (!w_.expect_string(e, p)) continue;
        const auto& u = e.get_ref<const std::string&>();
        if (!u.starts_with("http://") && !u.starts_with("https://"))
          w_.error(p, jsondoc::show(e) + ": expected an etcd client URL (http://HOST:PORT)");
        else
          c_.cluster.endpoints.push_back(u);
      }
    }
    if (c.contains("host") && w_.expect_string(c["host"], "/cluster/host")) {
      const auto& h = c["host"].get_ref<const std::string&>();
      if (h.empty() || h.find('/') != std::string::npos)
        w_.error("/cluster/host", jsondoc::show(c["host"]) + ": expected a host name without '/'");
      else
        c_.cluster.host = h;
    }
    if (c.contains("prefix") && w_.expect_string(c["prefix"], "/cluster/prefix")) {
      const auto& pf = c["prefix"].get_ref<const std::string&>();
      if (pf.empty() || pf[0] != '/' || pf.find("//") != std::string::npos)
        w_.error("/cluster/prefix",
                 jsondoc::show(c["prefix"]) + ": expected a key prefix like \"/zonewall\"");
      else
        c_.cluster.prefix = pf;
    }
    if (c.contains("lease_ttl")) {
      const json& v = c["lease_ttl"];
      if (!v.is_number_integer() || v.get<int64_t>() < 3 || v.get<int64_t>() > 3600)
        w_.error("/cluster/lease_ttl", "expected seconds from 3 to 3600, got " + jsondoc::show(v));
      else
        c_.cluster.lease_ttl = v.get<int>();
    }
  }

  void group(const json& s, const char* key, std::optional<Group>& out) {
    if (!s.contains(key) || s[key].is_null()) return;
    std::string p = std::string("/control_socket/") + key;
    if (!w_.expect_string(s[key], p)) return;
    std::string name = s[key];
    if (!valid_group_name(name)) {
      w_.error(p, jsondoc::show(s[key]) + " is not a group name");
      return;
    }
    struct group buf {};
    struct group* found = nullptr;
    std::vector<char> mem(16384);
    int err = ::getgrnam_r(name.c_str(), &buf, mem.data(), mem.size(), &found);
    if (err != 0 || !found) {
      w_.error(p, "group '" + name + "' does not exist (groupadd --system " + name + ")");
      return;
    }
    out = Group{name, found->gr_gid};
  }

  Walker w_;
  Config c_;
};

}  // namespace

Result<Config> parse(const std::string& text, const std::string& file) {
  std::vector<std::string> errors;
  auto doc = jsondoc::parse(text, file, errors);
  if (!doc) return fail(jsondoc::invalid(errors));
  Config c = Parser(file, errors).document(*doc);
  if (!errors.empty()) return fail(jsondoc::invalid(errors));
  return c;
}

Result<Config> load(const std::string& path, bool required) {
  if (!required && ::access(path.c_str(), F_OK) != 0) return Config{};
  auto text = jsondoc::read_file(path);
  if (!text) return fail(std::move(text.error()));
  return parse(*text, path);
}

std::string attach_mode(const std::vector<AttachRule>& rules, const std::string& fallback,
                        const std::string& ifname) {
  std::optional<std::string> kind;
  for (const auto& r : rules) {
    if (!r.match.empty()) {
      if (fnmatch(r.match.c_str(), ifname.c_str(), 0) == 0) return r.mode;
      continue;
    }
    if (!kind) kind = device_kind(ifname);
    if (*kind == r.kind) return r.mode;
  }
  return fallback;
}

std::string device_kind(const std::string& ifname) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) return "";
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return "";
  ethtool_drvinfo info{};
  info.cmd = ETHTOOL_GDRVINFO;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.c_str(), ifname.size());
  ifr.ifr_data = reinterpret_cast<char*>(&info);
  if (::ioctl(fd.get(), SIOCETHTOOL, &ifr) != 0) return "";
  std::string driver(info.driver, strnlen(info.driver, sizeof info.driver));
  if (driver == "tun") return "tap";
  if (driver == "veth") return "veth";
  return "";
}

}  // namespace zw::config
