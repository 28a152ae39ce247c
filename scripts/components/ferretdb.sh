# shellcheck shell=bash
# FerretDB: a MongoDB wire-protocol server (MongoDB itself cannot be had from
# the package registries), built from the wrapper module in scripts/go/ferretdb
# and backed by the local PostgreSQL (database `ferretdb`, one schema per
# MongoDB database). What works and what to avoid: docs/ferretdb.md.
#
# v1.24.2 is the newest v1 the module proxy serves (v1.24.1 is refused; v2
# needs a PostgreSQL extension Debian lacks). The wrapper module pins and
# checksums the source; the build itself runs in a copy of it (see install).

FERRETDB_VERSION=v1.24.2
FERRETDB_PORT=27017
# Debug listener (pprof, /debug/metrics for Prometheus); upstream's default 8088.
FERRETDB_DEBUG_PORT=8089

ferretdb_version() { echo "$FERRETDB_VERSION"; }
ferretdb_installed() { pkg_installed ferretdb "$FERRETDB_VERSION"; }
ferretdb_addr() { echo "127.0.0.1:$FERRETDB_PORT"; }
FERRETDB_PG_DATABASE=ferretdb
ferretdb_env() {
  echo "MONGODB_URI=mongodb://127.0.0.1:$FERRETDB_PORT/"
}

ferretdb_install() {
  local dir log src
  dir=$(pkg_dir ferretdb "$FERRETDB_VERSION")
  log=$(logfile install-ferretdb)
  with_progress "downloading FerretDB $FERRETDB_VERSION source (1/2)" "$log" \
    env -C "$PS_ROOT/scripts/go/ferretdb" go mod download github.com/FerretDB/FerretDB || return 1
  src=$(env -C "$PS_ROOT/scripts/go/ferretdb" go list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB) || return 1
  # FerretDB panics at start-up without build/version/version.txt whenever its
  # own module is the binary's main module, which Go >= 1.24 records even for
  # a wrapper's tool; -overlay may not touch the module cache. So build from
  # a copy of the (checksum-verified) source with that file added.
  rm -rf "$dir/src"
  mkdir -p "$dir/bin"
  cp -R "$src" "$dir/src" && chmod -R u+w "$dir/src" || return 1
  printf '%s\n' "$FERRETDB_VERSION" >"$dir/src/build/version/version.txt"
  # Build to a temp name so an interrupted build never looks installed.
  with_progress "building FerretDB $FERRETDB_VERSION (2/2)" "$log" \
    env -C "$dir/src" CGO_ENABLED=0 \
    go build -trimpath -buildvcs=false -ldflags '-s -w' -o "$dir/bin/ferretdb.tmp" ./cmd/ferretdb || return 1
  mv "$dir/bin/ferretdb.tmp" "$dir/bin/ferretdb"
  rm -rf "$dir/src"
  pkg_mark_installed ferretdb "$FERRETDB_VERSION"
}

# The PostgreSQL backend rather than SQLite: it pushes an equality filter on
# a string, integer or date field down as `_jsonb->'field' @> value`, which
# an index can answer (see ferretdb_index_lookups), and it takes concurrent
# writers; on SQLite every filter but `_id` read the whole collection and one
# writer at a time capped S2 (docs/ferretdb.md, docs/performance.md).
ferretdb_start() {
  local dir=$PS_DATA/ferretdb
  mkdir -p "$dir/state"
  if ! postgres_ready; then
    echo "needs PostgreSQL, its backend: ./dev up postgres ferretdb" >"$(failfile ferretdb)"
    return 1
  fi
  _ferretdb_database || {
    echo "could not create the PostgreSQL database $FERRETDB_PG_DATABASE (log: $(logfile ferretdb))" >"$(failfile ferretdb)"
    return 1
  }
  # Telemetry off: it would report to FerretDB's beacon over the internet.
  # pool_max_conns: pgx's default (4 on two cores) queued S1/S2/S3's commands.
  spawn ferretdb "$(pkg_dir ferretdb "$FERRETDB_VERSION")/bin/ferretdb" \
    --listen-addr="127.0.0.1:$FERRETDB_PORT" \
    --debug-addr="127.0.0.1:$FERRETDB_DEBUG_PORT" \
    --handler=postgresql \
    --postgresql-url="$(_ferretdb_pg_url)?pool_max_conns=24" \
    --state-dir="$dir/state" \
    --telemetry=disable \
    --log-level=info
}

_ferretdb_pg_url() { postgres_url "$FERRETDB_PG_DATABASE"; }

# The backend's database, once. Commits there are not flushed before they
# are acknowledged (synchronous_commit=off): a crash of PostgreSQL or
# FerretDB loses nothing, an OS crash can lose the last moment of writes;
# fine for a dev machine (a cluster runs real MongoDB), and every write no
# longer waits for the disk.
_ferretdb_database() {
  local url
  url=$(postgres_url)
  "$POSTGRES_BIN/psql" -qtAX "$url" -c "SELECT 1 FROM pg_database WHERE datname = '$FERRETDB_PG_DATABASE'" 2>>"$(logfile ferretdb)" | grep -q 1 && return 0
  "$POSTGRES_BIN/psql" -qX -v ON_ERROR_STOP=1 "$url" \
    -c "CREATE DATABASE $FERRETDB_PG_DATABASE" \
    -c "ALTER DATABASE $FERRETDB_PG_DATABASE SET synchronous_commit = off" >>"$(logfile ferretdb)" 2>&1
}

# OP_MSG {hello: 1, $db: "admin"}: 16-byte header (length 52, request 1,
# opcode 2013), flags, section kind 0, then the 31-byte BSON document.
_FERRETDB_HELLO='\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\xdd\x07\x00\x00'
_FERRETDB_HELLO+='\x00\x00\x00\x00\x00\x1f\x00\x00\x00'
# shellcheck disable=SC2016 # "$db" is the literal field name
_FERRETDB_HELLO+='\x10hello\x00\x01\x00\x00\x00\x02$db\x00\x06\x00\x00\x00admin\x00\x00'

# A real `hello` over the wire protocol, as a driver's first command: an open
# port alone does not show that the backend answers.
ferretdb_ready() {
  local reply
  # Reads the whole reply (its length comes first): closing on unread data
  # makes FerretDB log a connection reset on every check.
  # shellcheck disable=SC2016 # the inner shell expands its own arguments
  reply=$(timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "$2" >&3 &&
      len=$(head -c 4 <&3 | od -An -tu4) && head -c $((len - 4)) <&3 | tr -d "\0"' \
    _ "$FERRETDB_PORT" "$_FERRETDB_HELLO" 2>/dev/null) || return 1
  [[ $reply == *isWritablePrimary* ]]
}

# ferretdb_index_lookups : FerretDB v1.24 declares a MongoDB index as a btree on
# `(_jsonb->'field')`, but pushes an equality filter down as
# `_jsonb->'field' @> value`, which only a GIN index answers, so every
# `{user_id: 42}` read the whole table (EXPLAIN: Seq Scan) — `_id` lookups
# too. This adds a GIN index (jsonb_path_ops) on the first field of every
# index the services declared, and on `_id`, for every collection of the
# platform's database; idempotent, run by `up` once the services have
# created their collections.
ferretdb_index_lookups() {
  "$POSTGRES_BIN/psql" -qX -v ON_ERROR_STOP=1 "$(_ferretdb_pg_url)" >>"$(logfile ferretdb)" 2>&1 <<'SQL'
DO $$
DECLARE r record;
BEGIN
  IF to_regclass('polystream._ferretdb_database_metadata') IS NULL THEN
    RETURN;
  END IF;
  FOR r IN
    SELECT DISTINCT m._jsonb->>'table' AS tbl, k.field
    FROM polystream._ferretdb_database_metadata m,
      jsonb_array_elements(m._jsonb->'$s'->'p'->'indexes'->'i') AS i(s),
      jsonb_array_elements_text(i.s->'$s'->'p'->'key'->'$s'->'$k') WITH ORDINALITY AS k(field, n)
    WHERE k.n = 1 AND position('.' IN k.field) = 0
  LOOP
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON polystream.%I USING gin ((_jsonb->%L) jsonb_path_ops)',
      left(r.tbl || '_' || r.field, 55) || '_eq', r.tbl, r.field);
  END LOOP;
END
$$;
SQL
}

# ferretdb_move_sqlite_data : until FerretDB ran on PostgreSQL here, its data
# lived in SQLite files ($PS_DATA/ferretdb/sqlite). Copies the documents of
# the platform's database into the PostgreSQL backend once, so a state dir
# made before keeps its catalog, views and ratings; the files stay where they
# are. Both backends store a document in the same JSON encoding, so each
# row goes across as it is (a document already there is kept). Run by `up`
# once the services have created every collection.
ferretdb_move_sqlite_data() {
  local dir=$PS_DATA/ferretdb/sqlite url coll tbl pgtbl n total=0 missing=()
  local db=$dir/polystream.sqlite marker=$dir/MOVED-TO-POSTGRESQL
  [[ -f $db && ! -f $marker ]] || return 0
  apt_ensure sqlite3 || return 1
  url=$(_ferretdb_pg_url)
  info "copying FerretDB's SQLite data ($db) into its PostgreSQL backend (once)"
  while IFS='|' read -r coll tbl; do
    pgtbl=$("$POSTGRES_BIN/psql" -qtAX "$url" -v ON_ERROR_STOP=1 \
      -c "SELECT _jsonb->>'table' FROM polystream._ferretdb_database_metadata WHERE _jsonb->>'_id' = '$coll'") || return 1
    if [[ -z $pgtbl ]]; then
      missing+=("$coll")
      continue
    fi
    # CSV with quote and delimiter bytes JSON never holds: COPY's text
    # format would take JSON's backslash escapes for its own.
    n=$(sqlite3 -cmd ".timeout 10000" "$db" "SELECT _ferretdb_sjson FROM \"$tbl\"" |
      "$POSTGRES_BIN/psql" -qtAX "$url" -v ON_ERROR_STOP=1 \
        -c "CREATE TEMP TABLE moved (j text)" \
        -c "\\copy moved FROM pstdin WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')" \
        -c "WITH ins AS (INSERT INTO polystream.\"$pgtbl\" (_jsonb) SELECT j::jsonb FROM moved ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM ins") || return 1
    info "  $coll: $n documents"
    total=$((total + n))
  done < <(sqlite3 -cmd ".timeout 10000" "$db" "SELECT name, table_name FROM _ferretdb_collections")
  if ((${#missing[@]})); then
    warn "FerretDB's SQLite data: no PostgreSQL collection yet for ${missing[*]}; left in $db"
    return 1
  fi
  date -u +%FT%TZ >"$marker"
  info "copied $total documents; the SQLite files stay in $dir"
}
