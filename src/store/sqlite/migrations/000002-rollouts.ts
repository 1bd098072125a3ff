import type { SqliteMigration } from './migration.js';

/**
 * Rollouts, their host steps and the per-VM measurements (issue 3). The plan is stored whole as
 * JSON: it is immutable once a rollout starts, and the executor applies it and nothing else.
 */
export const migration000002: SqliteMigration = {
  version: 2,
  name: 'rollouts',
  statements: [
    `CREATE TABLE rollouts (
  id TEXT NOT NULL PRIMARY KEY,
  plan TEXT NOT NULL CHECK (json_valid(plan)),
  status TEXT NOT NULL,
  reason TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  wave INTEGER NOT NULL CHECK (wave >= 0),
  wave_phase TEXT NOT NULL,
  wave_published_at INTEGER,
  settle_until INTEGER,
  failed_hosts INTEGER NOT NULL CHECK (failed_hosts >= 0)
) STRICT`,
    // The executor's every pass reads the rollouts that are not completed.
    `CREATE INDEX rollouts_active ON rollouts (created_at, id) WHERE status <> 'completed'`,
    `CREATE TABLE host_steps (
  id TEXT NOT NULL PRIMARY KEY,
  rollout_id TEXT NOT NULL REFERENCES rollouts (id),
  wave INTEGER NOT NULL,
  batch INTEGER NOT NULL,
  host TEXT NOT NULL,
  status TEXT NOT NULL,
  dispatched_at INTEGER,
  finished_at INTEGER,
  result TEXT CHECK (result IS NULL OR json_valid(result)),
  error TEXT
) STRICT`,
    `CREATE INDEX host_steps_by_rollout ON host_steps (rollout_id, wave, batch, host)`,
    `CREATE TABLE vm_operations (
  rollout_id TEXT NOT NULL REFERENCES rollouts (id),
  step_id TEXT NOT NULL REFERENCES host_steps (id),
  vm TEXT NOT NULL,
  host TEXT NOT NULL,
  path TEXT NOT NULL,
  outcome TEXT NOT NULL,
  pause_ms REAL,
  pause_budget_ms INTEGER NOT NULL,
  clock_offset_ms REAL,
  clock_residual_ms REAL,
  at INTEGER NOT NULL,
  PRIMARY KEY (step_id, vm)
) STRICT`,
    `CREATE INDEX vm_operations_by_rollout ON vm_operations (rollout_id, at)`,
    `CREATE INDEX vm_operations_by_vm ON vm_operations (vm, at)`,
  ],
};
