// reconcile(desired, observed): the one path that writes the datapath.
// apply() writes the new generation's slots of the entries that change,
// attaches programs to every present interface, flips the generation with
// one store, then settles the changed entries and detaches interfaces that
// left. down() undoes it all.
#pragma once

#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "datapath/object.h"
#include "engine/admit.h"
#include "engine/desired.h"
#include "engine/state.h"
#include "util/result.h"

namespace zw::engine {

// A new instance of the programs, loading on another thread: the verifier
// and the maps' creation take hundreds of milliseconds, which the CLI
// overlaps with reading the inventory, the state file and building the
// desired state (start it once the pin lock is held; apply() waits for it).
// Its programs are pinned only when an apply commits it. Unless one does (its generation flipped),
// a load that created the maps (a first apply) unpins them again when it is destroyed: a refused
// first apply leaves nothing pinned.
class ProgramLoad {
 public:
  static std::unique_ptr<ProgramLoad> start(const Paths& paths);
  ~ProgramLoad();
  ProgramLoad(const ProgramLoad&) = delete;
  ProgramLoad& operator=(const ProgramLoad&) = delete;

  Result<const datapath::Object*> get();  // waits for the load
  // The apply flipped its generation: keep the maps, pin the programs.
  Status commit();

 private:
  explicit ProgramLoad(std::string pin_dir) : pin_dir_(std::move(pin_dir)) {}
  std::string pin_dir_;
  std::future<Result<datapath::Object>> pending_;
  std::optional<Result<datapath::Object>> done_;
  bool committed_ = false;
};

struct ApplyInput {
  const policy::Policy* policy = nullptr;
  const inventory::Inventory* inventory = nullptr;
  // Programs to attach. Null: load a new instance (the CLI; also how a new
  // build replaces the old one). The daemon passes the instance it loaded
  // once at start, so an event costs map writes, not a verifier run.
  const datapath::Object* programs = nullptr;
  // Without `programs`: a load already under way (ProgramLoad::start), or
  // null to load here.
  ProgramLoad* preload = nullptr;
  // The state as the caller knows it from the apply before (the daemon,
  // the only writer of the state file while it holds the pin lock); null:
  // read the state file.
  const State* previous = nullptr;
  std::string policy_source;
  std::string inventory_source;
  std::string default_attach = "tc";
  // Interfaces (fnmatch globs) that stay hooked when no VM claims them any
  // more: a VM tap keeps dropping everything after its VM left the
  // inventory, instead of being left unfiltered (the daemon's tap patterns).
  std::vector<std::string> keep_hooked;
  // Interface name -> ifindex; empty: net::InterfaceIndexes (tests inject races).
  IfindexResolver resolve;
  // Sweep expired conntrack entries after the flip (the CLI; the daemon
  // sweeps on its own schedule instead).
  bool sweep_conntrack = true;
  // false: write the maps only, hook nothing (`zonewall test` fills a
  // private pin dir for synthetic interfaces).
  bool attach = true;
  // Also report what admission needs (ApplyReport::admissions): the daemon.
  bool admissions = false;
  // With `admissions`: called with them right after the flip and the
  // settling (and `write_lock` released), so that the tap thread gets the
  // new generation's admissions at once, not after the state file is
  // written (admit() refuses the old ones: their generation is not live).
  std::function<void(std::shared_ptr<const Admissions>)> publish_admissions;
  // The daemon, whose tap thread admits interfaces (engine/admit.h) while a
  // reconcile builds its desired state: the map writes (plan to settle) run
  // under `write_lock`, which admissions take too, and once it is held
  // `still_current` says whether the desired state is still the truth (no
  // admission since it was built). false: nothing is written
  // (ApplyReport::superseded); build it again.
  std::mutex* write_lock = nullptr;
  std::function<bool()> still_current;
  // Tests: called at "after-write" (new slots written and hooks attached,
  // not yet active) and "after-flip" (active, not yet settled), where
  // ZW_TEST_PAUSE_AT would stop.
  std::function<void(std::string_view point)> observe;
};

struct ApplyReport {
  bool superseded = false;  // ApplyInput::still_current said no: nothing written
  uint32_t generation = 0;
  size_t fail_closed = 0;  // departed interfaces left hooked (keep_hooked)
  size_t vanished = 0;     // interfaces that disappeared during the apply
  uint32_t previous_generation = 0;
  size_t policy_entries = 0;
  size_t endpoints = 0;
  size_t attached = 0;
  size_t hooks_unchanged = 0;  // of attached: already ran these programs, not touched
  size_t detached = 0;
  size_t flows_expired = 0;  // conntrack entries the sweep removed
  // Map entries this apply wrote and deleted (both halves: the new slots
  // before the flip, the settling after it). An unchanged policy writes 0.
  size_t entries_written = 0;
  size_t entries_deleted = 0;
  struct MapChanges {
    size_t written = 0;
    size_t deleted = 0;
  };
  std::map<std::string, MapChanges> changes;           // per map name (zw_policy, ...)
  std::vector<std::pair<std::string, double>> phases;  // name, milliseconds
  std::vector<std::string> warnings;
  std::shared_ptr<const State> state;  // as written to the state file
  // With ApplyInput::admissions: every endpoint that names an interface,
  // as this generation enforces it, and every stopped libvirt domain's
  // unambiguous tap name, prospectively (engine/admit.h).
  std::shared_ptr<const Admissions> admissions;
};

// Caller holds the PinLock.
Result<ApplyReport> apply(const Paths& paths, const ApplyInput& in);

struct DownReport {
  size_t detached = 0;
  bool had_state = false;
};

// Detaches everything zonewall attached under these paths and removes pins
// and state. Caller holds the PinLock; the pin dir is removed last.
Result<DownReport> down(const Paths& paths);

}  // namespace zw::engine
