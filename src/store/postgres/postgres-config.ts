import type { PostgresPool } from 'kysely';
import { IntermissionError } from '../../domain/index.js';

/** Most connections one store holds open at once, unless told otherwise. */
export const DEFAULT_MAX_CONNECTIONS = 10;
/** How long to wait for a connection (a new one, or a free one of the pool) before failing, retryable. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/**
 * Longest one statement may run on the server. A stuck statement (a lock held by a stalled
 * process, a runaway plan) fails retryable instead of holding a connection and its locks for ever.
 */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;
/**
 * How long the server keeps a session that sits idle inside a transaction: a client that stalls
 * mid-transaction (SIGSTOP, a partition) loses it, and with it the locks that would block every
 * other controller.
 */
export const DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000;
/** How long an idle pooled connection stays open. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** The `application_name` the store's sessions show in `pg_stat_activity`. */
export const DEFAULT_APPLICATION_NAME = 'intermission';

/** Options shared by both ways of making a PostgreSQL store. */
export interface PostgresStoreOptions {
  /**
   * Called with an error of a connection that sat idle in the pool (the server restarted, the
   * network went): the pool drops that connection and the next call opens a new one. Default:
   * ignored, as the next call reports a failure that lasts.
   */
  readonly onPoolError?: (error: Error) => void;
}

/** Options of `openPostgresStore`. */
export interface OpenPostgresStoreOptions extends PostgresStoreOptions {
  /**
   * `postgres://user:password@host:port/database?sslmode=…`, or `postgresql:///database?host=/run/dir`
   * for a unix socket. What it leaves out comes from the environment as libpq reads it (`PGHOST`,
   * `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`); absent, everything does.
   */
  readonly connectionString?: string;
  /** Most connections held at once; default {@link DEFAULT_MAX_CONNECTIONS}. */
  readonly maxConnections?: number;
  /** Default {@link DEFAULT_CONNECT_TIMEOUT_MS}. */
  readonly connectTimeoutMs?: number;
  /** Default {@link DEFAULT_STATEMENT_TIMEOUT_MS}. */
  readonly statementTimeoutMs?: number;
  /** Default {@link DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS}. */
  readonly idleInTransactionTimeoutMs?: number;
  /** Default {@link DEFAULT_IDLE_TIMEOUT_MS}. */
  readonly idleTimeoutMs?: number;
  /** Default {@link DEFAULT_APPLICATION_NAME}. */
  readonly applicationName?: string;
}

/** Options of `createPostgresStore`: a pool made by the caller, which the store owns from then on. */
export interface CreatePostgresStoreOptions extends PostgresStoreOptions {
  /**
   * Any pool that fits Kysely's `PostgresPool` (node-postgres's `Pool` does). Its connections must
   * hand back bigint (int8) columns as numbers or decimal strings and json columns as text; see
   * {@link POSTGRES_TYPE_PARSERS}.
   */
  readonly pool: PostgresPool;
}

/** The settings of a node-postgres pool, checked, as `openPostgresStore` passes them. */
export interface PostgresPoolSettings {
  readonly connectionString?: string;
  readonly max: number;
  readonly connectionTimeoutMillis: number;
  readonly idleTimeoutMillis: number;
  readonly statement_timeout: number;
  readonly idle_in_transaction_session_timeout: number;
  readonly application_name: string;
  /** TCP keepalive, so that a dead peer behind an idle connection is found. */
  readonly keepAlive: true;
}

/** The pool settings of `options`, checked: INVALID_INPUT for a figure out of range. */
export function postgresPoolSettings(options: OpenPostgresStoreOptions): PostgresPoolSettings {
  const figure = (name: string, value: number | undefined, fallback: number, min: number, max: number): number => {
    const v = value ?? fallback;
    if (!Number.isSafeInteger(v) || v < min || v > max) {
      throw new IntermissionError('INVALID_INPUT', `${name} must be an integer from ${min} to ${max}, got ${v}`);
    }
    return v;
  };
  if (options.connectionString !== undefined && options.connectionString.trim() === '') {
    throw new IntermissionError('INVALID_INPUT', 'the PostgreSQL connection string is empty');
  }
  const hour = 3_600_000;
  return {
    ...(options.connectionString === undefined ? {} : { connectionString: options.connectionString }),
    max: figure('maxConnections', options.maxConnections, DEFAULT_MAX_CONNECTIONS, 1, 1000),
    connectionTimeoutMillis: figure('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS, 1, hour),
    idleTimeoutMillis: figure('idleTimeoutMs', options.idleTimeoutMs, DEFAULT_IDLE_TIMEOUT_MS, 1, hour),
    statement_timeout: figure('statementTimeoutMs', options.statementTimeoutMs, DEFAULT_STATEMENT_TIMEOUT_MS, 1, hour),
    idle_in_transaction_session_timeout: figure(
      'idleInTransactionTimeoutMs',
      options.idleInTransactionTimeoutMs,
      DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS,
      1,
      hour,
    ),
    application_name: options.applicationName ?? DEFAULT_APPLICATION_NAME,
    keepAlive: true,
  };
}

/**
 * How the store's connections read some column types, by type OID, each with the failure it
 * prevents. node-postgres's defaults would hand back bigint as a string (an incarnation in an error
 * detail would read "3", not 3) and json parsed (the codec reads JSON text, as SQLite gives it).
 */
export const POSTGRES_TYPE_PARSERS: readonly {
  readonly oid: number;
  readonly name: string;
  readonly parse: (text: string) => unknown;
}[] = Object.freeze([
  // int8: a number when JavaScript holds it exactly; otherwise the decimal text, which the codec
  // refuses as unreadable instead of reading a rounded value.
  { oid: 20, name: 'int8', parse: parseInt8 },
  // json and jsonb: the text as stored; the codec parses it.
  { oid: 114, name: 'json', parse: (text: string) => text },
  { oid: 3802, name: 'jsonb', parse: (text: string) => text },
]);

/** A bigint column's text as a number when it is a safe integer, else the text itself. */
export function parseInt8(text: string): number | string {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : text;
}

/**
 * Where a connection string points, for logs and messages: `user@host:port/database`, never the
 * password. Parts it leaves out are shown as the environment gives them (libpq's variables).
 */
export function describePostgresTarget(
  connectionString: string | undefined,
  env: Readonly<Record<string, string | undefined>> = process.env,
): string {
  // libpq's fallbacks: the operating-system user, and a database named after the user.
  let user = env.PGUSER ?? env.USER;
  let host = env.PGHOST;
  let port = env.PGPORT;
  let database = env.PGDATABASE;
  if (connectionString !== undefined) {
    try {
      const url = new URL(connectionString);
      user = url.username !== '' ? decodeURIComponent(url.username) : (url.searchParams.get('user') ?? user);
      host = url.hostname !== '' ? url.hostname : (url.searchParams.get('host') ?? host);
      port = url.port !== '' ? url.port : (url.searchParams.get('port') ?? port);
      const path = decodeURIComponent(url.pathname.replace(/^\//, ''));
      database = path !== '' ? path : (url.searchParams.get('dbname') ?? database);
    } catch {
      return '(a connection string that is not a URL)';
    }
  }
  return `${user ?? '(user)'}@${host ?? 'localhost'}:${port ?? '5432'}/${database ?? user ?? '(database)'}`;
}
