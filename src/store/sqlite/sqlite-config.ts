import { IntermissionError } from '../../domain/index.js';

/**
 * The slice of an SQLite driver that the store depends on, declared here rather than imported, so
 * that nothing but the factory (`open-sqlite-store.ts`) knows which driver runs underneath. A
 * better-sqlite3 `Database` fits as it is; so does any object with the same two methods.
 */
export interface SqliteDatabase {
  /** Compiles one SQL statement. Throws the driver's error for bad SQL or a broken database. */
  prepare(sql: string): SqliteStatement;
  /** Closes the database; later calls fail. */
  close(): void;
}

/** A compiled statement, as Kysely's SQLite dialect runs it. */
export interface SqliteStatement {
  /** True when the statement returns rows (SELECT, RETURNING, most PRAGMAs). */
  readonly reader: boolean;
  all(parameters: readonly unknown[]): unknown[];
  run(parameters: readonly unknown[]): { changes: number | bigint; lastInsertRowid: number | bigint };
  iterate(parameters: readonly unknown[]): IterableIterator<unknown>;
}

/** How long a writer waits for another connection's lock before failing with SQLITE_BUSY. */
export const DEFAULT_BUSY_TIMEOUT_MS = 5_000;

/** The busy timeout of `options`, checked: INVALID_INPUT unless an integer of 0 or more. */
export function busyTimeoutOf(options: SqliteStoreOptions): number {
  const ms = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new IntermissionError('INVALID_INPUT', `busyTimeoutMs must be an integer of 0 or more, got ${ms}`);
  }
  return ms;
}

/** The path that makes SQLite keep the database in memory, gone when it is closed. */
export const MEMORY_PATH = ':memory:';

/** Options shared by both ways of making an SQLite store. */
export interface SqliteStoreOptions {
  /**
   * How long to wait for a lock held by another connection (milliseconds). Default
   * {@link DEFAULT_BUSY_TIMEOUT_MS}.
   */
  readonly busyTimeoutMs?: number;
}

/** Options of {@link createSqliteStore}: a database opened by the caller. */
export interface CreateSqliteStoreOptions extends SqliteStoreOptions {
  /** The database; the store owns it from now on and closes it on `close()` or a failed open. */
  readonly database: SqliteDatabase;
  /**
   * True when the database lives in memory: it then cannot use WAL, and nothing outlives `close()`.
   * Default false, which makes the store insist on WAL.
   */
  readonly inMemory?: boolean;
}

/** Options of {@link openSqliteStore}. */
export interface OpenSqliteStoreOptions extends SqliteStoreOptions {
  /** A file path (created if missing, its directory must exist) or `':memory:'`. */
  readonly path: string;
}

/**
 * The connection settings, each with the failure it prevents. Applied on every open, before the
 * migrations run.
 */
export function sqlitePragmas(options: { busyTimeoutMs: number; inMemory: boolean }): readonly SqlitePragma[] {
  return [
    // Wait for a lock instead of failing at once when a second process (a CLI) touches the file.
    { name: 'busy_timeout', value: String(options.busyTimeoutMs), expect: String(options.busyTimeoutMs) },
    // Readers never block the writer and a crash mid-write cannot corrupt the file. An in-memory
    // database has no file and reports "memory".
    { name: 'journal_mode', value: 'WAL', expect: options.inMemory ? 'memory' : 'wal' },
    // Sync the WAL on every commit: with NORMAL, a power cut could drop the last commits, and a
    // restarted controller would then hand out a DocumentIncarnation that tenants already saw.
    { name: 'synchronous', value: 'FULL', expect: '2' },
    // Later tables (rollouts, host steps) reference each other; SQLite ignores REFERENCES without this.
    { name: 'foreign_keys', value: 'ON', expect: '1' },
  ];
}

/** One `PRAGMA name = value`, and the value that reading it back must give. */
export interface SqlitePragma {
  readonly name: string;
  readonly value: string;
  readonly expect: string;
}
