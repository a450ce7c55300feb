// The zonewall command line: one function per subcommand, no libbpf calls
// here (they live in ctl/datapath, reached through ctl/engine).
#pragma once

namespace zw::cli {

// Exit statuses, documented in README and docs/cli.md.
enum Exit : int {
  kOk = 0,
  kSystemError = 1,   // kernel, filesystem, libbpf
  kUsage = 2,         // bad command line
  kInvalid = 3,       // bad policy or inventory: nothing applied
  kBusy = 4,          // another state-changing command holds the lock
  kNotFound = 5,      // nothing applied under this pin dir
  kDenied = 6,        // the daemon refused the caller (control socket credentials)
  kVerdictDeny = 7,   // trace: the packet would be dropped; test: an expectation failed
  kChanges = 8,       // plan: applying the policy would change something
  kNotConverged = 9,  // status --cluster: some host does not enforce the current revision
};

int run(int argc, char** argv);

}  // namespace zw::cli
