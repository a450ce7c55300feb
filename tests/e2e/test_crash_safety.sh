#!/usr/bin/env bash
# Crash safety (issue 7): `kill -9` of the CLI and of the daemon in the
# middle of an apply, under the traffic of test_apply_under_load.sh (a TCP
# session and a UDP stream both policies allow, a sender trying what both
# deny). After every kill enforcement continues from the pinned state; the
# next apply / daemon start converges to a complete policy, re-settles what
# the killed apply left (map entries whose two slots differ) and leaves only
# the active generation in the maps.
#
#  a. deterministic points (ZW_TEST_PAUSE_AT, see ctl/engine/reconcile.cpp):
#     after-write — the new generation's slots are written and the programs
#     replaced, not yet active: the old policy stays in force; a concurrent
#     apply gets "busy" (exit 4) meanwhile; after-flip — the new policy is in
#     force, the changed entries are not settled yet (their old slots still
#     hold the old policy) and the state file is not updated.
#  b. ZW_CRASH_KILLS (default 20) applies killed after a random delay in
#     [0, 1.5 × the duration of one apply] (some land after the flip or the
#     end); after each the active generation is complete (as many entries
#     in its slot as a clean apply of lab.json or of B leaves).
#  c. the daemon killed mid-reconcile (after-write), then started again.
# At the end: nothing denied arrived, the TCP session never broke and got
# every line back, UDP lost at most max(2, 0.5 % of sent).
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/e2e/reliab_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/reliab_lib.sh"

KILLS=${ZW_CRASH_KILLS:-20}

# Starts `zonewall apply POLICY` in the background with ZW_TEST_PAUSE_AT=$1
# (or none if $1 is -); pid in APPLY_PID, stderr+stdout in $ZW_TMP/apply-$2.log.
start_apply() {
	local pause=$1 tag=$2 pol=$3
	if [[ $pause == - ]]; then
		nsenter --net="/run/netns/$ZW_HOSTNS" "$ZONEWALL" --pin-dir "$ZW_PIN_DIR" apply "$pol" \
			--inventory "$ZW_TMP/inventory.json" >"$ZW_TMP/apply-$tag.log" 2>&1 &
	else
		ZW_TEST_PAUSE_AT=$pause nsenter --net="/run/netns/$ZW_HOSTNS" "$ZONEWALL" --pin-dir "$ZW_PIN_DIR" \
			apply "$pol" --inventory "$ZW_TMP/inventory.json" >"$ZW_TMP/apply-$tag.log" 2>&1 &
	fi
	APPLY_PID=$!
	ZW_BG_PIDS+=("$APPLY_PID")
}

# Waits (120 s: a program load comes first) until the log $1 says the
# process paused; dies otherwise.
wait_paused() {
	local log=$1 i
	for ((i = 0; i < 1200; i++)); do
		grep -q 'ZW_TEST_PAUSE_AT=.*paused' "$log" 2>/dev/null && return 0
		sleep 0.1
	done
	cat "$log" >&2
	zw_die "no 'paused' line in $log within 120 s"
}

kill9() {
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# Which policy is in force, judged by traffic: lab.json allows admin-1 →
# web-1 tcp/22, B does not.
policy_in_force() {
	local rc=0
	zw_probe admin-1 web-1 tcp/22 4 || rc=$?
	case $rc in 0) echo lab ;; 1) echo B ;; *) echo "unexpected(rc $rc)" ;; esac
}

zw_setup
command -v bpftool >/dev/null || zw_skip "needs bpftool (scripts/setup.sh installs it)"
zw_serve db-1 web-1
rl_make_policy_b "$ZW_TMP/b.json"
zw_apply "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory.json"
rl_start_traffic crash

zw_log "(a) kill -9 at after-write: the old policy stays in force"
g0=$(rl_active_gen)
start_apply after-write w "$ZW_TMP/b.json"
wait_paused "$ZW_TMP/apply-w.log"
nun=$(rl_unsettled)
zw_assert "paused after-write: B written beside the active generation $g0 ($nun entries unsettled)" test "$nun" -gt 0
zw_assert "paused after-write: active generation still $g0" test "$(rl_active_gen)" = "$g0"
rc=0
zw apply "$ZW_TMP/b.json" --inventory "$ZW_TMP/inventory.json" >"$ZW_TMP/concurrent.log" 2>&1 || rc=$?
zw_assert "a concurrent apply exits 4 (busy) while another holds the lock (got $rc)" test "$rc" = 4
zw_assert "the concurrent apply says who holds what: $(head -c 200 "$ZW_TMP/concurrent.log")" \
	grep -q "holds the lock" "$ZW_TMP/concurrent.log"
kill9 "$APPLY_PID"
zw_assert "killed after-write: active generation still $g0" test "$(rl_active_gen)" = "$g0"
zw_assert "killed after-write: lab.json still in force" test "$(policy_in_force)" = lab
zw_assert "killed after-write: the half-applied B is still in the maps, unsettled" test "$(rl_unsettled)" = "$nun"
expect_deny web-1 db-1 tcp/5433 4
expect_allow web-1 db-1 tcp/5432 4
zw_apply "$ZW_TMP/b.json" --inventory "$ZW_TMP/inventory.json"
zw_assert "next apply after the kill: B in force" test "$(policy_in_force)" = B
rl_assert_one_generation "next apply after the after-write kill"
CNT_B=$(rl_active_entries)

zw_log "(a) kill -9 at after-flip: the new policy is in force"
g1=$(rl_active_gen)
start_apply after-flip f "$ZW_POLICY_LAB"
wait_paused "$ZW_TMP/apply-f.log"
kill9 "$APPLY_PID"
zw_assert "killed after-flip: active generation moved on ($g1 → $(rl_active_gen))" test "$(rl_active_gen)" -gt "$g1"
zw_assert "killed after-flip: lab.json in force" test "$(policy_in_force)" = lab
nun=$(rl_unsettled)
zw_assert "killed after-flip: the changed entries are not settled ($nun)" test "$nun" -gt 0
expect_deny web-1 db-1 tcp/5433 4
# The same policy again: nothing new to write, only the re-settling.
zw_apply "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory.json"
zw_assert "next apply after the after-flip kill: lab.json in force" test "$(policy_in_force)" = lab
rl_assert_one_generation "next apply after the after-flip kill"
CNT_LAB=$(rl_active_entries)
zw_log "a complete generation has $CNT_LAB map entries for lab.json, $CNT_B for B"

zw_log "(b) $KILLS applies killed at random points"
t0=$(date +%s%N)
zw_apply "$ZW_TMP/b.json" --inventory "$ZW_TMP/inventory.json"
apply_ms=$((($(date +%s%N) - t0) / 1000000))
zw_log "one apply takes $apply_ms ms here; kills land in [0, $((apply_ms * 3 / 2))] ms"
n_lab=0 n_b=0
for ((k = 0; k < KILLS; k++)); do
	if ((k % 2 == 0)); then pol=$ZW_POLICY_LAB; else pol=$ZW_TMP/b.json; fi
	delay=$(awk -v r="$RANDOM" -v ms="$apply_ms" 'BEGIN { printf "%.3f", r / 32767 * ms * 1.5 / 1000 }')
	start_apply - "r$k" "$pol"
	sleep "$delay"
	kill9 "$APPLY_PID"
	in_force=$(policy_in_force)
	[[ $in_force == lab || $in_force == B ]] || zw_fail "kill $k (after $delay s): $in_force"
	active=$(rl_active_gen)
	cnt=$(rl_active_entries)
	want=$CNT_B
	[[ $in_force == lab ]] && want=$CNT_LAB
	[[ $cnt == "$want" ]] || zw_fail "kill $k (after $delay s): active generation $active has $cnt entries, a complete $in_force has $want"
	[[ $in_force == lab ]] && n_lab=$((n_lab + 1))
	[[ $in_force == B ]] && n_b=$((n_b + 1))
	zw_log "kill $k after $delay s: $in_force in force, generation $active complete ($cnt entries), $(rl_unsettled) entries unsettled"
done
zw_log "random kills: lab.json in force after $n_lab, B after $n_b"
zw_pass "$KILLS random kills: after each one, a complete lab.json or B (never anything else) was in force"
expect_deny web-1 db-1 tcp/5433 4
expect_deny db-1 web-1 tcp/80 4
zw_apply "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory.json"
zw_assert "after the random kills, the next apply: lab.json in force" test "$(policy_in_force)" = lab
rl_assert_one_generation "next apply after $KILLS random kills"

zw_log "(c) kill -9 the daemon mid-reconcile, start it again"
g2=$(rl_active_gen)
rl_start_daemon "$ZW_TMP/b.json" "$ZW_TMP/daemon-1.log" ZW_TEST_PAUSE_AT=after-write
wait_paused "$ZW_TMP/daemon-1.log"
kill9 "$DPID"
zw_assert "daemon killed mid-reconcile: active generation still $g2" test "$(rl_active_gen)" = "$g2"
nun=$(rl_unsettled)
zw_assert "daemon killed mid-reconcile: its half-written generation is still in the maps ($nun entries unsettled)" test "$nun" -gt 0
zw_assert "daemon killed mid-reconcile: lab.json still in force" test "$(policy_in_force)" = lab
expect_deny web-1 db-1 tcp/5433 4
rl_start_daemon "$ZW_TMP/b.json" "$ZW_TMP/daemon-2.log"
rl_wait_gen_above "$g2" || true
zw_assert "restarted daemon reconciled (generation $g2 → $(rl_active_gen))" test "$(rl_active_gen)" -gt "$g2"
zw_assert "restarted daemon: its policy B in force" test "$(policy_in_force)" = B
rl_assert_one_generation "restarted daemon"
kill -TERM "$DPID"
rc=0
wait "$DPID" || rc=$?
zw_assert "daemon exits 0 on SIGTERM (got $rc)" test "$rc" = 0

rl_stop_traffic crash
rl_check_round crash "through all kills"
tol=$(awk -v s="$RL_UDP_SENT" 'BEGIN { t = int(s * 0.005); print (t < 2 ? 2 : t) }')
zw_assert "UDP stream lost at most $tol of $RL_UDP_SENT through all kills (lost $RL_UDP_LOST)" \
	test "$RL_UDP_LOST" -le "$tol"

zw_assert "zonewall down exits 0" zw down
zw_assert_detached down
zw_summary
