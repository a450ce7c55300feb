// Runs a loaded program on one frame with BPF_PROG_TEST_RUN, as if it had
// arrived on `ifindex`: the same code and maps real traffic meets. Used by
// the datapath tests (and by `trace` later).
#pragma once

#include <cstdint>
#include <vector>

#include "datapath/object.h"
#include "util/result.h"

namespace zw::datapath {

struct TestRunResult {
  bool pass = false;    // the program let the frame through
  uint32_t retval = 0;  // raw program return (TC_ACT_* / XDP_*)
};

Result<TestRunResult> test_run(int prog_fd, Prog kind, uint32_t ifindex,
                               const std::vector<uint8_t>& frame);

// What a ZW_RUN_VERDICT program returned, decoded (ZW_VERDICT_*).
struct RunVerdict {
  uint32_t rule_id = 0;  // ZW_RULE_NONE if no rule decided
  int reason = 0;        // enum zw_reason
  bool pass() const;
};

// Runs a program loaded with ZW_RUN_VERDICT (LoadOptions::run_mode). The tc
// programs get the interface through __sk_buff.cb[0], so `ifindex` need not
// exist in this network namespace (synthetic endpoints of `zonewall test`);
// XDP needs a real interface here.
Result<RunVerdict> test_run_verdict(int prog_fd, Prog kind, uint32_t ifindex,
                                    const std::vector<uint8_t>& frame);

}  // namespace zw::datapath
