#!/usr/bin/env bash
# Long runs of the differential test (tests/datapath/test_differential.cpp):
# random policies and adversarial frames through the real BPF programs,
# compared with the reference model (ctl/model). Needs root and a build.
#   scripts/difftest.sh [--seed N] [--packets N]
# Exit status is the test's; a mismatch prints the seed, the frame, the
# policy, the inventory and both answers.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${ZW_BUILD_DIR:-build}
seed=$(date +%s)
packets=1000000
while [ $# -gt 0 ]; do
  case "$1" in
    --seed) seed=$2; shift 2 ;;
    --packets) packets=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "difftest.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
bin="$BUILD_DIR/tests/zw_datapath_tests"
if [ ! -x "$bin" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja >/dev/null
  cmake --build "$BUILD_DIR" -j2 --target zw_datapath_tests
fi
echo "difftest: seed $seed, $packets frames" >&2
ZW_DIFF_SEED=$seed ZW_DIFF_PACKETS=$packets "$bin" --gtest_filter='DifferentialTest.*'
