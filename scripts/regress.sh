#!/usr/bin/env bash
# `make regress`: PostgreSQL's own regression suite (pg_regress, as `make installcheck` runs it)
# directly against a throwaway PostgreSQL and through sluiced, and the tests whose outcome differs.
#
# The suite comes from Debian's postgresql-15 source package (a deb-src line is added when none is
# there), regress.so is built with postgresql-server-dev-15, pg_regress is postgresql-client-15's.
# Each run gets a fresh cluster, so one run cannot change what the next one sees.
#
# Schedules (all of parallel_schedule's 217 tests, in its order):
#   parallel   as make installcheck runs it, up to 20 tests at once
#   serial     the same, one test at a time (--max-connections=1), one pg_regress run
#   isolated   the same order, one pg_regress run per test file against the same database (the
#              first creates it, the others --use-existing), each under isolated_test_timeout_s:
#              a hang fails that test alone, and a crash of sluiced names the test that was running
# Modes: direct (no pooler; the reference), session and transaction (through sluiced).
#
# By default (about 15 minutes on 2 idle cores) it runs default_runs below: parallel directly and in
# session mode, serial and isolated directly and in transaction mode.
#   REGRESS_SCHEDULE="serial isolated"    when either is set, every mode listed on every schedule
#   REGRESS_MODES="direct transaction"    listed (unset: all three schedules, all three modes)
#   REGRESS_GATE_TRANSACTION=0            report transaction mode's differences without failing
#
# Prints, per schedule and mode, the failed tests and the tests that differ from direct on the same
# schedule; writes the same to build/regress/summary.md. Exits non-zero when a run could not be
# made (a crash of sluiced, a hang past the timeout), and when session or transaction mode fails a
# test that passes directly, other than those that need a brand-new backend (fresh_backend_tests)
# and, in transaction mode, transaction_known_differences.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd -P)
# shellcheck source=scripts/throwaway-lib.sh
source "$root/scripts/throwaway-lib.sh"

readonly default_runs="parallel:direct parallel:session serial:direct serial:transaction
  isolated:direct isolated:transaction"
readonly pg_port=56432 sluice_port=56433 run_timeout_s=900 isolated_test_timeout_s=120
# They see what earlier sessions left in the backend (temp's PREPARE TRANSACTION after temporary
# objects, guc's and stats' counters of a fresh process): no pooled session is brand-new.
readonly fresh_backend_tests="guc temp stats"
# Transaction mode's tolerated differences from direct: tests that may fail in transaction mode
# though they pass directly, each named in the README ("PostgreSQL's regression suite through
# sluiced") with its cause. Empty: every difference fails `make regress`.
readonly transaction_known_differences=""
gate_transaction=${REGRESS_GATE_TRANSACTION:-1}
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
  tarballs=("$out"/download/postgresql-15_*.orig.tar.bz2)
  tarball=${tarballs[0]}
  [[ -f $tarball ]] || die "apt-get source postgresql-15 found nothing to download"
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

# --- which runs --------------------------------------------------------------------------------------

runs=''  # SCHEDULE:MODE words, one space apart
if [[ -n ${REGRESS_MODES:-}${REGRESS_SCHEDULE:-} ]]; then
  for schedule in ${REGRESS_SCHEDULE:-parallel serial isolated}; do
    for mode in ${REGRESS_MODES:-direct session transaction}; do runs+=" $schedule:$mode"; done
  done
else
  for run in $default_runs; do runs+=" $run"; done
fi
for run in $runs; do
  case ${run%%:*} in
    parallel | serial | isolated) ;;
    *) die "REGRESS_SCHEDULE is parallel, serial and/or isolated, not ${run%%:*}" ;;
  esac
  case ${run#*:} in
    direct | session | transaction) ;;
    *) die "REGRESS_MODES is direct, session and/or transaction, not ${run#*:}" ;;
  esac
done
[[ $gate_transaction == [01] ]] || die "REGRESS_GATE_TRANSACTION is 0 or 1, not $gate_transaction"
schedules=$(for run in $runs; do echo "${run%%:*}"; done | awk '!seen[$0]++')
modes_of() {  # SCHEDULE: the modes run on it, in order
  for run in $runs; do [[ ${run%%:*} == "$1" ]] && echo "${run#*:}"; done
  return 0
}

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

# MODE LOG: a fresh cluster, and sluiced in front of it unless MODE is direct; sets host and port.
start_servers() {
  local mode=$1 log=$2
  pg_dir=$(mktemp -d /tmp/sluice-regress-pg.XXXXXX)
  PGPORT=$pg_port "$root/scripts/pg-throwaway.sh" start "$pg_dir"
  # The suite's own settings, as `make installcheck` expects of a fresh cluster.
  pg_reconfigure "$pg_dir" "$pg_port" <<'SQL'
ALTER SYSTEM SET max_connections = 200;
ALTER SYSTEM SET max_prepared_transactions = 10;
ALTER SYSTEM SET lc_messages = 'C';
SQL
  host=$pg_dir port=$pg_port
  [[ $mode == direct ]] && return 0
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
  "$root/build/bin/sluiced" -c "$work/sluiced.json" >"$log" 2>&1 &
  sluiced_pid=$!
  until [[ -S $work/.s.PGSQL.$sluice_port ]]; do
    kill -0 "$sluiced_pid" 2>/dev/null || die "sluiced did not start: $(tail -n 5 "$log")"
    sleep 0.1
  done
  host=$work port=$sluice_port
}

# MODE: sluiced (dead means it crashed) and the cluster go.
stop_servers() {
  local mode=$1
  if [[ -n $sluiced_pid ]]; then
    kill -0 "$sluiced_pid" 2>/dev/null || die "$mode: sluiced died during the suite"
    stop_pid "$sluiced_pid" TERM
    sluiced_pid=''
  fi
  pg_discard "$pg_dir"
  pg_dir=''
}

# The tests of parallel_schedule, in its order.
schedule_tests() {
  awk '$1 == "test:" { for (i = 2; i <= NF; i++) print $i }' "$src/parallel_schedule"
}

# SECONDS DIR ARGS...: pg_regress with the suite's files against $host:$port, results in DIR,
# killed with whatever it started (psql) after SECONDS.
pg_regress_for() {
  local limit=$1 dir=$2
  shift 2
  (cd "$src" && timeout -k 10 "$limit" "$pg_regress" --inputdir="$src" --outputdir="$dir" \
    --bindir=/usr/lib/postgresql/15/bin --dlpath="$src" --host="$host" --port="$port" "$@")
}

# SCHEDULE MODE: the whole schedule in one pg_regress run, under run_timeout_s.
run_schedule() {
  local schedule=$1 mode=$2 dir=$out/$1/$2 schedule_args
  case $schedule in
    parallel) schedule_args=(--schedule="$src/parallel_schedule" --max-concurrent-tests=20) ;;
    serial) schedule_args=(--schedule="$src/parallel_schedule" --max-connections=1) ;;
  esac
  pg_regress_for "$run_timeout_s" "$dir" "${schedule_args[@]}" >"$dir/pg_regress.out" 2>&1 || true
  grep -Eq '([0-9]+ of [0-9]+ tests failed|All [0-9]+ tests passed)' "$dir/pg_regress.out" ||
    die "$mode: pg_regress ($schedule) did not finish in ${run_timeout_s} s: $(tail -n 5 "$dir/pg_regress.out")"
  grep -E '^(test| )? *[a-z0-9_.]+ +\.\.\. FAILED|FAILED' "$dir/pg_regress.out" |
    sed -E 's/^[^a-z0-9_.]*(test )?([a-z0-9_.]+) .*/\2/' | sort -u >"$dir.failed" || true
  grep -Eo '([0-9]+ of [0-9]+ tests failed|All [0-9]+ tests passed)' "$dir/pg_regress.out" | head -n 1 >"$dir.outcome"
}

# MODE: each test in a pg_regress run of its own, under isolated_test_timeout_s; a test that runs
# out of time is failed and named in MODE.hung, and the next one runs (once sluiced still answers).
run_isolated() {
  local mode=$1 dir=$out/isolated/$1 test rc existing=() started=$SECONDS total=0 failed=0
  : >"$dir/pg_regress.out"
  : >"$dir/isolated.diffs"
  : >"$dir.failed.unsorted"
  : >"$dir.hung"
  for test in $(schedule_tests); do
    ((SECONDS - started < run_timeout_s)) || die "$mode: isolated runs past ${run_timeout_s} s, at $test"
    rc=0
    pg_regress_for "$isolated_test_timeout_s" "$dir" "${existing[@]}" "$test" >"$dir/one.out" 2>&1 || rc=$?
    cat "$dir/one.out" >>"$dir/pg_regress.out"
    if [[ -f $dir/regression.diffs ]]; then cat "$dir/regression.diffs" >>"$dir/isolated.diffs"; fi
    total=$((total + 1))
    if ((rc == 124 || rc == 137)); then
      say "$mode: $test hung (killed after ${isolated_test_timeout_s} s)"
      echo "test $test ... hung (killed after ${isolated_test_timeout_s} s)" >>"$dir/pg_regress.out"
      echo "$test" >>"$dir.hung"
      echo "$test" >>"$dir.failed.unsorted"
      failed=$((failed + 1))
    elif ! grep -q 'running regression test queries' "$dir/one.out"; then
      die "$mode: pg_regress could not run $test: $(tail -n 5 "$dir/one.out")"
    elif ! grep -Eq "^(test )?$test +\.\.\. ok" "$dir/one.out"; then
      echo "$test" >>"$dir.failed.unsorted"
      failed=$((failed + 1))
    fi
    if [[ -n $sluiced_pid ]]; then
      kill -0 "$sluiced_pid" 2>/dev/null || die "$mode: sluiced died during $test (isolated)"
      [[ $rc != 124 && $rc != 137 ]] ||
        timeout 10 psql -qAtX -h "$host" -p "$port" -d postgres -c 'SELECT 1' >/dev/null ||
        die "$mode: sluiced stopped answering after $test hung"
    fi
    existing=(--use-existing)
  done
  mv "$dir/isolated.diffs" "$dir/regression.diffs"
  rm -f "$dir/one.out" "$dir/regression.out"
  sort -u "$dir.failed.unsorted" >"$dir.failed"
  rm -f "$dir.failed.unsorted"
  if ((failed)); then echo "$failed of $total tests failed" >"$dir.outcome"; else echo "All $total tests passed" >"$dir.outcome"; fi
}

# SCHEDULE MODE: one run on fresh servers; leaves the failed tests' names in $out/SCHEDULE/MODE.failed,
# the outcome line in MODE.outcome and the minutes it took in MODE.time.
run_mode() {
  local schedule=$1 mode=$2 dir=$out/$1/$2 started=$SECONDS
  rm -rf "${dir:?}" "$dir".* && mkdir -p "$dir/results"
  chmod a+rwx "$dir/results"  # the server (user postgres) writes COPY TO files there
  start_servers "$mode" "$dir.sluiced.log"
  say "$mode: pg_regress ($schedule schedule)"
  if [[ $schedule == isolated ]]; then run_isolated "$mode"; else run_schedule "$schedule" "$mode"; fi
  stop_servers "$mode"
  echo "$(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s" >"$dir.time"
  say "$mode ($schedule): $(cat "$dir.outcome") in $(cat "$dir.time")"
}

for run in $runs; do run_mode "${run%%:*}" "${run#*:}"; done

# --- what differs --------------------------------------------------------------------------------------

summary() {  # SCHEDULE
  local schedule=$1 dir=$out/$1 mode modes
  modes=$(modes_of "$schedule")
  echo "# pg_regress ($schedule schedule), PostgreSQL $(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null)"
  echo
  for mode in $modes; do
    echo "- $mode: $(cat "$dir/$mode.outcome") ($(cat "$dir/$mode.time"))"
  done
  for mode in $modes; do
    [[ -s $dir/$mode.hung ]] || continue
    echo
    echo "## $mode: hung (killed after ${isolated_test_timeout_s} s)"
    sed 's/^/- /' "$dir/$mode.hung"
  done
  [[ $modes == *direct* ]] || return 0
  for mode in $modes; do
    [[ $mode == direct ]] && continue
    echo
    echo "## $mode: failing here, passing directly"
    comm -13 "$dir/direct.failed" "$dir/$mode.failed" | sed 's/^/- /'
    echo
    echo "## $mode: passing here, failing directly"
    comm -23 "$dir/direct.failed" "$dir/$mode.failed" | sed 's/^/- /'
  done
  echo
}

for schedule in $schedules; do summary "$schedule"; done | tee "$out/summary.md"

# MODE TOLERATED: what MODE fails and direct passes on the same schedule, other than TOLERATED.
unexpected() {
  local mode=$1 tolerated=$2 schedule test
  for schedule in $schedules; do
    [[ " $runs " == *" $schedule:direct "* && " $runs " == *" $schedule:$mode "* ]] || continue
    for test in $(comm -13 "$out/$schedule/direct.failed" "$out/$schedule/$mode.failed"); do
      [[ " $tolerated " == *" $test "* ]] || printf ' %s' "$test ($schedule)"
    done
  done
}

session_unexpected=$(unexpected session "$fresh_backend_tests")
transaction_unexpected=$(unexpected transaction "$fresh_backend_tests $transaction_known_differences")
if [[ -n $transaction_unexpected ]] && ((!gate_transaction)); then
  say "transaction mode fails what passes directly (not gated, REGRESS_GATE_TRANSACTION=0):$transaction_unexpected"
  transaction_unexpected=''
fi
[[ -z $session_unexpected ]] || say "session mode fails what passes directly:$session_unexpected"
[[ -z $transaction_unexpected ]] || say "transaction mode fails what passes directly:$transaction_unexpected"
[[ -z $session_unexpected$transaction_unexpected ]] || exit 1
