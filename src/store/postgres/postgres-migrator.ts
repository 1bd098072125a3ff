import type { Kysely } from 'kysely';
import {
  MIGRATIONS_TABLE,
  migrate,
  type MigrationEngine,
  type MigrationResult,
  type StoreDatabase,
} from '../sql/index.js';
import type { PostgresMigration } from './migrations/index.js';
import { toStoreError } from './postgres-errors.js';
import { inMigrationTransaction } from './postgres-transaction.js';

/** The table that records applied migrations; created (under the migration lock) before any migration runs. */
export const POSTGRES_MIGRATIONS_TABLE_DDL = `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
  version integer NOT NULL PRIMARY KEY,
  name text NOT NULL,
  applied_at text NOT NULL DEFAULT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
)`;

/** PostgreSQL for the shared migrator: each migration in its own transaction, under an advisory lock. */
export const POSTGRES_MIGRATION_ENGINE: MigrationEngine = {
  name: 'PostgreSQL',
  migrationsTableDdl: POSTGRES_MIGRATIONS_TABLE_DDL,
  transaction: inMigrationTransaction,
  toStoreError,
};

/**
 * Brings the database up to the last of `migrations` (see `migrate` in `../sql/migrator.ts`).
 * Several processes may open one database at once: the advisory lock lets one migrate at a time,
 * and the others skip what it applied.
 */
export function migratePostgres(
  db: Kysely<StoreDatabase>,
  migrations: readonly PostgresMigration[],
): Promise<MigrationResult> {
  return migrate(db, migrations, POSTGRES_MIGRATION_ENGINE);
}
