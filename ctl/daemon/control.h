// The daemon's control socket: a Unix stream socket in the state directory
// carrying one JSON request line and one JSON response line per connection.
// `zonewall apply` talks to a running daemon through it instead of writing
// the datapath itself, so there is one writer.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "util/fd.h"
#include "util/result.h"

namespace zw::daemon {

std::string control_socket_path(const std::string& state_dir);

// Listening socket (unlinks a stale one first), non-blocking, mode 0660.
Result<UniqueFd> listen_control(const std::string& path);

// Reads one request line from an accepted client (bounded size and time).
Result<nlohmann::json> read_request(int client_fd);
Status write_response(int client_fd, const nlohmann::json& response);

// Client side: nullopt when no daemon listens at `path` (no socket file,
// or nobody accepts); otherwise the daemon's response.
Result<std::optional<nlohmann::json>> call(const std::string& path, const nlohmann::json& request,
                                           std::chrono::milliseconds timeout);

}  // namespace zw::daemon
