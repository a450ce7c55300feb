#!/usr/bin/env bash
# The zonewall lab: network namespaces standing in for VMs on one host, for
# the e2e tests, the demo and hand experiments. Topology only; it never runs
# zonewall itself (see tests/e2e/lib.sh and scripts/demo.sh for that).
#
#   PREFIX-host      bridge SHORTbr, IPv6 off; the host side of every veth
#   PREFIX-web-1     eth0 52:54:00:70:00:11  10.70.0.11   fd70::11   <- SHORTw1
#   PREFIX-web-2     eth0 52:54:00:70:00:12  10.70.0.12   fd70::12   <- SHORTw2
#   PREFIX-db-1      eth0 52:54:00:70:00:21  10.70.0.21   fd70::21   <- SHORTd1
#   PREFIX-admin-1   eth0 52:54:00:70:00:31  10.70.0.31   fd70::31   <- SHORTa1
#   PREFIX-ext-1     eth0 52:54:00:70:00:c8  10.70.0.200  fd70::c8   <- SHORTx1 (not managed)
#
# SHORT is PREFIX without non-alphanumerics, cut to 11 characters, so every
# interface name stays within IFNAMSIZ-1 (15). The VM-side addresses are
# 10.70.0.0/24 and fd70::/64; ext-1 sits in the policy's "office" CIDRs.
#
# Usage: lab.sh up PREFIX | down PREFIX | inventory PREFIX [tc|xdp]
#        lab.sh libvirt-xml PREFIX    (libvirt test-driver node XML: the 4 VMs as running domains;
#                                      ZONE_TAG_OVERRIDES="db-1=zone admin-1=" changes zone tags)
#        lab.sh ns PREFIX NAME        (prints the namespace name of host, web-1, ...)
#        lab.sh ifname PREFIX NAME    (prints the host-side interface of a VM)
#        lab.sh exec PREFIX NAME CMD...
set -euo pipefail

# name tag mac-suffix ipv4 ipv6 managed
# (libvirt-xml adds, for managed nodes, a fixed UUID and, for admin-1, a
# zonewall metadata zone tag: see LAB_UUIDS and LAB_ZONE_TAGS below.)
readonly LAB_NODES=(
	"web-1   w1 11 10.70.0.11  fd70::11 yes"
	"web-2   w2 12 10.70.0.12  fd70::12 yes"
	"db-1    d1 21 10.70.0.21  fd70::21 yes"
	"admin-1 a1 31 10.70.0.31  fd70::31 yes"
	"ext-1   x1 c8 10.70.0.200 fd70::c8 no"
)

# libvirt-xml: a fixed UUID per managed VM, so a node file is the same every
# time and a UUID-matched zone could name them.
declare -rA LAB_UUIDS=(
	[web-1]=7a0e0011-5eb1-4c70-9a00-000000000011
	[web-2]=7a0e0012-5eb2-4c70-9a00-000000000012
	[db-1]=7a0e0021-db01-4c70-9a00-000000000021
	[admin-1]=7a0e0031-ad01-4c70-9a00-000000000031
)
# Zone tags in the domains' zonewall metadata. lab.json zones web-1, web-2 and
# db-1 by name glob only; admin-1 also carries the tag "admin", the zone its
# name glob gives it too (same zone twice is not a conflict), so both ways a
# libvirt domain gets its zone are exercised by the same policy.
declare -rA LAB_ZONE_TAGS=(
	[admin-1]=admin
)

die() {
	echo "lab.sh: $*" >&2
	exit 2
}

usage() {
	sed -n '/^# Usage:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

check_prefix() {
	local p=$1
	[[ $p =~ ^[A-Za-z0-9][A-Za-z0-9-]{0,19}$ ]] ||
		die "bad PREFIX '$p': 1-20 characters, letters, digits and '-', not starting with '-'"
}

short_of() {
	local s=${1//[^A-Za-z0-9]/}
	printf '%s' "${s:0:11}"
}

ns_of() { printf '%s-%s' "$1" "$2"; }

# Host-side interface name of a node, e.g. zw1234w1.
ifname_of() {
	local prefix=$1 name=$2 node n tag
	for node in "${LAB_NODES[@]}"; do
		read -r n tag _ <<<"$node"
		if [[ $n == "$name" ]]; then
			printf '%s%s' "$(short_of "$prefix")" "$tag"
			return 0
		fi
	done
	die "no lab node '$name'"
}

sysctl_ns() {
	local ns=$1
	shift
	ip netns exec "$ns" sysctl -qw "$@" >/dev/null
}

lab_down() {
	local prefix=$1 name ns pids
	for name in ext-1 admin-1 db-1 web-2 web-1 host; do
		ns=$(ns_of "$prefix" "$name")
		[[ -e /run/netns/$ns ]] || continue
		# Processes our tests left in the lab (listeners, clients) would keep
		# the namespace alive after `ip netns del`; they are ours, end them.
		pids=$(ip netns pids "$ns" 2>/dev/null || true)
		if [[ -n $pids ]]; then
			# shellcheck disable=SC2086 # one pid per word
			kill -TERM $pids 2>/dev/null || true
			sleep 0.2
			pids=$(ip netns pids "$ns" 2>/dev/null || true)
			# shellcheck disable=SC2086
			[[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
		fi
		ip netns del "$ns" 2>/dev/null || true
	done
	return 0
}

up_failed() {
	local rc=$?
	echo "lab.sh: setting up lab '$LAB_UP_PREFIX' failed, removing what was made" >&2
	lab_down "$LAB_UP_PREFIX"
	exit "$rc"
}

lab_up() {
	local prefix=$1 short host br node name tag mac v4 v6 managed ns hif
	short=$(short_of "$prefix")
	host=$(ns_of "$prefix" host)
	br="${short}br"
	[[ ! -e /run/netns/$host ]] ||
		die "lab '$prefix' already exists (run: $0 down $prefix)"
	# Any failure half way leaves nothing behind.
	LAB_UP_PREFIX=$prefix
	trap up_failed ERR

	ip netns add "$host"
	ip -n "$host" link set lo up
	# The host namespace only bridges: no IPv6 on the bridge or its ports, so
	# no link-local addresses, router solicitations or MLD reports of its own.
	sysctl_ns "$host" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	# No multicast snooping: NDP to solicited-node groups is flooded, whatever
	# MLD reports the datapath lets through; no STP: ports forward at once.
	ip -n "$host" link add "$br" type bridge stp_state 0 mcast_snooping 0
	ip -n "$host" link set "$br" up

	for node in "${LAB_NODES[@]}"; do
		read -r name tag mac v4 v6 managed <<<"$node"
		: "$managed"
		ns=$(ns_of "$prefix" "$name")
		hif="${short}${tag}"
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		# Set before eth0 exists so it inherits them: addresses usable at once
		# (no DAD, also for the link-local), no RA processing, no RS chatter.
		sysctl_ns "$ns" net.ipv6.conf.default.accept_dad=0 \
			net.ipv6.conf.default.accept_ra=0 \
			net.ipv6.conf.default.router_solicitations=0 \
			net.ipv6.conf.all.accept_ra=0
		ip -n "$host" link add "$hif" type veth peer name eth0 netns "$ns" \
			address "52:54:00:70:00:$mac"
		ip -n "$host" link set "$hif" master "$br"
		ip -n "$host" link set "$hif" up
		ip -n "$ns" addr add "$v4/24" dev eth0
		ip -n "$ns" addr add "$v6/64" dev eth0 nodad
		ip -n "$ns" link set eth0 up
	done
	trap - ERR
}

lab_inventory() {
	local prefix=$1 attach=${2:-} short node name tag mac v4 v6 managed sep="" attach_kv=""
	short=$(short_of "$prefix")
	case $attach in
	"") ;;
	tc | xdp) attach_kv=", \"attach\": \"$attach\"" ;;
	*) die "attach mode must be tc or xdp, not '$attach'" ;;
	esac
	printf '{"vms": [\n'
	for node in "${LAB_NODES[@]}"; do
		read -r name tag mac v4 v6 managed <<<"$node"
		[[ $managed == yes ]] || continue
		printf '%s  {"name": "%s", "interfaces": [{"name": "%s", "mac": "52:54:00:70:00:%s", "ips": ["%s", "%s"]%s}]}' \
			"$sep" "$name" "${short}${tag}" "$mac" "$v4" "$v6" "$attach_kv"
		sep=$',\n'
	done
	printf '\n]}\n'
}

# A libvirt test-driver node (test:///ABSOLUTE/PATH/node.xml) describing the
# managed VMs as running domains: one <interface type='ethernet'> each, whose
# <target dev> is the host-side veth, with the VM's MAC and addresses.
# ZONE_TAG_OVERRIDES ("name=zone ...", optional) replaces or adds zone tags:
# the e2e tests use it to write node files with a wrong tag.
lab_libvirt_xml() {
	local prefix=$1 short node name tag mac v4 v6 managed zone
	local -A tags=()
	short=$(short_of "$prefix")
	for name in "${!LAB_ZONE_TAGS[@]}"; do tags[$name]=${LAB_ZONE_TAGS[$name]}; done
	for node in ${ZONE_TAG_OVERRIDES:-}; do
		[[ $node == ?*=* ]] || die "ZONE_TAG_OVERRIDES: '$node' is not name=zone"
		tags[${node%%=*}]=${node#*=}
	done
	printf '%s\n' "<!-- zonewall lab '$prefix' for the libvirt test driver (scripts/lab.sh libvirt-xml $prefix):" \
		"     use as test:///ABSOLUTE/PATH/TO/THIS/FILE; every domain is running. -->" "<node>"
	for node in "${LAB_NODES[@]}"; do
		read -r name tag mac v4 v6 managed <<<"$node"
		[[ $managed == yes ]] || continue
		printf "  <domain type='test'>\n    <name>%s</name>\n    <uuid>%s</uuid>\n" "$name" "${LAB_UUIDS[$name]}"
		printf "    <memory>65536</memory>\n    <os><type>hvm</type></os>\n"
		zone=${tags[$name]:-}
		if [[ -n $zone ]]; then
			printf '    <metadata>\n      <zonewall:vm xmlns:zonewall="http://zonewall.org/xmlns/libvirt/1.0">\n'
			printf '        <zonewall:zone>%s</zonewall:zone>\n      </zonewall:vm>\n    </metadata>\n' "$zone"
		fi
		printf "    <devices>\n      <interface type='ethernet'>\n"
		printf "        <mac address='52:54:00:70:00:%s'/>\n" "$mac"
		printf "        <target dev='%s'/>\n" "${short}${tag}"
		printf "        <ip address='%s' prefix='24'/>\n" "$v4"
		printf "        <ip address='%s' prefix='64'/>\n" "$v6"
		printf "      </interface>\n    </devices>\n  </domain>\n"
	done
	printf '</node>\n'
}

main() {
	[[ $# -ge 2 ]] || usage
	local cmd=$1 prefix=$2
	check_prefix "$prefix"
	shift 2
	case $cmd in
	up)
		[[ $(id -u) -eq 0 ]] || die "must run as root"
		lab_up "$prefix"
		;;
	down)
		[[ $(id -u) -eq 0 ]] || die "must run as root"
		lab_down "$prefix"
		;;
	inventory) lab_inventory "$prefix" "$@" ;;
	libvirt-xml)
		[[ $# -eq 0 ]] || usage
		lab_libvirt_xml "$prefix"
		;;
	ns)
		[[ $# -eq 1 ]] || usage
		[[ $1 == host ]] || ifname_of "$prefix" "$1" >/dev/null
		ns_of "$prefix" "$1"
		echo
		;;
	ifname)
		[[ $# -eq 1 ]] || usage
		ifname_of "$prefix" "$1"
		echo
		;;
	exec)
		[[ $# -ge 2 ]] || usage
		local name=$1
		shift
		exec ip netns exec "$(ns_of "$prefix" "$name")" "$@"
		;;
	*) usage ;;
	esac
}

main "$@"
