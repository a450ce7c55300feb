#!/usr/bin/env bash
# Cluster-mode scale simulation (issue 8), one command, as root, from a built tree:
#
#   scripts/bench/cluster.sh [--quick] [--hosts N] [--vms M] [--daemons D] [--rounds R] [--out DIR]
#
# Default: 100 simulated hosts x 100 VMs (10,000 endpoint records, 20,000
# addresses) in a 1-member etcd, watched by 1 real `zonewall daemon --cluster`
# with one VM of its own; 5 rounds per measurement. --quick: 10 x 10, 2
# rounds, 2 s idle (what CI runs as a smoke test, ctest bench.cluster_smoke; ~5 s).
#
# Everything runs in a network namespace zwcb<pid> (etcd on its 127.0.0.1,
# the daemons, their VMs' veths) and VM namespaces zwcb<pid>-vN; pins under
# /sys/fs/bpf/zw-cbench-<pid>-N, etcd's data in /dev/shm/zw-cbench-<pid>-etcd. All of it is removed on exit, also on failure.
# The simulation itself is bench/cluster_sim.py (see its --help): simulated
# publishers write the contract's records under one lease per host and keep
# the leases alive; the figures come from the real daemons' host records
# (PFX/hosts/<host>) and /proc. Results: DIR/cluster-<mode>.tsv and .md
# (default build/bench-results).
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$(pwd)

MODE=full HOSTS="" VMS="" DAEMONS=1 ROUNDS="" OUT=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) MODE=quick ;;
	--hosts) HOSTS=$2; shift ;;
	--vms) VMS=$2; shift ;;
	--daemons) DAEMONS=$2; shift ;;
	--rounds) ROUNDS=$2; shift ;;
	--out) OUT=$2; shift ;;
	-h | --help) sed -n 2,19p "$0"; exit 0 ;;
	*) echo "cluster.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
case $MODE in
quick) HOSTS=${HOSTS:-10} VMS=${VMS:-10} ROUNDS=${ROUNDS:-2} IDLE=2 ;;
full) HOSTS=${HOSTS:-100} VMS=${VMS:-100} ROUNDS=${ROUNDS:-5} IDLE=10 ;;
esac
[[ $DAEMONS =~ ^[1-9]$ ]] || { echo "cluster.sh: --daemons 1-9" >&2; exit 2; }
BUILD_DIR=${ZW_BUILD_DIR:-build}
OUT=${OUT:-$BUILD_DIR/bench-results}
ZONEWALL=${ZONEWALL:-$SRC/$BUILD_DIR/zonewall}
PY=/usr/bin/python3
POLICY_A=$SRC/policies/examples/lab.json

if [ "$(id -u)" -ne 0 ]; then
	echo "cluster.sh: run as root (network namespaces, BPF)" >&2
	exit 1
fi
[ -x "$ZONEWALL" ] || { echo "cluster.sh: $ZONEWALL missing: build first (scripts/build.sh)" >&2; exit 1; }
for t in etcd nsenter ip; do
	command -v "$t" >/dev/null || { echo "cluster.sh: $t missing: run scripts/setup.sh" >&2; exit 1; }
done
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

ID="zwcb$$"
PIN="/sys/fs/bpf/zw-cbench-$$"
TMP=$(mktemp -d /tmp/zw-cbench-XXXXXX)
ETCD_DIR=/dev/shm/zw-cbench-$$-etcd # tmpfs: etcd fsyncs every write
mkdir -m 700 "$ETCD_DIR"
PIDS=()
DAEMON_PIDS=()
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
echo "[cluster] id $ID (netns $ID*, pins $PIN-*), $HOSTS hosts x $VMS VMs, $DAEMONS real daemon(s), results in $OUT" >&2

cleanup() {
	local rc=$? p d
	set +e
	for p in "${DAEMON_PIDS[@]}" "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${DAEMON_PIDS[@]}" "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	for ((d = 1; d <= DAEMONS; d++)); do
		[ ! -d "$PIN-$d" ] || in_ns "$ZONEWALL" --pin-dir "$PIN-$d" --state-dir "/run/zonewall-zw-cbench-$$-$d" down >/dev/null 2>&1
		ip netns del "$ID-v$d" 2>/dev/null
		rm -rf "$PIN-$d" "/run/zonewall-zw-cbench-$$-$d"
	done
	ip netns del "$ID" 2>/dev/null
	rm -rf "$ETCD_DIR"
	if ((rc != 0)); then echo "[cluster] FAILED (exit $rc); logs kept in $TMP" >&2; else rm -rf "$TMP"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() { nsenter --net="/run/netns/$ID" "$@"; }

ip netns add "$ID"
ip -n "$ID" link set lo up
EP=http://127.0.0.1:2379
PFX=/zwbench
nsenter --net="/run/netns/$ID" etcd --name b1 --data-dir "$ETCD_DIR/b1" \
	--listen-client-urls $EP --advertise-client-urls $EP \
	--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
	--initial-cluster b1=http://127.0.0.1:2380 --log-outputs stderr >"$TMP/etcd.log" 2>&1 &
ETCD_PID=$!
PIDS+=("$ETCD_PID")
for ((i = 0; i < 100; i++)); do
	in_ns etcdctl --endpoints=$EP --dial-timeout=1s endpoint health >/dev/null 2>&1 && break
	sleep 0.1
done
in_ns etcdctl --endpoints=$EP endpoint health >/dev/null 2>&1 || { tail "$TMP/etcd.log" >&2; exit 1; }

# The alternative policy: web may reach db on tcp/5433 instead of 5432.
POLICY_B=$TMP/alt-port.json
"$PY" - "$POLICY_A" "$POLICY_B" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
p["rules"] = [dict(r, ports=[5433]) if r.get("name") == "web-to-db-postgres" else r for r in p["rules"]]
json.dump(p, open(sys.argv[2], "w"), indent=2)
EOF
in_ns "$ZONEWALL" apply --cluster $EP --cluster-prefix $PFX "$POLICY_A" >/dev/null

# Real daemons, each with one VM (veth zcbN in the bench namespace, eth0 in ID-vN).
DAEMON_ARGS=()
for ((d = 1; d <= DAEMONS; d++)); do
	ip netns add "$ID-v$d"
	ip -n "$ID" link add "zcb$d" type veth peer name eth0 netns "$ID-v$d" address "52:54:02:00:00:0$d"
	ip -n "$ID" link set "zcb$d" up
	ip -n "$ID-v$d" addr add "10.201.0.$d/24" dev eth0
	ip -n "$ID-v$d" link set eth0 up
	printf '{"vms": [{"name": "web-real-%d", "uuid": "5e1ea100-0000-4000-8000-00000000000%d", "interfaces": [{"name": "zcb%d", "mac": "52:54:02:00:00:0%d", "ips": ["10.201.0.%d", "fd21::%d"]}]}]}\n' \
		"$d" "$d" "$d" "$d" "$d" "$d" >"$TMP/inventory-$d.json"
	nsenter --net="/run/netns/$ID" "$ZONEWALL" --pin-dir "$PIN-$d" --state-dir "/run/zonewall-zw-cbench-$$-$d" \
		daemon --cluster $EP --host "real-$d" --cluster-prefix $PFX --no-libvirt \
		--inventory "$TMP/inventory-$d.json" --tap-pattern "zcb$d" >"$TMP/daemon-$d.log" 2>&1 &
	DAEMON_PIDS+=($!)
	DAEMON_ARGS+=(--daemon "real-$d=$!")
done

{
	echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "etcd: $(etcd --version | head -1 | cut -d' ' -f3), 1 member on tmpfs; zonewall $("$ZONEWALL" --version)"
	echo "command: scripts/bench/cluster.sh $([ $MODE = quick ] && echo --quick) --hosts $HOSTS --vms $VMS --daemons $DAEMONS --rounds $ROUNDS"
	echo "time: $(date -u +'%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo
} >"$OUT/cluster-$MODE.md"
in_ns "$PY" "$SRC/bench/cluster_sim.py" --etcd $EP --prefix $PFX --hosts "$HOSTS" --vms "$VMS" \
	--rounds "$ROUNDS" --idle "$IDLE" --zonewall "$ZONEWALL" --policy-a "$POLICY_A" --policy-b "$POLICY_B" \
	"${DAEMON_ARGS[@]}" --out "$OUT/cluster-$MODE.tsv" >>"$OUT/cluster-$MODE.md"
for ((d = 1; d <= DAEMONS; d++)); do
	kill -0 "${DAEMON_PIDS[d - 1]}" 2>/dev/null || { tail -20 "$TMP/daemon-$d.log" >&2; echo "[cluster] daemon $d died" >&2; exit 1; }
done
# etcd's own footprint, for scale.
{
	echo
	awk '/VmRSS|VmHWM/ { printf "etcd %s %.1f MiB; ", $1, $2 / 1024 }' "/proc/$ETCD_PID/status"
	echo
} >>"$OUT/cluster-$MODE.md"
cat "$OUT/cluster-$MODE.md"
