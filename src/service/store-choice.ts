import { join } from 'node:path';
import { IntermissionError } from '../domain/index.js';
import type { SqlStore } from '../store/sql/index.js';
import { describePostgresTarget, openPostgresStore } from '../store/postgres/index.js';
import { openSqliteStore } from '../store/sqlite/index.js';
import { preparePrivateDatabase } from './private-files.js';

/**
 * Where a controller keeps its state. `sqlite` (the embedded default): `<state>/intermission.db`,
 * one process's. `postgres`: a PostgreSQL database that several controller processes may share;
 * the connection string (absent: the PG* environment, as libpq reads it) says which.
 */
export type StoreLocation =
  { readonly kind: 'sqlite' } | { readonly kind: 'postgres'; readonly connectionString?: string };

/** The default of every command: SQLite in the state directory. */
export const DEFAULT_STORE_LOCATION: StoreLocation = Object.freeze({ kind: 'sqlite' });

/**
 * Reads `--store`: `sqlite`, `postgres` (everything from the PG* environment), or a
 * `postgres://…` / `postgresql://…` connection string. INVALID_INPUT otherwise.
 */
export function parseStoreLocation(text: string): StoreLocation {
  const value = text.trim();
  if (value === 'sqlite') return DEFAULT_STORE_LOCATION;
  if (value === 'postgres' || value === 'postgresql') return { kind: 'postgres' };
  if (/^postgres(?:ql)?:\/\//.test(value)) return { kind: 'postgres', connectionString: value };
  throw new IntermissionError(
    'INVALID_INPUT',
    '--store wants sqlite, postgres (from the PG* environment) or a postgres://user@host:port/database URL',
  );
}

/** Where `location` points, for the log: a file, or `postgresql user@host:port/database` (never a password). */
export function describeStoreLocation(location: StoreLocation, stateDir: string): string {
  return location.kind === 'sqlite'
    ? `sqlite ${join(stateDir, 'intermission.db')}`
    : `postgresql ${describePostgresTarget(location.connectionString)}`;
}

/**
 * Opens the store at `location` and brings its schema up to date. SQLite's file is created private
 * (mode 0600) in `stateDir`; a PostgreSQL store holds a bounded pool (see `openPostgresStore`).
 */
export async function openStoreAt(location: StoreLocation, stateDir: string): Promise<SqlStore> {
  if (location.kind === 'postgres') {
    return openPostgresStore(
      location.connectionString === undefined ? {} : { connectionString: location.connectionString },
    );
  }
  const path = join(stateDir, 'intermission.db');
  await preparePrivateDatabase(path);
  return openSqliteStore({ path });
}
