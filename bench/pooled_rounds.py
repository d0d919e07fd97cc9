#!/usr/bin/env python3
"""pooled_rounds.py REPORT... : sluice's tps over PgBouncer 1.25.2's, round by round, pooled over
several `make bench` reports of the same code.

One run's five same-round ratios on this VM spread by tens of percent, so a test can pass the
performance targets in one run and miss them in the next. Pooling the rounds of several runs
estimates the ratio itself. A REPORT is a file (bench/results/latest.md) or a git revision, whose
bench/results/latest.md is read. Prints a Markdown table: per target test, each run's median
same-round ratio, then the median and geometric mean over all the rounds, and how many rounds
sluice was ahead in."""
import os
import re
import statistics
import subprocess
import sys

from bench import SHORT_LABELS, TARGET_TESTS

HERE = os.path.dirname(os.path.abspath(__file__))
RIVAL = "PgBouncer 1.25.2"


def report_text(report):
    if os.path.isfile(report):
        with open(report, encoding="utf-8") as f:
            return f.read()
    return subprocess.run(["git", "-C", HERE, "show", f"{report}:bench/results/latest.md"],
                          capture_output=True, text=True, check=True).stdout


def rounds(text):
    """{(short label, target): [tps of each round]} from a report's "tps per round" table."""
    section = text[text.index("### tps per round"):]
    found = {}
    for line in section.splitlines():
        m = re.match(r"\| (.+?) \| (.+?) \| ([\d, ]+) \|", line)
        if m:
            found[(m.group(1), m.group(2))] = [float(x.replace(",", "")) for x in m.group(3).split(", ")]
    return found


def main(reports):
    if not reports:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    runs = [rounds(report_text(r)) for r in reports]
    print(f"| test | median same-round ratio of each run ({', '.join(reports)}) | all rounds: median "
          f"| geometric mean | rounds sluice was ahead |")
    print("|---|---|---:|---:|---:|")
    for test in TARGET_TESTS:
        label = SHORT_LABELS[test]
        per_run, pooled = [], []
        for found in runs:
            ours, theirs = found.get((label, "sluice")), found.get((label, RIVAL))
            if ours and theirs:
                ratios = [a / b for a, b in zip(ours, theirs) if a and b]
                per_run.append(statistics.median(ratios))
                pooled += ratios
        if not pooled:
            continue
        print(f"| {label} | {', '.join(f'{r:.2f}' for r in per_run)} | {statistics.median(pooled):.2f} "
              f"| {statistics.geometric_mean(pooled):.2f} | {sum(r > 1 for r in pooled)} of {len(pooled)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
