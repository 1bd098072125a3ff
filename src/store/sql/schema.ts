import type { Generated } from 'kysely';

/**
 * The logical schema of every SQL store, as Kysely table types. Each engine (SQLite now, PostgreSQL
 * later) writes its own numbered migrations, but they all arrive at these tables and columns, so that
 * the row codec and the queries in this folder serve every engine.
 *
 * Conventions, for the migrations that follow (rollouts and host steps, issue 3):
 * - tables are plural snake_case nouns; columns are snake_case;
 * - ids are TEXT (GUIDs as the domain spells them, scope ids as `set:…`/`vm:…`);
 * - times are integer milliseconds since the epoch in `*_at` columns (SQLite INTEGER, PostgreSQL
 *   bigint); durations are integer `*_ms` or `*_in_seconds` columns;
 * - lists are JSON text (PostgreSQL may use jsonb; the codec accepts both forms);
 * - enumerations (event type, phase…) are checked by the codec, not by CHECK constraints: SQLite
 *   cannot change a CHECK without rebuilding its table, and Azure adds event types over time;
 * - optional values are NULL, never empty strings.
 */

/** One row per scheduled event ever created; removed events stay as history (`phase = 'Removed'`). */
export interface EventsTable {
  event_id: string;
  scope: string;
  type: string;
  phase: string;
  /** JSON array of VM names. */
  resources: string;
  description: string;
  source: string;
  duration_in_seconds: number;
  created_at: number;
  not_before: number;
  approved_at: number | null;
  approved_by: string | null;
  started_at: number | null;
  ended_at: number | null;
  linger_ms: number;
  removed_at: number | null;
  removal_reason: string | null;
  owner: string;
}

/** One row per scope whose document ever changed: its DocumentIncarnation, which never goes down. */
export interface ScopesTable {
  scope: string;
  incarnation: number;
}

/** The migrations applied to a database, one row each, in version order. */
export interface MigrationsTable {
  version: number;
  name: string;
  /** When it was applied (ISO-8601 text set by the database, informational only). */
  applied_at: Generated<string>;
}

/** Name of the table that records applied migrations, the same on every engine. */
export const MIGRATIONS_TABLE = 'intermission_migrations';

/** One row per rollout, without its plan (see {@link RolloutPlansTable}). */
export interface RolloutsTable {
  id: string;
  status: string;
  reason: string | null;
  created_at: number;
  updated_at: number;
  wave: number;
  wave_phase: string;
  wave_published_at: number | null;
  settle_until: number | null;
  failed_hosts: number;
}

/**
 * The plan of each rollout, JSON text: written once with the rollout and never updated, apart from
 * the rollout row that every progress write rewrites.
 */
export interface RolloutPlansTable {
  rollout_id: string;
  plan: string;
}

/** One row per host step of a rollout; `dispatched` is written before the agent is asked. */
export interface HostStepsTable {
  id: string;
  rollout_id: string;
  wave: number;
  batch: number;
  host: string;
  status: string;
  dispatched_at: number | null;
  finished_at: number | null;
  /** The agent's result, JSON text. */
  result: string | null;
  error: string | null;
}

/** One row per VM per host step: the measured pause and clock, against the budget. */
export interface VmOperationsTable {
  rollout_id: string;
  step_id: string;
  vm: string;
  host: string;
  path: string;
  outcome: string;
  pause_ms: number | null;
  pause_budget_ms: number;
  clock_offset_ms: number | null;
  clock_residual_ms: number | null;
  at: number;
}

/**
 * Leader leases, one row per name (`controller`): who holds it, until when, and the fencing epoch
 * (see `lease-store.ts`). Times are the database's clock, integer milliseconds.
 */
export interface LeasesTable {
  name: string;
  /** NULL once released. */
  holder: string | null;
  /** 1 for the first holder, one more at each change of holder; never goes down. */
  epoch: number;
  /** When the current holder took it. */
  acquired_at: number;
  /** When the current holder last renewed it. */
  renewed_at: number;
  expires_at: number;
}

/** The tables the stores read and write, keyed by table name. */
export interface StoreDatabase {
  events: EventsTable;
  scopes: ScopesTable;
  rollouts: RolloutsTable;
  rollout_plans: RolloutPlansTable;
  host_steps: HostStepsTable;
  vm_operations: VmOperationsTable;
  intermission_migrations: MigrationsTable;
  leases: LeasesTable;
}
