// Differential test: the real BPF programs against the reference model
// (ctl/model). Random policies and inventories are applied with the real
// control plane (engine::apply) to the production object in a private
// network namespace; random and adversarial frames, in sequences so that flow
// state matters, run through BPF_PROG_TEST_RUN on the three programs (tc
// from-VM, XDP from-VM, tc to-VM). For every frame the verdict, the reason and
// the deciding rule must equal the model's.
//
// How the datapath's reason and rule are read: the per-CPU reason and rule
// counters before and after each run (exactly one reason, at most one rule
// moves). That observes the production programs unchanged, side effects
// included, which is the point; a verdict-returning variant of the object
// would test a different build.
//
// Seed and length: ZW_DIFF_SEED (default 1), ZW_DIFF_PACKETS (default
// 100000); scripts/difftest.sh for long runs. A mismatch prints the seed, the
// frame (hex and decoded), the policy, the inventory and both answers.
#include <gtest/gtest.h>
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>

#include "datapath/maps.h"
#include "datapath/object.h"
#include "datapath/test_run.h"
#include "engine/conntrack.h"
#include "engine/inspect.h"
#include "engine/reconcile.h"
#include "engine/state.h"
#include "inventory/static_json.h"
#include "model/model.h"
#include "observe.h"
#include "packet.h"
#include "policy/json.h"

namespace zw {
namespace {

using datapath::Prog;
using nlohmann::json;
using test::Bytes;

constexpr uint8_t kTcp = 6, kUdp = 17, kIcmp = 1, kIcmp6 = 58, kSctp = 132, kGre = 47;
constexpr int kIfaces = 6;

uint64_t env_u64(const char* name, uint64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoull(v, nullptr, 0) : dflt;
}

std::string hex(const Bytes& b) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < b.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%02x", b[i]);
    s += buf;
    if (i % 32 == 31) s += '\n';
  }
  return s;
}

// An external CIDR a zone may claim, with addresses inside it to send from.
struct CidrPool {
  const char* cidr;
  std::vector<const char*> inside;
};
const std::vector<CidrPool> kCidrs = {
    {"198.51.100.0/24", {"198.51.100.7", "198.51.100.200"}},
    {"198.51.100.128/25", {"198.51.100.200", "198.51.100.129"}},
    {"203.0.113.0/24", {"203.0.113.5"}},
    {"10.7.0.0/16", {"10.7.200.1", "10.7.0.1"}},  // covers the VMs' own addresses
    {"0.0.0.0/0", {"8.8.8.8"}},
    // ...::ffff:e000:1 ends like IPv4-mapped multicast (a datapath fuzzer finding).
    {"2001:db8:1::/48", {"2001:db8:1::9", "2001:db8:1:8000::1", "2001:db8:1::ffff:e000:1"}},
    {"2001:db8:1:8000::/49", {"2001:db8:1:8000::1"}},
    {"fd07::/16", {"fd07:ffff::1"}},
    {"::/0", {"2606:4700::1"}},  // all of IPv6, none of IPv4
};
const std::vector<const char*> kWorld = {"192.0.2.9", "8.8.8.8", "2001:db8:ff::9", "2606:4700::1",
                                         "2001:db8:ff::ffff:ffff:ffff"};
const std::vector<const char*> kSpecial = {"0.0.0.0", "255.255.255.255", "224.0.0.251",
                                           "::",      "ff02::1",         "ff02::1:ff00:1",
                                           "fe80::1", "127.0.0.1"};
const std::vector<uint16_t> kPorts = {22,   53,   67,   68, 80, 443, 546, 547,  5432, 8000, 8191,
                                      8192, 8999, 9000, 0,  1,  255, 256, 1023, 1024, 65535};

struct Vm {
  std::string name, uuid, zone;  // zone: user zone or "unzoned"
  int iface = 0;                 // index into the test interfaces
  std::optional<net::Mac> mac;
  std::vector<std::string> addrs;
  std::vector<std::string> allowed;  // VIPs
};

// One sent IP packet remembered so later frames can answer or quote it.
struct Sent {
  std::string src, dst;
  uint8_t proto = 0;
  uint16_t sport = 0, dport = 0;
  uint8_t icmp_type = 0;
  Bytes ip;  // without Ethernet
};

class DifferentialTest : public ::testing::Test {
 protected:
  static inline bool ready_ = false;
  static inline std::string why_;
  static inline engine::Paths paths_;
  static inline std::vector<std::pair<std::string, uint32_t>> ifs_;  // name, ifindex

  static bool sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }

  static void SetUpTestSuite() {
    if (geteuid() != 0) {
      why_ = "the differential test needs root (CAP_BPF, CAP_NET_ADMIN)";
      return;
    }
    if (unshare(CLONE_NEWNET) != 0) {
      why_ = "unshare(CLONE_NEWNET) failed";
      return;
    }
    paths_ = engine::make_paths("/sys/fs/bpf/zw-model-diff-" + std::to_string(getpid()));
    datapath::install_libbpf_logger();
    if (auto st = datapath::ensure_bpffs(paths_.pin_dir); !st) {
      why_ = st.error().str();
      return;
    }
    // Interfaces stay down: nothing of the kernel's own reaches the programs.
    for (int i = 0; i < kIfaces; ++i) {
      std::string n = "zwm" + std::to_string(i);
      if (!sh("ip link add " + n + " type veth peer name " + n + "p")) {
        why_ = "cannot create veth " + n;
        return;
      }
      ifs_.emplace_back(n, if_nametoindex(n.c_str()));
    }
    ready_ = true;
  }

  static void TearDownTestSuite() {
    if (!paths_.pin_dir.empty()) {
      if (auto lock = engine::PinLock::acquire(paths_.pin_dir)) (void)engine::down(paths_);
      sh("rm -rf " + paths_.pin_dir + " 2>/dev/null");
    }
  }

  void SetUp() override {
    if (ready_) return;
    if (std::getenv("CI") || std::getenv("ZW_REQUIRE_PRIVILEGED"))
      FAIL() << "cannot run the differential test in CI: " << why_;
    GTEST_SKIP() << why_;
  }
};

// One run: a generator of policies, inventories and frames, both sides, and
// the comparison.
class DiffRun {
 public:
  DiffRun(uint64_t seed, const engine::Paths& paths,
          const std::vector<std::pair<std::string, uint32_t>>& ifs)
      : seed_(seed), rng_(seed), paths_(paths), ifs_(ifs) {}

  uint64_t packets = 0, mismatches = 0, rounds = 0, applies = 0;
  double apply_secs = 0;
  std::map<std::string, uint64_t> reasons_seen;

  // Runs rounds (new zones, inventory, policy) until `total` frames ran.
  bool run(uint64_t total) {
    while (packets < total && mismatches < 5) {
      if (!new_round()) return false;
      // An apply loads and verifies the programs (most of a second), so
      // rounds are long and policy changes within a round few.
      uint64_t round_end = std::min<uint64_t>(total, packets + 9000 + pick(6000));
      while (packets < round_end && mismatches < 5) {
        if (chance(1.0 / 9000) && !change_policy()) return false;
        step();
      }
    }
    return mismatches == 0;
  }

 private:
  // ---- randomness ----
  uint64_t pick(uint64_t n) {
    return n ? std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_) : 0;
  }
  bool chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  template <typename T>
  const T& one(const std::vector<T>& v) {
    return v[pick(v.size())];
  }

  // ---- policy and inventory ----
  json gen_rules() {
    std::vector<std::string> names = zone_names_;
    names.insert(names.end(), {"world", "unzoned"});
    json rules = json::array();
    int n = static_cast<int>(pick(12));
    for (int i = 0; i < n; ++i) {
      json r = {{"name", "r" + std::to_string(rule_serial_++)}};
      auto zones = [&]() -> json {
        if (chance(0.15)) return "*";  // "*" stands alone
        std::set<std::string> z;
        for (int j = 0, k = 1 + static_cast<int>(pick(2)); j < k; ++j) z.insert(one(names));
        return z.size() == 1 ? json(*z.begin()) : json(z);
      };
      r["from"] = zones();
      r["to"] = zones();
      int p = static_cast<int>(pick(8));
      if (p == 1 || p == 2) r["proto"] = "tcp";
      if (p == 3) r["proto"] = "udp";
      if (p == 4) r["proto"] = "sctp";
      if (p == 5) r["proto"] = "icmp";
      if (p == 6) r["proto"] = "icmpv6";
      if (p == 7) r["proto"] = kGre;
      if (p >= 1 && p <= 4 && chance(0.7)) {
        json ports = json::array();
        for (int j = 0, k = 1 + static_cast<int>(pick(3)); j < k; ++j) {
          if (chance(0.4)) {
            uint16_t lo = std::max<uint16_t>(1, one(kPorts));
            uint32_t hi = std::min<uint32_t>(65535, lo + pick(3) * 1000 + pick(300));
            ports.push_back(std::to_string(lo) + "-" + std::to_string(hi));
          } else {
            ports.push_back(std::max<uint16_t>(1, one(kPorts)));
          }
        }
        r["ports"] = ports;
      }
      if ((p == 5 || p == 6) && chance(0.6)) {
        std::vector<int> types =
            p == 5 ? std::vector<int>{0, 8, 13, 3, 9} : std::vector<int>{128, 129, 1, 135, 200};
        json t = json::array();
        for (int j = 0, k = 1 + static_cast<int>(pick(2)); j < k; ++j) t.push_back(one(types));
        r["icmp_types"] = t;
      }
      bool allow = chance(0.55);
      r["action"] = allow ? "allow" : "deny";
      if (!allow && chance(0.2)) r["audit"] = true;
      rules.push_back(r);
    }
    return rules;
  }

  // Some hygiene checks switched off, field by field.
  json gen_hygiene() {
    json h = json::object();
    for (const char* k : {"mac", "ip", "arp", "nd", "ra", "dhcp_server"})
      if (chance(0.25)) h[k] = chance(0.3);
    return h;
  }

  json gen_policy_doc() {
    json doc = {{"version", 1}};
    doc["defaults"] = {{"intra_zone", chance(0.7) ? "allow" : "deny"},
                       {"inter_zone", chance(0.8) ? "deny" : "allow"}};
    if (chance(0.3)) doc["defaults"]["hygiene"] = gen_hygiene();
    if (chance(0.2)) doc["defaults"]["max_flows"] = 1 + pick(40);
    doc["zones"] = zones_doc_;
    doc["rules"] = gen_rules();
    return doc;
  }

  bool new_round() {
    ++rounds;
    zone_names_.clear();
    zones_doc_ = json::object();
    vms_.clear();
    recent_.clear();
    // VM zones: by name glob, by UUID, or both; some in audit mode.
    int nz = 1 + static_cast<int>(pick(4));
    std::vector<std::string> uuid_zone;
    for (int z = 0; z < nz; ++z) {
      std::string name = "z" + std::to_string(z);
      json zd = json::object();
      if (chance(0.75)) zd["vms"] = json::array({name + "-*"});
      if (!zd.contains("vms") || chance(0.2)) uuid_zone.push_back(name);
      if (chance(0.2)) zd["mode"] = "audit";
      if (chance(0.3)) zd["hygiene"] = gen_hygiene();
      if (chance(0.2)) zd["max_flows"] = 1 + pick(20);  // flow limits are reached
      zones_doc_[name] = zd;
      zone_names_.push_back(name);
    }
    // External zones: overlapping prefixes of both families.
    int ne = static_cast<int>(pick(3));
    for (int e = 0; e < ne; ++e) {
      std::string name = "ext" + std::to_string(e);
      json c = json::array();
      std::set<std::string> used;
      for (int j = 0, k = 1 + static_cast<int>(pick(2)); j < k; ++j) {
        const char* cidr = one(kCidrs).cidr;
        if (taken_cidrs_.insert(cidr).second) c.push_back(cidr);
      }
      if (c.empty()) continue;
      zones_doc_[name] = {{"cidrs", c}};
      if (chance(0.15)) zones_doc_[name]["mode"] = "audit";
      zone_names_.push_back(name);
    }
    taken_cidrs_.clear();
    // VMs on some of the interfaces; the rest have no endpoint.
    json inv = {{"vms", json::array()}};
    for (int i = 0; i < kIfaces; ++i) {
      if (chance(0.15)) continue;
      Vm vm;
      vm.iface = i;
      char uuid[40];
      std::snprintf(uuid, sizeof uuid, "%08x-0000-4000-8000-%012llx", static_cast<unsigned>(i),
                    static_cast<unsigned long long>(rounds));
      vm.uuid = uuid;
      uint64_t how = pick(zone_names_.size() + 1);
      vm.zone = "unzoned";
      vm.name = "free-" + std::to_string(i);
      if (how < zone_names_.size() && zones_doc_[zone_names_[how]].contains("vms")) {
        vm.zone = zone_names_[how];
        vm.name = vm.zone + "-vm" + std::to_string(i);
      } else if (how < zone_names_.size() && std::find(uuid_zone.begin(), uuid_zone.end(),
                                                       zone_names_[how]) != uuid_zone.end()) {
        vm.zone = zone_names_[how];
        vm.name = "u-vm" + std::to_string(i);
        zones_doc_[vm.zone]["uuids"].push_back(vm.uuid);
      }
      if (chance(0.9))
        vm.mac =
            net::Mac{0x52, 0x54, 0, 0x07, static_cast<uint8_t>(rounds), static_cast<uint8_t>(i)};
      int na = chance(0.1) ? 0 : 1 + static_cast<int>(pick(3));
      for (int a = 0; a < na; ++a) {
        bool v6 = chance(0.45);
        std::string addr = v6 ? "fd07::" + std::to_string(i) + ":" + std::to_string(a + 1)
                              : "10.7." + std::to_string(i) + "." + std::to_string(a + 1);
        vm.addrs.push_back(addr);
      }
      // A VIP shared by VMs of one zone (allowed address pairs).
      if (chance(0.2)) {
        std::string vip = chance(0.5) ? "10.7.99." + std::to_string(zone_index(vm.zone))
                                      : "fd07::99:" + std::to_string(zone_index(vm.zone));
        if (!vm_owning(vip) || vm_owning(vip)->zone == vm.zone) vm.allowed.push_back(vip);
      }
      json itf = {{"name", ifs_[i].first}, {"ips", vm.addrs}};
      if (!vm.allowed.empty()) itf["allowed_addresses"] = vm.allowed;
      if (vm.mac) itf["mac"] = net::mac_str(*vm.mac);
      json v = {{"name", vm.name}, {"uuid", vm.uuid}, {"interfaces", json::array({itf})}};
      inv["vms"].push_back(v);
      vms_.push_back(vm);
    }
    // A uuid zone nobody joined still needs a member list.
    for (const auto& z : uuid_zone)
      if (!zones_doc_[z].contains("uuids"))
        zones_doc_[z]["uuids"] =
            json::array({"ffffffff-0000-4000-8000-0000000000" + z.substr(1) + "0"});
    inventory_text_ = inv.dump(1);
    if (!apply(gen_policy_doc())) return false;
    // A fresh round starts with empty conntrack on both sides.
    auto maps = datapath::open_pinned_maps(paths_.pin_dir);
    if (!maps) return report_setup("open maps", maps.error().str());
    // The real sweep, with a clock far past every timeout: deletes every
    // flow and uncharges its VM interface's limit.
    auto swept = engine::sweep_conntrack(*maps, uint64_t{1} << 62);
    if (!swept) return report_setup("sweep", swept.error().str());
    flows_.clear();
    return true;
  }

  bool change_policy() {
    json doc = json::parse(policy_text_);
    if (chance(0.5)) {
      doc["rules"] = gen_rules();
    } else if (!doc["rules"].empty()) {
      // Drop or reorder a rule: established flows must be judged again.
      auto& r = doc["rules"];
      size_t i = pick(r.size());
      if (chance(0.5))
        r.erase(i);
      else
        std::swap(r[i], r[pick(r.size())]);
    }
    if (chance(0.3)) doc["defaults"]["inter_zone"] = chance(0.5) ? "allow" : "deny";
    return apply(doc);
  }

  bool report_setup(const std::string& what, const std::string& err) {
    ADD_FAILURE() << "seed " << seed_ << ": " << what << ": " << err << "\npolicy:\n"
                  << policy_text_ << "\ninventory:\n"
                  << inventory_text_;
    return false;
  }

  bool apply(const json& policy_doc) {
    policy_text_ = policy_doc.dump(1);
    auto p = policy::parse(policy_text_, "diff-policy.json");
    if (!p) return report_setup("policy", p.error().str());
    auto inv = inventory::parse_static(inventory_text_, "diff-inventory.json");
    if (!inv) return report_setup("inventory", inv.error().str());
    {
      auto lock = engine::PinLock::acquire(paths_.pin_dir);
      if (!lock) return report_setup("lock", lock.error().str());
      engine::ApplyInput in{.policy = &*p,
                            .inventory = &*inv,
                            .policy_source = "diff-policy.json",
                            .inventory_source = "diff-inventory.json",
                            .default_attach = "tc",
                            .keep_hooked = {}};
      auto t0 = std::chrono::steady_clock::now();
      auto rep = engine::apply(paths_, in);
      apply_secs += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!rep) return report_setup("apply", rep.error().str());
    }
    ++applies;
    auto st = engine::read_state(paths_);
    if (!st || !*st) return report_setup("state", st ? "no state" : st.error().str());
    for (const auto& [name, id] : (*st)->rule_ids) {
      rule_ids_[name] = id;
      max_rule_id_ = std::max(max_rule_id_, id);
    }
    policy_ = std::move(*p);
    world_.policy = &policy_;
    world_.generation++;
    world_.endpoints.clear();
    for (const auto& vm : vms_) {
      model::Endpoint e{ifs_[vm.iface].first, vm.zone, vm.mac, {}, {}};
      for (const auto& a : vm.addrs) e.addrs.push_back(model::Ip::from(*net::parse_addr(a)));
      for (const auto& a : vm.allowed) e.allowed.push_back(model::Ip::from(*net::parse_addr(a)));
      world_.endpoints.push_back(e);
    }
    for (Prog pr : {Prog::kFromVmTc, Prog::kFromVmXdp, Prog::kToVmTc}) {
      auto fd = datapath::open_pinned_prog(paths_.pin_dir, pr);
      if (!fd) return report_setup("open program", fd.error().str());
      progs_[static_cast<int>(pr)] = std::move(*fd);
    }
    auto maps = datapath::open_pinned_maps(paths_.pin_dir);
    if (!maps) return report_setup("open maps", maps.error().str());
    maps_ = std::move(*maps);
    obs_.emplace(maps_->st_reason.get(), maps_->st_rule.get(), max_rule_id_);
    return true;
  }

  // ---- the two answers ----
  uint32_t rule_id(const model::RuleRef& r) const {
    switch (r.kind) {
      case model::RuleRef::Kind::kNone:
        return ZW_RULE_NONE;
      case model::RuleRef::Kind::kIntra:
        return ZW_RULE_DEFAULT_INTRA;
      case model::RuleRef::Kind::kInter:
        return ZW_RULE_DEFAULT_INTER;
      case model::RuleRef::Kind::kRule:
        break;
    }
    auto it = rule_ids_.find(r.name);
    return it == rule_ids_.end() ? UINT32_MAX : it->second;
  }

  // Runs `frame` on `prog` at interface `iface` and on the model; returns
  // whether it passed (the datapath's answer).
  bool check(Prog prog, int iface, const Bytes& sent, const std::string& why) {
    const Bytes& frame = sent;
    // The kernel refuses to test-run a tc program on a frame whose ethertype
    // says IPv4/IPv6 but that is shorter than the fixed IP header (EINVAL);
    // such frames run on XDP (from the VM) or are left out (to the VM).
    bool short_ip = (frame[12] == 0x08 && frame[13] == 0x00 && frame.size() < 34) ||
                    (frame[12] == 0x86 && frame[13] == 0xdd && frame.size() < 54);
    if (short_ip && prog == Prog::kToVmTc) return false;
    if (short_ip) prog = Prog::kFromVmXdp;
    auto r = obs_->run(progs_[static_cast<int>(prog)].get(), prog, ifs_[iface].second, frame);
    ++packets;
    if (!r) {
      ADD_FAILURE() << "test_run: " << r.error().str() << " on " << frame.size()
                    << " bytes: " << model::describe(frame) << "\n"
                    << hex(frame);
      ++mismatches;
      return false;
    }
    int reason = r->reason, moved = r->reasons_moved;
    uint32_t rule = r->rule;
    model::Hook hook = prog == Prog::kToVmTc ? model::Hook::kToVm : model::Hook::kFromVm;
    model::Verdict m = model::judge(world_, hook, ifs_[iface].first, frame, flows_);
    reasons_seen[engine::reason_name(m.reason)]++;
    bool same = moved == 1 && r->pass == m.pass && reason == m.reason && rule == rule_id(m.rule);
    if (!same) {
      ++mismatches;
      ADD_FAILURE() << "MISMATCH seed " << seed_ << " round " << rounds << " packet " << packets
                    << " (" << why << ") on " << datapath::prog_name(prog) << " "
                    << ifs_[iface].first << "\n  frame: " << model::describe(frame) << "\n"
                    << hex(frame) << "\n  datapath: " << (r->pass ? "pass " : "drop ")
                    << (reason >= 0 ? engine::reason_name(reason) : "?") << " rule id " << rule
                    << " (" << moved << " reason counters moved)\n  model:    " << m.str()
                    << " (rule id " << rule_id(m.rule) << ")\n  policy:\n"
                    << policy_text_ << "\n  inventory:\n"
                    << inventory_text_;
    }
    return r->pass;
  }

  // ---- frames ----
  std::string addr_of_family(bool v6) {
    std::vector<std::string> c;
    for (const auto& vm : vms_)
      for (const auto& a : vm.addrs)
        if (test::is_v6(a) == v6) c.push_back(a);
    for (const auto& pool : kCidrs)
      for (const char* a : pool.inside)
        if (test::is_v6(a) == v6) c.push_back(a);
    for (const char* a : kWorld)
      if (test::is_v6(a) == v6) c.push_back(a);
    if (chance(0.1))
      for (const char* a : kSpecial)
        if (test::is_v6(a) == v6) c.push_back(a);
    return one(c);
  }

  Bytes l4_for(uint8_t proto, uint16_t& sport, uint16_t& dport, uint8_t& type) {
    sport = chance(0.5) ? static_cast<uint16_t>(32768 + pick(64)) : one(kPorts);
    dport = one(kPorts);
    if (chance(0.05))
      std::tie(sport, dport) = chance(0.5) ? std::pair{68, 67} : std::pair{546, 547};
    if (proto == kTcp) {
      static const std::vector<uint8_t> flags = {0x02, 0x02, 0x02, 0x12, 0x10, 0x04, 0x01,
                                                 0x00, 0x03, 0x06, 0x29, 0x18, 0x11, 0xc2};
      return test::tcp(sport, dport, chance(0.05) ? static_cast<uint8_t>(pick(256)) : one(flags));
    }
    if (proto == kUdp || proto == kSctp) return test::udp(sport, dport, 4);
    if (proto == kIcmp || proto == kIcmp6) {
      static const std::vector<uint8_t> t4 = {8, 8, 0, 13, 14, 3, 11, 5, 9, 10, 12, 4, 135, 134};
      static const std::vector<uint8_t> t6 = {128, 128, 129, 133, 134, 135, 136, 137,
                                              143, 130, 1,   2,   3,   4,   200, 8};
      type = chance(0.05) ? static_cast<uint8_t>(pick(256)) : one(proto == kIcmp ? t4 : t6);
      uint16_t id = static_cast<uint16_t>(pick(8));
      sport = dport = id;
      return test::icmp(type, 0, id);
    }
    return Bytes(8 + pick(8), 0x5a);
  }

  uint8_t any_proto(bool v6) {
    int p = static_cast<int>(pick(20));
    if (p < 7) return kTcp;
    if (p < 11) return kUdp;
    if (p < 15) return v6 ? kIcmp6 : kIcmp;
    if (p == 15) return kSctp;
    if (p == 16) return kGre;
    if (p == 17) return v6 ? kIcmp : kIcmp6;  // the other family's ICMP
    return static_cast<uint8_t>(pick(256));
  }

  Bytes with_mac(Bytes f, const Vm* vm) {
    net::Mac m = vm && vm->mac ? *vm->mac : net::Mac{0x52, 0x54, 0, 0x07, 0xee, 0xee};
    if (chance(0.03)) m[5] ^= 1;  // someone else's MAC
    std::copy(m.begin(), m.end(), f.begin() + 6);
    return f;
  }

  const Vm* vm_owning(const std::string& addr) const {
    for (const auto& vm : vms_)
      if (std::find(vm.addrs.begin(), vm.addrs.end(), addr) != vm.addrs.end() ||
          std::find(vm.allowed.begin(), vm.allowed.end(), addr) != vm.allowed.end())
        return &vm;
    return nullptr;
  }

  size_t zone_index(const std::string& zone) const {
    auto it = std::find(zone_names_.begin(), zone_names_.end(), zone);
    return it == zone_names_.end() ? 0 : static_cast<size_t>(it - zone_names_.begin()) + 1;
  }

  // Adversarial rewrites of an IP frame.
  Bytes mutate(Bytes f) {
    bool v4 = f.size() > 14 && f[12] == 0x08 && f[13] == 0x00;
    bool v6 = f.size() > 14 && f[12] == 0x86 && f[13] == 0xdd;
    switch (pick(9)) {
      case 0: {  // VLAN or QinQ tag
        Bytes tag = {static_cast<uint8_t>(chance(0.5) ? 0x81 : 0x88),
                     static_cast<uint8_t>(chance(0.5) ? 0x00 : 0xa8), 0, 5};
        f.insert(f.begin() + 12, tag.begin(), tag.end());
        return f;
      }
      case 1:  // truncated anywhere past Ethernet
        f.resize(14 + pick(f.size() - 13));
        return f;
      case 2:  // flipped bytes
        for (int i = 0, n = 1 + static_cast<int>(pick(3)); i < n; ++i)
          f[12 + pick(f.size() - 12)] ^= static_cast<uint8_t>(1 + pick(255));
        return f;
      case 3:  // fragments: MF, offsets, both, or DF only
        if (v4) {
          static const std::vector<uint16_t> frag = {0x2000, 0x0001, 0x2001,
                                                     0x4000, 0x1fff, 0x8000};
          uint16_t fo = one(frag);
          f[20] = fo >> 8, f[21] = fo & 0xff;
        } else if (v6) {
          insert_ext(f, {44});
        }
        return f;
      case 4:  // IPv4 options, IPv6 extension chains around the bound
        if (v4) {
          int words = 1 + static_cast<int>(pick(10));
          f[14] = static_cast<uint8_t>(0x40 | (5 + words));
          Bytes opts(words * 4, 1);                      // NOPs
          if (chance(0.2)) opts[0] = 0x94, opts[1] = 4;  // router alert
          f.insert(f.begin() + 34, opts.begin(), opts.end());
          if (chance(0.1)) f.resize(34 + pick(words * 4));  // options cut short
        } else if (v6) {
          std::vector<uint8_t> chain;
          static const std::vector<uint8_t> kinds = {0, 43, 60, 51, 135, 60, 60};
          int n = static_cast<int>(pick(ZW_MAX_IPV6_EXT + 3));
          for (int i = 0; i < n; ++i) chain.push_back(one(kinds));
          if (chance(0.15)) chain.push_back(44);
          insert_ext(f, chain);
        }
        return f;
      case 5:  // unknown ethertype
        f[12] = 0x88, f[13] = static_cast<uint8_t>(pick(256));
        return f;
      case 6:  // wrong IP version or IHL
        if (f.size() > 14) f[14] = static_cast<uint8_t>(pick(256));
        return f;
      case 7:  // random tail
        f.resize(14 + pick(60));
        for (size_t i = 14; i < f.size(); ++i) f[i] = static_cast<uint8_t>(pick(256));
        return f;
      default:  // longer payload
        f.insert(f.end(), pick(64), 0xcc);
        return f;
    }
  }

  // Inserts IPv6 extension headers of the given kinds after the fixed header.
  void insert_ext(Bytes& f, const std::vector<uint8_t>& kinds) {
    if (f.size() < 54 || kinds.empty()) return;
    uint8_t next = f[20];
    f[20] = kinds[0];
    Bytes chain;
    for (size_t i = 0; i < kinds.size(); ++i) {
      uint8_t nh = i + 1 < kinds.size() ? kinds[i + 1] : next;
      if (kinds[i] == 51) {  // AH: (len + 2) * 4 bytes
        chain.insert(chain.end(), {nh, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
      } else if (kinds[i] == 44) {
        chain.insert(chain.end(),
                     {nh, 0, 0, static_cast<uint8_t>(chance(0.5) ? 1 : 0), 0, 0, 0, 1});
      } else {
        uint8_t len = static_cast<uint8_t>(pick(2));
        chain.insert(chain.end(), {nh, len, 1, 4, 0, 0, 0, 0});
        chain.insert(chain.end(), len * 8, 0);
      }
    }
    f.insert(f.begin() + 54, chain.begin(), chain.end());
  }

  Bytes arp(const Vm* vm, const std::string& spa) {
    Bytes b = test::eth(0x0806);
    net::Mac m = vm && vm->mac ? *vm->mac : net::Mac{0x52, 0x54, 0, 0x07, 0xee, 0xee};
    if (chance(0.1)) m[4] ^= 0x40;
    b.insert(b.end(), {0, 1, 8, 0, 6, 4, 0, static_cast<uint8_t>(1 + pick(2))});
    b.insert(b.end(), m.begin(), m.end());
    uint8_t a[4] = {};
    inet_pton(AF_INET, spa.c_str(), a);
    b.insert(b.end(), a, a + 4);
    b.insert(b.end(), 10, 0);
    if (chance(0.1)) b[14 + pick(6)] ^= 0x01;  // another hardware/protocol type
    if (chance(0.05)) b.resize(14 + pick(28));
    return b;
  }

  // Delivers an IP frame along its path: the sender's from-VM hook (tc or
  // XDP) if a VM sent it, then the receiving VM's to-VM hook if it passed.
  void deliver(const Bytes& frame, const Vm* from, const Vm* to, const std::string& why) {
    bool pass = true;
    if (from)
      pass = check(chance(0.5) ? Prog::kFromVmTc : Prog::kFromVmXdp, from->iface, frame, why);
    if (pass && to) check(Prog::kToVmTc, to->iface, frame, why + ", delivered");
  }

  void remember(const std::string& src, const std::string& dst, uint8_t proto, uint16_t sport,
                uint16_t dport, uint8_t type, const Bytes& frame) {
    recent_.push_back({src, dst, proto, sport, dport, type, test::strip_eth(frame)});
    if (recent_.size() > 48) recent_.erase(recent_.begin());
  }

  void step() {
    uint64_t kind = pick(100);
    if (kind < 30 || recent_.empty() || vms_.empty()) {
      new_packet();
    } else if (kind < 60) {
      reply();
    } else if (kind < 72) {
      icmp_error();
    } else if (kind < 80) {
      link_layer();
    } else if (kind < 92) {
      repeat_mutated();
    } else {
      stray();
    }
  }

  // A VM or an outsider opens something.
  void new_packet() {
    const Vm* from = vms_.empty() || chance(0.25) ? nullptr : &one(vms_);
    bool v6 = chance(0.45);
    std::string src;
    if (from && !from->addrs.empty() && chance(0.92)) {
      std::vector<std::string> own;
      for (const auto& a : from->addrs)
        if (test::is_v6(a) == v6) own.push_back(a);
      for (const auto& a : from->allowed)
        if (test::is_v6(a) == v6 && chance(0.3)) own.push_back(a);
      src = own.empty() ? addr_of_family(v6) : one(own);
    } else {
      src = chance(0.1) ? (v6 ? "fe80::5054:ff:fe00:1" : "0.0.0.0") : addr_of_family(v6);
    }
    std::string dst = addr_of_family(v6);
    uint8_t proto = any_proto(v6), type = 0;
    uint16_t sport, dport;
    Bytes l4 = l4_for(proto, sport, dport, type);
    Bytes f = with_mac(test::ip(src, dst, proto, l4), from);
    remember(src, dst, proto, sport, dport, type, f);
    const Vm* to = vm_owning(dst);
    if (!from && !to && !vms_.empty()) to = &one(vms_);  // arrives anyway
    deliver(f, from, to, "new");
  }

  // The other side answers a remembered packet (SYN-ACK, ACK, echo reply...).
  void reply() {
    const Sent& s = one(recent_);
    Bytes l4;
    if (s.proto == kTcp) {
      static const std::vector<uint8_t> flags = {0x12, 0x12, 0x10, 0x14, 0x04, 0x11, 0x18, 0x02};
      l4 = test::tcp(s.dport, s.sport, one(flags));
    } else if (s.proto == kIcmp || s.proto == kIcmp6) {
      uint8_t t = s.icmp_type == 8     ? 0
                  : s.icmp_type == 128 ? 129
                  : s.icmp_type == 13  ? 14
                                       : s.icmp_type;
      l4 = test::icmp(t, 0, s.sport);
    } else if (s.proto == kUdp || s.proto == kSctp) {
      l4 = test::udp(s.dport, s.sport, 4);
    } else {
      l4 = Bytes(8, 0x5b);
    }
    bool same_dir = chance(0.2);  // or the opener again
    std::string src = same_dir ? s.src : s.dst, dst = same_dir ? s.dst : s.src;
    if (same_dir && s.proto == kTcp) l4 = test::tcp(s.sport, s.dport, chance(0.5) ? 0x10 : 0x18);
    const Vm* from = vm_owning(src);
    const Vm* to = vm_owning(dst);
    Bytes f = with_mac(test::ip(src, dst, s.proto, l4), from);
    if (!from && !to && !vms_.empty()) to = &one(vms_);
    deliver(f, from, to, same_dir ? "again" : "reply");
  }

  // An ICMP error quoting a remembered packet (or a mangled quote), sent by
  // its destination or by a router on the way.
  void icmp_error() {
    const Sent& s = one(recent_);
    bool v6 = test::is_v6(s.src);
    bool flip = chance(0.15);  // the wrong ICMP version for the quote
    uint8_t proto = (v6 != flip) ? kIcmp6 : kIcmp;
    static const std::vector<uint8_t> e4 = {3, 11, 12, 4, 5}, e6 = {1, 2, 3, 4};
    Bytes l4 = test::icmp(one(proto == kIcmp ? e4 : e6), 0, 0, 0);
    Bytes q = s.ip;
    size_t keep = q.size();
    if (chance(0.3)) keep = pick(q.size() + 1);
    l4.insert(l4.end(), q.begin(), q.begin() + keep);
    if (chance(0.1) && l4.size() > 20) l4[8 + 12 + pick(4)] ^= 0x01;  // a flow nobody has
    std::string src = chance(0.7) ? s.dst : addr_of_family(v6);
    const Vm* from = vm_owning(src);
    const Vm* to = vm_owning(s.src);
    Bytes f = with_mac(test::ip(src, s.src, proto, l4), from);
    if (!from && !to && !vms_.empty()) to = &one(vms_);
    deliver(f, from, to, "icmp error");
  }

  // ARP, DHCP and router/neighbour messages, on either hook.
  void link_layer() {
    const Vm& vm = one(vms_);
    uint64_t k = pick(4);
    Bytes f;
    if (k == 0) {
      std::string spa = "0.0.0.0";
      if (chance(0.6) && !vm.addrs.empty() && !test::is_v6(vm.addrs[0])) spa = vm.addrs[0];
      if (chance(0.3)) spa = addr_of_family(false);
      f = arp(&vm, spa);
    } else if (k == 1) {
      bool v6 = chance(0.5);
      uint16_t sp = v6 ? (chance(0.6) ? 546 : 547) : (chance(0.6) ? 68 : 67);
      uint16_t dp = v6 ? (sp == 546 ? 547 : 546) : (sp == 68 ? 67 : 68);
      if (chance(0.2)) dp = one(kPorts);
      f = with_mac(test::ip(v6 ? "fe80::1" : "0.0.0.0", v6 ? "ff02::1:2" : "255.255.255.255", kUdp,
                            test::udp(sp, dp)),
                   &vm);
    } else {
      static const std::vector<uint8_t> nd = {133, 134, 135, 135, 136, 136, 137, 130, 131, 143};
      std::vector<std::string> own6;
      for (const auto& a : vm.addrs)
        if (test::is_v6(a)) own6.push_back(a);
      auto pick6 = [&] {
        uint64_t k = pick(4);
        if (k == 0 && !own6.empty()) return one(own6);
        if (k == 1) return std::string(chance(0.5) ? "fe80::5054:ff:fe00:1" : "::");
        return addr_of_family(true);
      };
      std::string src = pick6();
      uint8_t type = one(nd);
      net::Mac ll = vm.mac && chance(0.8) ? *vm.mac : net::Mac{0x52, 0x54, 0, 9, 9, 9};
      Bytes msg = type == 135 || type == 136 || type == 137
                      ? test::nd(type, pick6(), chance(0.7) ? ll.data() : nullptr,
                                 chance(0.1) ? static_cast<uint8_t>(pick(4)) : 0)
                  : type == 133 ? test::nd(133, "", chance(0.7) ? ll.data() : nullptr)
                                : test::icmp(type);
      if (chance(0.1)) msg.resize(pick(msg.size() + 1));  // cut anywhere
      if (chance(0.05) && msg.size() > 25) msg[25] = 0;   // zero-length option
      if (msg.size() < 8) msg.resize(8, 0);
      f = with_mac(test::ip(src, chance(0.5) ? "ff02::1" : addr_of_family(true), kIcmp6, msg), &vm);
      if (chance(0.1)) insert_ext(f, {0});  // MLD comes with hop-by-hop
    }
    check(chance(0.5) ? Prog::kToVmTc : (chance(0.5) ? Prog::kFromVmTc : Prog::kFromVmXdp),
          vm.iface, f, "link layer");
  }

  // A remembered packet again, rewritten adversarially.
  void repeat_mutated() {
    const Sent& s = one(recent_);
    Bytes f = test::eth(test::is_v6(s.src) ? 0x86dd : 0x0800);
    f.insert(f.end(), s.ip.begin(), s.ip.end());
    const Vm* from = vm_owning(s.src);
    f = mutate(with_mac(f, from));
    const Vm* to = vm_owning(s.dst);
    if (!from && !to) to = &one(vms_);
    deliver(f, from, to, "mutated");
  }

  // A frame on an interface it has nothing to do with, including interfaces
  // without an endpoint.
  void stray() {
    const Sent& s = one(recent_);
    Bytes f = test::eth(test::is_v6(s.src) ? 0x86dd : 0x0800);
    f.insert(f.end(), s.ip.begin(), s.ip.end());
    if (chance(0.3)) f = mutate(f);
    int iface = static_cast<int>(pick(kIfaces));
    Prog p = chance(0.4) ? Prog::kToVmTc : (chance(0.5) ? Prog::kFromVmTc : Prog::kFromVmXdp);
    check(p, iface, f, "stray");
  }

  uint64_t seed_;
  std::mt19937_64 rng_;
  engine::Paths paths_;
  std::vector<std::pair<std::string, uint32_t>> ifs_;

  std::vector<std::string> zone_names_;
  std::set<std::string> taken_cidrs_;
  json zones_doc_;
  std::vector<Vm> vms_;
  std::string policy_text_, inventory_text_;
  uint64_t rule_serial_ = 0;
  std::map<std::string, uint32_t> rule_ids_;  // every name ever applied: ids are stable by name
  uint32_t max_rule_id_ = ZW_RULE_DEFAULT_INTER;
  policy::Policy policy_;
  model::World world_;
  model::Flows flows_;
  std::vector<Sent> recent_;
  UniqueFd progs_[3];
  std::optional<datapath::Maps> maps_;
  std::optional<test::Observer> obs_;
};

TEST_F(DifferentialTest, DatapathEqualsModelOnRandomPoliciesAndAdversarialFrames) {
  const uint64_t seed = env_u64("ZW_DIFF_SEED", 1);
  const uint64_t total = env_u64("ZW_DIFF_PACKETS", 100000);
  DiffRun run(seed, paths_, ifs_);
  auto t0 = std::chrono::steady_clock::now();
  bool ok = run.run(total);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "differential: seed %llu, %llu frames, %llu rounds, %llu applies (%.1f s), %.1f s, %llu "
      "mismatches\n",
      static_cast<unsigned long long>(seed), static_cast<unsigned long long>(run.packets),
      static_cast<unsigned long long>(run.rounds), static_cast<unsigned long long>(run.applies),
      run.apply_secs, secs, static_cast<unsigned long long>(run.mismatches));
  for (const auto& [name, n] : run.reasons_seen)
    std::printf("  %-22s %llu\n", name.c_str(), static_cast<unsigned long long>(n));
  EXPECT_TRUE(ok);
  EXPECT_GE(run.packets, total);
  // The generator must reach every reason the model can give, or the run
  // proves less than it claims. Exceptions: no policy (never the case once
  // applied) and a full table (1M flows; the model does not count them).
  for (int r = 0; r < ZW_R_MAX; ++r) {
    if (r == ZW_R_DROP_NO_POLICY || r == ZW_R_DROP_CT_FULL) continue;
    if (total >= 100000) {
      EXPECT_GT(run.reasons_seen[engine::reason_name(r)], 0u)
          << engine::reason_name(r) << " never seen";
    }
  }
}

}  // namespace
}  // namespace zw
