import type { PostgresMigration } from './migration.js';

/**
 * Rollouts, their host steps and the per-VM measurements: SQLite's migration 000002 in
 * PostgreSQL's types. The plan is stored whole as `json` (kept as written, checked on input); the
 * next migration moves it to a table of its own, as on SQLite. Measured pauses and clock offsets
 * are `double precision`, SQLite's REAL (PostgreSQL's `real` would round them to 4 bytes).
 */
export const migration000002: PostgresMigration = {
  version: 2,
  name: 'rollouts',
  statements: [
    `CREATE TABLE rollouts (
  id text COLLATE "C" NOT NULL PRIMARY KEY,
  plan json NOT NULL,
  status text NOT NULL,
  reason text,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL,
  wave integer NOT NULL CHECK (wave >= 0),
  wave_phase text NOT NULL,
  wave_published_at bigint,
  settle_until bigint,
  failed_hosts integer NOT NULL CHECK (failed_hosts >= 0)
)`,
    // The executor's every pass reads the rollouts that are not completed.
    `CREATE INDEX rollouts_active ON rollouts (created_at, id) WHERE status <> 'completed'`,
    `CREATE TABLE host_steps (
  id text COLLATE "C" NOT NULL PRIMARY KEY,
  rollout_id text COLLATE "C" NOT NULL REFERENCES rollouts (id),
  wave integer NOT NULL,
  batch integer NOT NULL,
  host text COLLATE "C" NOT NULL,
  status text NOT NULL,
  dispatched_at bigint,
  finished_at bigint,
  result json,
  error text
)`,
    `CREATE INDEX host_steps_by_rollout ON host_steps (rollout_id, wave, batch, host)`,
    `CREATE TABLE vm_operations (
  rollout_id text COLLATE "C" NOT NULL REFERENCES rollouts (id),
  step_id text COLLATE "C" NOT NULL REFERENCES host_steps (id),
  vm text COLLATE "C" NOT NULL,
  host text COLLATE "C" NOT NULL,
  path text NOT NULL,
  outcome text NOT NULL,
  pause_ms double precision,
  pause_budget_ms bigint NOT NULL,
  clock_offset_ms double precision,
  clock_residual_ms double precision,
  at bigint NOT NULL,
  PRIMARY KEY (step_id, vm)
)`,
    `CREATE INDEX vm_operations_by_rollout ON vm_operations (rollout_id, at)`,
    `CREATE INDEX vm_operations_by_vm ON vm_operations (vm, at)`,
  ],
};
