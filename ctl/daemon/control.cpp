// Control socket framing: newline-terminated JSON, one exchange per connection.
#include "daemon/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace zw::daemon {

using nlohmann::json;

namespace {
// A request is a command and a few paths: bounded small, the daemon reads
// it from anyone who may connect. A response (status, stats of 10,000 VMs:
// megabytes) comes from the daemon, root, and is bounded only against a
// runaway.
constexpr size_t kMaxRequest = 64 * 1024;
constexpr size_t kMaxResponse = 256 * 1024 * 1024;

Result<sockaddr_un> address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path)
    return fail(Error::invalid("control socket path too long: " + path));
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

// Reads until a newline, EOF, the size bound or the deadline.
Result<std::string> read_line(int fd, std::chrono::milliseconds timeout, size_t max) {
  std::string buf;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t nl = std::string::npos;
  while (nl == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return fail(Error(ErrorKind::kSystem, "control socket: timed out", ETIMEDOUT));
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Error::sys("control socket: poll"));
    }
    if (n == 0) continue;
    char chunk[65536];
    ssize_t r = ::read(fd, chunk, sizeof chunk);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return fail(Error::sys("control socket: read"));
    }
    if (r == 0) break;
    const size_t from = buf.size();  // look for the newline in the new bytes only
    buf.append(chunk, static_cast<size_t>(r));
    nl = buf.find('\n', from);
    if ((nl == std::string::npos ? buf.size() : nl) > max)
      return fail(Error::invalid("control socket: message too large"));
  }
  if (nl != std::string::npos) buf.resize(nl);
  return buf;
}

Status write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t w = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p{fd, POLLOUT, 0};
        ::poll(&p, 1, 1000);
        continue;
      }
      return fail(Error::sys("control socket: write"));
    }
    off += static_cast<size_t>(w);
  }
  return {};
}
}  // namespace

std::string control_socket_path(const std::string& state_dir) {
  return state_dir + "/control.sock";
}

std::string request_cmd(const json& req) {
  if (!req.is_object()) return "";
  auto it = req.find("cmd");
  return it != req.end() && it->is_string() ? it->get<std::string>() : "";
}

Role required_role(const std::string& cmd) {
  static constexpr std::array<std::string_view, 6> kReadOnly = {"ping",  "status", "stats",
                                                                "flows", "trace",  "plan"};
  return std::find(kReadOnly.begin(), kReadOnly.end(), cmd) != kReadOnly.end() ? Role::kRead
                                                                               : Role::kApply;
}

Result<Peer> peer_of(int client_fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(client_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return fail(Error::sys("control socket: SO_PEERCRED"));
  Peer p{.uid = cred.uid, .gid = cred.gid, .pid = cred.pid, .groups = {}};
  p.groups.resize(64);
  for (;;) {
    socklen_t glen = static_cast<socklen_t>(p.groups.size() * sizeof(gid_t));
    if (::getsockopt(client_fd, SOL_SOCKET, SO_PEERGROUPS, p.groups.data(), &glen) == 0) {
      p.groups.resize(glen / sizeof(gid_t));
      return p;
    }
    if (errno != ERANGE) return fail(Error::sys("control socket: SO_PEERGROUPS"));
    p.groups.resize(glen / sizeof(gid_t) + 1);
  }
}

std::optional<std::string> refusal(const Access& access, const Peer& peer, const std::string& cmd) {
  if (peer.uid == 0) return std::nullopt;
  auto member = [&](std::optional<gid_t> g) {
    return g && (peer.gid == *g ||
                 std::find(peer.groups.begin(), peer.groups.end(), *g) != peer.groups.end());
  };
  bool read_only = required_role(cmd) == Role::kRead;
  if (member(access.apply_gid) || (read_only && member(access.read_gid))) return std::nullopt;
  std::string who;
  if (read_only && access.read_gid) who = "group '" + access.read_group + "'";
  if (access.apply_gid) who += (who.empty() ? "group '" : " or group '") + access.apply_group + "'";
  if (who.empty())
    who = "no group is configured (control_socket in the daemon's configuration file)";
  return "permission denied: '" + cmd + "' needs root or " +
         (who.starts_with("no group") ? "a configured group; " : "membership of ") + who +
         " (caller uid " + std::to_string(peer.uid) + ", pid " + std::to_string(peer.pid) + ")";
}

Result<UniqueFd> listen_control(const std::string& path, const Access& access) {
  auto a = address(path);
  if (!a) return fail(std::move(a.error()));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail(Error::sys("control socket"));
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&*a), sizeof *a) != 0)
    return fail(Error::sys("bind " + path));
  if (::chmod(path.c_str(), access.any_group() ? 0666 : 0600) != 0)
    return fail(Error::sys("chmod " + path));
  if (::listen(fd.get(), 16) != 0) return fail(Error::sys("listen " + path));
  return fd;
}

Result<json> read_request(int client_fd) {
  auto line = read_line(client_fd, std::chrono::milliseconds(2000), kMaxRequest);
  if (!line) return fail(std::move(line.error()));
  try {
    return json::parse(*line);
  } catch (const json::exception& e) {
    return fail(Error::invalid(std::string("control socket: bad request: ") + e.what()));
  }
}

Status write_response(int client_fd, const json& response) {
  return write_all(client_fd, response.dump() + "\n");
}

Result<std::optional<json>> call(const std::string& path, const json& request,
                                 std::chrono::milliseconds timeout) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return std::optional<json>{};
  auto a = address(path);
  if (!a) return fail(std::move(a.error()));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail(Error::sys("control socket"));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&*a), sizeof *a) != 0) {
    if (errno == ECONNREFUSED || errno == ENOENT) return std::optional<json>{};  // stale socket
    if (errno == EACCES)
      return fail(Error(ErrorKind::kSystem,
                        "connect " + path +
                            ": permission denied (the daemon admits root only unless its "
                            "configuration names control_socket.read_group / apply_group)"));
    return fail(Error::sys("connect " + path));
  }
  if (auto w = write_all(fd.get(), request.dump() + "\n"); !w) return fail(std::move(w.error()));
  auto line = read_line(fd.get(), timeout, kMaxResponse);
  if (!line) return fail(std::move(line.error()).wrap("daemon at " + path));
  try {
    return std::optional<json>(json::parse(*line));
  } catch (const json::exception& e) {
    return fail(Error(ErrorKind::kSystem, "daemon at " + path + ": bad response: " + e.what()));
  }
}

Result<bool> stream(const std::string& path, const json& request,
                    const std::function<bool(const json&)>& on_line) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  auto a = address(path);
  if (!a) return fail(std::move(a.error()));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail(Error::sys("control socket"));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&*a), sizeof *a) != 0) {
    if (errno == ECONNREFUSED || errno == ENOENT) return false;
    return fail(Error::sys("connect " + path));
  }
  if (auto w = write_all(fd.get(), request.dump() + "\n"); !w) return fail(std::move(w.error()));
  std::string buf;
  char chunk[8192];
  for (;;) {
    ssize_t r = ::read(fd.get(), chunk, sizeof chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail(Error::sys("control socket: read"));
    }
    if (r == 0) return true;
    buf.append(chunk, static_cast<size_t>(r));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      json j;
      try {
        j = json::parse(line);
      } catch (const json::exception& e) {
        return fail(Error(ErrorKind::kSystem, "daemon at " + path + ": bad line: " + e.what()));
      }
      if (!on_line(j)) return true;
    }
  }
}

}  // namespace zw::daemon
