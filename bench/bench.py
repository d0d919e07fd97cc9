#!/usr/bin/env python3
"""The benchmark proper, driven by bench/run.sh once PostgreSQL, sluiced and the PgBouncers are up.

Runs pgbench against sluice, two PgBouncers (Debian's 1.18 and 1.25.2) and PostgreSQL directly,
alternating them (and a pooler that only relays, bench/bare_pooler.c) within each round, measures the poolers' memory per idle client and CPU per
transaction, exercises sluiced's teardown outcomes under load, and writes bench/results/latest.md
and latest.png. Only the Python standard library; every external program is one of Debian's, but
PgBouncer 1.25.2, which run.sh builds.
"""

import argparse
import datetime
import collections
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

from pgbench_output import RE
import procstat
import quiet

TARGETS = ("sluice", "pgbouncer", "pgbouncer2", "direct")
# The PgBouncers' names become "PgBouncer <version>" from their --version (set_pgbouncer_names).
NAMES = {"sluice": "sluice", "pgbouncer": "PgBouncer", "pgbouncer2": "PgBouncer (2)", "direct": "direct",
         "sluice2": "sluice, 2 workers", "bare": "bare relay"}  # fmt: skip
POOLERS = ("sluice", "pgbouncer", "pgbouncer2")
NOT_RUN = "—"  # in the tables: the target could not run the test (reason in the errors section)

# id, title, pgbench options, clients. Every run also gets -n (no vacuum) and -T.
TESTS = [
    ("S1", "select-only, 1 client", ["-S"], 1),
    ("S50", "select-only, 50 clients", ["-S"], 50),
    ("SP50", "select-only, search_path set at connect (PGOPTIONS), 50 clients", ["-S"], 50),
    ("S1000", "select-only, 1000 clients", ["-S"], 1000),
    ("C20", "select-only, new connection per tx (-C), 20 clients", ["-S", "-C"], 20),
    ("X50", "select-only, extended protocol (-M extended), 50 clients", ["-S", "-M", "extended"], 50),
    ("B50", "TPC-B-like (default script), 50 clients", [], 50),
    ("P50", "select-only, prepared statements (-M prepared), 50 clients", ["-S", "-M", "prepared"], 50),
    # The options of L50 are filled in by Bench.options (the script is written into the work dir).
    ("L50", "session advisory lock held over 3 transactions (pins), 50 clients", [], 50),
    # Over TCP with TLS (sslmode=require): the poolers' TLS listeners (TLS_TESTS).
    ("T50", "select-only over TLS with SCRAM-SHA-256 logins, 50 clients", ["-S"], 50),
    ("TC20", "select-only over TLS, new connection (TLS handshake and SCRAM login) per tx (-C), 20 clients", ["-S", "-C"], 20),
]
TEST_TITLES = {t[0]: t[1] for t in TESTS}
TEST_CLIENTS = {t[0]: t[3] for t in TESTS}
# Bench.cpu_floor's answer: sluice's CPU per transaction against a rival's, in µs.
CpuFloor = collections.namedtuple("CpuFloor", "own_user own_system user rival_cpu floor budget")
# Bench.bare_relay's answer: the bare relay's tps over a rival's (same-round median, lowest, highest)
# and its CPU per transaction over the rival's.
BareRelay = collections.namedtuple("BareRelay", "tps lowest highest cpu")
# The tests the performance issue sets targets on against PgBouncer 1.25.2 (SP50 has no PgBouncer that
# applies its settings, so it is compared with direct only).
TARGET_TESTS = ("S1", "S50", "S1000", "C20", "X50", "B50", "P50")
SHORT_LABELS = {
    "S1": "-S c1",
    "S50": "-S c50",
    "SP50": "-S path c50",
    "S1000": "-S c1000",
    "C20": "-S -C c20",
    "X50": "-S ext c50",
    "B50": "TPC-B c50",
    "P50": "-S prep c50",
    "L50": "lock pin c50",
    "T50": "TLS+SCRAM -S c50",
    "TC20": "TLS+SCRAM -S -C c20",
}

# Environment of a test's pgbench: SP50's clients all carry a search_path in their startup packet
# (libpq sends PGOPTIONS as the `options` parameter). run.sh creates the schema bench_path.
SEARCH_PATH = "bench_path,public"  # as SHOW prints it: the value as the client gave it
TEST_ENV = {"SP50": {"PGOPTIONS": "-c search_path=bench_path,public"}}

# Tests that connect over TCP with TLS to the poolers' TLS endpoints (run.sh: the same certificate,
# tls.mode "require" / client_tls_sslmode = require); PostgreSQL itself has no TLS listener here.
TLS_TESTS = ("T50", "TC20")
TLS_ENV = {"PGSSLMODE": "require", "PGPASSWORD": "sluice-bench"}  # run.sh sets that password

# Tests that also run through a second sluiced with `workers` = 2 (README: Worker loops), in the
# same rounds, to compare 2 worker loops with 1.
WORKER_TESTS = ("S50", "S1000", "X50")

# Tests that also run through bench/bare_pooler.c, a transaction pooler that does nothing but relay
# (a receive and a send each way, a server handed on at ReadyForQuery 'I'; no session state, no
# prepared statements, no statistics), in the rotation of every round. What it reaches over
# PgBouncer 1.25.2 in the same rounds, and what it spends, is evidence of what a minimal
# single-loop pooler gets on this machine, not a bound. It cannot run what needs more than a relay:
# statements prepared on one server used on another, TLS, startup settings, pinning.
BARE_TESTS = ("S1", "S50", "S1000", "C20", "X50", "B50")
# The poolers' order within a test: those that run it take turns to come first, round by round;
# direct runs after them. A direct run with many clients leaves backends exiting for seconds
# (wait_backends_settled waits for most of them), and the run after it pays: with direct last,
# that is the first pooler of the next test, which changes from round to round rather than always
# being the same one (with more rounds than poolers some come first twice; in the search_path test
# sluice is the only pooler).
ROTATION = POOLERS + ("bare",)

# The pinning test (L50): every pgbench transaction is three server transactions, a session
# advisory lock taken in the first and released in the third. Through sluice the client is pinned
# to its server from the lock to the unlock; through a transaction pooler that does not pin, the
# read and the unlock land on other servers, the unlock returns false with a WARNING, and the lock
# stays with the first server (leaked) until that connection closes. Another client's lock of the
# same key on another server then waits for ever: lock_timeout, set on PostgreSQL around the L50
# runs only (ALTER SYSTEM + reload: the poolers' open servers take it at their next command),
# turns that wait into an error that aborts the client instead of hanging the run.
PIN_TEST = "L50"
PIN_SCRIPT = """\\set aid random(1, 100000 * :scale)
SELECT pg_advisory_lock(:aid);
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
SELECT pg_advisory_unlock(:aid);
"""
PIN_LOCK_TIMEOUT = "1s"
PIN_CLIENTS = 50  # L50's, in TESTS
UNLOCK_WARNING = re.compile(r"WARNING:\s+you don't own a lock of type")
LOCK_TIMEOUT_ERROR = re.compile(r"canceling statement due to lock timeout")
PIN_SAMPLE_S = 0.1

# Before each round: how long to wait for the machine to be quiet (bench/quiet.py) before running anyway.
QUIET_WAIT_S = 30

TEARDOWN_TARGETS_MS = {"clean": 0.05, "rollback": 1.0, "cancel": 5.0}


class Terminated(Exception):
    pass


def on_sigterm(signum, frame):
    raise Terminated()


# --- small helpers ----------------------------------------------------------------------------------


class Log:
    def __init__(self, path):
        self.f = open(path, "w")

    def write(self, text):
        self.f.write(text if text.endswith("\n") else text + "\n")
        self.f.flush()


def say(text):
    print(f"bench: {text}", flush=True)


def run(cmd, timeout=60, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def split_target(spec):
    host, port = spec.rsplit(":", 1)
    return host, int(port)


def set_pgbouncer_names(args):
    """"PgBouncer 1.18.0", "PgBouncer 1.25.2": the report tells the two apart by version."""
    for target, binary in (("pgbouncer", args.pgbouncer_bin), ("pgbouncer2", args.pgbouncer2_bin)):
        version = first_line([binary, "--version"])
        if version.startswith("PgBouncer "):
            NAMES[target] = version


# --- pgbench ----------------------------------------------------------------------------------------

ABORTED = re.compile(r"client \d+ (script \d+ )?aborted")


def normalise_error(line):
    """One key per kind of error: pgbench's threads interleave their stderr lines, so keep the
    server's message (and whether it aborted a client) rather than the line as printed."""
    line = re.sub(r"\bP_\d+\b", "P_N", line)
    m = re.search(r"\b(ERROR|FATAL|PANIC):\s+(.*)", line)
    if m:
        return ("client aborted: " if ABORTED.search(line) else "") + f"{m.group(1)}: {m.group(2).strip()}"
    line = re.sub(r"client \d+", "client N", line)
    line = re.sub(r"script \d+", "script N", line)
    return re.sub(r"^(pgbench: ?)+", "", line.strip())


class PinSampler(threading.Thread):
    """While an L50 run goes through sluice: `sluicectl --json pools` every PIN_SAMPLE_S, the pinned
    clients summed over the pools (and the waiting ones, and the servers in use); the first time
    some are pinned, `sluicectl --json clients` for the reasons they are pinned."""

    def __init__(self, bench, control):
        super().__init__(daemon=True)
        self.bench, self.control = bench, control
        self.stopping = threading.Event()
        self.pinned, self.waiting, self.active_servers = [], [], []
        self.reasons = {}
        self.errors = []

    def run(self):
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                pools = self.bench.sluicectl(self.control, "pools")["pools"]
                pinned = sum(p["clients"]["pinned"] for p in pools)
                self.pinned.append(pinned)
                self.waiting.append(sum(p["clients"]["waiting"] for p in pools))
                self.active_servers.append(sum(p["servers"]["active"] for p in pools))
                if pinned and not self.reasons:
                    for c in self.bench.sluicectl(self.control, "clients")["clients"]:
                        if c.get("pinned"):
                            self.reasons[c["pinned"]] = self.reasons.get(c["pinned"], 0) + 1
            except (RuntimeError, ValueError, KeyError, TypeError, subprocess.TimeoutExpired) as e:
                self.errors.append(str(e)[:200])
            self.stopping.wait(max(0.0, PIN_SAMPLE_S - (time.monotonic() - started)))

    def stop(self):
        self.stopping.set()
        self.join(timeout=30)
        return {
            "pin_samples": len(self.pinned),
            "peak_pinned": max(self.pinned) if self.pinned else None,
            "median_pinned": median(self.pinned),
            "peak_waiting": max(self.waiting) if self.waiting else None,
            "peak_active_servers": max(self.active_servers) if self.active_servers else None,
            "pin_reasons": self.reasons,
            "sampler_errors": self.errors[:3],
        }


class Bench:
    def __init__(self, args):
        self.a = args
        self.log = Log(os.path.join(args.workdir, "bench.log"))
        self.targets = {
            "sluice": split_target(args.sluice),
            "pgbouncer": split_target(args.pgbouncer),
            "pgbouncer2": split_target(args.pgbouncer2),
            "direct": split_target(args.direct),
            "sluice2": split_target(args.sluice2),
            "bare": split_target(args.bare),
        }
        self.tls_targets = {"sluice": split_target(args.sluice_tls), "pgbouncer": split_target(args.pgbouncer_tls),
                            "pgbouncer2": split_target(args.pgbouncer2_tls)}  # fmt: skip
        self.pids = {"sluice": args.sluice_pid, "pgbouncer": args.pgbouncer_pid,
                     "pgbouncer2": args.pgbouncer2_pid, "sluice2": args.sluice2_pid, "bare": args.bare_pid}  # fmt: skip
        self.controls = {"sluice": args.control, "sluice2": args.sluice2_control}
        # sluice runs the tests of TEST_ENV (clients with startup settings) through a sluiced of its
        # own: Bench.instance says why.
        self.settings_sluice = {"endpoint": split_target(args.sluice_settings), "pid": args.sluice_settings_pid,
                                "control": args.sluice_settings_control}  # fmt: skip
        self.runs = {}  # (test, target) -> [result per round]
        self.not_run = {}  # (test, target) -> why that target cannot run that test
        for test in TLS_TESTS:
            self.not_run[(test, "direct")] = "the benchmark's PostgreSQL listens on a Unix socket only, without TLS"
        self.search_path_seen = {}  # (phase, target) -> what SHOW search_path printed, or the error
        self.memory = {}
        self.teardown_main = None
        self.teardown_phase = None
        self.notes = []
        self.quiet_checks = []
        self.relay_floor_us = None
        self.started = time.monotonic()
        self.pin_script = os.path.join(args.workdir, "pin.sql")
        with open(self.pin_script, "w") as f:
            f.write(PIN_SCRIPT)

    def note(self, text):
        say("NOTE: " + text)
        self.notes.append(text)

    def psql(self, sql, timeout=30):
        host, port = self.targets["direct"]
        return run(["psql", "-qAtX", "-h", host, "-p", str(port), "-d", self.a.db, "-c", sql], timeout).strip()

    def options(self, test, options):
        """The pgbench options of TEST (L50's name its script, written into the work dir; -s makes
        :scale the database's scale, which pgbench otherwise sets to 1 for a custom script)."""
        return ["-f", self.pin_script, "-s", str(self.a.scale)] if test == PIN_TEST else options

    def pgbench_cmd(self, target, options, clients, duration, endpoint=None):
        host, port = endpoint or self.targets[target]
        jobs = max(1, min(clients, self.a.jobs))
        return ["pgbench", "-n", "-h", host, "-p", str(port), "-T", str(duration),
                "-c", str(clients), "-j", str(jobs), *options, self.a.db]  # fmt: skip

    def instance(self, test, target):
        """The process that serves TARGET's runs of TEST, when it is not TARGET's own: sluiced pools
        servers per set of startup settings within one pool_size, so clients with other settings
        than the last ones take the servers' places, and each new server is a new backend, which
        costs PostgreSQL about half as much again per transaction over its first thousands
        (bench/HISTORY.md, "The bench ran some tests on new backends"). The main sluiced keeps its
        servers all through the rounds, as the PgBouncers do (the pin test, which ends the backends
        holding the locks they leak, has rounds of its own after the others)."""
        return self.settings_sluice if target == "sluice" and test in TEST_ENV else None

    def pgbench(self, target, options, clients, duration, label, env=None, endpoint=None, instance=None):
        cmd = self.pgbench_cmd(target, options, clients, duration, instance["endpoint"] if instance else endpoint)
        pid = instance["pid"] if instance else self.pids.get(target)
        control = instance["control"] if instance else self.controls.get(target)
        proc0 = procstat.sample(pid) if pid else None
        loop0 = self.loop_counters(control)
        machine0 = procstat.cpu_times()
        postgres0 = procstat.postgres_cpu_s()
        pgbench0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for children: pgbench, next
        started = time.monotonic()
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 90,
                               env={**os.environ, **env} if env else None)  # fmt: skip
            out, err, rc = r.stdout, r.stderr, r.returncode
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = (e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")) + "\n(timed out)"
            rc = -1
        wall = time.monotonic() - started
        pgbench1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        postgres1 = procstat.postgres_cpu_s()
        machine1 = procstat.cpu_times()
        proc1 = procstat.sample(pid) if pid else None
        loop1 = self.loop_counters(control)
        res = {"rc": rc, "wall_s": round(wall, 2)}
        res["machine_busy"], res["machine_steal"] = procstat.share(machine0, machine1)
        for key, rx in RE.items():
            m = rx.search(out)
            res[key] = (int(m.group(1)) if key in ("processed", "failed") else float(m.group(1))) if m else None
        err_lines = [ln for ln in err.splitlines() if ln.strip()]
        res["aborted_clients"] = sum(1 for ln in err_lines if ABORTED.search(ln))
        # The pinning test: an unlock that returned false says so in a WARNING (libpq prints the
        # notices on stderr), one per false unlock; the log keeps their count, not the lines.
        res["false_unlocks"] = sum(1 for ln in err_lines if UNLOCK_WARNING.search(ln))
        res["lock_timeouts"] = sum(1 for ln in err_lines if LOCK_TIMEOUT_ERROR.search(ln))
        if res["false_unlocks"]:
            kept = [ln for ln in err.splitlines() if not UNLOCK_WARNING.search(ln)]
            err = "\n".join(kept) + f"\n({res['false_unlocks']} lines `WARNING:  you don't own a lock of type ...` left out)\n"
        errors = {}
        for ln in err_lines:
            if "aborted" in ln or "error" in ln.lower() or "fatal" in ln.lower() or "timed out" in ln:
                key = normalise_error(ln)
                errors[key] = errors.get(key, 0) + 1
        res["errors"] = errors
        if pid:
            spent = procstat.per_transaction(proc0, proc1, res["processed"])
            res["cpu_s_per_1000"] = (spent["user_us"] + spent["sys_us"]) / 1000 if spent else None
            res.update(spent or {})
            if spent and res["processed"]:
                # The whole machine's CPU per transaction (PostgreSQL, pgbench, the pooler, anything else).
                res["machine_us"] = res["machine_busy"] * (os.cpu_count() or 1) * wall * 1e6 / res["processed"]
                res["postgres_us"] = (postgres1 - postgres0) * 1e6 / res["processed"]
                res["pgbench_us"] = ((pgbench1.ru_utime + pgbench1.ru_stime) -
                                     (pgbench0.ru_utime + pgbench0.ru_stime)) * 1e6 / res["processed"]
            if loop0 and loop1 and res["processed"]:
                tx = res["processed"]
                res["turns_per_tx"] = (loop1["turns"] - loop0["turns"]) / tx
                waits = loop1["waits"] - loop0["waits"]
                res["waits_per_tx"] = waits / tx
                res["wait_ms"] = (loop1["wait_ms"] - loop0["wait_ms"]) / waits if waits else 0.0
            if not alive(pid):
                res["pooler_died"] = True
                self.note(f"the {NAMES[target]} process (pid {pid}) is gone after {label}")
        res["ok"] = rc == 0 and not res["aborted_clients"] and not res["failed"] and res["tps"] is not None
        shown = " ".join([*(f"{k}='{v}'" for k, v in (env or {}).items()), *cmd])
        self.log.write(f"### {label} [{NAMES[target]}] $ {shown}\nrc={rc} wall={wall:.1f}s\n{out}{err}")
        return res

    def loop_counters(self, control):
        """sluiced's loop turns and pool waits so far (from its control socket), or None."""
        if not control:
            return None
        try:
            turns = self.sluicectl(control, "status")["loop"]["turns"]
            pools = self.sluicectl(control, "pools")["pools"]
        except (RuntimeError, ValueError, KeyError, TypeError, subprocess.TimeoutExpired):
            return None
        return {"turns": turns, "waits": sum(p["waits"]["count"] for p in pools),
                "wait_ms": sum(p["waits"]["total_ms"] for p in pools)}

    def duration(self, clients, target):
        """pgbench's -T clock starts before its clients connect, and tps leaves the connection time
        out: with 1000 clients, allow the time they take to connect (PostgreSQL forks a backend for
        each, seconds on a small machine) on top of the measured duration."""
        if clients < 500:
            return self.a.duration
        return self.a.duration + (6 if target == "direct" else 1)

    def wait_backends_settled(self, timeout=20):
        """After a direct run with many clients, until its backends have exited (down to the
        poolers' servers, sluice2's, the search_path test's sluiced's and the bare relay's included,
        and one pool's worth of slack) and the machine is
        quiet again: backends that have left pg_stat_activity still take the CPUs while they exit
        (a thousand of them for seconds), and the next target in the round would run in their wake."""
        limit = self.a.pool_size * (len(POOLERS) + 4)
        deadline = time.monotonic() + timeout
        count = None
        while time.monotonic() < deadline:
            count = int(self.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"))
            if count <= limit:
                break
            time.sleep(0.2)
        else:
            self.note(f"{count} client backends still connected {timeout}s after a direct run")
        check = quiet.wait_for_quiet(QUIET_WAIT_S)
        if not check["quiet"]:
            self.note(f"not quiet {QUIET_WAIT_S}s after a direct run: {quiet.describe(check)}")

    # --- phases ---------------------------------------------------------------------------------------

    def warm_up(self):
        for target in ROTATION + ("direct",):
            self.warm_up_one(target, "warm-up")
        for test, env in TEST_ENV.items():  # the instances that serve only some tests, with their clients
            if test in TEST_TITLES and self.instance(test, "sluice"):
                self.warm_up_one("sluice", f"warm-up ({test})", env, self.instance(test, "sluice"))

    def warm_up_one(self, target, label, env=None, instance=None):
        r = self.pgbench(target, ["-S"], 20, 1, label, env, instance=instance)
        if r["tps"] is None and not r["errors"]:  # a loaded machine: 0 tx while 20 backends forked
            r = self.pgbench(target, ["-S"], 20, 5, f"{label} (again, longer)", env, instance=instance)
        if r["tps"] is None:
            raise RuntimeError(f"{label} through {NAMES[target]} failed: {r['errors'] or r['rc']}")

    def search_path_check(self, phase, env):
        """SHOW search_path through every target, as a client whose startup packet has ENV's
        options. Before the rounds, with SP50's: a target that refuses them, or takes them and
        leaves the server's search_path as it was, does not run SP50 (its tps would measure other
        work); the reason goes to the errors section. After the rounds, without options: what a
        plain client sees once the SP50 clients have gone (the server default: nothing leaked)."""
        want = SEARCH_PATH if env else None
        for t in TARGETS:
            instance = self.instance("SP50", t)
            host, port = instance["endpoint"] if instance else self.targets[t]
            r = subprocess.run(["psql", "-qAtX", "-h", host, "-p", str(port), "-d", self.a.db, "-c", "SHOW search_path"],
                               capture_output=True, text=True, timeout=30, env={**os.environ, **(env or {})})  # fmt: skip
            got = r.stdout.strip()
            errors = [normalise_error(ln) for ln in r.stderr.splitlines() if ln.strip()]
            self.search_path_seen[(phase, t)] = f"`{got}`" if r.returncode == 0 else f"error `{'; '.join(errors)}`"
            self.log.write(f"### search_path check ({phase}) [{NAMES[t]}] rc={r.returncode}\n{r.stdout}{r.stderr}")
            if want is None:
                continue
            if r.returncode != 0:
                self.not_run[("SP50", t)] = f"refuses the startup parameter: `{'; '.join(errors) or r.returncode}`"
            elif got.replace(" ", "") != want.replace(" ", ""):
                self.not_run[("SP50", t)] = (
                    f"accepts the startup parameter but does not apply it: `SHOW search_path` through it gives "
                    f"`{got}`, not `{want}`")
        say("search_path " + phase + ": " + ", ".join(f"{NAMES[t]} {self.search_path_seen[(phase, t)]}" for t in TARGETS))

    def memory_test(self):
        for target in POOLERS:
            host, port = self.targets[target]
            cmd = [sys.executable, os.path.join(self.a.bench_dir, "pgwire.py"), "idle", "--host", host,
                   "--port", str(port), "--db", self.a.db, "--user", self.a.user,
                   "--clients", str(self.a.idle_clients), "--pid", str(self.pids[target])]  # fmt: skip
            say(f"memory: {self.a.idle_clients} idle clients through {NAMES[target]}")
            out = run(cmd, timeout=300)
            res = json.loads(out.strip().splitlines()[-1])
            self.log.write(f"### memory [{NAMES[target]}]\n{json.dumps(res)}")
            self.memory[target] = res
            if res["connected"] != self.a.idle_clients or res["still_open"] != res["connected"]:
                self.note(
                    f"memory test through {NAMES[target]}: {res['connected']}/{self.a.idle_clients} logged in, "
                    f"{res['still_open']} still open at the end; errors: {res['errors']}"
                )
            time.sleep(1)  # let the pooler close the 2000 sessions

    @staticmethod
    def has_target(test, target):
        """Whether the test is run through the target at all: sluice2 only the worker tests, the bare
        relay only what a relay can."""
        return not ((target == "sluice2" and test not in WORKER_TESTS) or (target == "bare" and test not in BARE_TESTS))

    def takes_part(self, test, target):
        """Whether the target runs the test: it has the target, and the target was not found unable."""
        return self.has_target(test, target) and (test, target) not in self.not_run

    def rounds(self, tests, name="round"):
        for rnd in range(self.a.rounds if tests else 0):
            self.check_quiet(f"before {name} {rnd + 1}")
            for test, title, options, clients in tests:
                if test == PIN_TEST:
                    self.set_lock_timeout(PIN_LOCK_TIMEOUT)
                poolers = [t for t in ROTATION if self.takes_part(test, t)]
                shift = rnd % max(len(poolers), 1)
                order = poolers[shift:] + poolers[:shift]
                for target in order + [t for t in ("sluice2", "direct") if self.takes_part(test, t)]:
                    label = f"{name} {rnd + 1}/{self.a.rounds}: {title}"
                    if test == PIN_TEST:
                        r = self.pin_run(target, clients, self.duration(clients, target), label)
                    elif test in TLS_TESTS:
                        r = self.pgbench(target, options, clients, self.duration(clients, target), label, TLS_ENV,
                                         self.tls_targets[target])
                    else:
                        r = self.pgbench(target, options, clients, self.duration(clients, target), label, TEST_ENV.get(test),
                                         instance=self.instance(test, target))
                    self.runs.setdefault((test, target), []).append(r)
                    status = "ok" if r["ok"] else f"FAILED rc={r['rc']} aborted={r['aborted_clients']} failed={r['failed']}"
                    tps = f"{r['tps']:.0f}" if r["tps"] is not None else "-"
                    if test == PIN_TEST:
                        status += (f"; {r['false_unlocks']} false unlocks, {r['lock_timeouts']} lock timeouts, "
                                   f"{r['leaked_locks']} advisory locks left")
                        status += f", peak pinned {r['peak_pinned']}" if "peak_pinned" in r else ""
                    say(f"{label} {NAMES[target]:>17}: tps {tps:>7} {status}")
                    if target == "direct" and clients >= 50:
                        self.wait_backends_settled()
                if test == PIN_TEST:
                    self.set_lock_timeout(None)
            say(f"{name} {rnd + 1} done after {time.monotonic() - self.started:.0f}s")

    def measure_relay_floor(self):
        """CPU µs per round trip of bench/relay_floor.c: the median of three runs."""
        runs = []
        for _ in range(3):
            try:
                runs.append(float(run([self.a.relay_floor, "100000"], timeout=120)))
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                self.note(f"bench/relay_floor.c failed: {e}")
                break
        self.relay_floor_us = median(runs)
        if self.relay_floor_us is not None:
            say(f"relay floor: {self.relay_floor_us:.1f} µs CPU per round trip")

    def check_quiet(self, when):
        """Waits up to QUIET_WAIT_S for a second in which other work leaves the CPUs alone, and
        records what it saw: the report says whether the figures can be trusted."""
        check = quiet.wait_for_quiet(QUIET_WAIT_S)
        check["when"] = when
        self.quiet_checks.append(check)
        say(f"{when}: {quiet.describe(check)}" + ("" if check["quiet"] else " — NOT QUIET: figures less trustworthy"))

    def sluicectl(self, control, command):
        return json.loads(run([self.a.sluicectl, "-s", control, "--json", command], timeout=20))

    # --- the pinning test (L50) -----------------------------------------------------------------------

    def set_lock_timeout(self, value):
        """PostgreSQL's lock_timeout for every session, the poolers' open servers too (they read
        the reloaded configuration before their next command); None: back to the default (0)."""
        self.psql(f"ALTER SYSTEM SET lock_timeout = '{value}'" if value else "ALTER SYSTEM RESET lock_timeout")
        self.psql("SELECT pg_reload_conf()")
        want = value or "0"
        deadline = time.monotonic() + 10
        while self.psql("SHOW lock_timeout") != want:  # a new backend: the postmaster has reloaded
            if time.monotonic() > deadline:
                raise RuntimeError(f"lock_timeout did not become {want} after pg_reload_conf()")
            time.sleep(0.1)
        time.sleep(0.2)  # the other backends were signalled by then; let them take the signal

    def advisory_locks(self):
        """(advisory locks, backends holding them, of which idle) on PostgreSQL, this session's aside."""
        out = self.psql(
            "SELECT count(*), count(DISTINCT l.pid), count(DISTINCT l.pid) FILTER (WHERE a.state = 'idle') "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.pid <> pg_backend_pid()")
        locks, holders, idle = (int(x) for x in out.split("|"))
        return locks, holders, idle

    def settled_advisory_locks(self, timeout=6.0, steady=1.0):
        """The advisory locks left once a run is over: until there are none, or their count has not
        changed for STEADY seconds (sluiced releases a pinned server after its client has gone,
        direct's backends take a moment to exit)."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while True:
            now = self.advisory_locks()
            if now[0] == 0 or time.monotonic() > deadline:
                return now
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= steady:
                return now
            time.sleep(0.1)

    def clear_advisory_locks(self, label):
        """Ends the backends that still hold advisory locks (leaked through a pooler that does not
        pin): left alone, they would block the next L50 runs' clients, through every target. Their
        pooler sees its server closed and opens another when it needs one. Returns how many."""
        ended = int(self.psql(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM (SELECT DISTINCT pid FROM pg_locks "
            "WHERE locktype = 'advisory' AND pid <> pg_backend_pid()) h) t"))
        if not ended:
            return 0
        deadline = time.monotonic() + 10
        while self.advisory_locks()[0]:
            if time.monotonic() > deadline:
                self.note(f"{label}: advisory locks still held 10 s after their backends were terminated")
                break
            time.sleep(0.1)
        time.sleep(1)  # for the pooler to see its closed servers before the next run
        return ended

    def pin_run(self, target, clients, duration, label):
        before = self.advisory_locks()
        if before[0]:
            self.note(f"{label}, before the {NAMES[target]} run: {before[0]} advisory locks held; cleared")
            self.clear_advisory_locks(label)
        sampler = PinSampler(self, self.a.control) if target == "sluice" else None
        if sampler:
            sampler.start()
        try:
            r = self.pgbench(target, self.options(PIN_TEST, []), clients, duration, label)
        finally:
            sampled = sampler.stop() if sampler else {}
        r.update(sampled)
        r["leaked_locks"], r["leak_holders"], r["leak_idle_holders"] = self.settled_advisory_locks()
        r["terminated"] = self.clear_advisory_locks(label) if r["leaked_locks"] else 0
        if r["terminated"] and target in self.pids:
            # Its pool lost those servers: reopen them unmeasured, so that its next test starts on
            # warm servers as the others' do.
            self.pgbench(target, ["-S"], 20, 1, f"{label} (reopening servers after the cleanup, not counted)")
        self.log.write(f"### {label} [{NAMES[target]}]: {r['false_unlocks']} false unlocks, {r['lock_timeouts']} lock "
                       f"timeouts, {r['leaked_locks']} advisory locks left in {r['leak_holders']} backends "
                       f"({r['leak_idle_holders']} idle), {r['terminated']} terminated; sampler: {json.dumps(sampled)}")
        return r

    def teardown(self):
        try:
            self.teardown_main = self.sluicectl(self.a.control, "teardown")
            self.status_main = self.sluicectl(self.a.control, "status")
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
            self.note(f"the main sluiced did not answer on its control socket after the runs: {e}")
            self.teardown_main = self.status_main = None
        host, port = split_target(self.a.teardown_sluice)
        say(f"teardown phase: 50-client select-only load for {self.a.teardown_load_s}s with abandoned clients")
        load = subprocess.Popen(
            ["pgbench", "-n", "-S", "-h", host, "-p", str(port), "-c", "50", "-j", str(self.a.jobs),
             "-T", str(self.a.teardown_load_s), self.a.db],  # fmt: skip
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            time.sleep(1)
            out = run([sys.executable, os.path.join(self.a.bench_dir, "pgwire.py"), "abandon", "--host", host,
                       "--port", str(port), "--db", self.a.db, "--user", self.a.user,
                       "--rollback", str(self.a.abandon_rollback), "--cancel", str(self.a.abandon_cancel),
                       "--concurrency", "4", "--cancel-after", str(self.a.cancel_after)], timeout=300)  # fmt: skip
            abandon = json.loads(out.strip().splitlines()[-1])
            load_running = load.poll() is None
            lout, lerr = load.communicate(timeout=self.a.teardown_load_s + 60)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
        self.log.write(f"### teardown phase load\n{lout}{lerr}\n### abandon\n{json.dumps(abandon)}")
        if not load_running:
            self.note("the teardown phase's pgbench load ended before the abandoned clients were done")
        if abandon["errors"]:
            self.note(f"teardown phase: abandoned-client errors: {abandon['errors']}")
        m = RE["tps"].search(lout)
        time.sleep(0.5)
        self.teardown_phase = {
            "report": self.sluicectl(self.a.teardown_control, "teardown"),
            "status": self.sluicectl(self.a.teardown_control, "status"),
            "abandon": abandon,
            "load_tps": float(m.group(1)) if m else None,
            "load_rc": load.returncode,
            "abandoned_writes": int(self.psql("SELECT count(*) FROM pgbench_history WHERE filler = 'sluice-bench-abandoned'")),
            "sleeping_backends": int(self.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep%' "
                "AND pid <> pg_backend_pid()")),
            "idle_in_tx_backends": int(self.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'")),
        }  # fmt: skip
        p = self.teardown_phase
        if p["abandoned_writes"]:
            self.note(f"{p['abandoned_writes']} writes of abandoned transactions were committed")
        if p["sleeping_backends"] or p["idle_in_tx_backends"]:
            self.note(
                f"after the teardown phase: {p['sleeping_backends']} backends still in pg_sleep, "
                f"{p['idle_in_tx_backends']} idle in transaction"
            )

    # --- report ---------------------------------------------------------------------------------------

    def machine(self):
        model = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
        return {
            "nproc": os.cpu_count(),
            "cpu": model,
            "mem": f"{mem_kib / 1024 / 1024:.1f} GiB",
            "kernel": platform.release(),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        }

    def versions(self):
        git = "?"
        try:
            head = run(["git", "-C", self.a.root, "rev-parse", "--short", "HEAD"]).strip()
            dirty = run(["git", "-C", self.a.root, "status", "--porcelain", "--untracked-files=no"]).strip()
            git = head + (" (with uncommitted changes)" if dirty else "")
        except (RuntimeError, OSError):
            pass
        return {
            "sluiced": first_line([self.a.sluiced, "--version"]),
            "sluice tree": git,
            "pgbouncer": first_line([self.a.pgbouncer_bin, "--version"]),
            "pgbouncer2": first_line([self.a.pgbouncer2_bin, "--version"]),
            "PostgreSQL": self.psql("SHOW server_version"),
            "pgbench": first_line(["pgbench", "--version"]),
        }

    def unrunnable(self, test, target):
        """Not run (not_run), or every run failed without a tps (a pooler that refused all the
        clients): "—" in the tables, the reason in the errors section."""
        if (test, target) in self.not_run:
            return True
        rs = self.runs.get((test, target), [])
        return bool(rs) and all(r["tps"] is None for r in rs)

    def cell(self, test, target, key):
        return median([r.get(key) for r in self.runs.get((test, target), [])])

    def value(self, test, target, key):
        return NOT_RUN if self.unrunnable(test, target) else self.cell(test, target, key)

    def tps_range(self, test, target):
        """(lowest, highest) tps over the rounds, or None."""
        tps = [r["tps"] for r in self.runs.get((test, target), []) if r["tps"] is not None]
        return (min(tps), max(tps)) if tps else None

    def spread_pct(self, test, target):
        """Half the range of the rounds' tps, as a percentage of their median."""
        span, mid = self.tps_range(test, target), self.cell(test, target, "tps")
        return (span[1] - span[0]) / 2 / mid * 100 if span and mid else None

    def failures(self, test, target):
        rs = self.runs.get((test, target), [])
        if not rs:
            return None
        return {
            "runs_failed": sum(1 for r in rs if not r["ok"]),
            "runs": len(rs),
            "failed_tx": sum(r["failed"] or 0 for r in rs),
            "aborted": sum(r["aborted_clients"] for r in rs),
            "processed": sum(r["processed"] or 0 for r in rs),
        }

    def rows(self):
        """(label, {target: value}, format, lower_is_better, test id or None)"""
        rows = []
        for test, title, _, _ in TESTS:
            rows.append((f"{title}: tps", {t: self.value(test, t, "tps") for t in TARGETS}, "{:,.0f}", False, test))
            rows.append((f"{title}: avg latency, ms", {t: self.value(test, t, "latency_ms") for t in TARGETS}, "{:.3f}", True, test))
            if test == "C20":
                rows.append((f"{title}: avg connection time, ms", {t: self.value(test, t, "conn_ms") for t in TARGETS}, "{:.3f}", True, test))
            vals = {}
            for t in TARGETS:
                f = self.failures(test, t)
                vals[t] = NOT_RUN if (test, t) in self.not_run else None if f is None else (
                    f"{f['failed_tx']} failed tx, {f['aborted']} aborted clients, {f['runs_failed']}/{f['runs']} runs failed"
                    f" ({f['processed']:,} tx processed)")
            if test in ("S1000", "P50") or any(self.failures(test, t) and self.failures(test, t)["runs_failed"] for t in TARGETS):
                rows.append((f"{title}: failures (all rounds)", vals, "{}", True, None))
        rows.append((
            f"memory: RSS per idle client, bytes ({self.a.idle_clients} clients)",
            {t: (self.memory.get(t) or {}).get("bytes_per_client") for t in POOLERS} | {"direct": None},
            "{:,.0f}", True, None,
        ))  # fmt: skip
        rows.append((
            "CPU: pooler CPU s per 1000 tx (select-only, 50 clients)",
            {t: self.value("S50", t, "cpu_s_per_1000") for t in POOLERS} | {"direct": None},
            "{:.4f}", True, None,
        ))  # fmt: skip
        return rows

    @staticmethod
    def fmt(value, form):
        if value is None:
            return "n/a"
        return form.format(value) if not isinstance(value, str) else value

    @staticmethod
    def quotient(a, b):
        """a / b, or None when either is missing or b is zero."""
        return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None

    @staticmethod
    def ratio(a, b):
        if NOT_RUN in (a, b):
            return NOT_RUN
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
            return "n/a"
        return f"{a / b:.2f}"

    def main_table(self):
        others = TARGETS[1:]
        lines = [
            f"| test / metric | {' | '.join(NAMES[t] for t in TARGETS)} | {' | '.join(f'sluice/{NAMES[t]}' for t in others)} |",
            "|---|" + "---:|" * (len(TARGETS) + len(others)),
        ]
        for label, vals, form, lower, test in self.rows():
            s = vals.get("sluice")
            cells = []
            for t in TARGETS:
                text = self.fmt(vals.get(t), form)
                f = self.failures(test, t) if test else None
                if f and f["runs_failed"] and not isinstance(vals.get(t), str) and vals.get(t) is not None:
                    text += " †"
                if label.endswith(": tps") and test and isinstance(vals.get(t), float) and self.spread_pct(test, t) is not None:
                    text += f" ±{self.spread_pct(test, t):.0f} %"
                cells.append(text)
            ratios = [self.ratio(s, vals.get(t)) for t in others]
            lines.append(
                f"| {label}{' (lower is better)' if lower and not isinstance(s, str) else ''} "
                f"| {' | '.join(cells)} | {' | '.join(ratios)} |"
            )
        return "\n".join(lines)

    def cpu_table(self):
        others = POOLERS[1:]
        lines = [
            f"| test | {' | '.join(NAMES[t] for t in POOLERS)} | {' | '.join(f'sluice/{NAMES[t]}' for t in others)} |",
            "|---|" + "---:|" * (len(POOLERS) + len(others)),
        ]
        for test, title, _, _ in TESTS:
            vals = {t: self.value(test, t, "cpu_s_per_1000") for t in POOLERS}
            cells = " | ".join(self.fmt(vals[t], "{:.4f}") for t in POOLERS)
            lines.append(f"| {title} | {cells} | {' | '.join(self.ratio(vals['sluice'], vals[t]) for t in others)} |")
        return "\n".join(lines)

    def cpu_floor(self, test, rival):
        """sluice's CPU against `rival`'s from the medians of user and of system µs per transaction:
        sluice's user and system time, `rival`'s user time and CPU, the floor (sluice's system time
        over `rival`'s CPU) and the user time a CPU ratio of 0.8 leaves sluice above it (≤ 0 where
        the floor alone reaches 0.8). None when a figure is missing."""
        own_user, own_system, user, system = (self.cell(test, t, k) for t in ("sluice", rival) for k in ("user_us", "sys_us"))
        if None in (own_user, own_system, user, system) or not user + system:
            return None
        rival_cpu = user + system
        return CpuFloor(own_user, own_system, user, rival_cpu, own_system / rival_cpu, 0.8 * rival_cpu - own_system)

    def cpu_floor_table(self):
        """Per test, how far sluice's pooler CPU could fall with the system calls it makes: its system
        time is a floor under its CPU, and what is left of 0.8 × PgBouncer 1.25.2's CPU above that
        floor is all its user space may cost for a CPU ratio of 0.8. Medians of user and of system
        time, summed: the ratio can differ a little from the CPU table's median of the sums."""
        rival = "pgbouncer2"
        lines = [
            f"| test | sluice/{NAMES[rival]} CPU | floor: sluice's system time / {NAMES[rival]}'s CPU "
            f"| user µs/tx left at 0.8 × | sluice's user µs/tx | {NAMES[rival]}'s user µs/tx |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for test, title, _, _ in TESTS:
            if self.unrunnable(test, "sluice") or self.unrunnable(test, rival):
                continue
            f = self.cpu_floor(test, rival)
            if f is None:
                continue
            lines.append(f"| {title} | {(f.own_user + f.own_system) / f.rival_cpu:.2f} | {f.floor:.2f} "
                         f"| {f'{f.budget:.1f}' if f.budget > 0 else 'none'} | {f.own_user:.1f} | {f.user:.1f} |")
        return "\n".join(lines)

    def time_table(self):
        """Per test and pooler, medians over the rounds of where the pooler's time went per
        transaction (bench/procstat.py), and for sluice its loop turns and waits for a server."""
        lines = [
            "| test | pooler | tps | user µs/tx | system µs/tx | sleeps/tx | preempted/tx | run-queue wait µs/tx "
            "| loop turns/tx | waits for a server/tx | mean wait, ms | machine CPU µs/tx | PostgreSQL µs/tx "
            "| pgbench µs/tx | pooler's share |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for test, _, _, _ in TESTS:
            for t in POOLERS + ("bare",):
                if self.unrunnable(test, t) or not self.runs.get((test, t)):
                    continue
                c = {k: self.cell(test, t, k) for k in ("tps", "user_us", "sys_us", "sleeps", "preempted", "runq_wait_us",
                                                         "turns_per_tx", "waits_per_tx", "wait_ms", "machine_us",
                                                         "postgres_us", "pgbench_us")}
                pooler = (c["user_us"] or 0) + (c["sys_us"] or 0)
                share = pooler / c["machine_us"] if c["machine_us"] else None
                lines.append(
                    f"| {SHORT_LABELS[test]} | {NAMES[t]} | {self.fmt(c['tps'], '{:,.0f}')} | {self.fmt(c['user_us'], '{:.1f}')} "
                    f"| {self.fmt(c['sys_us'], '{:.1f}')} | {self.fmt(c['sleeps'], '{:.3f}')} | {self.fmt(c['preempted'], '{:.3f}')} "
                    f"| {self.fmt(c['runq_wait_us'], '{:.1f}')} | {self.fmt(c['turns_per_tx'], '{:.2f}')} "
                    f"| {self.fmt(c['waits_per_tx'], '{:.2f}')} | {self.fmt(c['wait_ms'], '{:.2f}')} "
                    f"| {self.fmt(c['machine_us'], '{:.0f}')} | {self.fmt(c['postgres_us'], '{:.0f}')} "
                    f"| {self.fmt(c['pgbench_us'], '{:.0f}')} | {self.fmt(share * 100 if share else None, '{:.0f} %')} |")
        return "\n".join(lines)

    def same_round_ratios(self, test, target, rival):
        """`target`'s tps over `rival`'s, round by round, where both runs of the round succeeded."""
        return [a["tps"] / b["tps"] for a, b in zip(self.runs.get((test, target), []), self.runs.get((test, rival), []))
                if a["ok"] and b["ok"] and a["tps"] and b["tps"]]

    def targets_table(self):
        """The performance issue's targets, against PgBouncer 1.25.2, for each of its tests this run
        ran: tps at least 1.00 × (1.10 × for select-only at 50 clients) by the median of the
        same-round ratios and by the ratio of the medians, and pooler CPU at most 0.8 ×. Where a
        target is missed, what the run says of it: the tps or CPU of the bare relay where it did no
        better than the target and no worse than sluice, else the tps a relay making sluice's system
        calls and doing nothing else could reach, and the user-space time 0.8 × leaves above the
        floor that sluice's system time puts under its CPU."""
        rival = "pgbouncer2"
        lines = ["| test | tps target | same rounds | lowest – highest | medians | tps met | CPU | floor | CPU ≤ 0.8 × met |",
                 "|---|---:|---:|---:|---:|---|---:|---:|---|"]
        for test in TARGET_TESTS:
            if self.unrunnable(test, "sluice") or self.unrunnable(test, rival) or not self.runs.get((test, rival)):
                continue
            wanted = 1.10 if test == "S50" else 1.00
            ratios = self.same_round_ratios(test, "sluice", rival)
            paired = median(ratios) if ratios else None
            spread = f"{min(ratios):.2f} – {max(ratios):.2f}" if ratios else "n/a"
            medians, cpu = (self.quotient(self.cell(test, "sluice", k), self.cell(test, rival, k))
                            for k in ("tps", "cpu_s_per_1000"))
            met = [v is not None and round(v, 2) >= wanted for v in (paired, medians)]
            tps_met = "yes" if all(met) else "same rounds only" if met[0] else "medians only" if met[1] else "no"
            _, syscalls_only = self.ceilings(test, TEST_CLIENTS[test], rival)
            bare = self.bare_relay(test, rival)
            if not any(met) and bare and round(bare.tps, 2) < wanted and paired is not None and bare.tps >= paired:
                tps_met += f": a pooler that only relays reached only {bare.tps:.2f} in the same rounds"
            elif not any(met) and syscalls_only is not None and round(syscalls_only, 2) < wanted:
                tps_met += f": a relay making sluice's system calls and nothing else would reach {syscalls_only:.2f}"
            f = self.cpu_floor(test, rival)
            if cpu is None:
                cpu_met = "n/a"
            elif round(cpu, 2) <= 0.8:
                cpu_met = "yes"
            elif bare and bare.cpu is not None and round(bare.cpu, 2) > 0.8 and bare.cpu <= cpu:
                cpu_met = f"no: a pooler that only relays spent {bare.cpu:.2f} × {NAMES[rival]}'s CPU too"
            elif f is None or not f.user:
                cpu_met = "no"
            elif f.budget <= 0:
                cpu_met = "no: the floor alone is at or above 0.8"
            else:
                cpu_met = (f"no: 0.8 × leaves {f.budget:.1f} µs/tx for user space, {f.budget / f.user:.2f} × "
                           f"{NAMES[rival]}'s user time (sluice's: {f.own_user:.1f})")
            lines.append(f"| {TEST_TITLES[test]} | {wanted:.2f} × | {self.fmt(paired, '{:.2f}')} | {spread} "
                         f"| {self.fmt(medians, '{:.2f}')} | {tps_met} | {self.fmt(cpu, '{:.2f}')} "
                         f"| {self.fmt(f.floor if f else None, '{:.2f}')} | {cpu_met} |")
        return "\n".join(lines)

    def bare_relay(self, test, rival):
        """The bare relay (bench/bare_pooler.c) against `rival`: the median of their same-round tps
        ratios, with the lowest and highest, and the ratio of their median CPU per transaction; None
        where it did not run the test."""
        ratios = self.same_round_ratios(test, "bare", rival)
        if not ratios:
            return None
        cpu = self.quotient(self.cell(test, "bare", "cpu_s_per_1000"), self.cell(test, rival, "cpu_s_per_1000"))
        return BareRelay(median(ratios), min(ratios), max(ratios), cpu)

    def bare_table(self):
        """Per test the bare relay ran: its tps over PgBouncer 1.25.2's and sluice's over its own in
        the same rounds, and the three poolers' CPU per transaction."""
        rival = "pgbouncer2"
        lines = [
            f"| test | bare relay / {NAMES[rival]}, same rounds | lowest – highest | sluice / bare relay, same rounds "
            f"| pooler CPU µs/tx: bare relay | sluice | {NAMES[rival]} | bare relay's CPU / {NAMES[rival]}'s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for test in BARE_TESTS:
            bare = self.bare_relay(test, rival) if test in TEST_TITLES else None
            if bare is None:
                continue
            own = self.same_round_ratios(test, "sluice", "bare")
            cpu = {t: self.cell(test, t, "cpu_s_per_1000") for t in ("bare", "sluice", rival)}
            lines.append(f"| {TEST_TITLES[test]} | {bare.tps:.2f} | {bare.lowest:.2f} – {bare.highest:.2f} "
                         f"| {self.fmt(median(own) if own else None, '{:.2f}')} | "
                         + " | ".join(self.fmt(cpu[t] * 1000 if cpu[t] is not None else None, "{:.1f}") for t in cpu)
                         + f" | {self.fmt(bare.cpu, '{:.2f}')} |")
        return "\n".join(lines)

    def ceilings(self, test, clients, rival):
        """The most any pooler could reach over `rival`'s tps in this test: one that cost no CPU, and
        one that made sluice's system calls and nothing else (None where the figures cannot say)."""
        if clients == 1:  # one round trip at a time, the CPUs mostly idle: direct is the pooler that costs nothing
            direct = self.same_round_ratios(test, "direct", rival)
            return (median(direct) if direct else None), None
        machine, user, system = (self.cell(test, rival, k) for k in ("machine_us", "user_us", "sys_us"))
        own_system = self.cell(test, "sluice", "sys_us")
        if not machine or user is None or system is None or machine <= user + system:
            return None, None  # no figures, or /proc's sampling gave the pooler all of the machine's time
        syscalls_only = machine / (machine - user - system + own_system) if own_system is not None else None
        return machine / (machine - user - system), syscalls_only

    def paired_table(self):
        """Per test, sluice's tps over PgBouncer 1.25.2's in the same round (runs minutes apart at
        most, so the VM's slow drift cancels out), and the most any pooler could reach over it."""
        rival = "pgbouncer2"
        lines = [
            f"| test | sluice/{NAMES[rival]}, median of the rounds | lowest – highest | rounds sluice was ahead "
            f"| a pooler that cost no CPU, over {NAMES[rival]} | one that made sluice's system calls and nothing else |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for test, title, _, clients in TESTS:
            if self.unrunnable(test, "sluice") or self.unrunnable(test, rival):
                continue
            ratios = self.same_round_ratios(test, "sluice", rival)
            if not ratios:
                continue
            ceiling, syscalls_only = self.ceilings(test, clients, rival)
            lines.append(f"| {title} | {median(ratios):.2f} | {min(ratios):.2f} – {max(ratios):.2f} "
                         f"| {sum(1 for r in ratios if r > 1)} of {len(ratios)} | {self.fmt(ceiling, '{:.2f}')} "
                         f"| {self.fmt(syscalls_only, '{:.2f}')} |")
        return "\n".join(lines)

    def quiet_table(self):
        lines = ["| when | load average (1 min) | CPUs busy while idle | stolen | quiet |", "|---|---:|---:|---:|---|"]
        for c in self.quiet_checks:
            lines.append(f"| {c['when']} | {c['load1']:.2f} | {c['busy'] * 100:.0f} % | {c['steal'] * 100:.0f} % "
                         f"| {'yes' if c['quiet'] else '**no**'} |")
        return "\n".join(lines)

    def quiet_verdict(self):
        noisy = [c["when"] for c in self.quiet_checks if not c["quiet"]]
        steal = median([r.get("machine_steal") for rs in self.runs.values() for r in rs])
        stolen = f"; during the runs the hypervisor took a median {steal * 100:.1f} % of the CPUs" if steal is not None else ""
        if not noisy:
            return f"**Trustworthy**: the machine was quiet before every round{stolen}."
        return (f"**Not trustworthy**: other work used the CPUs {', '.join(noisy)} (waited up to {QUIET_WAIT_S} s "
                f"each time for it to stop){stolen}. Compare ratios measured in the same round, not absolute figures.")

    def workers_table(self):
        lines = [
            "| test | tps, 1 worker | tps, 2 workers | 2/1 | CPU s per 1000 tx, 1 worker | 2 workers | 2/1 |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for test in WORKER_TESTS:
            one, two = (self.cell(test, t, "tps") for t in ("sluice", "sluice2"))
            cpu1, cpu2 = (self.cell(test, t, "cpu_s_per_1000") for t in ("sluice", "sluice2"))
            lines.append(
                f"| {TEST_TITLES[test]} | {self.fmt(one, '{:,.0f}')} | {self.fmt(two, '{:,.0f}')} | {self.ratio(two, one)} "
                f"| {self.fmt(cpu1, '{:.4f}')} | {self.fmt(cpu2, '{:.4f}')} | {self.ratio(cpu2, cpu1)} |"
            )
        return "\n".join(lines)

    def pin_totals(self, target):
        rs = self.runs.get((PIN_TEST, target), [])
        if not rs:
            return None

        def total(key):
            return sum(r.get(key) or 0 for r in rs)

        peaks = [r["peak_pinned"] for r in rs if r.get("peak_pinned") is not None]
        reasons = {}
        for r in rs:
            for k, v in (r.get("pin_reasons") or {}).items():
                reasons[k] = reasons.get(k, 0) + v
        return {
            "runs": len(rs),
            "runs_failed": sum(1 for r in rs if not r["ok"]),
            "processed": total("processed"),
            "aborted": total("aborted_clients"),
            "failed_tx": total("failed"),
            "lock_timeouts": total("lock_timeouts"),
            "false_unlocks": total("false_unlocks"),
            "leaked": [r.get("leaked_locks") for r in rs],
            "holders": [f"{r.get('leak_holders')} ({r.get('leak_idle_holders')} idle)" for r in rs],
            "peak_pinned": max(peaks) if peaks else None,
            "median_pinned": median([r.get("median_pinned") for r in rs]),
            "peak_waiting": max((r.get("peak_waiting") or 0 for r in rs), default=None),
            "peak_active_servers": max((r.get("peak_active_servers") or 0 for r in rs), default=None),
            "samples": total("pin_samples"),
            "sampler_errors": [e for r in rs for e in r.get("sampler_errors") or []],
            "reasons": reasons,
        }

    def pin_table(self):
        lines = [
            "| target | tps | tps / direct | errors: aborted clients, failed tx (runs failed) | lock timeouts "
            "| false unlocks (WARNING) | advisory locks left after the run, per round | backends holding them (idle) "
            "| peak pinned clients |",
            "|---|---:|---:|---|---:|---:|---|---|---:|",
        ]
        direct = self.value(PIN_TEST, "direct", "tps")
        for t in TARGETS:
            if (PIN_TEST, t) in self.not_run:
                lines.append(f"| {NAMES[t]} | {NOT_RUN} | {NOT_RUN} | not run (see the errors) | {' | '.join([NOT_RUN] * 5)} |")
                continue
            tot = self.pin_totals(t)
            if tot is None:
                lines.append(f"| {NAMES[t]} | n/a | n/a | not run | {' | '.join(['n/a'] * 5)} |")
                continue
            tps = self.value(PIN_TEST, t, "tps")
            peak = (self.fmt(tot["peak_pinned"], "{}") + f" of {self.a.pool_size} servers, {self.fmt(tot['samples'], '{}')} samples"
                    if t == "sluice" else "n/a (does not pin)" if t in POOLERS else "n/a (its own backend)")  # fmt: skip
            lines.append(
                f"| {NAMES[t]} | {self.fmt(tps, '{:,.0f}')} | {self.ratio(tps, direct)} "
                f"| {tot['aborted']}, {tot['failed_tx']} ({tot['runs_failed']}/{tot['runs']}) | {tot['lock_timeouts']} "
                f"| {tot['false_unlocks']:,} | {', '.join(self.fmt(x, '{:,}') for x in tot['leaked'])} "
                f"| {', '.join(tot['holders'])} | {peak} |"
            )
        return "\n".join(lines)

    def pin_verdict(self):
        """One sentence per target, from the figures: what the section is there to show."""
        out = []
        direct = self.value(PIN_TEST, "direct", "tps")
        for t in TARGETS:
            tot = self.pin_totals(t)
            if tot is None or (PIN_TEST, t) in self.not_run:
                continue
            errors = tot["aborted"] + tot["failed_tx"] + tot["runs_failed"]
            leaked = sum(x or 0 for x in tot["leaked"])
            tps = self.value(PIN_TEST, t, "tps")
            ratio = self.ratio(tps, direct)
            if t == "sluice":
                clean = not errors and not leaked and not tot["false_unlocks"] and not tot["lock_timeouts"]
                reasons = "; ".join(f"`{k}`" for k in tot["reasons"]) or "none seen"
                out.append(
                    f"- **sluice** {'held' if tot['peak_pinned'] else '**did not show**'} servers for pinned clients: "
                    f"up to {self.fmt(tot['peak_pinned'], '{}')} of the 50 clients pinned at once (median "
                    f"{self.fmt(tot['median_pinned'], '{:.0f}')} per sample; up to {self.fmt(tot['peak_waiting'], '{}')} "
                    f"clients waiting for a server, {self.fmt(tot['peak_active_servers'], '{}')} servers in use; why pinned, "
                    f"from `sluicectl --json clients`: {reasons}), at {ratio} × direct's tps, with "
                    + ("no leaked lock, no false unlock and no error." if clean else
                       f"**{leaked} leaked locks, {tot['false_unlocks']} false unlocks, {tot['lock_timeouts']} lock "
                       f"timeouts, {tot['aborted']} aborted clients, {tot['failed_tx']} failed transactions**.")
                    + (f" (sampler errors: {tot['sampler_errors'][:2]})" if tot["sampler_errors"] else ""))
            elif t == "direct":
                errs = f"{tot['aborted']} aborted clients, {tot['failed_tx']} failed transactions" if errors else "no error"
                out.append(f"- **direct**: every client keeps its own backend: {leaked} leaked locks, "
                           f"{tot['false_unlocks']} false unlocks, {errs}.")
            else:
                left = ", ".join(self.fmt(x, "{:,}") for x in tot["leaked"])
                waits = (f"{tot['lock_timeouts']} lock request{'s' if tot['lock_timeouts'] != 1 else ''} waited "
                         f"{PIN_LOCK_TIMEOUT} on a lock leaked to another of its servers and failed, aborting "
                         f"{tot['aborted']} client{'s' if tot['aborted'] != 1 else ''}" if tot["lock_timeouts"] else
                         "no lock request met a leaked lock long enough to fail")
                out.append(
                    f"- **{NAMES[t]}** ran, at {ratio} × direct's tps, but the unlock came back false "
                    f"{tot['false_unlocks']:,} times in {tot['processed']:,} scripts and left {left} advisory locks "
                    f"({'per round, ' if tot['runs'] > 1 else ''}held by {', '.join(h.replace(' (', ' backends, ').rstrip(')') for h in tot['holders'])}); "
                    f"{waits}" + (": pgbench ended the run early, once every client had aborted (its tps is over the "
                                  "time they lasted)." if any(r["aborted_clients"] >= PIN_CLIENTS for r in self.runs[(PIN_TEST, t)]) else "."))
        return "\n".join(out) if out else "not run"

    def pin_section(self):
        return f"""Each pgbench transaction of this test is a script of three statements, three server transactions in
autocommit: `SELECT pg_advisory_lock(:aid)`, `SELECT abalance FROM pgbench_accounts WHERE aid = :aid`,
`SELECT pg_advisory_unlock(:aid)` (`\\set aid random(1, 100000 * :scale)`), 50 clients, pool size {self.a.pool_size}.
A session advisory lock stays with the backend that took it: through sluice the client is pinned to its
server from the lock until the unlock leaves nothing (README: State that cannot move), so servers are held
while clients are pinned (peak sampled every {PIN_SAMPLE_S * 1000:.0f} ms from `sluicectl --json pools`);
through a transaction pooler that does not pin, the read and the unlock land on whatever server is free,
the unlock returns false with `WARNING: you don't own a lock of type ExclusiveLock` (counted from
pgbench's stderr), and the lock stays with the first server. After each run `SELECT count(*) FROM pg_locks
WHERE locktype = 'advisory'` directly on PostgreSQL counts the locks left (once the count is 0 or has not
moved for 1 s); the backends still holding them are then terminated so that no run inherits another's
locks, and that pooler gets an unmeasured 1 s `pgbench -S -c 20` to reopen its servers (the PgBouncers
log the terminations as `got packet 'E' from server when not linked`, in the notes below). A leaked lock
blocks any other backend asking for the same key, for ever: during these runs PostgreSQL has
`lock_timeout` = {PIN_LOCK_TIMEOUT} (ALTER SYSTEM, reloaded before and reset after), so such a wait fails
(`canceling statement due to lock timeout`, which aborts that pgbench client) instead of hanging the run.
tps counts scripts, as pgbench does; errors and counts are {f"over all {self.a.rounds} rounds" if self.a.rounds != 1 else "of the one round"}.
Direct, each of the 50 clients has its own backend; through sluice a pinned client keeps one of the
{self.a.pool_size} servers across its own round trips (and sluiced asks the server what is left after the
unlock: one more round trip, whose `pg_locks` scan grows with `max_connections`, 1500 here; the lock
pins without asking, README "State that cannot move"), so at most {self.a.pool_size} clients get on at a
time: the price of correctness here, against poolers that hand the server on and lose the lock.

{self.pin_table()}

{self.pin_verdict()}"""

    def rounds_table(self):
        lines = ["| test | target | tps per round | pooler CPU µs/tx per round (of it system) | failed runs |",
                 "|---|---|---|---|---|"]
        for test, title, _, _ in TESTS:
            for t in (t for t in TARGETS + ("sluice2", "bare") if self.has_target(test, t)):
                if (test, t) in self.not_run:
                    lines.append(f"| {SHORT_LABELS[test]} | {NAMES[t]} | not run (see the errors) | — | — |")
                    continue
                rs = self.runs.get((test, t), [])
                tps = ", ".join(("-" if r["tps"] is None else f"{r['tps']:,.0f}") + ("" if r["ok"] else " †") for r in rs)
                cpu = ", ".join(self.round_cpu(r) for r in rs) if t != "direct" else "—"
                bad = sum(1 for r in rs if not r["ok"])
                lines.append(f"| {SHORT_LABELS[test]} | {NAMES[t]} | {tps} | {cpu} | {bad}/{len(rs)} |")
        return "\n".join(lines)

    @staticmethod
    def round_cpu(r):
        """One run's pooler CPU per transaction with its system part, "10.24 (7.10)", or "-"."""
        if r.get("user_us") is None or r.get("sys_us") is None:
            return "-"
        return f"{r['user_us'] + r['sys_us']:.2f} ({r['sys_us']:.2f})"

    def errors_section(self):
        out = []
        for test, title, _, _ in TESTS:
            for t in TARGETS:
                if (test, t) in self.not_run:
                    out.append(f"- **{title}, {NAMES[t]}**: not run (— in the tables): {self.not_run[(test, t)]}")
                    continue
                merged = {}
                for r in self.runs.get((test, t), []):
                    for k, v in r["errors"].items():
                        merged[k] = merged.get(k, 0) + v
                if merged:
                    top = sorted(merged.items(), key=lambda kv: -kv[1])[:4]
                    out.append(f"- **{title}, {NAMES[t]}**{' (— in the tables: no run had a tps)' if self.unrunnable(test, t) else ''}:")
                    out.extend(f"  - {v} × `{k[:220]}`" for k, v in top)
                elif self.unrunnable(test, t):
                    out.append(f"- **{title}, {NAMES[t]}**: — in the tables: no run had a tps, and pgbench reported no error "
                               "(0 transactions in the -T time: the clients were still connecting?)")
        return "\n".join(out) if out else "none"

    def search_path_text(self):
        seen = self.search_path_seen
        return "; ".join(
            f"{NAMES[t]}: {seen.get(('before the rounds', t), '?')} with the options, "
            f"{seen.get(('after the rounds', t), '?')} without" for t in TARGETS)

    @staticmethod
    def teardown_table(report):
        lines = [
            "| outcome | count | p50 ms | p90 ms | p99 ms | max ms | SLA violations | target p99 | met |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        order = ["clean", "rollback", "cancel", "discard"]
        outcomes = sorted(report["outcomes"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9)
        for outcome, v in outcomes:
            target = TEARDOWN_TARGETS_MS.get(outcome)
            if target is None or not v["count"]:
                met = "—" if target is None else "no samples"
            else:
                met = "yes" if v["p99_ms"] <= target else "**no**"
            lines.append(
                f"| {outcome} | {v['count']:,} | {v['p50_ms']} | {v['p90_ms']} | {v['p99_ms']} | {v['max_ms']} "
                f"| {v['sla_violations']} | {'—' if target is None else f'≤ {target}'} | {met} |"
            )
        return "\n".join(lines)

    def main_teardown_section(self):
        st = self.status_main
        if not st or not self.teardown_main:
            return "The main sluiced's teardown figures are missing (see the notes)."
        return (
            f"The main sluiced over all the runs above (the clean release of every pgbench transaction, "
            f"{self.a.rounds} rounds; loop max lag {st['loop']['max_lag_ms']} ms, {st['loop']['slow_callbacks']} "
            f"slow callbacks, {st.get('fds')} open fds, {self.servers_text(st.get('servers'))} at the end):\n\n"
            + self.teardown_table(self.teardown_main)
        )

    @staticmethod
    def servers_text(servers):
        if not isinstance(servers, dict):
            return f"servers {servers}"
        rest = ", ".join(f"{v} {k}" for k, v in servers.items() if k != "total" and v)
        return f"{servers.get('total', '?')} server connections ({rest or 'none'})"

    def chart(self, path):
        gnuplot = shutil.which("gnuplot")
        if not gnuplot:
            self.note("gnuplot not found: no chart")
            return False
        dat = os.path.join(self.a.workdir, "tps.dat")
        with open(dat, "w") as f:
            f.write("test " + " ".join(f'"{NAMES[t]}" low high' for t in TARGETS) + "\n")
            for test, _, _, _ in TESTS:
                cells = []
                for t in TARGETS:
                    v, span = self.value(test, t, "tps"), self.tps_range(test, t)
                    cells += [f"{v:.1f} {span[0]:.1f} {span[1]:.1f}" if isinstance(v, float) and span else "NaN NaN NaN"]
                failed = any((self.failures(test, t) or {}).get("runs_failed") for t in TARGETS)
                f.write(f'"{SHORT_LABELS[test]}{" *" if failed else ""}" ' + " ".join(cells) + "\n")
        script = f"""
set terminal pngcairo size 1100,560 font ",10"
set output '{path}'
set title "pgbench tps, median of {self.a.rounds} rounds of {self.a.duration} s, bars from lowest to highest round ({datetime.date.today()}, {os.cpu_count()} CPUs; * = some runs failed, no bar = not run)"
set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [10:*]
set ylabel "transactions per second (log scale)"
set grid ytics
set key top right
set xtics nomirror
plot '{dat}' using 2:3:4:xtic(1) title columnheader(2) lc rgb "#1f77b4", \\
     '' using 5:6:7 title columnheader(5) lc rgb "#ff7f0e", \\
     '' using 8:9:10 title columnheader(8) lc rgb "#d62728", \\
     '' using 11:12:13 title columnheader(11) lc rgb "#7f7f7f"
"""
        gp = os.path.join(self.a.workdir, "tps.gp")
        with open(gp, "w") as f:
            f.write(script)
        r = subprocess.run([gnuplot, gp], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:  # no cairo: the plain libgd terminal
            with open(gp, "w") as f:
                f.write(script.replace('pngcairo size 1100,560 font ",10"', "png size 1100,560"))
            r = subprocess.run([gnuplot, gp], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            self.note(f"gnuplot failed: {r.stderr.strip()[:300]}")
            return False
        return True

    def daemon_logs(self):
        """Warnings and errors the poolers logged during the whole run, as notes."""
        for name, file in (("sluiced", "sluiced.log"), ("sluiced (teardown phase)", "sluiced-teardown.log"),
                           ("sluiced (2 workers)", "sluiced-workers.log"),
                           ("sluiced (search_path test)", "sluiced-settings.log"), (NAMES["pgbouncer"], "pgbouncer.log"),
                           (NAMES["pgbouncer2"], "pgbouncer2.log")):  # fmt: skip
            try:
                with open(os.path.join(self.a.workdir, file), errors="replace") as f:
                    lines = [ln.rstrip() for ln in f if re.search(r"warning|error|fatal|WARNING|ERROR|FATAL", ln)]
            except OSError:
                continue
            if not lines:
                continue
            kinds = {}
            for ln in lines:
                key = re.sub(r"\d+", "N", re.sub(r"^\S+ (\S+ )?(UTC )?(\[\d+\] )?", "", ln))[:160]
                kinds.setdefault(key, [0, ln])[0] += 1
            top = sorted(kinds.values(), key=lambda kv: -kv[0])[:3]
            self.note(f"{name} logged {len(lines)} warning/error lines; most frequent: "
                      + "; ".join(f"{n} like `{ln[:200]}`" for n, ln in top))

    def report(self):
        self.daemon_logs()
        os.makedirs(self.a.out_dir, exist_ok=True)
        md_path = os.path.join(self.a.out_dir, "latest.md")
        png_path = os.path.join(self.a.out_dir, "latest.png")
        charted = self.chart(png_path)
        m = self.machine()
        v = self.versions()
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        table = self.main_table()
        p = self.teardown_phase
        ab = p["abandon"]
        pgb1, pgb2 = NAMES["pgbouncer"], NAMES["pgbouncer2"]
        md = f"""# Sluice benchmark: sluice vs {pgb1} and {pgb2.removeprefix("PgBouncer ")} vs PostgreSQL direct

Produced by `make bench` (`bench/run.sh`) on {now}; the whole run took {time.monotonic() - self.started + self.a.setup_s:.0f} s.

- Machine: {m['nproc']} CPUs, {m['cpu']}, {m['mem']} RAM, Linux {m['kernel']}; load average at the end {m['load']} (a shared machine: other work may run at the same time; see "Was the machine quiet?")
- Versions: sluiced `{v['sluiced']}` (tree {v['sluice tree']}); `{v['pgbouncer']}` (Debian's package); `{v['pgbouncer2']}` (built by run.sh from the release tarball, bench/README.md); PostgreSQL {v['PostgreSQL']}; `{v['pgbench']}`
- Setup: one throwaway PostgreSQL (`max_connections` = {self.a.max_connections}, fsync off), `pgbench -i -s {self.a.scale}`; sluiced and both PgBouncers in transaction mode, pool size 20, max_client_conn 5000; every connection over a Unix socket (trust), except the TLS tests' ({", ".join(TLS_TESTS)}): TCP on 127.0.0.1 with `sslmode=require` and a SCRAM-SHA-256 login (the same hba rules and verifier for all three: sluiced's `auth.type` "hba", the PgBouncers' `auth_type = hba`), to sluiced's `tls.mode` "require" and the PgBouncers' `client_tls_sslmode = require`, the same throwaway certificate (EC P-256) for all three, OpenSSL's default ciphers (TLS 1.3); PostgreSQL itself is not run over TLS. The two PgBouncers get the same ini, but {pgb2} also has `track_extra_parameters = IntervalStyle, search_path` (for the search_path test; 1.18 has no such setting); each keeps its own defaults otherwise ({pgb2}: `max_prepared_statements` = 200).
- Method: {self.a.rounds} round{'s' if self.a.rounds != 1 else ''}{f" of only the tests {', '.join(t[0] for t in TESTS)} (BENCH_TESTS)" if self.a.tests else ""}; in each round every test runs once per target, alternating sluice / {pgb1} / {pgb2} / {NAMES["bare"]} (bench/bare_pooler.c, in the tests it can run; the poolers that run a test take turns to come first in it, round by round) / direct (last, so that the run after a direct one, which pays for its exiting backends, is the next test's first pooler, which changes from round to round: with more rounds than poolers some come first twice, and in the search_path test sluice is the only pooler), and the pin test has rounds of its own after the others (through a PgBouncer it leaks locks, and the backends that hold them are ended: no other test runs on the new backends that replace them); sluice runs the search_path test through a sluiced of its own (see below); each run is `pgbench -n -T {self.a.duration} -j min(clients, {self.a.jobs})`, except that the 1000-client runs get 1 s more through the poolers and 6 s more direct: pgbench's -T clock includes connecting, its tps does not, and PostgreSQL takes seconds to fork 1000 backends here. After a direct run of 50 clients or more the next run waits until its backends have gone and the CPUs are quiet again (as before each round): a thousand exiting backends keep them busy for seconds. Figures are medians over the rounds; ratios are sluice's median over the other's (for latency, memory and CPU lower is better).
- Memory: {self.a.idle_clients} clients log in (startup packet over the Unix socket, `bench/pgwire.py idle`) and sit idle; the pooler's VmRSS (/proc/PID/status) after minus before, divided by the clients. Measured once on warmed-up poolers before the pgbench rounds.
- CPU: the pooler process's utime + stime (/proc/PID/stat) over each run, per 1000 transactions pgbench processed.
- Quiet machine: before each round, with every target idle, the benchmark samples the CPUs for a second (bench/quiet.py) and waits up to {QUIET_WAIT_S} s for a second in which other work uses under {quiet.QUIET_BUSY * 100:.0f} % of them (and the hypervisor steals under {quiet.QUIET_STEAL * 100:.0f} %); the 1-minute load average is shown, but the benchmark's own runs keep it high for minutes. {self.quiet_verdict()}

## Results

{table}

† at least one of the rounds failed (pgbench exited non-zero, a client aborted, or a transaction failed): see the failures row and the errors below. tps of a run whose clients aborted is pgbench's figure over the time they ran and means little.

Failures: pgbench counts a transaction as failed only for serialization/deadlock errors; any other error aborts that client, so "aborted clients" is the count to read. `-M prepared` through PgBouncer 1.18 in transaction mode is expected to fail: it does not carry a statement prepared on one server connection to the others (`prepared statement "P_0" already exists` / `does not exist`); sluice does (README: Prepared statements and drivers), and so does PgBouncer 1.25.2 (`max_prepared_statements`).

— : the target could not run the test; the errors section below says why.

search_path set at connect: the builtin `pgbench -S` with `PGOPTIONS='{TEST_ENV["SP50"]["PGOPTIONS"]}'` (every client's startup packet carries it in `options`; run.sh creates the empty schema bench_path, so the tables still resolve to public). A target runs it only if a client with those options, asking `SHOW search_path` through it, gets `{SEARCH_PATH}` from the server; otherwise its tps would measure other work than direct's. {pgb1} refuses the `options` startup parameter (supported since 1.20); with `ignore_startup_parameters` it would drop it silently, so it is not used. {pgb2} takes it (`track_extra_parameters`) but, by its doc/config.md, tracks only parameters that PostgreSQL reports to the client (ParameterStatus); PostgreSQL 15 does not report search_path, so PgBouncer never learns a server's value and never SETs the client's (its NEWS: tracking search_path is for Citus or PostgreSQL 18). sluiced opens the servers of clients with startup settings with those settings (README: A client's startup settings), one pool per set of settings within the same pool_size: sluice runs this test (and its search_path checks) through a second sluiced with the same settings, warmed up with these clients, so that the servers of the main one, like the PgBouncers', stay the same all through the benchmark. Through one sluiced, each switch between this test's clients and plain ones replaces the 20 servers with new backends, and PostgreSQL spends about half as much again per transaction on a new backend over its first thousands of transactions: when this test ran through the main sluiced, the 1000-client test after it, on the servers an unmeasured 1 s warm-up had just opened, ran at 0.90 × PgBouncer 1.25.2 with PostgreSQL spending 129 µs per transaction behind sluice against 87 behind PgBouncer, and at 1.16 × (85 and 85 µs) when it ran alone (bench/HISTORY.md, "The bench ran some tests on new backends"). What each target's server said: {self.search_path_text()}.

### The performance targets

The performance issue's targets against {pgb2}, for this run: tps at or above 1.00 ×
(1.10 × for select-only at 50 clients), read both ways this report gives it (the median of the
same-round ratios, below, and the ratio of the medians, above), and pooler CPU per transaction at
most 0.8 × (the CPU table below). The floor is sluice's system time over {pgb2}'s
CPU ("How low sluice's CPU could go", below): where it is at or above 0.8 no user-space work can
meet the CPU target; below it, where the target is missed, the verdict gives what it leaves
sluice's user space per transaction, as a fraction of {pgb2}'s user time and beside
sluice's own. Where a tps target is missed both ways and a
relay that made sluice's system calls and did no other work could not reach it either ("Same-round
ratios, and the ceiling", below), the verdict says so. On a VM whose speed drifts by tens of
percent, a test that passes or fails by a few percent in one run can do the other in the next: the
lowest and highest same-round ratio show how far this run's rounds were apart (bench/HISTORY.md,
"The last reports ran on a faster host").

{self.targets_table()}

### Same-round ratios, and the ceiling

The VM's speed drifts by tens of percent within minutes (see "tps per round"); runs of one round
are close in time, so their ratio is steadier than a ratio of medians. The ceiling: with the CPUs
saturated, tps is the machine's CPU over the CPU a transaction costs it all told (machine CPU µs/tx
below); a pooler that cost nothing would save PgBouncer 1.25.2's own part of that, so it could reach
at most machine / (machine − PgBouncer 1.25.2's CPU) times PgBouncer 1.25.2's tps. With one client
the CPUs mostly wait for each other's replies instead: there the pooler that costs nothing is no
pooler at all, direct (the same single backend), in the same round. A relay cannot do without its
system calls (a receive and a send each way per message; sluiced makes no more, and at 50 clients
sends several replies in one io_uring_enter: README, "Replies leave together"): the last column keeps
sluice's system time and drops only its user-space work, machine / (machine − PgBouncer 1.25.2's
CPU + sluice's system time). A test whose ceiling is under a target cannot be met by the pooler's
own speed alone: both ceilings assume PostgreSQL and pgbench cost the same per transaction behind
every pooler, and how a pooler's wake-ups fall can move their cost by more than its own (compare the
machine CPU per transaction below).

{self.paired_table()}

### A pooler that only relays

bench/bare_pooler.c is a transaction pooler with nothing but the relay: it opens its {self.a.pool_size} servers with
libpq, greets its clients without authentication, and then only moves bytes in one epoll loop (a
receive and a send each way, a server handed to the next waiting client, or back to the pool most
recently used first, when a read ends right after ReadyForQuery 'I'); no session state, prepared
statements, timers or statistics. It runs in the rotation of every round, in the tests a relay can
run. Its tps over {pgb2}'s in the same rounds is what a minimal single-loop pooler reaches on this
machine, measured rather than reckoned as the ceilings above are (it includes how its wake-ups fall
against PostgreSQL's and pgbench's), and its CPU per transaction what a minimal one spends. It is
evidence, not a bound: a pooler can batch or time its work better than a naive relay. The
targets' verdicts cite it where it did no better than the target and no worse than sluice.

{self.bare_table()}

### Pooler CPU seconds per 1000 transactions, every test

{self.cpu_table()}

### How low sluice's CPU could go with its system calls

The kernel's part of a relay's work is its system calls. sluiced makes no more of them per
transaction than PgBouncer (bench/HISTORY.md, "What a system call costs here, and the one sluiced
keeps", from `strace -c`; with `-C`, one more than the bare relay: the `epoll_ctl` DEL before each
client's close), so its system time per transaction is, as near as /proc's tick-sampled split of
user and system time tells, a floor under its CPU that user-space work cannot
lower. A loose one: the kernel books a part of each call's own cost as user time (about half of
a `getppid`'s on the AMD EPYC host, bench/syscall_cost.c). 0.8 × PgBouncer 1.25.2's CPU minus that
floor is what the CPU target (pooler CPU ≤ 0.8 × PgBouncer 1.25.2's) leaves for sluiced's user
space. Where that is a fraction of what PgBouncer's own
user space costs for the same relay, the target asks for a user space several times leaner than
PgBouncer's, or for fewer system calls than PgBouncer makes, not for the same work done better.

{self.cpu_floor_table()}

### Where the poolers' time goes, per transaction

Medians over the rounds, from /proc (bench/procstat.py): user and system CPU, how often the pooler went to sleep (voluntary context switches: its loop found nothing to do) or lost the CPU to another process (involuntary), and how long it was ready to run but waited for a CPU (schedstat). For sluice, from its control socket: loop turns (kernel polls) per transaction, and how many acquisitions had to queue for a server, with their mean time in the queue. Machine CPU: all CPUs' busy time over the run (/proc/stat: PostgreSQL, pgbench, the pooler and anything else) per transaction; the pooler's share of it bounds what any pooler could gain here: with the CPUs saturated, a pooler that cost nothing would reach at most tps / (1 − share). PostgreSQL and pgbench: the CPU of every postgres process (the postmaster's exited backends included) and of pgbench (the rusage of the bench's children: in the pin test through sluice, the `sluicectl` calls that sample its pinned clients too) over the same run, per transaction: what the same transactions cost the other processes behind each pooler (the run's time includes pgbench's connecting and disconnecting, which the transactions pay for here and its tps leaves out). The floor under any pooler's part: a relay that does nothing else (bench/relay_floor.c: two processes pass 60 bytes back and forth over a Unix socket pair, each round trip two sends, two receives and two wake-ups, as a pooler's transaction has) costs {self.fmt(self.relay_floor_us, "{:.1f}")} µs of CPU per round trip here.

{self.time_table()}

### Was the machine quiet?

{self.quiet_table()}

### Worker loops: sluiced with `workers` = 2 against 1

A second sluiced, the same settings but `"workers": 2` (two event loops on two threads, each with half of the pool), runs in the same rounds right after the other targets. On this {m['nproc']}-CPU machine PostgreSQL and pgbench share the cores with the pooler.

{self.workers_table()}

### Pinning: a session advisory lock held over three transactions

{self.pin_section()}

### tps per round

In the order of the rounds; † marks a run that failed (see the errors below). The pooler's CPU per
transaction in each run (user and system time, /proc), with its system time in brackets, lets
`bench/pooled_rounds.py` pool CPU ratios over several reports as it pools tps.

{self.rounds_table()}

### Errors reported by pgbench, and tests not run

{self.errors_section()}

## Teardown latency (sluiced)

Teardown phase: a dedicated sluiced (same settings) under `pgbench -n -S -c 50` for {self.a.teardown_load_s} s ({self.fmt(p['load_tps'], "{:,.0f}")} tps), while `bench/pgwire.py abandon` ran {ab['requested']['rollback_T'] + ab['requested']['rollback_E']} clients that vanished inside a transaction (half at ReadyForQuery `T` after an INSERT, half at `E` after an error: rollback outcome) and {ab['requested']['cancel'] + ab['requested']['cancel_in_tx']} that vanished {self.a.cancel_after}s into `SELECT pg_sleep(10)` (half of them inside a transaction with an INSERT: cancel outcome), 4 at a time ({ab['ok']} ran as planned, in {ab['seconds']} s). From `sluicectl --json teardown` (the daemon records whole microseconds: 0.0 ms means under 1 µs). For scale: a new direct PostgreSQL connection took {self.fmt(self.cell("C20", "direct", "conn_ms"), "{:.2f}")} ms on average in the `-C` test here; the cancel outcome's CancelRequest costs PostgreSQL such a connection (a fork of the postmaster) too.

{self.teardown_table(p['report'])}

Afterwards, checked directly on PostgreSQL: {p['abandoned_writes']} abandoned INSERTs committed, {p['sleeping_backends']} backends still in `pg_sleep`, {p['idle_in_tx_backends']} idle in transaction (all should be 0). sluiced status: {self.servers_text(p['status']['servers'])}, loop max lag {p['status']['loop']['max_lag_ms']} ms, {p['status']['loop']['slow_callbacks']} slow callbacks.

{self.main_teardown_section()}

## Notes

{chr(10).join('- ' + n for n in self.notes) if self.notes else 'none'}

{'Chart: `bench/results/latest.png` (not committed).' if charted else 'No chart (see notes).'}
"""
        with open(md_path, "w") as f:
            f.write(md)
        # run.sh prints this last, after the daemons' log summaries.
        with open(os.path.join(self.a.workdir, "summary.txt"), "w") as f:
            f.write(f"\n{self.quiet_verdict()}\n\n{table}\n\nPinning ({TEST_TITLES[PIN_TEST]}):\n\n{self.pin_table()}\n\n{self.pin_verdict()}\n")
            f.write(f"\nTeardown phase (sluiced):\n\n{self.teardown_table(p['report'])}\n")
            if self.notes:
                f.write("\nNotes:\n" + "".join(f"- {n}\n" for n in self.notes))
        say(f"wrote {os.path.relpath(md_path, self.a.root)}" + (f" and {os.path.relpath(png_path, self.a.root)}" if charted else ""))


def main():
    signal.signal(signal.SIGTERM, on_sigterm)
    p = argparse.ArgumentParser()
    for name in ("sluice", "sluice2", "pgbouncer", "pgbouncer2", "direct", "bare", "teardown-sluice", "control", "sluice2-control", "relay-floor",
                 "sluice-settings", "sluice-settings-control",
                 "teardown-control", "sluicectl", "sluiced", "root", "bench-dir", "out-dir", "workdir", "user",
                 "pgbouncer-bin", "pgbouncer2-bin", "sluice-tls", "pgbouncer-tls", "pgbouncer2-tls"):  # fmt: skip
        p.add_argument("--" + name, required=True)
    for name in ("sluice-pid", "sluice2-pid", "sluice-settings-pid", "pgbouncer-pid", "pgbouncer2-pid", "bare-pid", "pool-size", "duration", "rounds", "jobs",
                 "idle-clients", "scale", "max-connections", "teardown-load-s", "abandon-rollback",
                 "abandon-cancel"):  # fmt: skip
        p.add_argument("--" + name, type=int, required=True)
    p.add_argument("--setup-s", type=float, default=0.0)
    p.add_argument("--db", default="bench")
    p.add_argument("--cancel-after", type=float, default=0.2)
    p.add_argument("--tests", default="", help="comma-separated test ids (BENCH_TESTS): run only those")
    args = p.parse_args()
    if args.tests:
        wanted = [t.strip() for t in args.tests.split(",") if t.strip()]
        unknown = [t for t in wanted if t not in TEST_TITLES]
        if unknown:
            p.error(f"unknown test ids {unknown}; known: {', '.join(TEST_TITLES)}")
        TESTS[:] = [t for t in TESTS if t[0] in wanted]
    set_pgbouncer_names(args)
    b = Bench(args)
    try:
        b.check_quiet("before the benchmark")
        b.measure_relay_floor()
        say("warm-up")
        b.warm_up()
        b.search_path_check("before the rounds", TEST_ENV["SP50"])
        b.memory_test()
        # Through a PgBouncer the pin test leaks locks, and the backends holding them are ended after
        # each run: its rounds come after the others', so that no other test runs on the new backends
        # that replace them (Bench.instance says what a new backend costs).
        b.rounds([t for t in TESTS if t[0] != PIN_TEST])
        b.rounds([t for t in TESTS if t[0] == PIN_TEST], "pin round")
        b.search_path_check("after the rounds", None)
        b.teardown()
        b.report()
    except (KeyboardInterrupt, Terminated):
        say("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
