import { IntermissionError } from '../../domain/index.js';

/**
 * SQLSTATE classes after which the same call can succeed later: a lost or refused connection (08),
 * exhausted server resources such as too many connections or a full disk (53), an I/O error (58).
 */
export const RETRYABLE_SQLSTATE_CLASSES: ReadonlySet<string> = new Set(['08', '53', '58']);

/** Single SQLSTATEs after which the same call can succeed later, each with why. */
export const RETRYABLE_SQLSTATES: ReadonlySet<string> = new Set([
  '40001', // serialization_failure: another transaction won; the store retries these itself first
  '40P01', // deadlock_detected: the same
  '55P03', // lock_not_available
  '57014', // query_canceled: the statement timeout fired, e.g. behind a lock a stalled client held
  '57P01', // admin_shutdown: the server is stopping (a restart, a failover)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now: the server is starting
  '25006', // read_only_sql_transaction: connected to a standby, e.g. just after a failover
]);

/** SQLSTATEs of a serializable transaction that lost a race: run it again. */
export const SERIALIZATION_FAILURES: ReadonlySet<string> = new Set(['40001', '40P01']);

/** Node socket error codes of a server that cannot be reached now. */
export const RETRYABLE_SOCKET_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENOENT', // a unix socket that is not there: the server is down
]);

/**
 * node-postgres reports a lost connection and a connect timeout with a plain Error and no code;
 * these are its messages (pg 8), kept in this one constant as the only match on text.
 */
export const PG_CONNECTION_FAILURE_MESSAGE =
  /^(?:Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Client was closed and is not queryable)/;

/** The SQLSTATE of a server error (node-postgres `DatabaseError`: a `code` beside a `severity`). */
export function sqlStateOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const e = error as { code?: unknown; severity?: unknown };
  return typeof e.code === 'string' && typeof e.severity === 'string' && /^[0-9A-Z]{5}$/.test(e.code)
    ? e.code
    : undefined;
}

/** True for a serializable transaction that lost a race (see {@link SERIALIZATION_FAILURES}). */
export function isSerializationFailure(error: unknown): boolean {
  const state = sqlStateOf(error);
  return state !== undefined && SERIALIZATION_FAILURES.has(state);
}

/**
 * The one place that turns what node-postgres throws into our error: STORE_FAILURE with the
 * driver's error as `cause`, its SQLSTATE in `details.sqlState` (or the socket's code in
 * `details.socketCode`), and retryability from those. Constraint violations (23…), bad data (22…),
 * a missing table or bad SQL (42…), a refused login (28…) or a missing database (3D000) fail the
 * same way again. Our own errors pass through unchanged.
 */
export function toStoreError(error: unknown, action: string): IntermissionError {
  if (error instanceof IntermissionError) return error;
  const text = error instanceof Error ? error.message : String(error);
  const sqlState = sqlStateOf(error);
  const details: Record<string, unknown> = { action };
  let retryable: boolean;
  if (sqlState !== undefined) {
    details.sqlState = sqlState;
    const e = error as { constraint?: unknown; table?: unknown };
    if (typeof e.constraint === 'string') details.constraint = e.constraint;
    if (typeof e.table === 'string') details.table = e.table;
    retryable = RETRYABLE_SQLSTATES.has(sqlState) || RETRYABLE_SQLSTATE_CLASSES.has(sqlState.slice(0, 2));
  } else {
    const code =
      typeof error === 'object' && error !== null && 'code' in error && typeof error.code === 'string'
        ? error.code
        : undefined;
    if (code !== undefined) details.socketCode = code;
    retryable =
      (code !== undefined && RETRYABLE_SOCKET_CODES.has(code)) ||
      (code === undefined && PG_CONNECTION_FAILURE_MESSAGE.test(text));
  }
  return new IntermissionError('STORE_FAILURE', `PostgreSQL store could not ${action}: ${text}`, {
    cause: error,
    retryable,
    details,
  });
}
