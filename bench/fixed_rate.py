#!/usr/bin/env python3
"""Pooler CPU at the same offered load: sluiced, PgBouncer 1.25.2 and the bare relay each serve
pgbench at one fixed rate (`-R`), in alternating rounds, so that every pooler does the same work in
the same time. At full throughput each pooler runs at its own pace, and how many transactions one
wake-up serves (and so what a transaction costs it) depends on that pace and on the scheduler; at a
fixed rate below all of them the poolers are compared doing the same thing. The bare relay
(bench/bare_pooler.c) does nothing but relay: what it spends at the rate is mostly the kernel's part
(its wake-ups, receives and sends). It is evidence, not a bound (a pooler can time or batch its
work better than a naive relay): where it spends 0.8 × PgBouncer 1.25.2's CPU or more, the
performance issue's CPU target (0.8 ×) asks at that load for less than a pooler that does nothing
else spends.

The rate of each test is half what PgBouncer 1.25.2 reached in a calibration run just before its
rounds (rounded to two significant figures), so that each pooler keeps up with it on a slower
machine too; the table shows the tps each reached. pgbench schedules a rate's transactions at random
(a Poisson process): a run kept up when its tps is at least 98 % of the rate less three standard
deviations of that schedule; a pooler's CPU ratio leaves out the rounds in which it or the anchor
did not. CPU is the pooler's on-CPU time from
/proc/PID/task/*/schedstat (the scheduler's own count, in ns; utime + stime are the same total, in
10 ms ticks).

Usage (run.sh calls it after bench.py, against the poolers it started):
  fixed_rate.py --target 'sluice=DIR:PORT:PID' --target 'PgBouncer 1.25.2=DIR:PORT:PID' \
      --target 'bare relay=DIR:PORT:PID' --anchor 'PgBouncer 1.25.2' --relay 'bare relay' \
      --db bench --user USER --jobs 2 --duration 3 --rounds 5 [--append-to bench/results/latest.md]
"""
import argparse
import math
import signal
import statistics
import subprocess
import sys

import pgbench_output
import procstat
import quiet

CPU_TARGET = 0.8
RATE_SHARE = 0.5  # of the anchor's throughput in the calibration run
REACHED = 0.98  # of the rate, less three standard deviations of pgbench's random schedule
QUIET_WAIT_S = 30

# (label, clients, pgbench options, whether the bare relay can run it)
TESTS = [
    ("select-only, 50 clients", 50, ["-S"], True),
    ("select-only, new connection per tx (-C), 20 clients", 20, ["-S", "-C"], True),
    ("select-only, extended protocol (-M extended), 50 clients", 50, ["-S", "-M", "extended"], True),
    ("TPC-B-like (default script), 50 clients", 50, [], True),
    # The relay hands a client any server: a statement prepared on one is missing on the next.
    ("select-only, prepared statements (-M prepared), 50 clients", 50, ["-S", "-M", "prepared"], False),
]


def parse_target(text):
    name, rest = text.split("=", 1)
    host, port, pid = rest.rsplit(":", 2)
    return {"name": name, "host": host, "port": int(port), "pid": int(pid)}


def two_figures(x):
    digits = len(str(int(x))) - 2
    return int(round(x, -digits)) if digits > 0 else round(x)


class FixedRate:
    def __init__(self, a):
        self.a = a
        self.targets = [parse_target(t) for t in a.target]
        self.anchor = next(t for t in self.targets if t["name"] == a.anchor)
        self.log = open(a.log, "a") if a.log else None
        self.notes = []

    def pgbench(self, target, clients, options, rate=None):
        """(tps, on-CPU µs per transaction) of one run, or None when it failed."""
        cmd = ["pgbench", "-n", "-h", target["host"], "-p", str(target["port"]), "-U", self.a.user,
               "-T", str(self.a.duration), "-c", str(clients), "-j", str(min(clients, self.a.jobs)),
               *options, *(["-R", str(rate)] if rate else []), self.a.db]  # fmt: skip
        before = procstat.sample(target["pid"])
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=self.a.duration + 90)
            rc, out = run.returncode, run.stdout + run.stderr
        except subprocess.TimeoutExpired:
            rc, out = -1, "(timed out)\n"
        after = procstat.sample(target["pid"])
        if self.log:
            self.log.write(f"### fixed rate [{target['name']}] $ {' '.join(cmd)}\nrc={rc}\n{out}")
            self.log.flush()
        processed = pgbench_output.RE["processed"].search(out)
        tps = pgbench_output.RE["tps"].search(out)
        if rc != 0 or not processed or not tps or not before or not after or int(processed.group(1)) == 0:
            return None
        return float(tps.group(1)), (after["run_ns"] - before["run_ns"]) / 1e3 / int(processed.group(1))

    def kept_up(self, run, rate):
        return run[0] >= REACHED * rate - 3 * math.sqrt(rate / self.a.duration)

    def run_test(self, label, clients, options, relay_runs):
        calibration = self.pgbench(self.anchor, clients, options)
        if calibration is None or calibration[0] < 20:
            return {"label": label, "error": f"the calibration run through {self.a.anchor} failed"}
        rate = two_figures(calibration[0] * RATE_SHARE)
        targets = [t for t in self.targets if relay_runs or t["name"] != self.a.relay]
        runs = {t["name"]: [] for t in targets}
        for rnd in range(self.a.rounds):
            check = quiet.wait_for_quiet(QUIET_WAIT_S)
            if not check["quiet"]:
                self.notes.append(f"{label}, round {rnd + 1}: not quiet after {QUIET_WAIT_S} s ({quiet.describe(check)})")
            shift = rnd % len(targets)
            for target in targets[shift:] + targets[:shift]:
                runs[target["name"]].append(self.pgbench(target, clients, options, rate))
        return {"label": label, "rate": rate, "runs": runs}

    def same_round_ratio(self, result, name):
        """The median of NAME's CPU over the anchor's, over the rounds in which both kept up."""
        pairs = zip(result["runs"][name], result["runs"][self.a.anchor])
        ratios = [mine[1] / anchor[1] for mine, anchor in pairs
                  if mine and anchor and self.kept_up(mine, result["rate"]) and self.kept_up(anchor, result["rate"])]  # fmt: skip
        return statistics.median(ratios) if ratios else None

    def table(self, results):
        names = [t["name"] for t in self.targets]
        out = [
            "",
            "### Pooler CPU at the same offered load",
            "",
            __doc__.split("\n\n")[0].replace("\n", " ").strip(),
            "",
            __doc__.split("\n\n")[1].replace("\n", " ").strip(),
            f"{self.a.rounds} rounds of {self.a.duration} s, the poolers taking turns to come first; medians, "
            f"and CPU ratios as the median of the same-round ratios; * marks a pooler with a run that did "
            f"not keep up.",
            "",
            "| test | rate, tx/s | tps: " + " | ".join(names) + " | CPU µs/tx: " + " | ".join(names) +
            f" | sluice/{self.a.anchor} CPU | {self.a.relay}/{self.a.anchor} CPU | CPU ≤ {CPU_TARGET} × at this load |",
            "|---|---:|" + "---:|" * (2 * len(names) + 2) + "---|",
        ]
        for r in results:
            if "error" in r:
                out.append(f"| {r['label']} | — | {r['error']} |")
                continue
            tps_cells, cpu_cells = [], []
            for name in names:
                failed = sum(1 for x in r["runs"].get(name, []) if x is None)
                if failed:
                    self.notes.append(f"{r['label']}: {failed} of {name}'s runs failed (latest.log)")
                runs = [x for x in r["runs"].get(name, []) if x]
                if not runs:
                    tps_cells.append("—")
                    cpu_cells.append("—")
                    continue
                tps = statistics.median(x[0] for x in runs)
                slow = any(not self.kept_up(x, r["rate"]) for x in runs)
                tps_cells.append(f"{tps:,.0f}{' *' if slow else ''}")
                cpu_cells.append(f"{statistics.median(x[1] for x in runs):.1f}")
            mine = self.same_round_ratio(r, "sluice")
            relay_ran = self.a.relay in r["runs"]
            relay = self.same_round_ratio(r, self.a.relay) if relay_ran else None
            if mine is None:
                verdict = "— (no round in which both sluice and the anchor kept up)"
            elif mine <= CPU_TARGET:
                verdict = "met"
            elif not relay_ran:
                verdict = f"not met ({self.a.relay} cannot run it)"
            elif relay is not None and relay >= CPU_TARGET:
                verdict = f"not met; a pooler that only relays spends {relay:.2f} × too"
            else:
                verdict = "not met"
            fmt = lambda x: "—" if x is None else f"{x:.2f}"  # noqa: E731
            out.append(f"| {r['label']} | {r['rate']:,} | " + " | ".join(tps_cells) + " | " +
                       " | ".join(cpu_cells) + f" | {fmt(mine)} | {fmt(relay)} | {verdict} |")
        out += ["", *(f"- {note}" for note in self.notes)] if self.notes else []
        return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", action="append", required=True, help="NAME=DIR:PORT:PID")
    p.add_argument("--anchor", required=True)
    p.add_argument("--relay", required=True)
    pgbench_output.add_round_arguments(p)
    p.add_argument("--log")
    a = p.parse_args()
    # run.sh's cleanup stops this with SIGTERM: SystemExit ends the pgbench under way too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = FixedRate(a)
    results = [bench.run_test(*test) for test in TESTS]
    table = bench.table(results)
    if a.append_to:
        with open(a.append_to, "a") as f:
            f.write(table)
    print(table)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
