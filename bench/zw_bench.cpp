// zw_bench: the benchmark's tools, driven by scripts/bench/run.sh.
//   gen      write a generated policy, inventory, nft and iptables rulesets
//   cost     per-packet cost with BPF_PROG_TEST_RUN (own network namespace)
//   blast | xdp-drop | rr-server | rr-client    traffic tools (traffic.cpp)
//   apply-time | tap-latency | start-latency     control plane (control.cpp)
#include <linux/pkt_cls.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

#include "common.h"
#include "gen.h"
#include "util/net.h"
#include "zw_bench_bpf.skel.h"

namespace zw::bench {

bool sh(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }

test::Bytes udp_frame(const std::string& saddr, const std::string& daddr, uint16_t sport,
                      uint16_t dport, const std::string& src_mac, size_t size) {
  size_t hdr = 14 + (test::is_v6(saddr) ? 40 : 20) + 8;
  test::Bytes f = test::ip(saddr, daddr, 17, test::udp(sport, dport, size > hdr ? size - hdr : 0));
  auto mac = net::parse_mac(src_mac);
  if (mac) std::memcpy(f.data() + 6, mac->data(), 6);
  if (!test::is_v6(saddr)) {  // the IPv4 header checksum: the stack checks it
    uint32_t sum = 0;
    for (size_t i = 14; i < 34; i += 2) sum += (f[i] << 8) | f[i + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    f[24] = static_cast<uint8_t>(~sum >> 8);
    f[25] = static_cast<uint8_t>(~sum & 0xff);
  }
  return f;
}

Result<RunOut> test_run(int prog_fd, Hook hook, uint32_t ifindex, const test::Bytes& frame,
                        uint32_t repeat) {
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()),
              .repeat = static_cast<int>(repeat));
  __sk_buff skb{};
  xdp_md xdp{};
  if (hook == Hook::kXdp) {
    xdp.data_end = static_cast<uint32_t>(frame.size());
    xdp.ingress_ifindex = ifindex;
    opts.ctx_in = &xdp;
    opts.ctx_size_in = sizeof xdp;
  } else {
    skb.ifindex = ifindex;
    opts.ctx_in = &skb;
    opts.ctx_size_in = sizeof skb;
  }
  if (bpf_prog_test_run_opts(prog_fd, &opts) != 0) return fail(Error::sys("BPF_PROG_TEST_RUN"));
  return RunOut{static_cast<double>(opts.duration), opts.retval};
}

Result<Reference> Reference::load() {
  zw_bench_bpf* s = zw_bench_bpf__open_and_load();
  if (!s) return fail(Error::sys("load reference programs (zw_bench_bpf)"));
  return Reference(s);
}
Reference::~Reference() {
  if (s_) zw_bench_bpf__destroy(s_);
}
int Reference::xdp_pass() const { return bpf_program__fd(s_->progs.bench_xdp_pass); }
int Reference::xdp_drop() const { return bpf_program__fd(s_->progs.bench_xdp_drop); }
int Reference::tc_pass() const { return bpf_program__fd(s_->progs.bench_tc_pass); }
int Reference::vary(Hook h) const {
  return bpf_program__fd(h == Hook::kXdp ? s_->progs.bench_vary_xdp : s_->progs.bench_vary_tc);
}
Status Reference::set_next(Hook h, int prog_fd) const {
  uint32_t zero = 0;
  int map = bpf_map__fd(h == Hook::kXdp ? s_->maps.bench_next_xdp : s_->maps.bench_next_tc);
  if (bpf_map_update_elem(map, &zero, &prog_fd, BPF_ANY) != 0)
    return fail(Error::sys("set the varying wrapper's tail call"));
  return {};
}
void Reference::vary_dport(bool on) const { s_->bss->bench_vary_dport = on ? 1 : 0; }
int Reference::ct_insert() const { return bpf_program__fd(s_->progs.bench_ct_insert); }
int Reference::ct_insert_map() const { return bpf_map__fd(s_->maps.bench_ct); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

namespace {

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  return static_cast<bool>(f);
}

int run_gen(int argc, char** argv) {
  CLI::App app{"write a generated policy, inventory and equivalent nft/iptables rulesets"};
  GenSpec s;
  std::string out, real;
  app.add_option("--zones", s.zones)->capture_default_str();
  app.add_option("--vms", s.vms)->capture_default_str();
  app.add_option("--rules", s.rules)->capture_default_str();
  app.add_option("--ports-per-rule", s.ports_per_rule)->capture_default_str();
  app.add_option("--real", real, "VM:IFNAME,... interfaces that exist");
  app.add_option("--tcp-ports", s.tcp_ports, "a first rule: z0 -> z1 tcp these ports");
  app.add_option("--out", out, "file prefix: PREFIX.policy.json, .inventory.json, .nft, .ipt")
      ->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  size_t pos = 0;
  while (pos < real.size()) {
    size_t comma = real.find(',', pos);
    std::string item =
        real.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t colon = item.find(':');
    if (colon == std::string::npos) {
      std::fprintf(stderr, "gen: --real: '%s' is not VM:IFNAME\n", item.c_str());
      return 2;
    }
    s.real.push_back({std::stoi(item.substr(0, colon)), item.substr(colon + 1)});
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (s.zones < 2 || s.vms < 2 || s.rules < 1) {
    std::fprintf(stderr, "gen: need at least 2 zones, 2 VMs and 1 rule\n");
    return 2;
  }
  bool ok = write_file(out + ".policy.json", policy_json(s)) &&
            write_file(out + ".inventory.json", inventory_json(s)) &&
            write_file(out + ".nft", nft_ruleset(s, "zwbench")) &&
            write_file(out + ".ipt", iptables_ruleset(s));
  if (!ok) {
    std::fprintf(stderr, "gen: cannot write %s.*\n", out.c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace zw::bench

int main(int argc, char** argv) {
  using namespace zw::bench;
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: zw_bench gen|cost|blast|xdp-drop|rr-server|rr-client|apply-time|"
                 "tap-latency|start-latency [options]\n");
    return 2;
  }
  std::string cmd = argv[1];
  // Subcommands parse their own options from argv[1..].
  if (cmd == "gen") return run_gen(argc - 1, argv + 1);
  if (cmd == "cost") return run_cost(argc - 1, argv + 1);
  if (cmd == "blast" || cmd == "xdp-drop" || cmd == "rr-server" || cmd == "rr-client")
    return run_traffic(argc, argv);
  if (cmd == "apply-time" || cmd == "tap-latency" || cmd == "start-latency")
    return run_control(argc, argv);
  std::fprintf(stderr, "zw_bench: unknown subcommand '%s'\n", cmd.c_str());
  return 2;
}
