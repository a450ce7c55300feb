// Ring buffer consumer (libbpf ring_buffer) and program run-time statistics.
#include "datapath/events.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace zw::datapath {

struct EventReader::State {
  Handler handler;
  UniqueFd map_fd;
  ring_buffer* rb = nullptr;
  ~State() {
    if (rb) ring_buffer__free(rb);
  }
};

namespace {
int on_sample(void* ctx, void* data, size_t size) {
  auto* s = static_cast<EventReader::Handler*>(ctx);
  if (size < sizeof(zw_event)) return 0;  // not ours: ignore
  zw_event e;
  std::memcpy(&e, data, sizeof e);
  (*s)(e);
  return 0;
}
}  // namespace

EventReader::EventReader(std::unique_ptr<State> s) : s_(std::move(s)) {}
EventReader::EventReader(EventReader&&) noexcept = default;
EventReader& EventReader::operator=(EventReader&&) noexcept = default;
EventReader::~EventReader() = default;

Result<EventReader> EventReader::open(int events_map_fd, Handler on_event) {
  auto s = std::make_unique<State>();
  s->handler = std::move(on_event);
  s->map_fd.reset(fcntl(events_map_fd, F_DUPFD_CLOEXEC, 3));
  if (!s->map_fd) return fail(Error::sys("dup zw_events fd"));
  s->rb = ring_buffer__new(s->map_fd.get(), on_sample, &s->handler, nullptr);
  if (!s->rb) return fail(Error::sys("ring_buffer__new zw_events"));
  return EventReader(std::move(s));
}

Result<int> EventReader::poll(int timeout_ms) {
  int n = timeout_ms > 0 ? ring_buffer__poll(s_->rb, timeout_ms) : ring_buffer__consume(s_->rb);
  if (n < 0) {
    if (n == -EINTR) return 0;
    return fail(Error(ErrorKind::kSystem, "ring_buffer poll zw_events", -n));
  }
  return n;
}

int EventReader::fd() const { return ring_buffer__epoll_fd(s_->rb); }

Result<ProgRunStats> prog_run_stats(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0)
    return fail(Error::sys("bpf_obj_get_info_by_fd prog"));
  return ProgRunStats{info.id, info.run_time_ns, info.run_cnt};
}

namespace {
std::atomic<int> g_held{0};  // run-time stats fds this process holds
}

RunTimeStats::~RunTimeStats() {
  if (fd_) --g_held;
}

RunTimeStats& RunTimeStats::operator=(RunTimeStats&& o) noexcept {
  if (this != &o) {
    if (fd_) --g_held;
    fd_ = std::move(o.fd_);
  }
  return *this;
}

Result<RunTimeStats> enable_run_time_stats() {
  int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) return fail(Error::sys("bpf_enable_stats(BPF_STATS_RUN_TIME)"));
  ++g_held;
  return RunTimeStats(UniqueFd(fd));
}

bool run_time_stats_enabled() {
  // The sysctl reads back only what was written to it, not the fds held.
  if (g_held.load() > 0) return true;
  FILE* f = std::fopen("/proc/sys/kernel/bpf_stats_enabled", "r");
  if (!f) return false;
  int v = 0;
  bool ok = std::fscanf(f, "%d", &v) == 1;
  std::fclose(f);
  return ok && v != 0;
}

}  // namespace zw::datapath
