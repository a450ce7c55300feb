// Prometheus metrics: `zonewall daemon --metrics ADDRESS:PORT` serves
// GET /metrics in the text exposition format (cpp-httplib), rendered at
// each scrape from the same counters `zonewall stats` reads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "util/result.h"

namespace httplib {
class Server;
}

namespace zw::daemon {

// What only the daemon knows.
struct ApplyInfo {
  uint64_t applies = 0;              // reconciles that wrote a generation
  double last_duration_seconds = 0;  // of the last one
  double last_unix_seconds = 0;      // when it finished (0: none yet)
  nlohmann::json cluster;            // cluster mode: the "cluster" section of status; else null
  // With libvirt: the reconciles' reads of every domain, and of the domains
  // events named, one by one.
  bool libvirt = false;
  uint64_t libvirt_full_reads = 0;
  uint64_t libvirt_domains_reread = 0;
};

// The exposition text from `zonewall stats --json` and `status --json`
// documents (engine::stats, engine::status) and the daemon's apply info.
std::string render_metrics(const nlohmann::json& stats, const nlohmann::json& status,
                           const ApplyInfo& apply);

class MetricsServer {
 public:
  using Render = std::function<Result<std::string>()>;
  // Binds ADDRESS:PORT ("127.0.0.1:9464", "[::1]:9464", ":9464" = all)
  // now, so a bad address is the caller's error, then serves on a thread.
  static Result<std::unique_ptr<MetricsServer>> start(const std::string& listen, Render render);
  ~MetricsServer();
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> svr_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace zw::daemon
