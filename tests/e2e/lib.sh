# shellcheck shell=bash
# Shared helpers for the e2e tests (sourced, not run): preflight and skip
# rules, a throwaway lab with unique names, cleanup on every exit path, the
# zonewall wrapper, traffic assertions and the summary line.
#
# Environment: ZONEWALL (the binary; default build/zonewall), ZW_SOURCE_DIR
# (repo root; default derived from this file), CI=true or
# ZW_REQUIRE_PRIVILEGED=1 (a missing privilege or tool is a failure, never a
# skip), ZW_E2E_VERBOSE=1 (print every probe's output).

ZW_E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ZW_SOURCE_DIR=${ZW_SOURCE_DIR:-$(cd "$ZW_E2E_DIR/../.." && pwd)}
ZONEWALL=${ZONEWALL:-$ZW_SOURCE_DIR/build/zonewall}
ZW_LAB=$ZW_SOURCE_DIR/scripts/lab.sh
ZW_PY=/usr/bin/python3
ZW_NETPROBE=$ZW_E2E_DIR/netprobe.py
ZW_POLICY_LAB=${ZW_POLICY_LAB:-$ZW_SOURCE_DIR/policies/examples/lab.json}
ZW_TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)

# Ports every lab VM listens on, so that a refused connection never passes
# for a firewall drop: each port a test probes must be here.
ZW_TCP_PORTS=22,80,443,5432,5433,8080,8100
ZW_UDP_PORTS=53,54

ZW_PASSED=0
ZW_FAILED=0
ZW_FAILURES=()
ZW_BG_PIDS=()
# Namespaces a test makes beyond the lab's (lab.sh down does not know them).
ZW_EXTRA_NETNS=()
ZW_PREFIX=""
ZW_PIN_DIR=""
ZW_STATE_DIR=""
ZW_TMP=""
ZW_HOSTNS=""
ZW_SUMMARY_DONE=0

if [[ -t 1 ]]; then
	ZW_RED=$'\e[1;31m' ZW_GREEN=$'\e[32m' ZW_BOLD=$'\e[1m' ZW_OFF=$'\e[0m'
else
	ZW_RED="" ZW_GREEN="" ZW_BOLD="" ZW_OFF=""
fi

zw_log() { printf '%s [%s] %s\n' "$(date +%T)" "$ZW_TEST_NAME" "$*"; }

# Stops the test at once: a precondition or a setup step failed.
zw_die() {
	printf '%s\n' "${ZW_RED}FATAL [$ZW_TEST_NAME]: $*${ZW_OFF}" >&2
	ZW_FAILED=$((ZW_FAILED + 1))
	ZW_FAILURES+=("FATAL: $*")
	exit 1
}

zw_privileged_required() { [[ ${CI:-} == true || ${ZW_REQUIRE_PRIVILEGED:-} == 1 ]]; }

# Exit 77 (ctest SKIP) with a loud message, or fail where skipping is not allowed.
zw_skip() {
	if zw_privileged_required; then
		printf '%s\n' "${ZW_RED}FAIL [$ZW_TEST_NAME]: $* (CI=true or ZW_REQUIRE_PRIVILEGED=1: a skip is a failure here)${ZW_OFF}" >&2
		exit 1
	fi
	printf '%s\n' "${ZW_RED}**********************************************************************" \
		"SKIPPED [$ZW_TEST_NAME]: $*" \
		"This e2e test did NOT run. Run it as root (or set ZW_REQUIRE_PRIVILEGED=1 to make this an error)." \
		"**********************************************************************${ZW_OFF}" >&2
	exit 77
}

zw_preflight() {
	[[ $(id -u) -eq 0 ]] || zw_skip "needs root (network namespaces, bpffs, tc, XDP); running as uid $(id -u)"
	local tool
	for tool in ip tc nsenter nc "$ZW_PY"; do
		command -v "$tool" >/dev/null || zw_skip "needs '$tool' (scripts/setup.sh installs it)"
	done
	[[ -x $ZONEWALL ]] || zw_die "zonewall binary not found or not executable: '$ZONEWALL' (build it, or set ZONEWALL)"
	[[ -x $ZW_LAB ]] || zw_die "lab script missing: $ZW_LAB"
	[[ -r $ZW_POLICY_LAB ]] || zw_die "lab policy missing: $ZW_POLICY_LAB"
	[[ -d /sys/fs/bpf ]] || zw_skip "no /sys/fs/bpf (bpffs) on this system"
}

# Creates the lab with unique names and arms cleanup. Sets ZW_PREFIX,
# ZW_PIN_DIR, ZW_STATE_DIR, ZW_TMP, ZW_HOSTNS.
zw_setup() {
	zw_preflight
	local tries=0
	while :; do
		ZW_PREFIX="zw$(($$ % 100000))$((RANDOM % 1000))"
		[[ -e /run/netns/$ZW_PREFIX-host ]] || break
		tries=$((tries + 1))
		((tries < 20)) || zw_die "could not find an unused lab prefix"
	done
	ZW_PIN_DIR=/sys/fs/bpf/zw-e2e-$$-$RANDOM
	ZW_STATE_DIR=/run/zonewall-$(basename "$ZW_PIN_DIR")
	ZW_HOSTNS=$ZW_PREFIX-host
	ZW_TMP=$(mktemp -d "/tmp/zw-e2e-$ZW_TEST_NAME.XXXXXX")
	trap zw_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM HUP
	# Probe for namespaces: inside an unprivileged container root may not have them.
	if ! ip netns add "$ZW_PREFIX-probe" 2>"$ZW_TMP/netns.err"; then
		zw_skip "cannot create network namespaces: $(cat "$ZW_TMP/netns.err")"
	fi
	ip netns del "$ZW_PREFIX-probe"
	zw_log "lab prefix $ZW_PREFIX, pin dir $ZW_PIN_DIR, logs $ZW_TMP"
	"$ZW_LAB" up "$ZW_PREFIX" || zw_die "scripts/lab.sh up $ZW_PREFIX failed"
	"$ZW_LAB" inventory "$ZW_PREFIX" >"$ZW_TMP/inventory.json"
}

# Runs on every exit: failure, signal or success. Never fails itself.
zw_cleanup() {
	local rc=$? pid i ns
	trap - EXIT INT TERM HUP
	set +e
	if ((rc != 0 && rc != 77 && ZW_SUMMARY_DONE == 0)); then
		printf '%s\n' "${ZW_RED}== $ZW_TEST_NAME: FAIL (stopped early, exit $rc; $ZW_PASSED checks passed before) ==${ZW_OFF}" >&2
	fi
	if ((rc != 0)) && [[ -n $ZW_PIN_DIR && -d $ZW_PIN_DIR ]]; then
		echo "---- zonewall status / stats at failure ----" >&2
		zw status >&2 2>&1
		zw stats >&2 2>&1
		echo "--------------------------------------------" >&2
	fi
	for pid in "${ZW_BG_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	# Wait for them (a zonewall daemon among them must be gone before `down`),
	# but never hang: what is left after 3 s is killed.
	for pid in "${ZW_BG_PIDS[@]}"; do
		for ((i = 0; i < 30; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null && echo "cleanup: pid $pid ignored SIGTERM for 3 s, killed" >&2
	done
	if [[ -n $ZW_PIN_DIR && -d $ZW_PIN_DIR && -e /run/netns/$ZW_HOSTNS ]]; then
		zw down >"$ZW_TMP/cleanup-down.log" 2>&1 ||
			{
				echo "${ZW_RED}cleanup: zonewall down failed:${ZW_OFF}" >&2
				cat "$ZW_TMP/cleanup-down.log" >&2
			}
	fi
	for ns in "${ZW_EXTRA_NETNS[@]}"; do
		[[ -e /run/netns/$ns ]] || continue
		# shellcheck disable=SC2046 # one pid per word
		kill -KILL $(ip netns pids "$ns" 2>/dev/null) 2>/dev/null
		ip netns del "$ns"
	done
	[[ -z $ZW_PREFIX ]] || "$ZW_LAB" down "$ZW_PREFIX"
	[[ -z $ZW_PIN_DIR ]] || rm -rf "$ZW_PIN_DIR"
	[[ -z $ZW_STATE_DIR ]] || rm -rf "$ZW_STATE_DIR"
	if ((rc != 0)) && [[ -n $ZW_TMP && -d $ZW_TMP ]]; then
		echo "logs kept in $ZW_TMP" >&2
	elif [[ -n $ZW_TMP ]]; then
		rm -rf "$ZW_TMP"
	fi
	exit "$rc"
}

# zonewall in the lab's host namespace with this test's pin dir. nsenter, not
# `ip netns exec`: the latter remounts /sys and would hide the pins.
# zw_alt_port_policy SRC OUT: SRC (the lab policy) with web -> db on
# tcp/5433 instead of the rule web-to-db-postgres (5432), written to OUT: the
# policy change the daemon and cluster tests apply.
zw_alt_port_policy() {
	"$ZW_PY" - "$1" "$2" <<'EOF_ALT' || zw_die "could not derive $2 from $1"
import json, sys
p = json.load(open(sys.argv[1]))
rules = [r for r in p["rules"] if r.get("name") != "web-to-db-postgres"]
if len(rules) != len(p["rules"]) - 1:
    sys.exit("the policy has no rule named web-to-db-postgres")
rules.insert(0, {"name": "web-to-db-5433", "from": "web", "to": "db", "proto": "tcp", "ports": [5433], "action": "allow"})
json.dump(dict(p, rules=rules), open(sys.argv[2], "w"), indent=2)
EOF_ALT
}

zw() {
	nsenter --net="/run/netns/$ZW_HOSTNS" "$ZONEWALL" --pin-dir "$ZW_PIN_DIR" "$@"
}

zw_ns() { printf '%s-%s' "$ZW_PREFIX" "$1"; }
zw_in() {
	local name=$1
	shift
	ip netns exec "$(zw_ns "$name")" "$@"
}
zw_ifname() { "$ZW_LAB" ifname "$ZW_PREFIX" "$1"; }

# Global address of a lab node: zw_addr web-1 4|6
zw_addr() {
	local out
	out=$(ip -n "$(zw_ns "$1")" -o "-$2" addr show dev eth0 scope global)
	out=${out#* inet* }
	printf '%s' "${out%%/*}"
}

# Applies a policy and dies with zonewall's output if it fails.
zw_apply() {
	local out rc=0
	out=$(zw apply "$@" 2>&1) || rc=$?
	if ((rc != 0)); then
		printf '%s\n' "$out" >&2
		zw_die "zonewall apply $* exited $rc"
	fi
	zw_log "applied: $*"
}

# Like zw_apply but returns zonewall's exit code instead of stopping the
# test; its output is in ZW_APPLY_OUT.
ZW_APPLY_OUT=""
zw_try_apply() {
	local rc=0
	# shellcheck disable=SC2034 # read by the tests
	ZW_APPLY_OUT=$(zw apply "$@" 2>&1) || rc=$?
	return "$rc"
}

# Starts the echo listeners (ZW_TCP_PORTS, ZW_UDP_PORTS) in the given nodes.
zw_serve() {
	local name ready i
	for name in "$@"; do
		ready=$ZW_TMP/serve-$name.ready
		zw_in "$name" "$ZW_PY" "$ZW_NETPROBE" serve --tcp "$ZW_TCP_PORTS" \
			--udp "$ZW_UDP_PORTS" --ready "$ready" >"$ZW_TMP/serve-$name.log" 2>&1 &
		ZW_BG_PIDS+=($!)
	done
	for name in "$@"; do
		ready=$ZW_TMP/serve-$name.ready
		for ((i = 0; i < 50; i++)); do
			[[ -e $ready ]] && break
			sleep 0.1
		done
		[[ -e $ready ]] || zw_die "listeners in $name did not start: $(cat "$ZW_TMP/serve-$name.log")"
	done
}

# iputils ping if it is installed and runs; else netprobe.py's raw-socket echo.
zw_have_ping() {
	local p
	p=$(type -P ping) && [[ -x $p ]] && ping -V >/dev/null 2>&1
}

# One probe from SRC to DST over PROTO[/PORT] and address family 4|6.
# Returns 0 = got through, 1 = no answer (dropped), 2 = refused/unreachable
# (something answered: not a silent drop). ZW_PROBE_OUT holds its output.
ZW_PROBE_OUT=""
zw_probe() {
	local src=$1 dst=$2 what=$3 fam=$4 proto port addr rc=0
	proto=${what%%/*}
	port=${what#*/}
	addr=$(zw_addr "$dst" "$fam")
	[[ -n $addr ]] || zw_die "no IPv$fam address on $dst"
	case $proto in
	tcp)
		ZW_PROBE_OUT=$(zw_in "$src" nc -z -v -w 1 "$addr" "$port" 2>&1) || rc=$?
		if ((rc != 0)); then
			[[ $ZW_PROBE_OUT == *refused* || $ZW_PROBE_OUT == *unreachable* ]] && return 2
			return 1
		fi
		;;
	udp)
		ZW_PROBE_OUT=$(zw_in "$src" "$ZW_PY" "$ZW_NETPROBE" udp-probe "$addr" "$port" --timeout 1 2>&1) || rc=$?
		return "$rc"
		;;
	icmp)
		if zw_have_ping; then
			ZW_PROBE_OUT=$(zw_in "$src" ping -n -c 1 -W 1 "$addr" 2>&1) || rc=$?
			((rc == 0)) || return 1
		else
			ZW_PROBE_OUT=$(zw_in "$src" "$ZW_PY" "$ZW_NETPROBE" icmp-probe "$addr" --timeout 1 2>&1) || rc=$?
			return "$rc"
		fi
		;;
	*) zw_die "zw_probe: unknown protocol '$proto'" ;;
	esac
	return 0
}

zw_pass() {
	ZW_PASSED=$((ZW_PASSED + 1))
	printf '  %s✔%s %s\n' "$ZW_GREEN" "$ZW_OFF" "$*"
}

zw_fail() {
	ZW_FAILED=$((ZW_FAILED + 1))
	ZW_FAILURES+=("$*")
	printf '%s\n' "  ${ZW_RED}✘ FAIL: $*${ZW_OFF}" >&2
}

# True if $1 is a positive integer (counters read from --json output).
zw_positive() { [[ $1 =~ ^[0-9]+$ && $1 -gt 0 ]]; }

# A plain assertion: zw_assert "description" command...
zw_assert() {
	local desc=$1
	shift
	if "$@"; then zw_pass "$desc"; else zw_fail "$desc"; fi
}

zw_expect() {
	local want=$1 src=$2 dst=$3 what=$4 fams=${5:-46} fam rc desc i
	for ((i = 0; i < ${#fams}; i++)); do
		fam=${fams:i:1}
		desc="$src → $dst $what IPv$fam"
		rc=0
		zw_probe "$src" "$dst" "$what" "$fam" || rc=$?
		[[ ${ZW_E2E_VERBOSE:-} != 1 ]] || printf '    %s\n' "${ZW_PROBE_OUT//$'\n'/$'\n    '}"
		case $want:$rc in
		allow:0) zw_pass "$desc allowed" ;;
		deny:1) zw_pass "$desc denied" ;;
		allow:*) zw_fail "$desc: expected ALLOWED, got no connection (rc $rc): $ZW_PROBE_OUT" ;;
		deny:0) zw_fail "$desc: expected DENIED, but the traffic got through" ;;
		deny:*) zw_fail "$desc: expected a silent drop, got an answer (refused/unreachable, rc $rc): $ZW_PROBE_OUT" ;;
		esac
	done
}

# expect_allow SRC DST PROTO[/PORT] [FAMILIES]   e.g. expect_allow web-1 db-1 tcp/5432
# FAMILIES is 4, 6 or 46 (default: both).
expect_allow() { zw_expect allow "$@"; }
expect_deny() { zw_expect deny "$@"; }

# Evaluates a Python expression over JSON on stdin, bound to `d`; prints the result.
zw_json() {
	"$ZW_PY" -c 'import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$1"
}

# Packets of a named rule in `zonewall --json stats` (0 if absent).
zw_rule_packets() {
	zw --json stats | zw_json "next((r['packets'] for r in d['rules'] if r['name'] == '$1'), 0)"
}

# No tc filter (ingress, egress) and no XDP program on any managed interface,
# pin dir and state gone: what `zonewall down` promises. $1 labels the checks.
zw_assert_detached() {
	local what=${1:-down} name ifn out
	for name in web-1 web-2 db-1 admin-1; do
		ifn=$(zw_ifname "$name")
		out=$(tc -n "$ZW_HOSTNS" filter show dev "$ifn" ingress 2>&1)
		zw_assert "$what: no tc ingress filter on $ifn ($name)" test -z "$out"
		[[ -z $out ]] || printf '      %s\n' "$out" >&2
		out=$(tc -n "$ZW_HOSTNS" filter show dev "$ifn" egress 2>&1)
		zw_assert "$what: no tc egress filter on $ifn ($name)" test -z "$out"
		[[ -z $out ]] || printf '      %s\n' "$out" >&2
		out=$(ip -n "$ZW_HOSTNS" -d link show dev "$ifn")
		if [[ $out == *xdp* ]]; then
			zw_fail "$what: XDP program still on $ifn ($name): $out"
		else
			zw_pass "$what: no XDP program on $ifn ($name)"
		fi
	done
	[[ $what != down ]] || zw_assert "down: pin dir $ZW_PIN_DIR removed" test ! -e "$ZW_PIN_DIR"
}

# Prints the summary line; returns non-zero if anything failed.
zw_summary() {
	local f
	ZW_SUMMARY_DONE=1
	if ((ZW_FAILED == 0)); then
		printf '%s\n' "${ZW_BOLD}== $ZW_TEST_NAME: PASS ($ZW_PASSED checks) ==${ZW_OFF}"
		return 0
	fi
	printf '%s\n' "${ZW_RED}== $ZW_TEST_NAME: FAIL ($ZW_FAILED of $((ZW_PASSED + ZW_FAILED)) checks failed) ==" >&2
	for f in "${ZW_FAILURES[@]}"; do printf '   ✘ %s\n' "$f" >&2; done
	printf '%s' "$ZW_OFF" >&2
	return 1
}

# ---- long-lived TCP sessions (netprobe tcp-session) ----
# Replies ("ok" lines) in session log $1 after wall-clock time $2.
zw_session_oks_after() {
	[[ -s $1 ]] || {
		echo 0
		return
	}
	awk -v t="$2" '$1 == "ok" && $3 > t { n++ } END { print n + 0 }' "$1"
}

# Starts a tcp-session client from web-1 to db-1 tcp/5432 logging to $1 (pid
# in SESSION_PID); succeeds once it has 5 replies, fails after 3 s.
zw_start_session() {
	local log=$1 i
	zw_in web-1 "$ZW_PY" "$ZW_NETPROBE" tcp-session "$(zw_addr db-1 4)" 5432 --interval 0.1 >"$log" 2>&1 &
	SESSION_PID=$!
	ZW_BG_PIDS+=("$SESSION_PID")
	for ((i = 0; i < 30; i++)); do
		(($(zw_session_oks_after "$log" 0) >= 5)) && return 0
		kill -0 "$SESSION_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$log" >&2
	return 1
}
