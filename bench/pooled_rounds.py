#!/usr/bin/env python3
"""pooled_rounds.py [--pooler NAME] REPORT...: sluice's tps and pooler CPU over PgBouncer 1.25.2's,
round by round, pooled over several `make bench` reports of the same code.

One run's five same-round ratios on this VM spread by tens of percent, so a test can pass the
performance targets in one run and miss them in the next. Pooling the rounds of several runs
narrows the estimate. A REPORT is a file (bench/results/latest.md) or a git revision, whose
bench/results/latest.md is read. Prints two Markdown tables from the reports' "tps per round":
per target test, each run's median same-round ratio, then the median and geometric mean over all
the rounds; for tps how many rounds sluice was ahead in, for pooler CPU (reports since the table
gave each round's CPU) how many rounds were at or under the target's 0.8 × (at two decimals, as the
reports read it), and the median floor: sluice's system time over PgBouncer 1.25.2's CPU in the
same round. Each table also gives the 95 % interval of the median, whatever the shape of the
rounds' distribution (between two of the sorted rounds, by the binomial law of how many fall below
the true median), and what it says of the target (tps at least 1.00 ×, 1.10 × for -S c50; CPU at
most 0.8 ×; both read unrounded): met where the whole interval meets it, missed where none of it
does, and otherwise that these rounds cannot tell. The interval assumes the rounds independent and
alike; rounds of runs on a VM whose speed drifts are only roughly so, so its true coverage is likely
lower. A round where either run failed is left out, as the report's own same-round table leaves it
out; a report from before failed rounds were marked (†) gives no round of a test with a failed run
("failed" in its column). Reports whose "Machine" lines name different CPUs or kernels are pooled
all the same, but a line before the tables says which reports name which: hosts' speeds can differ
by several times (bench/HISTORY.md, "The last reports ran on a faster host"), so read the verdicts
over each machine's alone too.

--pooler NAME pools another target of the reports' rounds over PgBouncer 1.25.2 instead of sluice:
"bare relay" (bench/bare_pooler.c) gives what a pooler that only relays reached."""
import argparse
import math
import os
import re
import statistics
import subprocess
import sys

from bench import SHORT_LABELS, TARGET_TESTS

HERE = os.path.dirname(os.path.abspath(__file__))
RIVAL = "PgBouncer 1.25.2"
FAILED = "failed"
TPS_TARGET = {"S50": 1.10}  # at least; 1.00 for the others
CPU_TARGET = 0.8  # at most
CONFIDENCE = 0.95
INTERVAL_COLUMNS = f"{CONFIDENCE:.0%} interval of the median | the target by it"


def report_text(report):
    if os.path.isfile(report):
        with open(report, encoding="utf-8") as f:
            return f.read()
    return subprocess.run(["git", "-C", HERE, "show", f"{report}:bench/results/latest.md"],
                          capture_output=True, text=True, check=True).stdout


def tps_of(cell):
    """A round's tps, or None when the run gave none or failed."""
    cell = cell.strip()
    if cell == "-" or cell.endswith("†"):
        return None
    return float(cell.replace(",", ""))


def machine_of(text):
    """The report's machine, as its "Machine" line names it: CPUs, model and kernel, without the RAM
    (which the same host reports a little differently from boot to boot) and the load average."""
    m = re.search(r"^- Machine: (\d+ CPUs), ([^,]+), [^,]+ RAM, (Linux [^;]+);", text, re.MULTILINE)
    return f"{m.group(1)}, {m.group(2)}, {m.group(3)}" if m else "a machine the report does not name"


def say_machines(texts, reports):
    """One line naming the machines, with their reports, when the reports ran on more than one."""
    by_machine = {}
    for text, report in zip(texts, reports):
        by_machine.setdefault(machine_of(text), []).append(report)
    if len(by_machine) > 1:
        named = "; ".join(f"{machine} ({', '.join(ran)})" for machine, ran in by_machine.items())
        print(f"These reports name {len(by_machine)} machines (CPUs, model, kernel): {named}. The rounds "
              "below pool them all; pool each machine's reports alone to see its own verdicts.\n")


def cpu_of(cell):
    """A round's (pooler CPU, its system part) in µs per transaction from "10.24 (7.10)", or None."""
    m = re.fullmatch(r"([\d.]+) \(([\d.]+)\)", cell.strip())
    return (float(m.group(1)), float(m.group(2))) if m else None


def rounds(text):
    """{(short label, target): (tps of each round, None where it failed; (CPU, system) of each
    round, None where not known) or FAILED} from a report's "tps per round" table."""
    section = text[text.index("### tps per round"):]
    end = section.find("\n#", 1)  # the next heading
    if end != -1:
        section = section[:end]
    found = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) not in (4, 5) or not re.fullmatch(r"\d+/\d+", cells[-1]):
            continue
        per_round = [tps_of(c) for c in cells[2].split(", ")]
        cpu = [cpu_of(c) for c in cells[3].split(", ")] if len(cells) == 5 else [None] * len(per_round)
        if len(cpu) != len(per_round):
            cpu = [None] * len(per_round)
        unmarked = "†" not in cells[2] and not cells[-1].startswith("0/")
        found[(cells[0], cells[1])] = FAILED if unmarked else (per_round, cpu)
    return found


def paired_rounds(found, label, pooler):
    """[(the pooler's round, the rival's round)] where both runs succeeded, each (tps, (CPU, system)
    or None); FAILED, or None when the report lacks the test."""
    ours, theirs = found.get((label, pooler)), found.get((label, RIVAL))
    if FAILED in (ours, theirs):
        return FAILED
    if not ours or not theirs:
        return None
    return [(a, b) for a, b in zip(zip(*ours), zip(*theirs)) if a[0] and b[0]]


def table(runs, reports, pooler, title, columns, ratios_of, summary):
    """One pooled table: per target test, each run's median ratio and `summary` of all of them."""
    rows = []
    for test in TARGET_TESTS:
        label = SHORT_LABELS[test]
        per_run, pooled = [], []
        for found in runs:
            pairs = paired_rounds(found, label, pooler)
            ratios = ratios_of(pairs) if pairs not in (FAILED, None) else []
            if pairs == FAILED:
                per_run.append(FAILED)
            elif not ratios:
                per_run.append("n/a")
            else:
                per_run.append(f"{statistics.median(r[0] for r in ratios):.2f}")
                pooled += ratios
        if pooled:
            rows.append(f"| {label} | {', '.join(per_run)} | {summary(test, pooled)} |")
    if not rows:
        print(f"No report gives rounds for {title}.")
        return
    print(f"| test | {title}, median of each run ({', '.join(reports)}) | {columns} |")
    print("|---|---|" + "---:|" * (columns.count("|") + 1))
    print("\n".join(rows))


def median_interval(values):
    """(low, high): the CONFIDENCE interval of the median, whatever the shape of the distribution:
    the k-th lowest and k-th highest value for the largest k at which fewer than k of the values fall
    below the true median at most (1 - CONFIDENCE) / 2 of the time (a binomial with p = 1/2); None
    when there are too few values for any k."""
    ordered, n = sorted(values), len(values)
    below = 0.0  # P(fewer than k values below the median)
    k = 0
    while k < n // 2 and below + math.comb(n, k) / 2 ** n <= (1 - CONFIDENCE) / 2:
        below += math.comb(n, k) / 2 ** n
        k += 1
    return (ordered[k - 1], ordered[n - k]) if k > 0 else None


def verdict(interval, meets):
    """What the interval says of a target `meets(value)` holds for."""
    if interval is None:
        return "too few rounds"
    low, high = (meets(bound) for bound in interval)
    return "met" if low and high else "missed" if not low and not high else "cannot tell"


def interval_cells(values, meets):
    interval = median_interval(values)
    shown = "n/a" if interval is None else f"{interval[0]:.3f} – {interval[1]:.3f}"
    return f"{shown} | {verdict(interval, meets)}"


def tps_summary(test, pooled):
    tps, wanted = [r[0] for r in pooled], TPS_TARGET.get(test, 1.00)
    return (f"{statistics.median(tps):.2f} | {statistics.geometric_mean(tps):.2f} "
            f"| {sum(r > 1 for r in tps)} of {len(tps)} | {interval_cells(tps, lambda r: r >= wanted)}")


def cpu_summary(test, pooled):
    cpu, floor = [r[0] for r in pooled], [r[1] for r in pooled]
    return (f"{statistics.median(cpu):.2f} | {statistics.geometric_mean(cpu):.2f} "
            f"| {sum(round(r, 2) <= CPU_TARGET for r in cpu)} of {len(cpu)} | {statistics.median(floor):.2f} "
            f"| {interval_cells(cpu, lambda r: r <= CPU_TARGET)}")


def main(args):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pooler", default="sluice", metavar="NAME",
                        help='the target to pool, e.g. "bare relay"')
    parser.add_argument("reports", nargs="+", metavar="REPORT")
    parsed = parser.parse_intermixed_args(args)
    pooler, reports = parsed.pooler, parsed.reports
    texts = [report_text(r) for r in reports]
    say_machines(texts, reports)
    runs = [rounds(text) for text in texts]
    table(runs, reports, pooler, f"{pooler}/PgBouncer 1.25.2 tps, same rounds",
          f"all rounds: median | geometric mean | rounds {pooler} was ahead | {INTERVAL_COLUMNS}",
          lambda pairs: [(a[0] / b[0],) for a, b in pairs], tps_summary)
    print()
    table(runs, reports, pooler, f"{pooler}/PgBouncer 1.25.2 pooler CPU per transaction, same rounds",
          f"all rounds: median | geometric mean | rounds at or under 0.8 × | floor: {pooler}'s system time "
          f"/ PgBouncer 1.25.2's CPU, median | {INTERVAL_COLUMNS}",
          lambda pairs: [(a[1][0] / b[1][0], a[1][1] / b[1][0]) for a, b in pairs
                         if a[1] and b[1] and a[1][0] and b[1][0]],
          cpu_summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
