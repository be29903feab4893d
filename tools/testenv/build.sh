#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Build (or reuse) the test control plane binaries: kube-apiserver, etcd, helm; and, for the
# node (scripts/testnode), kubelet, kube-controller-manager, kube-scheduler, kube-proxy, the CNI
# plugins (one directory: bridge, host-local, loopback) and the pause program.
#
#   tools/testenv/build.sh [kube-apiserver[@VERSION]|etcd|helm|NODE BINARY ...]   # default: the first three
#   tools/testenv/build.sh node                      # all node binaries
#
# kube-apiserver is KUBE_VERSION unless @VERSION names another of KUBE_VERSIONS; its module is
# kube-apiserver/v1.<minor>/go.mod with the shared kube-apiserver/main.go.
# Binaries are cached outside the repo, keyed by version:
#   ${PGPART_CACHE:-$HOME/.cache/pgpart}/bin/<name>-<version>
# so only the first run pays for the (slow: ~4-5 min per kube-apiserver on 2 cores) build.
# Prints one "name=path" line per binary on stdout; logs go to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$go" ] || { echo "testenv build: no go toolchain (set GO=/path/to/go)" >&2; exit 1; }
bindir=${PGPART_CACHE:-$HOME/.cache/pgpart}/bin
mkdir -p "$bindir"

# Module release time from the module cache: a reproducible "build date".
release_time() { # module@version
  "$go" mod download -json "$1" | python3 -c 'import json,sys
d=json.load(sys.stdin); print(json.load(open(d["Info"]))["Time"])'
}

build_one() { # name[@version]
  local name=${1%@*} version pkg ldflags src lock
  # One build of a binary at a time (parallel test runs share the cache), held from the staging
  # below to the cache check: a run that finds its binaries built never waits for another's.
  local key=$1
  [ "$key" != kube-apiserver ] || key=kube-apiserver@$KUBE_VERSION
  exec {lock}>"$bindir/.build-$key.lock"
  flock "$lock"
  case $name in
    kube-apiserver)
      version=$KUBE_VERSION pkg=.
      [[ $1 != *@* ]] || version=${1#*@}
      [[ " $KUBE_VERSIONS " == *" $version "* ]] ||
        { echo "testenv build: kube-apiserver $version is not in KUBE_VERSIONS ($KUBE_VERSIONS)" >&2; return 1; }
      local minor=${version#v1.}; minor=${minor%%.*}
      # go build needs main.go beside the go.mod: stage both in the cache.
      src=${PGPART_CACHE:-$HOME/.cache/pgpart}/src/kube-apiserver-$version
      rm -rf "$src" && mkdir -p "$src" &&
        cp "$here/$name/main.go" "$here/$name/v1.$minor/go.mod" "$here/$name/v1.$minor/go.sum" "$src/" || return 1
      grep -qF "for k8s.io/kubernetes $version." "$src/go.mod" ||
        { echo "testenv build: $name/v1.$minor/go.mod is not for $version: run tools/testenv/gen-replaces.sh $version" >&2; return 1; }
      local v=k8s.io/component-base/version
      ldflags="-X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor"
      ldflags+=" -X $v.gitTreeState=clean -X $v.gitCommit="
      ldflags+=" -X $v.buildDate=$(cd "$src" && release_time "k8s.io/kubernetes@$version")" ;;
    etcd)
      version=$ETCD_VERSION pkg=.
      ldflags="-X go.etcd.io/etcd/api/v3/version.GitSHA=unknown" ;; # Version is a const
    kubelet | kube-controller-manager | kube-scheduler | kube-proxy)
      # The node runs the newest release only: kube-node/go.mod (gen-replaces.sh --node).
      version=$KUBE_VERSION pkg=k8s.io/kubernetes/cmd/$name src=$here/kube-node
      grep -qF "for k8s.io/kubernetes $version." "$src/go.mod" ||
        { echo "testenv build: kube-node/go.mod is not for $version: run tools/testenv/gen-replaces.sh --node" >&2; return 1; }
      local minor=${version#v1.}; minor=${minor%%.*} v=k8s.io/component-base/version
      ldflags="-X $v.gitVersion=$version -X $v.gitMajor=1 -X $v.gitMinor=$minor"
      ldflags+=" -X $v.gitTreeState=clean -X $v.gitCommit=" ;;
    cni)
      # Three plugins into one directory, the layout CNI's bin_dir wants.
      version=$(awk '$1 == "github.com/containernetworking/plugins" {print $2}' "$here/cni/go.mod")
      pkg="github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/main/loopback github.com/containernetworking/plugins/plugins/ipam/host-local"
      ldflags= ;;
    pause)
      version=1 pkg=. ldflags= ;;
    helm)
      version=$HELM_VERSION pkg=helm.sh/helm/v3/cmd/helm
      local v=helm.sh/helm/v3/internal/version
      ldflags="-X $v.version=$HELM_VERSION -X $v.gitTreeState=clean" ;;
    *) echo "testenv build: unknown binary '$name'" >&2; return 1 ;;
  esac
  src=${src:-$here/$name}
  local out=$bindir/$name-$version stamp
  # The name carries the version; the stamp catches other input changes (go.sum, flags).
  stamp=$(cd "$src" && cat go.mod $(ls go.sum ./*.go 2>/dev/null) | sha256sum | cut -c1-16)-$(echo "$ldflags" | sha256sum | cut -c1-16)
  if [ ! -x "$out" ] || [ "$(cat "$out.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "testenv build: building $name $version (a cold kube-apiserver takes 4-5 min)..." >&2
    local start=$SECONDS tmp=$out.tmp.$$
    # Several packages build into a directory (go build -o DIR/).
    [[ $pkg != *" "* ]] || { rm -rf "$tmp" && mkdir -p "$tmp" && tmp=$tmp/; }
    # shellcheck disable=SC2086 # pkg may list several packages
    (cd "$src" &&
      GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
        "$go" build -trimpath -pgo=off -ldflags "-s -w $ldflags" -o "$tmp" $pkg) ||
      { rm -rf "$out.tmp.$$"; echo "testenv build: FAILED to build $name $version" >&2; return 1; }
    rm -rf "$out"
    mv -f "$out.tmp.$$" "$out"
    echo "$stamp" >"$out.stamp"
    echo "testenv build: built $name $version in $((SECONDS - start))s -> $out" >&2
  fi
  exec {lock}>&-
  echo "$name=$out"
}

names=("$@")
[ $# -gt 0 ] || names=(kube-apiserver etcd helm)
[ "${names[*]}" != node ] || names=(kubelet kube-controller-manager kube-scheduler kube-proxy cni pause)
for name in "${names[@]}"; do build_one "$name"; done
