#!/usr/bin/env bash
# `make regress`: PostgreSQL's own regression suite (pg_regress, as `make installcheck` runs it)
# directly against a throwaway PostgreSQL and through sluiced, and the tests whose outcome differs.
#
# The suite comes from Debian's postgresql-15 source package (a deb-src line is added when none is
# there), regress.so is built with postgresql-server-dev-15, pg_regress is postgresql-client-15's.
# Each mode gets a fresh cluster, so one run cannot change what the next one sees.
#
#   REGRESS_MODES="direct session"   what to run (direct, session, transaction)
#   REGRESS_SCHEDULE="parallel serial"  parallel_schedule as make installcheck runs it, and the
#                                     same schedule one test at a time (either alone, or both)
#
# Prints, per mode, the failed tests, and the tests that differ from direct; writes the same to
# build/regress/summary.md. Exits non-zero when a run could not be made (a crash of sluiced, a hang
# past the timeout), and when session mode fails a test that passes directly, other than those
# that need a brand-new backend (fresh_backend_tests below). Transaction mode's differences are
# reported only.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd -P)
# shellcheck source=scripts/throwaway-lib.sh
source "$root/scripts/throwaway-lib.sh"

modes=${REGRESS_MODES:-direct session}
schedules=${REGRESS_SCHEDULE:-parallel serial}
readonly pg_port=56432 sluice_port=56433 run_timeout_s=900
# They see what earlier sessions left in the backend (temp's PREPARE TRANSACTION after temporary
# objects, guc's and stats' counters of a fresh process): no pooled session is brand-new.
readonly fresh_backend_tests="guc temp stats"
out=$root/build/regress
src=$out/src

say() { echo "regress: $*"; }
die() {
  echo "regress: $*" >&2
  exit 1
}

# --- what it needs -----------------------------------------------------------------------------------

pg_regress=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress
missing=()
[[ -x $pg_regress ]] || missing+=(postgresql-client-15)
[[ -d /usr/include/postgresql/15/server ]] || missing+=(postgresql-server-dev-15)
command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
if ((${#missing[@]})); then
  ((EUID == 0)) || die "missing packages: ${missing[*]} (install them, or run as root)"
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[[ -x $root/build/bin/sluiced ]] || make -C "$root" build

# The suite of the installed server's version, once.
if [[ ! -f $src/parallel_schedule || ! -f $src/refint.c ]]; then
  if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    ((EUID == 0)) || die "no deb-src line in apt's sources (add one, or run as root)"
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >/etc/apt/sources.list.d/sluice-deb-src.sources
  fi
  apt-get update -qq
  mkdir -p "$out/download"
  version=$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)
  # The installed version first; any other the mirrors still serve after it.
  (cd "$out/download" &&
    for candidate in "$version" $(apt-cache showsrc postgresql-15 | awk '/^Version:/ {print $2}'); do
      [[ -n $candidate ]] && apt-get source -qq --download-only "postgresql-15=$candidate" >/dev/null 2>&1 && break
    done) || true
  tarball=$(ls "$out"/download/postgresql-15_*.orig.tar.bz2 2>/dev/null | head -n 1)
  [[ -n $tarball ]] || die "apt-get source postgresql-15 found nothing to download"
  rm -rf "$src" && mkdir -p "$src"
  tar -xjf "$tarball" -C "$src" --strip-components=4 --wildcards '*/src/test/regress/*'
  tar -xjf "$tarball" -C "$src" --strip-components=3 --wildcards '*/contrib/spi/autoinc.c' '*/contrib/spi/refint.c'
fi
# The C functions the suite loads: regress.so, and autoinc.so and refint.so of contrib/spi.
for module in regress autoinc refint; do
  [[ -f $src/$module.so ]] && continue
  cc -O2 -fPIC -shared -I/usr/include/postgresql/15/server -I/usr/include/postgresql/internal \
    -o "$src/$module.so" "$src/$module.c" || die "cannot build $module.so"
done

for schedule in $schedules; do
  [[ $schedule == parallel || $schedule == serial ]] || die "REGRESS_SCHEDULE is parallel and/or serial, not $schedule"
done

# --- one run -----------------------------------------------------------------------------------------

work=$(mktemp -d /tmp/sluice-regress.XXXXXX)
chmod 755 "$work"
pg_dir='' sluiced_pid=''
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  stop_pid "$sluiced_pid" INT
  pg_discard "$pg_dir"
  rm -rf -- "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# SCHEDULE MODE: runs the suite and leaves the failed tests' names in $out/SCHEDULE/MODE.failed
run_mode() {
  local schedule=$1 mode=$2 host port schedule_args run_out=$out/$1
  case $schedule in
    parallel) schedule_args=(--schedule="$src/parallel_schedule" --max-concurrent-tests=20) ;;
    serial) schedule_args=(--schedule="$src/parallel_schedule" --max-connections=1) ;;
  esac
  pg_dir=$(mktemp -d /tmp/sluice-regress-pg.XXXXXX)
  PGPORT=$pg_port "$root/scripts/pg-throwaway.sh" start "$pg_dir"
  # The suite's own settings, as `make installcheck` expects of a fresh cluster.
  pg_reconfigure "$pg_dir" "$pg_port" <<'SQL'
ALTER SYSTEM SET max_connections = 200;
ALTER SYSTEM SET max_prepared_transactions = 10;
ALTER SYSTEM SET lc_messages = 'C';
SQL
  host=$pg_dir port=$pg_port
  if [[ $mode != direct ]]; then
    cat >"$work/sluiced.json" <<JSON
{
  "listen": {"unix_socket_dir": "$work", "port": $sluice_port},
  "control": {"socket": "$work/control.sock"},
  "pool": {"pool_size": 30, "pool_mode": "$mode", "query_wait_timeout_ms": 600000},
  "databases": {
    "postgres": {"conninfo": "host=$pg_dir port=$pg_port"},
    "regression": {"conninfo": "host=$pg_dir port=$pg_port"},
    "template1": {"conninfo": "host=$pg_dir port=$pg_port"}
  },
  "limits": {"max_client_conn": 500}
}
JSON
    "$root/build/bin/sluiced" -c "$work/sluiced.json" >"$run_out/$mode.sluiced.log" 2>&1 &
    sluiced_pid=$!
    until [[ -S $work/.s.PGSQL.$sluice_port ]]; do
      kill -0 "$sluiced_pid" 2>/dev/null || die "sluiced did not start: $(tail -n 5 "$run_out/$mode.sluiced.log")"
      sleep 0.1
    done
    host=$work port=$sluice_port
  fi
  say "$mode: pg_regress ($schedule schedule)"
  rm -rf "${run_out:?}/$mode" && mkdir -p "$run_out/$mode/results"
  chmod a+rwx "$run_out/$mode/results"  # the server (user postgres) writes COPY TO files there
  (cd "$src" && timeout "$run_timeout_s" "$pg_regress" --inputdir="$src" --outputdir="$run_out/$mode" \
    --bindir=/usr/lib/postgresql/15/bin --dlpath="$src" --host="$host" --port="$port" \
    "${schedule_args[@]}" >"$run_out/$mode/pg_regress.out" 2>&1) || true
  grep -Eq '^(# )?(All [0-9]+ tests passed|[0-9]+ of [0-9]+ tests failed)' "$run_out/$mode/pg_regress.out" ||
    grep -q 'tests passed\|tests failed' "$run_out/$mode/pg_regress.out" ||
    die "$mode: pg_regress did not finish: $(tail -n 5 "$run_out/$mode/pg_regress.out")"
  grep -E '^(test| )? *[a-z0-9_.]+ +\.\.\. FAILED|FAILED' "$run_out/$mode/pg_regress.out" |
    sed -E 's/^[^a-z0-9_.]*(test )?([a-z0-9_.]+) .*/\2/' | sort -u >"$run_out/$mode.failed" || true
  if [[ -n $sluiced_pid ]]; then
    kill -0 "$sluiced_pid" 2>/dev/null || die "$mode: sluiced died during the suite"
    stop_pid "$sluiced_pid" TERM
    sluiced_pid=''
  fi
  pg_discard "$pg_dir"
  pg_dir=''
  say "$mode: $(grep -Eo '([0-9]+ of [0-9]+ tests failed|All [0-9]+ tests passed)' "$run_out/$mode/pg_regress.out" | head -n 1)"
}

for schedule in $schedules; do
  for mode in $modes; do run_mode "$schedule" "$mode"; done
done

# --- what differs --------------------------------------------------------------------------------------

summary() {  # SCHEDULE
  local schedule=$1 run_out=$out/$1
  echo "# pg_regress ($schedule schedule), PostgreSQL $(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null)"
  echo
  for mode in $modes; do
    echo "- $mode: $(grep -Eo '([0-9]+ of [0-9]+ tests failed|All [0-9]+ tests passed)' "$run_out/$mode/pg_regress.out" | head -n 1)"
  done
  if [[ " $modes " == *" direct "* ]]; then
    for mode in $modes; do
      [[ $mode == direct ]] && continue
      echo
      echo "## $mode: failing here, passing directly"
      comm -13 "$run_out/direct.failed" "$run_out/$mode.failed" | sed 's/^/- /'
      echo
      echo "## $mode: passing here, failing directly"
      comm -23 "$run_out/direct.failed" "$run_out/$mode.failed" | sed 's/^/- /'
    done
  fi
  echo
}

for schedule in $schedules; do summary "$schedule"; done | tee "$out/summary.md"

unexpected=''
if [[ " $modes " == *" direct "* && " $modes " == *" session "* ]]; then
  for schedule in $schedules; do
    for test in $(comm -13 "$out/$schedule/direct.failed" "$out/$schedule/session.failed"); do
      [[ " $fresh_backend_tests " == *" $test "* ]] || unexpected+=" $test ($schedule)"
    done
  done
fi
[[ -z $unexpected ]] || die "session mode fails what passes directly:$unexpected"
