"""What the benchmark's phases share about pgbench: how its output is read, and the options of a
phase that runs it in alternating rounds (bench/scrape_overhead.py, bench/fixed_rate.py)."""
import re

# pgbench's summary lines; each figure is the first group.
RE = {
    "tps": re.compile(r"^tps = ([\d.]+)", re.M),
    "latency_ms": re.compile(r"^latency average = ([\d.]+) ms", re.M),
    "processed": re.compile(r"^number of transactions actually processed: (\d+)", re.M),
    "failed": re.compile(r"^number of failed transactions: (\d+)", re.M),
    "conn_ms": re.compile(r"^average connection time = ([\d.]+) ms", re.M),
}


def add_round_arguments(parser):
    """The database and role pgbench logs in as, its threads, and the rounds: how many, how long each
    run is, and the report the phase appends its section to."""
    parser.add_argument("--db", default="bench")
    parser.add_argument("--user", required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--append-to")
