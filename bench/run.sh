#!/usr/bin/env bash
# `make bench`: sluice against two PgBouncers and PostgreSQL direct, in one run.
#
# Starts a throwaway PostgreSQL (scripts/pg-throwaway.sh, max_connections raised), initialises a
# pgbench database, starts sluiced (three instances: one for the pgbench rounds, one with
# `workers` = 2 for the worker-loop comparison, one for the teardown phase, so that phase's latency
# histograms hold only its own releases), two PgBouncers with the same settings: Debian's
# (1.18) and 1.25.2, built once from shared/anchors into build/deps/ (bench/README.md), and
# bench/bare_pooler.c, a pooler that only relays (what a minimal pooler gets here). Then runs
# bench/bench.py, which writes bench/results/latest.md and latest.png and prints the table.
# Everything started here is stopped, and every temp dir removed, on exit, failure, Ctrl-C or
# SIGTERM.
#
# Environment (all optional):
#   BENCH_DURATION=3   seconds per pgbench run        BENCH_ROUNDS=5     rounds (medians over them)
#   BENCH_IDLE_CLIENTS=2000                           BENCH_SCALE=10     pgbench -i -s
#   BENCH_PG_PORT=55432 BENCH_SLUICE_PORT=6432 BENCH_PGBOUNCER_PORT=6433 BENCH_PGBOUNCER2_PORT=6435
#                      (they name the Unix sockets, each in its own temp dir; the TLS tests connect to
#                      the same port numbers on 127.0.0.1: the main sluiced and both PgBouncers)
#   BENCH_ANCHORS=../shared/anchors   where pgbouncer-1.25.2.tar.gz and build-pgbouncer.sh are
#                      (needed only until build/deps/pgbouncer-1.25.2 exists)
#   BENCH_SCRAPE=0     skip the last phase: the cost of a /metrics scraper (bench/scrape_overhead.py)
#   BENCH_FIXED_RATE=0  skip the poolers' CPU at one fixed rate (about 5 min; bench/fixed_rate.py)
#   BENCH_INSTRUCTIONS=0  skip counting instructions per transaction under callgrind (about 2 min;
#                      bench/instructions.py)
#   BENCH_TESTS=L50,S50  only these of bench.py's TESTS (ids; default all): for a quick check, the
#                      report then has n/a for the others
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd -P)
bench_dir=$root/bench
started=$SECONDS

duration=${BENCH_DURATION:-3}
rounds=${BENCH_ROUNDS:-5}
idle_clients=${BENCH_IDLE_CLIENTS:-2000}
scale=${BENCH_SCALE:-10}
tests=${BENCH_TESTS:-}
pg_port=${BENCH_PG_PORT:-55432}
sluice_port=${BENCH_SLUICE_PORT:-6432}
pgbouncer_port=${BENCH_PGBOUNCER_PORT:-6433}
pgbouncer2_port=${BENCH_PGBOUNCER2_PORT:-6435}
anchors=${BENCH_ANCHORS:-$root/../shared/anchors}
teardown_port=$((sluice_port + 2))
workers_port=$((sluice_port + 4))
fairness_port=$((sluice_port + 6))
upgrade_port=$((sluice_port + 8))
instructions_port=$((sluice_port + 10))
settings_port=$((sluice_port + 12))
bare_port=$((sluice_port + 14))
fairness_pgbouncer_port=$((pgbouncer2_port + 2))
instructions_pgbouncer_port=$((pgbouncer2_port + 4))
readonly max_connections=1500 pool_size=20 max_client_conn=5000 fd_limit=20000
readonly teardown_load_s=10 abandon_rollback=200 abandon_cancel=60
# The fairness phase (bench/fairness.py): one database capped at this many servers, shared by a
# user with many clients and one with few; through sluiced (two workers: each user's clients are
# spread over both, and shares are per user across them), then PgBouncer 1.25.2 for comparison.
readonly fairness_max_db=5 fairness_heavy=200 fairness_light=5 fairness_user=bench_light
# The second PgBouncer: its build is kept under build/ (make clean removes it) and reused.
readonly pgb2_version=1.25.2
readonly pgb2_prefix=$root/build/deps/pgbouncer-$pgb2_version
readonly pgb2_build_deps=(build-essential autoconf automake libtool pkg-config libevent-dev libssl-dev)

say() { echo "bench: $*"; }
die() {
  echo "bench: $*" >&2
  exit 1
}

# --- what it needs ---------------------------------------------------------------------------------

apt_install() {  # PACKAGE...
  ((EUID == 0)) || die "missing packages: $* (install them, or run as root)"
  say "installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# dpkg, not command -v: most of the build deps are libraries and headers.
installed() {  # PACKAGE
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == 'install ok installed' ]]
}

missing=()
command -v pgbench >/dev/null || missing+=(postgresql-client)
command -v psql >/dev/null || missing+=(postgresql-client)
[[ -x /usr/lib/postgresql/15/bin/initdb ]] || command -v pg_config >/dev/null || missing+=(postgresql)
command -v pgbouncer >/dev/null || [[ -x /usr/sbin/pgbouncer ]] || missing+=(pgbouncer)
command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
command -v python3 >/dev/null || missing+=(python3)
instructions=${BENCH_INSTRUCTIONS:-1}
if [[ $instructions != 0 ]] && ! command -v valgrind >/dev/null; then
  if ((EUID == 0)); then
    missing+=(valgrind)
  else
    say "valgrind is not installed: the instructions phase is skipped (BENCH_INSTRUCTIONS=0)"
    instructions=0
  fi
fi
if ((${#missing[@]})); then
  apt_install "${missing[@]}"
fi
export PATH=$PATH:/usr/sbin
if [[ ! -x $root/build/bin/sluiced || ! -x $root/build/bin/sluicectl ]]; then
  say "build/bin/sluiced is missing: make build"
  make -C "$root" build
fi

pgb2_built() {
  [[ -x $pgb2_prefix/bin/pgbouncer ]] &&
    [[ $("$pgb2_prefix/bin/pgbouncer" --version 2>/dev/null) == "PgBouncer $pgb2_version"* ]]
}

# Once: build-pgbouncer.sh skips the build when bin/pgbouncer exists, hides the build's output and
# prints its path even when make failed, so a prefix that fails the check is removed and rebuilt.
build_pgbouncer2() {
  pgb2_built && return 0
  [[ -r $anchors/pgbouncer-$pgb2_version.tar.gz && -r $anchors/build-pgbouncer.sh ]] ||
    die "PgBouncer $pgb2_version: no build in ${pgb2_prefix#"$root"/} and no tarball in $anchors (set BENCH_ANCHORS)"
  local dep missing_deps=()
  for dep in "${pgb2_build_deps[@]}"; do installed "$dep" || missing_deps+=("$dep"); done
  if ((${#missing_deps[@]})); then apt_install "${missing_deps[@]}"; fi
  mkdir -p "$(dirname "$pgb2_prefix")"
  local lock  # two benchmarks started at once from this checkout: the second waits, then reuses
  exec {lock}>"$pgb2_prefix.lock"
  flock "$lock"
  if ! pgb2_built; then
    say "building PgBouncer $pgb2_version into ${pgb2_prefix#"$root"/} (once)"
    rm -rf -- "$pgb2_prefix"
    bash "$anchors/build-pgbouncer.sh" "$pgb2_prefix" >/dev/null || true
    pgb2_built || rm -rf -- "$pgb2_prefix"
  fi
  exec {lock}>&-
  pgb2_built ||
    die "building PgBouncer $pgb2_version failed (build-pgbouncer.sh hides make's output: run its steps by hand to see why)"
}
build_pgbouncer2

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
sluiced_pid='' teardown_pid='' workers_pid='' settings_pid='' fairness_pid='' pgbouncer_pid='' pgbouncer2_pid='' runner_pid=''
bare_pid=''
fairness_pgbouncer_pid='' upgrade_pid='' upgraded_pid=''

# shellcheck disable=SC2317  # invoked by the traps
cleanup() {
  trap - EXIT INT TERM
  stop_pid "$runner_pid" TERM
  stop_pid "$sluiced_pid" INT    # SIGINT: immediate shutdown
  stop_pid "$teardown_pid" INT
  stop_pid "$workers_pid" INT
  stop_pid "$settings_pid" INT
  stop_pid "$fairness_pid" INT
  stop_pid "$upgrade_pid" INT
  stop_pid "$bare_pid" TERM
  [[ -n $upgraded_pid ]] && kill -INT "$upgraded_pid" 2>/dev/null  # not our child: the upgrade started it
  stop_pid "$pgbouncer_pid" TERM # SIGTERM: PgBouncer's immediate shutdown
  stop_pid "$pgbouncer2_pid" QUIT # since 1.23 SIGTERM waits for the clients; SIGQUIT is immediate
  stop_pid "$fairness_pgbouncer_pid" QUIT
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
# The search_path workload's clients ask for bench_path,public: an empty schema, so the path is
# valid and pgbench's tables are still found in public.
psql -qAtX -h "$pg_dir" -p "$pg_port" -d bench -c 'CREATE SCHEMA bench_path' >/dev/null
# The TLS tests log in with SCRAM-SHA-256 (PGPASSWORD, bench.py): the role's verifier, made by
# PostgreSQL, goes to the poolers' auth files; their server logins stay trust on the Unix socket.
readonly bench_password=sluice-bench
psql -qAtX -h "$pg_dir" -p "$pg_port" -d postgres >/dev/null <<SQL
SET password_encryption = 'scram-sha-256';
ALTER ROLE "$(id -un)" PASSWORD '$bench_password';
SQL
scram_verifier=$(psql -qAtX -h "$pg_dir" -p "$pg_port" -d postgres \
  -c "SELECT rolpassword FROM pg_authid WHERE rolname = current_user")
[[ $scram_verifier == SCRAM-SHA-256\$* ]] || die "no SCRAM verifier for the bench role"
# Unix-socket clients are trusted, TCP ones (the TLS tests) must use TLS and SCRAM: the same rules
# for sluiced and both PgBouncers.
printf 'local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n' >"$work/hba.conf"
chmod 644 "$work/hba.conf"

# --- TLS: one throwaway certificate, the same for sluiced and both PgBouncers (the TLS tests) ---------

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/tls.key" -out "$work/tls.crt" >/dev/null 2>&1 || die "openssl could not make a certificate"
chmod 644 "$work/tls.key"  # PgBouncer runs as postgres when the bench runs as root

# --- sluiced ------------------------------------------------------------------------------------------

# A copy: others may rebuild build/ while the benchmark runs.
cp "$root/build/bin/sluiced" "$root/build/bin/sluicectl" "$work/"
sluiced=$work/sluiced sluicectl=$work/sluicectl

write_sluice_config() {  # PORT CONTROL FILE [WORKERS] [tls: also TCP + TLS on 127.0.0.1:PORT]
  # [MORE POOL SETTINGS, e.g. '"max_db_connections": 5'] [METRICS_SOCKET]
  local tcp='' tls=''
  if [[ -n ${5:-} ]]; then
    tcp=", \"tcp\": \"127.0.0.1:$1\""
    tls="\"tls\": {\"mode\": \"require\", \"cert_file\": \"$work/tls.crt\", \"key_file\": \"$work/tls.key\"},"
    printf '"%s" "%s"\n' "$(id -un)" "$scram_verifier" >"$work/users.txt"
    tls+=" \"auth\": {\"type\": \"hba\", \"hba_file\": \"$work/hba.conf\", \"file\": \"$work/users.txt\"},"
  fi
  local metrics=''
  [[ -n ${7:-} ]] && metrics="\"metrics\": {\"listen\": \"$7\"},"
  cat >"$3" <<JSON
{
  $metrics
  "workers": ${4:-1},
  "listen": {"unix_socket_dir": "$work", "port": $1$tcp},
  $tls
  "control": {"socket": "$2"},
  "pool": {"pool_size": $pool_size, "pool_mode": "transaction"${6:+, $6}},
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

# The main one serves /metrics too: the scrape-overhead phase (bench/scrape_overhead.py) uses it.
write_sluice_config "$sluice_port" "$work/control.sock" "$work/sluice.json" 1 tls "" "$work/metrics.sock"
write_sluice_config "$teardown_port" "$work/control-teardown.sock" "$work/sluice-teardown.json"
write_sluice_config "$workers_port" "$work/control-workers.sock" "$work/sluice-workers.json" 2
# The search_path test's clients through sluice: their own sluiced, so that the main one keeps its
# servers (bench.py, Bench.instance).
write_sluice_config "$settings_port" "$work/control-settings.sock" "$work/sluice-settings.json"
"$sluiced" --check -c "$work/sluice.json" >/dev/null
say "starting sluiced ($("$sluiced" --version))"
"$sluiced" -c "$work/sluice.json" >"$work/sluiced.log" 2>&1 &
sluiced_pid=$!
"$sluiced" -c "$work/sluice-teardown.json" >"$work/sluiced-teardown.log" 2>&1 &
teardown_pid=$!
"$sluiced" -c "$work/sluice-workers.json" >"$work/sluiced-workers.log" 2>&1 &
workers_pid=$!
"$sluiced" -c "$work/sluice-settings.json" >"$work/sluiced-settings.log" 2>&1 &
settings_pid=$!
wait_socket "$work/.s.PGSQL.$sluice_port" "$sluiced_pid" sluiced "$work/sluiced.log"
wait_socket "$work/control.sock" "$sluiced_pid" sluiced "$work/sluiced.log"
wait_socket "$work/.s.PGSQL.$teardown_port" "$teardown_pid" "sluiced (teardown)" "$work/sluiced-teardown.log"
wait_socket "$work/control-teardown.sock" "$teardown_pid" "sluiced (teardown)" "$work/sluiced-teardown.log"
wait_socket "$work/.s.PGSQL.$workers_port" "$workers_pid" "sluiced (2 workers)" "$work/sluiced-workers.log"
wait_socket "$work/.s.PGSQL.$settings_port" "$settings_pid" "sluiced (settings)" "$work/sluiced-settings.log"
wait_socket "$work/control-settings.sock" "$settings_pid" "sluiced (settings)" "$work/sluiced-settings.log"

# --- PgBouncer ----------------------------------------------------------------------------------------

user=$(id -un)

write_pgbouncer_config() {  # DIR PORT [EXTRA SETTING LINE...]
  local dir=$1 port=$2
  shift 2
  mkdir -p "$dir"
  { printf '"%s" "%s"\n' "$user" "$scram_verifier"; [[ $user == postgres ]] || printf '"postgres" ""\n'; } \
    >"$dir/userlist.txt"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
bench = host=$pg_dir port=$pg_port dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $dir
auth_type = hba
auth_hba_file = $work/hba.conf
auth_file = $dir/userlist.txt
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
client_tls_sslmode = require
client_tls_cert_file = $work/tls.crt
client_tls_key_file = $work/tls.key
INI
  if (($#)); then printf '%s\n' "$@" >>"$dir/pgbouncer.ini"; fi
  if ((EUID == 0)); then chown -R postgres: "$dir"; fi
}

pgbouncer_args=()
if ((EUID == 0)); then  # PgBouncer refuses to run as root: -u switches to postgres after start
  pgbouncer_args=(-u postgres)
fi
# A copy of 1.25.2, as for sluiced: build/ may be cleaned while the benchmark runs.
pgbouncer1=$(command -v pgbouncer)
pgbouncer2=$work/pgbouncer-$pgb2_version
cp "$pgb2_prefix/bin/pgbouncer" "$pgbouncer2"
pgb_dir=$work/pgbouncer pgb2_dir=$work/pgbouncer2
write_pgbouncer_config "$pgb_dir" "$pgbouncer_port"
# 1.25.2 accepts a search_path startup parameter (the search_path workload) only when it tracks it;
# 1.18 has no such setting. IntervalStyle is the default list.
write_pgbouncer_config "$pgb2_dir" "$pgbouncer2_port" "track_extra_parameters = IntervalStyle, search_path"

say "starting $("$pgbouncer1" --version | head -n 1) and $("$pgbouncer2" --version | head -n 1)"
"$pgbouncer1" "${pgbouncer_args[@]}" "$pgb_dir/pgbouncer.ini" >"$work/pgbouncer.log" 2>&1 &
pgbouncer_pid=$!
"$pgbouncer2" "${pgbouncer_args[@]}" "$pgb2_dir/pgbouncer.ini" >"$work/pgbouncer2.log" 2>&1 &
pgbouncer2_pid=$!
wait_socket "$pgb_dir/.s.PGSQL.$pgbouncer_port" "$pgbouncer_pid" pgbouncer "$work/pgbouncer.log"
wait_socket "$pgb2_dir/.s.PGSQL.$pgbouncer2_port" "$pgbouncer2_pid" "pgbouncer $pgb2_version" "$work/pgbouncer2.log"
for pid in "$sluiced_pid" "$pgbouncer_pid" "$pgbouncer2_pid"; do
  limit=$(awk '/Max open files/ {print $4}' "/proc/$pid/limits")
  ((limit > idle_clients + 100)) || die "pid $pid may open only $limit files"
done

# --- the benchmark --------------------------------------------------------------------------------------

# The kernel's floor under a pooler's transaction (bench/relay_floor.c), built for this run.
cc -O2 -o "$work/relay_floor" "$bench_dir/relay_floor.c" || die "could not build bench/relay_floor.c"
# What a minimal pooler gets here: one that only relays (bench/bare_pooler.c), with the same pool size.
cc -O2 -o "$work/bare_pooler" "$bench_dir/bare_pooler.c" -I"$(pg_config --includedir)" -lpq ||
  die "could not build bench/bare_pooler.c"
"$work/bare_pooler" "$work" "$bare_port" "$pool_size" "host=$pg_dir port=$pg_port dbname=bench" \
  >"$work/bare_pooler.log" 2>&1 &
bare_pid=$!
wait_socket "$work/.s.PGSQL.$bare_port" "$bare_pid" "bench/bare_pooler.c" "$work/bare_pooler.log"

mkdir -p "$bench_dir/results"
python3 "$bench_dir/bench.py" \
  --root "$root" --bench-dir "$bench_dir" --out-dir "$bench_dir/results" --workdir "$work" \
  --sluice "$work:$sluice_port" --sluice-pid "$sluiced_pid" \
  --sluice2 "$work:$workers_port" --sluice2-pid "$workers_pid" --sluice2-control "$work/control-workers.sock" \
  --sluice-settings "$work:$settings_port" --sluice-settings-pid "$settings_pid" \
  --sluice-settings-control "$work/control-settings.sock" \
  --pgbouncer "$pgb_dir:$pgbouncer_port" --pgbouncer-pid "$pgbouncer_pid" --pgbouncer-bin "$pgbouncer1" \
  --pgbouncer2 "$pgb2_dir:$pgbouncer2_port" --pgbouncer2-pid "$pgbouncer2_pid" --pgbouncer2-bin "$pgbouncer2" \
  --direct "$pg_dir:$pg_port" --relay-floor "$work/relay_floor" \
  --bare "$work:$bare_port" --bare-pid "$bare_pid" \
  --sluice-tls "127.0.0.1:$sluice_port" --pgbouncer-tls "127.0.0.1:$pgbouncer_port" \
  --pgbouncer2-tls "127.0.0.1:$pgbouncer2_port" \
  --teardown-sluice "$work:$teardown_port" \
  --control "$work/control.sock" --teardown-control "$work/control-teardown.sock" \
  --sluicectl "$sluicectl" --sluiced "$sluiced" --user "$user" \
  --duration "$duration" --rounds "$rounds" --jobs "$(nproc)" --idle-clients "$idle_clients" \
  --scale "$scale" --max-connections "$max_connections" --pool-size "$pool_size" \
  --teardown-load-s "$teardown_load_s" --abandon-rollback "$abandon_rollback" \
  --abandon-cancel "$abandon_cancel" --tests "$tests" --setup-s "$((SECONDS - started))" &
runner_pid=$!
status=0
wait "$runner_pid" || status=$?
runner_pid=
# The poolers' CPU at the same offered load (bench/fixed_rate.py), while the bare relay still runs.
if ((status == 0)) && [[ ${BENCH_FIXED_RATE:-1} != 0 ]]; then
  say "pooler CPU at one fixed rate"
  python3 "$bench_dir/fixed_rate.py" --target "sluice=$work:$sluice_port:$sluiced_pid" \
    --target "PgBouncer $pgb2_version=$pgb2_dir:$pgbouncer2_port:$pgbouncer2_pid" \
    --target "bare relay=$work:$bare_port:$bare_pid" --anchor "PgBouncer $pgb2_version" --relay "bare relay" \
    --db bench --user "$user" --jobs "$(nproc)" --duration "$duration" --rounds "$rounds" \
    --append-to "$bench_dir/results/latest.md" --log "$work/bench.log" >>"$work/summary.txt" &
  runner_pid=$!
  fixed_rate_status=0
  wait "$runner_pid" || fixed_rate_status=$?
  runner_pid=
  ((fixed_rate_status == 0)) || say "the fixed-rate phase failed (exit $fixed_rate_status): see its table in latest.md"
fi
stop_pid "$bare_pid" TERM # done with it: its last line, kept in latest.log, counts the sends that waited
bare_pid=
cat "$work/bench.log" "$work/bare_pooler.log" >"$bench_dir/results/latest.log" 2>/dev/null || true
if ((status != 0)); then
  for log in sluiced.log sluiced-teardown.log sluiced-workers.log sluiced-settings.log pgbouncer.log pgbouncer2.log \
    bare_pooler.log; do
    [[ -s $work/$log ]] && { say "$log, last lines:"; tail -n 5 "$work/$log" | sed 's/^/  /'; }
  done
  die "the benchmark failed (exit $status); pgbench outputs: bench/results/latest.log"
fi

# Instructions per transaction (bench/instructions.py): fresh poolers under callgrind, each run alone.
if [[ $instructions != 0 ]]; then
  say "instructions per transaction under callgrind"
  write_sluice_config "$instructions_port" "$work/control-instructions.sock" "$work/sluice-instructions.json"
  pgb4_dir=$work/pgbouncer-instructions
  write_pgbouncer_config "$pgb4_dir" "$instructions_pgbouncer_port"
  mkdir -p "$work/callgrind" && chmod 777 "$work/callgrind"  # PgBouncer's user writes its profile
  pgbouncer_user=()
  ((EUID == 0)) && pgbouncer_user=(--pgbouncer-user postgres)
  # In the background, as bench.py: cleanup() stops it (and it its pooler) on Ctrl-C or SIGTERM.
  python3 "$bench_dir/instructions.py" --sluice "$work:$instructions_port:$sluiced -c $work/sluice-instructions.json" \
    --pgbouncer "$pgb4_dir:$instructions_pgbouncer_port:$pgbouncer2 $pgb4_dir/pgbouncer.ini" \
    --pgbouncer-name "PgBouncer $pgb2_version" "${pgbouncer_user[@]}" --db bench --out-dir "$work/callgrind" \
    >"$work/instructions-table.md" &
  runner_pid=$!
  wait "$runner_pid" || die "the instructions phase failed"
  runner_pid=
  {
    echo
    echo "### Instructions per transaction (callgrind)"
    echo
    echo "One pooler at a time under \`valgrind --tool=callgrind --cache-sim=yes\` (the others idle),"
    echo "started fresh for N and again for 4N pgbench transactions; (count of the second − the first)"
    echo "/ 3N (bench/README.md). How many transactions one loop turn serves still depends on timing, so"
    echo "the counts move between runs too: under 1 % at 1 and 1000 clients, up to 15 % at 50. L1 data"
    echo "misses (reads and writes) are callgrind's model of this machine's L1 (\`--cache-sim\`): how"
    echo "many cache lines a transaction's work reaches for that it last touched too long ago; at 1000"
    echo "clients they include sluiced's sweep of its sessions for timeouts (ten times a second), which"
    echo "valgrind's slowdown makes tens of times as frequent per transaction as at full speed."
    echo
    cat "$work/instructions-table.md"
  } >"$work/instructions.md"
  cat "$work/instructions.md" >>"$bench_dir/results/latest.md"
  cat "$work/instructions.md" >>"$work/summary.txt"
fi

# What a scraper costs: alternating rounds with and without GET /metrics every 100 ms (under 1 %).
if [[ ${BENCH_SCRAPE:-1} != 0 ]]; then
  python3 "$bench_dir/scrape_overhead.py" --sluice "$work:$sluice_port" --metrics "$work/metrics.sock" \
    --db bench --user "$user" --clients 50 --jobs "$(nproc)" --duration "$duration" --rounds "$rounds" \
    --append-to "$bench_dir/results/latest.md" >>"$work/summary.txt" || status=$?
  ((status == 0)) || die "the scrape-overhead phase failed (exit $status)"
fi

# --- fairness between users -------------------------------------------------------------------------

psql -qAtX -h "$pg_dir" -p "$pg_port" -d bench >/dev/null <<SQL
CREATE ROLE $fairness_user LOGIN;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO $fairness_user;
SQL
write_sluice_config "$fairness_port" "$work/control-fairness.sock" "$work/sluice-fairness.json" 2 "" \
  "\"max_db_connections\": $fairness_max_db"
"$sluiced" -c "$work/sluice-fairness.json" >"$work/sluiced-fairness.log" 2>&1 &
fairness_pid=$!
wait_socket "$work/.s.PGSQL.$fairness_port" "$fairness_pid" "sluiced (fairness)" "$work/sluiced-fairness.log"
say "fairness: $fairness_heavy clients of $user and $fairness_light of $fairness_user, max_db_connections $fairness_max_db"
python3 "$bench_dir/fairness.py" --host "$work" --port "$fairness_port" --db bench --heavy-user "$user" \
  --light-user "$fairness_user" --heavy-clients "$fairness_heavy" --light-clients "$fairness_light" \
  --duration "$duration" --label "sluiced, max_db_connections $fairness_max_db" --out "$work/fairness.md" ||
  die "the fairness phase failed: $work/sluiced-fairness.log"
pgb3_dir=$work/pgbouncer-fairness
write_pgbouncer_config "$pgb3_dir" "$fairness_pgbouncer_port" "max_db_connections = $fairness_max_db"
printf '"%s" ""\n' "$fairness_user" >>"$pgb3_dir/userlist.txt"  # trust still wants the name listed
"$pgbouncer2" "${pgbouncer_args[@]}" "$pgb3_dir/pgbouncer.ini" >"$work/pgbouncer-fairness.log" 2>&1 &
fairness_pgbouncer_pid=$!
wait_socket "$pgb3_dir/.s.PGSQL.$fairness_pgbouncer_port" "$fairness_pgbouncer_pid" "pgbouncer (fairness)" \
  "$work/pgbouncer-fairness.log"
python3 "$bench_dir/fairness.py" --host "$pgb3_dir" --port "$fairness_pgbouncer_port" --db bench \
  --heavy-user "$user" --light-user "$fairness_user" --heavy-clients "$fairness_heavy" \
  --light-clients "$fairness_light" --duration "$duration" \
  --label "PgBouncer $pgb2_version, max_db_connections $fairness_max_db" --out "$work/fairness-pgbouncer.md" ||
  die "the fairness phase failed through PgBouncer: $work/pgbouncer-fairness.log"
{ echo; cat "$work/fairness.md"; echo; cat "$work/fairness-pgbouncer.md"; } >>"$bench_dir/results/latest.md"

# --- a live upgrade under load (bench/upgrade.py) ---------------------------------------------------

write_sluice_config "$upgrade_port" "$work/control-upgrade.sock" "$work/sluice-upgrade.json"
"$sluiced" -c "$work/sluice-upgrade.json" >"$work/sluiced-upgrade.log" 2>&1 &
upgrade_pid=$!
wait_socket "$work/control-upgrade.sock" "$upgrade_pid" "sluiced (upgrade)" "$work/sluiced-upgrade.log"
say "live upgrade under pgbench -S -c 50"
UPGRADE_NEW_PID_FILE=$work/upgraded.pid python3 "$bench_dir/upgrade.py" --host "$work" --port "$upgrade_port" \
  --db bench --control "$work/control-upgrade.sock" --sluicectl "$sluicectl" --duration "$((duration * 2))" \
  --append-to "$bench_dir/results/latest.md" >"$work/upgrade.md" || status=1
upgraded_pid=$(cat "$work/upgraded.pid" 2>/dev/null || true)
cat "$work/upgrade.md"
((${status:-0} == 0)) || die "the live-upgrade phase failed: $work/sluiced-upgrade.log"
cat "$work/summary.txt" "$work/fairness.md" "$work/fairness-pgbouncer.md"
say "done in $((SECONDS - started)) s: bench/results/latest.md, latest.png; pgbench outputs in latest.log"
