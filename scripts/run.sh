#!/usr/bin/env bash
# `make run`: runs build/bin/sluiced in the foreground.
#
# With $SLUICE_CONFIG or ./sluice.json, sluiced runs with that file and nothing else happens.
# Otherwise a throwaway PostgreSQL is started in a temp dir and a config pointing at it is written;
# Ctrl-C (SIGINT) or SIGTERM stops sluiced, then PostgreSQL, and removes the temp dirs.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd -P)
sluiced=$root/build/bin/sluiced
[[ -x $sluiced ]] || { echo "run: $sluiced is missing; run 'make build'" >&2; exit 1; }

if [[ -n ${SLUICE_CONFIG:-} ]]; then
  exec "$sluiced" -c "$SLUICE_CONFIG"
elif [[ -f sluice.json ]]; then
  exec "$sluiced" -c sluice.json
fi

readonly listen_port=6432 pg_port=5432 drain_timeout_s=5
pg_dir=$(mktemp -d /tmp/sluice-pg.XXXXXX)
run_dir=$(mktemp -d /tmp/sluice-run.XXXXXX)
sluiced_pid=

# Stops sluiced with the given signal (SIGINT: immediate shutdown, SIGTERM: drain for up to
# drain.timeout_s), then PostgreSQL, and removes the temp dirs. Runs once.
# shellcheck disable=SC2317  # invoked by the traps
cleanup() {
  trap - EXIT INT TERM
  local signal=$1
  if [[ -n $sluiced_pid ]] && kill -0 "$sluiced_pid" 2>/dev/null; then
    kill "-$signal" "$sluiced_pid" 2>/dev/null || true
    local deadline=$((SECONDS + drain_timeout_s + 5))
    while kill -0 "$sluiced_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$sluiced_pid" 2>/dev/null || true
    wait "$sluiced_pid" 2>/dev/null || true
  fi
  "$root/scripts/pg-throwaway.sh" stop "$pg_dir" || true
  rm -rf -- "$run_dir"
}
# The signal is forwarded explicitly: a background child of a non-interactive shell ignores the
# terminal's SIGINT unless it installs its own handler, and SIGTERM may be sent to this script alone.
trap 'cleanup TERM' EXIT
trap 'cleanup INT; exit 130' INT
trap 'cleanup TERM; exit 143' TERM

PGPORT=$pg_port "$root/scripts/pg-throwaway.sh" start "$pg_dir"
psql -qAtX -h "$pg_dir" -p "$pg_port" -d postgres -c 'CREATE DATABASE bench' >/dev/null

config=$run_dir/sluice.json
cat >"$config" <<JSON
{
  "listen": {"unix_socket_dir": "$run_dir", "port": $listen_port},
  "control": {"socket": "$run_dir/control.sock"},
  "drain": {"timeout_s": $drain_timeout_s},
  "databases": {
    "postgres": {"conninfo": "host=$pg_dir port=$pg_port"},
    "bench": {"conninfo": "host=$pg_dir port=$pg_port dbname=bench"}
  }
}
JSON

cat <<EOF_HINT
sluiced is starting with $config
  connect:    psql -h $run_dir -p $listen_port postgres
  pgbench:    pgbench -i -h $pg_dir -p $pg_port bench      # initialise directly against PostgreSQL
              pgbench -h $run_dir -p $listen_port -c 10 -T 10 bench   # then run through sluiced
  control:    SLUICE_CONTROL=$run_dir/control.sock $root/build/bin/sluicectl status
  PostgreSQL: psql -h $pg_dir -p $pg_port postgres       # bypassing sluiced
Ctrl-C stops sluiced and the throwaway PostgreSQL.
EOF_HINT

# In the background so the traps run as soon as a signal arrives, not when sluiced exits.
"$sluiced" -c "$config" &
sluiced_pid=$!
status=0
wait "$sluiced_pid" || status=$?
sluiced_pid=
exit "$status"
