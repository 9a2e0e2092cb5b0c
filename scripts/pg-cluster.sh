#!/usr/bin/env bash
# A private PostgreSQL 15 server for tests and benchmarks, kept entirely in one folder.
#
#   scripts/pg-cluster.sh start DIR       creates the cluster in DIR/data on first use,
#                                         starts it and prints its connection URI
#   scripts/pg-cluster.sh stop DIR        stops that server (and no other)
#   scripts/pg-cluster.sh uri DIR [--tcp] prints the URI again; --tcp gives the
#                                         127.0.0.1 form with its password
#
# The server listens on a Unix socket in DIR and on 127.0.0.1 only, on a free port chosen
# at the first start. Its superuser is `flatstore`, the database `postgres`. Connections
# through the socket need no password (DIR is readable by the server's user only);
# connections over TCP need the password kept in DIR/password. fsync and the other
# durability settings are PostgreSQL's defaults.
#
# PostgreSQL refuses to run as root. Run as root, the script runs the server as the
# system user `flatstore-pg` (created with useradd on first use) and gives DIR to that
# user, so DIR must be a folder that user can reach (for example one made by
# `mktemp -d` in /tmp). Run as any other user, the server runs as that user.
#
# FLATSTORE_PG_BIN names the folder of initdb and pg_ctl (default: Debian's
# /usr/lib/postgresql/15/bin, from the package postgresql-15).
set -euo pipefail

bin=${FLATSTORE_PG_BIN:-/usr/lib/postgresql/15/bin}
server_user=flatstore-pg
db_user=flatstore
# pg_ctl waits at most this long for the server to start or stop.
timeout_s=30

die() {
  echo "pg-cluster: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start DIR | stop DIR | uri DIR [--tcp]" >&2
  exit 2
}

# as_owner COMMAND...: runs COMMAND as the server's user, from inside $dir (the caller's
# working folder may be closed to that user).
as_owner() {
  if ((EUID == 0)); then
    (cd "$dir" && runuser -u "$server_user" -- "$@")
  else
    (cd "$dir" && "$@")
  fi
}

ensure_server_user() {
  ((EUID == 0)) || return 0
  if ! getent passwd "$server_user" >/dev/null; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$server_user" ||
      die "cannot create the system user $server_user"
  fi
}

# DIR goes unquoted into the URI and the server's settings, and the socket's path
# (DIR/.s.PGSQL.PORT) must fit in a sockaddr_un (107 bytes).
check_dir_name() {
  [[ "$dir" =~ ^[A-Za-z0-9/._-]+$ ]] ||
    die "DIR may hold only letters, digits and / . _ - (it goes into a URI): $dir"
  ((${#dir} + 16 <= 107)) || die "DIR is too long for a Unix socket path (${#dir} bytes): $dir"
}

port_of() {
  [[ -f "$dir/port" ]] || die "no cluster in $dir (run: $0 start $dir)"
  cat "$dir/port"
}

print_uri() {
  local port
  port=$(port_of)
  if [[ "${1:-}" == --tcp ]]; then
    echo "postgresql://$db_user:$(cat "$dir/password")@127.0.0.1:$port/postgres"
  else
    echo "postgresql://$db_user@/postgres?host=$dir&port=$port"
  fi
}

running() {
  [[ -f "$dir/data/postmaster.pid" ]] && as_owner "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}

# A random port in 20000..59999 on which nothing on 127.0.0.1 accepts connections now.
# The server may still lose a race for it; start() then tries another.
free_port() {
  local port
  while true; do
    port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    if ! (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# Writes the settings that place the server: its port, its socket folder, its address.
write_settings() {
  local port=$1
  cat >"$dir/data/flatstore-cluster.conf" <<EOF
# Written by scripts/pg-cluster.sh.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
EOF
  ((EUID != 0)) || chown "$server_user:" "$dir/data/flatstore-cluster.conf"
  echo "$port" >"$dir/port"
}

init_cluster() {
  [[ -x "$bin/initdb" ]] ||
    die "no PostgreSQL server programs in $bin (install postgresql-15: scripts/setup-debian.sh)"
  ensure_server_user
  if ((EUID == 0)); then
    chown "$server_user:" "$dir"
    runuser -u "$server_user" -- test -w "$dir" -a -x "$dir" ||
      die "$server_user cannot write $dir: choose a folder whose parents it may enter"
  fi
  chmod 700 "$dir"
  (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$dir/password")
  ((EUID != 0)) || chown "$server_user:" "$dir/password"
  if ! as_owner "$bin/initdb" -D "$dir/data" -U "$db_user" --pwfile="$dir/password" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2
    die "initdb failed in $dir/data"
  fi
  echo "include_if_exists = 'flatstore-cluster.conf'" >>"$dir/data/postgresql.conf"
}

start() {
  check_dir_name
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    init_cluster
    write_settings "$(free_port)"
  fi
  if running; then
    print_uri
    return
  fi
  local attempt
  for attempt in 1 2 3 4 5; do
    if as_owner "$bin/pg_ctl" start -w -t "$timeout_s" -D "$dir/data" -l "$dir/server.log" \
      >/dev/null 2>&1; then
      print_uri
      return
    fi
    # Lost the port to another program between the check and the bind: take another.
    if tail -n 20 "$dir/server.log" 2>/dev/null | grep -q 'Address already in use' &&
      ((attempt < 5)); then
      write_settings "$(free_port)"
      continue
    fi
    break
  done
  tail -n 20 "$dir/server.log" >&2 || true
  die "the server in $dir/data did not start within ${timeout_s}s (log: $dir/server.log)"
}

stop() {
  if [[ ! -f "$dir/data/postmaster.pid" ]]; then
    echo "pg-cluster: no server running in $dir" >&2
    return
  fi
  if ((EUID == 0)); then
    server_user=$(stat -c %U "$dir/data")
  fi
  as_owner "$bin/pg_ctl" stop -m fast -w -t "$timeout_s" -D "$dir/data" >/dev/null ||
    die "the server in $dir/data did not stop within ${timeout_s}s"
}

(($# >= 2)) || usage
command=$1
[[ -d "$2" || "$command" == start ]] || die "no folder $2"
mkdir -p "$2"
dir=$(cd "$2" && pwd)
case "$command" in
  start) start ;;
  stop) stop ;;
  uri) print_uri "${3:-}" ;;
  *) usage ;;
esac
