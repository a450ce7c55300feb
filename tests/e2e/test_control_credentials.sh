#!/usr/bin/env bash
# Separation of duties on the daemon's control socket, with real unprivileged
# users (useradd, removed again on every exit path) running the CLI:
#  a. with control_socket groups configured the socket is 0666 and each
#     request is checked against the peer's kernel credentials (SO_PEERCRED,
#     SO_PEERGROUPS);
#  b. a member of the read group gets status and stats (through the daemon:
#     it cannot read the pins), and is refused apply (exit 6, a message
#     naming the group); the generation does not move;
#  c. a member of the apply group can apply (the generation moves);
#  d. a user in neither group is refused everything, status included;
#  e. without groups the socket is 0600: only root gets through, and the CLI
#     says why; the configuration's attach-by-device-kind rule is obeyed.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

zw_setup
command -v useradd >/dev/null && command -v runuser >/dev/null ||
	zw_skip "needs useradd and runuser (passwd, util-linux)"

SUFFIX=$(($$ % 100000))$((RANDOM % 100))
G_READ=zwr$SUFFIX
G_APPLY=zwa$SUFFIX
U_READ=zwur$SUFFIX
U_APPLY=zwua$SUFFIX
U_NONE=zwun$SUFFIX
USERS=()
GROUPS_MADE=()

remove_accounts() {
	local u g
	for u in "${USERS[@]}"; do userdel "$u" >/dev/null 2>&1 || echo "cleanup: userdel $u failed" >&2; done
	for g in "${GROUPS_MADE[@]}"; do groupdel "$g" >/dev/null 2>&1 || echo "cleanup: groupdel $g failed" >&2; done
}
# Accounts go first, then the lab (zw_cleanup reads the exit status).
trap 'rc=$?; set +e; remove_accounts; (exit $rc); zw_cleanup' EXIT

for g in "$G_READ" "$G_APPLY"; do
	groupadd "$g" || zw_die "groupadd $g"
	GROUPS_MADE+=("$g")
done
useradd -M -N -s /usr/sbin/nologin -G "$G_READ" "$U_READ" || zw_die "useradd $U_READ"
USERS+=("$U_READ")
useradd -M -N -s /usr/sbin/nologin -G "$G_APPLY" "$U_APPLY" || zw_die "useradd $U_APPLY"
USERS+=("$U_APPLY")
useradd -M -N -s /usr/sbin/nologin "$U_NONE" || zw_die "useradd $U_NONE"
USERS+=("$U_NONE")
zw_log "users $U_READ ($G_READ), $U_APPLY ($G_APPLY), $U_NONE (neither)"

chmod 0755 "$ZW_TMP"
cat >"$ZW_TMP/zonewall.json" <<JSON
{
  "policy": "$ZW_POLICY_LAB",
  "libvirt": null,
  "inventory": "$ZW_TMP/inventory.json",
  "tap_patterns": ["$ZW_PREFIX-nomatch*"],
  "control_socket": {"read_group": "$G_READ", "apply_group": "$G_APPLY"}
}
JSON
chmod 0644 "$ZW_TMP/zonewall.json" "$ZW_TMP/inventory.json"

DAEMON_PID=""
DAEMON_N=0
DAEMON_LOG=""
start_daemon() { # $1: config file
	# A fresh log per daemon: grepping a reused one could see the last daemon's lines.
	DAEMON_N=$((DAEMON_N + 1))
	DAEMON_LOG=$ZW_TMP/daemon-$DAEMON_N.log
	nsenter --net="/run/netns/$ZW_HOSTNS" "$ZONEWALL" --config "$1" --pin-dir "$ZW_PIN_DIR" \
		daemon >"$DAEMON_LOG" 2>&1 &
	DAEMON_PID=$!
	ZW_BG_PIDS+=("$DAEMON_PID")
	local i n=""
	for ((i = 0; i < 100; i++)); do
		kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$DAEMON_LOG" >&2; zw_die "daemon exited"; }
		# Ready once it listens (status alone would read the pins left by a
		# previous daemon) and enforces the 4 VMs.
		if grep -q 'msg="daemon running"' "$DAEMON_LOG"; then
			n=$(zw --json status 2>/dev/null | zw_json "d['endpoints_enforced']" 2>/dev/null) || n=""
			[[ $n == 4 ]] && return 0
		fi
		sleep 0.1
	done
	cat "$DAEMON_LOG" >&2
	zw_die "daemon did not enforce the 4 lab VMs within 10 s (last: '$n')"
}
stop_daemon() {
	kill -TERM "$DAEMON_PID"
	wait "$DAEMON_PID" || zw_die "daemon exited non-zero on SIGTERM"
}

# as USER ARGS...: the CLI as an unprivileged user; output in OUT, status in RC.
OUT="" RC=0
as() {
	local user=$1
	shift
	RC=0
	OUT=$(runuser -u "$user" -- "$ZONEWALL" --pin-dir "$ZW_PIN_DIR" "$@" 2>&1) || RC=$?
}
generation() { zw --json status | zw_json "d['active_generation']"; }

start_daemon "$ZW_TMP/zonewall.json"
SOCK=$ZW_STATE_DIR/control.sock
zw_assert "a. with groups the socket is mode 0666 (checked per request)" \
	test "$(stat -c %a "$SOCK")" = 666

# b. read group
as "$U_READ" --json status
if ((RC == 0)) && [[ $(zw_json "d['endpoints_enforced']" <<<"$OUT") == 4 ]]; then
	zw_pass "b. $U_READ ($G_READ): status through the daemon shows 4 enforced endpoints"
else
	zw_fail "b. $U_READ: status exited $RC: $OUT"
fi
as "$U_READ" stats
zw_assert "b. $U_READ: stats exits 0" test "$RC" = 0
[[ $OUT == *REASON* ]] || zw_fail "b. $U_READ: stats printed no table: $OUT"
gen0=$(generation)
as "$U_READ" apply "$ZW_POLICY_LAB"
zw_assert "b. $U_READ: apply refused with exit 6 (got $RC)" test "$RC" = 6
if [[ $OUT == *"permission denied"* && $OUT == *"$G_APPLY"* ]]; then
	zw_pass "b. refusal names the apply group: ${OUT//$'\n'/ }"
else
	zw_fail "b. refusal message does not name the apply group: $OUT"
fi
zw_assert "b. generation unchanged after the refused apply ($gen0)" test "$(generation)" = "$gen0"
grep -q 'msg="control request refused".*cmd=apply' "$DAEMON_LOG" &&
	zw_pass "b. the daemon logged the refusal" || zw_fail "b. no refusal in the daemon log"

# c. apply group
as "$U_APPLY" apply "$ZW_POLICY_LAB"
if ((RC == 0)) && [[ $OUT == *"through the running daemon"* ]]; then
	zw_pass "c. $U_APPLY ($G_APPLY): apply through the daemon succeeded"
else
	zw_fail "c. $U_APPLY: apply exited $RC: $OUT"
fi
zw_assert "c. generation moved past $gen0" test "$(generation)" -gt "$gen0"
as "$U_APPLY" --json status
zw_assert "c. $U_APPLY may read status too (exit $RC)" test "$RC" = 0

# d. neither group
as "$U_NONE" status
zw_assert "d. $U_NONE: status refused with exit 6 (got $RC)" test "$RC" = 6
[[ $OUT == *"permission denied"* && $OUT == *"$G_READ"* ]] &&
	zw_pass "d. refusal names the read group: ${OUT//$'\n'/ }" || zw_fail "d. refusal message: $OUT"
as "$U_NONE" apply "$ZW_POLICY_LAB"
zw_assert "d. $U_NONE: apply refused with exit 6 (got $RC)" test "$RC" = 6

# Traffic is still judged by the policy after all that.
zw_serve db-1
expect_allow web-1 db-1 tcp/5432 4
expect_deny db-1 web-1 tcp/80 4

# e. no groups: root only
stop_daemon
# Also the attach rule by device kind: the lab's interfaces are veths.
printf '{"policy": "%s", "libvirt": null, "inventory": "%s", "tap_patterns": [], "attach": {"kinds": {"veth": "xdp"}}}\n' \
	"$ZW_POLICY_LAB" "$ZW_TMP/inventory.json" >"$ZW_TMP/nogroups.json"
start_daemon "$ZW_TMP/nogroups.json"
zw_assert "e. without groups the socket is mode 0600" test "$(stat -c %a "$SOCK")" = 600
as "$U_READ" status
if ((RC != 0)) && [[ $OUT == *"permission denied"* && $OUT == *read_group* ]]; then
	zw_pass "e. $U_READ cannot connect, and is told how to allow it: ${OUT//$'\n'/ }"
else
	zw_fail "e. $U_READ status without groups: exit $RC: $OUT"
fi
hooks=$(zw --json status | zw_json "','.join(sorted(e['attach'] for e in d['endpoints']))") ||
	zw_fail "e. root status failed"
zw_assert "e. root gets status; attach.kinds.veth=xdp put the 4 veths on XDP ($hooks)" \
	test "$hooks" = "xdp,xdp,xdp,xdp"
stop_daemon

zw_summary
