# shellcheck shell=bash
# Redis from Debian, run with our own config (not the package's
# /etc/redis/redis.conf, which daemonizes and logs to /var/log).

REDIS_VERSION=7.0.15
REDIS_PORT=6379

redis_version() { echo "$REDIS_VERSION"; }
redis_installed() { pkg_installed redis "$REDIS_VERSION" && [[ -x /usr/bin/redis-server ]]; }
redis_addr() { echo "127.0.0.1:$REDIS_PORT"; }
redis_env() { echo "REDIS_URL=redis://127.0.0.1:$REDIS_PORT"; }

redis_install() {
  apt_ensure redis-server redis-tools || return 1
  pkg_mark_installed redis "$REDIS_VERSION"
}

redis_start() {
  local dir=$PS_DATA/redis
  mkdir -p "$dir"
  # Rewritten on every start so a changed setting here takes effect.
  cat >"$dir/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize no
supervised no
dir "$dir"
appendonly yes
appendfsync everysec
# The AOF is the persistence; no RDB snapshots as well. Their default save
# points forked a copy of the whole dataset every minute under load, and
# while the child ran every command waited on copy-on-write faults (S1's
# pending-status write averaged 7 ms with a million status keys).
save ""
# log to stdout, which spawn sends to the component log
logfile ""
EOF
  spawn redis /usr/bin/redis-server "$dir/redis.conf"
}

redis_ready() {
  [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}
