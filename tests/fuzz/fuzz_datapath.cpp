// libFuzzer target: the datapath on arbitrary frames, compared with the
// reference model. Needs root and bpffs. Set up once: a private network
// namespace, veths standing in for taps, a fixed policy and inventory applied
// by the real control plane. Input: one selector byte (program and
// interface), then the frame. Conntrack state carries from input to input on
// both sides (cleared every few seconds, well inside the shortest timeout);
// any difference in verdict, reason or rule aborts with both answers.
#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "../datapath/observe.h"
#include "datapath/maps.h"
#include "datapath/object.h"
#include "engine/conntrack.h"
#include "engine/inspect.h"
#include "engine/reconcile.h"
#include "engine/state.h"
#include "inventory/static_json.h"
#include "model/model.h"
#include "policy/json.h"

using namespace zw;
using datapath::Prog;

namespace {

const char* kPolicy = R"({
  "version": 1,
  "defaults": {"intra_zone": "allow", "inter_zone": "deny"},
  "zones": {
    "web": {"vms": ["web-*"]},
    "db": {"vms": ["db-*"]},
    "lab": {"vms": ["lab-*"], "mode": "audit", "hygiene": {"nd": false, "dhcp_server": false}, "max_flows": 8},
    "office": {"cidrs": ["198.51.100.0/24", "2001:db8:1::/48"]}
  },
  "rules": [
    {"name": "web-db-pg", "from": "web", "to": "db", "proto": "tcp", "ports": [5432, "8000-8999"], "action": "allow"},
    {"name": "office-web", "from": "office", "to": "web", "proto": "tcp", "ports": [80, 443], "action": "allow"},
    {"name": "dns", "from": "*", "to": "db", "proto": "udp", "ports": [53], "action": "allow"},
    {"name": "ping", "from": "*", "to": "*", "proto": "icmp", "icmp_types": [8], "action": "allow"},
    {"name": "ping6", "from": "*", "to": "*", "proto": "icmpv6", "icmp_types": [128], "action": "allow"},
    {"name": "gre-audit", "from": "web", "to": "world", "proto": 47, "action": "deny", "audit": true},
    {"name": "db-web-deny", "from": "db", "to": "web", "action": "deny"}
  ]
})";

const char* kInventory = R"({"vms": [
  {"name": "web-1", "interfaces": [{"name": "zwf0", "mac": "52:54:00:00:00:01", "ips": ["10.1.0.1", "fd00::1"]}]},
  {"name": "db-1", "interfaces": [{"name": "zwf1", "mac": "52:54:00:00:00:02", "ips": ["10.1.0.2", "fd00::2"]}]},
  {"name": "lab-1", "interfaces": [{"name": "zwf2", "mac": "52:54:00:00:00:03", "ips": ["10.1.0.3"], "allowed_addresses": ["10.1.0.100"]}]},
  {"name": "free", "interfaces": [{"name": "zwf3"}]}
]})";
constexpr int kIfaces = 5;  // zwf4 has no endpoint

struct Setup {
  engine::Paths paths;
  policy::Policy policy;
  model::World world;
  model::Flows flows;
  std::optional<datapath::Maps> maps;
  std::optional<test::Observer> obs;
  UniqueFd progs[3];
  uint32_t ifindex[kIfaces] = {};
  std::map<std::string, uint32_t> rule_ids;
  uint32_t max_rule = ZW_RULE_DEFAULT_INTER;
  std::chrono::steady_clock::time_point cleared;
};
Setup* S = nullptr;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "fuzz_datapath: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

void cleanup() {
  if (!S) return;
  if (auto lock = engine::PinLock::acquire(S->paths.pin_dir)) (void)engine::down(S->paths);
  std::string cmd = "rm -rf '" + S->paths.pin_dir + "' 2>/dev/null";
  (void)std::system(cmd.c_str());
}

// The real sweep with a clock far past every timeout: every flow deleted and
// uncharged from its VM interface's limit.
void clear_flows() {
  if (auto swept = engine::sweep_conntrack(*S->maps, uint64_t{1} << 62); !swept)
    die("sweep: " + swept.error().str());
  S->flows.clear();
  S->cleared = std::chrono::steady_clock::now();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (geteuid() != 0) die("needs root (CAP_BPF, CAP_NET_ADMIN) and bpffs");
  if (unshare(CLONE_NEWNET) != 0) die("unshare(CLONE_NEWNET) failed");
  S = new Setup;
  const char* pin = std::getenv("ZW_FUZZ_PIN_DIR");
  S->paths = engine::make_paths(
      pin && *pin ? pin : "/sys/fs/bpf/zw-model-fuzz-" + std::to_string(getpid()));
  datapath::install_libbpf_logger();
  if (auto st = datapath::ensure_bpffs(S->paths.pin_dir); !st) die(st.error().str());
  for (int i = 0; i < kIfaces; ++i) {
    std::string n = "zwf" + std::to_string(i);
    std::string cmd = "ip link add " + n + " type veth peer name " + n + "p";
    if (std::system(cmd.c_str()) != 0) die("cannot create " + n);
    S->ifindex[i] = if_nametoindex(n.c_str());
  }
  std::atexit(cleanup);
  auto p = policy::parse(kPolicy, "fuzz-policy.json");
  auto inv = inventory::parse_static(kInventory, "fuzz-inventory.json");
  if (!p || !inv) die("fixed policy or inventory does not parse");
  {
    auto lock = engine::PinLock::acquire(S->paths.pin_dir);
    if (!lock) die(lock.error().str());
    engine::ApplyInput in{.policy = &*p,
                          .inventory = &*inv,
                          .policy_source = "fuzz-policy.json",
                          .inventory_source = "fuzz-inventory.json",
                          .default_attach = "tc",
                          .keep_hooked = {}};
    auto rep = engine::apply(S->paths, in);
    if (!rep) die("apply: " + rep.error().str());
  }
  auto st = engine::read_state(S->paths);
  if (!st || !*st) die("no state after apply");
  for (const auto& [name, id] : (*st)->rule_ids) {
    S->rule_ids[name] = id;
    S->max_rule = std::max(S->max_rule, id);
  }
  S->policy = std::move(*p);
  S->world.policy = &S->policy;
  S->world.generation = 1;
  auto addr = [](const char* a) { return model::Ip::from(*net::parse_addr(a)); };
  auto mac = [](uint8_t last) { return net::Mac{0x52, 0x54, 0, 0, 0, last}; };
  S->world.endpoints = {{"zwf0", "web", mac(1), {addr("10.1.0.1"), addr("fd00::1")}, {}},
                        {"zwf1", "db", mac(2), {addr("10.1.0.2"), addr("fd00::2")}, {}},
                        {"zwf2", "lab", mac(3), {addr("10.1.0.3")}, {addr("10.1.0.100")}},
                        {"zwf3", "unzoned", std::nullopt, {}, {}}};
  for (Prog pr : {Prog::kFromVmTc, Prog::kFromVmXdp, Prog::kToVmTc}) {
    auto fd = datapath::open_pinned_prog(S->paths.pin_dir, pr);
    if (!fd) die(fd.error().str());
    S->progs[static_cast<int>(pr)] = std::move(*fd);
  }
  auto maps = datapath::open_pinned_maps(S->paths.pin_dir);
  if (!maps) die(maps.error().str());
  S->maps = std::move(*maps);
  S->obs.emplace(S->maps->st_reason.get(), S->maps->st_rule.get(), S->max_rule);
  clear_flows();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 + 14 || size > 1 + 1514) return -1;  // a frame the kernel would run
  if (std::chrono::steady_clock::now() - S->cleared > std::chrono::seconds(5)) clear_flows();
  uint8_t sel = data[0];
  Prog prog = static_cast<Prog>(sel % 3);
  int iface = (sel / 3) % kIfaces;
  std::vector<uint8_t> frame(data + 1, data + size);
  // The kernel refuses tc test runs of IP frames shorter than the IP header.
  bool short_ip = (frame[12] == 0x08 && frame[13] == 0x00 && frame.size() < 34) ||
                  (frame[12] == 0x86 && frame[13] == 0xdd && frame.size() < 54);
  if (short_ip && prog == Prog::kToVmTc) return -1;
  if (short_ip) prog = Prog::kFromVmXdp;
  model::Hook hook = prog == Prog::kToVmTc ? model::Hook::kToVm : model::Hook::kFromVm;
  const std::string ifname = "zwf" + std::to_string(iface);
  auto got = S->obs->run(S->progs[static_cast<int>(prog)].get(), prog, S->ifindex[iface], frame);
  if (!got) die("test_run: " + got.error().str());
  model::Verdict m = model::judge(S->world, hook, ifname, frame, S->flows);
  uint32_t mrule = m.rule.kind == model::RuleRef::Kind::kNone    ? ZW_RULE_NONE
                   : m.rule.kind == model::RuleRef::Kind::kIntra ? ZW_RULE_DEFAULT_INTRA
                   : m.rule.kind == model::RuleRef::Kind::kInter ? ZW_RULE_DEFAULT_INTER
                                                                 : S->rule_ids.at(m.rule.name);
  if (got->reasons_moved != 1 || got->pass != m.pass || got->reason != m.reason ||
      got->rule != mrule) {
    std::string hex;
    char b[4];
    for (uint8_t x : frame) std::snprintf(b, sizeof b, "%02x", x), hex += b;
    std::string msg = std::string("MISMATCH on ") + datapath::prog_name(prog) + " zwf" +
                      std::to_string(iface) + "\n  frame: " + model::describe(frame) + "\n  " +
                      hex + "\n  datapath: " + (got->pass ? "pass " : "drop ") +
                      (got->reason >= 0 ? engine::reason_name(got->reason) : "?") + " rule id " +
                      std::to_string(got->rule) + "\n  model:    " + m.str();
    cleanup();
    die(msg);
  }
  return 0;
}
