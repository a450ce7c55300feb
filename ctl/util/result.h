// Control-plane errors as values: Result<T> = std::expected<T, Error>.
// Error carries an errno (0 when not a system error), a message, and a context
// chain built as the error travels up ("apply -> update zw_policy -> E2BIG").
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>
#include <utility>
#include <vector>

namespace zw {

// Which class of failure: drives the CLI's exit status.
enum class ErrorKind {
  kSystem = 1,    // kernel, filesystem, libbpf
  kInvalid = 3,   // bad policy / inventory / arguments (nothing applied)
  kBusy = 4,      // another state-changing command holds the lock
  kNotFound = 5,  // nothing applied / no such object
};

class [[nodiscard]] Error {
 public:
  Error(ErrorKind kind, std::string message, int err = 0)
      : kind_(kind), err_(err), message_(std::move(message)) {}

  static Error sys(std::string what, int err = errno) {
    return Error(ErrorKind::kSystem, std::move(what), err);
  }
  static Error invalid(std::string what) { return Error(ErrorKind::kInvalid, std::move(what)); }

  // Prepends a context frame: e.wrap("apply") -> "apply -> <old>".
  Error&& wrap(std::string context) && {
    context_.push_back(std::move(context));
    return std::move(*this);
  }

  ErrorKind kind() const { return kind_; }
  int err() const { return err_; }
  const std::string& message() const { return message_; }

  std::string str() const {
    std::string out;
    for (auto it = context_.rbegin(); it != context_.rend(); ++it) {
      out += *it;
      out += " -> ";
    }
    out += message_;
    if (err_ != 0) {
      out += ": ";
      out += std::strerror(err_ < 0 ? -err_ : err_);
    }
    return out;
  }

 private:
  ErrorKind kind_;
  int err_;
  std::string message_;
  std::vector<std::string> context_;
};

template <typename T>
using Result = std::expected<T, Error>;

using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(Error e) { return std::unexpected(std::move(e)); }

}  // namespace zw
