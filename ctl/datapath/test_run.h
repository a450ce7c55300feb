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

}  // namespace zw::datapath
