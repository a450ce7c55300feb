#!/usr/bin/env bash
# Flows, counters and metrics agree with each other and with the policy:
#  a. `zonewall daemon --metrics --flow-log` enforces the lab policy (web asks
#     for new-flow events);
#  b. allowed and denied traffic between lab VMs shows up in `zonewall flows`
#     (from the daemon, and streamed to a `flows --follow` client, and in the
#     flow log) with VM names, zones, rule names and reasons;
#  c. `stats` counts the same traffic per rule, zone pair and VM, events are
#     counted, the datapath CPU time is measured (BPF run-time statistics);
#  d. the Prometheus endpoint passes `promtool check metrics` and carries the
#     same numbers as `stats`;
#  e. the numbers agree exactly: each deny rule's packets in stats = its deny
#     events in flows = its metric; `zonewall trace` of the same packets names
#     the rule the flows named; an audit rule's traffic passes and shows as
#     "audit" in flows, stats (per rule and zone pair, text and JSON), trace
#     and metrics;
#  f. without a daemon `zonewall flows` reads the pinned ring buffer itself.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v promtool >/dev/null || {
	zw_privileged_required && zw_die "promtool missing (Debian package prometheus; scripts/setup.sh)"
	zw_skip "promtool missing (Debian package prometheus)"
}

zw_setup
zw_serve web-1 db-1

POLICY=$ZW_TMP/policy.json
"$ZW_PY" - "$ZW_POLICY_LAB" "$POLICY" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
p["zones"]["web"]["log"] = {"new_flows": True}
# Would deny web -> db 8080, but in audit mode: passes, recorded as audit.
p["rules"].insert(0, {"name": "audit-web-db-8080", "from": "web", "to": "db", "proto": "tcp",
                      "ports": [8080], "action": "deny", "audit": True})
json.dump(p, open(sys.argv[2], "w"), indent=2)
EOF

PORT=$((20000 + RANDOM % 20000))
METRICS=127.0.0.1:$PORT
FLOW_LOG=$ZW_TMP/flow-log.jsonl
DAEMON_LOG=$ZW_TMP/daemon.log
ip -n "$ZW_HOSTNS" link set lo up
# Metrics address, flow log and event rate from the configuration file (as
# the package's /etc/zonewall/zonewall.json sets them), the burst by flag.
cat >"$ZW_TMP/zonewall.json" <<EOF
{"metrics": {"listen": "$METRICS"}, "flow_log": {"destination": "$FLOW_LOG", "rate": 1000}}
EOF
nsenter --net="/run/netns/$ZW_HOSTNS" "$ZONEWALL" --config "$ZW_TMP/zonewall.json" \
	--pin-dir "$ZW_PIN_DIR" daemon \
	--policy "$POLICY" --no-libvirt --inventory "$ZW_TMP/inventory.json" --tap-pattern 'zwnotap*' \
	--event-burst 1000 >"$DAEMON_LOG" 2>&1 &
DAEMON_PID=$!
ZW_BG_PIDS+=("$DAEMON_PID")

enforced=""
for ((i = 0; i < 100; i++)); do
	kill -0 "$DAEMON_PID" 2>/dev/null || {
		cat "$DAEMON_LOG" >&2
		zw_die "daemon exited (log above)"
	}
	enforced=$(zw --json status 2>/dev/null | zw_json "d['endpoints_enforced']" 2>/dev/null) || enforced=""
	[[ $enforced == 4 ]] && break
	sleep 0.1
done
[[ $enforced == 4 ]] || zw_die "daemon did not enforce the 4 lab VMs within 10 s (last: '$enforced')"
zw_pass "daemon enforces the 4 lab VMs"

# A follower before the traffic: it must see every event as it happens.
FOLLOW=$ZW_TMP/follow.jsonl
zw --json flows --follow --limit 0 >"$FOLLOW" 2>"$ZW_TMP/follow.err" &
FOLLOW_PID=$!
ZW_BG_PIDS+=("$FOLLOW_PID")
sleep 0.3

zw_log "traffic: one allowed new flow, denies by default and by rule"
expect_allow web-1 db-1 tcp/5432 4
expect_deny web-1 db-1 tcp/5433 4
expect_deny db-1 web-1 tcp/80 4
expect_allow web-1 db-1 tcp/8080 4
sleep 0.5

W1=$(zw_addr web-1 4)
D1=$(zw_addr db-1 4)
# check_events FILE LABEL: the three decisions, named.
check_events() {
	local file=$1 label=$2 got
	got=$("$ZW_PY" - "$file" "$W1" "$D1" <<'EOF'
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
w1, d1 = sys.argv[2], sys.argv[3]
def has(**want):
    for e in evs:
        flat = dict(e)
        for side in ("src", "dst"):
            for k, v in (e.get(side) or {}).items():
                flat[side + "_" + k] = v
        if all(flat.get(k) == v for k, v in want.items()):
            return True
    return False
checks = {
    "allow": has(verdict="allow", reason="pass_new", rule="web-to-db-postgres", proto="tcp",
                 src_vm="web-1", src_zone="web", src_addr=w1, dst_vm="db-1", dst_zone="db",
                 dst_addr=d1, dst_port=5432, vm="web-1", hook="from_vm"),
    "audit": has(verdict="audit", reason="pass_audit", rule="audit-web-db-8080", src_vm="web-1",
                 src_zone="web", dst_vm="db-1", dst_zone="db", dst_port=8080),
    "deny-default": has(verdict="deny", reason="drop_policy", rule="default:inter_zone",
                        src_vm="web-1", src_zone="web", dst_vm="db-1", dst_zone="db", dst_port=5433),
    "deny-rule": has(verdict="deny", reason="drop_policy", rule="deny-db-to-web", src_vm="db-1",
                     src_zone="db", dst_vm="web-1", dst_zone="web", dst_port=80),
    "no-allowed-5433": not has(verdict="allow", dst_port=5433),
}
print(" ".join(k for k, ok in checks.items() if not ok) or "ok")
EOF
)
	zw_assert "$label: allowed flow and both denies, with VMs, zones, rules and reasons (missing: $got)" \
		test "$got" = ok
}

zw --json flows >"$ZW_TMP/flows.jsonl" || zw_die "zonewall --json flows failed"
check_events "$ZW_TMP/flows.jsonl" "flows (from the daemon)"
check_events "$FOLLOW" "flows --follow"
check_events "$FLOW_LOG" "--flow-log file"
text=$(zw flows)
zw_assert "flows (text): one line per event, with the rule name" \
	grep -q "allow .*web-1/web.* -> .*:5432 (db-1/db) tcp rule=web-to-db-postgres reason=pass_new" <<<"$text"
n_events=$(wc -l <"$ZW_TMP/flows.jsonl")

zw_log "stats agree"
STATS=$ZW_TMP/stats.json
zw --json stats >"$STATS" || zw_die "zonewall --json stats failed"
got=$("$ZW_PY" - "$STATS" "$n_events" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
n_events = int(sys.argv[2])
def pair(a, b):
    return next((p for p in s["zone_pairs"] if p["src_zone"] == a and p["dst_zone"] == b), None)
def rule(n):
    return next(r for r in s["rules"] if r["name"] == n)
wd, dw = pair("web", "db"), pair("db", "web")
bad = []
if not wd or wd["pass"]["packets"] < 3: bad.append("web->db pass (SYN, SYN-ACK, ACK...)")
if not wd or wd["drop"]["packets"] < 1: bad.append("web->db drop")
if not dw or dw["drop"]["packets"] < 1: bad.append("db->web drop")
if dw and dw["pass"]["packets"] != 0: bad.append("db->web pass must be 0 (replies count on web->db)")
if wd and wd["drop"]["packets"] != rule("default:inter_zone")["packets"]:
    bad.append("web->db drops == default:inter_zone packets")
if dw and dw["drop"]["packets"] != rule("deny-db-to-web")["packets"]:
    bad.append("db->web drops == deny-db-to-web packets")
ev = s["events"]
if ev["emitted"] < n_events: bad.append(f"events emitted {ev['emitted']} < {n_events} seen")
if ev["suppressed"] != 0 or ev["lost"] != 0: bad.append("nothing suppressed or lost")
cpu = s["cpu"]
if not cpu["stats_enabled"]: bad.append("BPF stats enabled by the daemon")
if not cpu["run_time_ns"] > 0: bad.append("datapath CPU time measured")
w1 = next(e for e in s["endpoints"] if e["vm"] == "web-1")
if not w1["cpu_seconds_estimated"] > 0: bad.append("web-1 CPU estimate")
if w1["events"]["emitted"] < 2: bad.append("web-1 events")
print("; ".join(bad) or "ok")
EOF
)
zw_assert "stats: zone pairs, rules, events and CPU agree with the traffic and flows ($got)" test "$got" = ok

# Exact agreement: every denied packet is one deny event (rate 1000/s, burst
# 1000: nothing suppressed), counted once on its rule and zone pair; the
# audited flow is counted as audit on its rule and pair, as many packets as
# the rule saw; one audit event and one new-flow event (replies are not new).
got=$("$ZW_PY" - "$STATS" "$ZW_TMP/flows.jsonl" <<'EOF'
import collections, json, sys
s = json.load(open(sys.argv[1]))
evs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
rules = {r["name"]: r for r in s["rules"]}
pairs = {(p["src_zone"], p["dst_zone"]): p for p in s["zone_pairs"]}
deny_by_rule = collections.Counter(e["rule"] for e in evs if e["verdict"] == "deny")
deny_by_pair = collections.Counter((e["src"]["zone"], e["dst"]["zone"]) for e in evs
                                   if e["verdict"] == "deny" and e["reason"] == "drop_policy")
bad = []
for r in ("default:inter_zone", "deny-db-to-web"):
    if not deny_by_rule[r] or deny_by_rule[r] != rules[r]["packets"]:
        bad.append(f"{r}: {deny_by_rule[r]} deny events, {rules[r]['packets']} packets in stats")
for pr in (("web", "db"), ("db", "web")):
    if deny_by_pair[pr] != pairs[pr]["drop"]["packets"]:
        bad.append(f"{pr}: {deny_by_pair[pr]} deny events, {pairs[pr]['drop']['packets']} drops")
a = rules["audit-web-db-8080"]
if not a["audit_packets"] >= 3 or a["audit_packets"] != a["packets"]:
    bad.append(f"audit rule: {a['audit_packets']} audit of {a['packets']} packets (want all, >= 3)")
if pairs[("web", "db")]["audit"]["packets"] != a["audit_packets"]:
    bad.append("web->db audit packets == the audit rule's")
for r in rules.values():
    if r["name"] != "audit-web-db-8080" and r["audit_packets"] != 0:
        bad.append(f"{r['name']}: audit_packets {r['audit_packets']} (want 0)")
n_audit = sum(e["verdict"] == "audit" for e in evs)
n_new = sum(e["verdict"] == "allow" and e["rule"] == "web-to-db-postgres" for e in evs)
if n_audit != 1: bad.append(f"{n_audit} audit events (want 1: the flow's first packet)")
if n_new != 1: bad.append(f"{n_new} new-flow events for web-to-db-postgres (want 1)")
print("; ".join(bad) or "ok")
EOF
)
zw_assert "stats and flows count the same packets: denies per rule and zone pair, audit per rule and pair ($got)" \
	test "$got" = ok
text=$(zw stats)
zw_assert "stats (text): the audit rule's AUDIT column equals its packets" \
	grep -Eq "^audit-web-db-8080 +deny \(audit\) +([0-9]+) +[0-9]+ +\1 " <<<"$text"

# trace of the same packets names the rule (and for a pass, the reason) the
# flows named.
trace_says() {
	zw --json trace --from "$1" --to "$2" --proto tcp --port "$3" --family 4 |
		zw_json "next(((h.get('rule') or {}).get('name', '') for h in d['hooks'] if h['verdict'] == 'drop'), '') if d['verdict'] == 'deny' else d['hooks'][0]['rule']['name'] + ' ' + d['hooks'][0]['reason']"
}
flows_say() {
	"$ZW_PY" - "$ZW_TMP/flows.jsonl" "$1" "$2" "$3" <<'EOF'
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
src, dst, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
e = next((e for e in evs if e["src"]["vm"] == src and e["dst"] and e["dst"]["vm"] == dst
          and e["dst"].get("port") == port), None)
print("no event" if e is None else e["rule"] if e["verdict"] == "deny" else e["rule"] + " " + e["reason"])
EOF
}
for t in "web-1 db-1 5432" "web-1 db-1 5433" "db-1 web-1 80" "web-1 db-1 8080"; do
	# shellcheck disable=SC2086
	tr=$(trace_says $t 2>&1) || true
	# shellcheck disable=SC2086
	fr=$(flows_say $t)
	zw_assert "trace $t names what flows named (trace: '$tr', flows: '$fr')" test "$tr" = "$fr"
done
cpu_line=$(zw stats | grep 'datapath CPU' || true)
zw_log "measured: $cpu_line"

zw_log "metrics"
PROM=$ZW_TMP/metrics.txt
ip netns exec "$ZW_HOSTNS" curl -sf "http://$METRICS/metrics" >"$PROM" || zw_die "GET http://$METRICS/metrics failed"
zw --json stats >"$STATS" || zw_die "zonewall --json stats failed"
out=$(promtool check metrics <"$PROM" 2>&1) && rc=0 || rc=$?
zw_assert "promtool check metrics passes (rc $rc: $out)" test "$rc" = 0
got=$("$ZW_PY" - "$PROM" "$STATS" <<'EOF'
import json, re, sys
text = open(sys.argv[1]).read()
s = json.load(open(sys.argv[2]))
samples = {}
for line in text.splitlines():
    if line.startswith("#") or not line.strip():
        continue
    name_labels, value = line.rsplit(" ", 1)
    samples[name_labels] = float(value)
def get(name, **labels):
    for k, v in samples.items():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})?", k)
        if m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(a) == b for a, b in labels.items()):
            return v
    return None
bad = []
for r in s["rules"]:
    v = get("zonewall_rule_packets_total", rule=r["name"])
    if v != r["packets"]: bad.append(f"rule {r['name']}: {v} != {r['packets']}")
    v = get("zonewall_rule_audit_packets_total", rule=r["name"])
    if v != r["audit_packets"]: bad.append(f"rule {r['name']} audit: {v} != {r['audit_packets']}")
if not (get("zonewall_rule_audit_packets_total", rule="audit-web-db-8080") or 0) >= 3:
    bad.append("audit rule's audit packets in the metrics")
for p in s["zone_pairs"]:
    for verdict in ("pass", "drop", "audit"):
        v = get("zonewall_zone_pair_packets_total", src_zone=p["src_zone"], dst_zone=p["dst_zone"], verdict=verdict)
        if v != p[verdict]["packets"]: bad.append(f"pair {p['src_zone']}->{p['dst_zone']} {verdict}")
for reason in ("drop_policy", "pass_new"):
    v = get("zonewall_reason_packets_total", reason=reason)
    # Kernel chatter (ARP, ND) can move other reasons between the two reads.
    if v != s["reasons"][reason]["packets"]: bad.append(f"reason {reason}: {v}")
for e in s["endpoints"]:
    v = get("zonewall_events_total", interface=e["ifname"], outcome="emitted")
    if v != e["events"]["emitted"]: bad.append(f"events {e['vm']}")
if get("zonewall_endpoints_enforced") != 4: bad.append("endpoints_enforced")
if get("zonewall_policy_generation") != s["active_generation"]: bad.append("generation")
if not (get("zonewall_last_apply_timestamp_seconds") or 0) > 1e9: bad.append("last apply time")
if get("zonewall_last_apply_duration_seconds") is None: bad.append("last apply duration")
if get("zonewall_bpf_stats_enabled") != 1: bad.append("bpf stats")
if not (get("zonewall_datapath_cpu_seconds_total", program="zw_from_vm_tc") or 0) > 0: bad.append("cpu")
print("; ".join(bad) or "ok")
EOF
)
zw_assert "metrics carry the same numbers as stats ($got)" test "$got" = ok

zw_log "SIGTERM the daemon; flows then reads the pinned ring buffer itself"
kill "$FOLLOW_PID" 2>/dev/null || true
kill -TERM "$DAEMON_PID"
for ((i = 0; i < 50; i++)); do
	kill -0 "$DAEMON_PID" 2>/dev/null || break
	sleep 0.1
done
rc=0
wait "$DAEMON_PID" || rc=$?
zw_assert "daemon exits 0 on SIGTERM (got $rc)" test "$rc" = 0
expect_deny web-1 db-1 tcp/5433 4
zw --json flows >"$ZW_TMP/direct.jsonl" || zw_die "zonewall --json flows without a daemon failed"
got=$("$ZW_PY" - "$ZW_TMP/direct.jsonl" <<'EOF'
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ok = any(e["verdict"] == "deny" and e["rule"] == "default:inter_zone" and e["dst"]["port"] == 5433
         and e["src"]["vm"] == "web-1" for e in evs)
print("ok" if ok else f"{len(evs)} events, none the deny")
EOF
)
zw_assert "flows without a daemon: the deny, from the pinned ring buffer ($got)" test "$got" = ok
zw --json flows >"$ZW_TMP/again.jsonl"
zw_assert "flows without a daemon consumes: a second read is empty" test ! -s "$ZW_TMP/again.jsonl"

zw_assert "zonewall down exits 0" zw down
zw_summary
