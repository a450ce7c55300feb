// Reads a policy from a JSON file or a directory of *.json files (merged in
// file-name order) and validates it. Every error names the file and the JSON
// pointer: "policies/prod.json: /rules/3/ports/0: 70000 is not a port".
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "policy/model.h"
#include "util/result.h"

namespace zw::policy {

// All problems found, not just the first; empty on success.
struct Diagnostics {
  std::vector<std::string> errors;
};

// Loads and validates. On failure the Error (kInvalid) message lists every
// problem, one per line.
//
// The files are one state of the path, never a mixture of two: the
// directory and every file are stat()ed (inode, size, mtime, ctime) before
// and after reading; if anything changed, everything is read again, up to
// `attempts` times, then kBusy: "<path>: policy directory changed while
// being read". Nothing is judged from a read that raced a change.
Result<Policy> load(const std::string& path);

struct LoadHooks {
  int attempts = 3;
  // Tests only: called after each file is read (a writer racing the reader).
  std::function<void(const std::string& file)> after_read;
};
Result<Policy> load(const std::string& path, const LoadHooks& hooks);

// Parses one document already in memory; `file` is used in messages only.
Result<Policy> parse(const std::string& text, const std::string& file);

}  // namespace zw::policy
