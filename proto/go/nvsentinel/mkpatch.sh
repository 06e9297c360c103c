#!/bin/sh
# mkpatch.sh CHECKOUT - rewrites 0001-*.patch so that its copy of the Go
# client and provider matches proto/go.  CHECKOUT is a clean NVSentinel
# checkout of the commit the patch names (see proto/go/README.md); it is
# left clean again.
set -eu
[ $# -eq 1 ] || { echo "usage: $0 NVSENTINEL_CHECKOUT" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
patch=$(ls "$here"/0001-*.patch)
cd "$1"
git diff --quiet HEAD || { echo "$1: not clean" >&2; exit 1; }
git apply "$patch"
dst=store-client/pkg/nvsrelay
cp "$src/nvsrelay.go" "$dst/nvsrelay.go"
for f in provider event pipeline; do
	sed 's#"nvsrelay.local/nvsrelay"#"github.com/nvidia/nvsentinel/store-client/pkg/nvsrelay"#' \
		"$src/nvsprovider/$f.go" >"$dst/nvsprovider/$f.go"
done
git add -A
git diff --cached >"$patch.tmp"
git reset -q --hard
git clean -qfd
mv "$patch.tmp" "$patch"
echo "wrote $patch"
