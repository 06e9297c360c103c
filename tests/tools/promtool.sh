#!/bin/sh
# promtool.sh - prints the path of a promtool binary, for the metrics checks of the
# integration tests (tests/integ/90-ops.t).  Uses promtool from PATH when there is one;
# otherwise takes it from Debian's prometheus package without installing it (installing
# would start a Prometheus server from the postinst): `apt-get download` + `dpkg-deb -x`,
# cached under build/tools/ so later runs are instant.  Exits 1, printing why on stderr,
# when none can be had (no network, no apt); callers then skip the check.
#
#   tests/tools/promtool.sh [CACHE_DIR]       (default: <repo>/build/tools)
set -eu

if command -v promtool >/dev/null 2>&1; then
	command -v promtool
	exit 0
fi

root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${1:-$root/build/tools}
bin=$cache/prometheus/usr/bin/promtool

if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

command -v apt-get >/dev/null 2>&1 || { echo "promtool: no apt-get here" >&2; exit 1; }
mkdir -p "$cache"
# One download at a time: two tests may ask at once.
exec 9>"$cache/.promtool.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9
fi
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi

tmp=$(mktemp -d "$cache/promtool.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# apt-get download writes into the current directory; as root it hands the download to
# the _apt user, which must be able to write there.
chmod 777 "$tmp"
if ! (cd "$tmp" && apt-get download -q prometheus >"$tmp/log" 2>&1); then
	echo "promtool: apt-get download prometheus failed:" >&2
	tail -n 3 "$tmp/log" >&2
	exit 1
fi
deb=$(ls "$tmp"/prometheus_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || { echo "promtool: no prometheus .deb downloaded" >&2; exit 1; }
rm -rf "$cache/prometheus.new"
dpkg-deb -x "$deb" "$cache/prometheus.new"
[ -x "$cache/prometheus.new/usr/bin/promtool" ] || { echo "promtool: not in $deb" >&2; exit 1; }
# Only promtool is kept (the server binary is most of the 19 MB).
mkdir -p "$cache/prometheus/usr/bin"
mv "$cache/prometheus.new/usr/bin/promtool" "$bin"
rm -rf "$cache/prometheus.new"
echo "$bin"
