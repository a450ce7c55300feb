#!/usr/bin/env bash
# libFuzzer runs of the targets in tests/fuzz, built with clang 16 and
# ASan/UBSan in their own build directory (the main build uses g++).
#   scripts/fuzz.sh [--time SECONDS] [--ci] [target...]
# Targets: policy, inventory, datapath (root: BPF_PROG_TEST_RUN against the
# model). Default: all, 600 s each. --ci: the short run ctest does (policy 25 s,
# inventory 20 s, datapath 30 s). New inputs go to $ZW_FUZZ_BUILD_DIR/corpus/
# (the seed corpora in tests/fuzz/corpus are only read); a crash leaves its
# input in $ZW_FUZZ_BUILD_DIR/artifacts/ and fails the run.
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
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    policy|inventory|datapath) targets+=("$1"); shift ;;
    *) echo "fuzz.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(policy inventory datapath)

for tool in clang-16 clang++-16; do
  command -v "$tool" >/dev/null || { echo "fuzz.sh: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
done

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  # All the code is C++ (clang++-16); the C compiler only tells cmake/BpfObject
  # Debian's multiarch include dir (gcc -print-multiarch; clang cannot).
  CC=gcc CXX=clang++-16 cmake -S "$src" -B "$BUILD_DIR" -G Ninja -DZW_FUZZ=ON \
    -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD_DIR" -j2 --target "${targets[@]/#/fuzz_}"

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
  env=()
  if [ "$t" = datapath ]; then
    # libbpf and libnl keep process-lifetime allocations; leaks are checked
    # in the parsers' targets.
    env=(ZW_FUZZ_PIN_DIR="/sys/fs/bpf/zw-fuzz-$$" ASAN_OPTIONS=detect_leaks=0)
  fi
  echo "fuzz.sh: $t for ${secs}s" >&2
  if ! env "${env[@]}" "$BUILD_DIR/tests/fuzz/fuzz_$t" "${opts[@]}" "$corpus" \
      "$src/tests/fuzz/corpus/$t" 2>"$BUILD_DIR/fuzz-$t.log"; then
    echo "fuzz.sh: $t FAILED; log $BUILD_DIR/fuzz-$t.log:" >&2
    grep -v '^#\|^INFO\|^Done\|^stat::' "$BUILD_DIR/fuzz-$t.log" | tail -40 >&2
    rc=1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^Done' "$BUILD_DIR/fuzz-$t.log" >&2 || true
  rm -rf "/sys/fs/bpf/zw-fuzz-$$"
done
exit "$rc"
