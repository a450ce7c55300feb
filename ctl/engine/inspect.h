// Reading what is live: status (endpoints and whether each is enforced) and
// counters, as JSON documents the CLI prints or formats. Read-only; no lock.
#pragma once

#include <nlohmann/json.hpp>

#include "datapath/maps.h"
#include "engine/state.h"
#include "util/result.h"

namespace zw::engine {

// Names of enum zw_reason, in order ("pass_new", "drop_policy", ...).
const char* reason_name(int reason);

// The applied state (empty if no state file) and the pinned maps with the
// active generation; kNotFound if nothing is pinned under paths.pin_dir.
struct Live {
  State state;
  datapath::Maps maps;
  uint32_t gen = 0;
};
Result<Live> open_live(const Paths& paths);

Result<nlohmann::json> status(const Paths& paths);
Result<nlohmann::json> stats(const Paths& paths);

}  // namespace zw::engine
