#!/usr/bin/env bash
# A malicious guest (web-1) sends crafted frames (tests/e2e/evasion.py, scapy)
# at db-1: spoofed addresses and MACs, VLAN/QinQ tags, IPv4 fragments (tiny,
# overlapping), IPv6 fragment and extension headers, IPv4 options, TCP
# without a handshake, unrelated ICMP errors, ICMPv6 over IPv4, IPv4-mapped
# IPv6, unknown ethertypes, broadcast/multicast, ARP/NA spoofing, router
# advertisements and DHCP offers. A sniffer on db-1 records what arrives:
# nothing the policy forbids may, and the allowed controls must (so a blind
# sniffer cannot pass the test). Both from-VM attach modes, tc and XDP.
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EVASION=$ZW_E2E_DIR/evasion.py
"$ZW_PY" -c 'import scapy' 2>/dev/null || zw_skip "needs Debian's python3-scapy for $ZW_PY"

zw_setup
zw_serve db-1

mac() { ip -n "$(zw_ns "$1")" -o link show dev eth0 | sed -E 's/.*link\/ether ([0-9a-f:]+).*/\1/'; }
WEB_MAC=$(mac web-1)
DB_MAC=$(mac db-1)
ADMIN_MAC=$(mac admin-1)

# One round: start the sniffer in db-1, send every case from web-1 (twice),
# stop the sniffer, compare what arrived with what was sent. The sniffer is
# started with ip netns exec directly (not through a shell function), so $!
# is its own pid and SIGTERM reaches it.
round() {
	local mode=$1 tag=$2 sent seen out=$ZW_TMP/seen-$1.json ready=$ZW_TMP/sniff-$1.ready pid i
	ip netns exec "$(zw_ns db-1)" "$ZW_PY" "$EVASION" sniff --iface eth0 --out "$out" --ready "$ready" \
		--attacker-mac "$WEB_MAC" --other4 "$(zw_addr admin-1 4)" --other6 "$(zw_addr admin-1 6)" \
		>"$ZW_TMP/sniff-$mode.log" 2>&1 &
	pid=$!
	ZW_BG_PIDS+=("$pid")
	for ((i = 0; i < 100; i++)); do
		[[ -e $ready ]] && break
		sleep 0.1
	done
	[[ -e $ready ]] || zw_die "sniffer in db-1 did not start: $(cat "$ZW_TMP/sniff-$mode.log")"
	sent=$(zw_in web-1 "$ZW_PY" "$EVASION" send --iface eth0 --mac "$WEB_MAC" \
		--ip4 "$(zw_addr web-1 4)" --ip6 "$(zw_addr web-1 6)" --victim-mac "$DB_MAC" \
		--victim4 "$(zw_addr db-1 4)" --victim6 "$(zw_addr db-1 6)" \
		--other4 "$(zw_addr admin-1 4)" --other6 "$(zw_addr admin-1 6)" \
		--other-mac "$ADMIN_MAC" --tag "$tag") || zw_die "evasion.py send failed in web-1"
	sleep 1
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	[[ -s $out ]] || zw_die "sniffer wrote no result: $(cat "$ZW_TMP/sniff-$mode.log")"
	seen=$(cat "$out")
	zw_log "$mode: sent $(zw_json 'len(d)' <<<"$sent") cases; arrived: $seen"
	local leaked missing
	if [[ $mode == baseline ]]; then
		# Without zonewall the attack frames do reach the victim: the
		# test below would notice if they stopped arriving for another
		# reason (the bridge, the sniffer).
		missing=$(SEEN=$seen zw_json "sorted(set(d) - set(json.loads(__import__('os').environ['SEEN'])))" <<<"$sent")
		zw_assert "baseline without zonewall: every crafted case reaches db-1 (missing: $missing)" \
			test "$missing" = "[]"
		return
	fi
	leaked=$(SEEN=$seen zw_json "sorted(set(json.loads(__import__('os').environ['SEEN'])) & {n for n in d if not n.startswith('ok-')})" <<<"$sent")
	missing=$(SEEN=$seen zw_json "sorted({n for n in d if n.startswith('ok-')} - set(json.loads(__import__('os').environ['SEEN'])))" <<<"$sent")
	zw_assert "$mode: nothing the policy forbids reached db-1 (leaked: $leaked)" test "$leaked" = "[]"
	zw_assert "$mode: every allowed control reached db-1 (missing: $missing)" test "$missing" = "[]"
}

round baseline "base$$"
zw_apply "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory.json"
round tc "tc$$"

# What the datapath said about them: each class is counted under its reason.
stats=$(zw --json stats) || zw_die "zonewall --json stats failed"
for reason in drop_spoof_ip drop_spoof_mac drop_vlan drop_fragment drop_ipv6_ext drop_policy \
	drop_tcp_no_syn drop_icmp_unrelated drop_malformed drop_ethertype drop_spoof_arp drop_spoof_nd \
	drop_guest_ra drop_guest_dhcp; do
	n=$(R=$reason zw_json "d['reasons'][__import__('os').environ['R']]['packets']" <<<"$stats")
	zw_assert "stats: $reason counted the crafted frames (got $n)" zw_positive "$n"
done

zw_apply "$ZW_POLICY_LAB" --inventory "$ZW_TMP/inventory.json" --attach xdp
round xdp "xdp$$"

zw_assert "zonewall down exits 0" zw down
zw_assert_detached down
zw_summary
