// `zonewall test`: expectation files ({"from", "to", "proto", "port",
// "expect": "allow"|"deny", "rule"}), validated with file + JSON pointer
// messages, and checked through the real datapath program: the policy is
// compiled into a private, temporary pin dir (maps only, no interface
// touched, synthetic ifindexes) and every expectation is traced there.
// Schema: policies/expectations.schema.json.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/trace.h"
#include "inventory/endpoint.h"
#include "policy/model.h"
#include "util/result.h"

namespace zw::engine {

struct Expectation {
  std::string name;    // given, or "from -> to proto/port"
  std::string origin;  // "tests/web.json: /3"
  TraceRequest req;
  bool allow = false;
  std::optional<std::string> rule;  // the deciding rule's name, if given
};

// One file's JSON array. Every problem is reported (kInvalid), one line each.
Result<std::vector<Expectation>> parse_expectations(const std::string& text,
                                                    const std::string& file);
// A file, or every *.json of a directory (in name order).
Result<std::vector<Expectation>> load_expectations(const std::string& path);

// Where expectations live by default: POLICY/tests/ for a policy directory;
// nothing for a single file (the caller asks for --expectations).
std::optional<std::string> default_expectations(const std::string& policy_path);

// One VM per name used in from/to (addresses excepted), one interface each,
// with made-up MAC and addresses (IPv4 and IPv6): a policy repo's CI needs
// no inventory when its zones select VMs by name.
inventory::Inventory synthetic_inventory(const std::vector<Expectation>& ex);

// Runs every expectation. Needs CAP_BPF (bpffs, BPF_PROG_TEST_RUN); touches
// no interface; the private pin and state dirs are removed afterwards.
// JSON: {"passed", "failed", "results": [{name, origin, expect, got, rule,
// pass, message, trace}]}.
Result<nlohmann::json> run_expectations(const policy::Policy& p, const std::string& policy_source,
                                        const inventory::Inventory& inv,
                                        const std::vector<Expectation>& ex);

std::string format_test_results(const nlohmann::json& r);

}  // namespace zw::engine
