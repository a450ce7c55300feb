// Reads a policy from a JSON file or a directory of *.json files (merged in
// file-name order) and validates it. Every error names the file and the JSON
// pointer: "policies/prod.json: /rules/3/ports/0: 70000 is not a port".
#pragma once

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
Result<Policy> load(const std::string& path);

// Parses one document already in memory; `file` is used in messages only.
Result<Policy> parse(const std::string& text, const std::string& file);

}  // namespace zw::policy
