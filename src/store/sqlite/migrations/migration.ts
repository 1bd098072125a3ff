import type { SqlMigration } from '../../sql/index.js';

/**
 * One numbered, forward-only schema change of the SQLite store (see `SqlMigration`): the same
 * numbers and names as the PostgreSQL store's, in SQLite's SQL.
 */
export type SqliteMigration = SqlMigration;
