#!/usr/bin/env python3
"""What scraping /metrics costs the pooler (issue 17 §5): `pgbench -n -S -c CLIENTS` through sluiced,
in alternating rounds without and with a scraper that GETs /metrics every 100 ms, as Prometheus
would at a very short scrape interval. The target is under 1 % of throughput (median over rounds).

Usage (run.sh calls it after bench.py, on the main sluiced, whose config sets metrics.listen):
  scrape_overhead.py --sluice DIR:PORT --metrics SOCKET --db bench --user USER \
      --clients 50 --duration 3 --rounds 5 [--append-to bench/results/latest.md]
"""
import argparse
import re
import socket
import statistics
import subprocess
import sys
import threading
import time

import pgbench_output

SCRAPE_INTERVAL_S = 0.1
TARGET_OVERHEAD = 0.01


def scrape(path):
    """One GET /metrics over the Unix socket; the body's length (0 when the answer is not a 200)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: sluiced\r\n\r\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    answer = b"".join(chunks)
    return len(answer) if answer.startswith(b"HTTP/1.1 200") else 0


class Scraper(threading.Thread):
    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.scrapes = 0
        self.failures = 0
        self.bytes = 0

    def run(self):
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                size = scrape(self.path)
                self.scrapes += 1
                self.bytes += size
                self.failures += size == 0
            except OSError:
                self.failures += 1
            next_at += SCRAPE_INTERVAL_S
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def pgbench_tps(args):
    host, port = args.sluice.rsplit(":", 1)
    cmd = ["pgbench", "-n", "-S", "-c", str(args.clients), "-j", str(args.jobs), "-T", str(args.duration),
           "-h", host, "-p", port, "-U", args.user, args.db]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60)
    found = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout)
    if out.returncode != 0 or not found:
        raise RuntimeError(f"pgbench failed: {out.stderr.strip()[-300:]}")
    return float(found.group(1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sluice", required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--clients", type=int, default=50)
    pgbench_output.add_round_arguments(p)
    args = p.parse_args()

    without, with_scraper, scrapes, failures, sizes = [], [], 0, 0, []
    for round_no in range(args.rounds):
        # Alternating, and the order flipped each round, so drift on a shared machine hits both.
        order = ("without", "with") if round_no % 2 == 0 else ("with", "without")
        for kind in order:
            if kind == "without":
                without.append(pgbench_tps(args))
                continue
            scraper = Scraper(args.metrics)
            scraper.start()
            with_scraper.append(pgbench_tps(args))
            scraper.stop.set()
            scraper.join()
            scrapes += scraper.scrapes
            failures += scraper.failures
            if scraper.scrapes:
                sizes.append(scraper.bytes / scraper.scrapes)
        print(f"scrape overhead: round {round_no + 1}: {without[-1]:.0f} tps without, {with_scraper[-1]:.0f} with",
              file=sys.stderr)

    base, scraped = statistics.median(without), statistics.median(with_scraper)
    overhead = (base - scraped) / base
    verdict = "met" if overhead < TARGET_OVERHEAD else "NOT met"
    size = statistics.mean(sizes) if sizes else 0
    line = (f"Scraping /metrics every {int(SCRAPE_INTERVAL_S * 1000)} ms under `pgbench -n -S -c {args.clients}`, "
            f"{args.rounds} alternating rounds of {args.duration} s: median {base:,.0f} tps without, "
            f"{scraped:,.0f} with ({overhead * 100:+.2f} % cost; target under 1 %: {verdict}); "
            f"{scrapes} scrapes of {size / 1024:.1f} KiB, {failures} failed.")
    print(line)
    if args.append_to:
        with open(args.append_to, "a") as f:
            f.write(f"\n## Cost of a /metrics scraper\n\n{line}\n\n| round | without tps | with tps |\n|---:|---:|---:|\n")
            for i, (a, b) in enumerate(zip(without, with_scraper), 1):
                f.write(f"| {i} | {a:,.0f} | {b:,.0f} |\n")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
