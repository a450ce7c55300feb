#!/usr/bin/env bash
# Builds the test guest for tests/vm/test_real_vms.sh from Debian packages
# only: a Debian kernel (not installed on the host), the virtio-net modules it
# needs, busybox-static as the whole userland and scripts/vm/guest-init as /init.
#
#   scripts/vm/build-guest.sh OUTDIR
#
# OUTDIR gets vmlinuz, initrd.img (gzip'd newc cpio), kernel-version and a
# stamp; a second run with the same inputs does nothing. Needs: apt-get (for
# `apt-get download`; the package lists must be current), dpkg-deb, depmod and
# modprobe (kmod), cpio, gzip, busybox-static. No root needed.
#
# Environment:
#   ZW_GUEST_KERNEL_PKG  Debian kernel package to download (default: what
#                        linux-image-cloud-amd64 depends on: a small kernel
#                        for VMs, fast to boot under TCG)
#   ZW_GUEST_KERNEL_DEB  an already downloaded kernel .deb to use instead
#   ZW_GUEST_KERNEL_VERSION  use the kernel installed on this host instead:
#                        /boot/vmlinuz-VERSION and /lib/modules/VERSION
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
INIT=$HERE/guest-init
BUSYBOX=/bin/busybox
# Loaded in this order's dependency closure (modprobe --show-depends).
MODULES=(virtio_pci virtio_net)

die() { echo "build-guest: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 OUTDIR"
OUT=$1
for t in dpkg-deb depmod modprobe cpio gzip sha256sum; do
	command -v "$t" >/dev/null || die "needs '$t' (apt-get install kmod cpio gzip dpkg)"
done
# (grep without -q: an early exit would SIGPIPE busybox and fail the pipe.)
if [[ ! -x $BUSYBOX ]] || ! "$BUSYBOX" --list | grep -x httpd >/dev/null; then
	die "needs busybox-static ($BUSYBOX with httpd): apt-get install busybox-static"
fi
[[ $(ldd "$BUSYBOX" 2>&1 || true) == *"not a dynamic"* ]] || die "$BUSYBOX is not static: apt-get install busybox-static"
[[ -r $INIT ]] || die "missing $INIT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Which kernel.
src_desc=""
if [[ -n ${ZW_GUEST_KERNEL_VERSION:-} ]]; then
	KVER=$ZW_GUEST_KERNEL_VERSION
	src_desc="host /boot/vmlinuz-$KVER"
elif [[ -n ${ZW_GUEST_KERNEL_DEB:-} ]]; then
	DEB=$(realpath "$ZW_GUEST_KERNEL_DEB")
	src_desc="deb $(basename "$DEB")"
else
	PKG=${ZW_GUEST_KERNEL_PKG:-}
	# Stale or missing package lists (a reused machine): refresh once.
	if [[ -z $PKG ]] && ! apt-cache depends linux-image-cloud-amd64 2>/dev/null | grep -q 'Depends: linux-image-[0-9]'; then
		apt-get update -qq || true
	fi
	if [[ -z $PKG ]]; then
		PKG=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
			awk '/Depends: linux-image-[0-9]/ && !n++ {print $2}')
		[[ -n $PKG ]] || die "cannot resolve linux-image-cloud-amd64 (run apt-get update)"
	fi
	PKGVER=$(apt-cache policy "$PKG" | awk '/Candidate:/ {print $2}')
	[[ -n $PKGVER && $PKGVER != "(none)" ]] || die "no candidate version for $PKG (run apt-get update)"
	src_desc="pkg $PKG=$PKGVER"
fi

stamp="$src_desc|$(sha256sum "$INIT" "${BASH_SOURCE[0]}" "$BUSYBOX" | awk '{print $1}' | tr '\n' ' ')"
if [[ -r $OUT/stamp && $(cat "$OUT/stamp") == "$stamp" && -s $OUT/vmlinuz && -s $OUT/initrd.img ]]; then
	echo "build-guest: $OUT is up to date ($src_desc)"
	exit 0
fi

WORK=$(mktemp -d /tmp/zw-guest-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# Kernel image + module tree in $KROOT (the host's /boot is never written).
if [[ -n ${ZW_GUEST_KERNEL_VERSION:-} ]]; then
	KROOT=/
	VMLINUZ=/boot/vmlinuz-$KVER
	[[ -r $VMLINUZ && -d /lib/modules/$KVER ]] || die "no $VMLINUZ or /lib/modules/$KVER"
else
	if [[ -z ${DEB:-} ]]; then
		DEB=$OUT/$PKG.deb
		if [[ ! -s $DEB || $(dpkg-deb -f "$DEB" Version 2>/dev/null) != "$PKGVER" ]]; then
			echo "build-guest: apt-get download $PKG=$PKGVER"
			# -o APT::Sandbox::User=root: _apt may not write to $WORK.
			if ! (cd "$WORK" && apt-get -q -o APT::Sandbox::User=root download "$PKG=$PKGVER"); then
				echo "build-guest: download failed; refreshing package lists and retrying"
				apt-get update -qq || true
				PKGVER=$(apt-cache policy "$PKG" | awk '/Candidate:/ {print $2}')
				(cd "$WORK" && apt-get -q -o APT::Sandbox::User=root download "$PKG=$PKGVER") ||
					die "apt-get download $PKG failed"
			fi
			mv "$WORK"/"$PKG"_*.deb "$DEB"
		fi
	fi
	KROOT=$WORK/kernel
	dpkg-deb -x "$DEB" "$KROOT"
	vm=("$KROOT"/boot/vmlinuz-*)
	VMLINUZ=${vm[0]}
	[[ -r $VMLINUZ ]] || die "no /boot/vmlinuz-* in $DEB"
	KVER=${VMLINUZ##*/vmlinuz-}
	# The .deb has no modules.dep (postinst makes it): make it in the copy.
	depmod -b "$KROOT" "$KVER"
fi
grep -qs '^CONFIG_IPV6=y' "$KROOT/boot/config-$KVER" ||
	echo "build-guest: warning: CONFIG_IPV6 is not built in (=y) in $KVER; IPv6 probes need it" >&2

# The initramfs tree.
R=$WORK/root
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,www,etc,root,lib/modules/"$KVER"}
cp "$BUSYBOX" "$R/bin/busybox"
while read -r applet; do
	[[ -e $R/$applet ]] || ln -s /bin/busybox "$R/$applet"
done < <("$BUSYBOX" --list-full)
install -m 0755 "$INIT" "$R/init"

# Modules with their exact paths, and the insmod order (dependencies first).
: >"$R/etc/zw-modules"
for m in "${MODULES[@]}"; do
	modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" >"$WORK/deps" 2>&1 ||
		die "modprobe --show-depends $m: $(cat "$WORK/deps")"
	while read -r kind path _; do
		[[ $kind == insmod ]] || continue   # "builtin NAME": nothing to load
		rel=${path#"$KROOT"}
		rel=/${rel#/}
		rel=${rel//\/\//\/}
		grep -qxF "$rel" "$R/etc/zw-modules" && continue
		mkdir -p "$R$(dirname "$rel")"
		cp "$path" "$R$rel"
		echo "$rel" >>"$R/etc/zw-modules"
	done <"$WORK/deps"
done
echo "root:x:0:0:root:/root:/bin/sh" >"$R/etc/passwd"
echo "root:x:0:" >"$R/etc/group"

(cd "$R" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --owner=0:0 --quiet) |
	gzip -6 >"$WORK/initrd.img"
cp "$VMLINUZ" "$WORK/vmlinuz"
# World-readable: QEMU may run as another user.
chmod 0644 "$WORK/vmlinuz" "$WORK/initrd.img"
mv "$WORK/vmlinuz" "$WORK/initrd.img" "$OUT/"
echo "$KVER" >"$OUT/kernel-version"
cp "$R/etc/zw-modules" "$OUT/modules"
echo "$stamp" >"$OUT/stamp"
echo "build-guest: $OUT: kernel $KVER ($src_desc), initrd $(du -h "$OUT/initrd.img" | cut -f1)," \
	"modules: $(xargs -n1 basename <"$OUT/modules" | tr '\n' ' ')"
