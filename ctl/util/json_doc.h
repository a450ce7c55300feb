// Reading user-written JSON documents (policies, static inventory) with
// messages that name the file and JSON pointer; the one place nlohmann parses.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace zw::jsondoc {

inline constexpr std::size_t kMaxFileBytes = 16u << 20;  // 16 MiB
inline constexpr int kMaxDepth = 64;                     // nested arrays/objects

// Reads a whole file. Errors: "<path>: no such file or directory" (kInvalid),
// "<path>: larger than 16 MiB" (kInvalid), other I/O errors (kSystem).
Result<std::string> read_file(const std::string& path);

// Parses `text`. On failure appends "<file>: line L, column C: <what>" (syntax)
// or "<file>: <pointer>: <what>" (duplicate key, nesting deeper than
// kMaxDepth) to `errors` and returns nullopt.
std::optional<nlohmann::json> parse(const std::string& text, const std::string& file,
                                    std::vector<std::string>& errors);

// "/a~1b" for the key "a/b" (RFC 6901 escaping of one reference token).
std::string token(std::string_view key);

// Short rendering of a value for messages: 70000, "abc", an object, ...
std::string show(const nlohmann::json& v);

// Collects "<file>: <pointer>: <what>" messages while walking one document.
class Walker {
 public:
  Walker(std::string file, std::vector<std::string>& errors)
      : file_(std::move(file)), errors_(errors) {}

  const std::string& file() const { return file_; }
  void error(const std::string& pointer, const std::string& what);

  // Type checks that report "expected <type>, got <value>" on mismatch.
  bool expect_object(const nlohmann::json& v, const std::string& pointer);
  bool expect_array(const nlohmann::json& v, const std::string& pointer);
  bool expect_string(const nlohmann::json& v, const std::string& pointer);
  bool expect_bool(const nlohmann::json& v, const std::string& pointer);

  // Reports every key of `obj` not in `allowed` as an unknown field.
  void check_fields(const nlohmann::json& obj, const std::string& pointer,
                    std::initializer_list<std::string_view> allowed);

 private:
  std::string file_;
  std::vector<std::string>& errors_;
};

// Canonical 8-4-4-4-12 hex UUID (either case).
bool is_uuid(std::string_view s);
std::string lower(std::string_view s);

// Joins errors one per line into a kInvalid Error.
Error invalid(const std::vector<std::string>& errors);

}  // namespace zw::jsondoc
