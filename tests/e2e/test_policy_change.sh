#!/usr/bin/env bash
# Policy changes on a live flow: an established web-1 -> db-1 tcp/5432
# session keeps working through an invalid apply (exit 3, old policy stays),
# stops getting replies within 1 s once a policy without web-to-db-postgres
# is applied (revoked rules re-judge established flows), and a new connection
# works again after lab.json is re-applied.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stop_session() {
	kill -TERM "$SESSION_PID" 2>/dev/null || true
	wait "$SESSION_PID" 2>/dev/null || true
}

# Number of replies the session got after wall-clock time $2.
sends_after() { awk -v t="$2" '$1 == "sent" && $3 > t { n++ } END { print n + 0 }' "$1"; }
last_ok() { awk '$1 == "ok" { t = $3 } END { printf "%.3f", t }' "$1"; }
now() { date +%s.%N; }
# $1 + $2 seconds, for awk comparisons.
plus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a + b }'; }

SESSION_PID=""
zw_setup
zw_serve db-1

# The revoking policy: lab.json without rule web-to-db-postgres.
"$ZW_PY" - "$ZW_POLICY_LAB" "$ZW_TMP/no-postgres.json" <<'EOF' || zw_die "could not derive the policy without web-to-db-postgres"
import json, sys
p = json.load(open(sys.argv[1]))
before = len(p["rules"])
p["rules"] = [r for r in p["rules"] if r.get("name") != "web-to-db-postgres"]
if len(p["rules"]) != before - 1:
    sys.exit("lab.json has no rule named web-to-db-postgres")
json.dump(p, open(sys.argv[2], "w"), indent=2)
EOF
# Two invalid policies: broken JSON, and valid JSON with an impossible port.
head -c 200 "$ZW_POLICY_LAB" >"$ZW_TMP/invalid-syntax.json"
"$ZW_PY" - "$ZW_POLICY_LAB" "$ZW_TMP/invalid-port.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
r = next(r for r in p["rules"] if r.get("name") == "web-to-db-postgres")
r["ports"] = [70000]
json.dump(p, open(sys.argv[2], "w"), indent=2)
EOF

zw_apply "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory.json"
gen0=$(zw --json status | zw_json "d['active_generation']")

zw_log "established session web-1 → db-1 tcp/5432 under lab.json"
log1=$ZW_TMP/session1.log
zw_start_session "$log1" || zw_die "tcp session web-1 → db-1:5432 did not get going under lab.json"
zw_pass "session web-1 → db-1 tcp/5432 exchanges lines under lab.json"

zw_log "invalid policies are refused with exit 3 and change nothing"
for bad in invalid-syntax invalid-port; do
	rc=0
	zw apply "$ZW_TMP/$bad.json" --inventory "$ZW_TMP/inventory.json" >"$ZW_TMP/$bad.out" 2>&1 || rc=$?
	zw_assert "apply $bad.json exits 3 (got $rc)" test "$rc" = 3
	zw_assert "apply $bad.json names the file in its error: $(head -c 300 "$ZW_TMP/$bad.out")" \
		grep -q "$bad.json" "$ZW_TMP/$bad.out"
done
gen1=$(zw --json status | zw_json "d['active_generation']")
zw_assert "active generation unchanged by the invalid applies ($gen0 → $gen1)" test "$gen0" = "$gen1"
t=$(now)
sleep 0.5
n=$(zw_session_oks_after "$log1" "$t")
zw_assert "established session still gets replies after the invalid applies ($n in 0.5 s)" test "$n" -ge 3
expect_allow web-1 db-1 tcp/5432 4
expect_deny web-1 db-1 tcp/5433 4

zw_log "revoke: apply lab.json without web-to-db-postgres"
drops0=$(zw --json stats | zw_json "d['reasons']['drop_revoked']['packets'] + d['reasons']['drop_policy']['packets']")
n=$(zw_session_oks_after "$log1" "$(plus "$(now)" -1)")
zw_assert "session healthy just before the change ($n replies in the last second)" test "$n" -ge 5
t_start=$(now)
zw_apply "$ZW_TMP/no-postgres.json" --inventory "$ZW_TMP/inventory.json"
t_applied=$(now)
sleep 2.5
t_end=$(now)
late=$(zw_session_oks_after "$log1" "$(plus "$t_applied" 1.0)")
last=$(last_ok "$log1")
sent=$(sends_after "$log1" "$(plus "$t_applied" 1.0)")
zw_log "apply took $(plus "$t_applied" "-$t_start") s; last reply $(plus "$last" "-$t_applied") s after it returned"
zw_assert "established session gets no reply later than 1 s after the revoking apply ($late late replies)" test "$late" = 0
zw_assert "the session kept sending during the check ($sent requests after apply+1s)" test "$sent" -ge 5
if kill -0 "$SESSION_PID" 2>/dev/null; then
	zw_pass "session client still alive (its packets were dropped, not reset)"
else
	zw_fail "session client exited: $(tail -n 3 "$log1")"
fi
drops1=$(zw --json stats | zw_json "d['reasons']['drop_revoked']['packets'] + d['reasons']['drop_policy']['packets']")
zw_assert "stats: the revoked flow's packets were counted as drops ($drops0 → $drops1)" test "$drops1" -gt "$drops0"
zw_log "drop_revoked: $(zw --json stats | zw_json "d['reasons']['drop_revoked']['packets']"), window $(plus "$t_end" "-$t_applied") s"
expect_deny web-1 db-1 tcp/5432 4
stop_session

zw_log "re-apply lab.json: new connections work again"
zw_apply "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory.json"
expect_allow web-1 db-1 tcp/5432
log2=$ZW_TMP/session2.log
if zw_start_session "$log2"; then
	zw_pass "new session web-1 → db-1 tcp/5432 exchanges lines after re-applying lab.json"
else
	zw_fail "new session web-1 → db-1 tcp/5432 got no replies after re-applying lab.json"
fi
stop_session

zw_assert "zonewall down exits 0" zw down
zw_assert_detached down

zw_summary
