# shellcheck shell=bash
# The cluster lab for tests/e2e/test_cluster.sh (sourced, after lib.sh):
# three "hosts" joined by an underlay, a 3-member etcd cluster, VM namespaces
# and one `zonewall daemon --cluster` per host. Run it directly
# (`bash tests/e2e/cluster_lib.sh`, root) to self-test the topology, etcd and
# plain traffic without zonewall.
#
#   P-u       the underlay ("the data centre"): IPv6 off
#             ubr  bridge for VM traffic; u1 u2 u3 (uplinks of the hosts)
#             mbr  management bridge, 10.78.0.1-3/24: the etcd members listen
#                  here (client :2379, peer :2380; member i on 10.78.0.i);
#                  m1 m2 m3 (management links of the hosts)
#   P-h1..h3  a hypervisor: IPv6 off; br0 bridge with up0 (veth to ui in P-u)
#             and the VMs' taps; mg0 10.78.0.1i/24 (veth to mi on mbr) is its
#             only way to etcd. Cutting a host off etcd = mg0 down.
#   P-NAME    a VM: eth0 with its MAC, 10.77.0.X/24 and fd77::X/64, peer of
#             the tap zcvTAG in its host's namespace (zcv* is the daemons'
#             tap pattern; the static inventory names the tap).
#
# All VMs share one L2 subnet through the underlay, so cross-host traffic is
# bridged (h1 br0 → up0 → ubr → up0 → h2 br0) and judged only by the from-VM
# hook of the sender's tap and the to-VM hook of the receiver's tap.
# Every interface lives in a namespace this file creates: nothing is made in
# the root namespace, and fixed ports are free in a fresh namespace.
#
# zonewall, etcdctl and `zonewall apply/status --cluster` reach etcd from
# inside P-u (zwc_u) or a host (zwc_zw HOST).

ZWC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
[[ -n ${ZW_E2E_DIR:-} ]] || source "$ZWC_DIR/lib.sh"
# lib.sh named the test after its caller: this file, when a test sources it.
ZW_TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)

ZWC_PROBE=$ZWC_DIR/cluster_probe.py
ZWC_HOSTS=(h1 h2 h3)
ZWC_ETCD_MEMBERS=(1 2 3)
ZWC_TAP_PATTERN='zcv*'
ZWC_ENDPOINTS="http://10.78.0.1:2379,http://10.78.0.2:2379,http://10.78.0.3:2379"
# Lease TTL the daemons are started with (cluster.lease_ttl, seconds).
ZWC_LEASE_TTL=${ZWC_LEASE_TTL:-6}

# name tag host mac-suffix ipv4 ipv6; uuid c1a5e0XX-...-0000000000XX.
ZWC_VMS=(
	"web-1   w1 h1 11 10.77.0.11 fd77::11"
	"db-1    d1 h1 21 10.77.0.21 fd77::21"
	"web-2   w2 h2 12 10.77.0.12 fd77::12"
	"admin-1 a1 h2 31 10.77.0.31 fd77::31"
	"web-3   w3 h3 13 10.77.0.13 fd77::13"
	"db-2    d2 h3 22 10.77.0.22 fd77::22"
)
declare -A ZWC_VM_TAG=() ZWC_VM_HOST=() ZWC_VM_MAC=() ZWC_VM_V4=() ZWC_VM_V6=() ZWC_VM_UUID=()
declare -A ZWC_VM_ATTACHED=() # name -> host it is attached to now ("" = detached)
declare -A ZWC_VM_ALSO=()     # name -> a second host listing it (live migration's overlap)
declare -A ZWC_VM_INCOMING=() # name -> host where zwc_vm_prepare made its next tap
declare -A ZWC_ETCD_PID=() ZWC_DAEMON_PID=() ZWC_DAEMON_LOG=() ZWC_DAEMON_N=()
ZWC_P=""
ZWC_U=""
ZWC_TMP=""
ZWC_ETCD_DIR=""
ZWC_PFX=""
ZWC_CLEANUP_HOOKS=()
ZWC_DAEMON_ARGS=()

zwc_init_vms() {
	local line name tag host mac v4 v6
	for line in "${ZWC_VMS[@]}"; do
		read -r name tag host mac v4 v6 <<<"$line"
		ZWC_VM_TAG[$name]=$tag
		ZWC_VM_HOST[$name]=$host
		ZWC_VM_MAC[$name]=52:54:00:77:00:$mac
		ZWC_VM_V4[$name]=$v4
		ZWC_VM_V6[$name]=$v6
		ZWC_VM_UUID[$name]=c1a5e0$mac-0000-4c70-9a00-0000000000$mac
		ZWC_VM_ATTACHED[$name]=""
	done
}
zwc_init_vms

zwc_hns() { printf '%s-%s' "$ZWC_P" "$1"; } # host namespace
zwc_vns() { printf '%s-%s' "$ZWC_P" "$1"; } # VM namespace
zwc_tap() { printf 'zcv%s' "${ZWC_VM_TAG[$1]}"; }
zwc_pin() { printf '/sys/fs/bpf/zw-ct-%s-%s' "$$" "$1"; }
zwc_state() { printf '/run/zonewall-zw-ct-%s-%s' "$$" "$1"; }
zwc_inv() { printf '%s/inventory-%s.json' "$ZWC_TMP" "$1"; }
zwc_now() { printf '%s' "$EPOCHREALTIME"; }
zwc_ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

# A command in the underlay namespace (where etcd listens), in host HOST.
zwc_u() { nsenter --net="/run/netns/$ZWC_U" "$@"; }
zwc_in_host() {
	local h=$1
	shift
	nsenter --net="/run/netns/$(zwc_hns "$h")" "$@"
}
zwc_etcdctl() { zwc_u etcdctl --endpoints="$ZWC_ENDPOINTS" --dial-timeout=2s --command-timeout=5s "$@"; }
# zonewall as host HOST's instance (its pin dir and state dir), in its namespace.
zwc_zw() {
	local h=$1
	shift
	zwc_in_host "$h" "$ZONEWALL" --pin-dir "$(zwc_pin "$h")" --state-dir "$(zwc_state "$h")" "$@"
}
# zonewall from the underlay: apply/status --cluster talk to etcd only.
zwc_zwu() { zwc_u "$ZONEWALL" "$@"; }

zwc_preflight() {
	[[ $(id -u) -eq 0 ]] || zw_skip "needs root (network namespaces, bpffs, tc); running as uid $(id -u)"
	local tool
	for tool in ip tc nsenter etcd etcdctl ping tcpdump "$ZW_PY"; do
		command -v "$tool" >/dev/null || zw_skip "needs '$tool' (scripts/setup.sh installs it)"
	done
	[[ -d /sys/fs/bpf ]] || zw_skip "no /sys/fs/bpf (bpffs) on this system"
}

# ---- topology ----
zwc_sysctl() {
	local ns=$1
	shift
	ip netns exec "$ns" sysctl -qw "$@" >/dev/null
}
zwc_new_ns() {
	ip netns add "$1"
	ip -n "$1" link set lo up
}
zwc_bridge() { # NS NAME
	ip -n "$1" link add "$2" type bridge stp_state 0 mcast_snooping 0
	ip -n "$1" link set "$2" up
}

zwc_underlay_up() {
	local i h hns
	zwc_new_ns "$ZWC_U"
	zwc_sysctl "$ZWC_U" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	zwc_bridge "$ZWC_U" ubr
	zwc_bridge "$ZWC_U" mbr
	for i in "${ZWC_ETCD_MEMBERS[@]}"; do ip -n "$ZWC_U" addr add "10.78.0.$i/24" dev mbr; done
	i=0
	for h in "${ZWC_HOSTS[@]}"; do
		i=$((i + 1))
		hns=$(zwc_hns "$h")
		zwc_new_ns "$hns"
		zwc_sysctl "$hns" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
		zwc_bridge "$hns" br0
		ip -n "$hns" link add up0 type veth peer name "u$i" netns "$ZWC_U"
		ip -n "$hns" link set up0 master br0 up
		ip -n "$ZWC_U" link set "u$i" master ubr up
		ip -n "$hns" link add mg0 type veth peer name "m$i" netns "$ZWC_U"
		ip -n "$hns" addr add "10.78.0.$((10 + i))/24" dev mg0
		ip -n "$hns" link set mg0 up
		ip -n "$ZWC_U" link set "m$i" master mbr up
	done
}

# Plugs VM NAME into HOST: a new veth, tap end zcvTAG on HOST's br0, eth0 in
# the VM namespace (made on first use) with the VM's MAC and addresses; with
# a third argument "down" eth0 stays down (a paused guest: `ip -n NS link set
# eth0 up` resumes it).
zwc_vm_attach() {
	local name=$1 h=$2 state=${3:-up} vns hns tap
	vns=$(zwc_vns "$name")
	hns=$(zwc_hns "$h")
	tap=$(zwc_tap "$name")
	if [[ ! -e /run/netns/$vns ]]; then
		zwc_new_ns "$vns"
		zwc_sysctl "$vns" net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.default.accept_ra=0 \
			net.ipv6.conf.default.router_solicitations=0 net.ipv6.conf.all.accept_ra=0
	fi
	ip -n "$hns" link add "$tap" type veth peer name eth0 netns "$vns" address "${ZWC_VM_MAC[$name]}"
	ip -n "$hns" link set "$tap" master br0 up
	ip -n "$vns" addr add "${ZWC_VM_V4[$name]}/24" dev eth0
	ip -n "$vns" addr add "${ZWC_VM_V6[$name]}/64" dev eth0 nodad
	[[ $state == down ]] || ip -n "$vns" link set eth0 up
	ZWC_VM_ATTACHED[$name]=$h
}

# The VM announces itself (gratuitous ARP + unsolicited NA), as QEMU does
# when a migrated guest resumes: the bridges learn its new port at once.
zwc_vm_announce() {
	local name=$1
	ip netns exec "$(zwc_vns "$name")" "$ZW_PY" "$ZWC_PROBE" announce eth0 "${ZWC_VM_MAC[$name]}" \
		"${ZWC_VM_V4[$name]}" "${ZWC_VM_V6[$name]}"
}

# Live migration, destination side: a tap for VM NAME on HOST whose VM end
# (eth1, down, no addresses) waits in the VM namespace next to the running
# eth0, as QEMU's incoming side before the switch-over.
zwc_vm_prepare() {
	local name=$1 h=$2
	ip -n "$(zwc_hns "$h")" link add "$(zwc_tap "$name")" type veth peer name eth1 \
		netns "$(zwc_vns "$name")" address "${ZWC_VM_MAC[$name]}"
	ip -n "$(zwc_hns "$h")" link set "$(zwc_tap "$name")" master br0 up
	ZWC_VM_INCOMING[$name]=$h
}
# The switch-over: the source's tap goes (the source QEMU stops), eth1 becomes
# eth0 with the VM's addresses and comes up (the guest runs on the destination).
zwc_vm_switch() {
	local name=$1 vns
	vns=$(zwc_vns "$name")
	zwc_vm_detach "$name"
	ip -n "$vns" link set eth1 name eth0
	ip -n "$vns" addr add "${ZWC_VM_V4[$name]}/24" dev eth0
	ip -n "$vns" addr add "${ZWC_VM_V6[$name]}/64" dev eth0 nodad
	ip -n "$vns" link set eth0 up
	ZWC_VM_ATTACHED[$name]=${ZWC_VM_INCOMING[$name]}
	ZWC_VM_INCOMING[$name]=""
}

# Unplugs VM NAME (its tap and eth0 go); the namespace and its listeners stay.
zwc_vm_detach() {
	local name=$1 h=${ZWC_VM_ATTACHED[$1]}
	[[ -n $h ]] || zw_die "zwc_vm_detach: $name is not attached"
	ip -n "$(zwc_hns "$h")" link del "$(zwc_tap "$name")"
	ZWC_VM_ATTACHED[$name]=""
}

# HOST's static inventory: the VMs ZWC_VM_HOST (or ZWC_VM_ALSO) puts there,
# attached or not.
# Written to a temporary file and renamed: a daemon never reads half a file.
zwc_write_inventory() {
	local h=$1 name sep="" f
	f=$(zwc_inv "$h")
	{
		printf '{"vms": ['
		for name in "${!ZWC_VM_HOST[@]}"; do
			[[ ${ZWC_VM_HOST[$name]} == "$h" || ${ZWC_VM_ALSO[$name]:-} == "$h" ]] || continue
			printf '%s\n  {"name": "%s", "uuid": "%s", "interfaces": [{"name": "%s", "mac": "%s", "ips": ["%s", "%s"]}]}' \
				"$sep" "$name" "${ZWC_VM_UUID[$name]}" "$(zwc_tap "$name")" "${ZWC_VM_MAC[$name]}" \
				"${ZWC_VM_V4[$name]}" "${ZWC_VM_V6[$name]}"
			sep=,
		done
		printf '\n]}\n'
	} >"$f.tmp"
	mv -f "$f.tmp" "$f"
}

# The management link of HOST: down = the host cannot reach etcd at all
# (packets go nowhere: no RST, no ICMP, as with a cut cable).
zwc_host_etcd_link() { ip -n "$(zwc_hns "$1")" link set mg0 "$2"; }

# ---- etcd ----
zwc_etcd_start() {
	local i=$1 ip=10.78.0.$1 cluster="" m
	for m in "${ZWC_ETCD_MEMBERS[@]}"; do cluster+="${cluster:+,}m$m=http://10.78.0.$m:2380"; done
	# A restarted member finds its data dir and ignores the --initial-* flags.
	nsenter --net="/run/netns/$ZWC_U" etcd --name "m$i" --data-dir "$ZWC_ETCD_DIR/m$i" \
		--listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
		--listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
		--initial-cluster "$cluster" --initial-cluster-state new \
		--initial-cluster-token "zw-ct-$$" --log-outputs stderr \
		>>"$ZWC_TMP/etcd-m$i.log" 2>&1 &
	ZWC_ETCD_PID[$i]=$!
}

zwc_etcd_kill() {
	local i=$1 pid=${ZWC_ETCD_PID[$1]:-}
	[[ -n $pid ]] || return 0
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
	ZWC_ETCD_PID[$i]=""
}

# Waits until members $@ (default: all) answer `endpoint health`; $TIMEOUT s (20).
zwc_etcd_wait_healthy() {
	local members=("$@") eps="" m deadline out
	(($#)) || members=("${ZWC_ETCD_MEMBERS[@]}")
	for m in "${members[@]}"; do eps+="${eps:+,}http://10.78.0.$m:2379"; done
	deadline=$((SECONDS + ${TIMEOUT:-20}))
	while ((SECONDS < deadline)); do
		if out=$(zwc_u etcdctl --endpoints="$eps" --dial-timeout=1s --command-timeout=2s endpoint health 2>&1); then
			return 0
		fi
		sleep 0.2
	done
	printf '%s\n' "$out" >&2
	return 1
}

zwc_etcd_up() {
	local m
	for m in "${ZWC_ETCD_MEMBERS[@]}"; do zwc_etcd_start "$m"; done
	zwc_etcd_wait_healthy || {
		tail -n 20 "$ZWC_TMP"/etcd-m*.log >&2
		zw_die "the 3 etcd members did not become healthy within 20 s"
	}
}

# ---- daemons ----
# Starts host HOST's daemon (cluster mode, static inventory, its own pins);
# with $ZWC_TMP/config-HOST.json as its configuration file if that exists.
zwc_daemon_start() {
	local h=$1 n config=()
	n=$((${ZWC_DAEMON_N[$h]:-0} + 1))
	ZWC_DAEMON_N[$h]=$n
	ZWC_DAEMON_LOG[$h]=$ZWC_TMP/daemon-$h-$n.log
	zwc_write_inventory "$h"
	[[ ! -e $ZWC_TMP/config-$h.json ]] || config=(--config "$ZWC_TMP/config-$h.json")
	# nsenter directly (not through zwc_zw): `&` on a function forks a
	# subshell and $! would not be the daemon.
	nsenter --net="/run/netns/$(zwc_hns "$h")" "$ZONEWALL" --pin-dir "$(zwc_pin "$h")" \
		--state-dir "$(zwc_state "$h")" "${config[@]}" daemon --cluster "$ZWC_ENDPOINTS" --host "$h" --cluster-prefix "$ZWC_PFX" \
		--no-libvirt --inventory "$(zwc_inv "$h")" --tap-pattern "$ZWC_TAP_PATTERN" \
		"${ZWC_DAEMON_ARGS[@]}" >"${ZWC_DAEMON_LOG[$h]}" 2>&1 &
	ZWC_DAEMON_PID[$h]=$!
	zw_log "daemon $h #$n started (pid ${ZWC_DAEMON_PID[$h]}, log ${ZWC_DAEMON_LOG[$h]})"
}

zwc_daemon_alive() { [[ -n ${ZWC_DAEMON_PID[$1]:-} ]] && kill -0 "${ZWC_DAEMON_PID[$1]}" 2>/dev/null; }

# SIGTERM, wait up to 5 s, then SIGKILL. Returns the daemon's exit status.
zwc_daemon_stop() {
	local h=$1 pid=${ZWC_DAEMON_PID[$1]:-} i rc=0
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null && echo "daemon $h (pid $pid) ignored SIGTERM for 5 s, killed" >&2
	wait "$pid" 2>/dev/null || rc=$?
	ZWC_DAEMON_PID[$h]=""
	return "$rc"
}

# Re-reads HOST's inventory now (as a libvirt event would).
zwc_daemon_hup() { kill -HUP "${ZWC_DAEMON_PID[$1]}"; }

# Polls COMMAND... (JSON on stdout) until the Python expression $2 (over d)
# is true, at most $1 seconds; a non-empty $3 is a daemon host that must stay
# alive meanwhile. Prints the last JSON on timeout; ZWC_WAIT_MS is how long
# it took.
ZWC_WAIT_MS=0 # read by the tests
ZWC_LAST_JSON=""
zwc_wait_json() {
	local limit=$1 expr=$2 h=$3 t0 deadline
	shift 3
	t0=$(zwc_now)
	deadline=$((SECONDS + limit))
	while ((SECONDS <= deadline)); do
		if [[ -n $h ]] && ! zwc_daemon_alive "$h"; then
			tail -n 30 "${ZWC_DAEMON_LOG[$h]}" >&2
			zw_die "daemon $h exited (log above)"
		fi
		ZWC_LAST_JSON=$("$@" 2>/dev/null) || true
		if [[ -n $ZWC_LAST_JSON ]] && [[ $(zw_json "bool($expr)" <<<"$ZWC_LAST_JSON" 2>/dev/null) == True ]]; then
			ZWC_WAIT_MS=$(zwc_ms_since "$t0")
			return 0
		fi
		sleep 0.05
	done
	# shellcheck disable=SC2034 # read by the tests
	ZWC_WAIT_MS=$(zwc_ms_since "$t0")
	printf 'last output of %s: %s\n' "$*" "$ZWC_LAST_JSON" >&2
	return 1
}
# `zonewall status --json` of HOST (through its daemon): zwc_wait_local HOST EXPR [SECONDS=15]
zwc_wait_local() { zwc_wait_json "${3:-15}" "$2" "$1" zwc_zw "$1" --json status; }
# `zonewall status --cluster --json` (etcd only, from the underlay): zwc_wait_cluster EXPR [SECONDS=15]
zwc_wait_cluster() {
	zwc_wait_json "${2:-15}" "$1" "" zwc_zwu status --cluster "$ZWC_ENDPOINTS" --cluster-prefix "$ZWC_PFX" --json
}

# ---- traffic ----
# lib.sh's zw_serve / zw_probe / expect_allow / expect_deny find a VM by
# namespace PREFIX-NAME and its eth0 addresses: ZW_PREFIX is this lab's prefix.

# Starts a continuous prober (cluster_probe.py loop) from SRC to DST; its log
# is $ZWC_TMP/loop-LABEL.log; pid in ZWC_LOOP_PID[LABEL].
declare -A ZWC_LOOP_PID=()
zwc_loop_start() {
	local label=$1 src=$2 dst=$3 what=$4 fam=$5 proto pargs=() addr
	proto=${what%%/*}
	[[ $proto == icmp ]] || pargs=("${what#*/}")
	if [[ $fam == 4 ]]; then addr=${ZWC_VM_V4[$dst]}; else addr=${ZWC_VM_V6[$dst]}; fi
	ip netns exec "$(zwc_vns "$src")" "$ZW_PY" "$ZWC_PROBE" loop "$proto" "$addr" "${pargs[@]}" \
		--interval 0.02 --timeout 0.25 >"$ZWC_TMP/loop-$label.log" 2>&1 &
	ZWC_LOOP_PID[$label]=$!
	ZW_BG_PIDS+=($!)
}
zwc_loop_stop() {
	local pid=${ZWC_LOOP_PID[$1]}
	kill -TERM "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
	return 0
}
# Counts of a loop's results sent at or after time $2 (and before $3): "ok drop refused".
zwc_loop_counts() {
	awk -v a="${2:-0}" -v b="${3:-1e12}" '$1 >= a && $1 < b { n[$2]++ }
		END { printf "%d %d %d\n", n["ok"], n["drop"], n["refused"] }' "$ZWC_TMP/loop-$1.log"
}
# Time of the first "ok" sent at or after $2 (empty if none).
zwc_loop_first_ok() {
	awk -v a="$2" '$1 >= a && $2 == "ok" { print $1; exit }' "$ZWC_TMP/loop-$1.log"
}

# A UDP stream (cluster_probe.py stream, one datagram every 10 ms, echoed by
# the listener on udp/53 or 54) from SRC to DST; log $ZWC_TMP/stream-LABEL.log.
zwc_stream_start() {
	local label=$1 src=$2 dst=$3 port=$4 fam=$5 addr
	if [[ $fam == 4 ]]; then addr=${ZWC_VM_V4[$dst]}; else addr=${ZWC_VM_V6[$dst]}; fi
	ip netns exec "$(zwc_vns "$src")" "$ZW_PY" "$ZWC_PROBE" stream "$addr" "$port" \
		>"$ZWC_TMP/stream-$label.log" 2>&1 &
	ZWC_LOOP_PID[$label]=$!
	ZW_BG_PIDS+=($!)
}
# "sent answered" for datagrams sent in [$2, $3) (wall-clock seconds).
zwc_stream_counts() {
	awk -v a="${2:-0}" -v b="${3:-1e12}" '$3 >= a && $3 < b { n[$1]++ }
		END { printf "%d %d\n", n["sent"], n["ok"] }' "$ZWC_TMP/stream-$1.log"
}
# Send time of the first answered datagram sent at or after $2 (empty if none).
zwc_stream_first_ok() {
	awk -v a="$2" '$1 == "ok" && $3 >= a { print $3; exit }' "$ZWC_TMP/stream-$1.log"
}
# Send time of the last unanswered datagram sent in [$2, $3) (empty if none).
zwc_stream_last_lost() {
	awk -v a="$2" -v b="$3" '$3 >= a && $3 < b { if ($1 == "sent") s[$2] = $3; else delete s[$2] }
		END { m = ""; for (k in s) if (m == "" || s[k] > m) m = s[k]; print m }' "$ZWC_TMP/stream-$1.log"
}
# Milliseconds from $1 to $2 (wall-clock seconds).
zwc_ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

# ---- cleanup ----
zwc_cleanup() {
	local rc=$? pid h ns i f
	trap - EXIT INT TERM HUP
	set +e
	if ((rc != 0 && rc != 77 && ZW_SUMMARY_DONE == 0)); then
		printf '%s\n' "${ZW_RED}== $ZW_TEST_NAME: FAIL (stopped early, exit $rc; $ZW_PASSED checks passed before) ==${ZW_OFF}" >&2
	fi
	for f in "${ZWC_CLEANUP_HOOKS[@]}"; do "$f"; done
	for h in "${ZWC_HOSTS[@]}"; do
		if ((rc != 0)) && zwc_daemon_alive "$h"; then
			echo "---- daemon $h: last log lines ----" >&2
			tail -n 15 "${ZWC_DAEMON_LOG[$h]}" >&2
		fi
		zwc_daemon_stop "$h" >/dev/null 2>&1
	done
	for pid in "${ZW_BG_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	for pid in "${ZW_BG_PIDS[@]}"; do
		for ((i = 0; i < 30; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
	done
	for i in "${ZWC_ETCD_MEMBERS[@]}"; do zwc_etcd_kill "$i"; done
	if [[ -n $ZWC_P ]]; then
		for h in "${ZWC_HOSTS[@]}"; do
			[[ -d $(zwc_pin "$h") && -e /run/netns/$(zwc_hns "$h") ]] || continue
			zwc_zw "$h" down >"$ZWC_TMP/cleanup-down-$h.log" 2>&1 || {
				echo "${ZW_RED}cleanup: zonewall down on $h failed:${ZW_OFF}" >&2
				cat "$ZWC_TMP/cleanup-down-$h.log" >&2
			}
		done
		for ns in $(ip netns list | awk -v p="$ZWC_P-" 'index($1, p) == 1 { print $1 }'); do
			# shellcheck disable=SC2046 # one pid per word
			kill -KILL $(ip netns pids "$ns" 2>/dev/null) 2>/dev/null
			ip netns del "$ns"
		done
		for h in "${ZWC_HOSTS[@]}"; do rm -rf "$(zwc_pin "$h")" "$(zwc_state "$h")"; done
	fi
	[[ -z $ZWC_ETCD_DIR ]] || rm -rf "$ZWC_ETCD_DIR"
	if ((rc != 0)) && [[ -n $ZWC_TMP && -d $ZWC_TMP ]]; then
		echo "logs kept in $ZWC_TMP" >&2
	elif [[ -n $ZWC_TMP ]]; then
		rm -rf "$ZWC_TMP"
	fi
	exit "$rc"
}

# Builds the whole lab (without daemons): underlay, hosts, VMs on their home
# hosts, etcd. Arms cleanup first.
zwc_setup() {
	local tries=0 name
	zwc_preflight
	while :; do
		ZWC_P="zc$(($$ % 100000))$((RANDOM % 1000))"
		[[ -e /run/netns/$ZWC_P-u ]] || break
		tries=$((tries + 1))
		((tries < 20)) || zw_die "could not find an unused lab prefix"
	done
	ZWC_U=$ZWC_P-u
	ZW_PREFIX=$ZWC_P # lib.sh: VM namespace = PREFIX-NAME
	ZWC_PFX=/zw-ct-$$
	ZWC_TMP=$(mktemp -d "/tmp/zw-e2e-$ZW_TEST_NAME.XXXXXX")
	ZW_TMP=$ZWC_TMP
	# etcd fsyncs every write: on tmpfs, not the shared disk.
	ZWC_ETCD_DIR=$(mktemp -d /dev/shm/zw-ct-etcd.XXXXXX)
	trap zwc_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM HUP
	if ! ip netns add "$ZWC_P-probe" 2>"$ZWC_TMP/netns.err"; then
		zw_skip "cannot create network namespaces: $(cat "$ZWC_TMP/netns.err")"
	fi
	ip netns del "$ZWC_P-probe"
	zw_log "cluster lab $ZWC_P (underlay $ZWC_U), etcd prefix $ZWC_PFX, logs $ZWC_TMP"
	zwc_underlay_up || zw_die "could not build the underlay and hosts"
	for name in "${!ZWC_VM_HOST[@]}"; do
		zwc_vm_attach "$name" "${ZWC_VM_HOST[$name]}" || zw_die "could not plug $name into ${ZWC_VM_HOST[$name]}"
	done
	zwc_etcd_up
	zw_log "etcd: 3 members healthy at $ZWC_ENDPOINTS"
}

# ---- self-test: the harness without zonewall ----
zwc_selftest() {
	local out h rc t0 n
	zwc_setup
	# shellcheck disable=SC2086 # names are single words
	zw_serve ${!ZWC_VM_HOST[*]}

	out=$(zwc_etcdctl member list 2>&1)
	zw_assert "etcd has 3 members: $(wc -l <<<"$out")" test "$(grep -c started <<<"$out")" = 3
	for h in "${ZWC_HOSTS[@]}"; do
		out=$(zwc_in_host "$h" etcdctl --endpoints="$ZWC_ENDPOINTS" --dial-timeout=2s put "$ZWC_PFX/selftest/$h" "from $h" 2>&1)
		zw_assert "host $h writes to etcd over its management link ($out)" test "$out" = OK
	done
	out=$(zwc_etcdctl get --prefix --keys-only "$ZWC_PFX/selftest/" | grep -c .)
	zw_assert "3 keys written by the hosts ($out)" test "$out" = 3

	# A lease expires and takes its keys (what the publishers rely on).
	out=$(zwc_etcdctl lease grant 2 | awk '{ print $2 }')
	zwc_etcdctl put --lease="$out" "$ZWC_PFX/selftest/leased" x >/dev/null
	sleep 3.5
	n=$(zwc_etcdctl get --prefix --keys-only "$ZWC_PFX/selftest/leased" | grep -c . || true)
	zw_assert "a key under a 2 s lease is gone after 3.5 s" test "$n" = 0

	# Cross-host traffic, no firewall anywhere: everything reaches everything.
	expect_allow web-1 db-2 tcp/5432
	expect_allow db-2 web-1 udp/53
	expect_allow admin-1 web-3 icmp
	expect_allow web-2 db-1 tcp/80

	# One member killed: the others still serve; it comes back.
	zwc_etcd_kill 1
	TIMEOUT=10 zwc_etcd_wait_healthy 2 3
	zw_assert "members 2 and 3 healthy with member 1 killed" test $? = 0
	out=$(zwc_in_host h2 etcdctl --endpoints="$ZWC_ENDPOINTS" --dial-timeout=2s put "$ZWC_PFX/selftest/k1" v 2>&1)
	zw_assert "a client given all 3 endpoints writes with member 1 down ($out)" test "$out" = OK
	zwc_etcd_start 1
	zwc_etcd_wait_healthy
	zw_assert "member 1 restarted and healthy" test $? = 0

	# A host cut off etcd cannot reach any member; the others can; it comes back.
	zwc_host_etcd_link h3 down
	rc=0
	zwc_in_host h3 etcdctl --endpoints="$ZWC_ENDPOINTS" --dial-timeout=1s --command-timeout=2s get x >/dev/null 2>&1 || rc=$?
	zw_assert "h3 with mg0 down cannot reach etcd" test "$rc" != 0
	expect_allow web-3 web-1 tcp/80 4
	zwc_host_etcd_link h3 up
	t0=$SECONDS
	until zwc_in_host h3 etcdctl --endpoints="$ZWC_ENDPOINTS" --dial-timeout=1s get x >/dev/null 2>&1; do
		((SECONDS - t0 < 10)) || break
		sleep 0.2
	done
	zw_assert "h3 reaches etcd again once mg0 is up" \
		zwc_in_host h3 etcdctl --endpoints="$ZWC_ENDPOINTS" --dial-timeout=1s get x

	# Moving a VM: unplug from h2, plug into h3 with the same MAC and addresses.
	zwc_stream_start sw web-1 web-2 53 4
	sleep 0.5
	zwc_vm_detach web-2
	sleep 0.3
	zwc_vm_attach web-2 h3
	t0=$(zwc_now)
	zwc_vm_announce web-2
	sleep 1
	zwc_loop_stop sw
	out=$(zwc_stream_first_ok sw "$t0")
	zw_assert "web-1 reaches web-2 again after it moved to h3 (first answered datagram sent $(zwc_ms "$t0" "${out:-0}") ms after its eth0 came up; counts before $(zwc_stream_counts sw 0 "$t0"), after $(zwc_stream_counts sw "$t0"))" test -n "$out"
	expect_allow db-2 web-2 tcp/80 46
	zw_summary
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -uo pipefail
	ZW_TEST_NAME=cluster_lib_selftest
	zwc_selftest
fi
