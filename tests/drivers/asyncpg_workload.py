#!/usr/bin/python3
"""The driver-matrix workload (README.md) for asyncpg with its default settings.

asyncpg prepares every statement server-side (named __asyncpg_stmt_N__) the first time it runs on
a connection and keeps it in its statement cache (statement_cache_size=100), so from then on every
query is a Bind/Execute of a named statement. Autocommit unless inside conn.transaction().

The command line, the SQL and the transcript's format are workload_common's; the workload's steps
are written out here, since asyncpg is neither DB-API nor synchronous.
"""

import asyncio
import sys

import asyncpg

import workload_common  # a sibling module: the script's directory is first on sys.path
from workload_common import NUMBERED_SQL as SQL


async def connect(args):
    return await asyncpg.connect(host=args.host, port=args.port, database=args.dbname, user=args.user)


async def expect_error(coroutine):
    """Awaits a statement that should fail and returns its SQLSTATE."""
    try:
        await coroutine
    except asyncpg.PostgresError as error:
        return error.sqlstate
    return "none"


async def run_client(args, transcript):
    client = transcript.client
    base = (client + 1) * 100000
    conn = await connect(args)
    try:
        for i in range(args.iterations):
            phase = i % 25
            total = await conn.fetchval(SQL.add, i, client)
            quotient = await conn.fetchval(SQL.div, i + 1)
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute(SQL.insert, base + i, client, f"c{client}-i{i}")
            if phase == 24:
                await transaction.rollback()
                outcome = "rollback"
            else:
                await transaction.commit()
                outcome = "commit"
            val = await conn.fetchval(SQL.get, base + i)
            transcript.step(i, total, quotient, outcome, val)
            for row in await conn.fetch(SQL.rows, client + 1, 1 + i % 3):
                transcript.row(i, row)
            if phase == 10:
                transaction = conn.transaction()
                await transaction.start()
                await conn.execute(SQL.insert, base + 50000 + i, client, "doomed")
                state = await expect_error(conn.fetchval(SQL.div, 0))
                await transaction.rollback()
                val = await conn.fetchval(SQL.get, base + 50000 + i)
                transcript.error_in_transaction(i, state, val)
            if phase == 16:
                state = await expect_error(conn.fetchval(SQL.div, 0))
                transcript.error_outside_transaction(i, state)
            if phase == 20:
                transaction = conn.transaction()
                await transaction.start()
                state = await expect_error(conn.execute(SQL.insert, base + i, client, "duplicate"))
                await transaction.rollback()
                val = await conn.fetchval(SQL.get, base + i)
                transcript.unique_violation(i, state, val)
        rows, ids = await conn.fetchrow(SQL.count, client)
        transcript.end(rows, ids)
    finally:
        await conn.close()


async def amain(args):
    transcripts = [workload_common.Transcript(c) for c in range(args.clients)]
    results = await asyncio.gather(*(run_client(args, t) for t in transcripts), return_exceptions=True)
    # gather returns each client's exception in its place; a successful client's result is None
    errors = [result if isinstance(result, BaseException) else None for result in results]
    if not workload_common.report(args, transcripts, errors):
        return 1
    conn = await connect(args)
    try:
        rows, ids = await conn.fetchrow(SQL.total)
    finally:
        await conn.close()
    workload_common.print_total(rows, ids)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(amain(workload_common.parse_args(__doc__))))
