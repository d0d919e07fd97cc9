#!/usr/bin/python3
"""The driver-matrix workload (README.md) for psycopg2 with its default settings.

psycopg2 never prepares server-side: it interpolates the parameters into the query text and sends
it with the simple query protocol. Autocommit is off by default, as in psycopg 3: every statement
runs in a transaction that the program commits or rolls back.

The workload itself is workload_common's, shared with psycopg3_workload.py; this program only
says how to use psycopg2.
"""

import sys

import psycopg2

import workload_common  # a sibling module: the script's directory is first on sys.path


class Connection:
    """psycopg 3's conn.execute() on top of psycopg2, so that both run workload_common's code."""

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


DRIVER = workload_common.DbApiDriver(connect=Connection, error=psycopg2.Error, sqlstate=lambda error: error.pgcode)

if __name__ == "__main__":
    sys.exit(workload_common.dbapi_main(__doc__, DRIVER))
