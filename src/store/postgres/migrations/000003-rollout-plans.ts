import type { PostgresMigration } from './migration.js';

/**
 * The plan moves to a table of its own, as on SQLite. PostgreSQL keeps a large plan out of line
 * (TOAST) and would not copy it on every update of the row, but an update still writes a new row
 * version, and the same tables on every engine keep one set of queries: the plan is written once and
 * never updated.
 */
export const migration000003: PostgresMigration = {
  version: 3,
  name: 'rollout-plans',
  statements: [
    `CREATE TABLE rollout_plans (
  rollout_id text COLLATE "C" NOT NULL PRIMARY KEY REFERENCES rollouts (id),
  plan json NOT NULL
)`,
    `INSERT INTO rollout_plans (rollout_id, plan) SELECT id, plan FROM rollouts`,
    `ALTER TABLE rollouts DROP COLUMN plan`,
  ],
};
