#!/bin/sh
# build.sh - the nvsrelayd OCI image, offline from the project's Debian
# package and Debian's own packages: no registry, no Dockerfile.  Run by
# `make image` after `make deb`.
#
#   build.sh DEBDIR OUTDIR VERSION
#
# The base is the run-time dependencies of nvsrelayd_*.deb (its Depends,
# without the sysusers one a container has no use for), unpacked by
# mmdebstrap --variant=extract from the Debian archive: no shell, no package
# manager, no maintainer scripts.  It is cached as a tar in IMAGE_CACHE,
# keyed by suite, mirrors, architecture and package list, so a rebuild does
# not download again and reuses the same bytes.  On top: the package's
# files (nvsrelayd, nvsrelay, the commented nvsrelayd.conf), a passwd and
# group with the nvsrelayd user (65532), hosts, an empty /tmp and
# /run/nvsrelayd.
#
# Reproducible: every mtime is SOURCE_DATE_EPOCH (from the caller, else
# the last commit), the layer is a sorted tar with numeric owners and no
# atime/ctime, gzip -n, and the JSON is written byte for byte here; the same
# package and the same base give the same image digest.  For the same base
# years later, point IMAGE_MIRROR at snapshot.debian.org.
#
# Output in OUTDIR: oci/ (an OCI image layout, tag VERSION), nvsrelayd.oci.tar
# (the same as one archive: `podman load -i`, `skopeo copy oci-archive:...`),
# and digest (the manifest digest).
#
# Environment: IMAGE_SUITE (bookworm), IMAGE_MIRROR (deb.debian.org), IMAGE_CACHE
# (OUTDIR/../image-base).  Needs root or fakeroot for the layer's owners.
set -eu

[ $# -eq 3 ] || { echo "usage: build.sh DEBDIR OUTDIR VERSION" >&2; exit 64; }
debdir=$1
out=$2
version=$3
suite=${IMAGE_SUITE:-bookworm}
mirror=${IMAGE_MIRROR:-http://deb.debian.org/debian}
secmirror=${IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
cache=${IMAGE_CACHE:-$(dirname "$out")/image-base}
uid=65532

die() { echo "build.sh: $*" >&2; exit 1; }

for t in mmdebstrap dpkg-deb tar gzip sha256sum; do
	command -v "$t" >/dev/null 2>&1 || die "$t not installed (apt-get install mmdebstrap)"
done
arch=$(dpkg --print-architecture)
deb=$(ls "$debdir"/nvsrelayd_"$version"_"$arch".deb 2>/dev/null) || die "no nvsrelayd_${version}_$arch.deb in $debdir (make deb)"

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null) || SOURCE_DATE_EPOCH=
	[ -n "$SOURCE_DATE_EPOCH" ] || die "SOURCE_DATE_EPOCH unset and no git history to take it from"
fi
export SOURCE_DATE_EPOCH
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)

case $arch in
i386) ociarch=386 ;;
armhf) ociarch=arm ;;
*) ociarch=$arch ;;
esac

# ---- the base ------------------------------------------------------------------
# Depends: first alternative of each group, versions dropped; the
# "systemd | ... sysusers" group is for the package's postinst.
pkgs=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | grep -v sysusers | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' |
	grep . | sort -u | tr '\n' ',' | sed 's/,$//')
sources="deb $mirror $suite main
deb $mirror $suite-updates main
deb $secmirror $suite-security main"
key=$(printf '%s\n%s\n%s\n%s\n' "$suite" "$arch" "$pkgs" "$sources" | sha256sum | cut -c1-16)
base=$cache/base-$suite-$arch-$key.tar
mkdir -p "$cache"
if [ ! -f "$base" ]; then
	echo "build.sh: base $suite $arch: $pkgs"
	printf '%s\n' "$sources" >"$cache/sources.$key"
	mmdebstrap --quiet --variant=extract --architectures="$arch" --include="$pkgs" \
		--format=tar "$suite" "$base.tmp" "$cache/sources.$key"
	rm -f "$cache/sources.$key"
	mv "$base.tmp" "$base"
fi

# ---- the root filesystem ---------------------------------------------------------
# Owners matter in the layer: without root, the rest runs under fakeroot.
if [ "$(id -u)" != 0 ] && [ -z "${FAKEROOTKEY:-}" ]; then
	command -v fakeroot >/dev/null 2>&1 || die "needs root or fakeroot for the layer's file owners"
	exec fakeroot "$0" "$@"
fi

rm -rf "$out"
mkdir -p "$out/oci/blobs/sha256"
root=$out/rootfs
mkdir "$root"
# Device nodes come from the container runtime.
tar -C "$root" --exclude='./dev/*' -xf "$base"
dpkg-deb -x "$deb" "$root"
# No systemd, no man pages, no package state in a container; the copyright
# files stay.
rm -rf "$root/lib/systemd" "$root/usr/lib/sysusers.d" "$root/usr/share/man" "$root/usr/share/info" \
	"$root/usr/share/locale" "$root/usr/share/lintian" "$root/var/cache/"* "$root/var/lib/apt" \
	"$root/var/log/"* "$root/etc/apt" "$root/etc/hostname" "$root/etc/resolv.conf"
find "$root/usr/share/doc" -type f ! -name copyright -exec rm -f {} + 2>/dev/null || true
find "$root/usr/share/doc" -type l -exec rm -f {} + 2>/dev/null || true
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnvsrelayd:x:%s:%s:nvsrelayd:/nonexistent:/usr/sbin/nologin\n' \
	$uid $uid >"$root/etc/passwd"
printf 'root:x:0:\nnvsrelayd:x:%s:\n' $uid >"$root/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
# Runtimes mount their own over it; this one makes localhost resolve anywhere.
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
mkdir -p "$root/tmp" "$root/run/nvsrelayd" "$root/etc/nvsrelayd"
chmod 1777 "$root/tmp"
chown $uid:$uid "$root/run/nvsrelayd"
chmod 0750 "$root/run/nvsrelayd"
# The configuration is readable by the user the image runs as (it holds no
# secret: the password comes from DATASTORE_PASSWORD).
chown 0:$uid "$root/etc/nvsrelayd/nvsrelayd.conf"
chmod 0640 "$root/etc/nvsrelayd/nvsrelayd.conf"
find "$root" -depth -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# ---- the layer -------------------------------------------------------------------
tar -C "$root" --sort=name --numeric-owner --format=posix \
	--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	--mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime -cf "$out/layer.tar" .
diffid=$(sha256sum "$out/layer.tar" | cut -d' ' -f1)
gzip -n -9 "$out/layer.tar"

# blob FILE: moves FILE into the layout under its digest; sets dig and size.
blob() {
	dig=$(sha256sum "$1" | cut -d' ' -f1)
	size=$(wc -c <"$1" | tr -d ' ')
	mv "$1" "$out/oci/blobs/sha256/$dig"
}
blob "$out/layer.tar.gz"
ldig=$dig lsize=$size

revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
labels="\"org.opencontainers.image.title\":\"nvsrelayd\",\"org.opencontainers.image.version\":\"$version\",\"org.opencontainers.image.revision\":\"$revision\",\"org.opencontainers.image.created\":\"$created\",\"org.opencontainers.image.licenses\":\"Apache-2.0\""
printf '%s' "{\"architecture\":\"$ociarch\",\"os\":\"linux\",\"created\":\"$created\",\"config\":{\"User\":\"$uid:$uid\",\"Env\":[\"PATH=/usr/sbin:/usr/bin:/sbin:/bin\",\"NVSRELAY_ADMIN_SOCKET=/run/nvsrelayd/admin.sock\"],\"Entrypoint\":[\"/usr/sbin/nvsrelayd\"],\"Cmd\":[\"--config\",\"/etc/nvsrelayd/nvsrelayd.conf\"],\"WorkingDir\":\"/\",\"ExposedPorts\":{\"9187/tcp\":{}},\"StopSignal\":\"SIGTERM\",\"Labels\":{$labels}},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"sha256:$diffid\"]},\"history\":[{\"created\":\"$created\",\"created_by\":\"make image: Debian $suite ($pkgs) + nvsrelayd_${version}_$arch.deb\"}]}" \
	>"$out/config.json"
blob "$out/config.json"
cdig=$dig csize=$size

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$cdig\",\"size\":$csize},\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$ldig\",\"size\":$lsize}],\"annotations\":{$labels}}" \
	>"$out/manifest.json"
blob "$out/manifest.json"
mdig=$dig msize=$size

printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$mdig\",\"size\":$msize,\"annotations\":{\"org.opencontainers.image.ref.name\":\"$version\"}}]}" \
	>"$out/oci/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$out/oci/oci-layout"
find "$out/oci" -depth -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
tar -C "$out/oci" --sort=name --owner=0 --group=0 --numeric-owner --format=posix \
	--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	--mtime="@$SOURCE_DATE_EPOCH" -cf "$out/nvsrelayd.oci.tar" .
echo "sha256:$mdig" >"$out/digest"
rm -rf "$root"
echo "image nvsrelayd:$version sha256:$mdig ($out/oci, $out/nvsrelayd.oci.tar)"
