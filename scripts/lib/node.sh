# shellcheck shell=bash source-path=SCRIPTDIR
# A real Kubernetes node beside the control plane of kube.sh: containerd (runc), the kubelet,
# kube-controller-manager, kube-scheduler, kube-proxy (iptables mode, so the `kubernetes`
# Service works from a pod) and CNI on a local bridge, with a pause image built here.
# scripts/testenv uses it when PGPART_TESTENV_NODE=1. Source this file:
#
#   node_build                # build/cache the binaries (tools/testenv/build.sh node)
#   node_net_up DIR/node      # the bridge
#   kube_up DIR/kube          # with KUBE_UP_NODE_IP=$NODE_IP exported (see kube.sh)
#   node_up DIR/node DIR/kube # start the node; exports NODE_*; writes DIR/node/env
#   node_down DIR/node        # stop it and undo every host change it made
#
# Everything stays on this machine: the bridge (NODE_BRIDGE, NODE_IP/24) is the only
# interface pods have; they get no default route, only one to the Service range through the
# bridge's address, which the apiserver and PostgreSQL listen on. Nothing is forwarded or
# NATed off the machine: IPv4 forwarding stays as it was (off), and FORWARD rules drop
# anything between the bridge and another interface.
#
# Host changes and how node_down undoes them (a node at a time per machine: the bridge
# name is fixed):
#   bridge NODE_BRIDGE and the FORWARD rules (commented pgpart-testnode)   deleted
#   sysctls the kubelet sets (kernel.panic, kernel.panic_on_oops, vm.overcommit_memory,
#     vm.panic_on_oom, kernel.keys.root_max*)                       restored from DIR/sysctls
#   iptables/ip6tables chains KUBE-* of the kubelet and kube-proxy          removed
#   mounts under DIR (the kubelet's root dir, container rootfs), netns cni-*  unmounted
#   cgroups kubepods (every v1 hierarchy)                                  removed
# Needs scripts/lib/kube.sh sourced first (its _kube_alive and _kube_stop).
# Safe under `set -euo pipefail`; functions return non-zero instead of exiting.

_NODE_LIB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
NODE_BRIDGE=${PGPART_NODE_BRIDGE:-pgpart0}
NODE_SUBNET_PREFIX=${PGPART_NODE_SUBNET_PREFIX:-10.213.0} # a /24: .1 the node, pods from .10
NODE_IP=$NODE_SUBNET_PREFIX.1
NODE_NAME=pgpart-node
NODE_SERVICE_RANGE=10.0.0.0/24 # kube.sh's --service-cluster-ip-range
NODE_PAUSE_IMAGE=pgpart.local/pause:1
_NODE_SYSCTLS="kernel.panic kernel.panic_on_oops vm.overcommit_memory vm.panic_on_oom kernel.keys.root_maxkeys kernel.keys.root_maxbytes"
_NODE_COMPONENTS="kube-proxy kubelet kube-scheduler kube-controller-manager containerd"

_node_log() { echo "node.sh: $*" >&2; }

# node_build: build or reuse the node's binaries; sets NODE_BIN_<NAME> (dashes as _).
node_build() {
  local out line name
  out=$("$_NODE_LIB_ROOT/tools/testenv/build.sh" node) || { _node_log "node_build FAILED"; return 1; }
  while IFS= read -r line; do
    name=${line%%=*}
    printf -v "NODE_BIN_${name//-/_}" '%s' "${line#*=}"
  done <<<"$out"
}

_node_wait() { # DEADLINE WHAT CMD...: poll CMD until it succeeds or DEADLINE (SECONDS) passes
  local deadline=$1 what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { _node_log "timed out waiting for $what"; return 1; }
    sleep 0.2
  done
}

_node_start() { # DIR NAME CMD...: start a component in the background, log and pid in DIR
  local dir=$1 name=$2; shift 2
  "$@" </dev/null >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

_node_iptables_rules() { # add|delete: the FORWARD rules that keep the bridge's traffic local
  local op=-I
  [ "$1" = add ] || op=-D
  iptables "$op" FORWARD -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -m comment --comment pgpart-testnode -j DROP &&
    iptables "$op" FORWARD -o "$NODE_BRIDGE" ! -i "$NODE_BRIDGE" -m comment --comment pgpart-testnode -j DROP
}

# node_net_up DIR: the bridge and its FORWARD rules (before kube_up: the apiserver listens on
# the bridge's address); records the sysctls the kubelet will change, to restore them.
node_net_up() {
  [ $# -eq 1 ] || { _node_log "usage: node_net_up DIR"; return 2; }
  mkdir -p "$1" || return 1
  local dir s; dir=$(cd "$1" && pwd)
  [ ! -f "$dir/sysctls" ] || { _node_log "$dir already has a node (node_down it first)"; return 1; }
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    _node_log "bridge $NODE_BRIDGE exists: another node is up on this machine (or a crashed one: node_down its DIR)"
    return 1
  fi
  for s in $_NODE_SYSCTLS; do echo "$s=$(sysctl -n "$s")"; done >"$dir/sysctls" || return 1
  ip link add "$NODE_BRIDGE" type bridge && ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE" &&
    ip link set "$NODE_BRIDGE" up && _node_iptables_rules add ||
    { _node_log "could not set up bridge $NODE_BRIDGE"; node_down "$dir"; return 1; }
}

# node_up DIR KUBEDIR: start the node, with state in DIR, against the control plane in KUBEDIR.
node_up() {
  [ $# -eq 2 ] || { _node_log "usage: node_up DIR KUBEDIR"; return 2; }
  mkdir -p "$1" || return 1
  local dir kdir; dir=$(cd "$1" && pwd) kdir=$(cd "$2" && pwd)
  local deadline=$((SECONDS + ${NODE_UP_TIMEOUT:-180})) s ports kp kh cp sp ph pm
  [ -f "$dir/sysctls" ] || { _node_log "no bridge: node_net_up $dir first"; return 1; }
  [ -n "${NODE_BIN_kubelet:-}" ] || node_build || return 1

  # CNI: the bridge plugin on NODE_BRIDGE, addresses from host-local, one route (the Service
  # range, through the node). isGateway stays false: with it the plugin turns on forwarding.
  mkdir -p "$dir/cni/net.d" "$dir/cni/state"
  cat >"$dir/cni/net.d/10-pgpart.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "pgpart",
  "plugins": [
    {
      "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": false, "ipMasq": false,
      "ipam": {
        "type": "host-local", "dataDir": "$dir/cni/state",
        "ranges": [[{"subnet": "$NODE_SUBNET_PREFIX.0/24", "rangeStart": "$NODE_SUBNET_PREFIX.10", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "$NODE_SERVICE_RANGE", "gw": "$NODE_IP"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOF

  # containerd: everything under DIR; runc may not lower oom_score_adj in this VM.
  mkdir -p "$dir/containerd"
  cat >"$dir/containerd/config.toml" <<EOF
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = "$dir/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$NODE_BIN_cni"
    conf_dir = "$dir/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOF
  _node_start "$dir" containerd containerd --config "$dir/containerd/config.toml"
  _node_wait "$deadline" containerd ctr --address "$dir/containerd/containerd.sock" version ||
    { _node_fail "$dir" "containerd did not start"; return 1; }
  mkdir -p "$dir/pause" && cp "$NODE_BIN_pause" "$dir/pause/pause" || return 1
  node_image_load "$dir" "$dir/pause" "$_NODE_LIB_ROOT/tools/testenv/pause/Containerfile" "$NODE_PAUSE_IMAGE" ||
    { _node_fail "$dir" "could not build or load the pause image"; return 1; }

  ports=$("$_NODE_LIB_ROOT/scripts/lib/free-ports" 6) || return 1
  read -r kp kh cp sp ph pm <<<"$ports"
  # Every component's command line names DIR (through this copy), so node_down finds them all.
  local kubeconfig=$dir/kubeconfig
  install -m 600 "$kdir/kubeconfig" "$kubeconfig" || return 1
  _node_start "$dir" kube-controller-manager "$NODE_BIN_kube_controller_manager" \
    --kubeconfig="$kubeconfig" --authentication-kubeconfig="$kubeconfig" \
    --authorization-kubeconfig="$kubeconfig" --use-service-account-credentials=true \
    --service-account-private-key-file="$kdir/sa.key" --root-ca-file="$kdir/ca.crt" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port="$cp" \
    --cluster-name=pgpart-testenv --profiling=false
  _node_start "$dir" kube-scheduler "$NODE_BIN_kube_scheduler" \
    --kubeconfig="$kubeconfig" --authentication-kubeconfig="$kubeconfig" \
    --authorization-kubeconfig="$kubeconfig" --leader-elect=false \
    --bind-address=127.0.0.1 --secure-port="$sp" --profiling=false

  # The kubelet: cgroup v1 with cgroupfs (no systemd here), no swap check, no DNS; it
  # serves on the bridge address only, to the apiserver (logs, stats).
  : >"$dir/resolv.conf"
  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $kp
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kh
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
resolvConf: $dir/resolv.conf
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  _node_start "$dir" kubelet "$NODE_BIN_kubelet" --config="$dir/kubelet.yaml" \
    --kubeconfig="$kubeconfig" --root-dir="$dir/kubelet" --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP"
  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $NODE_SUBNET_PREFIX.0/24
healthzBindAddress: 127.0.0.1:$ph
metricsBindAddress: 127.0.0.1:$pm
nodePortAddresses: [$NODE_IP/32]
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false, masqueradeAll: false}
EOF
  _node_start "$dir" kube-proxy "$NODE_BIN_kube_proxy" --config="$dir/kube-proxy.yaml"

  _node_wait "$deadline" "node $NODE_NAME Ready" kubectl --kubeconfig="$kubeconfig" wait \
    --for=condition=Ready "node/$NODE_NAME" --timeout=5s ||
    { _node_fail "$dir" "node $NODE_NAME did not become Ready"; return 1; }
  _node_wait "$deadline" "configmap kube-root-ca.crt" kubectl --kubeconfig="$kubeconfig" \
    get configmap kube-root-ca.crt -n default ||
    { _node_fail "$dir" "the controller manager did not publish kube-root-ca.crt"; return 1; }
  _node_wait "$deadline" "service account default" kubectl --kubeconfig="$kubeconfig" \
    get serviceaccount default -n default ||
    { _node_fail "$dir" "the controller manager did not create service account default"; return 1; }
  export NODE_DIR=$dir NODE_CONTAINERD_SOCK=$dir/containerd/containerd.sock
  {
    printf 'export PGPART_TEST_NODE_NAME=%q\n' "$NODE_NAME"
    printf 'export PGPART_TEST_NODE_IP=%q\n' "$NODE_IP"
    printf 'export PGPART_TEST_NODE_DIR=%q\n' "$dir"
    printf 'export PGPART_TEST_CONTAINERD_SOCK=%q\n' "$NODE_CONTAINERD_SOCK"
  } >"$dir/env"
  _node_log "node $NODE_NAME Ready (bridge $NODE_BRIDGE $NODE_IP, containerd $NODE_CONTAINERD_SOCK)"
}

# node_image_load DIR CONTEXT CONTAINERFILE NAME [BUILDAH-BUD-ARGS...]: build an image with
# buildah (vfs storage under DIR, no daemon) from CONTAINERFILE in the directory CONTEXT, and
# import it into the node's containerd as NAME.
node_image_load() {
  local dir=$1 context=$2 file=$3 name=$4 archive; shift 4
  local store=$dir/buildah
  archive=$store/image-$$.tar
  mkdir -p "$store"
  buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs bud --quiet \
    --isolation chroot --pull=never -f "$file" -t "$name" "$@" "$context" >&2 &&
    buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs push --quiet \
      "$name" "docker-archive:$archive:$name" >&2 &&
    ctr --address "$dir/containerd/containerd.sock" -n k8s.io images import "$archive" >&2
  local rc=$?
  rm -f "$archive"
  return "$rc"
}

_node_fail() { # DIR MESSAGE
  local f
  _node_log "node_up FAILED: $2"
  for f in $_NODE_COMPONENTS; do
    [ -f "$1/$f.log" ] && { echo "----- tail $1/$f.log" >&2; tail -n 20 "$1/$f.log" >&2; }
  done
  node_down "$1" || true
  return 1
}

# Processes of the node in DIR: components, shims and containers (pids, one per line).
_node_processes() { # DIR
  local dir=$1 proc pid args cg
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    [ "$pid" != $$ ] || continue
    _kube_alive "$pid" || continue
    args=$(tr '\0' ' ' <"$proc/cmdline" 2>/dev/null) || continue
    if [[ $args == *"$dir/"* ]]; then echo "$pid"; continue; fi
    cg=$(cat "$proc/cgroup" 2>/dev/null) || continue
    [[ $cg != *":/kubepods"* ]] || echo "$pid"
  done
}


_node_drop_kube_chains() { # iptables|ip6tables: remove every KUBE-* chain and rule to one
  local cmd=$1 t
  for t in filter nat mangle; do
    "$cmd-save" -t "$t" 2>/dev/null | grep -q 'KUBE-' || continue
    "$cmd-save" -t "$t" | grep -v -e '^:KUBE-' -e '-j KUBE-' -e '^-A KUBE-' | "$cmd-restore" -T "$t" ||
      return 1
  done
}

# node_down DIR: stop the node in DIR and undo its host changes; fails if anything is left.
node_down() {
  [ $# -eq 1 ] || { _node_log "usage: node_down DIR"; return 2; }
  [ -d "$1" ] || return 0
  local dir rc=0 c pid m left cg line
  dir=$(cd "$1" && pwd)
  for c in $_NODE_COMPONENTS; do
    # Before containerd stops, kill every container it runs (the kubelet is already gone).
    if [ "$c" = containerd ] && [ -S "$dir/containerd/containerd.sock" ]; then
      for line in $(ctr --address "$dir/containerd/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null); do
        ctr --address "$dir/containerd/containerd.sock" -n k8s.io tasks kill -s KILL "$line" >/dev/null 2>&1 || true
      done
    fi
    _kube_stop "$dir" "$c" || rc=1
  done
  # Shims and container processes that outlived containerd.
  for pid in $(_node_processes "$dir"); do kill -KILL "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do [ -n "$(_node_processes "$dir")" ] || break; sleep 0.1; done
  left=$(_node_processes "$dir")
  [ -z "$left" ] || { _node_log "processes of the node survived KILL: $left"; rc=1; }

  # Mounts under DIR, deepest first; then the pod network namespaces.
  while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" || rc=1
  done < <(awk -v d="$dir/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r)
  for m in /var/run/netns/cni-*; do
    [ -e "$m" ] || continue
    umount "$m" 2>/dev/null || true
    rm -f "$m"
  done
  for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$cg" ] || continue
    find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ ! -d "$cg" ] || { _node_log "cgroup $cg could not be removed"; rc=1; }
  done
  _node_drop_kube_chains iptables || rc=1
  _node_drop_kube_chains ip6tables || rc=1
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && [ -f "$dir/sysctls" ]; then
    while _node_iptables_rules delete 2>/dev/null; do :; done
    ip link delete "$NODE_BRIDGE" || rc=1
  fi
  if [ -f "$dir/sysctls" ]; then
    while IFS= read -r line; do sysctl -q -w "$line" >/dev/null || rc=1; done <"$dir/sysctls"
  fi
  [ "$rc" = 0 ] || return 1
  rm -f "$dir/sysctls" "$dir/env"
  _node_log "node in $dir stopped; host restored"
}
