#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster, reachable only through a Unix socket in DIR.
#
#   pg-throwaway.sh start DIR   initdb (if DIR holds no cluster yet) and start; prints nothing on success
#   pg-throwaway.sh stop DIR    fast shutdown, then remove DIR
#
# The socket is DIR/.s.PGSQL.$PGPORT (PGPORT defaults to 5432; nothing listens on TCP, so the
# port only names the socket). Data lives in DIR/data, the server log in DIR/postgres.log.
# Run as root, the server runs as `postgres`, and a superuser role and database named after the
# invoking user are created, so `psql -h DIR -p PORT` just works.
set -euo pipefail

readonly marker=.pg-throwaway  # stop removes only directories that start created
readonly ready_timeout_s=60

die() {
  echo "pg-throwaway: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start|stop DIR   (env PGPORT, default 5432)" >&2
  exit 2
}

bindir() {
  if [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
    echo /usr/lib/postgresql/15/bin
  elif command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then
    pg_config --bindir
  else
    die "PostgreSQL server binaries not found (install postgresql: make deps)"
  fi
}

# Runs a command as the cluster owner: PostgreSQL refuses to run as root.
as_owner() {
  if ((EUID == 0)); then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# Prints the tail of a log to stderr, for failures.
show_log() {
  [[ -f $1 ]] && tail -n 30 "$1" >&2
  return 0
}

start() {
  local dir=$1 port=$2 bin
  bin=$(bindir)
  mkdir -p "$dir"
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    [[ -z $(ls -A "$dir") ]] || die "$dir is not empty and holds no cluster"
    touch "$dir/$marker"
    chmod 755 "$dir"  # any local user may reach the socket; the data dir itself stays 0700
    if ((EUID == 0)); then
      id postgres >/dev/null 2>&1 || die "no 'postgres' user to run the server as"
      chown postgres: "$dir"
      runuser -u postgres -- test -w "$dir" ||
        die "user postgres cannot reach $dir (is a parent directory private?)"
    fi
    # -N: a throwaway cluster needs no fsync.
    if ! as_owner "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 -A trust -N \
      >"$dir/initdb.log" 2>&1; then
      show_log "$dir/initdb.log"
      die "initdb failed"
    fi
    as_owner tee -a "$dir/data/postgresql.conf" >/dev/null <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $port
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
    local fresh=1
  fi

  if ! as_owner "$bin/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -W >/dev/null 2>&1; then
    show_log "$dir/postgres.log"
    die "pg_ctl start failed"
  fi
  local deadline=$((SECONDS + ready_timeout_s))
  until "$bin/pg_isready" -q -h "$dir" -p "$port"; do
    if ((SECONDS >= deadline)); then
      show_log "$dir/postgres.log"
      die "server in $dir not ready after ${ready_timeout_s}s"
    fi
    sleep 0.1
  done

  local user
  user=$(id -un)
  if [[ -n ${fresh:-} && $user != postgres ]]; then
    "$bin/psql" -qAtX -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres -d postgres >/dev/null <<SQL ||
CREATE ROLE "$user" SUPERUSER LOGIN;
CREATE DATABASE "$user" OWNER "$user";
SQL
      die "could not create role $user"
  fi
}

stop() {
  local dir=$1 bin
  [[ -d $dir ]] || return 0
  [[ -f $dir/$marker ]] || die "$dir was not made by $0; not touching it"
  bin=$(bindir)
  if [[ -f $dir/data/postmaster.pid ]]; then
    as_owner "$bin/pg_ctl" stop -D "$dir/data" -m fast -w -t 60 >/dev/null 2>&1 ||
      as_owner "$bin/pg_ctl" stop -D "$dir/data" -m immediate -w -t 30 >/dev/null 2>&1 ||
      die "could not stop the server in $dir"
  fi
  rm -rf -- "$dir"
}

(($# == 2)) || usage
dir=$(realpath -m -- "$2")
port=${PGPORT:-5432}
[[ $port =~ ^[0-9]+$ ]] || die "PGPORT must be a number, got '$port'"
# The postgres user may not enter the caller's working directory.
cd /
case $1 in
  start) start "$dir" "$port" ;;
  stop) stop "$dir" ;;
  *) usage ;;
esac
