#!/usr/bin/env python3
"""Instructions a pooler executes per pgbench transaction, counted by callgrind: what no noisy
machine changes (bench/README.md, "Instructions"), with the L1 data cache misses of callgrind's
model of this machine's caches. Each pooler runs under `valgrind --tool=callgrind --cache-sim=yes`
twice per test, fresh each time, for N and for 4N transactions; the difference of the two totals
over 3N leaves out its start, the clients' logins (except with -C, where a login is part of every
transaction) and its shutdown. Prints a markdown table, sluice beside PgBouncer.

Run by bench/run.sh when BENCH_INSTRUCTIONS=1, against poolers it configured but did not start."""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

from under_valgrind import await_socket, start, stop, tail

# (label, clients, pgbench options, N): N large enough that a run's start and end are noise.
TESTS = [
    ("select-only, 1 client", 1, "-S", 2000),
    ("select-only, 50 clients", 50, "-S", 4000),
    ("select-only, 1000 clients", 1000, "-S", 10000),
    ("select-only, new connection per tx (-C), 2 clients", 2, "-S -C", 1000),
    ("select-only, extended protocol (-M extended), 50 clients", 50, "-S -M extended", 4000),
    ("select-only, prepared statements (-M prepared), 50 clients", 50, "-S -M prepared", 4000),
    ("TPC-B-like (default script), 50 clients", 50, "", 2000),
]
START_TIMEOUT_S = 60


def on_sigterm(signum, frame):
    sys.exit(128 + signum)  # unwinds through stop(): no pooler outlives this script


class Pooler:
    def __init__(self, name, spec, run_as):
        # spec: SOCKET_DIR:PORT:COMMAND...
        host, port, command = spec.split(":", 2)
        self.name, self.host, self.port, self.command, self.run_as = name, host, int(port), command.split(), run_as

    def socket(self):
        return os.path.join(self.host, f".s.PGSQL.{self.port}")

    def count(self, clients, options, transactions, out_dir):
        """Totals of one fresh run serving `transactions` (a multiple of clients): instructions, and
        L1 data misses (reads and writes)."""
        out = os.path.join(out_dir, f"callgrind.{self.name}.{os.getpid()}.{time.monotonic_ns()}")
        if os.path.exists(self.socket()):
            os.unlink(self.socket())  # a stale one would pass for a started pooler
        pooler = start(["--tool=callgrind", "--cache-sim=yes", f"--callgrind-out-file={out}"], self.command,
                       self.run_as, out + ".log")
        try:
            if not await_socket(pooler, self.socket(), START_TIMEOUT_S, 0.1):
                sys.exit(f"instructions: {self.name} did not start under valgrind; its log:\n{tail(out + '.log')}")
            run = subprocess.run(["pgbench", "-n", *options.split(), "-c", str(clients), "-j", str(min(clients, 2)),
                                  "-t", str(transactions // clients), "-h", self.host, "-p", str(self.port),
                                  args.db], capture_output=True, text=True)
            if run.returncode != 0:
                sys.exit(f"instructions: pgbench through {self.name} failed: {run.stderr.strip()[-500:]}")
        finally:
            stop(pooler)
        with open(out) as profile:
            text = profile.read()
        os.unlink(out)
        os.unlink(out + ".log")
        events = re.search(r"^events: (.+)$", text, re.M)
        totals = re.search(r"^(?:totals|summary): (.+)$", text, re.M)
        if not events or not totals:
            sys.exit(f"instructions: no totals in {self.name}'s callgrind profile")
        counted = dict(zip(events.group(1).split(), (int(value) for value in totals.group(1).split())))
        if not {"Ir", "D1mr", "D1mw"} <= counted.keys():
            sys.exit(f"instructions: {self.name}'s callgrind profile lacks Ir, D1mr or D1mw")
        return counted["Ir"], counted["D1mr"] + counted["D1mw"]

    def per_transaction(self, clients, options, n, out_dir):
        """(instructions, L1 data misses) per transaction."""
        small = self.count(clients, options, n, out_dir)
        large = self.count(clients, options, 4 * n, out_dir)
        return tuple((b - a) / (3 * n) for a, b in zip(small, large))


def main():
    poolers = [Pooler("sluice", args.sluice, None), Pooler(args.pgbouncer_name, args.pgbouncer, args.pgbouncer_user)]
    names = " | ".join(p.name for p in poolers)
    print(f"| test | instructions: {names} | sluice/{poolers[1].name} "
          f"| L1 data misses: {names} | sluice/{poolers[1].name} |")
    print("|---|" + "---:|" * 2 * (len(poolers) + 1))
    for label, clients, options, n in TESTS:
        counts = [p.per_transaction(clients, options, n, args.out_dir) for p in poolers]
        cells = []
        for kind, form in ((0, ",.0f"), (1, ",.1f")):
            ratio = f"{counts[0][kind] / counts[1][kind]:.2f}" if counts[1][kind] >= 1 else "n/a"
            cells += [f"{max(c[kind], 0):{form}}" for c in counts] + [ratio]  # -0.0: nothing counted
        print(f"| {label} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sluice", required=True, help="SOCKET_DIR:PORT:COMMAND (sluiced -c CONFIG)")
    parser.add_argument("--pgbouncer", required=True, help="SOCKET_DIR:PORT:COMMAND (pgbouncer INI)")
    parser.add_argument("--pgbouncer-name", default="PgBouncer")
    parser.add_argument("--pgbouncer-user", default=None, help="run PgBouncer as this user (it refuses root)")
    parser.add_argument("--db", default="bench")
    parser.add_argument("--out-dir", required=True, help="where the profiles go (writable by both)")
    args = parser.parse_args()
    main()
