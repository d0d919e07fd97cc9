#!/usr/bin/env python3
"""A live upgrade under load (README "Live upgrade"): `pgbench -S -c 50` through sluiced, and
`sluicectl upgrade` a third of the way in: pgbench's connections move to the new process, each at
a transaction boundary. Reports the transactions that failed (must be 0), the longest transaction
while the sockets and clients moved, the longest before, the upgrade's own time, how many clients
the new process adopted, and how long the old process took to hand over and exit. With
--connect-per-transaction, `pgbench -C` instead (the connect is in each transaction, and clients
rarely have anything to move).

Prints a markdown table (and appends it to --append-to when given); exits 1 if pgbench failed or
any transaction did. Used by bench/run.sh; runs alone too:
  bench/upgrade.py --host DIR --port PORT --db bench --control SOCKET --sluicectl build/bin/sluicectl
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time


def status(sluicectl, control):
    out = subprocess.run([sluicectl, "-s", control, "--json", "status"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def transactions(prefix):
    """(end time in s since the epoch, latency in ms) per transaction, from pgbench's --log files."""
    rows = []
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6:
                    rows.append((int(fields[4]) + int(fields[5]) / 1e6, int(fields[2]) / 1000.0))
    return rows


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True)
    p.add_argument("--db", default="bench")
    p.add_argument("--control", required=True)
    p.add_argument("--sluicectl", required=True)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--duration", type=int, default=6)
    p.add_argument("--connect-per-transaction", action="store_true")
    p.add_argument("--append-to")
    args = p.parse_args()

    old_pid = status(args.sluicectl, args.control)["pid"]
    with tempfile.TemporaryDirectory() as logs:
        prefix = os.path.join(logs, "tx")
        bench = subprocess.Popen(
            ["pgbench", "-n", "-S"] + (["-C"] if args.connect_per_transaction else []) +
            ["-c", str(args.clients), "-j", "2", "-T", str(args.duration),
             "-h", args.host, "-p", str(args.port), "--log", "--log-prefix", prefix, args.db],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(args.duration / 3)
        move_start = time.time()
        upgrade = subprocess.run([args.sluicectl, "-s", args.control, "upgrade"], capture_output=True, text=True)
        move_end = time.time()
        old_exit_s = float("nan")
        while time.time() - move_start < 120:
            if not alive(old_pid):
                old_exit_s = time.time() - move_start
                break
            time.sleep(0.01)
        out, err = bench.communicate()
        moved = status(args.sluicectl, args.control)["clients"].get("moved_in", 0)  # adopted by the new process
        rows = transactions(prefix)

    if upgrade.returncode != 0:
        print(f"upgrade: sluicectl upgrade failed: {upgrade.stderr.strip()}", file=sys.stderr)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    failed = int(failed.group(1)) if failed else -1
    before = [ms for end, ms in rows if end < move_start]
    # A transaction whose time overlaps the move: it ended after the upgrade started and began before it ended.
    during = [ms for end, ms in rows if end >= move_start and end - ms / 1000.0 <= move_end]
    new_pid = status(args.sluicectl, args.control)["pid"]
    table = "\n".join([
        f"### Live upgrade under `pgbench -S{' -C' if args.connect_per_transaction else ''} -c {args.clients}` "
        f"({args.duration} s)",
        "",
        "| transactions | failed | longest before the move | longest during the move | upgrade took "
        "| clients moved | old process exited after |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(rows)} | {failed} | {max(before, default=float('nan')):.1f} ms | {max(during, default=float('nan')):.1f} ms "
        f"| {(move_end - move_start) * 1000:.0f} ms | {moved} | {old_exit_s:.2f} s |",
        "",
        f"pid {old_pid} handed over to pid {new_pid}; {len(during)} transactions overlapped the move.",
    ])
    print(table)
    if args.append_to:
        with open(args.append_to, "a") as f:
            f.write("\n" + table + "\n")
    ok = bench.returncode == 0 and failed == 0 and upgrade.returncode == 0 and new_pid != old_pid
    if not ok:
        print(f"upgrade: pgbench exit {bench.returncode}; stderr:\n{err[-2000:]}", file=sys.stderr)
    print(new_pid, file=open(os.environ.get("UPGRADE_NEW_PID_FILE", os.devnull), "w"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
