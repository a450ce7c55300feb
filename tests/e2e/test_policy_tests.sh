#!/usr/bin/env bash
# `zonewall test` as a policy repo's CI runs it: in a fresh network namespace
# holding only lo, no inventory, no lab. The shipped expectations pass (exit
# 0); a file with wrong expectations fails exactly those (exit 7); a broken
# file is refused with file + JSON pointer errors (exit 3); a policy
# directory's tests/ is found by default. Afterwards: no interface in the
# namespace, no pin dir and no state dir left behind.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

zw_preflight
NS=zw-obs-trace-pt-$$-$RANDOM
ZW_TMP=$(mktemp -d "/tmp/zw-e2e-$ZW_TEST_NAME.XXXXXX")
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	[[ ! -e /run/netns/$NS ]] || ip netns del "$NS"
	if ((rc != 0)); then echo "logs kept in $ZW_TMP" >&2; else rm -rf "$ZW_TMP"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
ip netns add "$NS" || zw_skip "cannot create network namespaces"
# In the namespace, as CI would run it (nsenter keeps /sys/fs/bpf visible).
zwt() { nsenter --net="/run/netns/$NS" "$ZONEWALL" "$@"; }
# Globs, not find(1): other tests remove their own /tmp directories while
# this one runs, and find fails on an entry that vanished under it.
private_dirs() { compgen -G "$1/zw-test-*" | sort || true; }
pins_before=$(private_dirs /sys/fs/bpf)
states_before=$(private_dirs /tmp)
links_before=$(ip -n "$NS" -o link show)

zw_log "shipped expectations against the lab policy"
rc=0
zwt test "$ZW_POLICY_LAB" --expectations "$ZW_SOURCE_DIR/policies/tests/lab.json" >"$ZW_TMP/ok.out" 2>&1 || rc=$?
zw_assert "policies/tests/lab.json passes: exit 0 (got $rc: $(tail -n 3 "$ZW_TMP/ok.out"))" test "$rc" = 0
n=$(grep -c '^PASS ' "$ZW_TMP/ok.out" || true)
total=$("$ZW_PY" -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$ZW_SOURCE_DIR/policies/tests/lab.json")
zw_assert "every expectation reported as PASS ($n of $total)" test "$n" = "$total"

zw_log "wrong expectations fail, and only those"
cat >"$ZW_TMP/wrong.json" <<'EOF'
[
  {"name": "right-allow", "from": "web-1", "to": "db-1", "proto": "tcp", "port": 5432, "expect": "allow", "rule": "web-to-db-postgres"},
  {"name": "wrong-verdict", "from": "web-1", "to": "db-1", "proto": "tcp", "port": 5433, "expect": "allow"},
  {"name": "wrong-rule", "from": "db-1", "to": "web-1", "proto": "tcp", "port": 80, "expect": "deny", "rule": "default:inter_zone"},
  {"name": "right-deny-v6", "from": "web-1", "to": "admin-1", "proto": "icmpv6", "expect": "deny", "rule": "default:inter_zone"},
  {"name": "wrong-udp", "from": "web-1", "to": "db-1", "proto": "udp", "port": 53, "expect": "deny"},
  {"name": "right-office", "from": "fd70::c5", "to": "web-2", "proto": "tcp", "port": 8080, "expect": "allow", "rule": "office-to-web"}
]
EOF
rc=0
out=$(zwt --json test "$ZW_POLICY_LAB" --expectations "$ZW_TMP/wrong.json") || rc=$?
zw_assert "a failing expectation makes test exit 7 (got $rc)" test "$rc" = 7
failed=$(zw_json "[r['name'] for r in d['results'] if not r['pass']]" <<<"$out")
zw_assert "exactly the wrong ones fail ($failed)" test "$failed" = '["wrong-verdict", "wrong-rule", "wrong-udp"]'
why=$(zw_json "[r['message'] for r in d['results'] if r['name'] == 'wrong-rule'][0]" <<<"$out")
zw_assert "the failure names the deciding rule ($why)" test "$why" = "expected rule default:inter_zone, decided by deny-db-to-web (drop_policy at from-vm, rule deny-db-to-web)"
origin=$(zw_json "[r['origin'] for r in d['results'] if r['name'] == 'wrong-udp'][0]" <<<"$out")
zw_assert "the failure points at its expectation ($origin)" test "$origin" = "$ZW_TMP/wrong.json: /4"

zw_log "a broken expectations file is refused with file + pointer"
cat >"$ZW_TMP/broken.json" <<'EOF'
[
  {"from": "web-1", "to": "db-1", "proto": "tcp", "port": 70000, "expect": "allow"},
  {"from": "web-1", "proto": "udp", "port": 53, "expect": "perhaps"}
]
EOF
rc=0
zwt test "$ZW_POLICY_LAB" --expectations "$ZW_TMP/broken.json" >"$ZW_TMP/broken.out" 2>&1 || rc=$?
zw_assert "broken expectations: exit 3 (got $rc)" test "$rc" = 3
for want in "broken.json: /0/port: 70000 is not a port" "broken.json: /1/to: required field missing" \
	"broken.json: /1/expect: expected \"allow\" or \"deny\", got \"perhaps\""; do
	zw_assert "error names '$want'" grep -qF "$want" "$ZW_TMP/broken.out"
done

zw_log "a policy directory's tests/ is the default"
mkdir -p "$ZW_TMP/repo/tests"
cp "$ZW_POLICY_LAB" "$ZW_TMP/repo/policy.json"
cp "$ZW_SOURCE_DIR/policies/tests/lab.json" "$ZW_TMP/repo/tests/lab.json"
rc=0
zwt test "$ZW_TMP/repo" >"$ZW_TMP/repo.out" 2>&1 || rc=$?
zw_assert "zonewall test REPO finds REPO/tests and passes (exit $rc: $(tail -n 1 "$ZW_TMP/repo.out"))" test "$rc" = 0
rc=0
zwt test "$ZW_POLICY_LAB" >"$ZW_TMP/nofile.out" 2>&1 || rc=$?
zw_assert "a single policy file without --expectations: exit 3 (got $rc)" test "$rc" = 3

zw_log "nothing touched, nothing left"
zw_assert "the namespace's interfaces are untouched" test "$(ip -n "$NS" -o link show)" = "$links_before"
zw_assert "no private pin dir left in /sys/fs/bpf" test "$(private_dirs /sys/fs/bpf)" = "$pins_before"
zw_assert "no private state dir left in /tmp" test "$(private_dirs /tmp)" = "$states_before"

zw_summary
