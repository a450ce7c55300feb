#!/usr/bin/env bash
# The cluster scale simulation works: `scripts/bench/cluster.sh --quick`
# (10 simulated hosts x 10 VMs in etcd, one real `zonewall daemon --cluster`)
# produces every figure and leaves nothing behind (network namespaces, pins,
# state, etcd data). No thresholds: benchmarks are not timed tests.
set -uo pipefail
SRC=${ZW_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
if [ "$(id -u)" -ne 0 ]; then
  if [ -n "${CI:-}" ] || [ -n "${ZW_REQUIRE_PRIVILEGED:-}" ]; then
    echo "FAIL: the cluster benchmark smoke test needs root" >&2
    exit 1
  fi
  echo "SKIP: the cluster benchmark smoke test needs root" >&2
  exit 77
fi
OUT=$(mktemp -d /tmp/zw-cbench-smoke-XXXXXX)
trap 'rm -rf "$OUT"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

bash "$SRC/scripts/bench/cluster.sh" --quick --out "$OUT" 2>"$OUT/stderr"
rc=$?
cat "$OUT/stderr" >&2
[ "$rc" -eq 0 ] || fail "cluster.sh --quick exited $rc"

id=$(sed -n 's/^\[cluster\] id \(zwcb[0-9]*\) .*/\1/p' "$OUT/stderr")
[ -n "$id" ] || fail "cluster.sh did not print its id"
if [ -n "$id" ]; then
  pid=${id#zwcb}
  ip netns list | grep -q "^$id" && fail "network namespaces $id* left behind"
  ls -d /sys/fs/bpf/zw-cbench-"$pid"* 2>/dev/null && fail "pins /sys/fs/bpf/zw-cbench-$pid* left behind"
  ls -d /run/zonewall-zw-cbench-"$pid"* 2>/dev/null && fail "state /run/zonewall-zw-cbench-$pid* left behind"
  [ ! -e "/dev/shm/zw-cbench-$pid-etcd" ] || fail "etcd data /dev/shm/zw-cbench-$pid-etcd left behind"
fi

tsv=$OUT/cluster-quick.tsv
[ -s "$tsv" ] || fail "cluster-quick.tsv missing or empty"
[ -s "$OUT/cluster-quick.md" ] || fail "cluster-quick.md missing or empty"
# Every measurement present with a number.
for m in "all daemons report 100 remote" "apply --cluster started -> all daemons enforce" \
         "record deleted on A -> all daemons reflect" "record put on B -> all daemons reflect" \
         "lease revoked (10 records) -> all daemons reflect" "real-1 RSS after" \
         "real-1 CPU time for the sync" "real-1 CPU over 2 s idle"; do
  awk -F'\t' -v m="$m" 'index($2, m) && $3 ~ /^[0-9.]+$/ { ok = 1 } END { exit !ok }' "$tsv" \
    || fail "no figure for '$m'"
done
grep -q '^machine: ' "$OUT/cluster-quick.md" || fail "the report does not name the machine"
grep -q '^command: scripts/bench/cluster.sh' "$OUT/cluster-quick.md" || fail "the report does not give the command"

[ "$fails" -eq 0 ] || { echo "cluster bench smoke: $fails failure(s)" >&2; exit 1; }
echo "cluster bench smoke: every figure produced; nothing left behind"
