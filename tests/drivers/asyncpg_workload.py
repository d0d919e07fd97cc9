#!/usr/bin/python3
"""The driver-matrix workload (README.md) for asyncpg with its default settings.

asyncpg prepares every statement server-side (named __asyncpg_stmt_N__) the first time it runs on
a connection and keeps it in its statement cache (statement_cache_size=100), so from then on every
query is a Bind/Execute of a named statement. Autocommit unless inside conn.transaction().
"""

import argparse
import asyncio
import datetime
import sys
import traceback

import asyncpg

ADD = "SELECT $1::int + $2::int AS sum"
DIV = "SELECT 1000 / $1::int AS quotient"
INSERT = "INSERT INTO driver_matrix (id, client, val) VALUES ($1::int, $2::int, $3::text)"
GET = "SELECT val FROM driver_matrix WHERE id = $1::int"
ROWS = (
    "SELECT n, 'row ' || n AS label, round(n * $1::int / 4.0, 2) AS quarter, mod(n, 2) = 0 AS even,"
    " CASE WHEN mod(n, 3) = 0 THEN NULL ELSE n * 10 END AS maybe,"
    " timestamptz '2024-02-29 23:30:00+00' + n * interval '45 minutes' AS at"
    " FROM generate_series(1, $2::int) AS n ORDER BY n"
)
COUNT = "SELECT count(*)::int, coalesce(sum(id), 0)::bigint FROM driver_matrix WHERE client = $1::int"
TOTAL = "SELECT count(*)::int, coalesce(sum(id), 0)::bigint FROM driver_matrix"


def render(value):
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


async def connect(args):
    return await asyncpg.connect(host=args.host, port=args.port, database=args.dbname, user=args.user)


async def expect_error(coroutine):
    """Awaits a statement that should fail and returns its SQLSTATE."""
    try:
        await coroutine
    except asyncpg.PostgresError as error:
        return error.sqlstate
    return "none"


async def run_client(args, client, lines):
    base = (client + 1) * 100000
    conn = await connect(args)
    try:
        for i in range(args.iterations):
            phase = i % 25
            total = await conn.fetchval(ADD, i, client)
            quotient = await conn.fetchval(DIV, i + 1)
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute(INSERT, base + i, client, f"c{client}-i{i}")
            if phase == 24:
                await transaction.rollback()
                outcome = "rollback"
            else:
                await transaction.commit()
                outcome = "commit"
            val = await conn.fetchval(GET, base + i)
            lines.append(f"c{client} i{i} sum={total} quotient={quotient} {outcome} val={render(val)}")
            for row in await conn.fetch(ROWS, client + 1, 1 + i % 3):
                n, label, quarter, even, maybe, at = (render(v) for v in row)
                lines.append(
                    f"c{client} i{i} row n={n} label={label} quarter={quarter} even={even} maybe={maybe} at={at}"
                )
            if phase == 10:
                transaction = conn.transaction()
                await transaction.start()
                await conn.execute(INSERT, base + 50000 + i, client, "doomed")
                state = await expect_error(conn.fetchval(DIV, 0))
                await transaction.rollback()
                val = await conn.fetchval(GET, base + 50000 + i)
                lines.append(f"c{client} i{i} error-in-transaction sqlstate={state} val={render(val)}")
            if phase == 16:
                state = await expect_error(conn.fetchval(DIV, 0))
                lines.append(f"c{client} i{i} error-outside-transaction sqlstate={state}")
            if phase == 20:
                transaction = conn.transaction()
                await transaction.start()
                state = await expect_error(conn.execute(INSERT, base + i, client, "duplicate"))
                await transaction.rollback()
                val = await conn.fetchval(GET, base + i)
                lines.append(f"c{client} i{i} unique-violation sqlstate={state} val={render(val)}")
        rows, ids = await conn.fetchrow(COUNT, client)
        lines.append(f"c{client} end rows={rows} ids={ids}")
    finally:
        await conn.close()


async def amain(args):
    transcripts = [[] for _ in range(args.clients)]
    results = await asyncio.gather(
        *(run_client(args, c, transcripts[c]) for c in range(args.clients)), return_exceptions=True
    )
    print(f"driver-matrix clients={args.clients} iterations={args.iterations}")
    for lines in transcripts:
        for line in lines:
            print(line)
    failed = False
    for client, result in enumerate(results):
        if isinstance(result, BaseException):
            failed = True
            text = "".join(traceback.format_exception(type(result), result, result.__traceback__))
            sys.stderr.write(f"client {client}:\n{text}")
    if failed:
        return 1
    conn = await connect(args)
    try:
        rows, ids = await conn.fetchrow(TOTAL)
    finally:
        await conn.close()
    print(f"total rows={rows} ids={ids}")
    return 0


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
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
