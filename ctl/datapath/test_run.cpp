// BPF_PROG_TEST_RUN for tc (with an __sk_buff naming the interface) and XDP
// (with an xdp_md naming the ingress interface).
#include "datapath/test_run.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

namespace zw::datapath {

Result<TestRunResult> test_run(int prog_fd, Prog kind, uint32_t ifindex,
                               const std::vector<uint8_t>& frame) {
  std::vector<uint8_t> out(frame.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = out.data(),
              .data_size_in = static_cast<uint32_t>(frame.size()),
              .data_size_out = static_cast<uint32_t>(out.size()), .repeat = 1);
  __sk_buff skb{};
  xdp_md xdp{};
  if (kind == Prog::kFromVmXdp) {
    xdp.data_end = static_cast<uint32_t>(frame.size());
    xdp.ingress_ifindex = ifindex;
    opts.ctx_in = &xdp;
    opts.ctx_size_in = sizeof xdp;
  } else {
    skb.ifindex = ifindex;
    opts.ctx_in = &skb;
    opts.ctx_size_in = sizeof skb;
  }
  if (bpf_prog_test_run_opts(prog_fd, &opts) != 0)
    return fail(Error::sys(std::string("BPF_PROG_TEST_RUN ") + prog_name(kind)));
  TestRunResult r;
  r.retval = opts.retval;
  r.pass = kind == Prog::kFromVmXdp ? opts.retval == XDP_PASS : opts.retval == TC_ACT_OK;
  return r;
}

}  // namespace zw::datapath
