#!/usr/bin/env python3
"""Where a pooler's CPU goes per pgbench transaction, and how the scheduler treats it: two
`perf record` runs per pooler and round, against poolers already running.

1. CPU by kind of work, sampled with `-e cpu-clock` on every CPU once per 250 µs (a software
   clock: this VM exposes no hardware counters, but the kernel's timer samples kernel and user
   stacks alike), the pooler's samples sorted by their stacks:
   - waking a receiver: the kernel waking the process that reads what the pooler just sent;
   - switched out outside the poll: the context switch out and back in anywhere but epoll_wait,
     which for a pooler is being preempted (in these profiles on the way back from a system call);
   - asleep in the poll: the context switch out in epoll_wait, and in;
   - other system-call work: the rest of the kernel (copies, socket buffers, epoll);
   - user space: the pooler's own code and its libraries, but for libc's system-call wrappers,
     whose samples are the kernel's (on this VM a sample taken while interrupts are off is taken
     when they come back on, often on the return to user space).
   Then the process's CPU time by /proc over the same stretch, which the samples' total should be
   near, and pgbench's tps.
2. Scheduler events of the whole machine (`sched:sched_waking`, `sched:sched_wakeup`,
   `sched:sched_switch`; tracefs is mounted if it is not): how many sleeping processes the pooler
   woke (a wake-up is the waker's at `sched_waking`; where the woken one was put is known at
   `sched_wakeup`, which an idle CPU runs itself) and how many onto its own CPU, how often it was
   preempted and how often by a process whose last wake-up was its own (for a pooler, which wakes
   nearly every process that serves its transactions, nearly all of them by construction), how
   often it went to sleep, and the median stretch it ran for once on a CPU.

Poolers are given as NAME=HOST:PORT:PID; in each round every one serves a 1 s warm-up and one
pgbench run per part, the order rotating from round to round. The scheduler part is left out when
tracefs cannot be mounted. Prints Markdown tables of medians over the rounds, with the
first pooler's figure over each other's. Run as root (perf, tracefs). Recording is switched on
(perf's control FIFO) only once perf is attached, and pgbench starts after that."""
import argparse
import collections
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

SAMPLE_PERIOD_NS = 250_000  # of the pooler's CPU time: exact, where a frequency may be lowered
CPU_KINDS = ("waking a receiver", "switched out outside the poll", "asleep in the poll",
             "other system-call work", "user space")
SCHED_ROWS = ("sleeping processes it woke", "... onto its own CPU", "preempted",
              "... by a process it had woken", "went to sleep", "median stretch on a CPU, µs")
WAKING = ("sock_def_readable", "try_to_wake_up", "__wake_up", "ep_poll_callback", "pollwake")
# libc's system-call wrappers: a sample in one is the kernel's time, taken on the way back.
SYSCALL_WRAPPERS = re.compile(r"^(__GI_)?(__)?(libc_)?(send|recv|sendto|recvfrom|sendmsg|recvmsg|readv?|"
                              r"writev?|epoll_wait|epoll_pwait|epoll_ctl|accept4?|close|close_nocancel|ioctl|"
                              r"poll|syscall|syscall_cancel_arch|internal_syscall_cancel)\b")
TRACEFS = "/sys/kernel/tracing"


class Pooler:
    def __init__(self, spec):
        self.name, where = spec.split("=", 1)
        self.host, self.port, self.pid = where.rsplit(":", 2)

    def pgbench(self, options, clients, seconds, db):
        """One pgbench run through this pooler: (transactions processed, tps)."""
        run = subprocess.run(["pgbench", "-n", *options, "-c", str(clients), "-j", str(min(clients, 2)),
                              "-T", str(seconds), "-h", self.host, "-p", self.port, db],
                             capture_output=True, text=True)
        processed = re.search(r"number of transactions actually processed: (\d+)", run.stdout)
        tps = re.search(r"tps = ([\d.]+)", run.stdout)
        if run.returncode != 0 or not processed or not tps:
            sys.exit(f"cpu_profile: pgbench through {self.name} failed: {run.stderr.strip()[-500:]}")
        return int(processed.group(1)), float(tps.group(1))

    def threads(self):
        return {int(tid) for tid in os.listdir(f"/proc/{self.pid}/task")}

    def cpu_seconds(self):
        """utime + stime of the whole process, as the bench's CPU table counts it."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recorded(perf_args, work_dir, run):
    """run() while `perf record` records, switched on once perf is attached; run()'s result and the
    perf.data file."""
    output, control, ack = (os.path.join(work_dir, name) for name in ("perf.data", "control", "ack"))
    for fifo in (control, ack):
        if os.path.exists(fifo):
            os.unlink(fifo)
        os.mkfifo(fifo)
    # Opened read-write, neither end waits for perf: a perf that fails to start is seen below.
    commands, acks = os.open(control, os.O_RDWR), os.open(ack, os.O_RDWR)
    with open(os.path.join(work_dir, "perf.log"), "w+") as log:
        perf = subprocess.Popen(["perf", "record", "-q", "-D", "-1", f"--control=fifo:{control},{ack}",
                                 *perf_args, "-o", output], stdout=log, stderr=subprocess.STDOUT)
        try:
            os.write(commands, b"enable\n")
            while not select.select([acks], [], [], 0.5)[0]:
                if perf.poll() is not None:
                    fail_with_log(f"perf record exited (status {perf.returncode}) before recording", log)
            if not os.read(acks, 64).startswith(b"ack"):
                fail_with_log("perf did not switch recording on", log)
            result = run()
        finally:
            if perf.poll() is None:
                perf.send_signal(signal.SIGINT)
            perf.wait()
            os.close(commands)
            os.close(acks)
        if perf.returncode not in (0, -signal.SIGINT) or not os.path.exists(output):
            fail_with_log(f"perf record failed (status {perf.returncode})", log)
    return result, output


def fail_with_log(what, log):
    log.seek(0)
    sys.exit(f"cpu_profile: {what}: {log.read().strip()[-500:]}")


def perf_script(perf_data, fields):
    script = subprocess.run(["perf", "script", "-i", perf_data, "-F", fields], capture_output=True, text=True)
    if script.returncode != 0:
        sys.exit(f"cpu_profile: perf script failed: {script.stderr.strip()[-500:]}")
    return script.stdout


def kind_of(frames):
    """frames: (symbol, dso) from the sampled function outwards."""
    symbols = [symbol for symbol, _ in frames]
    leaf_symbol, leaf_dso = frames[0]
    if "__schedule" in symbols or any(s.startswith("finish_task_switch") for s in symbols):
        return "asleep in the poll" if "do_epoll_wait" in symbols else "switched out outside the poll"
    if leaf_dso.startswith("[") and leaf_dso not in ("[vdso]", "[unknown]"):  # the kernel, a module, BPF
        return "waking a receiver" if any(s.startswith(WAKING) for s in symbols) else "other system-call work"
    if "libc.so" in leaf_dso and SYSCALL_WRAPPERS.match(leaf_symbol):
        return "other system-call work"
    return "user space"


def sample_kinds(perf_data, threads):
    """The kind of each sample taken in one of these threads."""
    tid, frames = None, []
    for line in perf_script(perf_data, "tid,ip,sym,dso").splitlines() + [""]:
        header = re.match(r"\s*(\d+)\s*$", line)
        frame = re.match(r"\s*[0-9a-f]+ (.*?) \(((?:\[|/).*)\)$", line)  # a dso may end in "(deleted)"
        if header:
            tid, frames = int(header.group(1)), []
        elif frame:
            frames.append((frame.group(1), frame.group(2)))
        elif not line.strip() and frames:
            if tid in threads:
                yield kind_of(frames)
            frames = []


def cpu_by_kind(pooler, options, clients, seconds, db, work_dir):
    def measured_run():
        cpu_before = pooler.cpu_seconds()
        return pooler.pgbench(options, clients, seconds, db), pooler.cpu_seconds() - cpu_before

    # Every CPU, not the pooler's process: an event of one process is switched in and out with it,
    # which costs each of its context switches more than the switch itself on this VM.
    ((transactions, tps), cpu_seconds), perf_data = recorded(
        ["-e", "cpu-clock", "-c", str(SAMPLE_PERIOD_NS), "-g", "-a"], work_dir, measured_run)
    counts = collections.Counter(sample_kinds(perf_data, pooler.threads()))
    row = {kind: counts[kind] * SAMPLE_PERIOD_NS / 1e3 / transactions for kind in CPU_KINDS}
    row["total"] = sum(row.values())
    row["total (/proc)"] = cpu_seconds * 1e6 / transactions
    row["tps"] = tps
    return row


SCHED_EVENT = re.compile(r"\s*(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+"
                         r"sched:(sched_waking|sched_wakeup|sched_switch):\s+(.*)")
WOKEN = re.compile(r" pid=(\d+) .*target_cpu=(\d+)")
SWITCH = re.compile(r"prev_pid=(\d+) .*prev_state=(\S+) ==> .*next_pid=(\d+)")


def scheduling(pooler, options, clients, seconds, db, work_dir):
    (transactions, _), perf_data = recorded(
        ["-e", "sched:sched_waking", "-e", "sched:sched_wakeup", "-e", "sched:sched_switch", "-a"], work_dir,
        lambda: pooler.pgbench(options, clients, seconds, db))
    ours = pooler.threads()
    counts = collections.Counter()
    waking = {}  # pid -> the CPU the pooler woke it from, until its sched_wakeup
    woken_by_us = set()  # processes whose last wake-up was the pooler's
    on_cpu_since = {}
    stretches = []
    for line in perf_script(perf_data, "tid,cpu,time,event,trace").splitlines():
        event = SCHED_EVENT.match(line)
        if not event:
            continue
        tid, cpu, when, kind, detail = int(event[1]), int(event[2]), float(event[3]), event[4], event[5]
        if kind == "sched_waking":
            target = int(WOKEN.search(detail).group(1))
            if tid in ours and target not in ours:
                waking[target] = cpu
            else:
                waking.pop(target, None)
            continue
        if kind == "sched_wakeup":
            target, target_cpu = (int(x) for x in WOKEN.search(detail).groups())
            if target in waking:
                counts["sleeping processes it woke"] += 1
                counts["... onto its own CPU"] += target_cpu == waking.pop(target)
                woken_by_us.add(target)
            else:
                woken_by_us.discard(target)
            continue
        previous, state, following = SWITCH.search(detail).groups()
        previous, following = int(previous), int(following)
        if previous in ours:
            if state.startswith("R"):
                counts["preempted"] += 1
                counts["... by a process it had woken"] += following in woken_by_us
            else:
                counts["went to sleep"] += 1
            if previous in on_cpu_since:
                stretches.append(when - on_cpu_since.pop(previous))
        if following in ours:
            on_cpu_since[following] = when
    row = {name: counts[name] / transactions for name in SCHED_ROWS[:-1]}
    row["median stretch on a CPU, µs"] = statistics.median(stretches) * 1e6 if stretches else 0.0
    return row


def number_format(row):
    if row == "tps":
        return ",.0f"
    return ".3f" if row in SCHED_ROWS and "µs" not in row else ",.1f"  # events, or µs


def print_table(title, rows, runs, names):
    first = names[0]
    medians = {n: {row: statistics.median(run[row] for run in runs[n]) for row in rows} for n in names}
    print(f"{title}\n")
    print("| | " + " | ".join(names) + "".join(f" | {first}/{n}" for n in names[1:]) + " |")
    print("|---|" + "---:|" * (2 * len(names) - 1))
    for row in rows:
        cells = [f"{medians[n][row]:{number_format(row)}}" for n in names]
        cells += [f"{medians[first][row] / medians[n][row]:.2f}" if medians[n][row] > 0 else "n/a"
                  for n in names[1:]]
        print(f"| {row} | " + " | ".join(cells) + " |")
    print()


def mount_tracefs():
    if os.path.isdir(os.path.join(TRACEFS, "events")):
        return True
    return subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], capture_output=True).returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pooler", action="append", required=True, metavar="NAME=HOST:PORT:PID")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--db", default="bench")
    parser.add_argument("pgbench_options", nargs="*", default=[],
                        help="after --, e.g. -- -S -M extended; none: pgbench's TPC-B-like script")
    args = parser.parse_args()
    if not shutil.which("perf"):
        sys.exit("cpu_profile: needs perf (Debian: apt-get install linux-perf)")
    poolers = [Pooler(spec) for spec in args.pooler]
    parts = [("cpu", cpu_by_kind)] + ([("sched", scheduling)] if mount_tracefs() else [])
    runs = {part: {p.name: [] for p in poolers} for part, _ in parts}
    with tempfile.TemporaryDirectory() as work_dir:
        for round_number in range(args.rounds):
            shift = round_number % len(poolers)
            for pooler in poolers[shift:] + poolers[:shift]:
                pooler.pgbench(args.pgbench_options, args.clients, 1, args.db)  # warm-up
                for part, measure in parts:
                    runs[part][pooler.name].append(
                        measure(pooler, args.pgbench_options, args.clients, args.seconds, args.db, work_dir))
    what = f"pgbench {' '.join(args.pgbench_options) or '(TPC-B-like script)'}, {args.clients} clients"
    names = [p.name for p in poolers]
    rounds = f"median of {args.rounds} rounds of {args.seconds} s"
    print_table(f"{what}: pooler CPU per transaction, µs ({rounds})",
                CPU_KINDS + ("total", "total (/proc)", "tps"), runs["cpu"], names)
    if "sched" in runs:
        print_table(f"{what}: scheduling, per transaction ({rounds})", SCHED_ROWS, runs["sched"], names)
    else:
        print("(no scheduler events: tracefs could not be mounted)")


if __name__ == "__main__":
    main()
