#!/usr/bin/env bash
# `make chaos`: fault injection against sluiced, side by side with PgBouncer.
#
#   bash tests/chaos/run.sh [--short] [chaos.py options, e.g. --only restart,churn --poolers sluiced]
#
# Starts a throwaway PostgreSQL 15 (scripts/pg-throwaway.sh; max_connections 40, log_connections on,
# synchronous_commit on), then runs tests/chaos/chaos.py, which starts a fresh sluiced and a fresh
# PgBouncer (transaction mode, same pool size, Unix sockets only) for each scenario, breaks things,
# and writes tests/chaos/results/latest.md (short runs: short.md) and the poolers' logs. Exits non-zero if
# any sluiced row fails; PgBouncer's rows are for comparison only.
#
# --short, or CHAOS_SHORT=1: the short run (about a minute; meant for `make test`). Without it the
# long one (about 5 minutes). Everything started here is stopped, and every temp dir removed, on
# exit, failure, Ctrl-C or SIGTERM.
#
# Environment (all optional): CHAOS_SHORT=1, CHAOS_PG_PORT=57432, CHAOS_SLUICE_PORT=57433,
# CHAOS_PGBOUNCER_PORT=57434 (Unix sockets only: the ports only name the sockets),
# CHAOS_SLUICED=path (another sluiced than build/bin/sluiced, e.g. a sanitizer build's).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd -P)
chaos_dir=$root/tests/chaos
started=$SECONDS

short=${CHAOS_SHORT:-0}
passthrough=()
for arg in "$@"; do
  case $arg in
    --short) short=1 ;;
    *) passthrough+=("$arg") ;;
  esac
done
[[ $short == 1 ]] && passthrough+=(--short)
pg_port=${CHAOS_PG_PORT:-57432}
sluice_port=${CHAOS_SLUICE_PORT:-57433}
pgbouncer_port=${CHAOS_PGBOUNCER_PORT:-57434}
sluiced_bin=${CHAOS_SLUICED:-$root/build/bin/sluiced}
sluicectl_bin=$root/build/bin/sluicectl
readonly max_connections=40

say() { echo "chaos: $*"; }
die() {
  echo "chaos: $*" >&2
  exit 1
}

# --- what it needs ---------------------------------------------------------------------------------

missing=()
command -v psql >/dev/null || missing+=(postgresql-client)
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || command -v pg_config >/dev/null || missing+=(postgresql)
[[ -x /usr/sbin/pgbouncer ]] || command -v pgbouncer >/dev/null || missing+=(pgbouncer)
command -v setpriv >/dev/null || missing+=(util-linux)
[[ -x /usr/bin/python3 ]] || command -v python3 >/dev/null || missing+=(python3)
/usr/bin/python3 -c 'import psycopg' 2>/dev/null || missing+=(python3-psycopg)
if ((${#missing[@]})); then
  ((EUID == 0)) || die "missing packages: ${missing[*]} (install them, or run as root)"
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
export PATH=$PATH:/usr/sbin
pgbouncer_bin=$(command -v pgbouncer)
# Debian's python3-psycopg is for Debian's python3; another python3 may come first on PATH.
python=''
for candidate in /usr/bin/python3 python3; do
  if "$candidate" -c 'import psycopg' 2>/dev/null; then
    python=$candidate
    break
  fi
done
[[ -n $python ]] || die "no python3 can import psycopg"

# pg_bindir, as_postgres, stop_pid, pg_reconfigure
# shellcheck source=scripts/throwaway-lib.sh
source "$root/scripts/throwaway-lib.sh"

if [[ ! -x $sluiced_bin || ! -x $sluicectl_bin ]]; then
  if [[ -f $root/build/CMakeCache.txt ]]; then
    say "build/bin/sluiced is missing: building it"
    cmake --build "$root/build" -j"$(nproc)" --target sluiced sluicectl
  else
    say "build/ is not configured: make build"
    make -C "$root" build
  fi
fi

# --- cleanup, whatever happens ---------------------------------------------------------------------

pg_dir=$(mktemp -d /tmp/sluice-chaos-pg.XXXXXX)
work=$(mktemp -d /tmp/sluice-chaos.XXXXXX)
chmod 755 "$work"
pidfile=$work/pids  # chaos.py appends the pid of every process it starts
runner_pid=''

# shellcheck disable=SC2317  # invoked by the traps
cleanup() {
  trap - EXIT INT TERM
  stop_pid "$runner_pid" TERM
  if [[ -f $pidfile ]]; then
    while read -r pid; do stop_pid "$pid" TERM; done <"$pidfile"
  fi
  # A scenario may have been interrupted with the postmaster or a backend SIGSTOPped.
  local postmaster
  postmaster=$(head -n 1 "$pg_dir/data/postmaster.pid" 2>/dev/null || true)
  if [[ $postmaster =~ ^[0-9]+$ ]]; then
    kill -CONT "$postmaster" 2>/dev/null || true
    for pid in $(pgrep -P "$postmaster" || true); do kill -CONT "$pid" 2>/dev/null || true; done
  fi
  pg_discard "$pg_dir"
  rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- PostgreSQL --------------------------------------------------------------------------------------

say "starting PostgreSQL in $pg_dir"
PGPORT=$pg_port "$root/scripts/pg-throwaway.sh" start "$pg_dir"
# pg-throwaway.sh takes no extra settings: ALTER SYSTEM, then restart.
pg_reconfigure "$pg_dir" "$pg_port" <<SQL || die "PostgreSQL did not restart"
ALTER SYSTEM SET max_connections = $max_connections;
ALTER SYSTEM SET log_connections = on;
ALTER SYSTEM SET synchronous_commit = on;
SQL
[[ $(psql -qAtX -h "$pg_dir" -p "$pg_port" -d postgres -c 'SHOW max_connections') == "$max_connections" ]] ||
  die "max_connections was not set"
psql -qAtX -h "$pg_dir" -p "$pg_port" -d postgres -c 'CREATE DATABASE chaos' >/dev/null

# --- the scenarios -------------------------------------------------------------------------------------

# A copy: others may rebuild build/ while this runs.
cp "$sluiced_bin" "$work/sluiced"
cp "$sluicectl_bin" "$work/sluicectl"
"$work/sluiced" --version >/dev/null || die "the copied sluiced does not run"

mkdir -p "$chaos_dir/results"
# The long run's table is kept in the repository (README "Reliability"); the short one is not.
results=latest
[[ $short == 1 ]] && results=short
"$python" "$chaos_dir/chaos.py" \
  --workdir "$work" --pidfile "$pidfile" \
  --out "$chaos_dir/results/$results.md" --log-out "$chaos_dir/results/$results.log" \
  --pg-dir "$pg_dir" --pg-port "$pg_port" --pg-bindir "$(pg_bindir)" \
  --sluiced "$work/sluiced" --sluicectl "$work/sluicectl" --sluice-port "$sluice_port" \
  --pgbouncer "$pgbouncer_bin" --pgbouncer-port "$pgbouncer_port" \
  --user "$(id -un)" ${passthrough[@]+"${passthrough[@]}"} &
runner_pid=$!
status=0
wait "$runner_pid" || status=$?
runner_pid=
say "done in $((SECONDS - started)) s: tests/chaos/results/$results.md; pooler logs in $results.log"
if ((status != 0)); then
  die "a sluiced scenario failed, or the run broke (exit $status)"
fi
