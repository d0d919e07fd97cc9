#!/usr/bin/env python3
"""Fairness between users at max_db_connections (README "Fairness between users").

One user with many busy clients and one with a few share a database capped at a few server
connections. Both run pgbench for the same time; the light user's per-transaction latency (which
includes its wait for a server) is read from pgbench's transaction log. Without fairness the light
user's clients queue behind the heavy user's for as long as those keep waiting.

Prints a markdown table (and writes it to --out when given). Used by bench/run.sh; runs alone too:
  bench/fairness.py --host DIR --port PORT --db bench --heavy-user USER --light-user bench_light
"""
import argparse
import glob
import os
import subprocess
import sys
import tempfile


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latencies_ms(prefix):
    """Every transaction's time in ms from pgbench's --log files (the 3rd field is microseconds)."""
    values = []
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3:
                    values.append(int(fields[2]) / 1000.0)
    return values


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True)
    p.add_argument("--db", default="bench")
    p.add_argument("--heavy-user", required=True)
    p.add_argument("--light-user", required=True)
    p.add_argument("--heavy-clients", type=int, default=200)
    p.add_argument("--light-clients", type=int, default=5)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--label", default="sluice")
    p.add_argument("--out")
    a = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="sluice-fairness.") as work:
        common = ["pgbench", "-n", "-S", "-T", str(a.duration), "-h", a.host, "-p", str(a.port)]
        runs = {}
        for who, user, clients in (("heavy", a.heavy_user, a.heavy_clients), ("light", a.light_user, a.light_clients)):
            prefix = os.path.join(work, who)
            cmd = common + ["-c", str(clients), "-j", "2" if clients > 1 else "1", "-U", user,
                            "--log", "--log-prefix=" + prefix, a.db]
            runs[who] = (prefix, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        rows = []
        for who, (prefix, proc) in runs.items():
            out, _ = proc.communicate(timeout=a.duration + 120)
            if proc.returncode != 0:
                sys.stderr.write(f"fairness: pgbench ({who}) failed:\n{out}\n")
                return 1
            values = latencies_ms(prefix)
            rows.append((who, len(values), percentile(values, 0.5), percentile(values, 0.99), max(values, default=float("nan"))))

    table = [f"Fairness ({a.label}): {a.heavy_clients} clients of one user and {a.light_clients} of another, "
             f"`pgbench -S` for {a.duration} s each, one database at max_db_connections; latency per "
             "transaction, its wait for a server included (ms):", "",
             "| user | transactions | p50 | p99 | max |", "|---|---|---|---|---|"]
    for who, count, p50, p99, worst in rows:
        table.append(f"| {who} | {count} | {p50:.2f} | {p99:.2f} | {worst:.2f} |")
    text = "\n".join(table) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
