import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
