// The driver-matrix workload (README.md) for node-postgres (pg) with its default settings.
//
// Every parameterised query is a named query ({name, text, values}): node-pg prepares it
// server-side under that name the first time it runs on a connection (Parse 'add', ...) and from
// then on only binds and executes the name. Every client uses the same names. Autocommit unless
// inside BEGIN ... COMMIT/ROLLBACK.
//
//   NODE_PATH=/usr/share/nodejs node node_pg_workload.js --host DIR --port N --dbname D --user U
'use strict';

const { Client } = require('pg');

const ADD = 'SELECT $1::int + $2::int AS sum';
const DIV = 'SELECT 1000 / $1::int AS quotient';
const INSERT = 'INSERT INTO driver_matrix (id, client, val) VALUES ($1::int, $2::int, $3::text)';
const GET = 'SELECT val FROM driver_matrix WHERE id = $1::int';
const ROWS =
  "SELECT n, 'row ' || n AS label, round(n * $1::int / 4.0, 2) AS quarter, mod(n, 2) = 0 AS even," +
  ' CASE WHEN mod(n, 3) = 0 THEN NULL ELSE n * 10 END AS maybe,' +
  " timestamptz '2024-02-29 23:30:00+00' + n * interval '45 minutes' AS at" +
  ' FROM generate_series(1, $2::int) AS n ORDER BY n';
const COUNT =
  'SELECT count(*)::int AS rows, coalesce(sum(id), 0)::bigint AS ids FROM driver_matrix WHERE client = $1::int';
const TOTAL = 'SELECT count(*)::int AS rows, coalesce(sum(id), 0)::bigint AS ids FROM driver_matrix';

function parseArgs(argv) {
  const values = { clients: '8', iterations: '100' };
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    values[argv[i].slice(2)] = argv[i + 1];
  }
  for (const name of ['host', 'port', 'dbname', 'user']) {
    if (values[name] === undefined) throw new Error(`--${name} is required`);
  }
  const args = {
    host: values.host,
    port: Number(values.port),
    dbname: values.dbname,
    user: values.user,
    clients: Number(values.clients),
    iterations: Number(values.iterations),
  };
  if (!(args.iterations >= 10 && args.iterations <= 50000)) throw new Error('--iterations must be 10..50000');
  return args;
}

function render(value) {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'boolean') return value ? 't' : 'f';
  if (value instanceof Date) return value.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return String(value);
}

async function connect(args) {
  // host is the Unix socket directory: node-pg then connects to <host>/.s.PGSQL.<port>.
  const client = new Client({ host: args.host, port: args.port, database: args.dbname, user: args.user });
  await client.connect();
  return client;
}

// Runs a query that should fail and returns its SQLSTATE; anything but a server error is rethrown.
async function expectError(client, query) {
  try {
    await client.query(query);
  } catch (err) {
    if (typeof err.code === 'string' && /^[0-9A-Z]{5}$/.test(err.code) && err.severity) return err.code;
    throw err;
  }
  return 'none';
}

// The first column of the first row, or null when there is no row.
async function one(client, query) {
  const result = await client.query({ ...query, rowMode: 'array' });
  return result.rows.length === 0 ? null : result.rows[0][0];
}

async function runClient(args, c, lines) {
  const base = (c + 1) * 100000;
  const client = await connect(args);
  try {
    for (let i = 0; i < args.iterations; ++i) {
      const phase = i % 25;
      const total = await one(client, { name: 'add', text: ADD, values: [i, c] });
      const quotient = await one(client, { name: 'div', text: DIV, values: [i + 1] });
      await client.query('BEGIN');
      await client.query({ name: 'insert', text: INSERT, values: [base + i, c, `c${c}-i${i}`] });
      let outcome;
      if (phase === 24) {
        await client.query('ROLLBACK');
        outcome = 'rollback';
      } else {
        await client.query('COMMIT');
        outcome = 'commit';
      }
      const val = await one(client, { name: 'get', text: GET, values: [base + i] });
      lines.push(`c${c} i${i} sum=${render(total)} quotient=${render(quotient)} ${outcome} val=${render(val)}`);
      const rows = await client.query({ name: 'rows', text: ROWS, values: [c + 1, 1 + (i % 3)], rowMode: 'array' });
      for (const row of rows.rows) {
        const [n, label, quarter, even, maybe, at] = row.map(render);
        lines.push(`c${c} i${i} row n=${n} label=${label} quarter=${quarter} even=${even} maybe=${maybe} at=${at}`);
      }
      if (phase === 10) {
        await client.query('BEGIN');
        await client.query({ name: 'insert', text: INSERT, values: [base + 50000 + i, c, 'doomed'] });
        const state = await expectError(client, { name: 'div', text: DIV, values: [0] });
        await client.query('ROLLBACK');
        const doomed = await one(client, { name: 'get', text: GET, values: [base + 50000 + i] });
        lines.push(`c${c} i${i} error-in-transaction sqlstate=${state} val=${render(doomed)}`);
      }
      if (phase === 16) {
        const state = await expectError(client, { name: 'div', text: DIV, values: [0] });
        lines.push(`c${c} i${i} error-outside-transaction sqlstate=${state}`);
      }
      if (phase === 20) {
        await client.query('BEGIN');
        const state = await expectError(client, { name: 'insert', text: INSERT, values: [base + i, c, 'duplicate'] });
        await client.query('ROLLBACK');
        const kept = await one(client, { name: 'get', text: GET, values: [base + i] });
        lines.push(`c${c} i${i} unique-violation sqlstate=${state} val=${render(kept)}`);
      }
    }
    const count = (await client.query({ name: 'count', text: COUNT, values: [c] })).rows[0];
    lines.push(`c${c} end rows=${render(count.rows)} ids=${render(count.ids)}`);
  } finally {
    await client.end();
  }
}

async function main() {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`node_pg_workload: ${err.message}\n`);
    return 2;
  }
  const transcripts = Array.from({ length: args.clients }, () => []);
  const results = await Promise.allSettled(transcripts.map((lines, c) => runClient(args, c, lines)));
  const out = [`driver-matrix clients=${args.clients} iterations=${args.iterations}`];
  for (const lines of transcripts) out.push(...lines);
  let failed = false;
  results.forEach((result, c) => {
    if (result.status === 'rejected') {
      failed = true;
      const err = result.reason;
      const code = err && err.code ? ` (SQLSTATE ${err.code})` : '';
      process.stderr.write(`client ${c}${code}:\n${err && err.stack ? err.stack : err}\n`);
    }
  });
  if (!failed) {
    const client = await connect(args);
    try {
      const total = (await client.query(TOTAL)).rows[0];
      out.push(`total rows=${render(total.rows)} ids=${render(total.ids)}`);
    } finally {
      await client.end();
    }
  }
  process.stdout.write(out.join('\n') + '\n');
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 1;
  },
);
