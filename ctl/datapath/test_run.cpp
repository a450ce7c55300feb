// BPF_PROG_TEST_RUN for tc (with an __sk_buff naming the interface) and XDP
// (with an xdp_md naming the ingress interface).
#include "datapath/test_run.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

#include "zonewall/abi/zonewall.h"

namespace zw::datapath {

namespace {

// The raw return of one run. tc: the interface goes in __sk_buff.ifindex
// (must exist here) or, with `via_cb`, in cb[0] for a ZW_RUN_VERDICT program.
Result<uint32_t> run_once(int prog_fd, Prog kind, uint32_t ifindex,
                          const std::vector<uint8_t>& frame, bool via_cb) {
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
    if (via_cb)
      skb.cb[0] = ifindex;
    else
      skb.ifindex = ifindex;
    opts.ctx_in = &skb;
    opts.ctx_size_in = sizeof skb;
  }
  if (bpf_prog_test_run_opts(prog_fd, &opts) != 0)
    return fail(Error::sys(std::string("BPF_PROG_TEST_RUN ") + prog_name(kind)));
  return opts.retval;
}

}  // namespace

bool RunVerdict::pass() const { return reason < ZW_R_FIRST_DROP; }

Result<RunVerdict> test_run_verdict(int prog_fd, Prog kind, uint32_t ifindex,
                                    const std::vector<uint8_t>& frame) {
  auto rv = run_once(prog_fd, kind, ifindex, frame, true);
  if (!rv) return fail(std::move(rv.error()));
  RunVerdict v;
  v.rule_id = ZW_VERDICT_RULE(*rv);
  v.reason = static_cast<int>(ZW_VERDICT_REASON(*rv));
  if (v.reason >= ZW_R_MAX)
    return fail(Error(ErrorKind::kInvalid, std::string(prog_name(kind)) + " returned " +
                                               std::to_string(*rv) +
                                               ", not a verdict (loaded without ZW_RUN_VERDICT?)"));
  return v;
}

Result<TestRunResult> test_run(int prog_fd, Prog kind, uint32_t ifindex,
                               const std::vector<uint8_t>& frame) {
  auto rv = run_once(prog_fd, kind, ifindex, frame, false);
  if (!rv) return fail(std::move(rv.error()));
  TestRunResult r;
  r.retval = *rv;
  r.pass = kind == Prog::kFromVmXdp ? r.retval == XDP_PASS : r.retval == TC_ACT_OK;
  return r;
}

}  // namespace zw::datapath
