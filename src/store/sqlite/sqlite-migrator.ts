import type { Kysely } from 'kysely';
import {
  MIGRATIONS_TABLE,
  migrate,
  type MigrationEngine,
  type MigrationReport,
  type MigrationResult,
  type StoreDatabase,
} from '../sql/index.js';
import type { SqliteMigration } from './migrations/index.js';
import { toStoreError } from './sqlite-errors.js';
import { inWriteTransaction } from './sqlite-transaction.js';

/** The table that records applied migrations; created before any migration runs. */
export const SQLITE_MIGRATIONS_TABLE_DDL = `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
  version INTEGER NOT NULL PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT`;

/** What {@link migrateSqlite} did (see `MigrationResult`). */
export type SqliteMigrationResult = MigrationResult;
/** The rows one data-repairing migration found and repaired (see `MigrationReport`). */
export type SqliteMigrationReport = MigrationReport;

/** SQLite for the shared migrator: each migration in a `BEGIN IMMEDIATE` transaction. */
export const SQLITE_MIGRATION_ENGINE: MigrationEngine = {
  name: 'SQLite',
  migrationsTableDdl: SQLITE_MIGRATIONS_TABLE_DDL,
  transaction: inWriteTransaction,
  toStoreError,
};

/**
 * Brings the database up to the last of `migrations` (see `migrate` in `../sql/migrator.ts`):
 * forward only, each migration in its own write transaction with its row in
 * `intermission_migrations`; a newer or foreign history is refused with STORE_FAILURE.
 */
export function migrateSqlite(
  db: Kysely<StoreDatabase>,
  migrations: readonly SqliteMigration[],
): Promise<SqliteMigrationResult> {
  return migrate(db, migrations, SQLITE_MIGRATION_ENGINE);
}
