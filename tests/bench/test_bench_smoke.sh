#!/usr/bin/env bash
# The benchmark suite works: `scripts/bench/run.sh --smoke` runs every
# section, produces every table, ratio and plot, and leaves nothing behind
# (network namespaces, pins, state). No thresholds: benchmarks are not timed
# tests; the targets are judged in the benchmark's own report.
set -uo pipefail
SRC=${ZW_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
if [ "$(id -u)" -ne 0 ]; then
  if [ -n "${CI:-}" ] || [ -n "${ZW_REQUIRE_PRIVILEGED:-}" ]; then
    echo "FAIL: the benchmark smoke test needs root" >&2
    exit 1
  fi
  echo "SKIP: the benchmark smoke test needs root" >&2
  exit 77
fi
OUT=$(mktemp -d /tmp/zw-bench-smoke-XXXXXX)
trap 'rm -rf "$OUT"' EXIT
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

bash "$SRC/scripts/bench/run.sh" --smoke --out "$OUT" 2> "$OUT/stderr"
rc=$?
cat "$OUT/stderr" >&2
[ "$rc" -eq 0 ] || fail "run.sh --smoke exited $rc"

id=$(sed -n 's/^\[bench\] id \([a-z0-9]*\) .*/\1/p' "$OUT/stderr")
[ -n "$id" ] || fail "run.sh did not print its id"
if [ -n "$id" ]; then
  pid=${id#zwb}
  ip netns list | grep -q "^$id-" && fail "network namespaces $id-* left behind"
  ls -d /sys/fs/bpf/zw-bench-"$pid"* 2>/dev/null && fail "pins /sys/fs/bpf/zw-bench-$pid* left behind"
  ls -d /run/zonewall-zw-bench-"$pid"* 2>/dev/null && fail "state /run/zonewall-zw-bench-$pid* left behind"
fi

for f in machine.tsv cost.tsv rate.tsv tcp.tsv control.tsv cli.tsv taplat.tsv startlat.tsv report.md \
         cost_vs_rules.png pps.png; do
  [ -s "$OUT/$f" ] || fail "$f missing or empty"
done
# Every section's table and every target's ratio.
for h in "## Targets" "## 1. Per-packet cost" "## 2. Packet rate" "## 3. TCP" "## 4. Control plane"; do
  grep -qF "$h" "$OUT/report.md" || fail "report.md lacks '$h'"
done
for t in "established path" "new path" "denied path" "cost <= 1.15x" \
         "denied rate (XDP) >= 0.85x" "iptables single-rule drop" "iptables 1,000 rules" \
         "allowed rate (tc)" "allowed rate (xdp)" "single-stream TCP" "checked, compiled and applied" \
         "one-rule change" "new VM interface enforced" "starting libvirt VM's interface"; do
  line=$(grep -F "$t" "$OUT/report.md" | head -1)
  [ -n "$line" ] || { fail "target '$t' not reported"; continue; }
  grep -Eq '[0-9]' <<< "$line" || fail "target '$t' has no number: $line"
  grep -Eq 'PASS|MISS' <<< "$line" || fail "target '$t' has no verdict: $line"
done
# Each path, family and hook measured; each system's packet rate measured.
for p in established denied new denied-new-sport denied-new-dport; do
  for fam in ipv4 ipv6; do
    for hook in xdp tc; do
      awk -F'\t' -v p=$p -v f=$fam -v h=$hook '$7 == h && $8 == f && $9 == p && $10 > 0 { ok = 1 } END { exit !ok }' \
        "$OUT/cost.tsv" || fail "cost: no $hook $fam $p measurement"
    done
  done
done
for s in none xdp-drop ipt-1 nft-1 zw-xdp zw-tc nft ipt ipt-legacy; do
  awk -F'\t' -v s=$s '$2 == s && ($7 > 0 || $8 > 0) { ok = 1 } END { exit !ok }' "$OUT/rate.tsv" \
    || fail "rate: no traffic measured for $s"
done
# With two CPUs or more, every system's receive-CPU cost per packet.
if [ "$(nproc)" -ge 2 ]; then
  awk -F'\t' 'NR > 1 && !($10 > 0) { bad = 1; print "no receive-CPU cost: " $0 > "/dev/stderr" } END { exit bad }' \
    "$OUT/rate.tsv" || fail "rate: a system without its receive-CPU cost"
fi
# Denied traffic never reaches the receiving VM; allowed traffic does.
awk -F'\t' '$4 == "denied" && $8 > 0 { bad = 1 } END { exit bad }' "$OUT/rate.tsv" \
  || fail "denied traffic reached the receiving VM"
awk -F'\t' '$4 == "allowed" && $8 == 0 { bad = 1 } END { exit bad }' "$OUT/rate.tsv" \
  || fail "allowed traffic did not reach the receiving VM"

[ "$fails" -eq 0 ] || { echo "bench smoke: $fails failure(s)" >&2; exit 1; }
echo "bench smoke: every section, table, ratio and plot produced; nothing left behind"
