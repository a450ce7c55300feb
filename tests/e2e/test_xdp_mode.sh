#!/usr/bin/env bash
# The lab policy with the from-VM program attached as XDP (`apply --attach
# xdp`): a subset of test_lab_policy's traffic, then `zonewall down` must
# leave no XDP program and no tc filter behind.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

zw_setup
zw_serve web-1 db-1 admin-1 ext-1

if ! zw_try_apply "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory.json" --attach xdp; then
	zw_fail "zonewall apply --attach xdp failed: $ZW_APPLY_OUT"
	# Applied whole or not at all: a failed first apply must leave no hook
	# behind (a stray fail-closed program would cut the VM off), and down
	# must clean up whatever it did leave.
	zw_assert_detached "after the failed apply"
	zw_assert "zonewall down exits 0 after the failed apply" zw down
	zw_assert_detached down
	zw_summary
	exit 1
fi
zw_log "applied with --attach xdp"

status=$(zw --json status) || zw_die "zonewall --json status failed"
problems=$(zw_json "[f\"{e['vm']} ({e['ifname']}): enforced={e['enforced']} attach={e['attach']}\"
	for e in d['endpoints'] if not e['enforced'] or e['attach'] != 'xdp']" <<<"$status")
zw_assert "status: every endpoint enforced in xdp mode (problems: $problems)" test "$problems" = "[]"
for name in web-1 web-2 db-1 admin-1; do
	ifn=$(zw_ifname "$name")
	link=$(ip -n "$ZW_HOSTNS" -d link show dev "$ifn")
	zw_assert "XDP program on $ifn ($name)" grep -q xdp <<<"$link"
done

zw_log "traffic in xdp mode"
expect_allow web-1 db-1 tcp/5432
expect_deny web-1 db-1 tcp/5433
expect_deny db-1 web-1 tcp/80 4
expect_allow web-1 db-1 udp/53 4
expect_allow admin-1 web-1 icmp
expect_deny web-1 admin-1 icmp
expect_allow ext-1 web-1 tcp/8080
expect_deny web-1 ext-1 tcp/80 4

pg=$(zw_rule_packets web-to-db-postgres)
zw_assert "stats: rule web-to-db-postgres counted packets in xdp mode (got $pg)" zw_positive "$pg"

zw_log "zonewall down"
zw_assert "zonewall down exits 0" zw down
zw_assert_detached down
expect_allow web-1 admin-1 icmp 4

zw_summary
