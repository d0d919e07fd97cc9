"""What the Python driver-matrix programs (README.md) share: their command line, their SQL, the
transcript's format and, for the two DB-API drivers (psycopg 3, psycopg2), the whole workload.

Each program stays a script of its own that only says how to use its driver: connect with the
driver's default settings and, for DB-API, which exception carries which SQLSTATE. They import
this module as a sibling: Python puts a script's own directory first on sys.path (also under the
test's `python3 -E -s`), so `import workload_common` works from any working directory.
"""

import argparse
import collections
import datetime
import sys
import threading
import traceback


class Sql:
    """The workload's queries, with the parameter placeholders of one driver.

    `param(n)` spells the n-th parameter. Every query uses its parameters once each, in order,
    so asyncpg's `$n` and psycopg's positional `%s` bind the same values.
    """

    def __init__(self, param):
        p = param
        self.add = f"SELECT {p(1)}::int + {p(2)}::int AS sum"
        self.div = f"SELECT 1000 / {p(1)}::int AS quotient"
        self.insert = (
            f"INSERT INTO driver_matrix (id, client, val) VALUES ({p(1)}::int, {p(2)}::int, {p(3)}::text)"
        )
        self.get = f"SELECT val FROM driver_matrix WHERE id = {p(1)}::int"
        self.rows = (
            f"SELECT n, 'row ' || n AS label, round(n * {p(1)}::int / 4.0, 2) AS quarter, mod(n, 2) = 0 AS even,"
            " CASE WHEN mod(n, 3) = 0 THEN NULL ELSE n * 10 END AS maybe,"
            " timestamptz '2024-02-29 23:30:00+00' + n * interval '45 minutes' AS at"
            f" FROM generate_series(1, {p(2)}::int) AS n ORDER BY n"
        )
        self.count = (
            f"SELECT count(*)::int, coalesce(sum(id), 0)::bigint FROM driver_matrix WHERE client = {p(1)}::int"
        )
        self.total = "SELECT count(*)::int, coalesce(sum(id), 0)::bigint FROM driver_matrix"


NUMBERED_SQL = Sql(lambda n: f"${n}")  # asyncpg: PostgreSQL's own $1, $2, ...
PYFORMAT_SQL = Sql(lambda n: "%s")  # psycopg 3 and psycopg2 (the driver interpolates or converts)


def parse_args(doc):
    """The command line every driver program takes (README.md: Running one by hand)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--host", required=True, help="Unix socket directory")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dbname", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=100)
    args = parser.parse_args()
    if not 10 <= args.iterations <= 50000:
        parser.error("--iterations must be 10..50000")
    return args


def render(value):
    """A value as every driver program prints it (README.md: The transcript)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


class Transcript:
    """One client's transcript lines, kept apart so that they print in client order."""

    def __init__(self, client):
        self.client = client
        self.lines = []

    def _add(self, i, text):
        self.lines.append(f"c{self.client} i{i} {text}")

    def step(self, i, total, quotient, outcome, val):
        self._add(i, f"sum={total} quotient={quotient} {outcome} val={render(val)}")

    def row(self, i, row):
        n, label, quarter, even, maybe, at = (render(v) for v in row)
        self._add(i, f"row n={n} label={label} quarter={quarter} even={even} maybe={maybe} at={at}")

    def error_in_transaction(self, i, state, val):
        self._add(i, f"error-in-transaction sqlstate={state} val={render(val)}")

    def error_outside_transaction(self, i, state):
        self._add(i, f"error-outside-transaction sqlstate={state}")

    def unique_violation(self, i, state, val):
        self._add(i, f"unique-violation sqlstate={state} val={render(val)}")

    def end(self, rows, ids):
        self.lines.append(f"c{self.client} end rows={rows} ids={ids}")


def report(args, transcripts, errors):
    """Prints the header and every client's lines; then the clients' errors (None where a client
    succeeded) on stderr. Returns whether all succeeded, i.e. whether the totals should follow."""
    print(f"driver-matrix clients={args.clients} iterations={args.iterations}")
    for transcript in transcripts:
        for line in transcript.lines:
            print(line)
    failed = False
    for client, error in enumerate(errors):
        if error is not None:
            failed = True
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            sys.stderr.write(f"client {client}:\n{text}")
    return not failed


def print_total(rows, ids):
    print(f"total rows={rows} ids={ids}")


# ---- the DB-API workload: psycopg 3 and psycopg2 run the very same code ----

# How a program uses its DB-API driver: connect(args) returns a context manager with psycopg 3's
# execute(query, params) -> cursor, commit() and rollback(); error is the driver's base exception
# class, and sqlstate(error) the SQLSTATE that it carries.
DbApiDriver = collections.namedtuple("DbApiDriver", "connect error sqlstate")


def _one(conn, query, params):
    """The first column of the first row, or None when there is no row."""
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def _expect_error(driver, conn, query, params):
    """Runs a statement that should fail; rolls its transaction back and returns the SQLSTATE."""
    try:
        conn.execute(query, params)
    except driver.error as error:
        conn.rollback()
        return driver.sqlstate(error)
    conn.commit()
    return "none"


def _run_dbapi_client(driver, args, transcript):
    sql = PYFORMAT_SQL
    client = transcript.client
    base = (client + 1) * 100000
    with driver.connect(args) as conn:
        for i in range(args.iterations):
            phase = i % 25
            total = _one(conn, sql.add, (i, client))
            quotient = _one(conn, sql.div, (i + 1,))
            conn.execute(sql.insert, (base + i, client, f"c{client}-i{i}"))
            if phase == 24:
                conn.rollback()  # psycopg 3 also forgets its prepared statements: DEALLOCATE ALL
                outcome = "rollback"
            else:
                conn.commit()
                outcome = "commit"
            val = _one(conn, sql.get, (base + i,))
            transcript.step(i, total, quotient, outcome, val)
            for row in conn.execute(sql.rows, (client + 1, 1 + i % 3)).fetchall():
                transcript.row(i, row)
            conn.commit()
            if phase == 10:
                conn.execute(sql.insert, (base + 50000 + i, client, "doomed"))
                state = _expect_error(driver, conn, sql.div, (0,))
                val = _one(conn, sql.get, (base + 50000 + i,))
                conn.commit()
                transcript.error_in_transaction(i, state, val)
            if phase == 16:
                # an implicit transaction: autocommit is off
                state = _expect_error(driver, conn, sql.div, (0,))
                transcript.error_outside_transaction(i, state)
            if phase == 20:
                state = _expect_error(driver, conn, sql.insert, (base + i, client, "duplicate"))
                val = _one(conn, sql.get, (base + i,))
                conn.commit()
                transcript.unique_violation(i, state, val)
        rows, ids = conn.execute(sql.count, (client,)).fetchone()
        conn.commit()
        transcript.end(rows, ids)


def dbapi_main(doc, driver):
    """The whole program for a DB-API driver: its clients run as threads. Returns the exit status."""
    args = parse_args(doc)
    transcripts = [Transcript(c) for c in range(args.clients)]
    errors = [None] * args.clients

    def client_thread(client):
        try:
            _run_dbapi_client(driver, args, transcripts[client])
        except Exception as error:  # reported after the transcript; the other clients go on
            errors[client] = error

    threads = [threading.Thread(target=client_thread, args=(c,)) for c in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    if not report(args, transcripts, errors):
        return 1
    with driver.connect(args) as conn:
        rows, ids = conn.execute(PYFORMAT_SQL.total).fetchone()
    print_total(rows, ids)
    return 0
