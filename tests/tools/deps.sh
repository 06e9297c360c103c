#!/bin/sh
# deps.sh - installs the Debian packages that the build, `make demo` and `make check` need.
# Run by `make deps` (which demo and check run first) and so by .ci/run.
# Silent and quick when everything is present. As root it installs what is missing;
# otherwise it prints the command to run and fails.
#
# apt may upgrade PostgreSQL as a dependency of a missing package. A server running from
# the old binaries then fails to load plpgsql.so, so this must run before any test
# cluster starts. It starts none itself.
set -eu

PKGS="build-essential pkg-config libpq-dev libev-dev libssl-dev openssl libcjson-dev \
libsystemd-dev libcmocka-dev postgresql-15 postgresql-contrib libdbd-pg-perl libio-socket-ssl-perl libjson-xs-perl perl \
valgrind clang libclang-rt-14-dev \
yamllint unzip debhelper \
golang-go"
# lintian (about 140 packages, mostly Perl) only where the Debian package test
# runs (tests/integ/93-deb.t with NVSRELAY_TEST_DEB=1, as .ci/run does).
if [ "${NVSRELAY_TEST_DEB:-0}" = 1 ]; then PKGS="$PKGS lintian"; fi
# mmdebstrap builds the image's base, umoci checks its layout: only where
# the image test runs (tests/integ/88-image.t with NVSRELAY_TEST_IMAGE=1).
if [ "${NVSRELAY_TEST_IMAGE:-0}" = 1 ]; then PKGS="$PKGS mmdebstrap umoci"; fi

command -v dpkg-query >/dev/null 2>&1 || {
	echo "deps: dpkg-query not found; install by hand: $PKGS" >&2
	exit 1
}

missing() {
	m=
	for p in $PKGS; do
		s=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
		[ "$s" = installed ] || m="$m $p"
	done
	echo "${m# }"
}

miss=$(missing)
[ -z "$miss" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages: $miss" >&2
	echo "sudo apt-get install -y --no-install-recommends $miss"
	exit 1
fi

echo "deps: installing: $miss"
apt-get update
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $miss

miss=$(missing)
[ -z "$miss" ] || { echo "deps: still missing after install: $miss" >&2; exit 1; }
