#!/usr/bin/env python3
"""Fault injection ("chaos") for sluiced, side by side with PgBouncer. Driven by tests/chaos/run.sh,
which starts the throwaway PostgreSQL and stops everything afterwards; this script starts and stops
the poolers itself, one fresh pooler per scenario.

Scenarios (each runs against sluiced, then PgBouncer with equivalent settings):

  restart      PostgreSQL restarted (pg_ctl restart -m fast) under a write load: no acknowledged
               commit may be lost, at most one client error per writer per restart; recovery =
               PostgreSQL accepting again -> first commit through the pooler
  hang         one server backend SIGSTOPped while a query runs on it, then the postmaster: the
               other clients must keep working
  full         max_connections exhausted by direct connections: how often does the pooler knock
               (attempts/s seen by PostgreSQL), how fast does it recover once slots are free
  slow_reader  a client reads a large result very slowly: the pooler's RSS must stay flat
  churn        many short sessions: RSS and open fds must not grow
  reload       broken configs reloaded under load: no client error, the status reports each
               rejection, then the good config applies
  copy_cut     a client dies in the middle of COPY FROM STDIN: no row lands, no server leaks, the
               server connection is reused, other clients keep working

Only the standard library, psycopg (Debian's python3-psycopg) and bench/pgwire.py.
"""

import argparse
import bisect
import collections
import datetime
import itertools
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import psycopg

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import pgwire  # noqa: E402  (startup_packet, query_message, error_text, socket_path, vm_rss_kib)

DB = "chaos"
POOL_SIZE = 4
QUERY_WAIT_TIMEOUT_S = 10  # both poolers: a waiting client gives up after this (bounds every scenario)
SERVER_CONNECT_TIMEOUT_S = 5
SERVER_LOGIN_RETRY_MS = 1000  # PgBouncer's server_login_retry (its default is 15 s); sluiced's too if it knows the key

# Every wait in this file is bounded by one of these or by a scenario's own duration.
# A client waits longer than the poolers' query_wait_timeout, so that a wait ends with the pooler's
# answer, not the client's own timeout.
CONNECT_TIMEOUT_S = QUERY_WAIT_TIMEOUT_S + 5
SOCKET_TIMEOUT_S = QUERY_WAIT_TIMEOUT_S + 5
JOIN_TIMEOUT_S = QUERY_WAIT_TIMEOUT_S + 10
MAX_LOAD_S = 300  # no client loop runs longer, whatever a scenario does
MAX_SESSIONS = 1_000_000  # per churn client

MODES = {
    "short": dict(
        writers=6, restarts=1, before_restart_s=1.0, after_restart_s=0.5,
        stop_s=1.5, full_s=3.0, slow_mb=20, slow_read_s=2.0, slow_stall_s=1.0,
        churn_s=5.0, churn_warmup_s=1.0, reloads=3, cutoffs=5,
    ),
    "long": dict(
        writers=8, restarts=3, before_restart_s=4.0, after_restart_s=3.0,
        stop_s=5.0, full_s=8.0, slow_mb=200, slow_read_s=20.0, slow_stall_s=3.0,
        churn_s=60.0, churn_warmup_s=5.0, reloads=10, cutoffs=40,
    ),
}  # fmt: skip

# full_s stays below QUERY_WAIT_TIMEOUT_S: a pooler whose clients wait for a server serves them
# all once the slots are free.

# Pass criteria that are numbers.
MAX_RESTART_RECOVERY_S = 5.0
MAX_FULL_ATTEMPTS_PER_S = 20.0
MAX_FULL_RECOVERY_S = 2.0
MAX_SLOW_READER_RSS_KIB = 8 * 1024
MAX_CHURN_RSS_KIB = 2 * 1024


class Failure(Exception):
    """A scenario could not run to its end; becomes a FAIL row with this text."""


def say(text):
    print(f"chaos: {text}", flush=True)


def on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


# --- processes -------------------------------------------------------------------------------------


class Proc:
    """A child process with its output in a log file. It gets SIGKILL if this script dies (setpriv
    --pdeathsig, applied after any uid change), and its pid goes to the pid file run.sh reads on
    exit, so nothing started here outlives the run."""

    pidfile = None

    def __init__(self, name, argv, log_path, user=None):
        self.name = name
        self.log_path = log_path
        cmd = ["setpriv", "--pdeathsig", "KILL"]
        if user:
            cmd += ["--reuid", user, "--regid", user, "--clear-groups"]
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(cmd + argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd="/")
        self.pid = self.popen.pid
        if Proc.pidfile:
            with open(Proc.pidfile, "a") as f:
                f.write(f"{self.pid}\n")

    def alive(self):
        return self.popen.poll() is None

    def stop(self, sig, timeout):
        """Sends `sig`, waits up to `timeout`, then SIGKILL. Returns the exit status, or None if it
        had to be killed."""
        if not self.alive():
            return self.popen.returncode
        self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            return None


def run(cmd, timeout=60, check=True, user=None):
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
    if check and r.returncode != 0:
        raise Failure(f"{' '.join(cmd)} exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")
    return r


def wait_for(predicate, timeout, interval=0.02):
    """Polls `predicate` until it returns something truthy (returned) or `timeout` passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Stopped:
    """Processes SIGSTOPped by a scenario: always continued, whatever happens."""

    def __init__(self):
        self.pids = set()

    def stop(self, pid):
        self.pids.add(pid)
        os.kill(pid, signal.SIGSTOP)

    def cont(self, pid):
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        self.pids.discard(pid)

    def cont_all(self):
        for pid in list(self.pids):
            self.cont(pid)


# --- PostgreSQL (started by run.sh) ----------------------------------------------------------------


class Postgres:
    def __init__(self, sock_dir, port, bindir, user):
        self.dir, self.port, self.bindir, self.user = sock_dir, port, bindir, user
        self.data = os.path.join(sock_dir, "data")
        self.log = os.path.join(sock_dir, "postgres.log")

    def conninfo(self, db="postgres"):
        return f"host={self.dir} port={self.port} dbname={db} user={self.user} connect_timeout={CONNECT_TIMEOUT_S}"

    def connect(self, db="postgres"):
        return psycopg.connect(self.conninfo(db), autocommit=True)

    def sql(self, query, params=None, db="postgres"):
        with self.connect(db) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def pooler_backends(self):
        """(pid, state, query) of every client backend in the chaos database: only the pooler under
        test connects there (this script's own checks use `postgres`)."""
        return self.sql(
            "select pid, state, query from pg_stat_activity where datname = %s and backend_type = 'client backend'",
            (DB,),
        )

    def postmaster_pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def restart_fast(self):
        run([f"{self.bindir}/pg_ctl", "restart", "-D", self.data, "-m", "fast", "-w", "-t", "60", "-l", self.log],
            timeout=90, user="postgres")  # fmt: skip

    def log_size(self):
        return os.path.getsize(self.log)

    def log_since(self, offset):
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def started_after(self, wall_time):
        """True once a postmaster started after `wall_time` accepts connections."""
        try:
            with psycopg.connect(self.conninfo() + " connect_timeout=2", autocommit=True) as conn:
                started = conn.execute("select extract(epoch from pg_postmaster_start_time())").fetchone()[0]
                return float(started) > wall_time
        except psycopg.Error:
            return False


# --- raw protocol client ---------------------------------------------------------------------------


class WireError(Exception):
    pass


class Wire:
    """A v3 protocol client over a Unix socket that reads as slowly as its caller wants (libpq
    always drains the socket, so it cannot play a slow reader) and can vanish mid-COPY."""

    def __init__(self, path, user, db, timeout=SOCKET_TIMEOUT_S):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.pos = 0
        try:
            self.sock.connect(path)
            self.sock.sendall(pgwire.startup_packet(user, db))
            while True:
                mtype, payload = self.message()
                if mtype == "E":
                    raise WireError(pgwire.error_text(payload))
                if mtype == "Z":
                    return
        except BaseException:
            self.sock.close()
            raise

    def recv(self, size=65536):
        data = self.sock.recv(size)
        if not data:
            raise WireError("connection closed by the peer")
        self.buf += data
        return len(data)

    def buffered_message(self):
        """The next complete message already received, or None."""
        if len(self.buf) - self.pos < 5:
            return None
        length = int.from_bytes(self.buf[self.pos + 1 : self.pos + 5], "big")
        end = self.pos + 1 + length
        if len(self.buf) < end:
            return None
        mtype, payload = chr(self.buf[self.pos]), bytes(self.buf[self.pos + 5 : end])
        self.pos = end
        if self.pos > 65536:
            del self.buf[: self.pos]
            self.pos = 0
        return mtype, payload

    def message(self):
        while True:
            msg = self.buffered_message()
            if msg:
                return msg
            self.recv()

    def send(self, data):
        self.sock.sendall(data)

    def query(self, sql):
        """Simple query: (column names, rows of str/None, first error or None)."""
        self.send(pgwire.query_message(sql))
        columns, rows, error = [], [], None
        while True:
            mtype, payload = self.message()
            if mtype == "T":
                columns = parse_row_description(payload)
            elif mtype == "D":
                rows.append(parse_data_row(payload))
            elif mtype == "E" and error is None:
                error = pgwire.error_text(payload)
            elif mtype == "Z":
                return columns, rows, error

    def terminate(self):
        try:
            self.send(b"X\0\0\0\4")
        finally:
            self.close()

    def close(self):
        self.sock.close()


def parse_row_description(payload):
    count, pos, names = int.from_bytes(payload[:2], "big"), 2, []
    for _ in range(count):
        end = payload.index(b"\0", pos)
        names.append(payload[pos:end].decode())
        pos = end + 1 + 18
    return names


def parse_data_row(payload):
    count, pos, values = int.from_bytes(payload[:2], "big"), 2, []
    for _ in range(count):
        length = int.from_bytes(payload[pos : pos + 4], "big", signed=True)
        pos += 4
        if length < 0:
            values.append(None)
        else:
            values.append(payload[pos : pos + length].decode(errors="replace"))
            pos += length
    return values


def copy_data(text):
    data = text.encode()
    return b"d" + (len(data) + 4).to_bytes(4, "big") + data


COPY_DONE = b"c\0\0\0\4"


# --- poolers ---------------------------------------------------------------------------------------


class Pooler:
    """One pooler under test; a fresh process per scenario."""

    kind = "?"
    label = "?"

    def __init__(self, ctx, port, sock_dir):
        self.ctx, self.port, self.dir = ctx, port, sock_dir
        self.proc = None

    def conninfo(self):
        # The application_name of the raw wire clients (bench/pgwire.py): the same startup settings
        # share a pool's servers in sluiced, as one application's connections would.
        return (f"host={self.dir} port={self.port} dbname={DB} user={self.ctx.user} "
                f"application_name=sluice-bench connect_timeout={CONNECT_TIMEOUT_S}")

    def connect(self, autocommit=True):
        # prepare_threshold=None: no server-side prepared statements, which PgBouncer 1.18 cannot
        # carry in transaction mode; sluiced gets the same traffic.
        return psycopg.connect(self.conninfo(), autocommit=autocommit, prepare_threshold=None)

    def socket_path(self):
        return pgwire.socket_path(self.dir, self.port)

    def wire(self, db=DB, user=None):
        return Wire(self.socket_path(), user or self.ctx.user, db)

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def rss_kib(self):
        return pgwire.vm_rss_kib(self.proc.pid)

    def fds(self):
        return fd_count(self.proc.pid)

    def wait_ready(self, paths):
        def ready():
            if not self.proc.alive():
                raise Failure(f"{self.kind} exited at start: {tail(self.proc.log_path)}")
            return all(os.path.exists(p) for p in paths)

        if not wait_for(ready, 20):
            raise Failure(f"{self.kind} did not create {paths}")

    def log_tail(self, lines=5):
        return tail(self.proc.log_path, lines) if self.proc else ""


class Sluiced(Pooler):
    kind = "sluiced"
    label = "sluiced"

    def __init__(self, ctx):
        super().__init__(ctx, ctx.args.sluice_port, os.path.join(ctx.work, "sluiced.d"))
        os.makedirs(self.dir, exist_ok=True)
        self.control = os.path.join(self.dir, "control.sock")
        self.config_path = os.path.join(self.dir, "sluiced.json")

    def config(self, pool_size=POOL_SIZE):
        pool = {
            "pool_size": pool_size,
            "pool_mode": "transaction",
            "query_wait_timeout_ms": QUERY_WAIT_TIMEOUT_S * 1000,
            "server_connect_timeout_ms": SERVER_CONNECT_TIMEOUT_S * 1000,
        }
        if self.ctx.sluiced_knows_login_retry:
            pool["server_login_retry_ms"] = SERVER_LOGIN_RETRY_MS
        pg = self.ctx.pg
        return json.dumps(
            {
                "listen": {"unix_socket_dir": self.dir, "port": self.port},
                "control": {"socket": self.control},
                "pool": pool,
                "databases": {DB: {"conninfo": f"host={pg.dir} port={pg.port} dbname={DB}"}},
                "limits": {"max_client_conn": 1000},
                "drain": {"timeout_s": 2},
                "log_level": "info",
            },
            indent=2,
        )

    def write_config(self, text):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)  # sluiced never sees a half-written file, only broken ones

    def start(self, log_path):
        self.write_config(self.config())
        self.proc = Proc("sluiced", [self.ctx.args.sluiced, "-c", self.config_path], log_path)
        self.wait_ready([self.socket_path(), self.control])

    def stop(self):
        """SIGTERM: a drain (timeout 2 s), after which sluiced must exit 0 by itself."""
        status = self.proc.stop(signal.SIGTERM, 10)
        if status is None:
            return "did not exit within 10 s of SIGTERM (killed)"
        return None if status == 0 else f"exited {status} after SIGTERM"

    def ctl(self, *args, check=True):
        r = run([self.ctx.args.sluicectl, "-s", self.control, "--json", *args], timeout=10, check=check)
        return json.loads(r.stdout) if r.stdout.strip() else None

    def reload(self, text):
        """Writes `text` as the config, reloads, and waits for the outcome in `status`:
        ("ok" | "error" | "no answer", detail)."""
        self.write_config(text)
        sent = time.monotonic()
        self.ctl("reload")

        def outcome():
            last = self.ctl("status")["reload"]["last"]
            if last and last["seconds_ago"] <= time.monotonic() - sent + 0.05:
                return ("ok", "") if last["ok"] else ("error", last["error"] or "")
            return None

        return wait_for(outcome, 5, 0.05) or ("no answer", "reload.last did not change within 5 s")

    def pool_size(self):
        for row in self.ctl("pools")["pools"]:
            if row["database"] == DB:
                return row["pool_size"]
        return None


class PgBouncer(Pooler):
    kind = "pgbouncer"
    label = "PgBouncer"

    def __init__(self, ctx):
        super().__init__(ctx, ctx.args.pgbouncer_port, os.path.join(ctx.work, "pgbouncer.d"))
        os.makedirs(self.dir, exist_ok=True)
        self.ini_path = os.path.join(self.dir, "pgbouncer.ini")
        with open(os.path.join(self.dir, "userlist.txt"), "w") as f:
            for user in sorted({ctx.user, "postgres"}):
                f.write(f'"{user}" ""\n')
        self.run_as = "postgres" if os.geteuid() == 0 else None  # PgBouncer refuses to run as root
        if self.run_as:
            run(["chown", "-R", f"{self.run_as}:", self.dir])

    def config(self, pool_size=POOL_SIZE):
        pg = self.ctx.pg
        return f"""[databases]
{DB} = host={pg.dir} port={pg.port} dbname={DB}

[pgbouncer]
listen_addr =
listen_port = {self.port}
unix_socket_dir = {self.dir}
auth_type = trust
auth_file = {self.dir}/userlist.txt
admin_users = {self.ctx.user}
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 1000
query_wait_timeout = {QUERY_WAIT_TIMEOUT_S}
server_connect_timeout = {SERVER_CONNECT_TIMEOUT_S}
server_login_retry = {SERVER_LOGIN_RETRY_MS // 1000}
logfile =
pidfile =
syslog = 0
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
log_stats = 0
stats_period = 3600
"""

    def write_config(self, text):
        with open(self.ini_path, "w") as f:
            f.write(text)
        if self.run_as:
            run(["chown", f"{self.run_as}:", self.ini_path])

    def start(self, log_path):
        self.write_config(self.config())
        self.proc = Proc("pgbouncer", [self.ctx.args.pgbouncer, self.ini_path], log_path, user=self.run_as)
        self.wait_ready([self.socket_path()])

    def stop(self):
        self.proc.stop(signal.SIGTERM, 10)  # PgBouncer 1.18: SIGTERM is its immediate shutdown
        return None

    def admin(self, command):
        """A command on the admin console (simple protocol only): (columns, rows, error)."""
        w = self.wire(db="pgbouncer")
        try:
            return w.query(command)
        finally:
            w.terminate()

    def reload(self, text):
        self.write_config(text)
        log0 = os.path.getsize(self.proc.log_path)
        _, _, error = self.admin("RELOAD")
        if error:
            return "error", error
        logged = [line for line in read_from(self.proc.log_path, log0).splitlines() if " ERROR " in line or " FATAL " in line]
        if logged:
            return "error", logged[0].split(" ERROR ", 1)[-1].strip()
        return "ok", ""

    def pool_size(self):
        columns, rows, _ = self.admin("SHOW DATABASES")
        for row in rows:
            record = dict(zip(columns, row))
            if record.get("name") == DB:
                return int(record["pool_size"])
        return None


def tail(path, lines=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(line.strip() for line in f.readlines()[-lines:])
    except OSError:
        return ""


def read_from(path, offset):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


# --- client load -----------------------------------------------------------------------------------


class Load:
    """`clients` threads, each with its own psycopg connection to the pooler, each calling
    `step(conn, index)` in a loop until stopped. A failed step is a client error; the client then
    reconnects, as an application would, after `pause_s`. Scenarios stop it; MAX_LOAD_S is a backstop."""

    def __init__(self, pooler, clients, step, autocommit=True, pause_s=0.05, reconnect_each=False):
        self.pooler, self.step, self.autocommit = pooler, step, autocommit
        self.deadline = time.monotonic() + MAX_LOAD_S
        self.pause_s, self.reconnect_each = pause_s, reconnect_each
        self.lock = threading.Lock()
        self.ok = self.errors = 0
        self.messages = collections.Counter()
        self.ok_times = []  # monotonic time of every successful step, in order
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]
        self.snapshot = None

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, index):
        conn = None
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            try:
                if conn is None:
                    conn = self.pooler.connect(self.autocommit)
                self.step(conn, index)
                with self.lock:
                    self.ok += 1
                    self.ok_times.append(time.monotonic())
                if self.reconnect_each:
                    conn.close()
                    conn = None
            except Exception as e:  # noqa: BLE001 -- every failure of a client is counted, none ends it
                if self.stop_event.is_set() and self.snapshot is not None:
                    break  # the pooler went away after the results were taken
                with self.lock:
                    self.errors += 1
                    self.messages[short_error(e)] += 1
                if conn is not None:
                    conn.close()
                    conn = None
                self.stop_event.wait(self.pause_s)
        if conn is not None:
            conn.close()

    def first_ok_after(self, t, timeout):
        """Seconds from `t` to the first successful step after it, or None within `timeout`."""

        def seen():
            with self.lock:
                if not self.ok_times or self.ok_times[-1] <= t:
                    return None
                return self.ok_times[bisect.bisect_right(self.ok_times, t)]

        found = wait_for(seen, timeout, 0.01)
        return None if found is None else found - t

    def stop(self):
        """Stops the clients; a client still blocked after JOIN_TIMEOUT_S counts as an error (hung)."""
        self.stop_event.set()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        hung = sum(t.is_alive() for t in self.threads)
        with self.lock:
            if hung:
                self.errors += hung
                self.messages[f"client hung > {JOIN_TIMEOUT_S}s after the end"] += hung
            self.snapshot = (self.ok, self.errors, self.messages.copy())
        return self

    def top_errors(self, n=2):
        return "; ".join(f"{count}x {text}" for text, count in self.messages.most_common(n))


def short_error(e):
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = re.sub(r"\d+", "N", text)
    return text[:110]


def select_one(conn, _index):
    conn.execute("select 1").fetchone()


def warm_pool(pooler, n=POOL_SIZE):
    """Makes the pooler open `n` server connections: `n` clients in a transaction at once."""
    barrier = threading.Barrier(n)
    errors = []

    def client():
        try:
            with pooler.connect(autocommit=False) as conn:
                conn.execute("select 1")
                barrier.wait(10)
                conn.execute("select pg_sleep(0.1)")
                conn.commit()
        except Exception as e:  # noqa: BLE001
            errors.append(short_error(e))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    if errors:
        raise Failure(f"warm-up failed: {errors[0]}")


class Usage:
    """The pooler's RSS, open fds and server connections (client backends PostgreSQL sees)."""

    def __init__(self, pooler, pg):
        self.rss = pooler.rss_kib()
        self.fds = pooler.fds()
        self.servers = len(pg.pooler_backends())


def settled_usage(pooler, pg, before, timeout=3.0):
    """Usage once the pooler has let go of departed clients: fds not explained by servers back at
    (or below) `before`'s, within `timeout`."""
    usage = None

    def settled():
        nonlocal usage
        usage = Usage(pooler, pg)
        return usage.fds - usage.servers <= before.fds - before.servers

    wait_for(settled, timeout, 0.1)
    return usage


# --- results ---------------------------------------------------------------------------------------


class Row:
    def __init__(self, pooler, scenario):
        self.pooler, self.scenario = pooler, scenario
        self.errors = None
        self.lost = "n/a"
        self.recovery = "n/a"
        self.rss = self.fds = None
        self.problems, self.notes = [], []

    def leaks(self, before, after):
        self.rss = after.rss - before.rss
        self.fds = after.fds - before.fds
        unexplained = self.fds - (after.servers - before.servers)
        if unexplained > 0:
            self.problems.append(f"{unexplained} fds leaked (fd growth {self.fds:+d}, servers {before.servers}->{after.servers})")

    def check(self, ok, problem):
        if not ok:
            self.problems.append(problem)

    @property
    def verdict(self):
        return "FAIL" if self.problems else "PASS"

    def cells(self):
        reason = "; ".join(self.problems + self.notes)
        leaks = "n/a" if self.rss is None else f"{self.rss:+d} KiB, {self.fds:+d} fds"
        errors = "n/a" if self.errors is None else str(self.errors)
        return [self.pooler, self.scenario, errors, str(self.lost), self.recovery, leaks, self.verdict, reason]


HEADER = ["pooler", "scenario", "client errors", "lost acked commits", "recovery", "leaks (RSS, fds)", "verdict", "reason"]


def seconds(value):
    return "none" if value is None else f"{value:.2f} s"


# --- scenarios -------------------------------------------------------------------------------------


def scenario_restart(ctx, pooler, row):
    """PostgreSQL restarted (fast) under writers; every acknowledged commit must be in the table."""
    m, pg = ctx.mode, ctx.pg
    warm_pool(pooler)
    before = Usage(pooler, pg)
    acked, lock = [], threading.Lock()

    def write(conn, index):
        with lock:
            row_id = next(ctx.ids)
        conn.execute("insert into chaos_writes (id, pooler, writer) values (%s, %s, %s)", (row_id, pooler.kind, index))
        conn.commit()
        with lock:
            acked.append(row_id)

    load = Load(pooler, m["writers"], write, autocommit=False).start()
    recoveries = []
    try:
        time.sleep(m["before_restart_s"])
        for _ in range(m["restarts"]):
            down_wall = time.time()
            up = {}

            def watch_up():
                if wait_for(lambda: pg.started_after(down_wall), 60, 0.01):
                    up["t"] = time.monotonic()

            watcher = threading.Thread(target=watch_up, daemon=True)
            watcher.start()
            pg.restart_fast()
            watcher.join(65)
            if "t" not in up:
                raise Failure("PostgreSQL did not come back within 60 s")
            recoveries.append(load.first_ok_after(up["t"], 15))
            time.sleep(m["after_restart_s"])
    finally:
        load.stop()
    row.errors = load.errors
    with lock:
        ids = list(acked)
    found = pg.sql("select count(*) from chaos_writes where id = any(%s)", (ids,), db=DB)[0][0]
    row.lost = len(ids) - found
    row.recovery = ", ".join(seconds(r) for r in recoveries)
    row.leaks(before, settled_usage(pooler, pg, before))
    row.check(row.lost == 0, f"{row.lost} acknowledged commits lost")
    row.check(None not in recoveries, "no commit through the pooler within 15 s of PostgreSQL accepting again")
    worst = max((r for r in recoveries if r is not None), default=0.0)
    row.check(worst <= MAX_RESTART_RECOVERY_S, f"recovery {worst:.2f} s > {MAX_RESTART_RECOVERY_S} s")
    # A restart kills the transaction each writer has in flight; a writer that reconnects or starts
    # its next transaction during the outage should wait for a server, not fail.
    allowed = m["writers"] * m["restarts"]
    row.check(load.errors <= allowed, f"{load.errors} client errors (> one per writer per restart, {allowed})")
    row.notes.append(f"{len(ids)} commits acknowledged, {m['restarts']} restart(s)")
    if load.errors:
        row.notes.append(f"errors: {load.top_errors()}")


def scenario_hang(ctx, pooler, row):
    """A backend SIGSTOPped under a running query, then the postmaster: other clients keep going."""
    m, pg = ctx.mode, ctx.pg
    warm_pool(pooler)
    before = Usage(pooler, pg)
    load = Load(pooler, POOL_SIZE - 1, select_one).start()
    victim = {}

    def run_victim():
        try:
            with pooler.connect() as conn:
                conn.execute("select pg_sleep(1) /* chaos-victim */")
            victim["ok"] = True
        except Exception as e:  # noqa: BLE001
            victim["error"] = short_error(e)

    logins = None
    try:
        time.sleep(0.3)
        victim_thread = threading.Thread(target=run_victim, daemon=True)
        victim_thread.start()

        def victim_pid():
            for pid, state, query in pg.pooler_backends():
                if state == "active" and "chaos-victim" in query:
                    return pid
            return None

        pid = wait_for(victim_pid, 5)
        if pid is None:
            raise Failure("the victim query never showed up in pg_stat_activity")
        ok0 = load.ok
        ctx.stopped.stop(pid)
        time.sleep(m["stop_s"])
        during_backend = load.ok - ok0
        ctx.stopped.cont(pid)
        victim_thread.join(m["stop_s"] + 10)

        # The postmaster: pooled servers go on serving, and new clients (logins to the pooler, no
        # new server needed) are served by them.
        postmaster = pg.postmaster_pid()
        logins = Load(pooler, 1, select_one, reconnect_each=True).start()
        time.sleep(0.2)
        ok0, logins0 = load.ok, logins.ok
        ctx.stopped.stop(postmaster)
        time.sleep(m["stop_s"])
        during_postmaster, logins_during = load.ok - ok0, logins.ok - logins0
        ctx.stopped.cont(postmaster)
        time.sleep(0.3)
    finally:
        ctx.stopped.cont_all()
        if logins:
            logins.stop()
        load.stop()
    row.errors = load.errors + logins.errors
    row.leaks(before, settled_usage(pooler, pg, before))
    row.check(row.errors == 0, f"client errors: {load.top_errors() or logins.top_errors()}")
    row.check(during_backend > 0, "no query completed while one backend was stopped")
    row.check(during_postmaster > 0, "no query completed while the postmaster was stopped")
    row.check(victim.get("ok", False), f"the stopped backend's query did not complete: {victim.get('error', 'still running')}")
    row.notes.append(
        f"queries while backend stopped: {during_backend}, while postmaster stopped: {during_postmaster} "
        f"(+{logins_during} new sessions)"
    )


def scenario_full(ctx, pooler, row):
    """max_connections exhausted: attempts/s against the full server, recovery once slots free."""
    m, pg = ctx.mode, ctx.pg
    before = Usage(pooler, pg)  # fresh pooler, no server yet: the clients below need new ones
    filler = []
    load = None
    try:
        for _ in range(ctx.max_connections + 10):
            try:
                filler.append(pg.connect())
            except psycopg.OperationalError as e:
                if "too many clients" in str(e):
                    break
                raise
        else:
            raise Failure("max_connections never filled")
        log0 = pg.log_size()
        started = time.monotonic()
        load = Load(pooler, POOL_SIZE, select_one).start()
        time.sleep(m["full_s"])
        window = time.monotonic() - started
        refused = pg.log_since(log0).count("too many clients already")
        errors_while_full = load.errors
        for conn in filler:
            conn.close()
        filler = []
        released = time.monotonic()
        recovery = load.first_ok_after(released, 15)
        time.sleep(0.3)
    finally:
        for conn in filler:
            conn.close()
        if load:
            load.stop()
    rate = refused / window
    row.errors = load.errors
    row.recovery = seconds(recovery)
    row.leaks(before, settled_usage(pooler, pg, before))
    row.check(rate <= MAX_FULL_ATTEMPTS_PER_S, f"{rate:.1f} connect attempts/s against the full server (> {MAX_FULL_ATTEMPTS_PER_S:g})")
    row.check(recovery is not None and recovery <= MAX_FULL_RECOVERY_S, f"recovery {seconds(recovery)} (> {MAX_FULL_RECOVERY_S:g} s)")
    row.notes.append(f"{refused} attempts refused in {window:.1f} s ({rate:.1f}/s); {errors_while_full} client errors while full")
    if load.errors:
        row.notes.append(load.top_errors(1))


def scenario_slow_reader(ctx, pooler, row):
    """A client reads a big result very slowly; the pooler must not buffer it."""
    m, pg = ctx.mode, ctx.pg
    rows_wanted = m["slow_mb"] * 1000  # 1000-byte rows
    total_bytes = rows_wanted * 1000
    warm_pool(pooler)
    time.sleep(0.3)
    before = Usage(pooler, pg)
    peak = {"rss": before.rss}
    sampling = threading.Event()

    def sample():
        while not sampling.wait(0.02):
            try:
                peak["rss"] = max(peak["rss"], pooler.rss_kib())
            except (OSError, RuntimeError):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    others = Load(pooler, 2, select_one).start()
    received = data_rows = 0
    outcome = None
    try:
        w = pooler.wire()
        try:
            w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            w.send(pgwire.query_message(f"select repeat('x', 1000) from generate_series(1, {rows_wanted})"))
            w.recv(16384)
            time.sleep(m["slow_stall_s"])  # not reading at all: the pooler's buffers fill, or not
            rate = total_bytes / m["slow_read_s"]
            started = time.monotonic()
            deadline = started + m["slow_read_s"] * 4 + 30
            while outcome is None:
                msg = w.buffered_message()
                if msg is None:
                    if time.monotonic() > deadline:
                        outcome = "timed out"
                        break
                    ahead = received / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(min(ahead, 0.05))
                    received += w.recv(16384)
                    continue
                mtype, payload = msg
                if mtype == "D":
                    data_rows += 1
                elif mtype == "E":
                    outcome = pgwire.error_text(payload)
                elif mtype == "Z":
                    outcome = "ok"
            read_s = time.monotonic() - started
        finally:
            w.terminate()
    finally:
        sampling.set()
        sampler.join(5)
        others.stop()
    growth = peak["rss"] - before.rss
    row.errors = others.errors + (0 if outcome == "ok" else 1)
    row.leaks(before, settled_usage(pooler, pg, before))
    row.rss = growth  # this row's RSS is the peak during the read
    row.check(outcome == "ok" and data_rows == rows_wanted, f"slow reader: {outcome}, {data_rows}/{rows_wanted} rows")
    row.check(growth <= MAX_SLOW_READER_RSS_KIB, f"RSS grew {growth} KiB (> {MAX_SLOW_READER_RSS_KIB}) while reading {m['slow_mb']} MB")
    row.check(others.errors == 0, f"other clients: {others.top_errors()}")
    row.notes.append(f"{m['slow_mb']} MB read in {m['slow_stall_s']:g} s stall + {read_s:.1f} s; RSS column = peak growth")


def scenario_churn(ctx, pooler, row):
    """Many short sessions (login, one query, leave; half without Terminate)."""
    m, pg = ctx.mode, ctx.pg
    warm_pool(pooler)
    counts = collections.Counter()
    messages = collections.Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def session(i):
        w = pooler.wire()
        _, rows, error = w.query("select 1")
        if error or rows != [["1"]]:
            w.close()
            raise WireError(error or f"unexpected result {rows}")
        if i % 2:
            w.terminate()
        else:
            w.close()  # vanish

    def client():
        for i in range(MAX_SESSIONS):
            if stop.is_set():
                return
            try:
                session(i)
                key = "ok"
            except Exception as e:  # noqa: BLE001
                key = "error"
                with lock:
                    messages[short_error(e)] += 1
            with lock:
                counts[key] += 1

    def churn(duration):
        stop.clear()
        threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(duration)
        stop.set()
        for t in threads:
            t.join(JOIN_TIMEOUT_S)
        if any(t.is_alive() for t in threads):
            raise Failure(f"a churn client hung > {JOIN_TIMEOUT_S} s")

    warm = Usage(pooler, pg)
    churn(m["churn_warmup_s"])  # the allocator's and the pooler's steady state
    warm_sessions = counts["ok"]
    before = settled_usage(pooler, pg, warm)
    churn(m["churn_s"])
    after = settled_usage(pooler, pg, before)
    sessions = counts["ok"] - warm_sessions
    row.errors = counts["error"]
    row.leaks(before, after)
    row.check(row.errors == 0, f"session errors: {'; '.join(f'{n}x {t}' for t, n in messages.most_common(2))}")
    row.check(row.rss <= MAX_CHURN_RSS_KIB, f"RSS grew {row.rss} KiB (> {MAX_CHURN_RSS_KIB})")
    row.notes.append(f"{sessions} sessions in {m['churn_s']:g} s ({sessions / m['churn_s']:.0f}/s) after {warm_sessions} warm-up")


BROKEN_SLUICED = [
    lambda good: good[: len(good) // 2],  # truncated
    lambda good: good.replace('"pool_mode"', '"pool_mode" "transaction",', 1),  # missing colon
    lambda good: good.rstrip().rstrip("}") + ",}}",  # trailing comma, extra brace
    lambda good: good.replace(f'"pool_size": {POOL_SIZE}', '"pool_size": "four"', 1),  # wrong type
]

BROKEN_PGBOUNCER = [
    lambda good: good[: len(good) // 2],  # truncated mid-line
    lambda good: good + "this line is not a setting\n",
    lambda good: good.replace("[pgbouncer]", "[pgbouncer", 1),  # broken section header
    lambda good: good.replace(f"default_pool_size = {POOL_SIZE}", "default_pool_size = four", 1),
]


def scenario_reload(ctx, pooler, row):
    """Broken configs reloaded under load, then a good one (pool_size changed)."""
    m, pg = ctx.mode, ctx.pg
    warm_pool(pooler)
    before = Usage(pooler, pg)
    broken = BROKEN_SLUICED if pooler.kind == "sluiced" else BROKEN_PGBOUNCER
    good = pooler.config(pool_size=POOL_SIZE + 1)
    load = Load(pooler, POOL_SIZE, select_one).start()
    logins = Load(pooler, 1, select_one, reconnect_each=True).start()
    outcomes = []
    try:
        time.sleep(0.3)
        for i in range(m["reloads"]):
            outcomes.append(pooler.reload(broken[i % len(broken)](pooler.config())))
            time.sleep(0.1)
        outcomes.append(pooler.reload(good))
        time.sleep(0.3)
        applied = pooler.pool_size()
    finally:
        logins.stop()
        load.stop()
    row.errors = load.errors + logins.errors
    row.leaks(before, settled_usage(pooler, pg, before))
    kinds = [kind for kind, _ in outcomes]
    row.check(row.errors == 0, f"client errors: {load.top_errors() or logins.top_errors()}")
    row.check(kinds == ["error"] * m["reloads"] + ["ok"], f"reload outcomes {kinds}, expected {m['reloads']}x error then ok")
    row.check(applied == POOL_SIZE + 1, f"the good config did not apply (pool_size {applied})")
    first_error = next((detail for kind, detail in outcomes if kind == "error"), "").replace(ctx.work + "/", "")
    row.notes.append(f"{m['reloads']} broken + 1 good reload; {load.ok + logins.ok} queries; first rejection: {first_error[:80]}")


def scenario_copy_cut(ctx, pooler, row):
    """Clients killed in the middle of COPY FROM STDIN."""
    m, pg = ctx.mode, ctx.pg
    warm_pool(pooler)
    before = Usage(pooler, pg)
    servers_before = {pid for pid, _, _ in pg.pooler_backends()}
    marker = f"cut-{pooler.kind}-{time.time_ns()}"
    load = Load(pooler, 2, select_one).start()
    cut = 0
    try:
        for k in range(m["cutoffs"]):
            w = pooler.wire()
            w.send(pgwire.query_message("copy chaos_copy (id, marker) from stdin"))
            mtype, payload = w.message()
            if mtype != "G":
                w.close()
                raise Failure(f"COPY did not start: {pgwire.error_text(payload) if mtype == 'E' else mtype}")
            for chunk in range(5):
                w.send(copy_data("".join(f"{k * 1000 + chunk * 100 + i}\t{marker}\n" for i in range(100))))
            time.sleep(0.05)
            w.close()  # killed: no CopyDone, no CopyFail, no Terminate
            cut += 1
        # A whole COPY afterwards: the servers are fit for use.
        w = pooler.wire()
        try:
            w.send(pgwire.query_message("copy chaos_copy (id, marker) from stdin"))
            mtype, _ = w.message()
            w.send(copy_data("".join(f"{i}\t{marker}-ok\n" for i in range(10))) + COPY_DONE)
            while mtype != "Z":
                mtype, payload = w.message()
                if mtype == "E":
                    raise Failure(f"the COPY after the cut-offs failed: {pgwire.error_text(payload)}")
        finally:
            w.terminate()
        time.sleep(0.2)
    finally:
        load.stop()

    def quiet():  # no backend left in COPY
        return not any(state != "idle" for _, state, _ in pg.pooler_backends())

    stuck = not wait_for(quiet, 5, 0.1)
    landed = pg.sql("select count(*) from chaos_copy where marker = %s", (marker,), db=DB)[0][0]
    completed = pg.sql("select count(*) from chaos_copy where marker = %s", (marker + "-ok",), db=DB)[0][0]
    servers_after = {pid for pid, _, _ in pg.pooler_backends()}
    fresh = len(servers_after - servers_before)
    row.errors = load.errors
    row.leaks(before, settled_usage(pooler, pg, before))
    row.check(landed == 0, f"{landed} rows of the cut-off COPYs landed")
    row.check(completed == 10, f"the whole COPY afterwards stored {completed}/10 rows")
    row.check(not stuck, "a backend is still busy 5 s after the cut-offs")
    row.check(len(servers_after) <= POOL_SIZE, f"{len(servers_after)} server connections (> pool_size {POOL_SIZE})")
    row.check(fresh == 0, f"servers not reused: {fresh} new backends after {cut} cut-offs")
    row.check(load.errors == 0, f"other clients: {load.top_errors()}")
    row.notes.append(f"{cut} COPYs cut off; servers {len(servers_before)} -> {len(servers_after)}, {fresh} new")


SCENARIOS = [
    ("restart", "1 PostgreSQL restart under load", scenario_restart),
    ("hang", "2 hung backend, hung postmaster", scenario_hang),
    ("full", "3 max_connections full", scenario_full),
    ("slow_reader", "4 slow reader", scenario_slow_reader),
    ("churn", "5 session churn", scenario_churn),
    ("reload", "6 broken reloads under load", scenario_reload),
    ("copy_cut", "7 COPY cut off", scenario_copy_cut),
]


# --- the run ---------------------------------------------------------------------------------------


class Context:
    def __init__(self, args):
        self.args = args
        self.mode_name = "short" if args.short else "long"
        self.mode = MODES[self.mode_name]
        self.work = args.workdir
        self.user = args.user
        self.pg = Postgres(args.pg_dir, args.pg_port, args.pg_bindir, args.user)
        self.stopped = Stopped()
        self.ids = itertools.count(1)
        self.max_connections = int(self.pg.sql("show max_connections")[0][0])
        self.sluiced_knows_login_retry = self.probe_sluiced_key()

    def probe_sluiced_key(self):
        """Whether this sluiced takes pool.server_login_retry_ms (unknown keys are rejected)."""
        path = os.path.join(self.work, "probe.json")
        with open(path, "w") as f:
            json.dump({"pool": {"server_login_retry_ms": SERVER_LOGIN_RETRY_MS}, "databases": {DB: {"conninfo": "host=/tmp"}}}, f)
        return run([self.args.sluiced, "--check", "-c", path], check=False).returncode == 0


def setup_tables(pg):
    pg.sql(
        """
        drop table if exists chaos_writes, chaos_copy;
        create table chaos_writes (id bigint primary key, pooler text, writer int, at timestamptz default clock_timestamp());
        create table chaos_copy (id int, marker text);
        """,
        db=DB,
    )


def run_one(ctx, pooler_class, name, title, fn, logs):
    pooler = pooler_class(ctx)
    row = Row(pooler.label, title)
    log_path = os.path.join(ctx.work, f"{pooler.kind}-{name}.log")
    started = time.monotonic()
    try:
        pooler.start(log_path)
        fn(ctx, pooler, row)
    except Failure as e:
        row.problems.append(str(e))
    except Exception as e:  # noqa: BLE001 -- a broken scenario is a FAIL row, the run goes on
        row.problems.append(f"{type(e).__name__}: {short_error(e)}")
    finally:
        ctx.stopped.cont_all()
        if pooler.proc:
            if not pooler.alive():
                row.problems.append(f"{pooler.kind} died (exit {pooler.proc.popen.returncode}): {pooler.log_tail(3)}")
            else:
                problem = pooler.stop()
                if problem:
                    row.problems.append(f"{pooler.kind} {problem}")
            logs.append((f"{pooler.kind} / {name}", log_path))
    elapsed = time.monotonic() - started
    say(f"{row.verdict} {pooler.label:9} {title} ({elapsed:.1f} s){': ' + '; '.join(row.problems) if row.problems else ''}")
    if row.problems and pooler.kind == "sluiced":
        say(f"  sluiced log: {pooler.log_tail(4)}")
    return row


def markdown(ctx, rows, wall_s, versions):
    out = [
        f"# Chaos run ({ctx.mode_name})",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, {platform.node()}, "
        f"{os.cpu_count()} cores; {wall_s:.0f} s. {versions}.",
        "",
        f"Both poolers: transaction mode, pool size {POOL_SIZE}, Unix sockets, query wait timeout "
        f"{QUERY_WAIT_TIMEOUT_S} s, server connect timeout {SERVER_CONNECT_TIMEOUT_S} s, server login retry "
        f"{SERVER_LOGIN_RETRY_MS} ms (PgBouncer; sluiced: "
        f"{'the same' if ctx.sluiced_knows_login_retry else 'no such key in this build'}). PostgreSQL 15, "
        f"max_connections {ctx.max_connections}, synchronous_commit on. PgBouncer rows are for comparison "
        "and never fail the run.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    for row in rows:
        out.append("| " + " | ".join(cell.replace("|", "/") for cell in row.cells()) + " |")
    failed = [r for r in rows if r.pooler == "sluiced" and r.verdict == "FAIL"]
    out += ["", f"sluiced: {sum(r.pooler == 'sluiced' for r in rows) - len(failed)} passed, {len(failed)} failed"]
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--short", action="store_true", help="the short run (part of make test)")
    p.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    p.add_argument("--poolers", default="sluiced,pgbouncer")
    p.add_argument("--workdir", required=True)
    p.add_argument("--pidfile", required=True, help="every pid started here is appended (run.sh stops them)")
    p.add_argument("--out", required=True, help="the markdown results file")
    p.add_argument("--log-out", help="every pooler log of the run, concatenated")
    p.add_argument("--pg-dir", required=True)
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--pg-bindir", required=True)
    p.add_argument("--sluiced", required=True)
    p.add_argument("--sluicectl", required=True)
    p.add_argument("--sluice-port", type=int, required=True)
    p.add_argument("--pgbouncer", default="/usr/sbin/pgbouncer")
    p.add_argument("--pgbouncer-port", type=int, required=True)
    p.add_argument("--user", default=os.environ.get("USER") or "root")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, on_sigterm)
    Proc.pidfile = args.pidfile

    started = time.monotonic()
    ctx = Context(args)
    setup_tables(ctx.pg)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - {name for name, _, _ in SCENARIOS}
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    classes = {"sluiced": Sluiced, "pgbouncer": PgBouncer}
    poolers = [classes[name.strip()] for name in args.poolers.split(",") if name.strip()]
    versions = "; ".join(
        [run([args.sluiced, "--version"], check=False).stdout.strip() or "sluiced ?",
         run([args.pgbouncer, "--version"], check=False).stdout.splitlines()[0]]  # fmt: skip
    )
    say(f"{ctx.mode_name} run; {versions}; sluiced server_login_retry_ms: {'yes' if ctx.sluiced_knows_login_retry else 'unknown key'}")
    rows, logs = [], []
    try:
        for name, title, fn in SCENARIOS:
            if wanted and name not in wanted:
                continue
            for pooler_class in poolers:
                rows.append(run_one(ctx, pooler_class, name, title, fn, logs))
    finally:
        ctx.stopped.cont_all()
        if args.log_out:
            with open(args.log_out, "w") as out:
                for label, path in logs:
                    out.write(f"===== {label}\n")
                    out.write(read_from(path, 0) if os.path.exists(path) else "(no log)\n")
    text = markdown(ctx, rows, time.monotonic() - started, versions)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    print()
    print(text, end="")
    return 1 if any(r.pooler == "sluiced" and r.verdict == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
