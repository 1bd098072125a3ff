import { Kysely, SqliteDialect, sql } from 'kysely';
import { IntermissionError } from '../../domain/index.js';
import { SqlStore, type SqlEngine, type StoreDatabase } from '../sql/index.js';
import type { StoreCapabilities } from '../store.js';
import { SQLITE_MIGRATIONS } from './migrations/index.js';
import { busyTimeoutOf, sqlitePragmas, type CreateSqliteStoreOptions } from './sqlite-config.js';
import { toStoreError } from './sqlite-errors.js';
import { migrateSqlite, type SqliteMigrationResult } from './sqlite-migrator.js';
import { formatSqliteSchema, type SqliteSchemaObject } from './sqlite-schema.js';
import { inTransaction } from './sqlite-transaction.js';

/** SQLite is one process's store: no flag is set. */
export const SQLITE_STORE_CAPABILITIES: StoreCapabilities = Object.freeze({});

/**
 * SQLite for the shared store: every call runs on the database's single connection, one at a time;
 * a write is one `BEGIN IMMEDIATE` transaction (the write lock up front, so that it never fails
 * halfway on a lock another process took), a snapshot read one deferred transaction. One writer at
 * a time makes every write serializable.
 */
export const SQLITE_ENGINE: SqlEngine = {
  name: 'SQLite',
  capabilities: SQLITE_STORE_CAPABILITIES,
  readTransaction: (db, work) => inTransaction(db, 'deferred', work),
  writeTransaction: (db, work) => inTransaction(db, 'immediate', work),
  toStoreError,
  // The database's clock (the machine's, for an embedded file) unless a test gives the time.
  clockMs: (now) =>
    now === undefined
      ? sql<number>`cast((julianday('now') - 2440587.5) * 86400000.0 as integer)`
      : sql<number>`cast(${now} as integer)`,
};

/**
 * The embedded event and rollout store on SQLite, through Kysely over any {@link SqliteDatabase}.
 * Make one with {@link createSqliteStore} or `openSqliteStore`. The rules of both ports are those of
 * {@link SqlStore}; this class adds the schema dump.
 */
export class SqliteEventStore extends SqlStore {
  /** Use {@link createSqliteStore}: it applies the pragmas and migrations first. */
  constructor(db: Kysely<StoreDatabase>, migration: SqliteMigrationResult) {
    super(db, SQLITE_ENGINE, migration);
  }

  /**
   * The normalized dump of the schema (see `formatSqliteSchema`), as committed in
   * `src/store/sqlite/schema.sql`.
   */
  async dumpSchema(): Promise<string> {
    return this.run('dump the schema', async (db) => {
      const objects = await sql<{ type: string; name: string; tbl_name: string; sql: string }>`
        select type, name, tbl_name, sql from sqlite_schema
        where sql is not null and name not like 'sqlite_%'`.execute(db);
      const applied = await db.selectFrom('intermission_migrations').select(['version', 'name']).execute();
      return formatSqliteSchema(
        objects.rows.map((o): SqliteSchemaObject => ({
          type: o.type,
          name: o.name,
          tableName: o.tbl_name,
          sql: o.sql,
        })),
        applied,
      );
    });
  }
}

/**
 * Makes a store over a database the caller opened, which the store owns from then on: applies the
 * pragmas (see `sqlitePragmas`), runs the pending migrations, and closes the database again if any
 * of that fails. Throws STORE_FAILURE for a database it cannot use, including one with a newer schema.
 */
export async function createSqliteStore(options: CreateSqliteStoreOptions): Promise<SqliteEventStore> {
  let busyTimeoutMs: number;
  try {
    busyTimeoutMs = busyTimeoutOf(options);
  } catch (error) {
    options.database.close();
    throw error;
  }
  const db = new Kysely<StoreDatabase>({ dialect: new SqliteDialect({ database: options.database }) });
  try {
    for (const pragma of sqlitePragmas({ busyTimeoutMs, inMemory: options.inMemory ?? false })) {
      const set = await sql.raw(`PRAGMA ${pragma.name} = ${pragma.value}`).execute(db);
      const read = set.rows.length > 0 ? set : await sql.raw(`PRAGMA ${pragma.name}`).execute(db);
      const got = firstValue(read.rows[0]);
      if (got !== pragma.expect) {
        throw new IntermissionError(
          'STORE_FAILURE',
          `could not set PRAGMA ${pragma.name} = ${pragma.value}: the database reports ${JSON.stringify(got)}` +
            (pragma.name === 'journal_mode' ? ' (WAL needs a local file system)' : ''),
          { retryable: false, details: { pragma: pragma.name, expected: pragma.expect, got } },
        );
      }
    }
    const migration = await migrateSqlite(db, SQLITE_MIGRATIONS);
    return new SqliteEventStore(db, migration);
  } catch (error) {
    try {
      options.database.close();
    } catch {
      // The open already failed; that failure is the one to report.
    }
    throw toStoreError(error, 'open the database');
  }
}

/** The single value a PRAGMA reports (a number or a name), lowercased for comparison. */
function firstValue(row: unknown): string | undefined {
  if (typeof row !== 'object' || row === null) return undefined;
  const value: unknown = Object.values(row)[0];
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint'
    ? String(value).toLowerCase()
    : undefined;
}
