import type { SqliteMigration } from './migration.js';

/**
 * The leader lease (issue 14): one row per lease name with its holder, expiry and fencing epoch. On
 * SQLite one process owns the database, so the lease only gives a single controller its epoch; the
 * same table and statements serve several replicas on PostgreSQL.
 */
export const migration000006: SqliteMigration = {
  version: 6,
  name: 'leases',
  statements: [
    `CREATE TABLE leases (
  name TEXT NOT NULL PRIMARY KEY,
  holder TEXT,
  epoch INTEGER NOT NULL CHECK (epoch >= 1),
  acquired_at INTEGER NOT NULL,
  renewed_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT`,
  ],
};
