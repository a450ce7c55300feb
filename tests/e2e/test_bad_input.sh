#!/usr/bin/env bash
# Bad input at the CLI's entry points (issue 7): a policy or an inventory
# that is invalid UTF-8, over the 16 MiB size limit, or nested 100,000 levels
# deep. `zonewall check` and `zonewall apply` exit 3 with an error naming
# the file and where in it; the enforced generation does not change and
# traffic is judged as before (nothing half-applied).
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

zw_setup
zw_serve db-1
inv=$ZW_TMP/inventory.json
zw_apply "$ZW_POLICY_LAB" --inventory "$inv"
gen0=$(zw --json status | zw_json "d['active_generation']")

# Bad files, each next to the valid one it was made from.
"$ZW_PY" - "$ZW_POLICY_LAB" "$inv" "$ZW_TMP" <<'EOF' || zw_die "could not make the bad inputs"
import sys
pol, inv, out = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read(), sys.argv[3]
def put(name, data):
    open(out + "/" + name, "wb").write(data)
# A byte that is never UTF-8, inside a string on line 3 / in a VM name.
put("policy-utf8.json", pol.replace(b"Lab policy", b"Lab \xff\xfe policy", 1))
put("inventory-utf8.json", inv.replace(b'"web-2"', b'"web-\xc3\x28"', 1))
# Over 16 MiB: valid JSON padded with whitespace.
put("policy-huge.json", pol + b" " * (17 << 20))
put("inventory-huge.json", inv + b"\n" * (17 << 20))
# 100,000 levels of nesting.
deep = b'{"version": 1, "x": ' + b"[" * 100000 + b"]" * 100000 + b"}"
put("policy-deep.json", deep)
put("inventory-deep.json", b'{"vms": ' + b"[" * 100000 + b"]" * 100000 + b"}")
EOF

# expect_refused WHAT FILE PATTERN ARGS...: exit 3, FILE and PATTERN in the error.
expect_refused() {
	local what=$1 file=$2 pattern=$3 rc=0 out
	shift 3
	out=$(zw "$@" 2>&1) || rc=$?
	zw_assert "$what: exit 3 (got $rc)" test "$rc" = 3
	zw_assert "$what: the error names $(basename "$file") and says '$pattern': ${out:0:300}" \
		grep -aq "$(basename "$file").*$pattern" <<<"$out"
}

for kind in utf8 huge deep; do
	case $kind in
	utf8) pat_p='line 3, column [0-9]*:.*UTF-8' pat_i='line [0-9]*, column [0-9]*:.*UTF-8' ;;
	huge) pat_p='bytes' pat_i='bytes' ;;
	deep) pat_p='nested deeper than' pat_i='nested deeper than' ;;
	esac
	p=$ZW_TMP/policy-$kind.json
	i=$ZW_TMP/inventory-$kind.json
	expect_refused "check policy-$kind.json" "$p" "$pat_p" check "$p"
	expect_refused "apply policy-$kind.json" "$p" "$pat_p" apply "$p" --inventory "$inv"
	expect_refused "check with inventory-$kind.json" "$i" "$pat_i" check "$ZW_POLICY_LAB" --inventory "$i"
	expect_refused "apply with inventory-$kind.json" "$i" "$pat_i" apply "$ZW_POLICY_LAB" --inventory "$i"
done

gen1=$(zw --json status | zw_json "d['active_generation']")
zw_assert "active generation unchanged by the refused applies ($gen0 → $gen1)" test "$gen0" = "$gen1"
n=$(zw --json status | zw_json "d['endpoints_enforced']")
zw_assert "all 4 endpoints still enforced ($n)" test "$n" = 4
expect_allow web-1 db-1 tcp/5432 4
expect_deny web-1 db-1 tcp/5433 4

# A refused FIRST apply (fresh pin directory) leaves nothing pinned: the
# programs load while the inventory and the desired state are read, and a
# refusal after that unpins the maps the load created. An address one VM
# owns and another claims as an allowed address (VIP) is refused while the
# desired state is built; a duplicate own address, while the inventory is
# read.
fresh=$ZW_PIN_DIR-fresh
"$ZW_PY" - "$inv" "$ZW_TMP" <<'EOF2' || zw_die "could not make the conflicting inventories"
import json, sys
inv = json.load(open(sys.argv[1]))
ifs = [i for vm in inv["vms"] for i in vm["interfaces"] if i.get("ips")]
ifs[1]["allowed_addresses"] = [ifs[0]["ips"][0]]
json.dump(inv, open(sys.argv[2] + "/inventory-vipowned.json", "w"))
del ifs[1]["allowed_addresses"]
ifs[1]["ips"] = list(ifs[0]["ips"])
json.dump(inv, open(sys.argv[2] + "/inventory-dupaddr.json", "w"))
EOF2
for bad in inventory-vipowned.json inventory-dupaddr.json inventory-utf8.json; do
	rc=0
	out=$(nsenter --net="/run/netns/$ZW_HOSTNS" "$ZONEWALL" --pin-dir "$fresh" apply "$ZW_POLICY_LAB" \
		--inventory "$ZW_TMP/$bad" 2>&1) || rc=$?
	zw_assert "first apply with $bad refused: exit 3 (got $rc: ${out:0:200})" test "$rc" = 3
	zw_assert "first apply with $bad refused: nothing left under $fresh ($(ls -R "$fresh" 2>&1 | head -5))" \
		test ! -e "$fresh"
done

# A VM name with terminal controls (libvirt names are the guest owner's
# choice on shared hosts) is shown escaped by status, stats and check.
"$ZW_PY" - "$inv" "$ZW_TMP/inventory-escape.json" <<'EOF2' || zw_die "could not make the hostile-name inventory"
import json, sys
inv = json.load(open(sys.argv[1]))
for vm in inv["vms"]:
    if vm["name"] == "web-2":
        vm["name"] = "web-2\x1b[2J\x1b]0;owned\x07"
json.dump(inv, open(sys.argv[2], "w"))
EOF2
zw_apply "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory-escape.json"
for cmd in status stats "check $ZW_POLICY_LAB --inventory $ZW_TMP/inventory-escape.json"; do
	# shellcheck disable=SC2086
	out=$(zw $cmd 2>&1)
	zw_assert "$cmd: no raw ESC or BEL from the VM name" \
		test "$(printf '%s' "$out" | tr -cd '\033\007' | wc -c)" = 0
	zw_assert "$cmd: the name shown escaped" grep -qF 'web-2\x1b[2J\x1b]0;owned\x07' <<<"$out"
done

zw_assert "zonewall down exits 0" zw down
zw_assert_detached down
zw_summary
