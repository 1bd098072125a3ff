/**
 * The PostgreSQL store, for several controller processes on one database. `openPostgresStore({
 * connectionString })` is the usual entry; `createPostgresStore` takes any pool that fits Kysely's
 * `PostgresPool`. The migrations, the schema dump and the error mapping are exported for review and
 * tooling.
 */
export { openPostgresStore } from './open-postgres-store.js';
export {
  PostgresEventStore,
  createPostgresStore,
  POSTGRES_ENGINE,
  POSTGRES_STORE_CAPABILITIES,
} from './postgres-store.js';
export {
  DEFAULT_APPLICATION_NAME,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_MS,
  DEFAULT_IDLE_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_STATEMENT_TIMEOUT_MS,
  POSTGRES_TYPE_PARSERS,
  describePostgresTarget,
  parseInt8,
  postgresPoolSettings,
  type CreatePostgresStoreOptions,
  type OpenPostgresStoreOptions,
  type PostgresPoolSettings,
  type PostgresStoreOptions,
} from './postgres-config.js';
export { POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION, type PostgresMigration } from './migrations/index.js';
export { POSTGRES_MIGRATION_ENGINE, POSTGRES_MIGRATIONS_TABLE_DDL, migratePostgres } from './postgres-migrator.js';
export {
  POSTGRES_SCHEMA_DUMP_PATH,
  POSTGRES_SCHEMA_QUERIES,
  formatPostgresSchema,
  type PostgresSchemaRows,
} from './postgres-schema.js';
export {
  MAX_WRITE_ATTEMPTS,
  MIGRATION_LOCK_KEY,
  inMigrationTransaction,
  inSerializableTransaction,
  inSnapshotTransaction,
} from './postgres-transaction.js';
export {
  PG_CONNECTION_FAILURE_MESSAGE,
  RETRYABLE_SOCKET_CODES,
  RETRYABLE_SQLSTATES,
  RETRYABLE_SQLSTATE_CLASSES,
  SERIALIZATION_FAILURES,
  isSerializationFailure,
  sqlStateOf,
  toStoreError as toPostgresStoreError,
} from './postgres-errors.js';
