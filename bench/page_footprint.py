#!/usr/bin/env python3
"""How many distinct memory pages a pooler touches between two system calls, counted with valgrind's
lackey over pgbench transactions. Not part of `make bench` (bench/README.md, "Where the CPU goes").

On this VM every system call flushes what the TLB held of the process (page-table isolation, no
PCID), so each page a pooler touches after one costs a page walk: the pages per stretch between
system calls are part of its CPU per transaction that instruction counts do not show.

    python3 bench/page_footprint.py --host /tmp/s --port 6432 -- /path/to/sluiced -c sluice.json
    python3 bench/page_footprint.py --host /tmp/p --port 6433 --run-as postgres -- pgbouncer p.ini

The pooler is started under `valgrind --tool=lackey --trace-mem=yes`, which writes every
instruction and memory access: its start-up alone can take minutes and gigabytes (the trace goes in
--work, and is deleted unless --keep). Once its socket is there, a warm-up run opens its servers;
then the counted run (`pgbench -n -c 1 -t N`, options after --pgbench), then SIGINT. A stretch ends
at the entry of a libc system-call wrapper (recv, send, epoll_wait, ...).
"""
import argparse
import bisect
import collections
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

WRAPPERS = ("accept", "accept4", "close", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "read",
            "write", "readv", "writev", "recv", "recvfrom", "recvmsg", "send", "sendto", "sendmsg", "poll",
            "ppoll", "openat", "getrandom", "fcntl", "ioctl", "getsockopt", "setsockopt")
PAGE_SHIFT = 12


def read_maps(path):
    """[(start, end, label)] sorted, and libc's load address and path."""
    maps, libc = [], None
    with open(path) as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5] if len(fields) >= 6 else "[anonymous]"
            maps.append((start, end, f"{os.path.basename(name)} {fields[1]}"))
            if os.path.basename(name).startswith("libc.so") and int(fields[2], 16) == 0 and libc is None:
                libc = (start, name)
    maps.sort()
    return maps, libc


def wrapper_entries(libc):
    """Addresses of libc's system-call wrappers in the traced process: {address: name}."""
    base, path = libc
    out = subprocess.run(["nm", "-D", "--defined-only", path], capture_output=True, text=True, check=True).stdout
    entries = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[2].split("@")[0] in WRAPPERS:
            entries[base + int(fields[0], 16)] = fields[2].split("@")[0]
    return entries


def analyse(trace, offset, maps, entries, transactions, by_mapping):
    starts = [m[0] for m in maps]

    def label(page):
        address = page << PAGE_SHIFT
        i = bisect.bisect_right(starts, address) - 1
        return maps[i][2] if i >= 0 and address < maps[i][1] else "[unmapped]"

    stretches, calls, regions = [], collections.Counter(), collections.Counter()
    code, data = set(), set()
    with open(trace, "rb") as f:
        f.seek(offset)
        for raw in f:
            fields = raw.split()
            if len(fields) != 2 or fields[0] not in (b"I", b"L", b"S", b"M"):
                continue
            address = int(fields[1].split(b",")[0], 16)
            if fields[0] == b"I":
                if address in entries:
                    stretches.append((len(code), len(data)))
                    calls[entries[address]] += 1
                    if by_mapping:
                        regions.update("code " + label(p) for p in code)
                        regions.update("data " + label(p) for p in data)
                    code, data = set(), set()
                    continue
                code.add(address >> PAGE_SHIFT)
            else:
                data.add(address >> PAGE_SHIFT)
    stretches = stretches[1:]  # the first began before the counted run
    if not stretches:
        sys.exit("page_footprint: no system call in the counted run (was the trace cut short?)")
    n = transactions
    print(f"system calls per transaction: {len(stretches) / n:.2f} ("
          + ", ".join(f"{name} {count / n:.2f}" for name, count in sorted(calls.items())) + ")")
    for i, kind in ((0, "code"), (1, "data")):
        pages = [s[i] for s in stretches]
        print(f"{kind} pages per stretch: median {statistics.median(pages)}, mean {statistics.mean(pages):.1f}; "
              f"per transaction {sum(pages) / n:.1f}")
    for region, count in regions.most_common(20):
        print(f"  {count / len(stretches):6.2f} per stretch  {region}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True, help="the pooler's Unix socket directory")
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--db", default="bench")
    p.add_argument("--user", default=None, help="pgbench's -U")
    p.add_argument("--transactions", type=int, default=300)
    p.add_argument("--pgbench", default="-S", help="pgbench options of the counted run (default -S)")
    p.add_argument("--run-as", default=None, help="start the pooler as this user (runuser)")
    p.add_argument("--work", default=None, help="directory for the trace (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the trace")
    p.add_argument("--by-mapping", action="store_true", help="also the pages per stretch by mapping")
    p.add_argument("--start-timeout", type=float, default=900)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the pooler's command")
    a = p.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        p.error("the pooler's command goes after --")
    socket = os.path.join(a.host, f".s.PGSQL.{a.port}")
    if os.path.exists(socket):
        sys.exit(f"page_footprint: {socket} exists already: another pooler there, or one left it behind")
    work = a.work or tempfile.mkdtemp(prefix="page-footprint.")
    trace = os.path.join(work, "lackey.trace")
    open(trace, "w").close()
    if a.run_as:  # valgrind writes the trace as the pooler's user
        os.chmod(work, 0o755)
        shutil.chown(trace, a.run_as)
    launch = (["runuser", "-u", a.run_as, "--"] if a.run_as else []) + [
        "valgrind", "--tool=lackey", "--trace-mem=yes", f"--log-file={trace}"] + command
    # Its own session: runuser and valgrind are signalled together, and valgrind found by it.
    log = os.path.join(work, "pooler.log")
    with open(log, "w") as output:
        pooler = subprocess.Popen(launch, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    pgbench = ["pgbench", "-n", "-h", a.host, "-p", str(a.port), "-c", "1"] + (["-U", a.user] if a.user else [])
    try:
        deadline = time.monotonic() + a.start_timeout
        while not os.path.exists(socket):
            if pooler.poll() is not None or time.monotonic() > deadline:
                a.keep = True
                with open(log) as output:
                    said = output.read()[-2000:]
                sys.exit(f"page_footprint: {socket} did not appear; the pooler said:\n{said}"
                         f"(valgrind's messages are in {trace})")
            time.sleep(0.5)
        # A socket may be there before the pooler serves (under lackey, everything is slow).
        while (warm := subprocess.run(pgbench + ["-t", "50"] + a.pgbench.split() + [a.db], capture_output=True,
                                      text=True)).returncode != 0:
            if pooler.poll() is not None or time.monotonic() > deadline:
                sys.exit("page_footprint: the warm-up run failed:\n" + warm.stdout + warm.stderr)
            time.sleep(1)
        tracer = int(subprocess.run(["pgrep", "-s", str(pooler.pid), "-x", "lackey-amd64-li"],
                                    capture_output=True, text=True, check=True).stdout.split()[0])
        maps_copy = os.path.join(work, "maps")
        shutil.copyfile(f"/proc/{tracer}/maps", maps_copy)
        offset = os.path.getsize(trace)
        run = subprocess.run(pgbench + ["-t", str(a.transactions)] + a.pgbench.split() + [a.db],
                             capture_output=True, text=True)
        if f"processed: {a.transactions}/{a.transactions}" not in run.stdout:
            sys.exit("page_footprint: the counted pgbench run failed:\n" + run.stdout + run.stderr)
        os.killpg(pooler.pid, signal.SIGINT)  # valgrind writes out what it holds as the pooler exits
        try:
            pooler.wait(timeout=120)
        except subprocess.TimeoutExpired:
            sys.exit("page_footprint: the pooler did not exit on SIGINT within 120 s")
        maps, libc = read_maps(maps_copy)
        if libc is None:
            sys.exit("page_footprint: libc is not in the pooler's memory map")
        analyse(trace, offset, maps, wrapper_entries(libc), a.transactions, a.by_mapping)
    finally:
        if pooler.poll() is None:
            os.killpg(pooler.pid, signal.SIGKILL)
            pooler.wait()
        if not a.keep:
            shutil.rmtree(work) if a.work is None else (os.remove(trace), os.remove(log))
        else:
            print(f"trace kept: {trace}")


if __name__ == "__main__":
    main()
