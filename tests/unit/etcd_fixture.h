// A real single-member etcd for unit tests: /usr/bin/etcd on 127.0.0.1 with
// free ports and a mkdtemp data directory, killed and removed when the
// EtcdServer goes away (also when a test fails: RAII, and an atexit hook
// for a process that exits through gtest). restart() keeps the data
// directory and ports: a watch must resume across it.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include "cluster/etcd.h"

namespace zw::test {

// A port nothing listens on now, never one this process handed out before
// (two calls in a row can get the same port from the kernel: an etcd told
// to use one port for clients and peers never comes up).
inline int free_port() {
  static std::set<int> given;
  for (;;) {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(s);
    int port = ntohs(a.sin_port);
    if (given.insert(port).second) return port;
  }
}

inline std::set<pid_t>& live_etcds() {
  static std::set<pid_t> s;
  return s;
}

class EtcdServer {
 public:
  EtcdServer() {
    char tmpl[] = "/tmp/zw-unit-etcd-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    static bool hooked = false;
    if (!hooked) {
      hooked = true;
      std::atexit([] {
        for (pid_t p : live_etcds()) ::kill(p, SIGKILL);
      });
    }
    // Fresh ports until one comes up (another process may take a port
    // between free_port() and etcd's bind): 3 tries.
    for (int attempt = 0; attempt < 3; ++attempt) {
      client_port_ = free_port();
      peer_port_ = free_port();
      if (start()) return;
      stop();
      std::error_code ec;
      std::filesystem::remove_all(dir_ + "/data", ec);
    }
  }
  ~EtcdServer() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(client_port_); }
  bool up() const { return pid_ > 0; }

  // True once it answers (up to ~10 s).
  bool start() {
    std::string c = url();
    std::string p = "http://127.0.0.1:" + std::to_string(peer_port_);
    std::string log = dir_ + "/etcd.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      ::execl("/usr/bin/etcd", "etcd", "--name", "unit", "--data-dir", (dir_ + "/data").c_str(),
              "--listen-client-urls", c.c_str(), "--advertise-client-urls", c.c_str(),
              "--listen-peer-urls", p.c_str(), "--initial-advertise-peer-urls", p.c_str(),
              "--initial-cluster", ("unit=" + p).c_str(), "--log-level", "error", nullptr);
      ::_exit(127);
    }
    live_etcds().insert(pid_);
    return wait_healthy();
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    live_etcds().erase(pid_);
    pid_ = -1;
  }

  void restart() {
    stop();
    start();
  }

 private:
  bool wait_healthy() {
    auto c = cluster::Client::make({url()}, {.connect_ms = 200, .request_ms = 1000});
    for (int i = 0; i < 200; ++i) {
      if (c && c->range("health-probe")) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  std::string dir_;
  int client_port_ = 0, peer_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace zw::test
