#!/usr/bin/env bash
# Capacity (issue 7): generated inputs one over a map's capacity —
# 16,385 VM interfaces (ZW_MAX_ENDPOINTS 16,384), 68,000 VM addresses
# (ZW_MAX_ADDRS 65,536), 16,385 CIDRs (ZW_MAX_CIDRS 16,384), a policy that
# compiles to 320,140 entries (ZW_MAX_POLICY 262,144). `zonewall check` and
# `zonewall apply` exit 3 naming the map that overflows and its capacity,
# before anything is written: the enforced generation and its map entries
# are unchanged and traffic is judged as before.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=tests/e2e/reliab_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/reliab_lib.sh"

zw_setup
command -v bpftool >/dev/null || zw_skip "needs bpftool (scripts/setup.sh installs it)"
zw_serve db-1
inv=$ZW_TMP/inventory.json
zw_apply "$ZW_POLICY_LAB" --inventory "$inv"
gen0=$(rl_active_gen)
maps0=$(rl_maps_dump)

"$ZW_PY" - "$ZW_POLICY_LAB" "$ZW_TMP" <<'EOF' || zw_die "could not generate the large inputs"
import json, sys
lab, out = json.load(open(sys.argv[1])), sys.argv[2]
def inv(n, ips_per):
    vms = []
    for i in range(n):
        ips = []
        for j in range(ips_per):
            a = i * ips_per + j
            ips.append("10.%d.%d.%d" % (100 + a // 65536, (a // 256) % 256, a % 256))
        mac = "52:54:%02x:%02x:%02x:01" % (i >> 16 & 255, i >> 8 & 255, i & 255)
        vms.append({"name": "web-%d" % i, "interfaces": [{"name": "zc%d" % i, "mac": mac, "ips": ips}]})
    return {"vms": vms}
json.dump(inv(16385, 1), open(out + "/inv-endpoints.json", "w"))
json.dump(inv(4000, 17), open(out + "/inv-addrs.json", "w"))
# /25s at the start of each /24: no two can merge into a shorter prefix.
p = json.loads(json.dumps(lab))
p["zones"]["office"]["cidrs"] = ["10.%d.%d.0/25" % (i // 256, i % 256) for i in range(16385)]
json.dump(p, open(out + "/pol-cidrs.json", "w"))
# 16 zone pairs x 20,000 separate ports (odd numbers: no ranges to merge).
p = json.loads(json.dumps(lab))
zones = ["z%d" % i for i in range(5)]
for z in zones:
    p["zones"][z] = {"vms": [z + "-*"]}
p["rules"] = [{"name": "r-%s-%s" % (a, b), "from": a, "to": b, "proto": "tcp",
               "ports": list(range(1, 40001, 2)), "action": "allow"}
              for a in zones for b in zones[:4] if a != b] + p["rules"]
json.dump(p, open(out + "/pol-entries.json", "w"))
EOF

# refused WHAT PATTERN ARGS...: exit 3 and PATTERN in the error.
refused() {
	local what=$1 pattern=$2 rc=0 out
	shift 2
	out=$(zw "$@" 2>&1) || rc=$?
	zw_assert "$what: exit 3 (got $rc)" test "$rc" = 3
	zw_assert "$what: the error says '$pattern': ${out:0:200}" grep -q "$pattern" <<<"$out"
}

for cmd in check apply; do
	refused "$cmd with 16,385 VM interfaces" "16385 VM interfaces exceed the endpoint map (16384)" \
		"$cmd" "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inv-endpoints.json"
	refused "$cmd with 68,000 VM addresses" "68000 VM addresses exceed the address map (65536)" \
		"$cmd" "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inv-addrs.json"
	refused "$cmd with 16,385 CIDRs" "16385 CIDRs exceed the CIDR map (16384)" \
		"$cmd" "$ZW_TMP/pol-cidrs.json" --inventory "$inv"
	refused "$cmd with 320,140 policy entries" "320140 map entries, more than the datapath holds (262144)" \
		"$cmd" "$ZW_TMP/pol-entries.json" --inventory "$inv"
done
# check of the policy alone gates its own capacities too (CI without an inventory).
refused "check without an inventory, 16,385 CIDRs" "16385 CIDRs exceed the CIDR map (16384)" \
	check "$ZW_TMP/pol-cidrs.json"

zw_assert "active generation unchanged by the refused applies ($gen0 → $(rl_active_gen))" test "$(rl_active_gen)" = "$gen0"
maps1=$(rl_maps_dump)
zw_assert "map entries unchanged: nothing was written (digest before ${maps0:0:16}, after ${maps1:0:16})" \
	test "$maps1" = "$maps0"
expect_allow web-1 db-1 tcp/5432 4
expect_deny web-1 db-1 tcp/5433 4

zw_assert "zonewall down exits 0" zw down
zw_assert_detached down
zw_summary
