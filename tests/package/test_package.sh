#!/usr/bin/env bash
# The Debian package, installed on this machine and used as an administrator
# would, then upgraded under traffic and purged:
#  a. cpack builds two versions of the build tree (V1, V2: ZW_PACKAGE_VERSION);
#  b. V1 installs: binary, unit, conffile, schemas, examples, man pages that
#     `man --warnings` renders cleanly, bash completion that completes
#     (COMPREPLY checked), Depends from dpkg-shlibdeps;
#  c. the daemon runs as the unit's ExecStart line (PID 1 is not systemd here;
#     with systemd the unit would be started), with /etc/default/zonewall
#     pointing it at a test config (unique pin dir), on the e2e lab; an
#     installed example policy is applied through it; status shows 4 VMs;
#  d. upgrade: V2 is installed over the running daemon while a TCP session
#     and a 100/s ping stream run; the daemon is restarted as postinst has
#     systemd do; the new programs replace the old in place (new program ids
#     on the same tc filter), the TCP session survives (conntrack kept; the
#     longest gap between replies is printed), pings lost are counted and
#     must be 0, counters continue from where they were;
#  e. purge: prerm's `zonewall down` detaches everything, nothing stays
#     pinned, and no file of the package is left.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

BUILD_DIR=${ZW_BUILD_DIR:?set ZW_BUILD_DIR to the cmake build directory}
for tool in cpack dpkg dpkg-deb man flock; do
	command -v "$tool" >/dev/null || zw_skip "needs '$tool'"
done
[[ $(id -u) -eq 0 ]] || zw_skip "needs root (installs a package)"

# One package test on the machine at a time (other worktrees run the suite too).
exec 9>/run/lock/zonewall-package-test.lock
flock -w 600 9 || zw_die "another package test held the lock for 10 minutes"

if dpkg-query -W -f='${Status} ${Version}' zonewall 2>/dev/null | grep -q "installed"; then
	v=$(dpkg-query -W -f='${Version}' zonewall)
	[[ $v == *~pkgtest* ]] || zw_die "zonewall $v is installed on this machine (not by this test); refusing to replace it"
	echo "purging zonewall $v left by an interrupted package test" >&2
	dpkg --purge zonewall >/dev/null
fi

zw_setup
BASE=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$BUILD_DIR/CMakeCache.txt")
V1=$BASE~pkgtest1
V2=$BASE~pkgtest2
CONF=$ZW_TMP/zonewall.json
DEFAULT=/etc/default/zonewall
DEFAULT_SAVED=""
DAEMON_PID=""
PING_PID=""

# dpkg refuses at once while another dpkg/apt runs: retry for a minute.
dpkg_do() {
	local i out
	for ((i = 0; i < 60; i++)); do
		if out=$(dpkg "$@" 2>&1); then
			printf '%s\n' "$out" >"$ZW_TMP/dpkg-last.log"
			return 0
		fi
		[[ $out == *lock* ]] || { printf '%s\n' "$out" >&2; return 1; }
		sleep 1
	done
	printf '%s\n' "$out" >&2
	return 1
}

# prerm runs `zonewall down`: in the namespace whose interfaces the daemon
# hooked, as dpkg runs in the host's on a real hypervisor.
purge() {
	if [[ -n $ZW_HOSTNS && -e /run/netns/$ZW_HOSTNS ]]; then
		nsenter --net="/run/netns/$ZW_HOSTNS" dpkg --purge zonewall >"$ZW_TMP/purge.log" 2>&1 ||
			{ cat "$ZW_TMP/purge.log" >&2; return 1; }
	else
		dpkg_do --purge zonewall
	fi
}

pkg_cleanup() {
	[[ -z $PING_PID ]] || kill -KILL "$PING_PID" 2>/dev/null
	if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID"
		wait "$DAEMON_PID" 2>/dev/null
	fi
	if dpkg-query -W -f='${Status}' zonewall 2>/dev/null | grep -q installed; then
		purge || echo "cleanup: dpkg --purge zonewall failed" >&2
	fi
	if [[ -n $DEFAULT_SAVED ]]; then mv "$DEFAULT_SAVED" "$DEFAULT"; else rm -f "$DEFAULT"; fi
}
trap 'rc=$?; set +e; pkg_cleanup; (exit $rc); zw_cleanup' EXIT

# ---- a. two versions -------------------------------------------------------
for v in "$V1" "$V2"; do
	(cd "$BUILD_DIR" && ZW_PACKAGE_VERSION=$v cpack -G DEB -B "$ZW_TMP/deb-$v") >"$ZW_TMP/cpack-$v.log" 2>&1 ||
		{ cat "$ZW_TMP/cpack-$v.log" >&2; zw_die "cpack $v failed"; }
done
DEB1=$(ls "$ZW_TMP/deb-$V1"/zonewall_*.deb)
DEB2=$(ls "$ZW_TMP/deb-$V2"/zonewall_*.deb)
zw_pass "a. built $(basename "$DEB1") and $(basename "$DEB2")"

# ---- b. install V1 ---------------------------------------------------------
dpkg_do -i "$DEB1" || zw_die "dpkg -i $DEB1 failed"
zw_assert "b. dpkg says $V1 is installed" \
	test "$(dpkg-query -W -f='${Status} ${Version}' zonewall)" = "install ok installed $V1"
zw_assert "b. /usr/sbin/zonewall runs" /usr/sbin/zonewall --version
for f in /lib/systemd/system/zonewall.service /etc/zonewall/zonewall.json \
	/usr/share/zonewall/policy.schema.json /usr/share/zonewall/inventory.schema.json \
	/usr/share/zonewall/zonewall.schema.json /usr/share/zonewall/examples/lab.json \
	/usr/lib/zonewall/zonewall.bpf.o /usr/share/bash-completion/completions/zonewall \
	/usr/share/doc/zonewall/copyright; do
	zw_assert "b. installed $f" test -s "$f"
done
[[ $(dpkg-query -W -f='${Conffiles}' zonewall) == *"/etc/zonewall/zonewall.json"* ]] &&
	zw_pass "b. /etc/zonewall/zonewall.json is a conffile" || zw_fail "b. zonewall.json is not a conffile"
depends=$(dpkg-query -W -f='${Depends}' zonewall)
for lib in libbpf1 libvirt0 libnl-3-200 libnl-route-3-200 libxml2 libstdc++6 libc6; do
	[[ $depends == *"$lib "* || $depends == *"$lib," || $depends == "$lib" ]] &&
		zw_pass "b. Depends on $lib" || zw_fail "b. Depends lacks $lib: $depends"
done
file_out=$(file -L /usr/sbin/zonewall)
[[ $file_out == *", stripped"* ]] && zw_pass "b. the binary is stripped" || zw_fail "b. not stripped: $file_out"

pages=0
for page in $(dpkg -L zonewall | grep '^/usr/share/man/'); do
	[[ -f $page ]] || continue
	pages=$((pages + 1))
	warn=$(man --warnings -l "$page" 2>&1 >/dev/null)
	[[ -z $warn ]] && zw_pass "b. man --warnings -l $(basename "$page"): clean" ||
		zw_fail "b. man $page warns: $warn"
done
for sub in check apply daemon status stats down; do
	zw_assert "b. man page zonewall-$sub(8) installed" test -f "/usr/share/man/man8/zonewall-$sub.8.gz"
done
zw_assert "b. zonewall.json(5) installed" test -f /usr/share/man/man5/zonewall.json.5.gz
man -l /usr/share/man/man8/zonewall-daemon.8.gz 2>/dev/null | grep -q -- '--tap-pattern' &&
	zw_pass "b. zonewall-daemon(8) lists --tap-pattern (generated from the CLI)" ||
	zw_fail "b. zonewall-daemon(8) lacks --tap-pattern"

# complete WORDS...: COMPREPLY of the installed completion for the command
# line WORDS (the last word is the one being completed).
complete_words() {
	bash --norc -c 'source /usr/share/bash-completion/completions/zonewall
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _zonewall
printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "' _ "$@"
}
check_completion() { # expected words... -- command line
	local want=() got
	while [[ $1 != -- ]]; do want+=("$1"); shift; done
	shift
	got=$(complete_words "$@")
	[[ "$got" == "${want[*]} " ]] && zw_pass "b. completion of '$*' -> $got" ||
		zw_fail "b. completion of '$*': expected '${want[*]}', got '$got'"
}
check_completion stats status -- zonewall st
check_completion stats status -- zonewall --pin-dir /sys/fs/bpf/x st
check_completion --attach -- zonewall daemon --att
check_completion tc xdp -- zonewall apply --attach ""
check_completion --config -- zonewall status --conf

# ---- c. the daemon as the unit starts it -----------------------------------
execstart=$(sed -n 's/^ExecStart=//p' /lib/systemd/system/zonewall.service)
[[ $execstart == "/usr/sbin/zonewall \$ZONEWALL_OPTS daemon" ]] &&
	zw_pass "c. unit: ExecStart=$execstart" || zw_fail "c. unexpected ExecStart: $execstart"
grep -q '^Restart=on-failure' /lib/systemd/system/zonewall.service && zw_pass "c. unit: Restart=on-failure" ||
	zw_fail "c. unit lacks Restart=on-failure"
caps=$(sed -n 's/^CapabilityBoundingSet=//p' /lib/systemd/system/zonewall.service)
zw_assert "c. unit: capabilities exactly CAP_BPF CAP_NET_ADMIN CAP_SYS_ADMIN CAP_PERFMON CAP_SYS_NICE ($caps)" \
	test "$caps" = "CAP_BPF CAP_NET_ADMIN CAP_SYS_ADMIN CAP_PERFMON CAP_SYS_NICE"
# systemd's own check of the installed unit (works without systemd as PID 1):
# syntax, the ExecStart binary, the man pages named in Documentation=.
if command -v systemd-analyze >/dev/null; then
	verify=$(SYSTEMD_LOG_LEVEL=notice systemd-analyze verify /lib/systemd/system/zonewall.service 2>&1)
	[[ -z $verify ]] && zw_pass "c. systemd-analyze verify zonewall.service: clean" ||
		zw_fail "c. systemd-analyze verify: $verify"
fi
if [[ -d /run/systemd/system ]]; then
	zw_log "note: systemd is PID 1 here, but the test still runs ExecStart directly (unique pin dir)"
fi

cat >"$CONF" <<JSON
{
  "policy": "/usr/share/zonewall/examples/lab.json",
  "libvirt": null,
  "inventory": "$ZW_TMP/inventory.json",
  "pin_dir": "$ZW_PIN_DIR",
  "tap_patterns": []
}
JSON
[[ ! -e $DEFAULT ]] || { DEFAULT_SAVED=$ZW_TMP/default.saved; cp -p "$DEFAULT" "$DEFAULT_SAVED"; }
printf 'ZONEWALL_OPTS="--config %s"\n' "$CONF" >"$DEFAULT"
ZWI=(/usr/sbin/zonewall --config "$CONF")

DAEMON_N=0
DAEMON_LOG=""
start_unit() {
	DAEMON_N=$((DAEMON_N + 1))
	DAEMON_LOG=$ZW_TMP/daemon-$DAEMON_N.log
	# As systemd would: EnvironmentFile, then ExecStart with $ZONEWALL_OPTS split.
	nsenter --net="/run/netns/$ZW_HOSTNS" sh -c ". $DEFAULT; exec $execstart" >"$DAEMON_LOG" 2>&1 &
	DAEMON_PID=$!
	local i n=""
	for ((i = 0; i < 150; i++)); do
		kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$DAEMON_LOG" >&2; zw_die "daemon #$DAEMON_N exited"; }
		if grep -q 'msg=reconciled' "$DAEMON_LOG"; then
			n=$("${ZWI[@]}" --json status 2>/dev/null | zw_json "d['endpoints_enforced']" 2>/dev/null) || n=""
			[[ $n == 4 ]] && return 0
		fi
		sleep 0.1
	done
	cat "$DAEMON_LOG" >&2
	zw_die "daemon #$DAEMON_N did not enforce the 4 lab VMs within 15 s (last: '$n')"
}
stop_unit() { # as systemctl stop with KillMode=process: SIGTERM to the daemon
	kill -TERM "$DAEMON_PID"
	wait "$DAEMON_PID" || zw_fail "daemon #$DAEMON_N exited non-zero on SIGTERM"
	DAEMON_PID=""
}

start_unit
zw_pass "c. daemon from the package enforces the 4 lab VMs"
out=$("${ZWI[@]}" apply /usr/share/zonewall/examples/lab.json 2>&1) || zw_die "apply failed: $out"
[[ $out == *"through the running daemon"* ]] && zw_pass "c. example policy applied through the daemon: $out" ||
	zw_fail "c. apply did not go through the daemon: $out"
status=$("${ZWI[@]}" status) || zw_die "status failed"
[[ $(grep -c ' enforced ' <<<"$status") == 4 ]] && zw_pass "c. status lists 4 enforced interfaces" ||
	zw_fail "c. status: $status"

# ---- d. upgrade under traffic ----------------------------------------------
zw_serve db-1 web-1
expect_allow web-1 db-1 tcp/5432 4
expect_deny db-1 web-1 tcp/80 4
SESSION_LOG=$ZW_TMP/session.log
zw_start_session "$SESSION_LOG" || zw_die "tcp session web-1 → db-1:5432 did not get going"
PING_LOG=$ZW_TMP/ping.log
zw_have_ping || zw_die "needs iputils ping for the ping stream"
# ip netns exec execs ping: $! is ping itself, which SIGINT stops with its summary.
ip netns exec "$(zw_ns admin-1)" ping -n -i 0.01 "$(zw_addr web-1 4)" >"$PING_LOG" 2>&1 &
PING_PID=$!
ZW_BG_PIDS+=("$PING_PID")
sleep 1

ifn=$(zw_ifname web-1)
prog_ids() { tc -n "$ZW_HOSTNS" filter show dev "$ifn" "$1" | grep -o ' id [0-9]*' | tr -d ' id'; }
in_before=$(prog_ids ingress)
eg_before=$(prog_ids egress)
pg_before=$(zw_rule_packets web-to-db-postgres)
ping_rule_before=$(zw_rule_packets admin-ping)
zw_log "before upgrade: tc ingress prog $in_before, egress prog $eg_before; rule packets postgres=$pg_before admin-ping=$ping_rule_before"

t_up=$(date +%s.%N)
dpkg_do -i --force-confold "$DEB2" || zw_die "dpkg -i $DEB2 (upgrade) failed"
zw_assert "d. upgraded to $V2" test "$(dpkg-query -W -f='${Version}' zonewall)" = "$V2"
# postinst restarts the daemon through systemd; without systemd, the test does.
stop_unit
start_unit
t_done=$(date +%s.%N)
zw_log "upgrade + restart took $(awk -v a="$t_up" -v b="$t_done" 'BEGIN { printf "%.2f", b - a }') s"
sleep 2

in_after=$(prog_ids ingress)
eg_after=$(prog_ids egress)
[[ -n $in_after && $in_after != "$in_before" && -n $eg_after && $eg_after != "$eg_before" ]] &&
	zw_pass "d. programs replaced in place: ingress $in_before → $in_after, egress $eg_before → $eg_after" ||
	zw_fail "d. programs not replaced: ingress $in_before → $in_after, egress $eg_before → $eg_after"
nfilt=$(tc -n "$ZW_HOSTNS" filter show dev "$ifn" ingress | grep -c ' id ')
zw_assert "d. exactly one tc ingress filter on $ifn after the upgrade ($nfilt)" test "$nfilt" = 1

kill -0 "$SESSION_PID" 2>/dev/null && zw_pass "d. TCP session still open (same connection, conntrack kept)" ||
	zw_fail "d. TCP session ended: $(tail -n 3 "$SESSION_LOG")"
n=$(zw_session_oks_after "$SESSION_LOG" "$t_done")
zw_assert "d. TCP session got replies after the upgrade ($n)" test "$n" -ge 10
gap=$(awk -v t0="$t_up" '$1 == "ok" { if (last && $3 > t0 && $3 - last > g) g = $3 - last; last = $3 } END { printf "%.3f", g }' "$SESSION_LOG")
zw_log "longest gap between TCP replies across the upgrade: $gap s (interval 0.1 s)"
awk -v g="$gap" 'BEGIN { exit !(g < 0.5) }' && zw_pass "d. no TCP stall across the upgrade (longest gap $gap s)" ||
	zw_fail "d. TCP stalled $gap s across the upgrade"

kill -INT "$PING_PID"
for ((i = 0; i < 30; i++)); do
	kill -0 "$PING_PID" 2>/dev/null || break
	sleep 0.1
done
kill -KILL "$PING_PID" 2>/dev/null && zw_fail "d. ping ignored SIGINT"
wait "$PING_PID" 2>/dev/null || true
PING_PID=""
summary=$(grep 'packets transmitted' "$PING_LOG") || summary=""
sent=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' <<<"$summary")
recv=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' <<<"$summary")
zw_log "ping stream admin-1 → web-1 at 100/s: $summary"
if [[ -n $sent && -n $recv ]] && ((sent > 100 && sent - recv <= 1)); then
	zw_pass "d. ping stream across the upgrade: $recv of $sent answered"
else
	zw_fail "d. ping stream lost packets across the upgrade: '$summary'"
fi

pg_after=$(zw_rule_packets web-to-db-postgres)
ping_rule_after=$(zw_rule_packets admin-ping)
((pg_after > pg_before && ping_rule_after > ping_rule_before + 100)) &&
	zw_pass "d. counters continue: postgres $pg_before → $pg_after, admin-ping $ping_rule_before → $ping_rule_after" ||
	zw_fail "d. counters reset or stuck: postgres $pg_before → $pg_after, admin-ping $ping_rule_before → $ping_rule_after"
expect_deny db-1 web-1 tcp/80 4

# ---- e. purge --------------------------------------------------------------
kill -TERM "$SESSION_PID" 2>/dev/null || true
stop_unit
purge || zw_die "dpkg --purge zonewall failed"
grep -q '^down: detached 4 interfaces' "$ZW_TMP/purge.log" && zw_pass "e. prerm ran zonewall down: $(grep '^down:' "$ZW_TMP/purge.log")" ||
	zw_fail "e. prerm did not detach the 4 interfaces: $(cat "$ZW_TMP/purge.log")"
zw_assert "e. package gone from dpkg" test -z "$(dpkg-query -W -f='${Status}' zonewall 2>/dev/null | grep installed)"
zw_assert_detached "e. after purge"
zw_assert "e. pin dir $ZW_PIN_DIR removed" test ! -e "$ZW_PIN_DIR"
left=""
for f in /usr/sbin/zonewall /etc/zonewall /lib/systemd/system/zonewall.service /usr/share/zonewall \
	/usr/lib/zonewall /usr/share/doc/zonewall /usr/share/bash-completion/completions/zonewall \
	/usr/share/man/man8/zonewall.8.gz /usr/share/man/man5/zonewall.json.5.gz /run/zonewall; do
	[[ ! -e $f ]] || left+=" $f"
done
zw_assert "e. no file of the package left (left:${left:- none})" test -z "$left"

zw_summary
