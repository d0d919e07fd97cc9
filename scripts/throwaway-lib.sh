# Sourced by bench/run.sh and tests/chaos/run.sh: the helpers both need around a throwaway
# PostgreSQL (scripts/pg-throwaway.sh) and the processes they start.

pg_bindir() {
  if [[ -x /usr/lib/postgresql/15/bin/pg_ctl ]]; then
    echo /usr/lib/postgresql/15/bin
  else
    pg_config --bindir
  fi
}

as_postgres() {
  if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi
}

# Stops a process started here: SIGNAL, up to 10 s, then SIGKILL. Usage: stop_pid PID SIGNAL
stop_pid() {
  local pid=$1 signal=$2
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "-$signal" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Stops the throwaway cluster in DIR and removes DIR, with an immediate shutdown when the fast one
# fails (pg-throwaway.sh removes only what it created). Usage: pg_discard DIR
pg_discard() {
  local dir=$1
  [[ -n $dir ]] || return 0
  "$(dirname "${BASH_SOURCE[0]}")/pg-throwaway.sh" stop "$dir" >/dev/null 2>&1 ||
    { as_postgres "$(pg_bindir)/pg_ctl" stop -D "$dir/data" -m immediate >/dev/null 2>&1 || true; rm -rf -- "$dir"; }
}

# ALTER SYSTEM (the SQL on stdin), then a restart: pg-throwaway.sh takes no extra settings.
# Usage: pg_reconfigure DIR PORT <<SQL ... SQL
pg_reconfigure() {
  local dir=$1 port=$2
  psql -qAtX -h "$dir" -p "$port" -d postgres -v ON_ERROR_STOP=1 >/dev/null
  as_postgres "$(pg_bindir)/pg_ctl" restart -D "$dir/data" -m fast -w -t 60 -l "$dir/postgres.log" >/dev/null || {
    tail -n 20 "$dir/postgres.log" >&2
    return 1
  }
  until pg_isready -q -h "$dir" -p "$port"; do sleep 0.1; done
}
