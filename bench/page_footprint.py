#!/usr/bin/env python3
"""How many distinct memory pages and cache lines a pooler touches between two system calls, counted
with valgrind's lackey over pgbench transactions. Not part of `make bench` (bench/README.md, "Where
the CPU goes").

Where every system call flushes what the TLB held of the process (page-table isolation on CPUs
without PCID, as on the AMD EPYC host's VM, by bench/syscall_cost.c), each page a pooler touches
after one costs a page walk, a part of its CPU per transaction that instruction counts do not show:
about 14 ns a page there, in a microbenchmark (bench/HISTORY.md, "Each page touched after a system
call costs a walk here"). The 64-byte lines are counted too, as a footprint: no price of a line was
measured.

    python3 bench/page_footprint.py --host /tmp/s --port 6432 -- /path/to/sluiced -c sluice.json
    python3 bench/page_footprint.py --host /tmp/p --port 6433 --run-as postgres -- pgbouncer p.ini

The pooler is started under `valgrind --tool=lackey --trace-mem=yes`, which writes every
instruction and memory access: its start-up alone can take minutes and gigabytes (the trace goes in
a temporary directory, deleted unless --keep). Once its socket is there, a warm-up run opens its
servers; then the counted run (`pgbench -n -c 1 -t N`, other options with --pgbench=...), and the
trace is read from where it stood before that run to where it stood after it (the run's one login
and logout included). A stretch ends at each `syscall` instruction of libc, except the clocks'
(valgrind has no vDSO, so libc falls back to a system call that a native run does not make).

With --link-order FILE it also appends to FILE the pooler's own functions that ran in at least one
stretch per two transactions and that FILE does not name yet, in the order the counted run first ran
them; not those run less often (a login in a run without -C, the timers; a timer that fires once per
two lackey transactions or more does get in, as the worker's 100 ms janitor does in TPC-B, whose
transactions lackey slows past 50 ms). That is the order in which sluiced's link lays them out
(daemon/sluiced.link-order, read by lld's --symbol-ordering-file; CMakeLists.txt, bench/README.md
"The link order").
"""
import argparse
import bisect
import collections
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from pgbench_output import RE
from under_valgrind import await_socket, start, stop, tail

PAGE_SHIFT = 12
LINE_SHIFT = 6  # 64-byte cache lines; a stretch's pages are its lines' pages
SYSCALL_LINE = re.compile(r"^\s*([0-9a-f]+):\s+0f 05\s+syscall\s*$")
# Served by the vDSO outside valgrind, which has libc take its system-call fallback instead.
VDSO_CALLS = {"clock_gettime", "clock_getres", "gettimeofday", "time", "sched_getcpu", "getcpu"}


def read_maps(path):
    """[(start, end, label, path)] sorted, and libc's load address and path."""
    maps, libc = [], None
    with open(path) as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            name = fields[5] if len(fields) >= 6 else "[anonymous]"
            maps.append((start, end, f"{os.path.basename(name)} {fields[1]}", name))
            if os.path.basename(name).startswith("libc.so") and int(fields[2], 16) == 0 and libc is None:
                libc = (start, name)
    maps.sort()
    return maps, libc


def functions(path, dynamic=False):
    """The functions an ELF file defines, as nm lists them: [(address, size, name)] by address, the
    size 0 where nm gives none."""
    out = subprocess.run(["nm", "--defined-only", "-S"] + (["-D"] if dynamic else []) + [path],
                         capture_output=True, text=True, check=True).stdout
    symbols = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) in (3, 4) and fields[-2] in "TtWwi":  # i: an ifunc, as time and gettimeofday are
            size = int(fields[1], 16) if len(fields) == 4 else 0
            symbols.append((int(fields[0], 16), size, fields[-1].split("@")[0]))
    symbols.sort()
    return symbols


def syscall_sites(libc):
    """libc's `syscall` instructions in the traced process, each with the function it is in:
    {address: name}. Every way into the kernel through libc (open, the _nocancel variants,
    syscall()) passes one; the clocks' do not count (VDSO_CALLS)."""
    base, path = libc
    symbols = functions(path, dynamic=True)
    starts = [address for address, _, _ in symbols]
    sites = {}
    out = subprocess.run(["objdump", "-d", path], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        match = SYSCALL_LINE.match(line)
        if match:
            address = int(match.group(1), 16)
            i = bisect.bisect_right(starts, address) - 1
            name = symbols[i][2] if i >= 0 else "?"
            if name not in VDSO_CALLS:
                sites[base + address] = name
    return sites


def analyse(trace, begin, end, maps, sites, transactions, by_mapping, text_mapping=None):
    """Prints the pages and lines per stretch. With text_mapping, a mapping's (start, end), it
    returns the addresses in it the run executed from its first system call on (as the pages, not
    the stretch under way when it began), in the order it first did, each with the number of
    stretches it ran in: {address: stretches}."""
    starts = [m[0] for m in maps]
    own_code, own_stretch = {}, set()

    def label(page):
        address = page << PAGE_SHIFT
        i = bisect.bisect_right(starts, address) - 1
        return maps[i][2] if i >= 0 and address < maps[i][1] else "[unmapped]"

    stretches, calls, regions = [], collections.Counter(), collections.Counter()
    code, data = set(), set()  # the stretch's lines
    started = False  # the stretch under way at `begin` began before the counted run
    with open(trace, "rb") as f:
        f.seek(begin)
        while f.tell() < end and (raw := f.readline()):
            fields = raw.split()
            if len(fields) != 2 or fields[0] not in (b"I", b"L", b"S", b"M"):
                continue
            address = int(fields[1].split(b",")[0], 16)
            if fields[0] == b"I" and address in sites:
                if started:
                    code_pages = {line >> (PAGE_SHIFT - LINE_SHIFT) for line in code}
                    data_pages = {line >> (PAGE_SHIFT - LINE_SHIFT) for line in data}
                    stretches.append((len(code_pages), len(data_pages), len(code), len(data)))
                    calls[sites[address]] += 1
                    if by_mapping:
                        regions.update("code " + label(p) for p in code_pages)
                        regions.update("data " + label(p) for p in data_pages)
                started = True
                code, data = set(), set()
                for own in own_stretch:
                    own_code[own] = own_code.get(own, 0) + 1
                own_stretch = set()
            elif fields[0] == b"I":
                code.add(address >> LINE_SHIFT)
                if started and text_mapping and text_mapping[0] <= address < text_mapping[1]:
                    own_code.setdefault(address, 0)
                    own_stretch.add(address)
            else:
                data.add(address >> LINE_SHIFT)
    if not stretches:
        sys.exit("page_footprint: no system call in the counted run")
    n = transactions
    print(f"system calls per transaction: {len(stretches) / n:.2f} ("
          + ", ".join(f"{name} {count / n:.2f}" for name, count in sorted(calls.items())) + ")")
    for i, kind in ((0, "code pages"), (1, "data pages"), (2, "code lines"), (3, "data lines")):
        counts = [s[i] for s in stretches]
        print(f"{kind} per stretch: median {statistics.median(counts)}, mean {statistics.mean(counts):.1f}; "
              f"per transaction {sum(counts) / n:.1f}")
    for region, count in regions.most_common(20):
        print(f"  {count / len(stretches):6.2f} per stretch  {region}")
    return own_code


def own_text(binary, maps):
    """The binary's code mapping (start, end), and the address its nm addresses count from: where
    it is loaded if it is position-independent (ELF type ET_DYN), else 0."""
    path = os.path.realpath(binary)
    mine = [(start, end, label) for start, end, label, mapped in maps if mapped == path]
    text = [(start, end) for start, end, label in mine if label.endswith(" r-xp")]
    if len(text) != 1:
        sys.exit(f"page_footprint: no single code mapping of {path} in the pooler's memory map")
    with open(path, "rb") as f:
        elf_type = int.from_bytes(f.read(18)[16:18], "little")
    return text[0], min(start for start, _, _ in mine) if elf_type == 3 else 0


def append_link_order(path, symbols, base, own_code, transactions):
    """Appends to `path` the binary's functions that own_code's addresses ran in, in at least one
    stretch per two transactions, and that `path` does not name yet, in the order the run first ran
    them; `symbols` are the binary's functions(). One mangled name a line, as lld's
    --symbol-ordering-file reads them."""
    starts = [start for start, _, _ in symbols]
    stretch_counts = {}  # name: the most stretches any of its instructions ran in, in the order first run
    for address, count in own_code.items():
        offset = address - base
        i = bisect.bisect_right(starts, offset) - 1
        if i >= 0 and offset < symbols[i][0] + symbols[i][1]:
            name = symbols[i][2]
            stretch_counts[name] = max(count, stretch_counts.get(name, 0))
    names = open(path).read().split() if os.path.exists(path) else []
    known = set(names)
    added = [name for name, count in stretch_counts.items() if count * 2 >= transactions and name not in known]
    with open(path, "w") as f:
        f.write("".join(name + "\n" for name in names + added))
    print(f"{path}: {len(names) + len(added)} functions, {len(added)} of them appended by this run "
          f"(of the {len(stretch_counts)} it ran)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", required=True, help="the pooler's Unix socket directory")
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--db", default="bench")
    p.add_argument("--user", default=None, help="pgbench's -U")
    p.add_argument("--transactions", type=int, default=300)
    p.add_argument("--pgbench", default="-S", help="pgbench options of both runs, as --pgbench='-M extended' "
                   "(default -S)")
    p.add_argument("--run-as", default=None, help="start the pooler as this user")
    p.add_argument("--keep", action="store_true", help="keep the trace (and the pooler's output)")
    p.add_argument("--by-mapping", action="store_true", help="also the pages per stretch by mapping")
    p.add_argument("--link-order", metavar="FILE", help="append to FILE the pooler's own functions that ran in "
                   "one stretch per two transactions or more and that FILE does not name yet, in the order the counted "
                   "run first ran them")
    p.add_argument("--start-timeout", type=float, default=900)
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the pooler's command")
    a = p.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        p.error("the pooler's command goes after --")
    socket = os.path.join(a.host, f".s.PGSQL.{a.port}")
    if os.path.exists(socket):
        sys.exit(f"page_footprint: {socket} exists already: another pooler there, or one left it behind")
    # SIGTERM ends the run as Ctrl-C does: through `finally`, which stops lackey and removes its trace.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("page_footprint: terminated"))
    work = tempfile.mkdtemp(prefix="page-footprint.")
    trace, log = os.path.join(work, "lackey.trace"), os.path.join(work, "pooler.log")
    keep = a.keep
    pooler = None
    options = shlex.split(a.pgbench)
    pgbench = ["pgbench", "-n", "-h", a.host, "-p", str(a.port), "-c", "1"] + (["-U", a.user] if a.user else [])
    try:
        if a.run_as:  # valgrind writes the trace as the pooler's user
            os.chmod(work, 0o755)
            open(trace, "w").close()
            shutil.chown(trace, a.run_as)
        binary = shutil.which(command[0]) or command[0]
        symbols = functions(binary) if a.link_order else None
        if a.link_order and not symbols:  # found now, not after minutes under lackey
            sys.exit(f"page_footprint: nm finds no functions in {binary} (stripped?)")
        pooler = start(["--tool=lackey", "--trace-mem=yes", f"--log-file={trace}"], command, a.run_as, log)
        if not await_socket(pooler, socket, a.start_timeout, 0.5):
            keep = True
            sys.exit(f"page_footprint: {socket} did not appear; the pooler said:\n{tail(log)}")
        # The socket may be there a moment before the pooler serves (under lackey everything is slow):
        # a refused connection is tried again for a while, any other failure is final.
        retry_until = time.monotonic() + 60
        while (warm := subprocess.run(pgbench + ["-t", "50"] + options + [a.db], capture_output=True,
                                      text=True)).returncode != 0:
            if "Connection refused" not in warm.stderr or time.monotonic() > retry_until:
                sys.exit("page_footprint: the warm-up run failed:\n" + warm.stdout + warm.stderr)
            time.sleep(1)
        maps, libc = read_maps(f"/proc/{pooler.pid}/maps")
        if libc is None:
            sys.exit("page_footprint: libc is not in the pooler's memory map")
        sites = syscall_sites(libc)
        begin = os.path.getsize(trace)
        run = subprocess.run(pgbench + ["-t", str(a.transactions)] + options + [a.db], capture_output=True,
                             text=True)
        end = os.path.getsize(trace)  # lackey writes each line as it goes: nothing of the run is held back
        processed = RE["processed"].search(run.stdout)
        if not processed or int(processed.group(1)) != a.transactions:
            sys.exit("page_footprint: the counted pgbench run failed:\n" + run.stdout + run.stderr)
        text, base = own_text(binary, maps) if a.link_order else (None, None)
        own_code = analyse(trace, begin, end, maps, sites, a.transactions, a.by_mapping, text)
        if a.link_order:
            append_link_order(a.link_order, symbols, base, own_code, a.transactions)
    finally:
        if pooler is not None:
            stop(pooler)
        if keep:
            print(f"trace kept: {trace}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
