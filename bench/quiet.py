"""Is the machine quiet enough for the figures to mean something?

The 1-minute load average cannot say it between rounds: the benchmark's own runs (50 to 1000
clients, PostgreSQL's backends) keep it high for minutes after they end. What can: with every
target idle, how much of the CPUs other work uses (and how much the hypervisor steals). Before each
round the benchmark waits for a quiet second, up to a limit, and records what it saw.
"""

import os
import time

import procstat

QUIET_BUSY = 0.10  # of all CPUs, while the benchmark itself runs nothing
QUIET_STEAL = 0.05
SAMPLE_S = 1.0


def sample_idle(seconds=SAMPLE_S):
    before = procstat.cpu_times()
    time.sleep(seconds)
    return procstat.share(before, procstat.cpu_times())


def wait_for_quiet(limit_s):
    """Samples until a quiet second or LIMIT_S; returns what the last sample saw."""
    deadline = time.monotonic() + limit_s
    while True:
        busy, steal = sample_idle()
        quiet = busy < QUIET_BUSY and steal < QUIET_STEAL
        if quiet or time.monotonic() >= deadline:
            return {"busy": busy, "steal": steal, "quiet": quiet, "load1": os.getloadavg()[0]}


def describe(check):
    return (f"CPUs {check['busy'] * 100:.0f} % busy and {check['steal'] * 100:.0f} % stolen while idle, "
            f"load average {check['load1']:.2f}")
