// Man pages and bash completion generated from the command line's own
// definition (CLI11), so they list exactly the options the binary accepts.
// Run at build time: `zonewall --generate-man DIR`, `--generate-completion`.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace zw::cli {

// Writes zonewall.8 and zonewall-<subcommand>.8 for every subcommand into
// `dir`; returns a process exit status (0, or 1 with a message on stderr).
int write_man_pages(const CLI::App& app, const std::string& dir);

// The bash completion script (/usr/share/bash-completion/completions/zonewall).
std::string bash_completion(const CLI::App& app);

}  // namespace zw::cli
