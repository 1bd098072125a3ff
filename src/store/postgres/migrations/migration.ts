import type { SqlMigration } from '../../sql/index.js';

/**
 * One numbered, forward-only schema change of the PostgreSQL store (see `SqlMigration`): the same
 * numbers and names as the SQLite store's, in PostgreSQL's SQL. DDL is transactional in PostgreSQL,
 * so a failing migration leaves nothing behind.
 */
export type PostgresMigration = SqlMigration;
