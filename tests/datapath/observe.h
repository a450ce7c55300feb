// Runs one frame through a loaded program with BPF_PROG_TEST_RUN and reads
// what the program decided from its own per-CPU counters: the one reason
// counter and the (at most one) rule counter that moved. Observes the
// production programs unchanged. Shared by the differential test and the
// datapath fuzzer. Make a new Observer after an apply (new maps or rule ids).
#pragma once

#include <cstdint>
#include <vector>

#include "datapath/maps.h"
#include "datapath/test_run.h"

namespace zw::test {

struct Observed {
  bool pass = false;
  int reason = -1;        // -1: no reason counter moved
  int reasons_moved = 0;  // must be exactly 1
  uint32_t rule = 0;      // ZW_RULE_NONE if no rule counter moved
};

class Observer {
 public:
  // `max_rule_id`: the highest rule id the policy uses (counters above are not read).
  Observer(int st_reason_fd, int st_rule_fd, uint32_t max_rule_id)
      : reason_fd_(st_reason_fd), rule_fd_(st_rule_fd), max_rule_(max_rule_id) {}

  Result<Observed> run(int prog_fd, datapath::Prog kind, uint32_t ifindex,
                       const std::vector<uint8_t>& frame) const {
    // Nothing else runs these maps' programs (a private pin directory), so
    // the counters after one frame are the counters before the next.
    std::vector<uint64_t> before = last_.empty() ? counts() : std::move(last_);
    last_.clear();
    auto r = datapath::test_run(prog_fd, kind, ifindex, frame);
    if (!r) return fail(std::move(r.error()));
    std::vector<uint64_t> after = counts();
    last_ = after;
    Observed o;
    o.pass = r->pass;
    for (size_t i = 0; i < ZW_R_MAX; ++i)
      if (after[i] != before[i]) o.reason = static_cast<int>(i), ++o.reasons_moved;
    for (size_t i = ZW_R_MAX; i < after.size(); ++i)
      if (after[i] != before[i]) o.rule = static_cast<uint32_t>(i - ZW_R_MAX);
    return o;
  }

 private:
  // Reason counters, then rule counters 0..max_rule_ (packets, summed over CPUs).
  std::vector<uint64_t> counts() const {
    std::vector<uint64_t> c;
    auto add = [](auto& acc, const auto& one) { acc.packets += one.packets; };
    for (uint32_t r = 0; r < ZW_R_MAX; ++r) {
      auto v = datapath::percpu_sum<zw_counter>(reason_fd_, r, add);
      c.push_back(v ? v->packets : 0);
    }
    for (uint32_t id = 0; id <= max_rule_; ++id) {
      auto v = datapath::percpu_sum<zw_rule_stats>(rule_fd_, id, add);
      c.push_back(v ? v->packets : 0);
    }
    return c;
  }

  int reason_fd_, rule_fd_;
  uint32_t max_rule_;
  mutable std::vector<uint64_t> last_;
};

}  // namespace zw::test
