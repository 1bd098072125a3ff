import { sql, type Kysely } from 'kysely';
import { IntermissionError } from '../../domain/index.js';
import { migrationLabel, type SqlMigration } from './migration.js';
import type { StoreDatabase } from './schema.js';

/** What {@link migrate} did. */
export interface MigrationResult {
  /** Schema version found on open (0 for a new database). */
  readonly from: number;
  /** Schema version now. */
  readonly to: number;
  /** Versions applied by this call, in order. */
  readonly applied: readonly number[];
  /** What the applied migrations that repair data repaired (see `SqlMigration.report`), in order. */
  readonly reports: readonly MigrationReport[];
}

/** The rows one data-repairing migration found and repaired, as they were before. */
export interface MigrationReport {
  readonly version: number;
  readonly name: string;
  readonly summary: string;
  readonly rows: readonly Readonly<Record<string, unknown>>[];
}

/** What the migrator needs of an engine. */
export interface MigrationEngine {
  /** `SQLite`, `PostgreSQL`: named in messages. */
  readonly name: string;
  /** `CREATE TABLE IF NOT EXISTS intermission_migrations …` in the engine's SQL. */
  readonly migrationsTableDdl: string;
  /**
   * Runs `work` in one write transaction that excludes every other migrator of the same database
   * (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: an advisory lock taken first, in READ COMMITTED, so
   * that what another process committed while this one waited is seen), and commits it, or rolls
   * it back whole and rethrows.
   */
  transaction<T>(db: Kysely<StoreDatabase>, work: (trx: Kysely<StoreDatabase>) => Promise<T>): Promise<T>;
  /** The engine's one mapping of driver errors (see `toStoreError` in each engine folder). */
  toStoreError(error: unknown, action: string): IntermissionError;
}

/**
 * Brings the database up to the last of `migrations`, forward only: each pending migration runs in
 * its own write transaction together with its row in `intermission_migrations`, so a failure leaves
 * the database at the previous version. A process that finds a migration already applied by another
 * process skips it. Refuses, with STORE_FAILURE that is not retryable, a database whose history this
 * build does not know: a newer schema (written by a newer release) or a renamed migration.
 */
export async function migrate(
  db: Kysely<StoreDatabase>,
  migrations: readonly SqlMigration[],
  engine: MigrationEngine,
): Promise<MigrationResult> {
  checkMigrationList(engine, migrations);
  const step = async <T>(action: string, work: (trx: Kysely<StoreDatabase>) => Promise<T>): Promise<T> => {
    try {
      return await engine.transaction(db, work);
    } catch (error) {
      throw engine.toStoreError(error, action);
    }
  };
  const from = await step('read the schema version', async (trx) => {
    await sql.raw(engine.migrationsTableDdl).execute(trx);
    return currentVersion(trx, migrations);
  });
  const applied: number[] = [];
  const reports: MigrationReport[] = [];
  for (const migration of migrations) {
    if (migration.version <= from) continue;
    const ran = await step(`apply migration ${migrationLabel(migration)}`, async (trx) => {
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

/** Reads the applied migrations and checks them against the known ones; returns the version. */
async function currentVersion(trx: Kysely<StoreDatabase>, migrations: readonly SqlMigration[]): Promise<number> {
  const rows = (
    await trx.selectFrom('intermission_migrations').select(['version', 'name']).orderBy('version', 'asc').execute()
  ).map((r) => ({ version: Number(r.version), name: r.name }));
  const latest = migrations.at(-1)?.version ?? 0;
  const newest = rows.at(-1)?.version ?? 0;
  if (newest > latest) {
    throw new IntermissionError(
      'STORE_FAILURE',
      `the database has schema version ${newest}, newer than the ${latest} this build of Intermission knows: ` +
        'it was written by a newer release. Run that release (or a later one), or use another database.',
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

/**
 * A programming error in the list itself: versions must run 1, 2, 3… without gaps, and a migration
 * without statements must say why it has none.
 */
function checkMigrationList(engine: MigrationEngine, migrations: readonly SqlMigration[]): void {
  migrations.forEach((m, index) => {
    const empty = m.statements.length === 0 && (m.noop === undefined || m.noop.trim() === '');
    if (m.version !== index + 1 || m.name === '' || empty) {
      throw new IntermissionError(
        'INTERNAL',
        `${engine.name} migration at position ${index} is malformed: version ${m.version} (expected ${index + 1}), ` +
          `name ${JSON.stringify(m.name)}, ${m.statements.length} statement(s)` +
          (empty ? ' and no noop reason' : ''),
      );
    }
  });
}
