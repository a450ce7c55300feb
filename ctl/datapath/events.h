// The datapath's flow/deny events (zw_events ring buffer) and the kernel's
// BPF run-time statistics of the programs. A ring buffer has one consumer:
// whoever reads an event takes it from everyone else.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "util/fd.h"
#include "util/result.h"
#include "zonewall/abi/zonewall.h"

struct ring_buffer;

namespace zw::datapath {

class EventReader {
 public:
  using Handler = std::function<void(const zw_event&)>;
  // Reads the ring buffer behind `events_map_fd` (the fd is duplicated).
  static Result<EventReader> open(int events_map_fd, Handler on_event);
  EventReader(EventReader&&) noexcept;
  EventReader& operator=(EventReader&&) noexcept;
  ~EventReader();

  // Waits up to timeout_ms (0: no wait) and hands every available event to
  // the handler; returns how many.
  Result<int> poll(int timeout_ms);
  // Becomes readable when events wait (for an outer poll loop).
  int fd() const;

 private:
  struct State;
  explicit EventReader(std::unique_ptr<State> s);
  std::unique_ptr<State> s_;
};

struct ProgRunStats {
  uint32_t id = 0;
  uint64_t run_time_ns = 0;  // while BPF statistics were enabled
  uint64_t run_cnt = 0;
};
Result<ProgRunStats> prog_run_stats(int prog_fd);

// BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): the kernel times every program run
// for as long as the returned handle lives.
class RunTimeStats {
 public:
  RunTimeStats() = default;
  RunTimeStats(RunTimeStats&&) noexcept = default;
  RunTimeStats& operator=(RunTimeStats&& o) noexcept;
  ~RunTimeStats();

 private:
  friend Result<RunTimeStats> enable_run_time_stats();
  explicit RunTimeStats(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};
Result<RunTimeStats> enable_run_time_stats();
// Whether program runs are being timed, as far as this process can tell:
// it holds a RunTimeStats, or kernel.bpf_stats_enabled was set to 1 (an fd
// another process holds does not show in the sysctl).
bool run_time_stats_enabled();

}  // namespace zw::datapath
