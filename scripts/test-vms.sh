#!/usr/bin/env bash
# One command for the real-VM test: installs what is missing (scripts/setup.sh
# plus QEMU, libvirtd, busybox-static, kmod, cpio), builds zonewall, builds the
# guest kernel + initramfs from Debian packages (cached in BUILD/vm), and runs
# tests/vm/test_real_vms.sh: three QEMU guests (TCG, no KVM needed) under
# libvirtd on an isolated bridge, with zonewall enforcing a zone policy
# between them. See docs/real-vms.md.
#
#   sudo scripts/test-vms.sh            # everything
#   sudo scripts/test-vms.sh --no-setup # skip package installation
#
# Environment: ZW_BUILD_DIR (default build), ZW_VM_KEEP_LOGS=1 (keep the
# test's logs in /tmp/zw-vm.* on success too).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${ZW_BUILD_DIR:-$ROOT/build}
SETUP=1
for a in "$@"; do
	case $a in
	--no-setup) SETUP=0 ;;
	-h | --help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "test-vms.sh: unknown argument '$a'" >&2; exit 2 ;;
	esac
done
[[ $(id -u) -eq 0 ]] || { echo "test-vms.sh: run as root (libvirtd, taps, bpffs)" >&2; exit 1; }

t0=$(date +%s)
step() { printf '\n== %s (%ds)\n' "$*" $(($(date +%s) - t0)); }

# Beyond scripts/setup.sh: the emulator and libvirt's QEMU driver (not
# libvirt-daemon-system: it would autostart a NAT network), the guest userland
# and the tools that make the initramfs.
VM_PKGS=(qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
	busybox-static kmod cpio gzip)
if ((SETUP)); then
	step "setup"
	"$ROOT/scripts/setup.sh"
	missing=()
	for p in "${VM_PKGS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if ((${#missing[@]})); then
		echo "test-vms.sh: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
fi

step "build zonewall ($BUILD)"
cmake -S "$ROOT" -B "$BUILD" >/dev/null
cmake --build "$BUILD" -j2 --target zonewall

step "guest image ($BUILD/vm)"
"$ROOT/scripts/vm/build-guest.sh" "$BUILD/vm"

step "tests/vm/test_real_vms.sh"
rc=0
ZONEWALL=$BUILD/zonewall ZW_VM_IMAGE_DIR=$BUILD/vm ZW_REQUIRE_PRIVILEGED=1 \
	bash "$ROOT/tests/vm/test_real_vms.sh" || rc=$?
step "done, exit $rc"
exit "$rc"
