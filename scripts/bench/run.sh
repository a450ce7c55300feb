#!/usr/bin/env bash
# zonewall benchmark suite: one command, everything in network namespaces it
# creates and removes, ratios measured side by side in the same run.
#
#   scripts/bench/run.sh [--smoke|--quick] [--out DIR] [--only cost,rate,tcp,control]
#
# Sections (see docs/benchmarks.md for the method of each):
#   cost     per-packet cost with BPF_PROG_TEST_RUN (zw_bench cost)
#   rate     64-byte UDP packet rate through veth: zonewall XDP and tc, no
#            filter, trivial XDP drop, nftables (set + verdict map),
#            iptables (one rule per allowed pair), 10 / 1,000 / 10,000 rules
#   tcp      iperf3 throughput and TCP request/response latency between two
#            VM namespaces: no filter, zonewall tc (default), zonewall XDP,
#            nftables; segmentation offload state under each
#   control  check/compile/apply time and memory, entries written by an
#            apply after one rule / one VM changed, new interface -> enforced,
#            a starting libvirt VM's tap -> enforced
# Results: DIR/*.tsv, DIR/report.md and DIR/*.png (default build/bench-results).
# --smoke is what the ctest `bench` label runs: every table, short durations.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$(pwd)

MODE=full
OUT=""
ONLY="cost,rate,tcp,control"
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) MODE=smoke ;;
    --quick) MODE=quick ;;
    --full) MODE=full ;;
    --out) OUT=$2; shift ;;
    --only) ONLY=$2; shift ;;
    -h|--help) sed -n 2,20p "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
BUILD_DIR=${ZW_BUILD_DIR:-build}
OUT=${OUT:-$BUILD_DIR/bench-results}
ZONEWALL=${ZONEWALL:-$SRC/$BUILD_DIR/zonewall}
ZWB=${ZW_BENCH:-$SRC/$BUILD_DIR/bench/zw_bench}
PY=/usr/bin/python3

if [ "$(id -u)" -ne 0 ]; then
  echo "run.sh: run as root (network namespaces, BPF)" >&2
  exit 1
fi
for b in "$ZONEWALL" "$ZWB"; do
  [ -x "$b" ] || { echo "run.sh: $b missing: build first (scripts/build.sh)" >&2; exit 1; }
done
for t in nft iptables-restore iptables-legacy-restore iperf3 ethtool; do
  command -v "$t" >/dev/null || { echo "run.sh: $t missing: run scripts/setup.sh" >&2; exit 1; }
done
mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf

case $MODE in
  smoke) SECS=0.5; TCP_SECS=1; RR_SECS=1; RULES="10 1000"; TAP_TRIALS=3; CTRL_VMS=400; CTRL_RULES=1000; CTRL_ZONES=100; ROUNDS=1; TCP_ROUNDS=1 ;;
  quick) SECS=1.5; TCP_SECS=3; RR_SECS=2; RULES="10 1000 10000"; TAP_TRIALS=5; CTRL_VMS=10000; CTRL_RULES=10000; CTRL_ZONES=1000; ROUNDS=5; TCP_ROUNDS=3 ;;
  full)  SECS=3; TCP_SECS=8; RR_SECS=5; RULES="10 1000 10000"; TAP_TRIALS=20; CTRL_VMS=10000; CTRL_RULES=10000; CTRL_ZONES=1000; ROUNDS=9; TCP_ROUNDS=5 ;;
esac

ID="zwb$$"
NS_H="$ID-h" NS_A="$ID-a" NS_B="$ID-b"
PIN="/sys/fs/bpf/zw-bench-$$"
TMP=$(mktemp -d /tmp/zw-bench-XXXXXX)
BG_PIDS=()
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
echo "[bench] id $ID (netns $ID-*, pins $PIN*), mode $MODE, results in $OUT" >&2

cleanup() {
  set +e
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ -d "$PIN" ]; then in_h "$ZONEWALL" --pin-dir "$PIN" down >/dev/null 2>&1; fi
  for n in "$NS_H" "$NS_A" "$NS_B" "$ID-c"; do ip netns del "$n" 2>/dev/null; done
  rm -rf "$PIN" "$PIN"-* /run/zonewall-zw-bench-$$* "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() { local n=$1; shift; nsenter --net="/run/netns/$n" "$@"; }
in_h() { in_ns "$NS_H" "$@"; }
in_a() { in_ns "$NS_A" "$@"; }
in_b() { in_ns "$NS_B" "$@"; }
mac_of() { in_ns "$1" ip -o link show dev "$2" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }

# ---- machine and command ---------------------------------------------------
{
  echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command	scripts/bench/run.sh --$MODE$([ "$ONLY" = "cost,rate,tcp,control" ] || echo " --only $ONLY")"
  echo "commit	$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "kernel	$(uname -r)"
  echo "cpu	$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"
  echo "memory	$(free -m | awk '/Mem:/{print $2}') MiB"
  echo "virt	$(systemd-detect-virt 2>/dev/null || echo unknown)"
  echo "load	$(cut -d' ' -f1-3 /proc/loadavg) (at start)"
  echo "nft	$(nft -v)"
  echo "iptables	$(iptables -V)"
} > "$OUT/machine.tsv"

# ---- 1. per-packet cost ----------------------------------------------------
if [[ ,$ONLY, == *,cost,* ]]; then
  log "cost: BPF_PROG_TEST_RUN ($MODE)"
  "$ZWB" cost --mode "$MODE" --pin-dir "$PIN-cost" > "$OUT/cost.tsv"
fi

# ---- topology for rate and tcp ---------------------------------------------
# VM A (generator / client) -- vA|hA -- host netns (routes, zonewall, nft,
# iptables) -- hB|vB -- VM B (receiver / server). VM addresses and MACs are
# those of VMs 0 and 1 of the generated inventories.
A_IP=10.64.0.1 B_IP=10.64.0.2 A_MAC=52:54:00:00:00:00 B_MAC=52:54:00:00:00:01
topology() {
  for n in "$NS_H" "$NS_A" "$NS_B"; do
    ip netns add "$n"
    in_ns "$n" ip link set lo up
    in_ns "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  done
  in_h sysctl -qw net.ipv4.ip_forward=1
  in_h ip link add hA type veth peer name vA netns "$NS_A"
  in_h ip link add hB type veth peer name vB netns "$NS_B"
  in_a ip link set vA address $A_MAC
  in_b ip link set vB address $B_MAC
  for x in A B; do
    local ns=$NS_A ip=$A_IP gw=10.99.0.1
    [ $x = B ] && ns=$NS_B ip=$B_IP gw=10.99.1.1
    in_h ip link set h$x up
    in_h ip addr add $gw/32 dev h$x
    in_h ip route add $ip/32 dev h$x
    in_ns "$ns" ip link set v$x up
    in_ns "$ns" ip addr add $ip/32 dev v$x
    in_ns "$ns" ip route add $gw/32 dev v$x
    in_ns "$ns" ip route add default via $gw dev v$x
    local hmac vmac
    hmac=$(mac_of "$NS_H" h$x)
    vmac=$(mac_of "$ns" v$x)
    in_ns "$ns" ip neigh replace $gw lladdr "$hmac" dev v$x nud permanent
    in_h ip neigh replace $ip lladdr "$vmac" dev h$x nud permanent
  done
  H_A_MAC=$(mac_of "$NS_H" hA)
}

# generated policy/inventory/nft/iptables for R rules (10 zones, 10 VMs: one
# VM per zone, so "one iptables rule per allowed pair" is one per rule)
# VM A's host-side interface: hA (veth), or tA (a tap) in the tap section.
DEV_A=hA
gen() {
  local r=$1
  [ -f "$TMP/$DEV_A-r$r.policy.json" ] || "$ZWB" gen --zones 10 --vms 10 --rules "$r" \
    --real "0:$DEV_A,1:hB" --tcp-ports 5201 7001 --out "$TMP/$DEV_A-r$r"
}

reset_filters() {
  if [ -d "$PIN" ]; then in_h "$ZONEWALL" --pin-dir "$PIN" down >/dev/null; fi
  in_h "$ZWB" xdp-drop --dev "$DEV_A" --detach 2>/dev/null || true
  in_h nft flush ruleset
  in_h iptables-legacy -F FORWARD 2>/dev/null || true
  in_h iptables-legacy -P FORWARD ACCEPT 2>/dev/null || true
  in_h nft flush ruleset
}

# setup_filter SYSTEM RULES: zw-xdp | zw-tc | none | xdp-drop | nft | ipt |
# ipt-legacy | nft-1 | ipt-1 (single-rule drop of the test traffic)
setup_filter() {
  local sys=$1 r=${2:-10}
  reset_filters
  case $sys in
    none) ;;
    xdp-drop) in_h "$ZWB" xdp-drop --dev "$DEV_A" ;;
    zw-xdp|zw-tc)
      gen "$r"
      in_h "$ZONEWALL" --pin-dir "$PIN" apply "$TMP/$DEV_A-r$r.policy.json" \
        --inventory "$TMP/$DEV_A-r$r.inventory.json" --attach "${sys#zw-}" >/dev/null 2>"$TMP/apply.err" \
        || { cat "$TMP/apply.err" >&2; return 1; } ;;
    nft) gen "$r"; in_h nft -f "$TMP/$DEV_A-r$r.nft" ;;
    ipt) gen "$r"; in_h iptables-restore < "$TMP/$DEV_A-r$r.ipt" ;;
    ipt-legacy) gen "$r"; in_h iptables-legacy-restore < "$TMP/$DEV_A-r$r.ipt" ;;
    nft-1) printf 'table ip zwbench {\n chain forward_vms {\n  type filter hook forward priority filter; policy accept;\n  ip daddr 10.64.0.2 udp dport 9 drop\n }\n}\n' | in_h nft -f - ;;
    ipt-1) printf '*filter\n-A FORWARD -d 10.64.0.2/32 -p udp -m udp --dport 9 -j DROP\nCOMMIT\n' | in_h iptables-restore ;;
  esac
}

# (nsenter keeps the host's /sys: read the namespace's view through /proc.)
rx_packets() {  # NS IFACE
  in_ns "$1" awk -v i="$2:" '$1 == i { print $3 }' /proc/net/dev
}

now() { date +%s.%N; }

# Kernel time of the receive CPU (CPU 1 when the generator and the receiver
# are split), in clock ticks: system, irq, softirq (a packet's whole path on
# the host is kernel work; leaving user time out keeps other programs on a
# shared machine out of most of it).
CLK_TCK=$(getconf CLK_TCK)
rx_cpu_ticks() { awk '$1 == "cpu1" { print $4 + $7 + $8 }' /proc/stat; }

# measure_rate SYSTEM RULES TRAFFIC(denied|allowed): 64-byte (60 + FCS) UDP
# frames from VM A to VM B, from zw_bench blast (AF_PACKET sendmmsg, qdisc
# bypass; stops by itself). The rate is read at the receiver over a steady
# window after a warm-up: denied, packets the host side of A's veth took in
# per second (every one judged and dropped; B must see none); allowed,
# packets B received per second. With split CPUs, also the receive CPU's
# busy time per packet: every packet's path on the host (XDP, tc,
# netfilter, forwarding, the hop to B) runs there, so that is each system's
# own cost, whether or not the generator is the bottleneck.
measure_rate() {
  local sys=$1 r=$2 traffic=$3 dport=9
  [ "$traffic" = allowed ] && dport=1000
  local pid h0 b0 t0 c0 h1 b1 t1 c1
  pin_napi
  "${GEN_PIN[@]}" nsenter --net="/run/netns/$NS_A" "$ZWB" blast --dev vA --src $A_IP --dst $B_IP \
    --src-mac $A_MAC --dst-mac "$H_A_MAC" --dport $dport --size 60 \
    --seconds "$(awk -v s="$SECS" 'BEGIN { print s + 0.6 }')" >/dev/null &
  pid=$!  # nsenter execs: this is the generator itself
  BG_PIDS+=("$pid")
  sleep 0.3
  h0=$(rx_packets "$NS_H" hA) b0=$(rx_packets "$NS_B" vB) c0=$(rx_cpu_ticks) t0=$(now)
  sleep "$SECS"
  h1=$(rx_packets "$NS_H" hA) b1=$(rx_packets "$NS_B" vB) c1=$(rx_cpu_ticks) t1=$(now)
  wait "$pid" || true
  unset 'BG_PIDS[-1]'
  awk -v s="$sys" -v r="$r" -v t="$traffic" -v el="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
    -v h="$((h1 - h0))" -v b="$((b1 - b0))" -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v sp="$SPLIT" \
    'BEGIN { n = t == "denied" ? h : b
             ns = (sp == 1 && n > 0) ? sprintf("%.0f", c * 1e9 / hz / n) : ""
             busy = sp == 1 ? sprintf("%.2f", c / hz / el) : ""
             printf "rate\t%s\t%s\t%s\tpacket\t%.3f\t%.0f\t%.0f\t%s\t%s\n", s, r, t, el, h / el, b / el, busy, ns }' \
    >> "$OUT/${OUT_RATE:-rate.tsv}"
}

# measure_rate_tap SYSTEM RULES TRAFFIC: the same frames written into the
# tap tA (VM A's interface in this section) by zw_bench blast --tap, one
# write() per frame as QEMU without vhost does, pinned to CPU 0. tun runs
# XDP on the written buffer before any skb exists, then the stack, all in
# the writer's context: the writer's CPU carries each frame's whole cost on
# the host, the generator's write included (the same in every system). Its
# rate is the frames written per second; CPU: that CPU's time per frame.
measure_rate_tap() {
  local sys=$1 r=$2 traffic=$3 dport=9 out b0 b1 c0 c1
  [ "$traffic" = allowed ] && dport=1000
  b0=$(rx_packets "$NS_B" vB) c0=$(cpu_ticks cpu0)
  out=$(taskset -c 0 nsenter --net="/run/netns/$NS_H" "$ZWB" blast --tap --dev tA --src $A_IP \
    --dst $B_IP --src-mac $A_MAC --dst-mac "$T_A_MAC" --dport $dport --size 60 --seconds "$SECS")
  b1=$(rx_packets "$NS_B" vB) c1=$(cpu_ticks cpu0)
  # sent N frames of S bytes in T s: R pps
  read -r _ n _ _ _ _ _ el _ <<< "$out"
  awk -v s="$sys" -v r="$r" -v t="$traffic" -v n="$n" -v el="$el" -v b="$((b1 - b0))" \
    -v c="$((c1 - c0))" -v hz="$CLK_TCK" \
    'BEGIN { printf "rate\t%s\t%s\t%s\ttap\t%.3f\t%.0f\t%.0f\t%.2f\t%.0f\n", s, r, t, el, n / el, b / el,
             c / hz / el, (n > 0 ? c * 1e9 / hz / n : 0) }' >> "$OUT/${OUT_RATE:-rate.tsv}"
}
cpu_ticks() { awk -v c="$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

# The tap section's topology: tA (a persistent tap) is VM A's interface;
# the route to A's address moves from hA to it, and back after.
tap_on() {
  in_h ip tuntap add dev tA mode tap
  in_h ip link set tA up
  in_h ip route replace $A_IP/32 dev tA
  in_h ip neigh replace $A_IP lladdr $A_MAC dev tA nud permanent
  T_A_MAC=$(mac_of "$NS_H" tA)
  DEV_A=tA
}
tap_off() {
  DEV_A=hA
  in_h ip link del tA 2>/dev/null || true
  in_h ip route replace $A_IP/32 dev hA
}

if [[ ,$ONLY, == *,rate,* ]] || [[ ,$ONLY, == *,tcp,* ]]; then
  topology
fi

# ---- 2. packet rate through veth ------------------------------------------
# Generator and receiver on separate CPUs (ZW_BENCH_SPLIT_CPUS=0: both on
# whatever CPU the generator runs, the older method): the generator is
# pinned to CPU 0; hA gets a NAPI instance (GRO on) run by a kernel thread
# (threaded NAPI) pinned to CPU 1, which XDP on a veth uses, and RPS to
# CPU 1, which every packet veth hands to the stack without NAPI meets.
# Everything a packet meets on the host (XDP, tc, netfilter, forwarding, the
# hop to B) then runs on CPU 1, so each system's cost is its own, not the
# generator's.
SPLIT=${ZW_BENCH_SPLIT_CPUS:-1}
[ "$(nproc)" -ge 2 ] || SPLIT=0
GEN_PIN=()
split_cpus() {  # on|off
  if [ "$1" = on ]; then
    ip netns exec "$NS_H" sh -c 'ethtool -K hA gro on >/dev/null && echo 1 > /sys/class/net/hA/threaded && echo 2 > /sys/class/net/hA/queues/rx-0/rps_cpus'
    GEN_PIN=(taskset -c 0)
  else
    ip netns exec "$NS_H" sh -c 'echo 0 > /sys/class/net/hA/queues/rx-0/rps_cpus; echo 0 > /sys/class/net/hA/threaded; ethtool -K hA gro off >/dev/null' || true
    GEN_PIN=()
  fi
}
pin_napi() {  # the NAPI thread of hA (re-created when XDP comes and goes)
  [ "$SPLIT" = 1 ] || return 0
  local p
  for p in $(pgrep '^napi/hA-' || true); do taskset -p 2 "$p" >/dev/null; done
}
# every system, each rule count, denied and allowed, with the measure
# function given (measure_rate: veth; measure_rate_tap: tap), then the
# first point again: how much the shared machine drifted meanwhile.
rate_systems() {
  local measure=$1 r sys
  setup_filter none; $measure none 0 allowed
  setup_filter xdp-drop; $measure xdp-drop 0 denied
  setup_filter ipt-1; $measure ipt-1 1 denied
  setup_filter nft-1; $measure nft-1 1 denied
  for r in $RULES; do
    for sys in zw-xdp zw-tc nft ipt ipt-legacy; do
      setup_filter $sys "$r"
      $measure $sys "$r" denied
      $measure $sys "$r" allowed
    done
  done
  setup_filter xdp-drop; $measure xdp-drop-again 0 denied
  reset_filters
}

# The systems the rate targets compare, in ROUNDS rounds, one after the
# other in each: the machine's own drift between points (+-20% here over
# seconds) then hits both sides of a ratio alike, and the report takes the
# median of the per-round ratios. Rows go to rate_rounds.tsv (OUT_RATE).
rate_rounds() {
  local measure=$1 round r=${RULES##* }
  for round in $(seq "$ROUNDS"); do
    setup_filter none; $measure none 0 allowed
    setup_filter zw-tc "$r"; $measure zw-tc "$r" allowed
    setup_filter zw-xdp "$r"; $measure zw-xdp "$r" allowed; $measure zw-xdp "$r" denied
    setup_filter xdp-drop; $measure xdp-drop 0 denied
    setup_filter ipt-1; $measure ipt-1 1 denied
    setup_filter nft "$r"; $measure nft "$r" denied
  done
  reset_filters
}

if [[ ,$ONLY, == *,rate,* ]]; then
  log "rate: 64-byte UDP through veth, ${SECS}s per point (generator and receiver on separate CPUs: $SPLIT)"
  [ "$SPLIT" = 1 ] && split_cpus on
  for f in rate.tsv rate_rounds.tsv; do
    printf 'rate\tsystem\trules\ttraffic\tgenerator\tseconds\thost_rx_pps\tvm_rx_pps\trx_cpu_busy\trx_cpu_ns\n' > "$OUT/$f"
  done
  rate_systems measure_rate
  OUT_RATE=rate_rounds.tsv rate_rounds measure_rate
  [ "$SPLIT" = 1 ] && split_cpus off
  log "rate: 64-byte UDP written into a tap (as a VM's frames arrive), ${SECS}s per point"
  tap_on
  rate_systems measure_rate_tap
  OUT_RATE=rate_rounds.tsv rate_rounds measure_rate_tap
  tap_off
fi

# ---- 3. TCP throughput and latency ----------------------------------------
if [[ ,$ONLY, == *,tcp,* ]]; then
  log "tcp: iperf3 ${TCP_SECS}s and request/response ${RR_SECS}s per system, $TCP_ROUNDS rounds"
  printf 'tcp\tround\tsystem\tgbit_s\tretransmits\trr_per_s\tp50_us\tp90_us\tp99_us\tp999_us\tvA_tso\tvA_gso\thA_tso\thA_gso\n' > "$OUT/tcp.tsv"
  nsenter --net="/run/netns/$NS_B" iperf3 -s -p 5201 >/dev/null 2>&1 &
  BG_PIDS+=($!)
  nsenter --net="/run/netns/$NS_B" "$ZWB" rr-server --port 7001 >/dev/null 2>&1 &
  BG_PIDS+=($!)
  sleep 0.5
  feature() { in_ns "$1" ethtool -k "$2" | awk -v f="$3:" '$1==f{print $2}'; }
  # Rounds of every system one after the other, as for the rate: a slow
  # phase of this machine (seconds) then hits one round, and the report
  # takes the median of the per-round ratios.
  for round in $(seq "$TCP_ROUNDS"); do
    for sys in none zw-tc zw-xdp nft; do
      setup_filter $sys 1000
      json=$(in_a iperf3 -c $B_IP -p 5201 -t "$TCP_SECS" -J)
      gbit=$($PY -c 'import json,sys; d=json.load(sys.stdin); print("%.2f %d" % (d["end"]["sum_received"]["bits_per_second"]/1e9, d["end"]["sum_sent"].get("retransmits",0)))' <<< "$json")
      rr=$(in_a "$ZWB" rr-client --host $B_IP --port 7001 --seconds "$RR_SECS")
      # transactions N rate R/s p50_us a p90_us b p99_us c p999_us d
      read -r _ _ _ rate _ p50 _ p90 _ p99 _ p999 <<< "${rr//\/s/}"
      printf 'tcp\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$sys" ${gbit% *} ${gbit#* } "$rate" \
        "$p50" "$p90" "$p99" "$p999" \
        "$(feature "$NS_A" vA tcp-segmentation-offload)" "$(feature "$NS_A" vA generic-segmentation-offload)" \
        "$(feature "$NS_H" hA tcp-segmentation-offload)" "$(feature "$NS_H" hA generic-segmentation-offload)" \
        >> "$OUT/tcp.tsv"
    done
  done
  reset_filters
fi

# ---- 4. control plane ------------------------------------------------------
if [[ ,$ONLY, == *,control,* ]]; then
  log "control: $CTRL_ZONES zones, $CTRL_VMS VMs, $CTRL_RULES rules"
  "$ZWB" apply-time --zones "$CTRL_ZONES" --vms "$CTRL_VMS" --rules "$CTRL_RULES" \
    --pin-dir "$PIN-ctl" --dir "$TMP" > "$OUT/control.tsv"
  # The CLI as users run it, with /usr/bin/time: wall time and peak RSS.
  printf 'cli\tcommand\tvms\texit\tseconds\tmax_rss_kb\tmessage\n' > "$OUT/cli.tsv"
  ip netns add "$ID-c"
  for vms in $(printf "%s\n" 10000 "$CTRL_VMS" | sort -un); do
    "$ZWB" gen --zones "$CTRL_ZONES" --vms "$vms" --rules "$CTRL_RULES" --out "$TMP/cli$vms"
    for cmd in check apply; do
      set +e
      extra=()
      [ $cmd = apply ] && extra=(--pin-dir "$PIN-cli")
      nsenter --net="/run/netns/$ID-c" /usr/bin/time -f '%e %M' -o "$TMP/time" \
        "$ZONEWALL" "${extra[@]}" $cmd "$TMP/cli$vms.policy.json" \
        --inventory "$TMP/cli$vms.inventory.json" > /dev/null 2> "$TMP/cli.err"
      rc=$?
      set -e
      read -r secs rss < <(tail -1 "$TMP/time")
      msg=$(grep -v '^Command exited' "$TMP/cli.err" | grep -iv warning | head -1 | tr '\t' ' ' | cut -c1-160 || true)
      printf 'cli\t%s\t%s\t%s\t%s\t%s\t%s\n' $cmd "$vms" $rc "$secs" "$rss" "$msg" >> "$OUT/cli.tsv"
    done
    nsenter --net="/run/netns/$ID-c" "$ZONEWALL" --pin-dir "$PIN-cli" down >/dev/null 2>&1 || true
  done
  ip netns del "$ID-c"
  log "control: new VM interface -> enforced (daemon, $TAP_TRIALS trials)"
  "$ZWB" tap-latency --trials "$TAP_TRIALS" --pin-dir "$PIN-tap" --dir "$TMP" \
    --zonewall "$ZONEWALL" > "$OUT/taplat.tsv"
  "$ZWB" tap-latency --trials "$TAP_TRIALS" --zones "$CTRL_ZONES" --vms "$CTRL_VMS" \
    --rules "$CTRL_RULES" --pin-dir "$PIN-tap" --dir "$TMP" --zonewall "$ZONEWALL" \
    | tail -n +2 >> "$OUT/taplat.tsv"
  log "control: a libvirt VM that starts -> its tap enforced (daemon on the test driver, $TAP_TRIALS trials)"
  "$ZWB" start-latency --trials "$TAP_TRIALS" --pin-dir "$PIN-start" --dir "$TMP" > "$OUT/startlat.tsv"
  "$ZWB" start-latency --trials "$TAP_TRIALS" --zones "$CTRL_ZONES" --vms "$CTRL_VMS" \
    --rules "$CTRL_RULES" --pin-dir "$PIN-start" --dir "$TMP" | tail -n +2 >> "$OUT/startlat.tsv"
fi

echo "load	$(cut -d' ' -f1-3 /proc/loadavg) (at end)" >> "$OUT/machine.tsv"
[ -f "$SRC/scripts/bench/report.py" ] && $PY "$SRC/scripts/bench/report.py" "$OUT" --mode "$MODE"
log "done: $OUT/report.md"
