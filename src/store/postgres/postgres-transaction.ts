import { setTimeout as sleep } from 'node:timers/promises';
import { sql, type Kysely } from 'kysely';
import { isSerializationFailure } from './postgres-errors.js';

/**
 * How often a write runs at most when it keeps losing serialization races to other writers: enough
 * for a handful of controllers racing on one row, and bounded, so that a storm surfaces as a
 * retryable STORE_FAILURE instead of a call that never returns.
 */
export const MAX_WRITE_ATTEMPTS = 10;
/** The first pause between attempts; it doubles (with jitter) up to {@link MAX_RETRY_DELAY_MS}. */
export const FIRST_RETRY_DELAY_MS = 2;
export const MAX_RETRY_DELAY_MS = 200;

/**
 * Advisory lock held (for one transaction) by every migration step, so that of several processes
 * opening one database at once only one migrates at a time; the others then find the work done.
 * The number is "Intm" in ASCII; it only has to differ from other users' advisory locks.
 */
export const MIGRATION_LOCK_KEY = 0x496e746d;

/**
 * Runs `work` in one SERIALIZABLE transaction and commits it; when PostgreSQL aborts it because a
 * concurrent transaction made it unserializable (40001) or a deadlock (40P01), runs it again, at most
 * {@link MAX_WRITE_ATTEMPTS} times in all, with a short jittered pause. `work` must do nothing but
 * database calls, as it may run more than once. What the last attempt threw is rethrown.
 */
export async function inSerializableTransaction<DB, T>(
  db: Kysely<DB>,
  work: (trx: Kysely<DB>) => Promise<T>,
  options: { readonly attempts?: number } = {},
): Promise<T> {
  const attempts = options.attempts ?? MAX_WRITE_ATTEMPTS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction().setIsolationLevel('serializable').execute(work);
    } catch (error) {
      if (attempt >= attempts || !isSerializationFailure(error)) throw error;
      const ceiling = Math.min(MAX_RETRY_DELAY_MS, FIRST_RETRY_DELAY_MS * 2 ** (attempt - 1));
      await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
    }
  }
}

/**
 * Runs `work` in one REPEATABLE READ, READ ONLY transaction: every statement sees the same snapshot,
 * and a read-only transaction never fails for serialization.
 */
export function inSnapshotTransaction<DB, T>(db: Kysely<DB>, work: (trx: Kysely<DB>) => Promise<T>): Promise<T> {
  return db.transaction().setIsolationLevel('repeatable read').setAccessMode('read only').execute(work);
}

/**
 * Runs `work` in one READ COMMITTED transaction that first takes the migration lock
 * ({@link MIGRATION_LOCK_KEY}): READ COMMITTED so that each statement after the wait sees what the
 * process that held the lock committed.
 */
export function inMigrationTransaction<DB, T>(db: Kysely<DB>, work: (trx: Kysely<DB>) => Promise<T>): Promise<T> {
  return db
    .transaction()
    .setIsolationLevel('read committed')
    .execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(${sql.lit(MIGRATION_LOCK_KEY)})`.execute(trx);
      return work(trx);
    });
}
