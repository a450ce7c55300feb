#!/usr/bin/env bash
# Builds the Debian package into build-pkg/: a Release build of the tree
# (tests off), man pages and bash completion generated from the binary,
# then CPack's DEB generator (dpkg-shlibdeps fills Depends). Runs lintian
# when it is installed and prints what it reports.
#
#   scripts/package.sh [--version VERSION] [--build-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=build-pkg
VERSION=""
while (($#)); do
	case $1 in
	--version) VERSION=$2; shift 2 ;;
	--build-dir) BUILD_DIR=$2; shift 2 ;;
	-h | --help) sed -n '2,8p' "$0"; exit 0 ;;
	*) echo "package.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
done

for tool in cmake ninja cpack dpkg-deb dpkg-shlibdeps dpkg-buildflags; do
	command -v "$tool" >/dev/null || {
		echo "package.sh: needs '$tool' (run scripts/setup.sh)" >&2
		exit 1
	}
done

# Debian's hardening flags (fortify, stack protector, relro, bindnow).
CXXFLAGS="$(dpkg-buildflags --get CXXFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
LDFLAGS="$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get LDFLAGS)"
export CXXFLAGS LDFLAGS
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
	-DCMAKE_INSTALL_PREFIX=/usr >/dev/null
cmake --build "$BUILD_DIR" -j"$(nproc)"
(cd "$BUILD_DIR" && ZW_PACKAGE_VERSION=$VERSION cpack -G DEB)
deb=$(ls -t "$BUILD_DIR"/zonewall_*.deb | head -1)
echo "package.sh: built $deb"
dpkg-deb --field "$deb" Package Version Depends

if command -v lintian >/dev/null; then
	echo "package.sh: lintian $deb"
	lintian -I --tag-display-limit 0 "$deb" || true
else
	echo "package.sh: lintian not installed (apt-get install lintian) — skipped"
fi
