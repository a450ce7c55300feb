#!/usr/bin/env bash
# Installs every Debian package zonewall's build, tests, demo and benchmarks
# need, and mounts bpffs. Idempotent: installs only what is missing.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git
  clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev
  libnl-3-dev libnl-route-3-dev nlohmann-json3-dev libcli11-dev
  libvirt-dev libxml2-dev libvirt-clients libvirt-daemon
  libgtest-dev libgmock-dev libcpp-httplib-dev prometheus
  clang-16 libclang-rt-16-dev ninja-build
  iproute2 iputils-ping ethtool netcat-openbsd socat tcpdump iperf3 util-linux
  python3 python3-scapy python3-pytest python3-matplotlib time
  nftables iptables netsniff-ng
  qemu-system-x86 libvirt-daemon-driver-qemu busybox-static kmod cpio
  dpkg-dev file man-db passwd
  etcd-server etcd-client libcurl4-openssl-dev libssl-dev
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (installs packages, mounts bpffs)" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! mount | grep -q ' /sys/fs/bpf type bpf'; then
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf
fi
echo "setup.sh: dependencies present, bpffs mounted"
