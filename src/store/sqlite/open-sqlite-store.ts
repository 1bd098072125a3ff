import type BetterSqlite3 from 'better-sqlite3';
import { IntermissionError } from '../../domain/index.js';
import { busyTimeoutOf, MEMORY_PATH, type OpenSqliteStoreOptions } from './sqlite-config.js';
import { toStoreError } from './sqlite-errors.js';
import { createSqliteStore, type SqliteEventStore } from './sqlite-store.js';

/**
 * Opens (creating if needed) the SQLite store at `path`, or an in-memory one for `':memory:'`, and
 * brings its schema up to date. The only module that knows the driver is better-sqlite3; it is
 * loaded on first use, so that a build without the native module can still run other stores.
 *
 * Throws STORE_FAILURE when the driver cannot be loaded, the file cannot be opened or is not an
 * Intermission database this build can use (e.g. a newer schema), and INVALID_INPUT for bad options.
 */
export async function openSqliteStore(options: OpenSqliteStoreOptions): Promise<SqliteEventStore> {
  const { path } = options;
  if (typeof path !== 'string' || path.trim() === '') {
    throw new IntermissionError('INVALID_INPUT', 'the SQLite store needs a file path or ":memory:"');
  }
  const busyTimeoutMs = busyTimeoutOf(options);
  let Database: typeof BetterSqlite3;
  try {
    ({ default: Database } = await import('better-sqlite3'));
  } catch (error) {
    throw new IntermissionError(
      'STORE_FAILURE',
      'the SQLite driver (better-sqlite3) cannot be loaded; reinstall dependencies for this platform and Node version',
      { cause: error, retryable: false },
    );
  }
  let database: BetterSqlite3.Database;
  try {
    database = new Database(path, { timeout: busyTimeoutMs });
  } catch (error) {
    throw toStoreError(error, `open ${path}`);
  }
  return createSqliteStore({ database, inMemory: path === MEMORY_PATH, busyTimeoutMs });
}
