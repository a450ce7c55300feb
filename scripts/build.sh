#!/usr/bin/env bash
# Configures and builds zonewall and its tests into build/ (or $ZW_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${ZW_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DZW_WERROR=ON ${ZW_CMAKE_ARGS:-} >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
