import type { SqliteMigration } from './migration.js';

/**
 * The plan moves to a table of its own. SQLite rewrites a whole row on every UPDATE, overflow pages
 * included, so while the plan sat in `rollouts` each progress write (several per reconcile pass)
 * copied it again: a quarter of a second and a plan-sized run of freed pages per write for a
 * region's 60 MB plan. The plan is written once and never updated.
 */
export const migration000003: SqliteMigration = {
  version: 3,
  name: 'rollout-plans',
  statements: [
    `CREATE TABLE rollout_plans (
  rollout_id TEXT NOT NULL PRIMARY KEY REFERENCES rollouts (id),
  plan TEXT NOT NULL CHECK (json_valid(plan))
) STRICT`,
    `INSERT INTO rollout_plans (rollout_id, plan) SELECT id, plan FROM rollouts`,
    `ALTER TABLE rollouts DROP COLUMN plan`,
  ],
};
