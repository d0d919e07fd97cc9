#!/usr/bin/python3
"""The driver-matrix workload (README.md) for psycopg 3 with its default settings.

Defaults that matter here: autocommit is off (every statement runs in a transaction that the
program commits or rolls back), and prepare_threshold is 5, so each query that runs a sixth time
on a connection is prepared server-side as _pg3_N and executed by name from then on.

The workload itself is workload_common's, shared with psycopg2_workload.py; this program only
says how to use psycopg 3.
"""

import sys

import psycopg

import workload_common  # a sibling module: the script's directory is first on sys.path


def connect(args):
    return psycopg.connect(host=args.host, port=args.port, dbname=args.dbname, user=args.user)


DRIVER = workload_common.DbApiDriver(connect=connect, error=psycopg.Error, sqlstate=lambda error: error.sqlstate)

if __name__ == "__main__":
    sys.exit(workload_common.dbapi_main(__doc__, DRIVER))
