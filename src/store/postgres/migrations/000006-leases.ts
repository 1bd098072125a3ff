import type { PostgresMigration } from './migration.js';

/**
 * The leader lease (issue 14): one row per lease name with its holder, expiry and fencing epoch,
 * which controller replicas take and renew with one `INSERT … ON CONFLICT DO UPDATE` (see
 * `lease-queries.ts`). Times are the database's clock in milliseconds.
 */
export const migration000006: PostgresMigration = {
  version: 6,
  name: 'leases',
  statements: [
    `CREATE TABLE leases (
  name text COLLATE "C" NOT NULL PRIMARY KEY,
  holder text COLLATE "C",
  epoch bigint NOT NULL CHECK (epoch >= 1),
  acquired_at bigint NOT NULL,
  renewed_at bigint NOT NULL,
  expires_at bigint NOT NULL
)`,
  ],
};
