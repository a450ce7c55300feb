// The production BPF object: opened from the embedded skeleton, maps reused
// from (or created at) their pins, programs loaded and pinned. RAII: the
// skeleton is destroyed with the object; what is pinned stays.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "datapath/maps.h"
#include "util/result.h"

struct zonewall_bpf;

namespace zw::datapath {

enum class Prog { kFromVmXdp, kFromVmTc, kToVmTc };
const char* prog_name(Prog p);

struct SkelDeleter {
  void operator()(zonewall_bpf* s) const;
};

// How an instance is loaded. The default is production: run mode 0, maps
// created on first use, programs pinned. The `trace`/`test` variant is
// {ZW_RUN_DRY | ZW_RUN_VERDICT, pin_progs = false}: same code, same maps,
// never replacing the pinned production programs.
struct LoadOptions {
  uint32_t run_mode = 0;    // ZW_RUN_* (rodata zw_cfg_run_mode)
  bool pin_progs = true;    // pin under pin_dir/progs/ (replacing older pins)
  bool create_maps = true;  // false: every map must already be pinned (kNotFound)
};

class Object {
 public:
  // Loads a new instance of the programs against the maps pinned under
  // pin_dir (creating and pinning them the first time unless told not to).
  static Result<Object> load(const std::string& pin_dir, const LoadOptions& opts = {});

  int prog_fd(Prog p) const;
  Result<Maps> maps() const;  // duplicated fds, independent of this object

  // This load created and pinned the maps (none was pinned before it): a
  // first apply. If that apply then fails, unpin_created() removes the map
  // and program pins again, so a refused first apply leaves nothing behind.
  bool created_maps() const { return created_maps_; }
  void unpin_created(const std::string& pin_dir) const;
  // Pins the programs under pin_dir/progs/, replacing the pins of the
  // instance before (what `status` compares the attached programs with).
  Status pin_programs(const std::string& pin_dir) const;

 private:
  explicit Object(zonewall_bpf* s) : skel_(s) {}
  std::unique_ptr<zonewall_bpf, SkelDeleter> skel_;
  bool created_maps_ = false;
};

// A pinned program by path (for test runs and inspection).
Result<UniqueFd> open_pinned_prog(const std::string& pin_dir, Prog p);

// Routes libbpf's printing to our logger, one level quieter; warnings are
// also kept so a failed load can carry the verifier log in its error.
void install_libbpf_logger();

}  // namespace zw::datapath
