# shellcheck shell=bash source-path=SCRIPTDIR
# A real, local Kubernetes control plane (etcd + kube-apiserver, no kubelet,
# no controller-manager) for pgpart's integration tests. Source this file:
#
#   source scripts/lib/kube.sh
#   kube_version               # the kube-apiserver version to use (see PGPART_TESTENV_KUBE)
#   kube_build                 # build/cache binaries (tools/testenv), print paths and
#                              # export KUBE_TESTENV_{APISERVER,ETCD,HELM}_BIN
#   kube_up   DIR              # start etcd + kube-apiserver, write DIR/kubeconfig
#   kube_down DIR              # stop them; no process is left behind
#
# Pair them with a trap so a failing step in between cannot leak servers:
#   kube_up "$DIR" && trap 'kube_down "$DIR"' EXIT
#
# After kube_up these are exported (and also written to DIR/env for other shells):
#   KUBE_TESTENV_DIR, KUBE_TESTENV_KUBECONFIG (=DIR/kubeconfig),
#   KUBE_TESTENV_SERVER (https://127.0.0.1:PORT), KUBE_TESTENV_VERSION (v1.x.y),
#   PGPART_TEST_KUBECONFIG, PGPART_TEST_KUBE_VERSION (what tests/support/kube.rs reads).
# DIR/versions lists the versions of the three binaries; DIR/*.log has the logs.
# Tunables: PGPART_TESTENV_KUBE (kube-apiserver version: one of KUBE_VERSIONS in
# tools/testenv/versions.env, as v1.34.4, 1.34 or v1.34; default KUBE_VERSION, the newest),
# KUBE_UP_TIMEOUT (s, default 120), KUBE_DOWN_TIMEOUT (s, default 15),
# KUBE_UP_NODE_IP (for a node, scripts/lib/node.sh: the apiserver serves and advertises on that
# address instead of 127.0.0.1, its certificate also names the `kubernetes` Service's IP, the
# ServiceAccount admission mounts tokens and the Service's endpoints are kept),
# PGPART_CACHE (binary cache root, default ~/.cache/pgpart).
# (No ETCD_* names: etcd would read them as flags.)
# Safe under `set -euo pipefail`; functions return non-zero instead of exiting.

_KUBE_LIB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

_kube_log() { echo "kube.sh: $*" >&2; }

# kube_version [WANT]: the full version in KUBE_VERSIONS that WANT (default
# $PGPART_TESTENV_KUBE, else KUBE_VERSION) names: v1.34.4, v1.34 and 1.34 all mean v1.34.4.
kube_version() {
  # shellcheck source=../../tools/testenv/versions.env
  source "$_KUBE_LIB_ROOT/tools/testenv/versions.env"
  local want=${1:-${PGPART_TESTENV_KUBE:-$KUBE_VERSION}} v
  want=v${want#v}
  for v in $KUBE_VERSIONS; do
    if [ "$v" = "$want" ] || [ "${v%.*}" = "$want" ]; then echo "$v"; return 0; fi
  done
  _kube_log "unsupported Kubernetes version '${want#v}': pick one of $KUBE_VERSIONS (tools/testenv/versions.env)"
  return 1
}

# kube_build: build or reuse kube-apiserver (of kube_version), etcd and helm; sets
# KUBE_TESTENV_APISERVER_BIN, KUBE_TESTENV_ETCD_BIN, KUBE_TESTENV_HELM_BIN and prints
# "name=path" lines.
kube_build() {
  local out line version
  version=$(kube_version) || return 1
  out=$("$_KUBE_LIB_ROOT/tools/testenv/build.sh" "kube-apiserver@$version" etcd helm) ||
    { _kube_log "kube_build FAILED"; return 1; }
  while IFS= read -r line; do
    case $line in
      kube-apiserver=*) KUBE_TESTENV_APISERVER_BIN=${line#*=} ;;
      etcd=*) KUBE_TESTENV_ETCD_BIN=${line#*=} ;;
      helm=*) KUBE_TESTENV_HELM_BIN=${line#*=} ;;
    esac
  done <<<"$out"
  export KUBE_TESTENV_APISERVER_BIN KUBE_TESTENV_ETCD_BIN KUBE_TESTENV_HELM_BIN
  echo "$out"
}

# _kube_free_ports N: N distinct free loopback TCP ports below the ephemeral range, so a
# restarted server finds its port still free (see scripts/lib/free-ports).
_kube_free_ports() {
  "$_KUBE_LIB_ROOT/scripts/lib/free-ports" "$1"
}

# _kube_alive PID: process exists and is not a zombie.
_kube_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# _kube_wait DEADLINE WHAT PID CMD...: poll CMD until it succeeds, PID dies or
# SECONDS reaches DEADLINE.
_kube_wait() {
  local deadline=$1 what=$2 pid=$3; shift 3
  until "$@" >/dev/null 2>&1; do
    _kube_alive "$pid" || { _kube_log "$what exited while starting"; return 1; }
    [ "$SECONDS" -lt "$deadline" ] || { _kube_log "timed out waiting for $what"; return 1; }
    sleep 0.2
  done
}

_kube_fail() { # DIR MESSAGE: print log tails, stop what started, return 1
  local f
  _kube_log "kube_up FAILED: $2"
  for f in "$1"/etcd.log "$1"/kube-apiserver.log; do
    [ -f "$f" ] && { echo "----- tail $f" >&2; tail -n 30 "$f" >&2; }
  done
  kube_down "$1" || true
  return 1
}

_kube_certs() { # DIR [SANS]: CA, serving cert for 127.0.0.1/localhost (and SANS), SA signing key
  # Ten years: a demo environment left up (or restored from a cache) must not expire.
  local d=$1 sans=${2:+,$2}
  (
    set -e
    cd "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj /CN=pgpart-testenv-ca -keyout ca.key -out ca.crt \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj /CN=kube-apiserver -keyout apiserver.key -out apiserver.csr
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost$sans" 'basicConstraints=critical,CA:FALSE' \
      'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
    chmod 600 ./*.key
  ) >"$d/openssl.log" 2>&1
}

# kube_up DIR: start etcd and kube-apiserver with state in DIR (created).
kube_up() {
  [ $# -eq 1 ] || { _kube_log "usage: kube_up DIR"; return 2; }
  mkdir -p "$1" || return 1
  local dir; dir=$(cd "$1" && pwd)
  local timeout=${KUBE_UP_TIMEOUT:-120} deadline token ports pc pp pa version
  if [ -f "$dir/kube-apiserver.pid" ] || [ -f "$dir/etcd.pid" ]; then
    _kube_log "kube_up: $dir already has a control plane (run kube_down $dir first)"; return 1
  fi
  # shellcheck source=../../tools/testenv/versions.env
  source "$_KUBE_LIB_ROOT/tools/testenv/versions.env"
  version=$(kube_version) || return 1
  if [[ ${KUBE_TESTENV_APISERVER_BIN:-} != *"-$version" ]] || [ -z "${KUBE_TESTENV_ETCD_BIN:-}" ]; then
    kube_build >/dev/null || return 1
  fi

  # With a node: serve on its address, which pods reach through the `kubernetes` Service
  # (10.0.0.1, the first address of --service-cluster-ip-range).
  local ip=127.0.0.1 sans= node_flags=(--disable-admission-plugins=ServiceAccount --endpoint-reconciler-type=none)
  if [ -n "${KUBE_UP_NODE_IP:-}" ]; then
    ip=$KUBE_UP_NODE_IP sans="IP:$KUBE_UP_NODE_IP,IP:10.0.0.1,DNS:kubernetes.default.svc"
    node_flags=(--endpoint-reconciler-type=lease --kubelet-preferred-address-types=InternalIP)
  fi
  _kube_certs "$dir" "$sans" || { _kube_log "openssl failed:"; cat "$dir/openssl.log" >&2; return 1; }
  token=$(python3 -c 'import secrets; print(secrets.token_hex(24))') || return 1
  echo "$token" >"$dir/admin.token"
  echo "$token,pgpart-admin,pgpart-admin,\"system:masters\"" >"$dir/tokens.csv"
  chmod 600 "$dir/admin.token" "$dir/tokens.csv"
  ports=$(_kube_free_ports 3) || return 1
  read -r pc pp pa <<<"$ports"

  deadline=$((SECONDS + timeout))
  rm -rf "$dir/etcd"
  "$KUBE_TESTENV_ETCD_BIN" --name=testenv --data-dir="$dir/etcd" --unsafe-no-fsync --log-level=warn \
    --listen-client-urls="http://127.0.0.1:$pc" --advertise-client-urls="http://127.0.0.1:$pc" \
    --listen-peer-urls="http://127.0.0.1:$pp" --initial-advertise-peer-urls="http://127.0.0.1:$pp" \
    --initial-cluster="testenv=http://127.0.0.1:$pp" \
    </dev/null >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  _kube_wait "$deadline" etcd "$(cat "$dir/etcd.pid")" \
    sh -c "curl -fsS http://127.0.0.1:$pc/health | grep -q '\"health\":\"true\"'" ||
    { _kube_fail "$dir" "etcd did not become healthy on 127.0.0.1:$pc"; return 1; }

  "$KUBE_TESTENV_APISERVER_BIN" --bind-address="$ip" --advertise-address="$ip" --secure-port="$pa" \
    --etcd-servers="http://127.0.0.1:$pc" --cert-dir="$dir/apiserver-certs" \
    --tls-cert-file="$dir/apiserver.crt" --tls-private-key-file="$dir/apiserver.key" \
    --client-ca-file="$dir/ca.crt" --token-auth-file="$dir/tokens.csv" \
    --authorization-mode=Node,RBAC \
    --service-account-issuer="https://$ip:$pa" \
    --service-account-key-file="$dir/sa.key" --service-account-signing-key-file="$dir/sa.key" \
    "${node_flags[@]}" \
    --service-cluster-ip-range=10.0.0.0/24 --profiling=false \
    </dev/null >"$dir/kube-apiserver.log" 2>&1 &
  echo $! >"$dir/kube-apiserver.pid"

  local server="https://$ip:$pa"
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$dir/ca.crt")
users:
- name: pgpart-admin
  user:
    token: $token
contexts:
- name: testenv
  context: {cluster: testenv, user: pgpart-admin}
current-context: testenv
EOF
  chmod 600 "$dir/kubeconfig"
  _kube_wait "$deadline" "kube-apiserver /readyz" "$(cat "$dir/kube-apiserver.pid")" \
    curl -fsS --cacert "$dir/ca.crt" -H "Authorization: Bearer $token" "$server/readyz" ||
    { _kube_fail "$dir" "kube-apiserver not ready on $server"; return 1; }
  _kube_wait "$deadline" "namespace default" "$(cat "$dir/kube-apiserver.pid")" \
    kubectl --kubeconfig="$dir/kubeconfig" get namespace default ||
    { _kube_fail "$dir" "namespace default never appeared"; return 1; }

  printf 'kube-apiserver=%s\netcd=%s\nhelm=%s\n' "$version" "$ETCD_VERSION" "$HELM_VERSION" \
    >"$dir/versions"
  export KUBE_TESTENV_DIR=$dir KUBE_TESTENV_KUBECONFIG=$dir/kubeconfig \
    KUBE_TESTENV_SERVER=$server KUBE_TESTENV_VERSION=$version
  export PGPART_TEST_KUBECONFIG=$KUBE_TESTENV_KUBECONFIG PGPART_TEST_KUBE_VERSION=$version
  local v
  for v in KUBE_TESTENV_DIR KUBE_TESTENV_KUBECONFIG KUBE_TESTENV_SERVER KUBE_TESTENV_VERSION \
    PGPART_TEST_KUBECONFIG PGPART_TEST_KUBE_VERSION; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done >"$dir/env"
  _kube_log "control plane $version up at $server (kubeconfig $dir/kubeconfig)"
}

# _kube_stop DIR NAME: stop the process of DIR/NAME.pid: TERM, then KILL after
# KUBE_DOWN_TIMEOUT seconds (default 15). Only a pid whose command line names DIR is
# touched, so a stale pid file can never hit an unrelated process. Fails if it survives KILL
# (the pid file then stays). scripts/lib/node.sh stops the node's components with it too.
_kube_stop() {
  local dir=$1 name=$2 pid deadline
  [ -f "$dir/$name.pid" ] || return 0
  pid=$(cat "$dir/$name.pid")
  if _kube_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/"; then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + ${KUBE_DOWN_TIMEOUT:-15}))
    while _kube_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if _kube_alive "$pid"; then
      _kube_log "$name (pid $pid) ignored TERM; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      while _kube_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
      _kube_alive "$pid" && { _kube_log "$name (pid $pid) survived KILL"; return 1; }
    fi
    wait "$pid" 2>/dev/null || true # reap it if it is our child
    # Otherwise init reaps it; give that a moment so a pgrep right after is clean.
    deadline=$((SECONDS + 5))
    while [ -e "/proc/$pid" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  fi
  rm -f "$dir/$name.pid"
}

# kube_down DIR: stop what kube_up started in DIR (see _kube_stop); no process is left behind.
kube_down() {
  [ $# -eq 1 ] || { _kube_log "usage: kube_down DIR"; return 2; }
  [ -d "$1" ] || return 0
  local dir; dir=$(cd "$1" && pwd)
  local name rc=0
  for name in kube-apiserver etcd; do # apiserver first: it talks to etcd while stopping
    _kube_stop "$dir" "$name" || rc=1
  done
  return "$rc"
}
