// CLOCK_MONOTONIC in nanoseconds: the clock of bpf_ktime_get_ns and, a tick
// behind, bpf_ktime_get_coarse_ns (conntrack's last_seen).
#pragma once

#include <time.h>

#include <cstdint>

namespace zw {

inline uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ULL + uint64_t(ts.tv_nsec);
}

}  // namespace zw
