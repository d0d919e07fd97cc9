#!/usr/bin/env bash
# `make bench`: sluice against PgBouncer and PostgreSQL direct, in one run.
#
# Starts a throwaway PostgreSQL (scripts/pg-throwaway.sh, max_connections raised), initialises a
# pgbench database, starts sluiced (three instances: one for the pgbench rounds, one with
# `workers` = 2 for the worker-loop comparison, one for the teardown phase, so that phase's latency
# histograms hold only its own releases) and PgBouncer with the same
# settings, then runs bench/bench.py, which writes bench/results/latest.md and latest.png and prints
# the table. Everything started here is stopped, and every temp dir removed, on exit, failure,
# Ctrl-C or SIGTERM.
#
# Environment (all optional):
#   BENCH_DURATION=3   seconds per pgbench run        BENCH_ROUNDS=3     rounds (medians over them)
#   BENCH_IDLE_CLIENTS=2000                           BENCH_SCALE=10     pgbench -i -s
#   BENCH_PG_PORT=55432 BENCH_SLUICE_PORT=6432 BENCH_PGBOUNCER_PORT=6433   (Unix sockets only: the
#                      ports only name the sockets, each in its own temp dir)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd -P)
bench_dir=$root/bench
started=$SECONDS

duration=${BENCH_DURATION:-3}
rounds=${BENCH_ROUNDS:-3}
idle_clients=${BENCH_IDLE_CLIENTS:-2000}
scale=${BENCH_SCALE:-10}
pg_port=${BENCH_PG_PORT:-55432}
sluice_port=${BENCH_SLUICE_PORT:-6432}
pgbouncer_port=${BENCH_PGBOUNCER_PORT:-6433}
teardown_port=$((sluice_port + 2))
workers_port=$((sluice_port + 4))
readonly max_connections=1500 pool_size=20 max_client_conn=5000 fd_limit=20000
readonly teardown_load_s=10 abandon_rollback=200 abandon_cancel=60

say() { echo "bench: $*"; }
die() {
  echo "bench: $*" >&2
  exit 1
}

# --- what it needs ---------------------------------------------------------------------------------

missing=()
command -v pgbench >/dev/null || missing+=(postgresql-client)
command -v psql >/dev/null || missing+=(postgresql-client)
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || command -v pg_config >/dev/null || missing+=(postgresql)
command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
  ((EUID == 0)) || die "missing packages: ${missing[*]} (install them, or run as root)"
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin
if [[ ! -x $root/build/bin/sluiced || ! -x $root/build/bin/sluicectl ]]; then
  say "build/bin/sluiced is missing: make build"
  make -C "$root" build
fi

# The poolers hold 2000+ client sockets in the memory test, pgbench opens 1000 at once.
ulimit -n "$fd_limit" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > 4096)) || die "open-file limit $(ulimit -n) is too low (need > 4096; raise the hard limit)"

# pg_bindir, as_postgres, stop_pid, pg_reconfigure
# shellcheck source=scripts/throwaway-lib.sh
source "$root/scripts/throwaway-lib.sh"

# --- cleanup, whatever happens ---------------------------------------------------------------------

pg_dir=$(mktemp -d /tmp/sluice-bench-pg.XXXXXX)
work=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 755 "$work"
sluiced_pid='' teardown_pid='' workers_pid='' pgbouncer_pid='' runner_pid=''

# shellcheck disable=SC2317  # invoked by the traps
cleanup() {
  trap - EXIT INT TERM
  stop_pid "$runner_pid" TERM
  stop_pid "$sluiced_pid" INT    # SIGINT: immediate shutdown
  stop_pid "$teardown_pid" INT
  stop_pid "$workers_pid" INT
  stop_pid "$pgbouncer_pid" TERM # SIGTERM: PgBouncer's immediate shutdown
  pg_discard "$pg_dir"
  rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- PostgreSQL --------------------------------------------------------------------------------------

say "starting PostgreSQL in $pg_dir"
PGPORT=$pg_port "$root/scripts/pg-throwaway.sh" start "$pg_dir"
# pg-throwaway.sh sets max_connections = 200 and takes no extra settings: ALTER SYSTEM, then restart.
pg_reconfigure "$pg_dir" "$pg_port" <<SQL || die "PostgreSQL did not restart"
ALTER SYSTEM SET max_connections = $max_connections;
ALTER SYSTEM SET shared_buffers = '256MB';
SQL
[[ $(psql -qAtX -h "$pg_dir" -p "$pg_port" -d postgres -c 'SHOW max_connections') == "$max_connections" ]] ||
  die "max_connections was not raised"
psql -qAtX -h "$pg_dir" -p "$pg_port" -d postgres -c 'CREATE DATABASE bench' >/dev/null
say "pgbench -i -s $scale"
pgbench -i -q -s "$scale" -h "$pg_dir" -p "$pg_port" bench >"$work/pgbench-init.log" 2>&1 ||
  { cat "$work/pgbench-init.log" >&2; die "pgbench -i failed"; }

# --- sluiced ------------------------------------------------------------------------------------------

# A copy: others may rebuild build/ while the benchmark runs.
cp "$root/build/bin/sluiced" "$root/build/bin/sluicectl" "$work/"
sluiced=$work/sluiced sluicectl=$work/sluicectl

write_sluice_config() {  # PORT CONTROL FILE [WORKERS]
  cat >"$3" <<JSON
{
  "workers": ${4:-1},
  "listen": {"unix_socket_dir": "$work", "port": $1},
  "control": {"socket": "$2"},
  "pool": {"pool_size": $pool_size, "pool_mode": "transaction"},
  "databases": {"bench": {"conninfo": "host=$pg_dir port=$pg_port dbname=bench"}},
  "limits": {"max_client_conn": $max_client_conn},
  "log_level": "warning"
}
JSON
}

wait_socket() {  # PATH PID NAME LOG
  local deadline=$((SECONDS + 20))
  until [[ -S $1 ]]; do
    kill -0 "$2" 2>/dev/null || { tail -n 20 "$4" >&2; die "$3 exited at start"; }
    ((SECONDS < deadline)) || { tail -n 20 "$4" >&2; die "$3 did not create $1"; }
    sleep 0.1
  done
}

write_sluice_config "$sluice_port" "$work/control.sock" "$work/sluice.json"
write_sluice_config "$teardown_port" "$work/control-teardown.sock" "$work/sluice-teardown.json"
write_sluice_config "$workers_port" "$work/control-workers.sock" "$work/sluice-workers.json" 2
"$sluiced" --check -c "$work/sluice.json" >/dev/null
say "starting sluiced ($("$sluiced" --version))"
"$sluiced" -c "$work/sluice.json" >"$work/sluiced.log" 2>&1 &
sluiced_pid=$!
"$sluiced" -c "$work/sluice-teardown.json" >"$work/sluiced-teardown.log" 2>&1 &
teardown_pid=$!
"$sluiced" -c "$work/sluice-workers.json" >"$work/sluiced-workers.log" 2>&1 &
workers_pid=$!
wait_socket "$work/.s.PGSQL.$sluice_port" "$sluiced_pid" sluiced "$work/sluiced.log"
wait_socket "$work/control.sock" "$sluiced_pid" sluiced "$work/sluiced.log"
wait_socket "$work/.s.PGSQL.$teardown_port" "$teardown_pid" "sluiced (teardown)" "$work/sluiced-teardown.log"
wait_socket "$work/control-teardown.sock" "$teardown_pid" "sluiced (teardown)" "$work/sluiced-teardown.log"
wait_socket "$work/.s.PGSQL.$workers_port" "$workers_pid" "sluiced (2 workers)" "$work/sluiced-workers.log"

# --- PgBouncer ----------------------------------------------------------------------------------------

user=$(id -un)
pgb_dir=$work/pgbouncer
mkdir -p "$pgb_dir"
printf '"%s" ""\n' "$user" postgres | sort -u >"$pgb_dir/userlist.txt"
cat >"$pgb_dir/pgbouncer.ini" <<INI
[databases]
bench = host=$pg_dir port=$pg_port dbname=bench

[pgbouncer]
listen_addr =
listen_port = $pgbouncer_port
unix_socket_dir = $pgb_dir
auth_type = trust
auth_file = $pgb_dir/userlist.txt
pool_mode = transaction
default_pool_size = $pool_size
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = $max_client_conn
logfile =
pidfile =
syslog = 0
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
log_stats = 0
stats_period = 3600
INI
pgbouncer_args=()
if ((EUID == 0)); then  # PgBouncer refuses to run as root: -u switches to postgres after start
  chown -R postgres: "$pgb_dir"
  pgbouncer_args=(-u postgres)
fi
say "starting $(pgbouncer --version | head -n 1)"
pgbouncer "${pgbouncer_args[@]}" "$pgb_dir/pgbouncer.ini" >"$work/pgbouncer.log" 2>&1 &
pgbouncer_pid=$!
wait_socket "$pgb_dir/.s.PGSQL.$pgbouncer_port" "$pgbouncer_pid" pgbouncer "$work/pgbouncer.log"
for pid in "$sluiced_pid" "$pgbouncer_pid"; do
  limit=$(awk '/Max open files/ {print $4}' "/proc/$pid/limits")
  ((limit > idle_clients + 100)) || die "pid $pid may open only $limit files"
done

# --- the benchmark --------------------------------------------------------------------------------------

mkdir -p "$bench_dir/results"
python3 "$bench_dir/bench.py" \
  --root "$root" --bench-dir "$bench_dir" --out-dir "$bench_dir/results" --workdir "$work" \
  --sluice "$work:$sluice_port" --sluice-pid "$sluiced_pid" \
  --sluice2 "$work:$workers_port" --sluice2-pid "$workers_pid" \
  --pgbouncer "$pgb_dir:$pgbouncer_port" --pgbouncer-pid "$pgbouncer_pid" \
  --direct "$pg_dir:$pg_port" \
  --teardown-sluice "$work:$teardown_port" \
  --control "$work/control.sock" --teardown-control "$work/control-teardown.sock" \
  --sluicectl "$sluicectl" --sluiced "$sluiced" --user "$user" \
  --duration "$duration" --rounds "$rounds" --jobs "$(nproc)" --idle-clients "$idle_clients" \
  --scale "$scale" --max-connections "$max_connections" \
  --teardown-load-s "$teardown_load_s" --abandon-rollback "$abandon_rollback" \
  --abandon-cancel "$abandon_cancel" --setup-s "$((SECONDS - started))" &
runner_pid=$!
status=0
wait "$runner_pid" || status=$?
runner_pid=
cp "$work/bench.log" "$bench_dir/results/latest.log" 2>/dev/null || true
if ((status != 0)); then
  for log in sluiced.log sluiced-teardown.log sluiced-workers.log pgbouncer.log; do
    [[ -s $work/$log ]] && { say "$log, last lines:"; tail -n 5 "$work/$log" | sed 's/^/  /'; }
  done
  die "the benchmark failed (exit $status); pgbench outputs: bench/results/latest.log"
fi
cat "$work/summary.txt"
say "done in $((SECONDS - started)) s: bench/results/latest.md, latest.png; pgbench outputs in latest.log"
