import type Pg from 'pg';
import { IntermissionError } from '../../domain/index.js';
import { POSTGRES_TYPE_PARSERS, postgresPoolSettings, type OpenPostgresStoreOptions } from './postgres-config.js';
import { toStoreError } from './postgres-errors.js';
import { createPostgresStore, type PostgresEventStore } from './postgres-store.js';

/**
 * Opens the PostgreSQL store at `connectionString` (or where the PG* environment points) with a
 * bounded node-postgres pool, and brings its schema up to date. The only module that knows the
 * driver is node-postgres; it is loaded on first use, so that a build without it still runs SQLite.
 *
 * Throws STORE_FAILURE when the driver cannot be loaded or the database cannot be reached or used
 * (retryable when the server may come back: a refused connection, a server starting), INVALID_INPUT
 * for bad options.
 */
export async function openPostgresStore(options: OpenPostgresStoreOptions = {}): Promise<PostgresEventStore> {
  const settings = postgresPoolSettings(options);
  let pg: typeof Pg;
  try {
    ({ default: pg } = await import('pg'));
  } catch (error) {
    throw new IntermissionError(
      'STORE_FAILURE',
      'the PostgreSQL driver (pg) cannot be loaded; reinstall dependencies',
      { cause: error, retryable: false },
    );
  }
  const types = new pg.TypeOverrides();
  for (const p of POSTGRES_TYPE_PARSERS) types.setTypeParser(p.oid, 'text', p.parse);
  let pool: Pg.Pool;
  try {
    pool = new pg.Pool({ ...settings, types });
  } catch (error) {
    throw toStoreError(error, 'configure the connection pool');
  }
  // An idle connection that breaks (a server restart, a failover) is dropped by the pool; without a
  // listener its 'error' event would end the process.
  const onPoolError = options.onPoolError ?? ((): void => undefined);
  pool.on('error', onPoolError);
  return createPostgresStore({ pool, ...(options.onPoolError ? { onPoolError: options.onPoolError } : {}) });
}
