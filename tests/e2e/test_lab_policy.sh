#!/usr/bin/env bash
# The main end-to-end test: the lab policy (policies/examples/lab.json) in tc
# mode, judged by real ping/TCP/UDP traffic between lab namespaces in both
# directions, IPv4 and IPv6; then stats, status, and a clean `zonewall down`.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

zw_setup
zw_serve web-1 web-2 db-1 admin-1 ext-1

zw_log "baseline: the lab forwards everything before zonewall is applied"
expect_allow web-1 admin-1 icmp
expect_allow db-1 web-1 tcp/80 4
expect_allow web-1 ext-1 tcp/80 4
((ZW_FAILED == 0)) || zw_die "the lab itself does not forward traffic; not testing zonewall on it"

zw_apply "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory.json" --attach tc

zw_log "status after apply"
status=$(zw --json status) || zw_die "zonewall --json status failed"
problems=$(zw_json "[f\"{e['vm']} ({e['ifname']}): enforced={e['enforced']} attach={e['attach']}\"
	for e in d['endpoints'] if not e['enforced'] or e['attach'] != 'tc']" <<<"$status")
n_enf=$(zw_json "d['endpoints_enforced']" <<<"$status")
n_eps=$(zw_json "len(d['endpoints'])" <<<"$status")
zw_assert "status: 4 endpoints listed (got $n_eps)" test "$n_eps" = 4
zw_assert "status: 4 endpoints enforced (got $n_enf)" test "$n_enf" = 4
zw_assert "status: every endpoint enforced in tc mode (problems: $problems)" test "$problems" = "[]"

zw_log "rule 1 web-to-db-postgres, default inter-zone deny"
expect_allow web-1 db-1 tcp/5432
expect_allow web-2 db-1 tcp/5432 4
expect_deny web-1 db-1 tcp/5433
zw_log "rule 7 deny-db-to-web; db may not open to web even on a web port"
expect_deny db-1 web-1 tcp/80
expect_deny db-1 web-1 icmp 4
zw_log "rule 2 web-to-db-dns (the echo must come back)"
expect_allow web-1 db-1 udp/53
expect_deny web-1 db-1 udp/54
zw_log "rules 3-5 admin: ssh and ping to every zone, nothing the other way"
expect_allow admin-1 web-1 icmp
expect_allow admin-1 db-1 icmp
expect_allow admin-1 web-1 tcp/22
expect_deny admin-1 web-1 tcp/80 4
expect_deny web-1 admin-1 icmp
expect_deny web-1 admin-1 tcp/22 4
zw_log "intra-zone default allow"
expect_allow web-1 web-2 icmp
expect_allow web-1 web-2 tcp/80
expect_allow web-2 web-1 tcp/5433 4
zw_log "rule 6 office-to-web (ext-1 is in the office CIDRs and not managed)"
expect_allow ext-1 web-1 tcp/80
expect_allow ext-1 web-1 tcp/8080
expect_allow ext-1 web-1 tcp/443 4
expect_deny ext-1 web-1 tcp/8100 4
expect_deny ext-1 web-1 tcp/22
expect_deny ext-1 db-1 tcp/5432
zw_log "web → office is not allowed: only replies to office's connections"
expect_deny web-1 ext-1 tcp/80
expect_deny web-1 ext-1 icmp 4

zw_log "stats"
stats=$(zw --json stats) || zw_die "zonewall --json stats failed"
pg=$(zw_json "next((r['packets'] for r in d['rules'] if r['name'] == 'web-to-db-postgres'), 'missing')" <<<"$stats")
dns=$(zw_json "next((r['packets'] for r in d['rules'] if r['name'] == 'web-to-db-dns'), 'missing')" <<<"$stats")
deny7=$(zw_json "next((r['packets'] for r in d['rules'] if r['name'] == 'deny-db-to-web'), 'missing')" <<<"$stats")
drops=$(zw_json "d['reasons']['drop_policy']['packets']" <<<"$stats")
w1drop=$(zw_json "next((e['from_vm_drop']['packets'] for e in d['endpoints'] if e['vm'] == 'web-1'), 'missing')" <<<"$stats")
zw_assert "stats: rule web-to-db-postgres counted packets (got $pg)" zw_positive "$pg"
zw_assert "stats: rule web-to-db-dns counted packets (got $dns)" zw_positive "$dns"
zw_assert "stats: rule deny-db-to-web counted packets (got $deny7)" zw_positive "$deny7"
zw_assert "stats: drop_policy counted the denies (got $drops)" zw_positive "$drops"
zw_assert "stats: web-1 from_vm_drop counted its denied sends (got $w1drop)" zw_positive "$w1drop"

zw_log "zonewall down"
zw_assert "zonewall down exits 0" zw down
zw_assert_detached down
expect_allow web-1 admin-1 icmp 4

zw_summary
