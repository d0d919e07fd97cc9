#!/usr/bin/env python3
"""Minimal PostgreSQL v3 wire clients over a Unix socket, for the benchmark (no libpq, no pip).

  pgwire.py idle --host DIR --port N --db DB --user U --clients 2000 --pid PID
      opens N connections, logs each in (startup packet, trust auth), leaves them idle, and reports
      the pooler's VmRSS (from /proc/PID/status) before and after, as one JSON line on stdout.

  pgwire.py abandon --host DIR --port N --db DB --user U --rollback N --cancel N --concurrency C
      clients that vanish mid-scope: inside a transaction (server at ReadyForQuery T or E: the
      pooler must roll back) and while a query runs (pg_sleep: the pooler must cancel). Each one
      logs in, sends its query, then closes its socket, as a killed process would. One JSON line.
"""

import argparse
import json
import os
import selectors
import socket
import struct
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

PROTOCOL_3_0 = 196608
MARKER = "sluice-bench-abandoned"  # pgbench_history.filler of every write that must never commit


def startup_packet(user, database):
    body = struct.pack("!i", PROTOCOL_3_0)
    for key, value in (("user", user), ("database", database), ("application_name", "sluice-bench")):
        body += key.encode() + b"\0" + value.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


def query_message(sql):
    payload = sql.encode() + b"\0"
    return b"Q" + struct.pack("!i", len(payload) + 4) + payload


def error_text(payload):
    """The severity, SQLSTATE and message fields of an ErrorResponse."""
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return f"{fields.get('S', '?')} {fields.get('C', '?')} {fields.get('M', '')}"


class Reader:
    """Splits a byte stream into backend messages (type, payload)."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while len(self.buf) >= 5:
            (length,) = struct.unpack("!i", self.buf[1:5])
            if len(self.buf) < 1 + length:
                break
            out.append((self.buf[0:1], self.buf[5 : 1 + length]))
            self.buf = self.buf[1 + length :]
        return out


def socket_path(host, port):
    return os.path.join(host, f".s.PGSQL.{port}")


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def connect(sock, path, deadline, idle=None):
    """Connects a Unix socket, waiting while the listener's backlog is full.

    A non-blocking connect to a full Unix-socket backlog fails at once with EAGAIN (there is no
    EINPROGRESS for AF_UNIX): retry until the deadline, letting `idle` read replies meanwhile."""
    sock.setblocking(False)
    while True:
        try:
            sock.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            if idle is not None:
                idle()
            time.sleep(0.001)


# --- idle: memory per connected idle client -------------------------------------------------------


def run_idle(args):
    path = socket_path(args.host, args.port)
    time.sleep(args.settle)
    rss_before = vm_rss_kib(args.pid)
    sel = selectors.DefaultSelector()
    socks, errors = [], {}
    pending = {}  # fd -> (sock, Reader)
    connected = failed = 0
    deadline = time.monotonic() + args.timeout

    def note_error(text):
        errors[text] = errors.get(text, 0) + 1

    def pump(block_until_done):
        nonlocal connected, failed
        while pending and time.monotonic() < deadline:
            events = sel.select(timeout=0.5 if block_until_done else 0)
            if not events and not block_until_done:
                return
            for key, _ in events:
                sock, reader = pending[key.fd]
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    data, err = b"", str(e)
                else:
                    err = "connection closed by the pooler during login"
                done = False
                if not data:
                    note_error(err)
                    failed += 1
                    done = True
                for mtype, payload in reader.feed(data):
                    if mtype == b"R" and struct.unpack("!i", payload[:4])[0] != 0:
                        note_error("authentication other than trust requested")
                        failed += 1
                        done = True
                        break
                    if mtype == b"E":
                        note_error(error_text(payload))
                        failed += 1
                        done = True
                        break
                    if mtype == b"Z":
                        connected += 1
                        done = True
                        break
                if done:
                    sel.unregister(sock)
                    del pending[key.fd]

    for _ in range(args.clients):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connect(sock, path, deadline, lambda: pump(False))
            sock.setblocking(True)
            sock.sendall(startup_packet(args.user, args.db))
            sock.setblocking(False)
        except OSError as e:
            note_error(f"connect: {e}")
            failed += 1
            sock.close()
            continue
        socks.append(sock)
        pending[sock.fileno()] = (sock, Reader())
        sel.register(sock, selectors.EVENT_READ)
        if len(pending) >= 200:  # keep the pooler's accept/login queue short
            pump(False)
    pump(True)
    if pending:
        note_error(f"{len(pending)} logins unanswered after {args.timeout}s")
        failed += len(pending)
    time.sleep(args.settle)
    rss_after = vm_rss_kib(args.pid)
    # Still connected at the end? A pooler that closed idle clients would fool the measurement.
    still_open = 0
    for sock in socks:
        try:
            still_open += 1 if sock.recv(1, socket.MSG_PEEK) != b"" else 0
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
    for sock in socks:
        sock.close()
    per_client = (rss_after - rss_before) * 1024 / connected if connected else None
    print(
        json.dumps(
            {
                "clients": args.clients,
                "connected": connected,
                "still_open": still_open,
                "failed": failed,
                "errors": errors,
                "rss_before_kib": rss_before,
                "rss_after_kib": rss_after,
                "bytes_per_client": per_client,
            }
        )
    )


# --- abandon: rollback and cancel outcomes under load ---------------------------------------------


def login(path, user, db, timeout):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connect(sock, path, time.monotonic() + timeout)
    sock.settimeout(timeout)
    sock.sendall(startup_packet(user, db))
    reader = Reader()
    while True:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("connection closed during login")
        for mtype, payload in reader.feed(data):
            if mtype == b"E":
                raise RuntimeError(error_text(payload))
            if mtype == b"Z":
                return sock, reader


def until_ready(sock, reader):
    """Reads to the next ReadyForQuery; returns its status and the first error seen."""
    error = None
    while True:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("connection closed by the pooler")
        for mtype, payload in reader.feed(data):
            if mtype == b"E" and error is None:
                error = error_text(payload)
            if mtype == b"Z":
                return payload[:1].decode(), error


INSERT = (
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime, filler) "
    f"VALUES (1, 1, 1, 0, now(), '{MARKER}')"
)

# kind -> (query, expected ReadyForQuery status, or None: close while the query runs)
KINDS = {
    "rollback_T": (f"BEGIN; {INSERT}", "T"),
    "rollback_E": (f"BEGIN; {INSERT}; SELECT 1/0", "E"),
    "cancel": ("SELECT pg_sleep(10)", None),
    "cancel_in_tx": (f"BEGIN; {INSERT}; SELECT pg_sleep(10)", None),
}


def abandon_one(args, kind):
    query, expect = KINDS[kind]
    sock, reader = login(socket_path(args.host, args.port), args.user, args.db, args.timeout)
    try:
        sock.sendall(query_message(query))
        if expect is None:
            time.sleep(args.cancel_after)  # the query is running on a server by now
            return "ok"
        status, error = until_ready(sock, reader)
        if status != expect:
            return f"{kind}: ReadyForQuery {status}, expected {expect} ({error})"
        return "ok"
    finally:
        sock.close()  # vanish: no Terminate message, as a killed client


def run_abandon(args):
    kinds = []
    for i in range(max(args.rollback, args.cancel)):
        if i < args.rollback:
            kinds.append("rollback_T" if i % 2 == 0 else "rollback_E")
        if i < args.cancel:
            kinds.append("cancel" if i % 2 == 0 else "cancel_in_tx")
    results = {}
    lock = threading.Lock()

    def task(kind):
        try:
            outcome = abandon_one(args, kind)
        except Exception as e:  # noqa: BLE001 -- every failure is reported, none aborts the phase
            outcome = f"{kind}: {e}"
        with lock:
            results[outcome] = results.get(outcome, 0) + 1

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(task, kinds))
    ok = results.pop("ok", 0)
    print(
        json.dumps(
            {
                "requested": {k: kinds.count(k) for k in KINDS},
                "ok": ok,
                "errors": results,
                "seconds": round(time.monotonic() - started, 2),
            }
        )
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["idle", "abandon"])
    p.add_argument("--host", required=True, help="the Unix socket directory")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db", default="bench")
    p.add_argument("--user", default=os.environ.get("USER") or "postgres")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=2000)
    p.add_argument("--pid", type=int, help="idle: the pooler's pid")
    p.add_argument("--settle", type=float, default=1.0, help="idle: seconds to wait before each RSS reading")
    p.add_argument("--rollback", type=int, default=100)
    p.add_argument("--cancel", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--cancel-after", type=float, default=0.2, help="abandon: seconds a pg_sleep runs before the client vanishes")
    args = p.parse_args()
    if args.mode == "idle":
        if args.pid is None:
            p.error("idle needs --pid")
        run_idle(args)
    else:
        run_abandon(args)


if __name__ == "__main__":
    sys.exit(main())
