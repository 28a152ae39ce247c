# shellcheck shell=bash
# FerretDB: a MongoDB wire-protocol server (MongoDB itself cannot be had from
# the package registries), built from the wrapper module in scripts/go/ferretdb
# and backed by SQLite files under $PS_DATA/ferretdb. What works and what to
# avoid: docs/ferretdb.md.
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
# SQLite takes one writer at a time: S2 queues its MongoDB commands rather
# than have them poll for the lock (docs/configuration.md, MONGODB_WRITERS).
ferretdb_env() {
  echo "MONGODB_URI=mongodb://127.0.0.1:$FERRETDB_PORT/"
  echo "MONGODB_WRITERS=1"
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

ferretdb_start() {
  local dir=$PS_DATA/ferretdb
  mkdir -p "$dir/sqlite" "$dir/state"
  # Telemetry off: it would report to FerretDB's beacon over the internet.
  # SQLite in WAL mode with synchronous=NORMAL: a commit is not fsynced
  # (checkpoints are), so every write no longer waits for the disk — with
  # FULL, SQLite's one writer at a time capped S2 at ~70 views/s. A write
  # survives a crash of FerretDB itself (the fault suite kills it); only an
  # OS crash or power loss can lose the last ones, fine for a dev machine
  # (docs/ferretdb.md; a cluster runs real MongoDB).
  spawn ferretdb "$(pkg_dir ferretdb "$FERRETDB_VERSION")/bin/ferretdb" \
    --listen-addr="127.0.0.1:$FERRETDB_PORT" \
    --debug-addr="127.0.0.1:$FERRETDB_DEBUG_PORT" \
    --handler=sqlite \
    --sqlite-url="file:$dir/sqlite/?_pragma=synchronous(normal)" \
    --state-dir="$dir/state" \
    --telemetry=disable \
    --log-level=info
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

# ferretdb_index_ids : FerretDB v1.24 on SQLite looks a document up by `_id`
# with `_ferretdb_sjson->'$._id'` but indexes `_ferretdb_sjson->"_id"`, an
# expression SQLite does not take for the same one, so every lookup by `_id`
# read the whole table (EXPLAIN QUERY PLAN: SCAN; a user's history head took
# ~20 ms among a few hundred). This indexes the expression it queries, on
# every collection of the platform's database; idempotent, run by `up` once
# the services have created their collections.
ferretdb_index_ids() {
  local db=$PS_DATA/ferretdb/sqlite/polystream.sqlite t
  [[ -f $db ]] || return 0
  apt_ensure sqlite3 || return 1
  for t in $(sqlite3 -cmd ".timeout 10000" "$db" "SELECT table_name FROM _ferretdb_collections"); do
    sqlite3 -cmd ".timeout 10000" "$db" \
      "CREATE INDEX IF NOT EXISTS \"${t}_id_lookup\" ON \"$t\" (_ferretdb_sjson->'\$._id')" || return 1
  done
}
