#!/usr/bin/python3
"""A session that must outlive a live upgrade of sluiced (tests/integration/upgrade_moves_test.cpp).

With psycopg 3 and with asyncpg, one connection each: session settings (SET), named protocol-level
prepared statements, then a pause while the test upgrades sluiced (this program writes READY_FILE
and waits for GO_FILE), then the same connection again: the settings are still in force and the
statements still run by name. Any error, a dropped connection included, ends it with exit code 1.

    upgrade_session_check.py --host DIR --port N --dbname D --user U --ready FILE --go FILE
"""

import argparse
import asyncio
import os
import sys
import time

import asyncpg
import psycopg

SETTINGS = [("work_mem", "7MB"), ("application_name", "moved_app"), ("app.tenant", "t18")]
SHOW = "SELECT current_setting('work_mem'), current_setting('application_name'), current_setting('app.tenant')"


def wait_for(path, timeout=30):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError("no " + path)
        time.sleep(0.02)


def show(row):
    return ",".join(str(value) for value in row)


async def run(args):
    sync = psycopg.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.user, autocommit=True)
    for name, value in SETTINGS:
        sync.execute(f"SET {name} = '{value}'")
    # prepare=True: a named statement (_pg3_N) from the first execution on.
    before = sync.execute("SELECT %s::int + 1", (41,), prepare=True).fetchone()[0]
    sync.execute("SELECT %s::text || 'x'", ("a",), prepare=True)

    conn = await asyncpg.connect(host=args.host, port=args.port, database=args.dbname, user=args.user)
    for name, value in SETTINGS:
        await conn.execute(f"SET {name} = '{value}'")
    statement = await conn.prepare("SELECT $1::int * 2")
    assert await statement.fetchval(21) == 42

    open(args.ready, "w").close()
    wait_for(args.go)

    print("psycopg", before, sync.execute("SELECT %s::int + 1", (41,), prepare=True).fetchone()[0],
          sync.execute("SELECT %s::text || 'x'", ("b",), prepare=True).fetchone()[0],
          show(sync.execute(SHOW).fetchone()))
    print("asyncpg", await statement.fetchval(21), await conn.fetchval("SELECT $1::int - 1", 43),
          show(await conn.fetchrow(SHOW)))
    await conn.close()
    sync.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for option in ("--host", "--dbname", "--user", "--ready", "--go"):
        parser.add_argument(option, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    except Exception as error:  # noqa: BLE001 - any failure is the test's answer
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
