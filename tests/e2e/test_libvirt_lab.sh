#!/usr/bin/env bash
# The lab policy with VM identity from libvirt: the lab's VMs as running
# domains of a libvirt test-driver node file (scripts/lab.sh libvirt-xml),
# read by zonewall through test:///PATH (the driver runs inside zonewall; no
# libvirtd). Checks: `check --libvirt` gives every domain its zone; apply with
# --libvirt alone enforces lab.json (a subset of test_lab_policy's traffic);
# admin-1 is zoned by its metadata zone tag alone once the policy's admin glob
# no longer matches it; a node file with a zone tag the policy does not define
# is refused (exit 3, naming the domain) and the policy in force stays.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

zw_setup
zw_serve web-1 web-2 db-1 admin-1 ext-1

# Node files. ZONE_TAG_OVERRIDES (lab.sh) changes zone tags: "admin-1=" drops
# admin-1's tag, "db-1=payments" tags db-1 with a zone lab.json lacks.
NODE=$ZW_TMP/node.xml
NODE_UNTAGGED=$ZW_TMP/node-untagged.xml
NODE_BAD=$ZW_TMP/node-bad-tag.xml
"$ZW_LAB" libvirt-xml "$ZW_PREFIX" >"$NODE" || zw_die "lab.sh libvirt-xml failed"
ZONE_TAG_OVERRIDES="admin-1=" "$ZW_LAB" libvirt-xml "$ZW_PREFIX" >"$NODE_UNTAGGED"
ZONE_TAG_OVERRIDES="db-1=payments" "$ZW_LAB" libvirt-xml "$ZW_PREFIX" >"$NODE_BAD"
URI=test://$NODE
grep -q '<zonewall:zone>admin</zonewall:zone>' "$NODE" || zw_die "the lab node file has no admin zone tag on admin-1"
! grep -q '<zonewall:zone>' "$NODE_UNTAGGED" || zw_die "$NODE_UNTAGGED still has a zone tag"

# lab.json, except that the admin zone's glob matches no lab VM: admin-1 can
# only get into it through its metadata zone tag.
TAGONLY=$ZW_TMP/lab-admin-by-tag.json
"$ZW_PY" - "$ZW_POLICY_LAB" "$TAGONLY" <<'EOF' || zw_die "could not derive the tag-only admin policy"
import json, sys
p = json.load(open(sys.argv[1]))
p["zones"]["admin"] = {"vms": ["ops-console-*"], "description": "by zone tag only in the lab"}
json.dump(p, open(sys.argv[2], "w"), indent=2)
EOF

# The domains' UUIDs as the node file gives them: status must show the same.
uuids=$("$ZW_PY" - "$NODE" <<'EOF'
import sys, xml.etree.ElementTree as ET
print(" ".join(sorted(d.findtext("name") + "=" + d.findtext("uuid").lower() for d in ET.parse(sys.argv[1]).getroot().iter("domain"))))
EOF
) || zw_die "could not read the node file $NODE"

# "vm=zone ..." sorted, from `zonewall --json check` or `status` on stdin.
zones_of() { zw_json "' '.join(sorted(e['vm'] + '=' + e['zone'] for e in d['endpoints']))"; }
want_zones="admin-1=admin db-1=db web-1=web web-2=web"

zw_log "baseline: the lab forwards everything before zonewall is applied"
expect_allow web-1 admin-1 icmp 4
expect_allow db-1 web-1 tcp/80 4
((ZW_FAILED == 0)) || zw_die "the lab itself does not forward traffic; not testing zonewall on it"

zw_log "zonewall check --libvirt $URI"
rc=0
out=$(zw check "$ZW_POLICY_LAB" --libvirt "$URI" 2>&1) || rc=$?
printf '%s\n' "$out" | sed 's/^/    /'
zw_assert "check --libvirt exits 0 (got $rc)" test "$rc" = 0
for vz in web-1:web web-2:web db-1:db admin-1:admin; do
	IFS=: read -r vm zone <<<"$vz"
	line="$vm ($("$ZW_LAB" ifname "$ZW_PREFIX" "$vm")) -> zone $zone"
	zw_assert "check --libvirt prints '$line'" grep -qxF "  $line" <<<"$out"
done
got=$(zw --json check "$ZW_POLICY_LAB" --libvirt "$URI" | zones_of) || got="(--json check failed)"
zw_assert "check --json --libvirt: zones $want_zones (got $got)" test "$got" = "$want_zones"

zw_log "the zone tag alone: admin zone glob matches no lab VM"
got=$(zw --json check "$TAGONLY" --libvirt "$URI" | zones_of) || got="(--json check failed)"
zw_assert "tagged admin-1 is in zone admin by its tag (got $got)" test "$got" = "$want_zones"
got=$(zw --json check "$TAGONLY" --libvirt "test://$NODE_UNTAGGED" | zones_of) || got="(--json check failed)"
zw_assert "without the tag admin-1 is unzoned (got $got)" test "$got" = "admin-1=unzoned db-1=db web-1=web web-2=web"

zw_log "apply lab.json --libvirt $URI (no static inventory)"
zw_apply "$ZW_POLICY_LAB" --libvirt "$URI"
status=$(zw --json status) || zw_die "zonewall --json status failed"
n_enf=$(zw_json "d['endpoints_enforced']" <<<"$status")
n_eps=$(zw_json "len(d['endpoints'])" <<<"$status")
got=$(zones_of <<<"$status")
got_uuids=$(zw_json "' '.join(sorted(e['vm'] + '=' + e['uuid'] for e in d['endpoints']))" <<<"$status")
zw_assert "status: 4 endpoints listed (got $n_eps)" test "$n_eps" = 4
zw_assert "status: 4 endpoints enforced (got $n_enf)" test "$n_enf" = 4
zw_assert "status: zones from libvirt $want_zones (got $got)" test "$got" = "$want_zones"
zw_assert "status: UUIDs are the domains' (want $uuids, got $got_uuids)" test "$got_uuids" = "$uuids"
bad_addrs=$(zw_json "[f\"{e['vm']}: {e['addrs']}\" for e in d['endpoints']
	if sorted(e['addrs']) != sorted(['10.70.0.' + {'web-1': '11', 'web-2': '12', 'db-1': '21', 'admin-1': '31'}[e['vm']],
	                                 'fd70::' + {'web-1': '11', 'web-2': '12', 'db-1': '21', 'admin-1': '31'}[e['vm']]])]" <<<"$status")
zw_assert "status: each VM owns exactly the addresses of its domain's <ip> elements (wrong: $bad_addrs)" test "$bad_addrs" = "[]"

zw_log "traffic under lab.json, identity from libvirt"
expect_allow web-1 db-1 tcp/5432
expect_deny web-1 db-1 tcp/5433 4
expect_allow web-1 db-1 udp/53 4
expect_deny db-1 web-1 tcp/80 4
expect_allow web-1 web-2 tcp/80 4
expect_allow admin-1 web-1 icmp
expect_allow admin-1 db-1 tcp/22 4
expect_deny admin-1 web-1 tcp/80 4
expect_deny web-1 admin-1 icmp 4
expect_allow ext-1 web-1 tcp/8080 4
expect_deny ext-1 db-1 tcp/5432 4

zw_log "a node file tagging db-1 with zone 'payments', which lab.json does not define"
gen0=$(zw --json status | zw_json "d['active_generation']")
rc=0
zw check "$ZW_POLICY_LAB" --libvirt "test://$NODE_BAD" >"$ZW_TMP/check-bad.out" 2>&1 || rc=$?
zw_assert "check --libvirt with the bad tag exits 3 (got $rc)" test "$rc" = 3
rc=0
zw_try_apply "$ZW_POLICY_LAB" --libvirt "test://$NODE_BAD" || rc=$?
printf '    %s\n' "${ZW_APPLY_OUT//$'\n'/$'\n    '}"
zw_assert "apply with the bad tag exits 3 (got $rc)" test "$rc" = 3
zw_assert "its error names the domain 'db-1'" grep -q "'db-1'" <<<"$ZW_APPLY_OUT"
zw_assert "its error names the undefined zone 'payments'" grep -q "payments" <<<"$ZW_APPLY_OUT"
status=$(zw --json status) || zw_die "zonewall --json status failed"
gen1=$(zw_json "d['active_generation']" <<<"$status")
got=$(zones_of <<<"$status")
zw_assert "active generation unchanged ($gen0 → $gen1)" test "$gen0" = "$gen1"
zw_assert "zones unchanged (got $got)" test "$got" = "$want_zones"
zw_assert "4 endpoints still enforced" test "$(zw_json "d['endpoints_enforced']" <<<"$status")" = 4
expect_allow web-1 db-1 tcp/5432 4
expect_deny web-1 db-1 tcp/5433 4
expect_deny db-1 web-1 tcp/80 4
expect_allow admin-1 web-1 tcp/22 4
expect_deny web-1 admin-1 icmp 4

zw_log "apply the policy whose admin zone only the zone tag reaches"
zw_apply "$TAGONLY" --libvirt "$URI"
got=$(zw --json status | zones_of)
zw_assert "status: admin-1 in zone admin by its metadata tag (got $got)" test "$got" = "$want_zones"
expect_allow admin-1 web-1 tcp/22 4
expect_allow admin-1 db-1 icmp
expect_deny web-1 admin-1 tcp/22 4
expect_deny admin-1 web-1 tcp/80 4
expect_allow web-1 db-1 tcp/5432 4

zw_assert "zonewall down exits 0" zw down
zw_assert_detached down

zw_summary
