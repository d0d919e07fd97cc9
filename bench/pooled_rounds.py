#!/usr/bin/env python3
"""pooled_rounds.py REPORT... : sluice's tps over PgBouncer 1.25.2's, round by round, pooled over
several `make bench` reports of the same code.

One run's five same-round ratios on this VM spread by tens of percent, so a test can pass the
performance targets in one run and miss them in the next. Pooling the rounds of several runs
narrows the estimate. A REPORT is a file (bench/results/latest.md) or a git revision, whose
bench/results/latest.md is read. Prints a Markdown table: per target test, each run's median
same-round ratio, then the median and geometric mean over all the rounds, and how many rounds
sluice was ahead in. A round where either run failed is left out, as the report's own same-round
table leaves it out; a report from before failed rounds were marked (†) gives no round of a test
with a failed run ("failed" in its column)."""
import os
import re
import statistics
import subprocess
import sys

from bench import SHORT_LABELS, TARGET_TESTS

HERE = os.path.dirname(os.path.abspath(__file__))
RIVAL = "PgBouncer 1.25.2"
FAILED = "failed"


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


def rounds(text):
    """{(short label, target): [tps of each round, None where it failed] or FAILED} from a report's
    "tps per round" table."""
    section = text[text.index("### tps per round"):]
    end = section.find("\n#", 1)  # the next heading
    if end != -1:
        section = section[:end]
    found = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not re.fullmatch(r"\d+/\d+", cells[3]):
            continue
        per_round = [tps_of(c) for c in cells[2].split(", ")]
        unmarked = "†" not in cells[2] and not cells[3].startswith("0/")
        found[(cells[0], cells[1])] = FAILED if unmarked else per_round
    return found


def same_round_ratios(found, label):
    ours, theirs = found.get((label, "sluice")), found.get((label, RIVAL))
    if FAILED in (ours, theirs):
        return FAILED
    if not ours or not theirs:
        return None
    return [a / b for a, b in zip(ours, theirs) if a and b]


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
            ratios = same_round_ratios(found, label)
            if ratios == FAILED:
                per_run.append(FAILED)
            elif not ratios:
                per_run.append("n/a")
            else:
                per_run.append(f"{statistics.median(ratios):.2f}")
                pooled += ratios
        if not pooled:
            continue
        print(f"| {label} | {', '.join(per_run)} | {statistics.median(pooled):.2f} "
              f"| {statistics.geometric_mean(pooled):.2f} | {sum(r > 1 for r in pooled)} of {len(pooled)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
