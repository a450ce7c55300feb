// The daemon's control socket: a Unix stream socket in the state directory
// carrying one JSON request line and one JSON response line per connection.
// `zonewall apply` talks to a running daemon through it instead of writing
// the datapath itself, so there is one writer.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/result.h"

namespace zw::daemon {

std::string control_socket_path(const std::string& state_dir);

// Exit status the CLI reports when the daemon refuses a request for the
// caller's credentials (cli::kDenied).
inline constexpr int kExitDenied = 6;

// The request's "cmd" string, or "" when it has none (or is not an object).
std::string request_cmd(const nlohmann::json& req);

// Who may do what over the socket. Root may do everything; members of the
// read group may run read-only commands, members of the apply group every
// command. Unset groups admit nobody but root.
struct Access {
  std::optional<gid_t> read_gid, apply_gid;
  std::string read_group, apply_group;  // names, for messages
  bool any_group() const { return read_gid || apply_gid; }
};

enum class Role { kRead, kApply };

// Read-only commands (status, stats, flows, ping, ...) need kRead; anything
// else, including commands this build does not know, needs kApply.
Role required_role(const std::string& cmd);

// The peer of an accepted connection, from SO_PEERCRED and SO_PEERGROUPS
// (taken by the kernel at connect time; the client cannot forge them).
struct Peer {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  std::vector<gid_t> groups;  // supplementary
};
Result<Peer> peer_of(int client_fd);

// nullopt if `peer` may run `cmd`; otherwise the refusal message.
std::optional<std::string> refusal(const Access& access, const Peer& peer, const std::string& cmd);

// Listening socket (unlinks a stale one first), non-blocking. Mode 0600
// (root only) without groups; with a read or apply group, 0666: anyone may
// connect and every request is checked against the peer's credentials.
Result<UniqueFd> listen_control(const std::string& path, const Access& access = {});

// Reads one request line from an accepted client (bounded size and time).
Result<nlohmann::json> read_request(int client_fd);
Status write_response(int client_fd, const nlohmann::json& response);

// Client side: nullopt when no daemon listens at `path` (no socket file,
// or nobody accepts); otherwise the daemon's response.
Result<std::optional<nlohmann::json>> call(const std::string& path, const nlohmann::json& request,
                                           std::chrono::milliseconds timeout);

// Client side of a streaming request (`flows --follow`): every JSON line
// the daemon sends goes to `on_line` until it returns false or the daemon
// hangs up. False when no daemon listens at `path`.
Result<bool> stream(const std::string& path, const nlohmann::json& request,
                    const std::function<bool(const nlohmann::json&)>& on_line);

}  // namespace zw::daemon
