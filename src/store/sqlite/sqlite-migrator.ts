import { sql, type Kysely } from 'kysely';
import { IntermissionError } from '../../domain/index.js';
import { MIGRATIONS_TABLE, type StoreDatabase } from '../sql/index.js';
import type { SqliteMigration } from './migrations/index.js';
import { toStoreError } from './sqlite-errors.js';
import { inWriteTransaction } from './sqlite-transaction.js';

/** The table that records applied migrations; created before any migration runs. */
export const SQLITE_MIGRATIONS_TABLE_DDL = `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
  version INTEGER NOT NULL PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT`;

/** What {@link migrateSqlite} did. */
export interface SqliteMigrationResult {
  /** Schema version found on open (0 for a new database). */
  readonly from: number;
  /** Schema version now. */
  readonly to: number;
  /** Versions applied by this call, in order. */
  readonly applied: readonly number[];
  /** What the applied migrations that repair data repaired (see `SqliteMigration.report`), in order. */
  readonly reports: readonly SqliteMigrationReport[];
}

/** The rows one data-repairing migration found and repaired, as they were before. */
export interface SqliteMigrationReport {
  readonly version: number;
  readonly name: string;
  readonly summary: string;
  readonly rows: readonly Readonly<Record<string, unknown>>[];
}

/**
 * Brings the database up to the last of `migrations`, forward only: each pending migration runs in
 * its own write transaction together with its row in `intermission_migrations`, so a failure leaves
 * the database at the previous version. A process that finds a migration already applied by another
 * process skips it. Refuses, with STORE_FAILURE that is not retryable, a database whose history this
 * build does not know: a newer schema (written by a newer release) or a renamed migration.
 */
export async function migrateSqlite(
  db: Kysely<StoreDatabase>,
  migrations: readonly SqliteMigration[],
): Promise<SqliteMigrationResult> {
  checkMigrationList(migrations);
  const from = await step(db, 'read the schema version', async (trx) => {
    await sql.raw(SQLITE_MIGRATIONS_TABLE_DDL).execute(trx);
    return currentVersion(trx, migrations);
  });
  const applied: number[] = [];
  const reports: SqliteMigrationReport[] = [];
  for (const migration of migrations) {
    if (migration.version <= from) continue;
    const label = `apply migration ${String(migration.version).padStart(6, '0')}-${migration.name}`;
    const ran = await step(db, label, async (trx) => {
      if ((await currentVersion(trx, migrations)) >= migration.version) return false;
      if (migration.report) {
        const found = await sql.raw<Record<string, unknown>>(migration.report.sql).execute(trx);
        if (found.rows.length > 0) {
          const { version, name } = migration;
          reports.push({ version, name, summary: migration.report.summary, rows: found.rows });
        }
      }
      for (const statement of migration.statements) await sql.raw(statement).execute(trx);
      await trx
        .insertInto('intermission_migrations')
        .values({ version: migration.version, name: migration.name })
        .execute();
      return true;
    });
    if (ran) applied.push(migration.version);
  }
  return { from, to: migrations.at(-1)?.version ?? 0, applied, reports };
}

async function step<T>(
  db: Kysely<StoreDatabase>,
  action: string,
  work: (trx: Kysely<StoreDatabase>) => Promise<T>,
): Promise<T> {
  try {
    return await inWriteTransaction(db, work);
  } catch (error) {
    throw toStoreError(error, action);
  }
}

/** Reads the applied migrations and checks them against the known ones; returns the version. */
async function currentVersion(trx: Kysely<StoreDatabase>, migrations: readonly SqliteMigration[]): Promise<number> {
  const rows = await trx
    .selectFrom('intermission_migrations')
    .select(['version', 'name'])
    .orderBy('version', 'asc')
    .execute();
  const latest = migrations.at(-1)?.version ?? 0;
  const newest = rows.at(-1)?.version ?? 0;
  if (newest > latest) {
    throw new IntermissionError(
      'STORE_FAILURE',
      `the database has schema version ${newest}, newer than the ${latest} this build of Intermission knows: ` +
        'it was written by a newer release. Run that release (or a later one), or use another database file.',
      { retryable: false, details: { schemaVersion: newest, knownVersion: latest } },
    );
  }
  rows.forEach((row, index) => {
    const known = migrations[index];
    if (row.version !== index + 1 || known === undefined || known.name !== row.name) {
      throw new IntermissionError(
        'STORE_FAILURE',
        `the database's migration history does not match this build: it has ${row.version} ${JSON.stringify(row.name)} ` +
          `where this build has ${known ? `${known.version} ${JSON.stringify(known.name)}` : 'nothing'}`,
        { retryable: false, details: { version: row.version, name: row.name } },
      );
    }
  });
  return newest;
}

/** A programming error in the list itself: versions must run 1, 2, 3… without gaps. */
function checkMigrationList(migrations: readonly SqliteMigration[]): void {
  migrations.forEach((m, index) => {
    if (m.version !== index + 1 || m.name === '' || m.statements.length === 0) {
      throw new IntermissionError(
        'INTERNAL',
        `SQLite migration at position ${index} is malformed: version ${m.version} (expected ${index + 1}), ` +
          `name ${JSON.stringify(m.name)}, ${m.statements.length} statement(s)`,
      );
    }
  });
}
