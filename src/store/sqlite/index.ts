/**
 * The embedded SQLite store. `openSqliteStore({ path })` is the usual entry; `createSqliteStore`
 * takes any database that fits {@link SqliteDatabase}. The migrations, the DDL and the schema dump are
 * exported for review and tooling.
 */
export { openSqliteStore } from './open-sqlite-store.js';
export { SqliteEventStore, createSqliteStore, SQLITE_ENGINE, SQLITE_STORE_CAPABILITIES } from './sqlite-store.js';
export {
  DEFAULT_BUSY_TIMEOUT_MS,
  MEMORY_PATH,
  busyTimeoutOf,
  sqlitePragmas,
  type CreateSqliteStoreOptions,
  type OpenSqliteStoreOptions,
  type SqliteDatabase,
  type SqlitePragma,
  type SqliteStatement,
  type SqliteStoreOptions,
} from './sqlite-config.js';
export { SQLITE_MIGRATIONS, SQLITE_SCHEMA_VERSION, type SqliteMigration } from './migrations/index.js';
export {
  migrateSqlite,
  SQLITE_MIGRATIONS_TABLE_DDL,
  type SqliteMigrationReport,
  type SqliteMigrationResult,
} from './sqlite-migrator.js';
export {
  SQLITE_DDL,
  SQLITE_SCHEMA_DUMP_PATH,
  formatSqliteSchema,
  migrationLabel,
  type SqliteSchemaObject,
} from './sqlite-schema.js';
export { RETRYABLE_SQLITE_CODES, toStoreError } from './sqlite-errors.js';
