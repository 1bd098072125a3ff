import { Kysely, PostgresDialect, sql } from 'kysely';
import { SqlStore, type MigrationResult, type SqlEngine, type StoreDatabase } from '../sql/index.js';
import type { StoreCapabilities } from '../store.js';
import { POSTGRES_MIGRATIONS } from './migrations/index.js';
import type { CreatePostgresStoreOptions } from './postgres-config.js';
import { toStoreError } from './postgres-errors.js';
import { migratePostgres } from './postgres-migrator.js';
import { formatPostgresSchema, POSTGRES_SCHEMA_QUERIES, type PostgresSchemaRows } from './postgres-schema.js';
import { inSerializableTransaction, inSnapshotTransaction } from './postgres-transaction.js';

/** Several processes (controller replicas) may share one PostgreSQL store. */
export const POSTGRES_STORE_CAPABILITIES: StoreCapabilities = Object.freeze({ multiProcess: true, rowLocks: true });

/**
 * PostgreSQL for the shared store. Every write is one SERIALIZABLE transaction, run again when it
 * loses a race to another writer (bounded; see `inSerializableTransaction`), so what SQLite gets
 * from its single writer holds across processes: of two creations over one host one sees the
 * other, and an incarnation is never lowered. A snapshot read (`loadEvents`) is one REPEATABLE READ,
 * READ ONLY transaction; other reads are single statements.
 */
export const POSTGRES_ENGINE: SqlEngine = {
  name: 'PostgreSQL',
  capabilities: POSTGRES_STORE_CAPABILITIES,
  readTransaction: inSnapshotTransaction,
  writeTransaction: (db, work) => inSerializableTransaction(db, work),
  toStoreError,
  // The server's clock, read when the statement runs (clock_timestamp, not the transaction's start).
  clockMs: (now) =>
    now === undefined
      ? sql<number>`floor(extract(epoch from clock_timestamp()) * 1000)::bigint`
      : sql<number>`cast(${now} as bigint)`,
};

/**
 * The event and rollout store on PostgreSQL, through Kysely's PostgreSQL dialect over a pool. Make
 * one with `openPostgresStore` (node-postgres, from a connection string or the PG* environment) or
 * {@link createPostgresStore} (any pool). The rules of both ports are those of `SqlStore`: the
 * writes of one store apply in call order; several stores (processes) on one database are
 * serialized by PostgreSQL.
 */
export class PostgresEventStore extends SqlStore {
  /** Use {@link createPostgresStore} or `openPostgresStore`: they run the migrations first. */
  constructor(db: Kysely<StoreDatabase>, migration: MigrationResult) {
    super(db, POSTGRES_ENGINE, migration);
  }

  /**
   * The normalized dump of the schema that the migrations left in the current schema (see
   * `formatPostgresSchema`), as committed in `src/store/postgres/schema.sql`.
   */
  async dumpSchema(): Promise<string> {
    return this.run('dump the schema', (db) =>
      inSnapshotTransaction(db, async (trx) => {
        const rows: Record<string, readonly Record<string, unknown>[]> = {};
        for (const [name, query] of Object.entries(POSTGRES_SCHEMA_QUERIES)) {
          rows[name] = (await sql.raw<Record<string, unknown>>(query).execute(trx)).rows;
        }
        const applied = await trx
          .selectFrom('intermission_migrations')
          .select(['version', 'name'])
          .orderBy('version')
          .execute();
        return formatPostgresSchema(rows as unknown as PostgresSchemaRows, applied);
      }),
    );
  }
}

/**
 * Makes a store over a pool the caller made, which the store owns from then on: runs the pending
 * migrations (under an advisory lock, so that several processes may open one database at once), and
 * ends the pool again if that fails. Throws STORE_FAILURE for a database it cannot use, including
 * one with a newer schema.
 */
export async function createPostgresStore(options: CreatePostgresStoreOptions): Promise<PostgresEventStore> {
  const db = new Kysely<StoreDatabase>({ dialect: new PostgresDialect({ pool: options.pool }) });
  try {
    const migration = await migratePostgres(db, POSTGRES_MIGRATIONS);
    return new PostgresEventStore(db, migration);
  } catch (error) {
    await db.destroy().catch(() => undefined);
    throw toStoreError(error, 'open the database');
  }
}
