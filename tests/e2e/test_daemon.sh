#!/usr/bin/env bash
# `zonewall daemon` on the lab (static inventory, --no-libvirt):
#  a. it enforces lab.json on the 4 VMs soon after it starts;
#  b. traffic is judged as the policy says;
#  c. `zonewall apply` goes through the running daemon and takes effect (and
#     survives a SIGHUP reload); invalid policies exit 3 and change nothing;
#  d. a tap matching --tap-pattern is hooked within milliseconds of appearing
#     (the time is measured and printed), and a veth matching it that no
#     inventory knows drops everything both ways (fail closed);
#  e. SIGTERM: exit 0, enforcement stays exactly as it was;
#  f. a restarted daemon takes over what it finds without flushing: an
#     established TCP session survives the stop and the restart;
#  g. `zonewall down` with the daemon stopped leaves nothing attached.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOOK_DEADLINE_US=2000000 # a new tap must be hooked within 2 s (it takes ms)
START_DEADLINE_S=10      # the daemon must enforce the 4 VMs within 10 s

now_us() { printf '%s' "${EPOCHREALTIME/./}"; }
now() { printf '%s' "$EPOCHREALTIME"; }
# $1 + $2 seconds, for awk comparisons.
plus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }

DAEMON_PID=""
DAEMON_N=0
DAEMON_LOG=""
# Starts `zonewall daemon` in the lab's host namespace, in the background.
start_daemon() {
	DAEMON_N=$((DAEMON_N + 1))
	DAEMON_LOG=$ZW_TMP/daemon-$DAEMON_N.log
	# nsenter execs zonewall: $! is the daemon itself. NOTIFY_SOCKET as
	# systemd sets it for Type=notify (see check_ready).
	NOTIFY_SOCKET=${NOTIFY_SOCK:-} nsenter --net="/run/netns/$ZW_HOSTNS" "$ZONEWALL" --pin-dir "$ZW_PIN_DIR" daemon \
		--policy "$ZW_POLICY_LAB" --no-libvirt --inventory "$ZW_TMP/inventory.json" \
		--tap-pattern "$PATTERN" >"$DAEMON_LOG" 2>&1 &
	DAEMON_PID=$!
	ZW_BG_PIDS+=("$DAEMON_PID")
	zw_log "daemon #$DAEMON_N started (pid $DAEMON_PID, log $DAEMON_LOG)"
}

# Polls `zonewall status` until 4 endpoints are enforced; dies if the daemon
# exits or the deadline passes. Prints how long it took.
wait_enforced() {
	local t0 n="" deadline
	t0=$(now_us)
	deadline=$((t0 + START_DEADLINE_S * 1000000))
	while (($(now_us) < deadline)); do
		if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
			cat "$DAEMON_LOG" >&2
			zw_die "daemon #$DAEMON_N exited before enforcing anything (log above)"
		fi
		n=$(zw --json status 2>/dev/null | zw_json "d['endpoints_enforced']" 2>/dev/null) || n=""
		if [[ $n == 4 ]]; then
			zw_pass "daemon #$DAEMON_N: status shows 4 endpoints enforced after $((($(now_us) - t0) / 1000)) ms"
			return 0
		fi
		sleep 0.05
	done
	cat "$DAEMON_LOG" >&2
	zw_die "daemon #$DAEMON_N: status did not show 4 enforced endpoints within ${START_DEADLINE_S} s (last: '$n')"
}

# Waits for the log to gain a 'msg=reconciled' line beyond the first $1.
wait_reconciled_after() {
	local before=$1 i
	for ((i = 0; i < 100; i++)); do
		(($(grep -c 'msg=reconciled' "$DAEMON_LOG") > before)) && return 0
		sleep 0.05
	done
	return 1
}

# SIGTERM; the daemon must exit 0 within 5 s.
stop_daemon() {
	local i rc=0
	kill -TERM "$DAEMON_PID"
	for ((i = 0; i < 50; i++)); do
		kill -0 "$DAEMON_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$DAEMON_PID" 2>/dev/null; then
		cat "$DAEMON_LOG" >&2
		zw_die "daemon #$DAEMON_N still running 5 s after SIGTERM"
	fi
	wait "$DAEMON_PID" || rc=$?
	zw_assert "daemon #$DAEMON_N exits 0 on SIGTERM (got $rc)" test "$rc" = 0
	zw_assert "daemon #$DAEMON_N logs that enforcement stays" grep -q 'enforcement stays' "$DAEMON_LOG"
}

# Time from now until `tc filter show dev $1 ingress` lists zw_from_vm_tc, in
# µs, polled every ~1 ms; empty if HOOK_DEADLINE_US passed first. $2 = start.
time_to_hook() {
	local dev=$1 t0=$2 out
	while :; do
		out=$(tc -n "$ZW_HOSTNS" filter show dev "$dev" ingress 2>/dev/null || true)
		if [[ $out == *zw_from_vm_tc* ]]; then
			printf '%s' $(($(now_us) - t0))
			return 0
		fi
		(($(now_us) - t0 < HOOK_DEADLINE_US)) || return 0
		sleep 0.001
	done
}

# The hooks zonewall puts on an interface: from-VM (ingress) and to-VM (egress).
hooked() {
	[[ $(tc -n "$ZW_HOSTNS" filter show dev "$1" ingress 2>&1) == *zw_from_vm_tc* &&
		$(tc -n "$ZW_HOSTNS" filter show dev "$1" egress 2>&1) == *zw_to_vm_tc* ]]
}

# One echo request from namespace $1 to $2: 0 answered, 1 not.
ping_ns() {
	if zw_have_ping; then
		ip netns exec "$1" ping -n -c 1 -W 1 "$2" >/dev/null 2>&1
	else
		ip netns exec "$1" "$ZW_PY" "$ZW_NETPROBE" icmp-probe "$2" --timeout 1 >/dev/null 2>&1
	fi
}

# The unknown VM (veth peer in ROGUE_NS, 10.70.0.50) and web-1 cannot reach
# each other. $1 labels the checks.
expect_rogue_dropped() {
	local what=$1 w1
	w1=$(zw_addr web-1 4)
	if ping_ns "$ROGUE_NS" "$w1"; then
		zw_fail "$what: the unknown VM's ping to web-1 got an answer"
	else
		zw_pass "$what: the unknown VM cannot ping web-1"
	fi
	if ping_ns "$(zw_ns web-1)" "$ROGUE_ADDR"; then
		zw_fail "$what: web-1's ping to the unknown VM got an answer"
	else
		zw_pass "$what: web-1 cannot ping the unknown VM"
	fi
	if ip netns exec "$ROGUE_NS" nc -z -w 1 "$w1" 80 >/dev/null 2>&1; then
		zw_fail "$what: the unknown VM connected to web-1 tcp/80"
	else
		zw_pass "$what: the unknown VM cannot connect to web-1 tcp/80"
	fi
}

# The part of lab.json checked before and after the daemon goes away.
expect_lab_policy() {
	expect_allow web-1 db-1 tcp/5432 4
	expect_deny web-1 db-1 tcp/5433 4
	expect_deny db-1 web-1 tcp/80 4
	expect_allow admin-1 web-1 icmp 4
	expect_deny web-1 admin-1 icmp 4
	expect_allow web-1 web-2 tcp/80 6
	expect_allow ext-1 web-1 tcp/8080 4
}

# The established-session client (netprobe.py tcp-session), as in test_policy_change.sh.
SESSION_PID=""
SESSION_LOG=""
start_session() {
	SESSION_LOG=$ZW_TMP/session.log
	zw_start_session "$SESSION_LOG"
}
# The session got at least 5 replies in the second after wall-clock time $1.
expect_session_alive() {
	local since=$1 what=$2 n
	sleep 1.1
	n=$(zw_session_oks_after "$SESSION_LOG" "$since")
	if kill -0 "$SESSION_PID" 2>/dev/null && ((n >= 5)); then
		zw_pass "established session web-1 → db-1 tcp/5432 $what ($n replies in 1.1 s)"
	else
		zw_fail "established session web-1 → db-1 tcp/5432 did not survive $what ($n replies in 1.1 s): $(tail -n 3 "$SESSION_LOG")"
	fi
}

generation() { zw --json status | zw_json "d['active_generation']"; }

zw_setup
W1IF=$(zw_ifname web-1)
SHORT=${W1IF%w1}
TAP=${SHORT}t0
VETH=${SHORT}t1
BRIDGE=${SHORT}br
PATTERN="${SHORT}t*"
ROGUE_NS=$ZW_PREFIX-rogue
ROGUE_ADDR=10.70.0.50
ZW_EXTRA_NETNS+=("$ROGUE_NS")
zw_log "tap pattern '$PATTERN': tap $TAP, unknown VM's veth $VETH (namespace $ROGUE_NS, $ROGUE_ADDR)"
zw_serve web-1 web-2 db-1 admin-1 ext-1

# Policies for (c): web may reach db on tcp/5433 instead of 5432; a broken
# file; and valid JSON that puts web-2 in two zones (only the daemon, which
# holds the inventory, can see that).
zw_alt_port_policy "$ZW_POLICY_LAB" "$ZW_TMP/alt-port.json"
"$ZW_PY" - "$ZW_POLICY_LAB" "$ZW_TMP" <<'EOF' || zw_die "could not derive the test policies"
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
p = json.load(open(src))
zones = dict(p["zones"], web2={"vms": ["web-2"]})
json.dump(dict(p, zones=zones), open(os.path.join(out, "two-zones.json"), "w"), indent=2)
open(os.path.join(out, "broken.json"), "w").write(open(src).read()[:150])
EOF

zw_log "baseline: the lab forwards everything before zonewall runs"
expect_allow web-1 admin-1 icmp 4
expect_allow db-1 web-1 tcp/80 4
((ZW_FAILED == 0)) || zw_die "the lab itself does not forward traffic; not testing zonewall on it"

zw_log "(a) start the daemon (as systemd's Type=notify would: it says when it is ready)"
NOTIFY_SOCK=$ZW_TMP/notify.sock
"$ZW_PY" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(120)
print(s.recv(256).decode(), flush=True)' "$NOTIFY_SOCK" >"$ZW_TMP/notify.out" 2>&1 &
NOTIFY_PID=$!
for ((i = 0; i < 50; i++)); do [[ -S $NOTIFY_SOCK ]] && break; sleep 0.1; done
start_daemon
NOTIFY_SOCK=""
wait "$NOTIFY_PID" || true
# Ready means enforced: every VM interface is hooked by then, so systemd
# may start libvirtd (and autostarted VMs) right away.
n=$(zw --json status | zw_json "d['endpoints_enforced']") || n=""
zw_assert "daemon says READY=1 to systemd (got '$(cat "$ZW_TMP/notify.out")')" grep -qx 'READY=1' "$ZW_TMP/notify.out"
zw_assert "at READY every endpoint is already enforced (got $n of 4)" test "$n" = 4
wait_enforced
status=$(zw --json status)
problems=$(zw_json "[e['vm'] + ': ' + e['zone'] for e in d['endpoints'] if e['zone'] != e['vm'].split('-')[0] or e['attach'] != 'tc']" <<<"$status")
zw_assert "status: every VM in its zone, tc hook (problems: $problems)" test "$problems" = "[]"

zw_log "(b) traffic under lab.json, kept by the daemon"
expect_lab_policy
expect_allow admin-1 db-1 tcp/22 4

zw_log "(c) zonewall apply while the daemon runs"
gen0=$(generation)
rc=0
zw_try_apply "$ZW_TMP/alt-port.json" || rc=$?
printf '    %s\n' "$ZW_APPLY_OUT"
zw_assert "apply alt-port.json exits 0 (got $rc)" test "$rc" = 0
zw_assert "apply says '(through the running daemon)'" grep -qF "(through the running daemon)" <<<"$ZW_APPLY_OUT"
gen1=$(generation)
zw_assert "active generation moved ($gen0 → $gen1)" test "$gen1" -gt "$gen0"
expect_allow web-1 db-1 tcp/5433 4
expect_deny web-1 db-1 tcp/5432 4
zw_log "SIGHUP (reload): the daemon keeps the applied policy, not its --policy file"
kill -HUP "$DAEMON_PID"
sleep 0.5
zw_assert "daemon still running after SIGHUP" kill -0 "$DAEMON_PID"
pol=$(zw --json status | zw_json "d['policy']")
zw_assert "status names alt-port.json as the policy in force (got $pol)" grep -q "alt-port.json" <<<"$pol"
expect_allow web-1 db-1 tcp/5433 4
expect_deny web-1 db-1 tcp/5432 4

gen0=$(generation)
for bad in broken two-zones; do
	rc=0
	zw_try_apply "$ZW_TMP/$bad.json" || rc=$?
	zw_assert "apply $bad.json exits 3 (got $rc): $(head -c 400 <<<"$ZW_APPLY_OUT")" test "$rc" = 3
done
zw_assert "the two-zones error names web-2" grep -q "web-2" <<<"$ZW_APPLY_OUT"
gen1=$(generation)
zw_assert "active generation unchanged by the invalid applies ($gen0 → $gen1)" test "$gen0" = "$gen1"
zw_assert "daemon still running after the invalid applies" kill -0 "$DAEMON_PID"
expect_allow web-1 db-1 tcp/5433 4
expect_deny web-1 db-1 tcp/5432 4

rc=0
zw_try_apply "$ZW_POLICY_LAB" || rc=$?
zw_assert "apply lab.json through the daemon again exits 0 (got $rc): $ZW_APPLY_OUT" test "$rc" = 0
expect_allow web-1 db-1 tcp/5432 4
expect_deny web-1 db-1 tcp/5433 4

zw_log "an established session web-1 → db-1 tcp/5432 for the rest of the test"
start_session || zw_die "tcp session web-1 → db-1:5432 did not get going"
zw_pass "session web-1 → db-1 tcp/5432 exchanges lines"

zw_log "(d) a new tap matching '$PATTERN' is hooked at once"
ip -n "$ZW_HOSTNS" tuntap add dev "$TAP" mode tap || zw_die "ip tuntap add dev $TAP failed"
t0=$(now_us)
us=$(time_to_hook "$TAP" "$t0")
if [[ -n $us ]]; then
	zw_log "MEASURED: tap $TAP hooked (zw_from_vm_tc on tc ingress) $((us / 1000)).$(printf '%03d' $((us % 1000))) ms after 'ip tuntap add' returned"
	zw_pass "tap $TAP hooked within $((HOOK_DEADLINE_US / 1000)) ms ($us µs)"
else
	zw_fail "tap $TAP not hooked within $((HOOK_DEADLINE_US / 1000)) ms of 'ip tuntap add' returning: $(tc -n "$ZW_HOSTNS" filter show dev "$TAP" ingress 2>&1)"
fi
zw_log "the daemon's own account: $(grep -m1 "tap hooked.*ifname=$TAP" "$DAEMON_LOG" || echo '(no "tap hooked" line)')"
sleep 0.3
zw_assert "tap $TAP has both hooks (ingress zw_from_vm_tc, egress zw_to_vm_tc) after the reconcile" hooked "$TAP"

zw_log "an unknown VM: veth $VETH on the bridge, peer in $ROGUE_NS, in no inventory"
ip netns add "$ROGUE_NS"
ip -n "$ROGUE_NS" link set lo up
ip netns exec "$ROGUE_NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null
ip -n "$ZW_HOSTNS" link add "$VETH" type veth peer name eth0 netns "$ROGUE_NS" address 52:54:00:70:00:50 ||
	zw_die "could not create veth $VETH"
t0=$(now_us)
us=$(time_to_hook "$VETH" "$t0")
if [[ -n $us ]]; then
	zw_log "MEASURED: veth $VETH hooked $((us / 1000)).$(printf '%03d' $((us % 1000))) ms after 'ip link add' returned"
	zw_pass "veth $VETH hooked within $((HOOK_DEADLINE_US / 1000)) ms ($us µs)"
else
	zw_fail "veth $VETH not hooked within $((HOOK_DEADLINE_US / 1000)) ms"
fi
ip -n "$ZW_HOSTNS" link set "$VETH" master "$BRIDGE"
ip -n "$ZW_HOSTNS" link set "$VETH" up
ip -n "$ROGUE_NS" addr add "$ROGUE_ADDR/24" dev eth0
ip -n "$ROGUE_NS" link set eth0 up
sleep 0.3
zw_assert "veth $VETH still has both hooks after being enslaved and set up" hooked "$VETH"
nd0=$(zw --json stats | zw_json "d['reasons']['drop_no_endpoint']['packets']")
expect_rogue_dropped "daemon running"
nd1=$(zw --json stats | zw_json "d['reasons']['drop_no_endpoint']['packets']")
zw_assert "stats: the unknown VM's traffic counted as drop_no_endpoint ($nd0 → $nd1)" test "$nd1" -gt "$nd0"
zw_assert "the 4 known VMs are still enforced" test "$(zw --json status | zw_json "d['endpoints_enforced']")" = 4
expect_allow web-1 web-2 icmp 4

zw_log "(e) SIGTERM: the daemon exits, enforcement stays"
gen0=$(generation)
t_stop=$(now)
stop_daemon
expect_session_alive "$t_stop" "the daemon's exit"
gen1=$(generation)
zw_assert "generation unchanged by the exit ($gen0 → $gen1)" test "$gen0" = "$gen1"
zw_assert "status: 4 endpoints still enforced" test "$(zw --json status | zw_json "d['endpoints_enforced']")" = 4
for dev in "$W1IF" "$TAP" "$VETH"; do
	zw_assert "$dev still hooked with the daemon gone" hooked "$dev"
done
expect_lab_policy
expect_rogue_dropped "daemon gone"

zw_log "(f) restart: the new daemon takes over without flushing"
ct0=$(zw --json status | zw_json "d['conntrack_entries']")
t_start=$(now)
start_daemon
wait_enforced
wait_reconciled_after 0 || zw_fail "daemon #2 logged no reconcile: $(cat "$DAEMON_LOG")"
expect_session_alive "$t_start" "the daemon's restart"
ct1=$(zw --json status | zw_json "d['conntrack_entries']")
zw_assert "conntrack not flushed by the restart ($ct0 → $ct1 tracked flows)" test "$ct1" -ge 1
for dev in "$TAP" "$VETH"; do
	zw_assert "$dev still hooked after the restart" hooked "$dev"
done
expect_rogue_dropped "after the restart"
expect_lab_policy
if grep -E 'level=(error|warn)' "$DAEMON_LOG" >"$ZW_TMP/daemon-2.errors"; then
	zw_fail "daemon #2 logged errors or warnings: $(head -n 5 "$ZW_TMP/daemon-2.errors")"
else
	zw_pass "daemon #2 logged no error or warning"
fi
stop_daemon
kill -TERM "$SESSION_PID" 2>/dev/null || true
wait "$SESSION_PID" 2>/dev/null || true

zw_log "(g) zonewall down with the daemon stopped"
zw_assert "zonewall down exits 0" zw down
zw_assert_detached down
for dev in "$TAP" "$VETH"; do
	zw_assert "down: no tc filter left on $dev" test -z "$(tc -n "$ZW_HOSTNS" filter show dev "$dev" ingress)$(tc -n "$ZW_HOSTNS" filter show dev "$dev" egress)"
done
# Unfiltered now: the unknown VM's drops were zonewall's, not the lab's wiring.
zw_assert "after down the unknown VM can ping web-1" ping_ns "$ROGUE_NS" "$(zw_addr web-1 4)"
expect_allow web-1 admin-1 icmp 4

zw_summary
