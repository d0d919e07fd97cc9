#!/usr/bin/python3
"""The driver-matrix workload (README.md) for psycopg2 with its default settings.

psycopg2 never prepares server-side: it interpolates the parameters into the query text and sends
it with the simple query protocol. Autocommit is off by default, as in psycopg 3: every statement
runs in a transaction that the program commits or rolls back.
"""

import argparse
import datetime
import sys
import threading
import traceback

import psycopg2

ADD = "SELECT %s::int + %s::int AS sum"
DIV = "SELECT 1000 / %s::int AS quotient"
INSERT = "INSERT INTO driver_matrix (id, client, val) VALUES (%s::int, %s::int, %s::text)"
GET = "SELECT val FROM driver_matrix WHERE id = %s::int"
ROWS = (
    "SELECT n, 'row ' || n AS label, round(n * %s::int / 4.0, 2) AS quarter, mod(n, 2) = 0 AS even,"
    " CASE WHEN mod(n, 3) = 0 THEN NULL ELSE n * 10 END AS maybe,"
    " timestamptz '2024-02-29 23:30:00+00' + n * interval '45 minutes' AS at"
    " FROM generate_series(1, %s::int) AS n ORDER BY n"
)
COUNT = "SELECT count(*)::int, coalesce(sum(id), 0)::bigint FROM driver_matrix WHERE client = %s::int"
TOTAL = "SELECT count(*)::int, coalesce(sum(id), 0)::bigint FROM driver_matrix"


def render(value):
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


class Connection:
    """psycopg 3's conn.execute() on top of psycopg2, so both programs read alike."""

    def __init__(self, args):
        self.conn = psycopg2.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.user)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()

    def execute(self, query, params=()):
        cursor = self.conn.cursor()
        cursor.execute(query, params)
        return cursor

    def commit(self):
        self.conn.commit()

    def rollback(self):
        self.conn.rollback()


def connect(args):
    return Connection(args)


def one(conn, query, params):
    """The first column of the first row, or None when there is no row."""
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def expect_error(conn, query, params):
    """Runs a statement that should fail; rolls its transaction back and returns the SQLSTATE."""
    try:
        conn.execute(query, params)
    except psycopg2.Error as error:
        conn.rollback()
        return error.pgcode
    conn.commit()
    return "none"


def run_client(args, client, lines):
    base = (client + 1) * 100000
    with connect(args) as conn:
        for i in range(args.iterations):
            phase = i % 25
            total = one(conn, ADD, (i, client))
            quotient = one(conn, DIV, (i + 1,))
            conn.execute(INSERT, (base + i, client, f"c{client}-i{i}"))
            if phase == 24:
                conn.rollback()
                outcome = "rollback"
            else:
                conn.commit()
                outcome = "commit"
            val = one(conn, GET, (base + i,))
            lines.append(f"c{client} i{i} sum={total} quotient={quotient} {outcome} val={render(val)}")
            for row in conn.execute(ROWS, (client + 1, 1 + i % 3)).fetchall():
                n, label, quarter, even, maybe, at = (render(v) for v in row)
                lines.append(
                    f"c{client} i{i} row n={n} label={label} quarter={quarter} even={even} maybe={maybe} at={at}"
                )
            conn.commit()
            if phase == 10:
                conn.execute(INSERT, (base + 50000 + i, client, "doomed"))
                state = expect_error(conn, DIV, (0,))
                val = one(conn, GET, (base + 50000 + i,))
                conn.commit()
                lines.append(f"c{client} i{i} error-in-transaction sqlstate={state} val={render(val)}")
            if phase == 16:
                state = expect_error(conn, DIV, (0,))  # an implicit transaction: autocommit is off
                lines.append(f"c{client} i{i} error-outside-transaction sqlstate={state}")
            if phase == 20:
                state = expect_error(conn, INSERT, (base + i, client, "duplicate"))
                val = one(conn, GET, (base + i,))
                conn.commit()
                lines.append(f"c{client} i{i} unique-violation sqlstate={state} val={render(val)}")
        rows, ids = conn.execute(COUNT, (client,)).fetchone()
        conn.commit()
        lines.append(f"c{client} end rows={rows} ids={ids}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, help="Unix socket directory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    if not 10 <= args.iterations <= 50000:
        parser.error("--iterations must be 10..50000")

    transcripts = [[] for _ in range(args.clients)]
    failures = []

    def client_thread(client):
        try:
            run_client(args, client, transcripts[client])
        except Exception:  # reported below; the other clients go on
            failures.append(f"client {client}:\n{traceback.format_exc()}")

    threads = [threading.Thread(target=client_thread, args=(c,)) for c in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    print(f"driver-matrix clients={args.clients} iterations={args.iterations}")
    for lines in transcripts:
        for line in lines:
            print(line)
    if failures:
        sys.stderr.write("".join(failures))
        return 1
    with connect(args) as conn:
        rows, ids = conn.execute(TOTAL).fetchone()
    print(f"total rows={rows} ids={ids}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
