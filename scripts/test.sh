#!/usr/bin/env bash
# The README's test command and what CI runs: installs what is missing,
# builds, and runs every test tier (unit, datapath, e2e) with ctest.
# As root, or with CI=true / ZW_REQUIRE_PRIVILEGED=1, a skipped datapath or
# e2e test is a failure: those tiers must run where they can.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${ZW_BUILD_DIR:-build}

bash scripts/setup.sh
bash scripts/build.sh

if [ "$(id -u)" -eq 0 ] || [ "${CI:-}" = "true" ]; then
  export ZW_REQUIRE_PRIVILEGED=1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
(cd "$BUILD_DIR" && ctest --output-on-failure --timeout 900 "$@") 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e

if [ "${ZW_REQUIRE_PRIVILEGED:-}" = "1" ]; then
  # ctest prints "***Skipped" for tests that exit with SKIP_RETURN_CODE, and
  # gtest's skips show up as "[  SKIPPED ]" in the output.
  if grep -Eq '\*\*\*Skipped|\[  SKIPPED \]' "$log"; then
    echo "test.sh: FAIL: a privileged test was skipped (not allowed as root / in CI)" >&2
    grep -E '\*\*\*Skipped|\[  SKIPPED \]' "$log" >&2
    exit 1
  fi
fi
exit "$rc"
