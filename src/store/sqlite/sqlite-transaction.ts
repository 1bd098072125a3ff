import { sql, type Kysely } from 'kysely';

/**
 * How a transaction starts. `immediate` takes the write lock up front: a deferred transaction that
 * reads first and writes later can fail with SQLITE_BUSY halfway when another process wrote in
 * between, without the busy timeout helping (Kysely's own `transaction()` is deferred). `deferred`
 * suits reads: in WAL mode it sees one consistent snapshot and blocks no writer.
 */
export type SqliteTransactionMode = 'deferred' | 'immediate';

/**
 * Runs `work` in one transaction on the store's single connection, and commits it, or rolls it back
 * and rethrows.
 */
export async function inTransaction<DB, T>(
  db: Kysely<DB>,
  mode: SqliteTransactionMode,
  work: (trx: Kysely<DB>) => Promise<T>,
): Promise<T> {
  return db.connection().execute(async (conn) => {
    await (mode === 'immediate' ? sql`begin immediate` : sql`begin deferred`).execute(conn);
    let result: T;
    try {
      result = await work(conn);
    } catch (error) {
      await rollbackQuietly(conn);
      throw error;
    }
    try {
      await sql`commit`.execute(conn);
    } catch (error) {
      await rollbackQuietly(conn);
      throw error;
    }
    return result;
  });
}

/**
 * Rolls back after a failure. SQLite has already rolled back by itself after some errors (I/O, full
 * disk), and then ROLLBACK fails with "no transaction is active": that outcome is the one wanted, and
 * the original error is the one to report.
 */
async function rollbackQuietly<DB>(conn: Kysely<DB>): Promise<void> {
  try {
    await sql`rollback`.execute(conn);
  } catch {
    // Already rolled back; see above.
  }
}

/** {@link inTransaction} for writes: `BEGIN IMMEDIATE`. */
export function inWriteTransaction<DB, T>(db: Kysely<DB>, work: (trx: Kysely<DB>) => Promise<T>): Promise<T> {
  return inTransaction(db, 'immediate', work);
}
