#!/usr/bin/env bash
# zonewall with real VMs: libvirtd + QEMU (TCG, no KVM needed) boot three
# busybox guests (scripts/vm/build-guest.sh) on an isolated bridge, their zones
# from libvirt (web-1 and db-1 by name glob, ops-1 only by its zonewall
# metadata tag), with `zonewall daemon --libvirt qemu:///system` started
# before them. Each guest probes the others for ever from its /init and
# prints every result on its serial console; the test reads those files.
#
# Checks:
#  a. every probe the policy denies fails, every time, from the first one the
#     guest sent after boot (the whole console, not just the last round), and
#     is a silent drop once the target is up; every allowed probe succeeds;
#  b. status: the three taps enforced, each VM in its zone with the
#     addresses its zonewall metadata declares; stats: every
#     packet judged is counted for an endpoint, except drop_no_endpoint;
#  c. `virsh destroy` + `virsh start` of web-1: its new tap is enforced by
#     zone again, and no denied probe from or to it ever succeeds meanwhile;
#  d. libvirtd restarts (when the test started it): the daemon reconnects,
#     every VM stays enforced, and a domain defined and undefined through
#     the new libvirtd enters and leaves its state (events flow again); then
#     SIGTERM stops the daemon (exit 0) and enforcement stays;
#  e. after `zonewall down` a probe the policy denied gets through (so the
#     drops were zonewall's) and no tc filter is left on the taps.
# At every start (a, c) each VM's tap, created by libvirt, is admitted as a
# starting VM's (the domain was defined, not running, at the last apply):
# its endpoint written < 10 ms after the daemon's tap thread saw the tap,
# before libvirt's STARTED event, and the reconcile that reads the VM
# running finds that admission exactly right; no packet on a new tap meets
# the fail-closed hook without an endpoint (drop_no_endpoint stays 0).
#  f. web-2, whose config names no tap (libvirt names it, vnetN: no tap
#     pattern of the daemon matches it), started paused: its tap is hooked
#     and admitted by the MAC libvirt gives it, < 10 ms after the daemon saw
#     it and before STARTED, confirmed by the reconcile, enforced in zone web.
# Prints MEASURED: lines: tap created -> hooked -> admitted -> reconciled per
# VM, and virsh start -> first allowed probe answered.
# ZW_VM_EXTRA_DOMAINS=N defines N more domains (never started, each naming
# its own tap, with an address in its metadata) before the daemon starts,
# so that libvirt lists N+4 domains at every reconcile: the admission, not
# the reconcile, is what enforces a starting VM's tap on such a host.
#
# Needs root, libvirtd/virtlogd (libvirt-daemon-driver-qemu), qemu-system-x86,
# /dev/net/tun, bpffs and the guest image (built if missing: apt-get download).
# If no libvirtd runs, it starts virtlogd and libvirtd (-d) with
# /etc/libvirt/qemu.conf set to security_driver "none", user/group root (the
# original file is restored afterwards) and creates the system user
# libvirt-qemu if missing (libvirt needs it to exist; removed afterwards).
# Environment: ZONEWALL, ZW_SOURCE_DIR, ZW_VM_IMAGE_DIR (default
# build/vm next to the binary's build dir), CI / ZW_REQUIRE_PRIVILEGED (a
# skip is a failure), ZW_VM_KEEP_LOGS=1 (keep the logs directory on success).
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../e2e/lib.sh"

URI=qemu:///system
ZW_VM_IMAGE_DIR=${ZW_VM_IMAGE_DIR:-$(dirname "$ZONEWALL")/vm}
ID=$(($$ % 100000))
PFX=zwvm$ID             # domain names: zwvm<ID>-web-1 ...
BR=zwvbr$ID             # the isolated bridge
TAPPFX=zwv$ID           # taps: zwv<ID>w1 ...; the daemon hooks zwv<ID>*
VMS=(web-1 db-1 ops-1)
declare -A TAG=([web-1]=w1 [db-1]=d1 [ops-1]=o1)
declare -A MAC=([web-1]=52:54:00:80:00:11 [db-1]=52:54:00:80:00:21 [ops-1]=52:54:00:80:00:31)
declare -A IP4=([web-1]=10.80.0.11 [db-1]=10.80.0.21 [ops-1]=10.80.0.31)
declare -A IP6=([web-1]=fd80::11 [db-1]=fd80::21 [ops-1]=fd80::31)
declare -A ZONE=([web-1]=web [db-1]=db [ops-1]=admin)

# What each guest probes, and what the policy says: SRC PROTO DST FAMILY PORT EXPECT.
PROBES=(
	"web-1 tcp db-1 4 5432 allow"
	"web-1 tcp db-1 6 5432 allow"
	"web-1 tcp db-1 4 80 deny"
	"web-1 icmp ops-1 4 - deny"
	"web-1 icmp ops-1 6 - deny"
	"db-1 tcp web-1 4 80 deny"
	"db-1 tcp web-1 6 80 deny"
	"db-1 icmp web-1 4 - deny"
	"ops-1 icmp web-1 4 - allow"
	"ops-1 icmp web-1 6 - allow"
	"ops-1 icmp db-1 4 - allow"
	"ops-1 tcp web-1 4 80 deny"
)

T=""
PIN=/sys/fs/bpf/zw-vm-$$
STATE=/run/zonewall-zw-vm-$$
DAEMON_PID=""
STARTED_LIBVIRTD=""
STARTED_VIRTLOGD=""
QEMU_CONF=/etc/libvirt/qemu.conf
QEMU_CONF_SAVED=""   # "absent" or the path of the saved copy
CREATED_USER=""
CREATED_LOGDIR=""
BG_PIDFILES=()
DEFINED=()
EXTRA=${ZW_VM_EXTRA_DOMAINS:-0}
EXTRA_DEFINED=0         # how many of the extra domains exist (removed in one virsh batch)
DOWN_DONE=0

dom() { printf '%s-%s' "$PFX" "$1"; }
tap() { printf '%s%s' "$TAPPFX" "${TAG[$1]}"; }
v() { virsh -q -c "$URI" "$@"; }
zwc() { "$ZONEWALL" --pin-dir "$PIN" --state-dir "$STATE" "$@"; }
now() { printf '%s' "$EPOCHREALTIME"; }
# Prefixes each line of stdin with the host's wall clock (seconds, µs).
stamp() { while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }
# Runs CMD... in the background, stdout+stderr stamped into FILE; the pid of
# CMD itself goes to FILE.pid (and is stopped at cleanup).
bg_stamped() {
	local file=$1
	shift
	( echo "$BASHPID" >"$file.pid"; exec "$@" 2>&1 ) | stamp >"$file" &
	BG_PIDFILES+=("$file.pid")
	local i
	for ((i = 0; i < 50; i++)); do [[ -s $file.pid ]] && break; sleep 0.02; done
}

vm_cleanup() {
	local rc=$? f pid i d
	trap - EXIT INT TERM HUP
	set +e
	if ((rc != 0 && rc != 77 && ZW_SUMMARY_DONE == 0)); then
		printf '%s\n' "${ZW_RED}== $ZW_TEST_NAME: FAIL (stopped early, exit $rc; $ZW_PASSED checks passed before) ==${ZW_OFF}" >&2
	fi
	if ((rc != 0)) && [[ -d $PIN ]]; then
		echo "---- zonewall status / stats at failure ----" >&2
		zwc status >&2 2>&1
		zwc stats >&2 2>&1
		echo "--------------------------------------------" >&2
	fi
	if ((EXTRA_DEFINED > 0)); then
		for ((i = 0; i < EXTRA_DEFINED; i++)); do echo "undefine $PFX-web-x$i"; done >"$T/extra-undefine.cmds"
		virsh -q -c "$URI" <"$T/extra-undefine.cmds" >/dev/null 2>&1 || echo "cleanup: some extra domains could not be undefined" >&2
	fi
	for d in "${DEFINED[@]}"; do
		v destroy "$d" >/dev/null 2>&1
		[[ -z $T || ! -r /var/log/libvirt/qemu/$d.log ]] || cp "/var/log/libvirt/qemu/$d.log" "$T/"
		v undefine "$d" >/dev/null 2>&1 || echo "cleanup: could not undefine domain $d" >&2
		rm -f "/var/log/libvirt/qemu/$d.log"
	done
	if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID"
		for ((i = 0; i < 50; i++)); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$DAEMON_PID" 2>/dev/null && echo "cleanup: the daemon ignored SIGTERM for 5 s, killed" >&2
	fi
	for f in "${BG_PIDFILES[@]}"; do
		pid=$(cat "$f" 2>/dev/null) && [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
	done
	if ((DOWN_DONE == 0)) && [[ -d $PIN ]]; then
		zwc down >/dev/null 2>"$T/cleanup-down.err" || { echo "cleanup: zonewall down failed:" >&2; cat "$T/cleanup-down.err" >&2; }
	fi
	rm -rf "$PIN" "$STATE"
	ip link show "$BR" >/dev/null 2>&1 && ip link del "$BR"
	if [[ -n $STARTED_LIBVIRTD ]]; then
		kill -TERM "$STARTED_LIBVIRTD" 2>/dev/null
		for ((i = 0; i < 100; i++)); do kill -0 "$STARTED_LIBVIRTD" 2>/dev/null || break; sleep 0.1; done
	fi
	if [[ -n $STARTED_VIRTLOGD ]]; then
		kill -TERM "$STARTED_VIRTLOGD" 2>/dev/null
		for ((i = 0; i < 50; i++)); do kill -0 "$STARTED_VIRTLOGD" 2>/dev/null || break; sleep 0.1; done
	fi
	if [[ $QEMU_CONF_SAVED == absent ]]; then
		rm -f "$QEMU_CONF"
	elif [[ -n $QEMU_CONF_SAVED ]]; then
		mv -f "$QEMU_CONF_SAVED" "$QEMU_CONF"
	fi
	[[ -z $CREATED_USER ]] || userdel "$CREATED_USER" 2>/dev/null || echo "cleanup: could not remove user $CREATED_USER" >&2
	[[ -z $CREATED_LOGDIR ]] || rm -rf "$CREATED_LOGDIR"
	if [[ -n $T && -d $T ]]; then
		if ((rc != 0)) || [[ ${ZW_VM_KEEP_LOGS:-} == 1 ]]; then
			echo "logs kept in $T" >&2
		else
			rm -rf "$T"
		fi
	fi
	exit "$rc"
}

# ---------------------------------------------------------------- preflight
[[ $(id -u) -eq 0 ]] || zw_skip "needs root (libvirtd, taps, bpffs, tc)"
for tool in virsh libvirtd virtlogd qemu-system-x86_64 ip tc "$ZW_PY"; do
	command -v "$tool" >/dev/null || zw_skip "needs '$tool' (scripts/test-vms.sh installs it)"
done
[[ -c /dev/net/tun ]] || zw_skip "no /dev/net/tun"
[[ -d /sys/fs/bpf ]] || zw_skip "no /sys/fs/bpf (bpffs)"
[[ -x $ZONEWALL ]] || zw_die "zonewall binary not found: '$ZONEWALL' (build it, or set ZONEWALL)"
ip link show "$BR" >/dev/null 2>&1 && zw_die "bridge $BR exists already"

T=$(mktemp -d /tmp/zw-vm.XXXXXX)
trap vm_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
zw_log "run $ID: domains $PFX-*, bridge $BR, taps $TAPPFX*, pin dir $PIN, logs $T"

"$ZW_SOURCE_DIR/scripts/vm/build-guest.sh" "$ZW_VM_IMAGE_DIR" >"$T/build-guest.log" 2>&1 ||
	zw_die "scripts/vm/build-guest.sh $ZW_VM_IMAGE_DIR failed: $(tail -5 "$T/build-guest.log")"
KERNEL=$ZW_VM_IMAGE_DIR/vmlinuz
INITRD=$ZW_VM_IMAGE_DIR/initrd.img
zw_log "guest: $(tail -1 "$T/build-guest.log")"

# ---------------------------------------------------------------- libvirt
libvirt_up() { virsh -c "$URI" version >/dev/null 2>&1; }
if libvirt_up; then
	zw_log "libvirtd already running: using it as it is"
else
	[[ -d /var/log/libvirt ]] || { mkdir -p /var/log/libvirt; CREATED_LOGDIR=/var/log/libvirt; }
	# libvirt's QEMU driver refuses to start unless its default user exists
	# (libvirt-daemon-system creates it; that package also autostarts a NAT
	# network, which we do not want).
	if ! getent passwd libvirt-qemu >/dev/null; then
		useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
			--user-group libvirt-qemu || zw_die "could not create the libvirt-qemu user"
		CREATED_USER=libvirt-qemu
	fi
	if [[ -e $QEMU_CONF ]]; then
		QEMU_CONF_SAVED=$T/qemu.conf.orig
		cp -a "$QEMU_CONF" "$QEMU_CONF_SAVED"
	else
		QEMU_CONF_SAVED=absent
	fi
	printf '# written by zonewall tests/vm/test_real_vms.sh (restored when it ends)\nsecurity_driver = "none"\nuser = "root"\ngroup = "root"\n' >"$QEMU_CONF"
	if ! pid=$(cat /run/virtlogd.pid 2>/dev/null) || ! kill -0 "$pid" 2>/dev/null; then
		virtlogd -d || zw_die "virtlogd -d failed"
		STARTED_VIRTLOGD=$(cat /run/virtlogd.pid)
	fi
	libvirtd -d || zw_die "libvirtd -d failed"
	STARTED_LIBVIRTD=$(cat /run/libvirtd.pid)
	for ((i = 0; i < 100; i++)); do libvirt_up && break; sleep 0.1; done
	libvirt_up || zw_die "libvirtd did not come up: $(tail -5 /var/log/libvirt/libvirtd.log 2>/dev/null)"
	zw_log "started virtlogd (${STARTED_VIRTLOGD:-already running}) and libvirtd ($STARTED_LIBVIRTD)"
fi
for vm in "${VMS[@]}"; do
	v dominfo "$(dom "$vm")" >/dev/null 2>&1 && zw_die "domain $(dom "$vm") exists already"
done

# ---------------------------------------------------------------- network
# No uplink, no address, no IPv6 on the bridge itself: the host neither
# routes for the guests nor talks to them. Guest traffic stays on $BR.
ip link add "$BR" type bridge stp_state 0 forward_delay 0 mcast_snooping 0 || zw_die "cannot create bridge $BR"
sysctl -qw "net.ipv6.conf.$BR.disable_ipv6=1"
ip link set "$BR" up
if [[ $(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null) == 1 ]]; then
	zw_log "note: br_netfilter is on: bridged guest traffic also crosses iptables FORWARD"
fi

# ---------------------------------------------------------------- policy, inventory
POLICY=$T/policy.json
cat >"$POLICY" <<EOF
{
  "version": 1,
  "description": "tests/vm/test_real_vms.sh: real VMs under libvirt",
  "defaults": {"intra_zone": "allow", "inter_zone": "deny"},
  "zones": {
    "web":   {"vms": ["$PFX-web-*"]},
    "db":    {"vms": ["$PFX-db-*"]},
    "admin": {"vms": ["$PFX-admin-*"], "description": "ops-1 is here by its zone tag only"}
  },
  "rules": [
    {"name": "web-to-db-postgres", "from": "web", "to": "db", "proto": "tcp", "ports": [5432], "action": "allow"},
    {"name": "admin-ping", "from": "admin", "to": "*", "proto": "icmp", "icmp_types": [8], "action": "allow"},
    {"name": "admin-ping6", "from": "admin", "to": "*", "proto": "icmpv6", "icmp_types": [128], "action": "allow"}
  ]
}
EOF
# The guests' addresses: QEMU domains cannot carry <ip> in <interface>
# (libvirt: "Invalid attempt to set network interface guest-side IP route
# and/or address info, not supported by QEMU") and there is no DHCP here, so
# each domain declares them in its zonewall metadata, per interface by MAC
# (host-controlled, hence trusted for anti-spoofing). Everything comes from
# libvirt: which VMs, taps, MACs, zones and addresses.

# ---------------------------------------------------------------- domains
probe_arg() {
	local src=$1 line s proto dst fam port out="" addr
	for line in "${PROBES[@]}"; do
		read -r s proto dst fam port _ <<<"$line"
		[[ $s == "$src" ]] || continue
		if [[ $fam == 6 ]]; then addr=${IP6[$dst]}; else addr=${IP4[$dst]}; fi
		out+="${out:++}$proto,$dst,$addr"
		[[ $port == - ]] || out+=",$port"
	done
	printf '%s' "$out"
}
for vm in "${VMS[@]}"; do
	zone=""
	[[ $vm == ops-1 ]] && zone="<zonewall:zone>admin</zonewall:zone>"
	meta="<metadata><zonewall:vm xmlns:zonewall='http://zonewall.org/xmlns/libvirt/1.0'>$zone<zonewall:interface mac='${MAC[$vm]}'><zonewall:ip>${IP4[$vm]}</zonewall:ip><zonewall:ip>${IP6[$vm]}</zonewall:ip></zonewall:interface></zonewall:vm></metadata>"
	cat >"$T/$vm.xml" <<EOF
<domain type='qemu'>
  <name>$(dom "$vm")</name>
  $meta
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$KERNEL</kernel>
    <initrd>$INITRD</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 zw.name=$vm zw.ip=${IP4[$vm]}/24 zw.ip6=${IP6[$vm]}/64 zw.probe=$(probe_arg "$vm")</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <interface type='bridge'>
      <source bridge='$BR'/>
      <target dev='$(tap "$vm")'/>
      <mac address='${MAC[$vm]}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
    </interface>
    <serial type='file'><source path='$T/$vm.console' append='on'/><target port='0'/></serial>
    <console type='file'><source path='$T/$vm.console' append='on'/><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
	v define "$T/$vm.xml" >/dev/null || zw_die "virsh define $T/$vm.xml failed"
	DEFINED+=("$(dom "$vm")")
done
# web-2: no <target dev>; libvirt names its tap (vnetN) when it starts.
W2MAC=52:54:00:80:00:41
cat >"$T/web-2.xml" <<EOF
<domain type='qemu'>
  <name>$(printf '%s-web-2' "$PFX")</name>
  <metadata><zonewall:vm xmlns:zonewall='http://zonewall.org/xmlns/libvirt/1.0'><zonewall:interface mac='$W2MAC'><zonewall:ip>10.80.0.41</zonewall:ip></zonewall:interface></zonewall:vm></metadata>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>$KERNEL</kernel><initrd>$INITRD</initrd><cmdline>console=ttyS0 quiet</cmdline></os>
  <devices>
    <emulator>$(command -v qemu-system-x86_64)</emulator>
    <interface type='bridge'><source bridge='$BR'/><mac address='$W2MAC'/><model type='virtio'/><rom enabled='no'/></interface>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
v define "$T/web-2.xml" >/dev/null || zw_die "virsh define $T/web-2.xml failed"
DEFINED+=("$PFX-web-2")

# Extra domains, defined and never started, in one virsh session (one
# process per domain would take minutes for thousands).
if ((EXTRA > 0)); then
	zw_log "defining $EXTRA extra domains (stopped)"
	T_DEF=$(now)
	for ((i = 0; i < EXTRA; i++)); do
		printf -v xmac '52:54:01:%02x:%02x:%02x' $((i >> 16 & 255)) $((i >> 8 & 255)) $((i & 255))
		printf -v xip '10.81.%d.%d' $((i / 250)) $((i % 250 + 1))
		printf '%s\n' "<domain type='qemu'><name>$PFX-web-x$i</name>" \
			"<metadata><zonewall:vm xmlns:zonewall='http://zonewall.org/xmlns/libvirt/1.0'><zonewall:interface mac='$xmac'><zonewall:ip>$xip</zonewall:ip></zonewall:interface></zonewall:vm></metadata>" \
			"<memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm</type></os>" \
			"<devices><emulator>$(command -v qemu-system-x86_64)</emulator><interface type='bridge'><source bridge='$BR'/><target dev='${TAPPFX}x$i'/><mac address='$xmac'/><model type='virtio'/></interface></devices></domain>" \
			>"$T/extra-$i.xml"
		echo "define $T/extra-$i.xml"
	done >"$T/extra-define.cmds"
	EXTRA_DEFINED=$EXTRA
	virsh -q -c "$URI" <"$T/extra-define.cmds" >"$T/extra-define.log" 2>&1 || zw_die "defining the extra domains failed: $(tail -3 "$T/extra-define.log")"
	rm -f "$T"/extra-*.xml
	n=$(virsh -q -c "$URI" list --all --name | grep -c "^$PFX-web-x" || true)
	zw_assert "$EXTRA extra domains defined (got $n) in $(awk -v a="$T_DEF" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s" test "$n" = "$EXTRA"
fi

# ---------------------------------------------------------------- daemon
bg_stamped "$T/links.log" ip -o monitor link
zw_log "zonewall daemon --libvirt $URI --tap-pattern '$TAPPFX*'"
bg_stamped "$T/daemon.log" "$ZONEWALL" -v --pin-dir "$PIN" --state-dir "$STATE" daemon --policy "$POLICY" \
	--libvirt "$URI" --tap-pattern "$TAPPFX*"
DAEMON_PID=$(cat "$T/daemon.log.pid")
for ((i = 0; i < 1200; i++)); do grep -q 'msg=reconciled' "$T/daemon.log" && break; sleep 0.1; done
grep -q 'msg=reconciled' "$T/daemon.log" || zw_die "the daemon did not reconcile within 120 s: $(tail -5 "$T/daemon.log")"
((EXTRA == 0)) || printf '  MEASURED: first reconcile with %d domains: %s\n' "$((EXTRA + 4))" \
	"$(grep -m1 'msg=reconciled' "$T/daemon.log" | grep -oE '(took_us|libvirt_domains_read|ms)=("[^"]*"|[^ ]*)' | tr '\n' ' ')"
zw_pass "daemon up and reconciled before any guest runs"
st=$(zwc --json stats) || zw_die "zonewall --json stats failed"
total=$(zw_json "sum(c['packets'] for c in d['reasons'].values())" <<<"$st")
zw_assert "no packet counted before any guest ran (got $total)" test "$total" = 0

# ---------------------------------------------------------------- boot
for vm in "${VMS[@]}"; do
	bg_stamped "$T/$vm.stamped" tail -n +1 -F "$T/$vm.console"
done
T_START=$(now)
for vm in "${VMS[@]}"; do
	printf '%s start %s\n' "$(now)" "$vm" >>"$T/events.log"
	v start "$(dom "$vm")" >/dev/null || zw_die "virsh start $(dom "$vm") failed: $(tail -5 "/var/log/libvirt/qemu/$(dom "$vm").log")"
done
zw_log "started ${VMS[*]} in $(awk -v a="$T_START" -v b="$(now)" 'BEGIN{printf "%.2f", b-a}') s"

# The analysis of the stamped logs: prints PASS/FAIL/INFO/MEASURED lines.
analyze() {
	"$ZW_PY" - "$T" "$1" "$PFX" "$TAPPFX" "${PROBES[@]}" <<'PYEOF'
import re, sys, collections
tdir, phase, pfx, tappfx, specs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
vms = ["web-1", "db-1", "ops-1"]
tags = {"web-1": "w1", "db-1": "d1", "ops-1": "o1"}
kv = lambda s: dict(re.findall(r'(\w+)=(\S+)', s))
def lines(path):
    try:
        for l in open(path, errors="replace"):
            ts, _, rest = l.rstrip("\n").partition(" ")
            yield float(ts), rest
    except FileNotFoundError:
        return
events = [(float(a), b, c) for a, b, c in (l.split() for l in open(tdir + "/events.log"))]
# probes: (src, proto, dst, addr, port) -> list of (host time, round, result, guest t, boot#)
res = collections.defaultdict(list)
boots = collections.defaultdict(list)
for vm in vms:
    for ts, l in lines(f"{tdir}/{vm}.stamped"):
        if "ZWBOOT" in l: boots[vm].append(ts)
        if "ZWPROBE" not in l: continue
        k = kv(l[l.index("ZWPROBE"):])
        res[(k["name"], k["proto"], k["to"], k["addr"], k["port"])].append((ts, int(k["round"]), k["result"], float(k["t"]), len(boots[vm])))
addr = {}
for l in open(tdir + "/addrs"):
    n, a4, a6 = l.split(); addr[(n, "4")] = a4; addr[(n, "6")] = a6
out = []
p = lambda *a: out.append(" ".join(str(x) for x in a))
ok_all = True
for s in specs:
    src, proto, dst, fam, port, exp = s.split()
    key = (src, proto, dst, addr[(dst, fam)], port)
    r = res.get(key, [])
    what = f"{src} -> {dst} {proto}{'/' + port if port != '-' else ''} IPv{fam}"
    n_ok = sum(1 for x in r if x[2] == "ok")
    if phase == "progress":
        since = float(open(tdir + "/phase-start").read())
        if exp == "allow" and sum(1 for x in r if x[2] == "ok" and x[0] >= since) < 2: ok_all = False
        continue
    hist = collections.Counter(x[2] for x in r)
    summary = f"{len(r)} probes: " + ", ".join(f"{k} {v}" for k, v in sorted(hist.items()))
    if not r:
        p("FAIL", f"{what}: no probe result at all"); continue
    if exp == "deny":
        if n_ok == 0:
            p("PASS", f"{phase}: {what} denied on every probe since boot ({summary})")
        else:
            first = next(x for x in r if x[2] == "ok")
            p("FAIL", f"{what}: the policy denies it but {n_ok} probe(s) got through, first at guest t={first[3]} round {first[1]} ({summary})")
        last = r[-1][2]
        if last == "timeout": p("PASS", f"{phase}: {what}: the last probe was a silent drop (timeout)")
        else: p("FAIL", f"{what}: the last probe ended '{last}', not a silent drop (timeout)")
    else:
        last2 = [x[2] for x in r[-2:]]
        if n_ok >= 1 and last2 == ["ok"] * len(last2):
            p("PASS", f"{phase}: {what} allowed (last {len(last2)} probes ok; {summary})")
        else:
            p("FAIL", f"{what}: the policy allows it; last results {last2} ({summary})")
if phase == "progress":
    print("READY" if ok_all else "WAIT"); sys.exit(0)
# Timing: tap created (ip monitor) -> hooked -> libvirt started event -> reconciled.
if phase not in ("boot", "restart"):
    print("\n".join(out)); sys.exit(0)
links = list(lines(tdir + "/links.log"))
dlog = list(lines(tdir + "/daemon.log"))
since = float(open(tdir + "/phase-start").read())
for vm in vms:
    if phase == "restart" and vm != "web-1": continue
    tapn = tappfx + tags[vm]
    created = next((ts for ts, l in links if ts >= since and re.search(rf'\b{tapn}\b', l)), None)
    hooked = next((ts for ts, l in dlog if ts >= since and "tap hooked" in l and f"ifname={tapn}" in l), None)
    started_ev = next((ts for ts, l in dlog if ts >= since and "libvirt event" in l and f"domain={pfx}-{vm}" in l and "kind=started" in l), None)
    # The first reconcile after the hook: its libvirt snapshot was taken
    # with the tap present (the daemon reconciles on a link event for a tap
    # libvirt already names, and on the STARTED event).
    rec = next((ts for ts, l in dlog if hooked and ts > hooked and "msg=reconciled" in l), None)
    start = next((ts for ts, what, n in events if n == vm and what == "start" and ts >= since), None)
    allowed = [s.split() for s in specs if s.split()[0] == vm and s.split()[5] == "allow"]
    firsts = []
    for src, proto, dst, fam, port, exp in allowed:
        r = res.get((src, proto, dst, addr[(dst, fam)], port), [])
        f = next((x[0] for x in r if x[2] == "ok" and start and x[0] >= start), None)
        if f: firsts.append(f)
    guest_net = None
    for ts, l in lines(f"{tdir}/{vm}.stamped"):
        if "ZWNET" in l and start and ts >= start: guest_net = ts; break
    def d(a, b): return f"{(b - a) * 1000:.1f} ms" if a is not None and b is not None else "n/a"
    def s_(a, b): return f"{b - a:.2f} s" if a is not None and b is not None else "n/a"
    # The starting VM's tap admitted by the tap thread (its domain was
    # stopped at the last apply), before libvirt's STARTED event, and the
    # first reconcile that reads it running agrees.
    here = [(i, ts, l) for i, (ts, l) in enumerate(dlog) if ts >= since and re.search(rf'ifname={tapn}( |$)', l)]
    # A starting VM's tap (its domain stopped at the last apply); or, when
    # the reconcile after its last stop has not run yet (libvirt busy), the
    # recreated tap of a VM the last apply knew running: admitted too.
    adm = next(((i, ts, l) for i, ts, l in here if "starting VM's tap admitted" in l or "interface admitted" in l), None)
    prospective = adm is not None and "starting VM's tap admitted" in adm[2]
    started_i = next((i for i, (ts, l) in enumerate(dlog) if ts >= since and "libvirt event" in l and f"domain={pfx}-{vm} " in l and "kind=started" in l), None)
    judged = next((l for i, ts, l in here if adm and i > adm[0] and ("is what its live definition" in l or "differed from" in l or "taken back" in l)), None)
    seen_ms = kv(adm[2]).get("since_seen_us") if adm else None
    seen_ms = int(seen_ms) / 1000 if seen_ms else None
    seen_txt = f"{seen_ms:.2f} ms" if seen_ms is not None else "n/a"
    p("MEASURED", f"{phase} {vm}: tap {tapn} created -> hooked {d(created, hooked)}; created -> admitted {d(created, adm[1] if adm else None)} (daemon: {seen_txt} after its tap thread saw the tap); created -> reconciled {d(created, rec)}; created -> libvirt STARTED event {d(created, started_ev)}; virsh start -> guest eth0 up {s_(start, guest_net)}; virsh start -> first allowed probe answered {s_(start, min(firsts) if firsts else None)}")
    if adm is None:
        p("FAIL", f"{phase} {vm}: its tap {tapn} was not admitted (no 'starting VM's tap admitted' or 'interface admitted' line)")
    else:
        before_started = started_i is not None and adm[0] < started_i
        kind = "as a starting VM's tap" if prospective else "as its running VM's recreated tap (the stop not reconciled yet)"
        if seen_ms is not None and seen_ms < 10 and before_started:
            p("PASS", f"{phase} {vm}: endpoint written by admission {kind} {seen_ms:.2f} ms after the daemon saw its tap (< 10 ms), before libvirt's STARTED event")
        else:
            p("FAIL", f"{phase} {vm}: admission {kind} {seen_txt} after the daemon saw the tap ({'before' if before_started else 'not before'} STARTED): not within 10 ms and before STARTED")
        if not prospective:
            pass
        elif judged and "is what its live definition" in judged:
            p("PASS", f"{phase} {vm}: the reconcile that read it running found its admission exactly right")
        else:
            p("FAIL", f"{phase} {vm}: the reconcile after the admission did not confirm it: {judged}")
    if rec and guest_net:
        if rec < guest_net: p("PASS", f"{phase} {vm}: endpoint written {guest_net - rec:.2f} s before the guest configured eth0 (its first packets met its zone's policy)")
        else: p("INFO", f"{phase} {vm}: guest eth0 up {rec - guest_net:.2f} s BEFORE the reconcile: its earliest packets met the fail-closed hook (drop_no_endpoint)")
    if hooked is None: p("FAIL", f"{phase} {vm}: no 'tap hooked' line for {tapn} in the daemon log")
    if rec is None: p("FAIL", f"{phase} {vm}: no reconcile after its tap was hooked")
print("\n".join(out))
PYEOF
}
for vm in "${VMS[@]}"; do echo "$vm ${IP4[$vm]} ${IP6[$vm]}"; done >"$T/addrs"
echo "$T_START" >"$T/phase-start"

# Wait until every allowed probe has answered twice (or time out).
wait_ready() {
	local deadline=$1 what=$2
	while :; do
		[[ $(analyze progress) == READY ]] && return 0
		(($(date +%s) < deadline)) || { zw_fail "$what: allowed probes did not all succeed twice within the deadline"; return 1; }
		sleep 1
	done
}
# Reports the analysis lines as checks.
report() {
	local kind rest
	while read -r kind rest; do
		case $kind in
		PASS) zw_pass "$rest" ;;
		FAIL) zw_fail "$rest" ;;
		MEASURED) printf '  MEASURED: %s\n' "$rest" ;;
		INFO) printf '  note: %s\n' "$rest" ;;
		esac
	done < <(analyze "$1")
}
# Runs at least one more full probe round on every guest: the longest round
# (web-1: three 1-s timeouts) takes ~4 s under TCG.
more_rounds() { sleep "${1:-5}"; }

zw_log "waiting for the guests to boot and probe"
if wait_ready $(($(date +%s) + 120)) "boot"; then
	zw_log "all allowed probes answered; one more round"
	more_rounds 5
fi
report boot

# ---------------------------------------------------------------- status, stats
status=$(zwc --json status) || zw_die "zonewall --json status failed"
for vm in "${VMS[@]}"; do
	got=$(zw_json "' '.join(f\"{e['zone']}/{e['ifname']}/{e['enforced']}\" for e in d['endpoints'] if e['vm'] == '$(dom "$vm")')" <<<"$status")
	zw_assert "status: $(dom "$vm") zone ${ZONE[$vm]} on $(tap "$vm"), enforced (got '$got')" test "$got" = "${ZONE[$vm]}/$(tap "$vm")/True"
	addrs=$(zw_json "' '.join(','.join(e['addrs']) for e in d['endpoints'] if e['vm'] == '$(dom "$vm")')" <<<"$status")
	zw_assert "status: $(dom "$vm") has exactly its metadata addresses (got '$addrs')" \
		test "$addrs" = "${IP4[$vm]},${IP6[$vm]}"
done
stats=$(zwc --json stats) || zw_die "zonewall --json stats failed"
echo "$stats" >"$T/stats-boot.json"
read -r all noep eps < <(zw_json "' '.join(str(x) for x in (sum(c['packets'] for c in d['reasons'].values()), d['reasons']['drop_no_endpoint']['packets'], sum(e[k]['packets'] for e in d['endpoints'] for k in ('from_vm_pass','from_vm_drop','to_vm_pass','to_vm_drop'))))" <<<"$stats")
zw_assert "stats: every packet judged was counted for an endpoint, except drop_no_endpoint ($all judged = $eps by endpoint + $noep drop_no_endpoint)" test "$all" = "$((eps + noep))"
zw_assert "stats: no packet met a new tap before its endpoint (drop_no_endpoint $noep): each guest's first packets were judged by its zone" test "$noep" = 0
for rule in web-to-db-postgres admin-ping admin-ping6 default:inter_zone; do
	n=$(zw_json "next((r['packets'] for r in d['rules'] if r['name'] == '$rule'), 0)" <<<"$stats")
	zw_assert "stats: rule $rule matched packets ($n)" zw_positive "$n"
done
zwc stats >"$T/stats-boot.txt" 2>&1

# ---------------------------------------------------------------- a tap libvirt names
# web-2 starts paused (its vCPUs never run: no CPU spent on a guest whose
# only job is to make libvirt create a tap under a name of its choosing).
zw_log "virsh start --paused $PFX-web-2 (no <target dev>: libvirt names its tap)"
T_W2=$(now)
v start --paused "$PFX-web-2" >/dev/null || zw_die "virsh start --paused $PFX-web-2 failed: $(tail -5 "/var/log/libvirt/qemu/$PFX-web-2.log")"
w2tap=$(v domiflist "$PFX-web-2" | awk -v m="$W2MAC" 'tolower($5) == m { print $1 }')
[[ -n $w2tap ]] || zw_die "no tap for $PFX-web-2 in virsh domiflist"
for ((i = 0; i < 100; i++)); do
	grep -q "a starting VM's admission is what its live definition gives it\" ifname=$w2tap " "$T/daemon.log" && break
	sleep 0.1
done
line=$(grep "starting VM's tap admitted.* ifname=$w2tap " "$T/daemon.log" | head -1 || true)
seen=$(sed -n 's/.* since_seen_us=\([0-9]*\).*/\1/p' <<<"$line")
printf '  MEASURED: web-2 (tap %s, named by libvirt): %s\n' "$w2tap" "${line:-no admission line}"
zw_assert "web-2: its tap $w2tap (no tap pattern matches it) was admitted by its libvirt MAC within 10 ms of the daemon seeing it (${seen:-?} us)" \
	test -n "$seen" -a "${seen:-99999}" -lt 10000
n_adm=$(grep -n "starting VM's tap admitted.* ifname=$w2tap " "$T/daemon.log" | head -1 | cut -d: -f1)
n_st=$(grep -n "libvirt event.* domain=$PFX-web-2 .*kind=started" "$T/daemon.log" | head -1 | cut -d: -f1)
zw_assert "web-2: admitted before libvirt's STARTED event (log lines ${n_adm:-?} < ${n_st:-?})" \
	test -n "$n_adm" -a -n "$n_st" -a "${n_adm:-0}" -lt "${n_st:-0}"
zw_assert "web-2: the reconcile that read it running found its admission exactly right" \
	grep -q "a starting VM's admission is what its live definition gives it\" ifname=$w2tap " "$T/daemon.log"
got=$(zwc --json status | zw_json "' '.join(f\"{e['zone']}/{e['ifname']}/{e['enforced']}\" for e in d['endpoints'] if e['vm'] == '$PFX-web-2')")
zw_assert "web-2: status: zone web on $w2tap, enforced (got '$got')" test "$got" = "web/$w2tap/True"
v destroy "$PFX-web-2" >/dev/null || zw_die "virsh destroy $PFX-web-2 failed"

# ---------------------------------------------------------------- destroy + start
zw_log "virsh destroy $(dom web-1); virsh start $(dom web-1)"
old_ifx=$(cat "/sys/class/net/$(tap web-1)/ifindex")
v destroy "$(dom web-1)" >/dev/null || zw_die "virsh destroy failed"
for ((i = 0; i < 50; i++)); do ip link show "$(tap web-1)" >/dev/null 2>&1 || break; sleep 0.1; done
sleep 2
T_RESTART=$(now)
echo "$T_RESTART" >"$T/phase-start"
printf '%s start %s\n' "$T_RESTART" web-1 >>"$T/events.log"
v start "$(dom web-1)" >/dev/null || zw_die "virsh start $(dom web-1) (again) failed"
new_ifx=$(cat "/sys/class/net/$(tap web-1)/ifindex")
zw_assert "restart: web-1 has a new tap (ifindex $old_ifx -> $new_ifx)" test "$old_ifx" != "$new_ifx"
if wait_ready $(($(date +%s) + 90)) "restart"; then
	more_rounds 5
fi
report restart
status=$(zwc --json status) || zw_die "zonewall --json status failed"
got=$(zw_json "' '.join(f\"{e['zone']}/{e['ifindex']}/{e['enforced']}\" for e in d['endpoints'] if e['vm'] == '$(dom web-1)')" <<<"$status")
zw_assert "restart: status shows web-1 in zone web on the new tap, enforced (got '$got')" test "$got" = "web/$new_ifx/True"
noep=$(zwc --json stats | zw_json "d['reasons']['drop_no_endpoint']['packets']")
zw_assert "restart: no packet met web-1's new tap before its endpoint (drop_no_endpoint $noep)" test "$noep" = 0

# ---------------------------------------------------------------- libvirtd restart
# The daemon must ride out a libvirtd restart: enforcement untouched while
# libvirt is gone, and a reconnect (then a reconcile) once it is back.
if [[ -n ${STARTED_LIBVIRTD:-} ]]; then
	zw_log "restart libvirtd (pid $STARTED_LIBVIRTD); the guests keep running"
	n_conn=$(grep -c 'msg="libvirt connected"' "$T/daemon.log" || true)
	kill -TERM "$STARTED_LIBVIRTD"
	for ((i = 0; i < 100; i++)); do kill -0 "$STARTED_LIBVIRTD" 2>/dev/null || break; sleep 0.1; done
	libvirtd -d || zw_die "libvirtd -d (restart) failed"
	STARTED_LIBVIRTD=$(cat /run/libvirtd.pid)
	for ((i = 0; i < 100; i++)); do libvirt_up && break; sleep 0.1; done
	for ((i = 0; i < 150; i++)); do
		(($(grep -c 'msg="libvirt connected"' "$T/daemon.log" || true) > n_conn)) && break
		sleep 0.1
	done
	zw_assert "libvirtd restart: the daemon saw the connection go" grep -q 'libvirt connection lost' "$T/daemon.log"
	zw_assert "libvirtd restart: the daemon reconnected" \
		test "$(grep -c 'msg="libvirt connected"' "$T/daemon.log" || true)" -gt "$n_conn"
	status=$(zwc --json status) || zw_die "zonewall --json status failed"
	n_enf=$(zw_json "d['endpoints_enforced']" <<<"$status")
	zw_assert "libvirtd restart: all 3 VMs still enforced (got $n_enf)" test "$n_enf" = 3
	# Converging after the restart means hearing libvirt again: a domain
	# defined (not started) through the new libvirtd must reach the daemon's
	# state by its event, and leave it when undefined. It has no interface
	# while stopped and an address no guest uses, so no probe changes.
	extra=$(dom web-9)
	cat >"$T/web-9.xml" <<EOF
<domain type='qemu'>
  <name>$extra</name>
  <metadata><zonewall:vm xmlns:zonewall='http://zonewall.org/xmlns/libvirt/1.0'><zonewall:interface mac='52:54:00:80:00:99'><zonewall:ip>10.80.0.99</zonewall:ip></zonewall:interface></zonewall:vm></metadata>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <interface type='bridge'><source bridge='$BR'/><mac address='52:54:00:80:00:99'/></interface>
  </devices>
</domain>
EOF
	in_state() { zwc --json status | zw_json "any(e['vm'] == '$extra' for e in d['endpoints'])"; }
	v define "$T/web-9.xml" >/dev/null || zw_die "virsh define $T/web-9.xml failed"
	DEFINED+=("$extra")
	for ((i = 0; i < 100; i++)); do [[ $(in_state) == True ]] && break; sleep 0.1; done
	zw_assert "libvirtd restart: a domain defined afterwards is in the daemon's state within 10 s (its event arrived)" test "$(in_state)" = True
	v undefine "$extra" >/dev/null || zw_die "virsh undefine $extra failed"
	unset 'DEFINED[-1]'
	for ((i = 0; i < 100; i++)); do [[ $(in_state) == False ]] && break; sleep 0.1; done
	zw_assert "libvirtd restart: undefined again, it leaves the daemon's state within 10 s" test "$(in_state)" = False
	n_enf=$(zwc --json status | zw_json "d['endpoints_enforced']")
	zw_assert "libvirtd restart: the 3 VMs still enforced after that (got $n_enf)" test "$n_enf" = 3
fi

# ---------------------------------------------------------------- SIGTERM
zw_log "SIGTERM to the daemon (pid $DAEMON_PID)"
kill -TERM "$DAEMON_PID"
rc=0
for ((i = 0; i < 50; i++)); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$DAEMON_PID" 2>/dev/null; then
	zw_fail "the daemon still runs 5 s after SIGTERM"
else
	zw_pass "the daemon exited on SIGTERM"
fi
DAEMON_PID=""
now >"$T/phase-start"
more_rounds 6
report stopped

# ---------------------------------------------------------------- down
zwc down >"$T/down.log" 2>&1 || zw_fail "zonewall down failed: $(cat "$T/down.log")"
DOWN_DONE=1
for vm in "${VMS[@]}"; do
	out=$(tc filter show dev "$(tap "$vm")" ingress 2>&1; tc filter show dev "$(tap "$vm")" egress 2>&1)
	zw_assert "down: no tc filter left on $(tap "$vm")" test -z "$out"
done
T_DOWN=$(now)
sleep 6
# After down the bridge forwards everything: a probe the policy denied gets
# through now, so the drops seen before were zonewall's, not a broken lab.
got=$("$ZW_PY" - "$T/db-1.stamped" "$T_DOWN" <<'EOF'
import sys, re
n = 0
for l in open(sys.argv[1], errors="replace"):
    ts, _, rest = l.partition(" ")
    if float(ts) > float(sys.argv[2]) and "ZWPROBE" in rest and "to=web-1" in rest and "port=80" in rest and "result=ok" in rest:
        n += 1
print(n)
EOF
)
zw_assert "after down: db-1 -> web-1 tcp/80 (denied before) gets through ($got ok probes): the drops were zonewall's" zw_positive "$got"

zw_summary
