#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, creates the
# lab (scripts/lab.sh, prefix zwdemo), applies policies/examples/lab.json and
# shows real traffic allowed and denied as the policy says, then status and
# stats, then tears everything down.
#
# VM identity comes from libvirt by default: the lab's VMs are written as a
# libvirt test-driver node file (scripts/lab.sh libvirt-xml) and zonewall
# reads it through test:///PATH, the driver running inside zonewall itself
# (no libvirtd). --static uses the static JSON inventory instead.
#
# Usage: scripts/demo.sh [--static] [--keep] [--no-setup] [--no-build]
#        scripts/demo.sh --down      tear down a demo left running by --keep
# Exits non-zero if any traffic did not behave as the policy says.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PREFIX=zwdemo
PIN_DIR=/sys/fs/bpf/zwdemo
WORK_DIR=/run/zwdemo
ZONEWALL=${ZONEWALL:-$ROOT/build/zonewall}
POLICY=$ROOT/policies/examples/lab.json
KEEP=0 SETUP=1 BUILD=1 STATIC=0

usage() {
	sed -n '/^# Usage:/,/^# Exits/p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# zonewall in the lab's host namespace (nsenter keeps /sys/fs/bpf visible).
zw() { nsenter --net="/run/netns/$PREFIX-host" "$ZONEWALL" --pin-dir "$PIN_DIR" "$@"; }

teardown() {
	if [[ -e /run/netns/$PREFIX-host && -d $PIN_DIR ]]; then
		zw down || echo "demo: zonewall down failed (continuing teardown)" >&2
	fi
	scripts/lab.sh down "$PREFIX"
	rm -rf "$PIN_DIR" "/run/zonewall-$(basename "$PIN_DIR")" "$WORK_DIR"
}

for arg in "$@"; do
	case $arg in
	--keep) KEEP=1 ;;
	--static) STATIC=1 ;;
	--no-setup) SETUP=0 ;;
	--no-build) BUILD=0 ;;
	--down)
		[[ $(id -u) -eq 0 ]] || { echo "demo: run as root" >&2; exit 1; }
		teardown
		echo "demo: torn down"
		exit 0
		;;
	*) usage ;;
	esac
done

if [[ $(id -u) -ne 0 ]]; then
	echo "demo: run as root: it creates network namespaces and loads BPF programs (sudo $0)" >&2
	exit 1
fi

if [[ -t 1 ]]; then
	B=$'\e[1m' R=$'\e[1;31m' G=$'\e[32m' D=$'\e[2m' O=$'\e[0m'
else
	B="" R="" G="" D="" O=""
fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$O"; }

on_exit() {
	local rc=$?
	set +e
	if ((KEEP)) && [[ -e /run/netns/$PREFIX-host ]]; then
		return
	fi
	teardown >/dev/null 2>&1
	((rc == 0)) || echo "${R}demo: failed (exit $rc); lab torn down${O}" >&2
}

if ((SETUP)); then
	step "Installing what is missing (scripts/setup.sh)"
	if [[ -f scripts/setup.sh ]]; then bash scripts/setup.sh; else echo "(no scripts/setup.sh yet; skipping)"; fi
fi
if ((BUILD)); then
	step "Building (cmake -S . -B build && cmake --build build -j2)"
	cmake -S . -B build >/dev/null
	cmake --build build -j2
fi
[[ -x $ZONEWALL ]] || { echo "demo: no zonewall binary at $ZONEWALL" >&2; exit 1; }

# A demo left behind by --keep or a crash is replaced, not stacked.
if [[ -e /run/netns/$PREFIX-host || -d $PIN_DIR ]]; then
	echo "demo: removing a previous demo lab"
	teardown
fi
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "Creating the lab: network namespaces as VMs on one bridge (scripts/lab.sh up $PREFIX)"
scripts/lab.sh up "$PREFIX"
mkdir -p "$WORK_DIR"
if ((STATIC)); then
	scripts/lab.sh inventory "$PREFIX" >"$WORK_DIR/inventory.json"
	IDENTITY=(--inventory "$WORK_DIR/inventory.json")
	IDENTITY_SAYS="static inventory $WORK_DIR/inventory.json (scripts/lab.sh inventory $PREFIX)"
	ADMIN_ZONE="zone admin (name glob admin-*)"
else
	scripts/lab.sh libvirt-xml "$PREFIX" >"$WORK_DIR/node.xml"
	IDENTITY=(--libvirt "test://$WORK_DIR/node.xml")
	IDENTITY_SAYS="libvirt, test driver test://$WORK_DIR/node.xml (in-process, no libvirtd; scripts/lab.sh libvirt-xml $PREFIX)"
	ADMIN_ZONE="zone admin (name glob admin-*, and its libvirt metadata zone tag)"
fi
cat <<EOF
  $PREFIX-host     bridge ${PREFIX}br; zonewall runs here, on the host side of each veth
  web-1   10.70.0.11  fd70::11   (${PREFIX}w1)   zone web   (name glob web-*)
  web-2   10.70.0.12  fd70::12   (${PREFIX}w2)   zone web   (name glob web-*)
  db-1    10.70.0.21  fd70::21   (${PREFIX}d1)   zone db    (name glob db-*)
  admin-1 10.70.0.31  fd70::31   (${PREFIX}a1)   $ADMIN_ZONE
  ext-1   10.70.0.200 fd70::c8   (${PREFIX}x1)   not a managed VM: an outside host in zone office (CIDR)
EOF
printf '%sVM identity (names, UUIDs, interfaces, MACs, addresses, zone tags) comes from: %s%s\n' "$B" "$IDENTITY_SAYS" "$O"

# Probes and listeners are the e2e tests' own (tests/e2e/lib.sh, netprobe.py).
# shellcheck source=tests/e2e/lib.sh
source "$ROOT/tests/e2e/lib.sh"
ZW_PREFIX=$PREFIX ZW_HOSTNS=$PREFIX-host ZW_PIN_DIR=$PIN_DIR ZW_TMP=$WORK_DIR ZW_TEST_NAME=demo
zw_serve web-1 web-2 db-1 admin-1 ext-1
echo "  listeners: tcp $ZW_TCP_PORTS, udp $ZW_UDP_PORTS in every namespace"

step "The policy (policies/examples/lab.json): check it against the VMs (${IDENTITY[*]})"
zw check "$POLICY" "${IDENTITY[@]}"

step "Applying it: zonewall apply policies/examples/lab.json ${IDENTITY[*]} (tc mode)"
zw apply "$POLICY" "${IDENTITY[@]}"

step "Real traffic, judged by the datapath"
MISMATCHES=0
# show EXPECT SRC DST PROTO[/PORT] FAMILY WHY
show() {
	local want=$1 src=$2 dst=$3 what=$4 fam=$5 why=$6 rc=0 got label
	zw_probe "$src" "$dst" "$what" "$fam" || rc=$?
	case $rc in
	0) got=ALLOWED ;;
	1) got=DENIED ;;
	*) got="REFUSED (an answer, not a drop: $ZW_PROBE_OUT)" ;;
	esac
	label=$what
	[[ $what != icmp ]] || label="icmp echo"
	if [[ $got == "$want" ]]; then
		printf '  %s✔%s %-9s → %-8s %-10s IPv%s  %-8s %s(%s)%s\n' "$G" "$O" "$src" "$dst" "$label" "$fam" "$got" "$D" "$why" "$O"
	else
		MISMATCHES=$((MISMATCHES + 1))
		printf '  %s✘ MISMATCH: %s → %s %s IPv%s: policy says %s (%s), traffic was %s%s\n' \
			"$R" "$src" "$dst" "$label" "$fam" "$want" "$why" "$got" "$O"
	fi
}
show ALLOWED web-1 db-1 tcp/5432 4 "rule web-to-db-postgres"
show ALLOWED web-1 db-1 tcp/5432 6 "rule web-to-db-postgres"
show ALLOWED web-1 db-1 udp/53 4 "rule web-to-db-dns, the answer comes back"
show DENIED web-1 db-1 tcp/5433 4 "default inter_zone deny"
show DENIED db-1 web-1 tcp/80 4 "rule deny-db-to-web"
show ALLOWED admin-1 db-1 tcp/22 4 "rule admin-ssh"
show ALLOWED admin-1 web-1 icmp 4 "rule admin-ping"
show ALLOWED admin-1 web-1 icmp 6 "rule admin-ping6"
show DENIED web-1 admin-1 icmp 4 "default inter_zone deny"
show ALLOWED web-1 web-2 tcp/80 6 "default intra_zone allow"
show ALLOWED ext-1 web-1 tcp/8080 4 "rule office-to-web"
show DENIED ext-1 db-1 tcp/5432 4 "default inter_zone deny"
show DENIED web-1 ext-1 tcp/80 4 "default inter_zone deny: web only answers office"

step "zonewall status"
zw status
step "zonewall stats"
zw stats

if ((MISMATCHES)); then
	printf '\n%s!!! %d result(s) did not match the policy: see the ✘ lines above !!!%s\n' "$R" "$MISMATCHES" "$O" >&2
else
	printf '\n%sEvery result matched the policy.%s\n' "$B" "$O"
fi

if ((KEEP)); then
	cat <<EOF

The lab is still up (--keep). Try, for example:
  ip netns exec $PREFIX-web-1 nc -z -v -w1 10.70.0.21 5432
  nsenter --net=/run/netns/$PREFIX-host $ZONEWALL --pin-dir $PIN_DIR stats
Tear it down with:
  $ROOT/scripts/demo.sh --down
EOF
else
	step "Tearing down (zonewall down, scripts/lab.sh down $PREFIX)"
	teardown
	echo "done"
fi
((MISMATCHES == 0))
