import { execFile, spawnSync } from 'node:child_process';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { findPostgresBin, storeSkipReason } from './store-matrix.js';

/**
 * A throwaway PostgreSQL cluster per test file: `initdb` in a temporary directory, a server that
 * listens only on a unix socket in that directory (so parallel runs never meet, whatever the port
 * number names the socket), one database per store the tests ask for, all stopped and removed when
 * the file's tests end. As root the binaries run as the `postgres` user (PostgreSQL refuses root);
 * otherwise as the caller. The server trades durability for speed (fsync off): nothing outlives it.
 */

const run = promisify(execFile);
const PORT = 5432;
const ADMIN_DATABASE = 'postgres';
const SUPERUSER = 'postgres';

const bin = findPostgresBin();
const asRoot = process.getuid?.() === 0;

function unavailable(): Promise<string | undefined> {
  if (bin === undefined) {
    return Promise.resolve(
      'PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on PATH; ' +
        'apt-get install postgresql-15, or set INTERMISSION_PG_BIN)',
    );
  }
  if (asRoot && spawnSync('id', ['-u', SUPERUSER]).status !== 0) {
    return Promise.resolve(`running as root, and there is no ${SUPERUSER} user to run PostgreSQL as`);
  }
  return Promise.resolve(undefined);
}

const reason = await storeSkipReason('postgres', unavailable);
if (reason !== undefined && process.env.CI) {
  // CI installs PostgreSQL (.ci/run): there, a PostgreSQL test that would skip is a failure.
  throw new Error(`PostgreSQL tests cannot run under CI: ${reason}`);
}

/** Why the PostgreSQL tests do not run (not selected, or not installed), or undefined. */
export const postgresSkip: string | undefined = reason;

/** A running throwaway cluster. */
export interface PostgresCluster {
  /** The socket directory (also the cluster's home). */
  readonly dir: string;
  /** A connection string for `database` over the unix socket. */
  url(database: string): string;
  /** A fresh, empty database; returns its connection string. */
  createDatabase(): Promise<string>;
  /** Runs one statement in `database` (default the admin database) through a short-lived connection. */
  query<R extends object = Record<string, unknown>>(
    text: string,
    values?: readonly unknown[],
    database?: string,
  ): Promise<R[]>;
  /** Stops the server and removes its directory; idempotent. */
  stop(): Promise<void>;
}

/** Runs one of PostgreSQL's programs, as `postgres` when we are root. */
function pgCommand(program: string, args: readonly string[]): { file: string; args: string[] } {
  if (bin === undefined) throw new Error('PostgreSQL is not installed');
  const path = join(bin, program);
  return asRoot ? { file: 'runuser', args: ['-u', SUPERUSER, '--', path, ...args] } : { file: path, args: [...args] };
}

let databases = 0;

/**
 * Starts a cluster and stops it when the calling test file's tests end (and, failing that, when the
 * process exits). Only call it when {@link postgresSkip} is undefined.
 */
export async function startPostgresCluster(): Promise<PostgresCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'intermission-pg-'));
  if (asRoot) {
    const ids = spawnSync('id', ['-u', SUPERUSER], { encoding: 'utf8' }).stdout.trim();
    const gid = spawnSync('id', ['-g', SUPERUSER], { encoding: 'utf8' }).stdout.trim();
    await chown(dir, Number(ids), Number(gid));
  }
  const data = join(dir, 'data');
  const init = pgCommand('initdb', ['-D', data, '-A', 'trust', '-U', SUPERUSER, '-E', 'UTF8', '--no-sync']);
  await run(init.file, init.args);
  const serverOptions = [
    `-k ${dir}`,
    `-p ${PORT}`,
    "-c listen_addresses=''",
    // A throwaway cluster: no fsync, no autovacuum, small memory; modest on a shared machine.
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
    '-c autovacuum=off',
    '-c shared_buffers=16MB',
    '-c max_connections=100',
  ].join(' ');
  const start = pgCommand('pg_ctl', ['-D', data, '-w', '-l', join(dir, 'log'), '-o', serverOptions, 'start']);
  await run(start.file, start.args);
  let stopped = false;
  const stopNow = (): void => {
    if (stopped) return;
    stopped = true;
    const stop = pgCommand('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    spawnSync(stop.file, stop.args, { stdio: 'ignore' });
  };
  process.once('exit', stopNow);

  const url = (database: string): string =>
    `postgresql:///${encodeURIComponent(database)}?host=${encodeURIComponent(dir)}&port=${PORT}&user=${SUPERUSER}`;

  const cluster: PostgresCluster = {
    dir,
    url,
    async query<R extends object>(text: string, values: readonly unknown[] = [], database = ADMIN_DATABASE) {
      const client = new pg.Client({ connectionString: url(database) });
      await client.connect();
      try {
        return (await client.query<R>(text, [...values])).rows;
      } finally {
        await client.end();
      }
    },
    async createDatabase() {
      const name = `store_${process.pid}_${++databases}`;
      await cluster.query(`CREATE DATABASE ${name}`);
      return url(name);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      process.removeListener('exit', stopNow);
      const stop = pgCommand('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      await run(stop.file, stop.args).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
  after(() => cluster.stop());
  return cluster;
}
