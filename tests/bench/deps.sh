#!/bin/sh
# deps.sh - the packages `make bench` needs beyond `make deps`: gnuplot-nox
# for the plots.  Run by `make bench`; quick and silent when present.  As
# root it installs what is missing; otherwise it prints the command and goes
# on (bench.pl then writes the tables without plots).
set -eu

PKGS="gnuplot-nox"

missing() {
	m=
	for p in $PKGS; do
		s=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
		[ "$s" = installed ] || m="$m $p"
	done
	echo "${m# }"
}

command -v dpkg-query >/dev/null 2>&1 || exit 0
miss=$(missing)
[ -z "$miss" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "bench deps: missing $miss (plots are skipped); to install:" >&2
	echo "sudo apt-get install -y --no-install-recommends $miss" >&2
	exit 0
fi
echo "bench deps: installing: $miss"
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $miss ||
	{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $miss; }
