"""Where a process's time goes, from /proc: read before and after a run, per transaction.

CPU (utime, stime) is the process's whole, threads included; context switches and the scheduler's
run/wait times (schedstat) are summed over its threads. A voluntary switch is the process going to
sleep (its loop found nothing to do); an involuntary one is the scheduler taking the CPU from it; the
run-queue wait is time it was ready to run but another process had the CPU.
"""

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _threads(pid):
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def _stat(pid):
    """(comm, the fields after it) of /proc/PID/stat: fields[1] is the parent, [11] and [12] utime and
    stime, [13] and [14] the waited-for children's."""
    with open(f"/proc/{pid}/stat") as f:
        head, tail = f.read().rsplit(")", 1)
    return head.split("(", 1)[1], tail.split()


def sample(pid):
    """The counters of PID now, or None if it is gone."""
    try:
        fields = _stat(pid)[1]
        out = {"utime": int(fields[11]), "stime": int(fields[12]), "vcs": 0, "ivcs": 0, "run_ns": 0, "wait_ns": 0}
        for tid in _threads(pid):
            base = f"/proc/{pid}/task/{tid}"
            with open(f"{base}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        out["vcs"] += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        out["ivcs"] += int(line.split()[1])
            with open(f"{base}/schedstat") as f:
                run_ns, wait_ns, _ = f.read().split()
            out["run_ns"] += int(run_ns)
            out["wait_ns"] += int(wait_ns)
        return out
    except (OSError, IndexError, ValueError):
        return None


def per_transaction(before, after, transactions):
    """{user_us, sys_us, sleeps, preempted, runq_wait_us} per transaction, or None."""
    if not before or not after or not transactions:
        return None
    d = {k: after[k] - before[k] for k in before}
    return {
        "user_us": d["utime"] / CLK_TCK * 1e6 / transactions,
        "sys_us": d["stime"] / CLK_TCK * 1e6 / transactions,
        "sleeps": d["vcs"] / transactions,
        "preempted": d["ivcs"] / transactions,
        "runq_wait_us": d["wait_ns"] / 1e3 / transactions,
    }


def cpu_times():
    """The machine's CPU time so far, from /proc/stat's first line: (busy, steal, total) in ticks.
    Busy counts user, nice, system, irq and softirq; steal is time the hypervisor gave to others."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (v + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy, steal, busy + idle + iowait + steal


def share(before, after):
    """(busy, steal) between two cpu_times(), as fractions of all the CPUs' time."""
    total = after[2] - before[2]
    if total <= 0:
        return 0.0, 0.0
    return (after[0] - before[0]) / total, (after[1] - before[1]) / total


def postgres_cpu_s():
    """CPU seconds of every PostgreSQL process so far: the live ones' own, and the postmaster's
    reaped children's (cutime, cstime), so that the difference of two readings counts a backend
    that exited between them too."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            comm, fields = _stat(entry)
        except OSError:
            continue
        if comm != "postgres":
            continue
        total += int(fields[11]) + int(fields[12])
        if not _is_postgres(fields[1]):  # the postmaster: its parent is not PostgreSQL
            total += int(fields[13]) + int(fields[14])  # its backends that have exited
    return total / CLK_TCK


def _is_postgres(pid):
    try:
        return _stat(pid)[0] == "postgres"
    except OSError:
        return False
