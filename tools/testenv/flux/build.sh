#!/usr/bin/env bash
# Build (or reuse) Flux's source-controller, kustomize-controller and helm-controller from Go
# modules, and gitserve (git smart HTTP for tests). One module: go.mod pins
# the controllers with `tool` lines and carries the replaces of their own go.mod files (plus
# one of ours, see go.mod). The CRDs of the built controllers are copied beside them.
#
#   tools/testenv/flux/build.sh [NAME...]   # NAME: source-controller kustomize-controller
#                                           # helm-controller gitserve (default: all four)
#
# Output: ${PGPART_CACHE:-~/.cache/pgpart}/bin/flux-<hash of go.mod, go.sum, gitserve>/
# {NAME, crds/*.yaml}; only the first run pays (cold, 2 cores: source-controller 5.5-7 min,
# then kustomize-controller ~1.5 min more, helm-controller ~0.5 min, gitserve seconds).
# Prints "dir=OUTDIR"; logs go to stderr.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
names=("$@")
[ $# -gt 0 ] || names=(source-controller kustomize-controller helm-controller gitserve)
stamp=$(cat "$here/go.mod" "$here/go.sum" "$here/gitserve/main.go" | sha256sum | cut -c1-16)
out=${PGPART_CACHE:-$HOME/.cache/pgpart}/bin/flux-$stamp
mkdir -p "$out/crds"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
for name in "${names[@]}"; do
  case $name in
    gitserve) pkg=./gitserve ;;
    source-controller | kustomize-controller | helm-controller) pkg=github.com/fluxcd/$name ;;
    *) echo "flux build: unknown binary '$name'" >&2; exit 1 ;;
  esac
  if [ ! -x "$out/$name" ]; then
    start=$SECONDS
    echo "flux build: building $name (cold source-controller: 5.5-7 min)..." >&2
    (cd "$here" && go build -trimpath -pgo=off -ldflags "-s -w" -o "$out/$name.tmp.$$" "$pkg") ||
      { rm -f "$out/$name.tmp.$$"; echo "flux build: FAILED to build $name" >&2; exit 1; }
    mv -f "$out/$name.tmp.$$" "$out/$name"
    echo "flux build: built $name in $((SECONDS - start))s" >&2
  fi
  if [ "$name" != gitserve ]; then
    mod=$(cd "$here" && go list -m -f '{{.Dir}}' "github.com/fluxcd/$name")
    cp "$mod"/config/crd/bases/*.yaml "$out/crds/"
  fi
done
echo "dir=$out"
