import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { openSqliteStore, type SqliteEventStore } from '../../src/store/sqlite/index.js';
import { importFailure, storeSkipReason } from './store-matrix.js';

/** Why the SQLite tests do not run (not selected, or the native driver does not load), or undefined. */
export const sqliteSkip: string | undefined = await storeSkipReason('sqlite', () => importFailure('better-sqlite3'));

/** A temporary directory for database files, removed by `cleanup`. */
export async function tempDir(): Promise<{
  path: string;
  file: (name: string) => string;
  cleanup: () => Promise<void>;
}> {
  const path = await mkdtemp(join(tmpdir(), 'intermission-store-'));
  return {
    path,
    file: (name) => join(path, name),
    cleanup: () => rm(path, { recursive: true, force: true }),
  };
}

/**
 * SQLite database files for a contract run, in a temporary directory removed after the file's
 * tests: `newStore` opens a fresh file, `openAgain` opens the file of a store this opened (a restart,
 * or another process on the same data).
 */
export async function sqliteFiles(prefix: string): Promise<{
  newStore: () => Promise<SqliteEventStore>;
  openAgain: (store: SqliteEventStore) => Promise<SqliteEventStore>;
}> {
  const dir = await tempDir();
  after(() => dir.cleanup());
  const paths = new WeakMap<SqliteEventStore, string>();
  let count = 0;
  const openAt = async (path: string): Promise<SqliteEventStore> => {
    const store = await openSqliteStore({ path });
    paths.set(store, path);
    return store;
  };
  return {
    newStore: () => openAt(dir.file(`${prefix}-${++count}.db`)),
    openAgain: (store) => {
      const path = paths.get(store);
      if (path === undefined) throw new Error('a store that this harness did not open');
      return openAt(path);
    },
  };
}
