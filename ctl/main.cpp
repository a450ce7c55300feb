// zonewall: the thin binary over zonewall_core.
#include "cli/cli.h"

int main(int argc, char** argv) { return zw::cli::run(argc, argv); }
