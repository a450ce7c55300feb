#!/usr/bin/env bash
# libFuzzer runs of the targets in tests/fuzz, built with clang 16 and
# ASan/UBSan in their own build directory (the main build uses g++).
#   scripts/fuzz.sh [--time SECONDS] [--ci] [target...]
# Targets: policy, inventory, datapath (root: BPF_PROG_TEST_RUN against the
# model). Default: all, 600 s each. --ci: the short run ctest fuzz.short does
# (policy 25 s, inventory 20 s, datapath 30 s). New inputs go to
# $ZW_FUZZ_BUILD_DIR/corpus/ (the seed corpora in tests/fuzz/corpus are only
# read); a crash leaves its input in $ZW_FUZZ_BUILD_DIR/artifacts/ and fails
# the run. Not root: the datapath target is skipped (exit 77 if the others
# pass), or fails with ZW_REQUIRE_PRIVILEGED=1.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
BUILD_DIR=${ZW_FUZZ_BUILD_DIR:-$src/build-fuzz}
time_per=600
ci=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) time_per=$2; shift 2 ;;
    --ci) ci=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    policy|inventory|datapath) targets+=("$1"); shift ;;
    *) echo "fuzz.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(policy inventory datapath)

for tool in clang-16 clang++-16; do
  command -v "$tool" >/dev/null || { echo "fuzz.sh: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

skipped=0
if [ "$(id -u)" -ne 0 ] && [[ " ${targets[*]} " == *" datapath "* ]]; then
  if [ "${ZW_REQUIRE_PRIVILEGED:-}" = 1 ]; then
    echo "fuzz.sh: the datapath target needs root (ZW_REQUIRE_PRIVILEGED=1)" >&2
    exit 1
  fi
  echo "fuzz.sh: not root: skipping the datapath target" >&2
  mapfile -t targets < <(printf '%s\n' "${targets[@]}" | grep -vx datapath || true)
  skipped=1
fi

# A build directory configured from another source tree or with another
# compiler is started afresh; otherwise cmake re-runs on the current tree.
cache=$BUILD_DIR/CMakeCache.txt
if [ -f "$cache" ] && { ! grep -qx "CMAKE_HOME_DIRECTORY:INTERNAL=$src" "$cache" ||
                        ! grep -q '^CMAKE_CXX_COMPILER:[A-Z]*=.*clang++-16$' "$cache"; }; then
  echo "fuzz.sh: $BUILD_DIR was configured for another tree or compiler: starting afresh" >&2
  rm -rf "$BUILD_DIR"
fi
# All the code is C++ (clang++-16); the C compiler only tells cmake/BpfObject
# Debian's multiarch include dir (gcc -print-multiarch; clang cannot). -O1
# and line tables (enough for symbolized stacks) keep the build short.
CC=gcc CXX=clang++-16 cmake -S "$src" -B "$BUILD_DIR" -G Ninja -DZW_FUZZ=ON \
  -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" >/dev/null
[ ${#targets[@]} -gt 0 ] || exit 77
cmake --build "$BUILD_DIR" -j2 --target "${targets[@]/#/fuzz_}"

# The datapath target's pins (its network namespace is private and goes
# with the process); removed however the run ends.
pin_dir=/sys/fs/bpf/zw-fuzz-$$-$RANDOM
trap 'rm -rf "$pin_dir"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
symbolizer=$(command -v llvm-symbolizer-16 || command -v llvm-symbolizer || true)

mkdir -p "$BUILD_DIR/artifacts"
rc=0
for t in "${targets[@]}"; do
  secs=$time_per
  if [ "$ci" = 1 ]; then
    case "$t" in policy) secs=25 ;; inventory) secs=20 ;; datapath) secs=30 ;; esac
  fi
  corpus="$BUILD_DIR/corpus/$t"
  mkdir -p "$corpus"
  opts=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1
        -artifact_prefix="$BUILD_DIR/artifacts/$t-")
  [ -f "$src/tests/fuzz/$t.dict" ] && opts+=(-dict="$src/tests/fuzz/$t.dict")
  env=(ASAN_SYMBOLIZER_PATH="$symbolizer")
  if [ "$t" = datapath ]; then
    # libbpf and libnl keep process-lifetime allocations; leaks are checked
    # in the parsers' targets.
    env+=(ZW_FUZZ_PIN_DIR="$pin_dir" ASAN_OPTIONS=detect_leaks=0)
  fi
  echo "fuzz.sh: $t for ${secs}s" >&2
  if ! env "${env[@]}" "$BUILD_DIR/tests/fuzz/fuzz_$t" "${opts[@]}" "$corpus" \
      "$src/tests/fuzz/corpus/$t" 2>"$BUILD_DIR/fuzz-$t.log"; then
    echo "fuzz.sh: $t FAILED; log $BUILD_DIR/fuzz-$t.log:" >&2
    grep -v '^#\|^INFO\|^Done\|^stat::' "$BUILD_DIR/fuzz-$t.log" | tail -40 >&2
    rc=1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done' "$BUILD_DIR/fuzz-$t.log" >&2 || true
  rm -rf "$pin_dir"
done
[ "$rc" = 0 ] && [ "$skipped" = 1 ] && exit 77
exit "$rc"
