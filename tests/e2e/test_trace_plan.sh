#!/usr/bin/env bash
# trace and plan against a live lab: for allowed and denied pairs (TCP, UDP,
# ICMP; IPv4 and IPv6; VM and outside address) `zonewall trace` names the
# verdict and rule, real traffic gets the same verdict and moves that rule's
# counter, and the trace itself moves no counter and creates no flow. An
# established session is traced as decided by conntrack. `zonewall plan`
# shows nothing for the applied policy, the exact zone/rule/VM diff for a
# changed one, lists the established session as cut, and applies nothing;
# applying it then really cuts the session.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

zw_setup
zw_serve web-1 web-2 db-1 admin-1 ext-1
zw_apply "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory.json"

# Counters and flows a trace could move. Neighbour discovery and ARP, which
# the kernels of the lab move on their own, are left out.
counters() {
	zw --json stats | zw_json "[{k: v for k, v in d['reasons'].items() if k not in ('pass_nd', 'pass_arp')}, [(r['name'], r['packets']) for r in d['rules']], d['conntrack_entries']]"
}

# trace_vs_traffic FROM TO PROTO PORT|- FAM WANT RULE
# FROM may be ext-1 (not a VM): traced by its address.
trace_vs_traffic() {
	local from=$1 to=$2 proto=$3 port=$4 fam=$5 want=$6 rule=$7 src args out rc=0 got grule before after c0 c1 what
	src=$from
	[[ $from != ext-1 ]] || src=$(zw_addr ext-1 "$fam")
	args=(--from "$src" --to "$to" --proto "$proto" --family "$fam")
	[[ $port == - ]] || args+=(--port "$port")
	c0=$(counters)
	out=$(zw --json trace "${args[@]}") || rc=$?
	c1=$(counters)
	got=$(zw_json "d['verdict']" <<<"$out")
	grule=$(zw_json "next((h['rule'] or {}).get('name', '') for h in d['hooks'] if h['verdict'] == 'drop') if d['verdict'] == 'deny' else d['hooks'][-1]['rule']['name']" <<<"$out")
	what="trace $from → $to $proto${port/#-/}${port:+} IPv$fam"
	[[ $port == - ]] || what="trace $from → $to $proto/$port IPv$fam"
	zw_assert "$what: verdict $want (got $got)" test "$got" = "$want"
	zw_assert "$what: rule $rule (got $grule)" test "$grule" = "$rule"
	if [[ $want == allow ]]; then
		zw_assert "$what: exit 0 (got $rc)" test "$rc" = 0
	else
		zw_assert "$what: exit 7 (got $rc)" test "$rc" = 7
	fi
	if [[ $phase == quiet ]]; then
		zw_assert "$what: no counter or flow moved by the trace" test "$c0" = "$c1"
		return 0
	fi
	before=$(zw_rule_packets "$rule")
	if [[ $proto == icmpv6 ]]; then what=icmp; elif [[ $port == - ]]; then what=$proto; else what=$proto/$port; fi
	zw_expect "$want" "$from" "$to" "$what" "$fam"
	after=$(zw_rule_packets "$rule")
	zw_assert "real traffic counted by rule $rule, as traced ($before → $after)" test "$after" -gt "$before"
}

pairs() {
trace_vs_traffic web-1 db-1 tcp 5432 4 allow web-to-db-postgres
trace_vs_traffic web-1 db-1 tcp 5432 6 allow web-to-db-postgres
trace_vs_traffic web-1 db-1 tcp 5433 4 deny default:inter_zone
trace_vs_traffic db-1 web-1 tcp 80 6 deny deny-db-to-web
trace_vs_traffic web-1 db-1 udp 53 4 allow web-to-db-dns
trace_vs_traffic web-1 db-1 udp 53 6 allow web-to-db-dns
trace_vs_traffic web-1 db-1 udp 54 6 deny default:inter_zone
trace_vs_traffic admin-1 web-1 icmp - 4 allow admin-ping
trace_vs_traffic admin-1 db-1 icmpv6 - 6 allow admin-ping6
trace_vs_traffic web-1 admin-1 icmp - 4 deny default:inter_zone
trace_vs_traffic ext-1 web-1 tcp 80 4 allow office-to-web
trace_vs_traffic ext-1 web-1 tcp 22 6 deny default:inter_zone
trace_vs_traffic web-1 web-2 tcp 80 4 allow default:intra_zone
}
# First every trace in a quiet lab (nothing else moves the counters), then
# each again followed by the real traffic it predicts.
zw_log "trace: verdict and rule, nothing counted, no flow created"
phase=quiet
pairs
zw_log "trace agrees with real traffic"
phase=traffic
pairs

zw_log "trace output: hooks, zones, origin"
out=$(zw --json trace --from web-1 --to db-1 --proto tcp --port 5432)
hooks=$(zw_json "[(h['hook'], h['reason'], h['src_zone'], h['dst_zone']) for h in d['hooks']]" <<<"$out")
zw_assert "VM to VM: both hooks, pass_new, zones web → db ($hooks)" \
	test "$hooks" = '[["from-vm", "pass_new", "web", "db"], ["to-vm", "pass_new", "web", "db"]]'
origin=$(zw_json "d['hooks'][0]['rule']['origin']" <<<"$out")
zw_assert "rule origin is file: pointer ($origin)" test "$origin" = "$ZW_POLICY_LAB: /rules/0"
out=$(zw --json trace --from "$(zw_addr ext-1 4)" --to web-1 --proto tcp --port 80)
hooks=$(zw_json "[(h['hook'], h['src_zone']) for h in d['hooks']]" <<<"$out")
zw_assert "outside address: only the to-VM hook, zone office ($hooks)" test "$hooks" = '[["to-vm", "office"]]'
rc=0
zw trace --from nosuchvm --to db-1 --proto tcp --port 5432 >"$ZW_TMP/bad-trace.out" 2>&1 || rc=$?
zw_assert "trace of an unknown VM: exit 3 naming it (got $rc: $(cat "$ZW_TMP/bad-trace.out"))" \
	grep -q "nosuchvm" "$ZW_TMP/bad-trace.out"
zw_assert "trace of an unknown VM exits 3 (got $rc)" test "$rc" = 3

zw_log "established session: traced as conntrack's decision"
SESSION_PID=""
log=$ZW_TMP/session.log
zw_start_session "$log" || zw_die "tcp session web-1 → db-1:5432 did not get going"
sport=$(zw_in web-1 ss -Htn state established "( dport = :5432 )" | awk '{ n = split($3, a, ":"); print a[n]; exit }')
[[ $sport =~ ^[0-9]+$ ]] || zw_die "could not find the session's source port (got '$sport')"
zw_log "session source port $sport"
c0=$(zw --json stats | zw_json "d['conntrack_entries']")
out=$(zw --json trace --from db-1 --to web-1 --proto tcp --sport 5432 --port "$sport" --flags ack --family 4)
r=$(zw_json "[(h['hook'], h['verdict'], h['reason'], h['decided_by'], (h['rule'] or {}).get('name')) for h in d['hooks']]" <<<"$out")
zw_assert "reply db-1 → web-1 of the session: passed by conntrack, rule web-to-db-postgres ($r)" \
	test "$r" = '[["from-vm", "pass", "pass_ct", "conntrack", "web-to-db-postgres"], ["to-vm", "pass", "pass_ct", "conntrack", "web-to-db-postgres"]]'
out=$(zw --json trace --from db-1 --to web-1 --proto tcp --sport 5432 --port "$((sport == 65535 ? sport - 1 : sport + 1))" --flags ack --family 4) || true
r=$(zw_json "d['hooks'][0]['reason']" <<<"$out")
zw_assert "the same reply on another port has no flow: drop_tcp_no_syn ($r)" test "$r" = drop_tcp_no_syn

zw_log "plan: the applied policy changes nothing"
rc=0
out=$(zw --json plan "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory.json") || rc=$?
zw_assert "plan of the applied policy exits 0 (got $rc)" test "$rc" = 0
zw_assert "plan of the applied policy: no changes" test "$(zw_json "d['changes']" <<<"$out")" = False
zw_assert "plan of the applied policy: nothing cut" test "$(zw_json "len(d['flows_cut'])" <<<"$out")" = 0
rc=0
zw plan "$ZW_POLICY_LAB" >/dev/null || rc=$?
zw_assert "plan without --inventory (the VMs as applied) exits 0 (got $rc)" test "$rc" = 0

zw_log "plan: a changed policy (zone admin renamed ops, postgres rule replaced)"
"$ZW_PY" - "$ZW_POLICY_LAB" "$ZW_TMP/changed.json" <<'EOF' || zw_die "could not derive the changed policy"
import json, sys
p = json.load(open(sys.argv[1]))
p["zones"]["ops"] = p["zones"].pop("admin")
for r in p["rules"]:
    r["from"] = "ops" if r["from"] == "admin" else r["from"]
i = next(i for i, r in enumerate(p["rules"]) if r["name"] == "web-to-db-postgres")
p["rules"][i] = {"name": "web-to-db-http", "from": "web", "to": "db", "proto": "tcp", "ports": [80], "action": "allow"}
json.dump(p, open(sys.argv[2], "w"), indent=2)
EOF
gen0=$(zw --json status | zw_json "d['active_generation']")
ct0=$(zw --json stats | zw_json "d['conntrack_entries']")
rc=0
out=$(zw --json plan "$ZW_TMP/changed.json" --inventory "$ZW_TMP/inventory.json") || rc=$?
zw_assert "plan of a changed policy exits 8 (got $rc)" test "$rc" = 8
zw_assert "zones: +ops -admin, none changed in place" \
	test "$(zw_json "[d['zones']['added'], d['zones']['removed'], [z['name'] for z in d['zones']['changed']]]" <<<"$out")" = '[["ops"], ["admin"], []]'
zw_assert "rules: +web-to-db-http, -web-to-db-postgres" \
	test "$(zw_json "[[r['name'] for r in d['rules']['added']], [r['name'] for r in d['rules']['removed']]]" <<<"$out")" = '[["web-to-db-http"], ["web-to-db-postgres"]]'
changed=$(zw_json "[(c['name'], c['match']['from'], c['match']['to'], 'action' in c, 'position' in c) for c in d['rules']['changed']]" <<<"$out")
zw_assert "rules: admin-ssh/ping/ping6 match admin → ops, action and order unchanged ($changed)" \
	test "$changed" = '[["admin-ssh", "admin -> * tcp 22", "ops -> * tcp 22", false, false], ["admin-ping", "admin -> * icmp type 8", "ops -> * icmp type 8", false, false], ["admin-ping6", "admin -> * icmpv6 type 128", "ops -> * icmpv6 type 128", false, false]]'
moves=$(zw_json "[(m['vm'], m['from'], m['to']) for m in d['endpoints']['zone_changes']] + [len(d['endpoints']['added']), len(d['endpoints']['removed'])]" <<<"$out")
zw_assert "VMs: admin-1 moves admin → ops, none added or removed ($moves)" test "$moves" = '[["admin-1", "admin", "ops"], 0, 0]'
zw_assert "defaults unchanged" test "$(zw_json "d['defaults']" <<<"$out")" = '[]'
session=$(zw_json "[(f['src']['vm'], f['dst']['vm'], f['src']['zone'], f['dst']['zone'], f['allowed_by'], f['cut_by']) for f in d['flows_cut'] if f['proto'] == 'tcp' and f['src'].get('port') == $sport and f['dst'].get('port') == 5432]" <<<"$out")
zw_assert "the established session is listed as cut, with VMs, zones and rules ($session)" \
	test "$session" = '[["web-1", "db-1", "web", "db", "web-to-db-postgres", "default:inter_zone"]]'
notcut=$(zw_json "[f for f in d['flows_cut'] if f['dst'].get('port') == 53]" <<<"$out")
zw_assert "flows the new policy still allows (dns) are not listed ($notcut)" test "$notcut" = '[]'
zw plan "$ZW_TMP/changed.json" --inventory "$ZW_TMP/inventory.json" >"$ZW_TMP/plan.txt" || true
zw_assert "human plan names the cut session: $(grep ":$sport " "$ZW_TMP/plan.txt" || cat "$ZW_TMP/plan.txt")" \
	grep -q "tcp 10.70.0.11:$sport (web-1, zone web) -> 10.70.0.21:5432 (db-1, zone db): allowed by web-to-db-postgres, cut by default:inter_zone" "$ZW_TMP/plan.txt"
zw_assert "human plan: zone move line" grep -q "admin-1 (.*): zone admin -> ops" "$ZW_TMP/plan.txt"

gen1=$(zw --json status | zw_json "d['active_generation']")
zw_assert "plan applied nothing: generation $gen0 → $gen1" test "$gen0" = "$gen1"
t=$(date +%s.%N)
sleep 0.5
n=$(zw_session_oks_after "$log" "$t")
zw_assert "plan applied nothing: the session still gets replies ($n in 0.5 s)" test "$n" -ge 3
out=$(zw --json plan "$ZW_TMP/changed.json" --inventory "$ZW_TMP/inventory.json") || true
again=$(zw_json "len([f for f in d['flows_cut'] if f['src'].get('port') == $sport])" <<<"$out")
zw_assert "plan applied nothing: its conntrack entry is still there (listed again: $again)" test "$again" = 1
ct1=$(zw --json stats | zw_json "d['conntrack_entries']")
zw_log "conntrack entries $ct0 before the plans, $ct1 after (the session's stays; probes may age out)"

zw_log "apply the changed policy: the session is really cut, as planned"
zw_apply "$ZW_TMP/changed.json" --inventory "$ZW_TMP/inventory.json"
t=$(date +%s.%N)
sleep 1.5
late=$(zw_session_oks_after "$log" "$(awk -v a="$t" 'BEGIN { printf "%.3f", a + 0.5 }')")
zw_assert "after apply the session gets no replies ($late late replies)" test "$late" = 0
rc=0
zw plan "$ZW_TMP/changed.json" --inventory "$ZW_TMP/inventory.json" >/dev/null || rc=$?
zw_assert "plan of the now-applied policy exits 0 (got $rc)" test "$rc" = 0

zw_summary
