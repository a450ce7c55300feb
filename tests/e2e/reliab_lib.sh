# shellcheck shell=bash
# Helpers for the reliability e2e tests (sourced after lib.sh and zw_setup):
# counted traffic that two policies both allow or both deny (loadgen.py),
# the two policies, and generation counting in the pinned maps.
#
# Traffic: web-1 → db-1 one TCP session on tcp/5432 and a UDP stream on
# udp/53 (both allowed by lab.json and by policy B); web-1 → db-1 (IPv4 and
# IPv6) udp/9999 and tcp/9998, denied by both, received by a counting sink.

ZW_LOADGEN=$ZW_E2E_DIR/loadgen.py
ZW_SINK_UDP=9999
ZW_SINK_TCP=9998
RL_TCP_RATE=${RL_TCP_RATE:-100}
RL_UDP_RATE=${RL_UDP_RATE:-200}

# Policy B: lab.json with other rules changed (admin-ssh gone, office-to-web
# on other ports, a new admin-https); the web → db rules are the same.
rl_make_policy_b() {
	"$ZW_PY" - "$ZW_POLICY_LAB" "$1" <<'EOF' || zw_die "could not derive policy B"
import json, sys
p = json.load(open(sys.argv[1]))
rules = [r for r in p["rules"] if r["name"] != "admin-ssh"]
for r in rules:
    if r["name"] == "office-to-web":
        r["ports"] = [443, 8443]
rules.insert(0, {"name": "admin-https", "from": "admin", "to": "web", "proto": "tcp", "ports": [443], "action": "allow"})
p["rules"] = rules
p["description"] = "lab.json variant B for the reliability tests"
json.dump(p, open(sys.argv[2], "w"), indent=2)
EOF
}

# Starts one traffic round named $1 (files $ZW_TMP/$1-*): the echo servers
# must run in db-1 already (zw_serve db-1).
rl_start_traffic() {
	local round=$1 stop=$ZW_TMP/$1.stop i f
	rm -f "$stop"
	zw_in db-1 "$ZW_PY" "$ZW_LOADGEN" sink --udp "$ZW_SINK_UDP" --tcp "$ZW_SINK_TCP" \
		--stop "$stop" --out "$ZW_TMP/$round-sink.json" --ready "$ZW_TMP/$round-sink.ready" \
		>"$ZW_TMP/$round-sink.log" 2>&1 &
	ZW_BG_PIDS+=($!)
	for ((i = 0; i < 50; i++)); do
		[[ -e $ZW_TMP/$round-sink.ready ]] && break
		sleep 0.1
	done
	zw_in web-1 "$ZW_PY" "$ZW_LOADGEN" tcp-stream "$(zw_addr db-1 4)" 5432 --rate "$RL_TCP_RATE" \
		--stop "$stop" --out "$ZW_TMP/$round-tcp.json" --ready "$ZW_TMP/$round-tcp.ready" \
		>"$ZW_TMP/$round-tcp.log" 2>&1 &
	ZW_BG_PIDS+=($!)
	zw_in web-1 "$ZW_PY" "$ZW_LOADGEN" udp-stream "$(zw_addr db-1 4)" 53 --rate "$RL_UDP_RATE" \
		--stop "$stop" --out "$ZW_TMP/$round-udp.json" --ready "$ZW_TMP/$round-udp.ready" \
		>"$ZW_TMP/$round-udp.log" 2>&1 &
	ZW_BG_PIDS+=($!)
	zw_in web-1 "$ZW_PY" "$ZW_LOADGEN" deny-send "$(zw_addr db-1 4)" "$(zw_addr db-1 6)" \
		--udp "$ZW_SINK_UDP" --tcp "$ZW_SINK_TCP" --rate 50 \
		--stop "$stop" --out "$ZW_TMP/$round-deny.json" --ready "$ZW_TMP/$round-deny.ready" \
		>"$ZW_TMP/$round-deny.log" 2>&1 &
	ZW_BG_PIDS+=($!)
	for f in sink tcp udp deny; do
		for ((i = 0; i < 50; i++)); do
			[[ -e $ZW_TMP/$round-$f.ready ]] && break
			sleep 0.1
		done
		[[ -e $ZW_TMP/$round-$f.ready ]] ||
			zw_die "traffic $f of round $round did not start: $(cat "$ZW_TMP/$round-$f.log" "$ZW_TMP/$round-$f.json" 2>/dev/null)"
	done
	zw_log "traffic round $round running (TCP $RL_TCP_RATE lines/s, UDP $RL_UDP_RATE pps, denied 2×50 attempts/s)"
}

# Stops round $1 and waits for every result file (at most 20 s).
rl_stop_traffic() {
	local round=$1 i f
	touch "$ZW_TMP/$round.stop"
	for f in tcp udp deny sink; do
		for ((i = 0; i < 200; i++)); do
			[[ -e $ZW_TMP/$round-$f.json ]] && break
			sleep 0.1
		done
		[[ -e $ZW_TMP/$round-$f.json ]] ||
			zw_die "traffic $f of round $round wrote no result: $(cat "$ZW_TMP/$round-$f.log")"
	done
}

# Source port of round $1's TCP session / UDP stream (unique to its
# conntrack entry).
rl_tcp_port() { tr -d '\n' <"$ZW_TMP/$1-tcp.ready"; }
rl_udp_port() { tr -d '\n' <"$ZW_TMP/$1-udp.ready"; }

# Field $2 (a Python expression over d) of round $1's result file $3.
rl_get() { zw_json "$2" <"$ZW_TMP/$1-$3.json"; }

# The assertions every round makes: nothing denied arrived, the TCP session
# never broke and got every line back. UDP loss is returned in RL_UDP_LOST.
RL_UDP_LOST=0
RL_UDP_SENT=0
rl_check_round() {
	local round=$1 what=$2 arrived tcp_err sent echoed att
	arrived=$(rl_get "$round" "d['udp'] + d['tcp']" sink)
	att=$(rl_get "$round" "d['udp'] + d['tcp']" deny)
	zw_assert "$what: denied traffic that arrived at the sink: $arrived of $att attempts (must be 0; sources $(rl_get "$round" "d['sources']" sink))" \
		test "$arrived" = 0
	zw_assert "$what: the denied sender really sent ($att attempts)" test "$att" -gt 50
	tcp_err=$(rl_get "$round" "d['error']" tcp)
	sent=$(rl_get "$round" "d['sent']" tcp)
	echoed=$(rl_get "$round" "d['echoed']" tcp)
	zw_assert "$what: TCP session never broke or needed a reconnect (error: $tcp_err)" test "$tcp_err" = None
	zw_assert "$what: TCP session got every line back in order ($echoed of $sent, $(rl_get "$round" "d['out_of_order']" tcp) out of order)" \
		test "$echoed" = "$sent" -a "$(rl_get "$round" "d['out_of_order']" tcp)" = 0
	zw_assert "$what: TCP session carried traffic ($sent lines)" test "$sent" -gt 50
	RL_UDP_SENT=$(rl_get "$round" "d['sent']" udp)
	RL_UDP_LOST=$(rl_get "$round" "d['lost']" udp)
	zw_assert "$what: UDP stream carried traffic ($RL_UDP_SENT datagrams)" test "$RL_UDP_SENT" -gt 100
	zw_log "$what: TCP $sent lines echoed $echoed; UDP sent $RL_UDP_SENT lost $RL_UDP_LOST; denied attempts $att arrived $arrived"
}

# The pinned two-slot maps (ABI header, "Generations and slots"), one
# line: "P0 P1 UNSETTLED" = entries present in slot 0, entries present in
# slot 1 (a CIDR slot inherited from a covering prefix does not count), and
# entries whose two slots differ (an apply in progress or interrupted; 0
# when every entry is settled). From bpftool's BTF-formatted JSON.
rl_slots() {
	local m
	for m in zw_endpoints zw_addrs zw_cidrs zw_policy zw_pairs zw_zpairs; do
		[[ -e $ZW_PIN_DIR/$m ]] || zw_die "pinned map $ZW_PIN_DIR/$m missing"
		printf '%s ' "$m"
		bpftool -j map dump pinned "$ZW_PIN_DIR/$m" | tr -d '\n'
		echo
	done | "$ZW_PY" -c '
import json, sys
present, unsettled = [0, 0], 0
for line in sys.stdin:
    name, _, dump = line.partition(" ")
    for e in json.loads(dump):
        v = e["formatted"]["value"]
        if name == "zw_pairs":
            p, same = [bool(v & 1), bool(v & 2)], bool(v & 1) == bool(v & 2)
        elif name == "zw_zpairs":
            p, same = [k != 0 for k in v["kinds"]], v["kinds"][0] == v["kinds"][1]
        elif name == "zw_policy":
            p, same = [s["rule_id"] != 0 for s in v["slot"]], v["slot"][0] == v["slot"][1]
        else:
            p = [s["zone"] != 0 and not (s["flags"] & 2) for s in v["slot"]]
            same = v["slot"][0] == v["slot"][1]
        for i in (0, 1):
            present[i] += p[i]
        unsettled += not same
print(present[0], present[1], unsettled)'
}

# Digest of every entry (keys and both slots) of the two-slot maps: equal
# before and after means nothing was written.
rl_maps_dump() {
	local m
	for m in zw_endpoints zw_addrs zw_cidrs zw_policy zw_pairs zw_zpairs; do
		bpftool -j map dump pinned "$ZW_PIN_DIR/$m" | "$ZW_PY" -c '
import json, sys
print(sorted(json.dumps(e, sort_keys=True) for e in json.load(sys.stdin)))'
	done | sha256sum | cut -d" " -f1
}

# Entries of the active generation (present in its slot).
rl_active_entries() {
	local gen
	gen=$(rl_active_gen)
	rl_slots | awk -v s=$((gen & 1)) '{ print $(s + 1) }'
}

# Entries whose two slots differ.
rl_unsettled() { rl_slots | awk '{ print $3 }'; }

# Active generation according to the config map (zonewall status --json).
rl_active_gen() { zw --json status | zw_json "d['active_generation']"; }

# Asserts that only the active generation is left in the maps: every entry
# settled (both slots equal), nothing of an interrupted apply left.
rl_assert_one_generation() {
	local what=$1 slots
	slots=$(rl_slots)
	zw_assert "$what: every map entry settled, only the active generation $(rl_active_gen) left (slot 0, slot 1, unsettled: $slots)" \
		test "$(echo "$slots" | awk '{ print ($1 == $2 && $3 == 0) ? "yes" : "no" }')" = yes
}

# Starts `zonewall daemon --policy $1` (static inventory, no libvirt, the
# lab's tap pattern) in the background, logging to $2; extra environment
# assignments (e.g. ZW_TEST_PAUSE_AT=after-write) may follow. Pid in DPID.
DPID=""
rl_start_daemon() {
	local pol=$1 log=$2 w1
	shift 2
	w1=$(zw_ifname web-1)
	env "$@" nsenter --net="/run/netns/$ZW_HOSTNS" "$ZONEWALL" --pin-dir "$ZW_PIN_DIR" daemon \
		--policy "$pol" --no-libvirt --inventory "$ZW_TMP/inventory.json" \
		--tap-pattern "${w1%w1}t*" >"$log" 2>&1 &
	DPID=$!
	ZW_BG_PIDS+=("$DPID")
}

# Waits (120 s: a program load comes first) until the active generation is
# above $1 or the daemon DPID is gone.
rl_wait_gen_above() {
	local i
	for ((i = 0; i < 1200; i++)); do
		[[ $(rl_active_gen) -gt $1 ]] && return 0
		kill -0 "$DPID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# created_ns of the conntrack entries of port $1 (either side of the
# canonical key), protocol $2 (default 6, TCP; 17 UDP), sorted, one per line:
# equal before and after an event means the flows were neither flushed nor
# re-created.
rl_ct_created() {
	bpftool -j map dump pinned "$ZW_PIN_DIR/zw_ct" | "$ZW_PY" -c '
import json, sys
port, proto = int(sys.argv[1]), int(sys.argv[2])
want = {port, ((port & 0xff) << 8) | (port >> 8)}  # net order read as host
out = []
for e in json.load(sys.stdin):
    k, v = e["formatted"]["key"], e["formatted"]["value"]
    if k["proto"] == proto and (k["sport"] in want or k["dport"] in want):
        out.append(v["created_ns"])
print("\n".join(str(c) for c in sorted(out)))' "$1" "${2:-6}"
}

# Every counter of `zonewall --json stats` as "name packets" lines: reasons,
# rules (by name) and endpoints (vm/counter).
rl_counters() {
	zw --json stats | "$ZW_PY" -c '
import json, sys
d = json.load(sys.stdin)
for r, c in d["reasons"].items():
    print("reason:" + r, c["packets"])
for r in d["rules"]:
    print("rule:" + r["name"], r["packets"])
for e in d["endpoints"]:
    for k in ("from_vm_pass", "from_vm_drop", "to_vm_pass", "to_vm_drop"):
        print("endpoint:%s/%s" % (e["vm"], k), e[k]["packets"])'
}

# Counters in both snapshot files $1 (before) and $2 (after) that went
# down (a reset), one "name before -> after" per line; empty when none did.
rl_counters_reset() {
	awk 'NR == FNR { b[$1] = $2; next } ($1 in b) && $2 < b[$1] { print $1, b[$1], "->", $2 }' "$1" "$2"
}
