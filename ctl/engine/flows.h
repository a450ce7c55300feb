// Flow and deny events made readable: names from state.json (VMs, zones,
// rules), wall-clock time, a JSON object per event and a text line; and the
// collector the daemon runs (the ring buffer's one reader), which keeps the
// recent events, streams them to `flows --follow` clients and optionally
// appends them to a flow log as JSON lines.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "engine/state.h"
#include "util/fd.h"
#include "util/net.h"
#include "util/result.h"
#include "zonewall/abi/zonewall.h"

namespace zw::datapath {
class EventReader;
}

namespace zw::engine {

struct FlowNames {
  struct Ep {
    std::string vm, ifname, zone;
  };
  std::map<uint32_t, Ep> endpoints;  // by zw_st_ep id
  std::map<net::Addr, std::string> vm_of_addr;
  std::map<uint16_t, std::string> zones;  // by zone id, built-ins included
  std::map<uint32_t, std::string> rules;  // by rule id, defaults included
};
FlowNames flow_names(const State& s);

// CLOCK_REALTIME - CLOCK_MONOTONIC now, to date bpf_ktime_get_ns stamps.
int64_t monotonic_to_realtime_ns();

// {"time", "verdict" (allow|deny|audit), "reason", "rule", "hook", "vm",
//  "ifname", "proto", "src"/"dst" {"addr","port","vm","zone"}, ...}
nlohmann::json event_json(const zw_event& e, const FlowNames& n, int64_t mono_to_real_ns);
// One line for people: time verdict src -> dst proto rule reason.
std::string event_text(const nlohmann::json& ev);

class FlowCollector {
 public:
  struct Options {
    Paths paths;
    size_t keep = 1000;    // recent events kept in memory
    std::string flow_log;  // append JSON lines here ("" = none)
  };
  explicit FlowCollector(Options o);
  ~FlowCollector();
  FlowCollector(const FlowCollector&) = delete;
  FlowCollector& operator=(const FlowCollector&) = delete;

  // Starts the reader thread on the zw_events map.
  Status start(int events_map_fd);
  void stop();
  // The most recent events, oldest first, at most `limit`.
  std::vector<nlohmann::json> recent(size_t limit) const;
  // Streams every later event to `client` as one JSON line each, until it
  // hangs up (a client that cannot keep up misses events, never blocks).
  void follow(UniqueFd client);
  uint64_t received() const { return received_.load(); }

 private:
  void loop(datapath::EventReader& reader);
  void refresh_names();
  void deliver(const zw_event& e);

  Options o_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  mutable std::mutex mu_;  // guards recent_ and followers_
  std::deque<nlohmann::json> recent_;
  std::vector<UniqueFd> followers_;
  FlowNames names_;  // reader thread only
  int64_t names_mtime_ = -1;
  int64_t mono_to_real_ = 0;
  FILE* log_ = nullptr;
};

}  // namespace zw::engine
