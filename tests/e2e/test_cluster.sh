#!/usr/bin/env bash
# Cluster mode (issue 8) on the cluster lab (cluster_lib.sh): 3 etcd members,
# 3 hosts each with its own `zonewall daemon --cluster`, pin dir, state dir
# and static inventory, VMs bridged across hosts by an underlay. Real traffic
# between VM namespaces throughout:
#  a. before any cluster policy the daemons enforce fail-closed defaults;
#  b. one `zonewall apply --cluster` reaches all three hosts (status
#     --cluster converged; the time is printed); cross-host traffic is allowed
#     and denied by zone, both directions, IPv4 and IPv6;
#  c. an invalid policy is refused with check's exit code and nothing is
#     written (the revision stays);
#  d. a policy change reaches all hosts and changes cross-host traffic;
#  e. a VM moved h2 → h3 (stopped, then started: same MAC, addresses,
#     UUID), then live-migrated h3 → h1 (both hosts publish it during the
#     overlap), keeps its policy: probed every 10-20 ms from every host
#     during each move, no denied datagram passes, allowed traffic resumes,
#     and the window in which each host still judged it with stale data is
#     measured and printed (0 for its own enforcement);
#  f. one etcd member killed: apply and convergence still work;
#  g. a host cut off etcd (its management link down): it keeps enforcing its
#     last state (denied stays denied, allowed stays allowed), its status
#     says disconnected, its lease expires for the others; a policy applied
#     meanwhile reaches the others, and it converges to it once reconnected;
#  h. an address claimed by two VMs (two UUIDs) on two hosts is used by
#     neither on a third host (fail closed, a warning names both), and is
#     again once one claim goes.
set -euo pipefail
# shellcheck source=tests/e2e/cluster_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster_lib.sh"

CONVERGE_S=20 # a policy revision must be enforced everywhere within this

# --- helpers over the contract's JSON ---
# zonewall apply --cluster POLICY: prints the revision; dies on failure.
REVISION=0
cluster_apply() {
	local out rc=0
	out=$(zwc_zwu --json apply --cluster "$ZWC_ENDPOINTS" --cluster-prefix "$ZWC_PFX" "$1" 2>&1) || rc=$?
	if ((rc != 0)); then
		printf '%s\n' "$out" >&2
		zw_die "zonewall apply --cluster $1 exited $rc"
	fi
	REVISION=$(zw_json "d['revision']" <<<"$out") || zw_die "apply --cluster --json printed no revision: $out"
	zw_positive "$REVISION" || zw_die "apply --cluster: revision '$REVISION' is not a positive integer"
	zw_log "applied $(basename "$1") to the cluster: revision $REVISION"
}

# The revision of PFX/policy as etcd itself has it (0 if there is none).
etcd_policy_revision() {
	local out
	out=$(zwc_etcdctl get "$ZWC_PFX/policy" -w json) || return 1
	zw_json "d.get('kvs', [{}])[0].get('mod_revision', 0)" <<<"$out"
}

# Waits until status --cluster shows exactly hosts $2 (space-separated, sorted)
# all at revision $1 and converged; prints the time it took.
expect_converged() {
	local rev=$1 hosts=$2 what=$3
	if zwc_wait_cluster "d['converged'] and d['policy_revision'] == $rev and \
' '.join(sorted(h['host'] for h in d['hosts'])) == '$hosts' and \
all(h['policy_revision'] == $rev and h['converged'] for h in d['hosts'])" "$CONVERGE_S"; then
		zw_pass "$what: hosts $hosts enforce revision $rev (status --cluster converged after $ZWC_WAIT_MS ms)"
	else
		zw_fail "$what: status --cluster did not show hosts '$hosts' converged on revision $rev within $CONVERGE_S s"
	fi
}

# The local status of HOST has a cluster section matching expression $2.
expect_local() {
	local h=$1 expr=$2 what=$3 limit=${4:-$CONVERGE_S}
	if zwc_wait_local "$h" "$expr" "$limit"; then
		zw_pass "$h: $what (after $ZWC_WAIT_MS ms)"
	else
		zw_fail "$h: $what: not within $limit s"
	fi
}

# --- migration analysis over the probe logs (cluster_lib.sh streams/loops) ---
plus_s() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }
# A denied stream: not one datagram answered, before, during or after the move.
denied_throughout() {
	local sent ok
	read -r sent ok < <(zwc_stream_counts "$1" 0 "$2")
	zw_assert "stream $1 (denied): 0 of $sent datagrams answered across the move" test "$ok" = 0 -a "$sent" -gt 100
}
# An allowed stream answered again after the guest resumed at $2 and stayed
# up (from +0.5 s to the end $3, at most one datagram lost); the observer's
# stale window = first answered datagram sent after $2, minus $2.
MIG_REPORT=""
resumed() {
	local l=$1 t_up=$2 t_end=$3 first win sent ok
	first=$(zwc_stream_first_ok "$l" "$t_up")
	if [[ -z $first ]]; then
		zw_fail "stream $l: nothing answered after web-2 resumed"
		return
	fi
	win=$(zwc_ms "$t_up" "$first")
	read -r sent ok < <(zwc_stream_counts "$l" "$(plus_s "$t_up" 0.5)" "$(plus_s "$t_end" -0.3)")
	zw_assert "stream $l: answered again ${win} ms after web-2 resumed; from +0.5 s on $ok of $sent answered" \
		test "$ok" -ge $((sent - 1)) -a "$sent" -gt 50
	MIG_REPORT+=" $l=${win}ms"
}
loop_resumed() {
	local first
	first=$(zwc_loop_first_ok "$1" "$2")
	zw_assert "loop $1 (icmp, one probe in flight for up to 250 ms): answered again $(zwc_ms "$2" "${first:-$3}") ms after web-2 resumed" test -n "$first"
	MIG_REPORT+=" $1=$(zwc_ms "$2" "${first:-$3}")ms"
}
# The VM's own traffic: nothing it sent after resuming at $2 was lost to stale
# data (≤ 50 ms: its first datagram waits for ARP).
own_window() {
	local lost
	lost=$(zwc_stream_last_lost "$1" "$2" "$(plus_s "$3" -0.3)")
	zw_assert "web-2's own traffic ($1): last datagram lost after resuming: ${lost:+$(zwc_ms "$2" "$lost") ms after resume}${lost:-none} (window ≤ 50 ms)" \
		test -z "$lost" -o "$(zwc_ms "$2" "${lost:-$2}")" -le 50
}
# An allowed stream lost nothing in [$2, $3) (at most one datagram in flight at the edge).
intact() {
	local sent ok
	read -r sent ok < <(zwc_stream_counts "$1" "$2" "$3")
	zw_assert "stream $1: $ok of $sent answered $4" test "$ok" -ge $((sent - 1)) -a "$sent" -gt 50
}
wait_key() { # KEY present|absent
	local i
	for ((i = 0; i < 200; i++)); do
		if [[ $2 == present ]]; then [[ -n $(zwc_etcdctl get --keys-only "$1") ]] && return 0
		else [[ -z $(zwc_etcdctl get --keys-only "$1") ]] && return 0; fi
		sleep 0.05
	done
	return 1
}

# --- policies ---
zwc_setup
P1=$ZW_POLICY_LAB
P2=$ZWC_TMP/alt-port.json
BROKEN=$ZWC_TMP/broken.json
UNDEFINED=$ZWC_TMP/undefined-zone.json
zw_alt_port_policy "$P1" "$P2"
"$ZW_PY" - "$P1" "$ZWC_TMP" <<'EOF' || zw_die "could not derive the test policies"
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
p = json.load(open(src))
bad = dict(p, rules=p["rules"] + [{"name": "to-nowhere", "from": "web", "to": "nosuchzone", "action": "allow"}])
json.dump(bad, open(os.path.join(out, "undefined-zone.json"), "w"), indent=2)
open(os.path.join(out, "broken.json"), "w").write('{"version": 1, "zones": {')
EOF
# shellcheck disable=SC2086 # names are single words
zw_serve ${!ZWC_VM_HOST[*]}

# Lease TTL through the configuration file (cluster.lease_ttl).
for h in "${ZWC_HOSTS[@]}"; do
	printf '{"cluster": {"lease_ttl": %d}}\n' "$ZWC_LEASE_TTL" >"$ZWC_TMP/config-$h.json"
done

echo "== a. daemons start before any cluster policy: fail closed =="
for h in "${ZWC_HOSTS[@]}"; do zwc_daemon_start "$h"; done
for h in "${ZWC_HOSTS[@]}"; do
	expect_local "$h" "d['cluster']['etcd'] == 'connected' and d['cluster']['host'] == '$h' and \
d['cluster']['policy_revision'] == 0" "cluster section: connected, host $h, no policy revision yet"
done
rc=0
out=$(zwc_zw h1 daemon --cluster "$ZWC_ENDPOINTS" --host h1 --policy "$P1" --no-libvirt \
	--inventory "$(zwc_inv h1)" 2>&1) || rc=$?
zw_assert "daemon --cluster with a local --policy too exits 3 at once: ${out%%$'\n'*}" test "$rc" = 3
expect_deny web-3 db-2 tcp/5432 4 # same host, allowed by every policy below
expect_deny web-1 db-2 tcp/5432 4 # cross-host
out=$(etcd_policy_revision)
zw_assert "no PFX/policy in etcd yet (revision '$out')" test "$out" = 0

echo "== b. one apply --cluster reaches all three hosts =="
cluster_apply "$P1"
REV1=$REVISION
out=$(etcd_policy_revision)
zw_assert "PFX/policy's mod_revision in etcd is the printed revision ($out = $REV1)" test "$out" = "$REV1"
expect_converged "$REV1" "h1 h2 h3" "apply P1"
for h in "${ZWC_HOSTS[@]}"; do
	expect_local "$h" "d['cluster']['policy_revision'] == $REV1 and d['endpoints_enforced'] == 2" \
		"local status: revision $REV1, 2 local VMs enforced"
done
# web-1@h1 db-1@h1 web-2@h2 admin-1@h2 web-3@h3 db-2@h3
expect_allow web-1 db-2 tcp/5432    # h1 → h3, rule web-to-db-postgres
expect_allow web-1 db-2 udp/53      # h1 → h3, web-to-db-dns
expect_deny web-1 db-2 tcp/5433     # h1 → h3, no rule
expect_deny db-2 web-1 tcp/80       # h3 → h1, deny-db-to-web
expect_allow web-1 web-2 tcp/80     # h1 → h2, same zone
expect_allow web-2 web-1 udp/54     # h2 → h1, same zone
expect_allow admin-1 web-1 icmp     # h2 → h1, admin-ping(6)
expect_deny web-1 admin-1 icmp      # h1 → h2, no rule
expect_allow admin-1 db-2 tcp/22 4  # h2 → h3, admin-ssh
expect_deny db-1 web-2 tcp/80 4     # h1 → h2, deny-db-to-web
expect_allow web-3 db-2 tcp/5432 4  # h3 local

rc=0
out=$(zwc_zw h1 apply "$P2" 2>&1) || rc=$?
zw_assert "a local apply through a cluster daemon is refused with exit 3 ($rc): ${out%%$'\n'*}" test "$rc" = 3
expect_local h1 "d['cluster']['policy_revision'] == $REV1" "still on revision $REV1 after the refused local apply" 2
expect_allow web-1 db-1 tcp/5432 4 # h1 local: still lab.json

echo "== c. invalid policies: refused, nothing written =="
for bad in "$BROKEN" "$UNDEFINED"; do
	rc=0
	out=$(zwc_zwu apply --cluster "$ZWC_ENDPOINTS" --cluster-prefix "$ZWC_PFX" "$bad" 2>&1) || rc=$?
	want=0
	zwc_zwu check "$bad" >/dev/null 2>&1 || want=$?
	zw_assert "apply --cluster $(basename "$bad") exits like check ($rc = $want, non-zero): ${out%%$'\n'*}" \
		test "$rc" = "$want" -a "$rc" != 0
	zw_assert "... and names the file" grep -q "$(basename "$bad")" <<<"$out"
	out=$(etcd_policy_revision)
	zw_assert "... and PFX/policy is still revision $REV1 ($out)" test "$out" = "$REV1"
done

echo "== d. a policy change reaches every host and changes cross-host traffic =="
cluster_apply "$P2"
REV2=$REVISION
zw_assert "the new revision is higher ($REV2 > $REV1)" test "$REV2" -gt "$REV1"
expect_converged "$REV2" "h1 h2 h3" "apply P2"
expect_deny web-1 db-2 tcp/5432 4
expect_allow web-1 db-2 tcp/5433    # both families
expect_allow web-2 db-1 tcp/5433 4  # h2 → h1
expect_allow web-3 db-2 tcp/5433 4  # h3 local

echo "== e1. web-2 moves h2 → h3 (stopped, then started) under continuous probes =="
# Allowed observers on every host, denied ones on the source's and the
# destination's host, and the VM's own traffic (allowed and denied).
zwc_stream_start w1 web-1 web-2 53 4   # h1 → web-2: same zone, allowed
zwc_stream_start w3 web-3 web-2 53 4   # h3 (destination) → web-2: allowed
zwc_loop_start a1 admin-1 web-2 icmp 4 # h2 (source) → web-2: admin-ping, allowed
zwc_stream_start d1 db-1 web-2 53 4    # h1 → web-2: deny-db-to-web
zwc_stream_start d2 db-2 web-2 53 6    # h3 → web-2: deny-db-to-web
zwc_stream_start o1 web-2 db-1 53 4    # web-2 → db-1 (h1): web-to-db-dns, allowed
zwc_stream_start o2 web-2 db-2 53 6    # web-2 → db-2 (h3 after the move): allowed
zwc_stream_start o3 web-2 admin-1 53 4 # web-2 → admin-1 (h2): no rule, denied
sleep 1.5
T_BEFORE=$(zwc_now)
for l in w1 w3 d1 d2 o1 o2 o3; do
	read -r sent ok < <(zwc_stream_counts "$l" 0 "$T_BEFORE")
	case $l in d* | o3) zw_assert "before the move, stream $l: 0 of $sent answered (denied)" test "$ok" = 0 -a "$sent" -gt 0 ;;
	*) zw_assert "before the move, stream $l: $ok of $sent answered" test "$ok" -gt 0 ;;
	esac
done
# Source: the VM stops on h2 (inventory without it, SIGHUP; its tap goes).
ZWC_VM_HOST[web-2]=h3
zwc_write_inventory h2
T_STOP=$(zwc_now)
zwc_daemon_hup h2
zwc_vm_detach web-2
key2=$ZWC_PFX/endpoints/h2/${ZWC_VM_UUID[web-2]}
key3=$ZWC_PFX/endpoints/h3/${ZWC_VM_UUID[web-2]}
wait_key "$key2" absent || true
zw_assert "h2 deleted web-2's record ($(zwc_ms "$T_STOP" "$(zwc_now)") ms after its SIGHUP)" test -z "$(zwc_etcdctl get --keys-only "$key2")"
# Destination: inventory with it, then its tap appears (hooked fail closed by
# the tap pattern) with the guest still paused (eth0 down), as an incoming
# migration's QEMU does; the guest resumes once h3 enforces it.
zwc_write_inventory h3
T_TAP=$(zwc_now)
zwc_vm_attach web-2 h3 down
zwc_daemon_hup h3
expect_local h3 "d['endpoints_enforced'] == 3" "enforces web-2 (tap appeared → enforced)" 10
T_ENF=$(zwc_now)
wait_key "$key3" present || true
T_PUB=$(zwc_now)
zw_assert "h3 published web-2's record ($(zwc_ms "$T_TAP" "$T_PUB") ms after its tap appeared)" test -n "$(zwc_etcdctl get --keys-only "$key3")"
ip -n "$(zwc_vns web-2)" link set eth0 up
T_UP=$(zwc_now)
zwc_vm_announce web-2
sleep 2.5
T_END=$(zwc_now)
for l in w1 w3 d1 d2 o1 o2 o3; do zwc_loop_stop "$l"; done
zwc_loop_stop a1
for l in d1 d2 o3; do denied_throughout "$l" "$T_END"; done
MIG_REPORT=""
for l in w1 w3 o1 o2; do resumed "$l" "$T_UP" "$T_END"; done
loop_resumed a1 "$T_UP" "$T_END"
for l in o1 o2; do own_window "$l" "$T_UP" "$T_END"; done
zw_log "migration web-2 h2 → h3: record deleted $(zwc_ms "$T_STOP" "$T_TAP") ms before the new tap; tap → enforced on h3 $(zwc_ms "$T_TAP" "$T_ENF") ms; tap → published $(zwc_ms "$T_TAP" "$T_PUB") ms; published → resumed $(zwc_ms "$T_PUB" "$T_UP") ms; stale window per observer after resume:$MIG_REPORT"
expect_allow web-1 web-2 tcp/80     # both families, h1 → h3 now
expect_deny db-2 web-2 tcp/80 4     # local on h3 now
expect_allow admin-1 web-2 tcp/22 4 # h2 → h3 now
expect_converged "$REV2" "h1 h2 h3" "after the migration"

echo "== e2. live migration web-2 h3 → h1: both records during the overlap =="
zwc_stream_start x1 web-3 web-2 53 4   # h3 (source) → web-2: same zone
zwc_stream_start x2 web-1 web-2 54 6   # h1 (destination) → web-2: same zone
zwc_loop_start x3 admin-1 web-2 icmp 6 # h2 → web-2: admin-ping6
zwc_stream_start x4 db-1 web-2 53 4    # h1 → web-2: deny-db-to-web
zwc_stream_start x5 db-2 web-2 53 6    # h3 → web-2: deny-db-to-web
zwc_stream_start x6 web-2 db-1 53 6    # web-2 → db-1: web-to-db-dns
zwc_stream_start x7 web-2 admin-1 54 4 # web-2 → admin-1: no rule
sleep 1
# Incoming side: h1 lists web-2 too; its tap appears, the guest still paused.
ZWC_VM_ALSO[web-2]=h1
zwc_write_inventory h1
T_TAP=$(zwc_now)
zwc_vm_prepare web-2 h1
zwc_daemon_hup h1
expect_local h1 "d['endpoints_enforced'] == 3" "enforces the incoming web-2 (tap hooked, guest paused)" 10
key1=$ZWC_PFX/endpoints/h1/${ZWC_VM_UUID[web-2]}
wait_key "$key1" present || true
T_BOTH=$(zwc_now)
zw_assert "both h3 and h1 publish web-2 (same UUID) during the overlap" \
	test -n "$(zwc_etcdctl get --keys-only "$key1")" -a -n "$(zwc_etcdctl get --keys-only "$key3")"
sleep 1.5
T_SWITCH=$(zwc_now)
zwc_vm_switch web-2
T_UP=$(zwc_now)
zwc_vm_announce web-2
# The source cleans up after the switch-over (libvirt's MIGRATED on h3).
ZWC_VM_HOST[web-2]=h1
ZWC_VM_ALSO[web-2]=""
zwc_write_inventory h3
zwc_write_inventory h1
zwc_daemon_hup h3
wait_key "$key3" absent || true
T_GONE=$(zwc_now)
zw_assert "h3 deleted its record of web-2 after the switch-over ($(zwc_ms "$T_UP" "$T_GONE") ms)" \
	test -z "$(zwc_etcdctl get --keys-only "$key3")"
sleep 2
T_END=$(zwc_now)
for l in x1 x2 x3 x4 x5 x6 x7; do zwc_loop_stop "$l"; done
# During the overlap the same UUID is claimed by two hosts: not ambiguous,
# nothing changes for anyone.
for l in x1 x2 x6; do intact "$l" "$T_BOTH" "$T_SWITCH" "while both records existed"; done
read -r ok drop refused < <(zwc_loop_counts x3 "$T_BOTH" "$T_SWITCH")
zw_assert "loop x3 (admin-1 → web-2 icmpv6): $ok answered, $drop dropped, $refused refused while both records existed" \
	test "$drop" = 0 -a "$refused" = 0 -a "$ok" -gt 0
for l in x4 x5 x7; do denied_throughout "$l" "$T_END"; done
MIG_REPORT=""
for l in x1 x2 x6; do resumed "$l" "$T_UP" "$T_END"; done
loop_resumed x3 "$T_UP" "$T_END"
own_window x6 "$T_UP" "$T_END"
for l in x1 x2 x6; do intact "$l" "$T_GONE" "$(plus_s "$T_END" -0.3)" "after h3 deleted its record"; done
zw_log "live migration web-2 h3 → h1: tap → both records $(zwc_ms "$T_TAP" "$T_BOTH") ms; overlap $(zwc_ms "$T_BOTH" "$T_SWITCH") ms; switch-over $(zwc_ms "$T_SWITCH" "$T_UP") ms; source record gone $(zwc_ms "$T_UP" "$T_GONE") ms after; stale window per observer after resume:$MIG_REPORT"
expect_converged "$REV2" "h1 h2 h3" "after the live migration"

echo "== f. one etcd member killed =="
zwc_etcd_kill 1
zw_log "etcd member 1 (the first endpoint everyone is given) killed"
cluster_apply "$P1"
REV3=$REVISION
expect_converged "$REV3" "h1 h2 h3" "apply P1 with member 1 down"
expect_allow web-1 db-2 tcp/5432 4
expect_deny web-1 db-2 tcp/5433 4
for h in "${ZWC_HOSTS[@]}"; do
	expect_local "$h" "d['cluster']['etcd'] == 'connected'" "still connected to etcd with member 1 down" 15
done
zwc_etcd_start 1
zwc_etcd_wait_healthy || zw_die "etcd member 1 did not come back"
zw_log "etcd member 1 restarted and healthy"

echo "== g. h3 cut off etcd: fail static, then converges =="
zwc_host_etcd_link h3 down
T_CUT=$(zwc_now)
# Right away, inside the lease: cross-host as before, both ways.
expect_allow web-1 db-2 tcp/5432 4
expect_deny db-2 web-1 tcp/80 4
expect_local h3 "d['cluster']['etcd'] == 'disconnected'" "status says etcd disconnected" $((3 * ZWC_LEASE_TTL + 10))
zw_log "h3 reported disconnected $(zwc_ms "$T_CUT" "$(zwc_now)") ms after its link went down"
# Its lease expires for the others: its records go, the others converge without it.
expect_converged "$REV3" "h1 h2" "h3's lease expired"
cluster_apply "$P2"
REV4=$REVISION
expect_converged "$REV4" "h1 h2" "apply P2 while h3 is cut off"
# h3 keeps its last state: policy revision, local verdicts, both ways.
expect_local h3 "d['cluster']['policy_revision'] == $REV3 and d['cluster']['etcd'] == 'disconnected' and \
d['endpoints_enforced'] == 2" "still enforces revision $REV3 on its 2 VMs" 2
expect_allow web-3 db-2 tcp/5432 4 # P1 still on h3: nothing lost
expect_deny web-3 db-2 tcp/5433 4  # nothing leaks
expect_deny db-2 web-3 tcp/80 4
expect_deny db-2 web-3 udp/53 6
# h3 also keeps the remote VMs as last seen: web-3 → db-1 (h1) tcp/5432 is
# allowed by its revision and leaves h3 by its uplink (h1, which dropped h3's
# VMs, drops it on arrival); tcp/5433 is dropped by h3 itself.
: >"$ZWC_TMP/h3-up0.err"
ip netns exec "$(zwc_hns h3)" tcpdump -i up0 -n -l -Q out "tcp and dst host ${ZWC_VM_V4[db-1]}" \
	>"$ZWC_TMP/h3-up0.txt" 2>>"$ZWC_TMP/h3-up0.err" &
TCPDUMP_PID=$!
ZW_BG_PIDS+=("$TCPDUMP_PID")
for ((i = 0; i < 50; i++)); do
	grep -q 'listening on' "$ZWC_TMP/h3-up0.err" && break
	sleep 0.1
done
expect_deny web-3 db-1 tcp/5432 4
expect_deny web-3 db-1 tcp/5433 4
sleep 0.3
kill -TERM "$TCPDUMP_PID" 2>/dev/null
wait "$TCPDUMP_PID" 2>/dev/null || true
n5432=$(grep -c '\.5432: Flags \[S\]' "$ZWC_TMP/h3-up0.txt" || true)
n5433=$(grep -c '\.5433: ' "$ZWC_TMP/h3-up0.txt" || true)
zw_assert "cut-off h3 still judges web-3 → db-1 (remote, last seen) by its revision: $n5432 SYNs to tcp/5432 left by its uplink" \
	test "$n5432" -gt 0
zw_assert "... and 0 to tcp/5433 ($n5433)" test "$n5433" = 0
expect_allow web-1 db-1 tcp/5433 4 # P2 on h1
expect_deny web-1 db-1 tcp/5432 4
# The others dropped h3's VMs (its lease expired): cross-host fails closed.
expect_deny web-1 db-2 tcp/5433 4
zwc_host_etcd_link h3 up
T_BACK=$(zwc_now)
expect_converged "$REV4" "h1 h2 h3" "h3 reconnected"
zw_log "h3 back on revision $REV4 $(zwc_ms "$T_BACK" "$(zwc_now)") ms after its link came up"
expect_local h3 "d['cluster']['etcd'] == 'connected' and d['cluster']['policy_revision'] == $REV4" "connected, revision $REV4" 5
expect_allow web-3 db-2 tcp/5433 4
expect_deny web-3 db-2 tcp/5432 4
expect_allow web-1 db-2 tcp/5433 # cross-host again, both families
expect_deny db-2 web-1 tcp/80 6

echo "== h. an address claimed by two VMs on two hosts is used by neither =="
# web-9 on h2 (guest paused: its eth0 stays down, so no ARP clash) claims
# db-2's IPv4 address under another UUID; its IPv6 address is its own.
ZWC_VM_TAG[web-9]=w9 ZWC_VM_HOST[web-9]=h2 ZWC_VM_MAC[web-9]=52:54:00:77:00:99
ZWC_VM_V4[web-9]=${ZWC_VM_V4[db-2]} ZWC_VM_V6[web-9]=fd77::99
ZWC_VM_UUID[web-9]=c1a5e099-0000-4c70-9a00-000000000099
zwc_write_inventory h2
zwc_vm_attach web-9 h2 down
zwc_daemon_hup h2
expect_local h2 "d['endpoints_enforced'] == 2" "enforces web-9 (paused)" 10
key9=$ZWC_PFX/endpoints/h2/${ZWC_VM_UUID[web-9]}
wait_key "$key9" present || true
zw_assert "h2 published web-9's claim" test -n "$(zwc_etcdctl get --keys-only "$key9")"
sleep 0.5
expect_deny web-1 db-2 tcp/5433 4  # h1: 10.77.0.22 is claimed twice: neither is db
expect_allow web-1 db-2 tcp/5433 6 # its IPv6 address is not in dispute
warning=$(grep '^level=warn' "${ZWC_DAEMON_LOG[h1]}" | grep -F "${ZWC_VM_V4[db-2]}" |
	grep -F "${ZWC_VM_UUID[web-9]}" | grep -F "${ZWC_VM_UUID[db-2]}" | tail -n 1 || true)
zw_assert "h1 warns about ${ZWC_VM_V4[db-2]} naming both claims (web-9's and db-2's UUIDs): ${warning:-none}" \
	test -n "$warning"
unset 'ZWC_VM_HOST[web-9]'
zwc_write_inventory h2
zwc_daemon_hup h2
zwc_vm_detach web-9
wait_key "$key9" absent || true
sleep 0.5
expect_allow web-1 db-2 tcp/5433 4 # the claim withdrawn: db-2's address is db again

echo "== the daemons stop cleanly =="
for h in "${ZWC_HOSTS[@]}"; do
	rc=0
	zwc_daemon_stop "$h" || rc=$?
	zw_assert "daemon $h exits 0 on SIGTERM (got $rc)" test "$rc" = 0
done
expect_allow web-1 db-2 tcp/5433 4 # enforcement stays without the daemons
expect_deny web-1 db-2 tcp/5432 4

zw_summary
