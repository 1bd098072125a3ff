import { IntermissionError } from '../../domain/index.js';

/**
 * Primary SQLite result codes after which the same call can succeed later: a lock held by another
 * process, a transient I/O error, a full disk that gets freed. Every other code (constraint, type
 * mismatch, corrupt or foreign file, read-only file, bad SQL) fails the same way again.
 */
export const RETRYABLE_SQLITE_CODES: ReadonlySet<string> = new Set([
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  'SQLITE_IOERR',
  'SQLITE_FULL',
  'SQLITE_PROTOCOL',
  'SQLITE_INTERRUPT',
]);

/** The primary result code of an SQLite error code: `SQLITE_CONSTRAINT_CHECK` → `SQLITE_CONSTRAINT`. */
export function primarySqliteCode(code: string): string {
  return /^SQLITE_[A-Z]+/.exec(code)?.[0] ?? code;
}

/**
 * The one place that turns what the driver throws into our error: STORE_FAILURE with the driver's
 * error as `cause`, its SQLite code in `details.sqliteCode`, and retryability from the code. Our own
 * errors pass through unchanged.
 */
export function toStoreError(error: unknown, action: string): IntermissionError {
  if (error instanceof IntermissionError) return error;
  const code =
    typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
      ? error.code
      : undefined;
  const text = error instanceof Error ? error.message : String(error);
  const retryable = code !== undefined && RETRYABLE_SQLITE_CODES.has(primarySqliteCode(code));
  return new IntermissionError('STORE_FAILURE', `SQLite store could not ${action}: ${text}`, {
    cause: error,
    retryable,
    details: code === undefined ? { action } : { action, sqliteCode: code },
  });
}
