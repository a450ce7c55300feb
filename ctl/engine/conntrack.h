// The conntrack sweep: removes flows idle past their protocol's timeout and
// uncharges their VM interface's limit. The datapath also drops expired
// flows it meets; the sweep reclaims the ones no packet will meet again
// (the daemon runs it with every resync, `apply` once).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

#include "datapath/maps.h"
#include "util/result.h"

namespace zw::engine {

struct SweepReport {
  size_t scanned = 0;
  size_t expired = 0;  // deleted by this sweep
};

// `now_ns`: CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns (0: read it).
Result<SweepReport> sweep_conntrack(const datapath::Maps& maps, uint64_t now_ns = 0);

// Flows charged to each endpoint id with a non-zero count.
Result<std::map<uint32_t, uint32_t>> conntrack_usage(const datapath::Maps& maps);

}  // namespace zw::engine
