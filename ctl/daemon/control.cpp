// Control socket framing: newline-terminated JSON, one exchange per connection.
#include "daemon/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace zw::daemon {

using nlohmann::json;

namespace {
constexpr size_t kMaxRequest = 64 * 1024;

Result<sockaddr_un> address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path)
    return fail(Error::invalid("control socket path too long: " + path));
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

// Reads until a newline, EOF, the size bound or the deadline.
Result<std::string> read_line(int fd, std::chrono::milliseconds timeout) {
  std::string buf;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (buf.find('\n') == std::string::npos) {
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
    char chunk[4096];
    ssize_t r = ::read(fd, chunk, sizeof chunk);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return fail(Error::sys("control socket: read"));
    }
    if (r == 0) break;
    buf.append(chunk, static_cast<size_t>(r));
    if (buf.size() > kMaxRequest) return fail(Error::invalid("control socket: message too large"));
  }
  if (auto nl = buf.find('\n'); nl != std::string::npos) buf.resize(nl);
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

Result<UniqueFd> listen_control(const std::string& path) {
  auto a = address(path);
  if (!a) return fail(std::move(a.error()));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail(Error::sys("control socket"));
  ::unlink(path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&*a), sizeof *a) != 0)
    return fail(Error::sys("bind " + path));
  ::chmod(path.c_str(), 0660);
  if (::listen(fd.get(), 16) != 0) return fail(Error::sys("listen " + path));
  return fd;
}

Result<json> read_request(int client_fd) {
  auto line = read_line(client_fd, std::chrono::milliseconds(2000));
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
    return fail(Error::sys("connect " + path));
  }
  if (auto w = write_all(fd.get(), request.dump() + "\n"); !w) return fail(std::move(w.error()));
  auto line = read_line(fd.get(), timeout);
  if (!line) return fail(std::move(line.error()).wrap("daemon at " + path));
  try {
    return std::optional<json>(json::parse(*line));
  } catch (const json::exception& e) {
    return fail(Error(ErrorKind::kSystem, "daemon at " + path + ": bad response: " + e.what()));
  }
}

}  // namespace zw::daemon
