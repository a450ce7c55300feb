// The static JSON inventory: parse, validate (names, MACs, IPs, duplicates
// across VMs) and flatten into one Endpoint per VM interface.
#include "inventory/static_json.h"

#include <algorithm>
#include <cctype>
#include <map>

#include "util/json_doc.h"

namespace zw::inventory {

namespace {

using jsondoc::Walker;
using nlohmann::json;

// Linux dev_valid_name(): 1..15 bytes, not "." or "..", no '/', ':' or space.
bool valid_ifname(std::string_view s) {
  if (s.empty() || s.size() > 15 || s == "." || s == "..") return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    return c == '/' || c == ':' || std::isspace(static_cast<unsigned char>(c));
  });
}

class Parser {
 public:
  Parser(const std::string& file, std::vector<std::string>& errors) : w_(file, errors) {}

  Inventory document(const json& doc) {
    if (!w_.expect_object(doc, "")) return inv_;
    w_.check_fields(doc, "", {"vms", "description"});
    if (doc.contains("description")) w_.expect_string(doc["description"], "/description");
    if (!doc.contains("vms")) {
      w_.error("/vms", "required field missing");
      return inv_;
    }
    const json& vms = doc["vms"];
    if (!w_.expect_array(vms, "/vms")) return inv_;
    for (std::size_t i = 0; i < vms.size(); ++i) vm(vms[i], "/vms/" + std::to_string(i));
    return inv_;
  }

 private:
  void vm(const json& v, const std::string& ptr) {
    if (!w_.expect_object(v, ptr)) return;
    w_.check_fields(v, ptr, {"name", "uuid", "zone", "interfaces", "description"});
    Endpoint base;
    if (!v.contains("name")) {
      w_.error(ptr + "/name", "required field missing");
    } else if (w_.expect_string(v["name"], ptr + "/name")) {
      base.vm_name = v["name"].get<std::string>();
      if (base.vm_name.empty()) {
        w_.error(ptr + "/name", "must not be empty");
      } else if (auto [it, fresh] = vm_names_.try_emplace(base.vm_name, ptr); !fresh) {
        w_.error(ptr + "/name", "VM name '" + base.vm_name + "' is already used at " + it->second);
      }
    }
    if (v.contains("uuid") && w_.expect_string(v["uuid"], ptr + "/uuid")) {
      const auto& u = v["uuid"].get_ref<const std::string&>();
      if (!jsondoc::is_uuid(u)) {
        w_.error(ptr + "/uuid",
                 jsondoc::show(v["uuid"]) + " is not a UUID (8-4-4-4-12 hexadecimal digits)");
      } else {
        base.vm_uuid = jsondoc::lower(u);
        if (auto [it, fresh] = uuids_.try_emplace(base.vm_uuid, ptr); !fresh)
          w_.error(ptr + "/uuid", "UUID " + base.vm_uuid + " is already used at " + it->second);
      }
    }
    if (v.contains("zone") && w_.expect_string(v["zone"], ptr + "/zone"))
      base.zone_tag = v["zone"].get<std::string>();
    if (v.contains("description")) w_.expect_string(v["description"], ptr + "/description");
    if (!v.contains("interfaces")) {
      w_.error(ptr + "/interfaces", "required field missing");
      return;
    }
    const json& ifs = v["interfaces"];
    if (!w_.expect_array(ifs, ptr + "/interfaces")) return;
    if (ifs.empty()) w_.error(ptr + "/interfaces", "a VM needs at least one interface");
    for (std::size_t k = 0; k < ifs.size(); ++k)
      interface(ifs[k], ptr + "/interfaces/" + std::to_string(k), base);
  }

  void interface(const json& v, const std::string& ptr, const Endpoint& base) {
    if (!w_.expect_object(v, ptr)) return;
    w_.check_fields(v, ptr, {"name", "mac", "ips", "allowed_addresses", "attach"});
    Endpoint ep = base;
    ep.source = w_.file() + ": " + ptr;
    if (!v.contains("name")) {
      w_.error(ptr + "/name", "required field missing");
    } else if (w_.expect_string(v["name"], ptr + "/name")) {
      ep.ifname = v["name"].get<std::string>();
      if (!valid_ifname(ep.ifname)) {
        w_.error(ptr + "/name", jsondoc::show(v["name"]) +
                                    " is not a Linux interface name (1-15 characters, no '/', "
                                    "':' or whitespace)");
      } else if (auto [it, fresh] = ifnames_.try_emplace(ep.ifname, ptr); !fresh) {
        w_.error(ptr + "/name", "interface '" + ep.ifname + "' is already used at " + it->second);
      }
    }
    if (v.contains("mac") && w_.expect_string(v["mac"], ptr + "/mac")) {
      auto m = net::parse_mac(v["mac"].get_ref<const std::string&>());
      if (!m) {
        w_.error(ptr + "/mac",
                 jsondoc::show(v["mac"]) + " is not a MAC address (52:54:00:12:34:56)");
      } else if ((*m)[0] & 1) {
        w_.error(ptr + "/mac", jsondoc::show(v["mac"]) + " is a multicast MAC, not a VM's address");
      } else if (*m == net::Mac{}) {
        w_.error(ptr + "/mac", "00:00:00:00:00:00 is not a VM's address");
      } else {
        ep.mac = *m;
      }
    }
    if (v.contains("ips") && w_.expect_array(v["ips"], ptr + "/ips")) {
      const json& ips = v["ips"];
      for (std::size_t i = 0; i < ips.size(); ++i) {
        std::string ip = ptr + "/ips/" + std::to_string(i);
        if (!w_.expect_string(ips[i], ip)) continue;
        auto a = net::parse_addr(ips[i].get_ref<const std::string&>());
        if (!a) {
          w_.error(ip, jsondoc::show(ips[i]) + " is not an IPv4 or IPv6 address");
          continue;
        }
        auto [it, fresh] = addrs_.try_emplace(*a, std::make_pair(ep.vm_name, ip));
        if (!fresh) {
          w_.error(ip, a->str() + " is already used by VM '" + it->second.first + "' (" +
                           it->second.second + ")");
          continue;
        }
        ep.addrs.push_back(*a);
      }
    }
    if (v.contains("allowed_addresses") &&
        w_.expect_array(v["allowed_addresses"], ptr + "/allowed_addresses")) {
      const json& al = v["allowed_addresses"];
      for (std::size_t i = 0; i < al.size(); ++i) {
        std::string ip = ptr + "/allowed_addresses/" + std::to_string(i);
        if (!w_.expect_string(al[i], ip)) continue;
        auto a = net::parse_addr(al[i].get_ref<const std::string&>());
        if (!a) {
          w_.error(ip, jsondoc::show(al[i]) + " is not an IPv4 or IPv6 address");
          continue;
        }
        if (std::find(ep.allowed.begin(), ep.allowed.end(), *a) == ep.allowed.end())
          ep.allowed.push_back(*a);
      }
    }
    if (v.contains("attach")) {
      const json& a = v["attach"];
      if (a == "tc" || a == "xdp") {
        ep.attach = a.get<std::string>();
      } else {
        w_.error(ptr + "/attach", "expected \"tc\" or \"xdp\", got " + jsondoc::show(a));
      }
    }
    inv_.endpoints.push_back(std::move(ep));
  }

  Walker w_;
  Inventory inv_;
  std::map<std::string, std::string> vm_names_, uuids_, ifnames_;   // -> first pointer
  std::map<net::Addr, std::pair<std::string, std::string>> addrs_;  // -> (VM, pointer)
};

}  // namespace

Result<Inventory> parse_static(const std::string& text, const std::string& file) {
  std::vector<std::string> errors;
  auto doc = jsondoc::parse(text, file, errors);
  if (!doc) return fail(jsondoc::invalid(errors));
  Inventory inv = Parser(file, errors).document(*doc);
  if (!errors.empty()) return fail(jsondoc::invalid(errors));
  return inv;
}

Result<Inventory> load_static(const std::string& path) {
  auto text = jsondoc::read_file(path);
  if (!text) return fail(std::move(text.error()));
  return parse_static(*text, path);
}

}  // namespace zw::inventory
