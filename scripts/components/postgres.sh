# shellcheck shell=bash
# PostgreSQL 15 from Debian, run as our own cluster (not the package's "main"
# cluster): 127.0.0.1:5432, unix socket in a private directory, password
# (scram) auth over TCP. First start creates role and database `polystream`.

POSTGRES_VERSION=15
POSTGRES_PORT=5432
POSTGRES_BIN=/usr/lib/postgresql/$POSTGRES_VERSION/bin

postgres_version() { echo "$POSTGRES_VERSION"; }
postgres_installed() { pkg_installed postgres "$POSTGRES_VERSION" && [[ -x $POSTGRES_BIN/postgres ]]; }
postgres_addr() { echo "127.0.0.1:$POSTGRES_PORT"; }
# postgres_url [DATABASE] : the platform role's URL for a database (default polystream).
postgres_url() { echo "postgres://polystream:polystream@$(postgres_addr)/${1:-polystream}"; }
postgres_env() { echo "DATABASE_URL=$(postgres_url)"; }

postgres_install() {
  apt_ensure "postgresql-$POSTGRES_VERSION" "postgresql-client-$POSTGRES_VERSION" || return 1
  pkg_mark_installed postgres "$POSTGRES_VERSION"
}

# PostgreSQL refuses to run as root, so as root the server runs as the
# `postgres` OS user. setpriv rather than runuser/su: it execs instead of
# forking, so the PID that spawn records is the postmaster itself.
_postgres_as() {
  if ((EUID == 0)); then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

# The cluster's directory (data/ and the socket dir run/ inside it). Normally
# $PS_DATA/postgres; but as root $PS_DATA usually sits under /root (mode 700),
# which the postgres user cannot enter, so then it lives under
# /var/lib/polystream, one directory per state dir (a fresh
# POLYSTREAM_STATE_DIR still gets a fresh cluster), and $PS_DATA/postgres is a
# symlink to it.
postgres_dir() {
  if ((EUID != 0)) || (cd / && _postgres_as test -x "$PS_DATA") 2>/dev/null; then
    printf '%s/postgres' "$PS_DATA"
  else
    printf '/var/lib/polystream/postgres-%s' "$(printf '%s' "$PS_STATE" | sha256sum | cut -c1-12)"
  fi
}

# initdb plus role and database, done with the server in single-user mode so
# nothing listens yet; into data.new first so a failure never leaves a
# half-made cluster that later starts would take for a finished one.
_postgres_init() {
  local dir=$1 log out
  log=$(logfile postgres)
  rm -rf "$dir/data.new"
  _postgres_as "$POSTGRES_BIN/initdb" -D "$dir/data.new" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >>"$log" 2>&1 || return 1
  out=$(_postgres_as "$POSTGRES_BIN/postgres" --single -D "$dir/data.new" postgres 2>&1 <<'SQL'
CREATE ROLE polystream LOGIN CREATEDB PASSWORD 'polystream'
CREATE DATABASE polystream OWNER polystream
SQL
  ) || return 1
  printf '%s\n' "$out" >>"$log"
  # Single-user mode exits 0 even when a statement fails.
  [[ $out != *ERROR:* ]] || return 1
  mv "$dir/data.new" "$dir/data"
}

postgres_start() {
  local dir
  dir=$(postgres_dir)
  mkdir -p "$dir/run"
  if ((EUID == 0)); then
    chown postgres:postgres "$dir" "$dir/run"
    [[ $dir == "$PS_DATA/postgres" ]] || ln -sfn "$dir" "$PS_DATA/postgres"
  fi
  # Only the server's own user may reach the socket (trust auth there).
  chmod 700 "$dir" "$dir/run"
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    info "creating the PostgreSQL cluster in $dir/data"
    (cd / && _postgres_init "$dir") || return 1
  fi
  local as=()
  ((EUID != 0)) || as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
  # Settings on the command line rather than in postgresql.conf, so they
  # also apply to a cluster made by an older version of this script.
  spawn postgres "${as[@]}" "$POSTGRES_BIN/postgres" -D "$dir/data" \
    -c listen_addresses=127.0.0.1 \
    -c port="$POSTGRES_PORT" \
    -c unix_socket_directories="$dir/run" \
    -c max_connections=200
}

postgres_ready() {
  "$POSTGRES_BIN/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -t 2
}

postgres_stop() {
  local pid i
  pid=$(cat "$(pidfile postgres)" 2>/dev/null) || return 0
  # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for
  # every client to disconnect.
  if kill -INT "$pid" 2>/dev/null; then
    for ((i = 0; i < 60; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
  fi
  stop_pid postgres
}
