// Helpers shared by the benchmark subcommands: shell-outs, frames of the
// generated VMs, BPF_PROG_TEST_RUN with repeat, and the reference programs.
#pragma once

#include <bpf/bpf.h>

#include <cstdint>
#include <string>
#include <vector>

#include "packet.h"  // tests/datapath: frame builders
#include "util/result.h"

struct zw_bench_bpf;

namespace zw::bench {

bool sh(const std::string& cmd);

// An IPv4 or IPv6 UDP frame of `size` bytes (>= headers) from VM `src`
// (address given) to `dst`, with VM src's MAC as source.
test::Bytes udp_frame(const std::string& saddr, const std::string& daddr, uint16_t sport,
                      uint16_t dport, const std::string& src_mac, size_t size = 64);

enum class Hook { kXdp, kTc };

struct RunOut {
  double ns = 0;        // per run, as the kernel measured it
  uint32_t retval = 0;  // program return
};

// BPF_PROG_TEST_RUN `repeat` times on the frame as if it arrived on ifindex.
Result<RunOut> test_run(int prog_fd, Hook hook, uint32_t ifindex, const test::Bytes& frame,
                        uint32_t repeat);

// The reference programs, loaded (not attached).
class Reference {
 public:
  static Result<Reference> load();
  Reference(Reference&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  Reference& operator=(Reference&&) = delete;
  ~Reference();
  int xdp_pass() const;
  int xdp_drop() const;
  int tc_pass() const;
  // The varying-tuple wrapper (trivial.bpf.c): bumps a port, then
  // tail-calls the program set with set_next.
  int vary(Hook h) const;
  Status set_next(Hook h, int prog_fd) const;
  void vary_dport(bool on) const;
  // A conntrack-shaped hash insert alone (trivial.bpf.c), and its map.
  int ct_insert() const;
  int ct_insert_map() const;

 private:
  explicit Reference(zw_bench_bpf* s) : s_(s) {}
  zw_bench_bpf* s_;
};

double median(std::vector<double> v);

int run_cost(int argc, char** argv);
int run_traffic(int argc, char** argv);
int run_control(int argc, char** argv);

}  // namespace zw::bench
