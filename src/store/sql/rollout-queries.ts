import type { CompiledQuery, InsertResult, Kysely, UpdateResult } from 'kysely';
import type { HostStepsTable, RolloutPlansTable, RolloutsTable, StoreDatabase, VmOperationsTable } from './schema.js';
import type { RolloutRowHead } from './rollout-rows.js';
import { HOLDING_ROLLOUT_STATUSES } from '../rollout-store.js';

/** The rollout store's SQL as values (see event-queries.ts for the conventions). */

export function insertRolloutQuery(db: Kysely<StoreDatabase>, row: RolloutsTable): CompiledQuery<InsertResult> {
  return db.insertInto('rollouts').values(row).compile();
}

/** Stores a rollout's plan (after its rollout row, which it references). */
export function insertPlanQuery(db: Kysely<StoreDatabase>, row: RolloutPlansTable): CompiledQuery<InsertResult> {
  return db.insertInto('rollout_plans').values(row).compile();
}

/** Updates the rollout row; the plan, in its own table, never changes. */
export function updateRolloutQuery(db: Kysely<StoreDatabase>, row: RolloutRowHead): CompiledQuery<UpdateResult> {
  const { id, ...rest } = row;
  return db.updateTable('rollouts').set(rest).where('id', '=', id).compile();
}

export function selectRolloutHeadsQuery(
  db: Kysely<StoreDatabase>,
  options: { id?: string; active?: boolean },
): CompiledQuery<RolloutRowHead> {
  let q = db
    .selectFrom('rollouts')
    .select([
      'id',
      'status',
      'reason',
      'created_at',
      'updated_at',
      'wave',
      'wave_phase',
      'wave_published_at',
      'settle_until',
      'failed_hosts',
    ]);
  if (options.id !== undefined) q = q.where('id', '=', options.id);
  if (options.active) q = q.where('status', '<>', 'completed');
  return q.orderBy('created_at', 'asc').orderBy('id', 'asc').compile();
}

/**
 * Hosts that rollouts other than `excludeId` may still hold: every step of a rollout that is not
 * completed, with the statuses that decide (see `isHolding`). Reads through the partial index of
 * active rollouts and the steps' rollout index; only rollouts in flight are visited.
 */
export function selectBusyHostsQuery(
  db: Kysely<StoreDatabase>,
  excludeId: string,
): CompiledQuery<{ host: string; rollout_id: string; rollout_status: string; step_status: string }> {
  return db
    .selectFrom('rollouts as r')
    .innerJoin('host_steps as s', 's.rollout_id', 'r.id')
    .select(['s.host as host', 'r.id as rollout_id', 'r.status as rollout_status', 's.status as step_status'])
    .where('r.status', '<>', 'completed')
    .where('r.id', '<>', excludeId)
    .where((eb) => eb.or([eb('r.status', 'in', [...HOLDING_ROLLOUT_STATUSES]), eb('s.status', '=', 'dispatched')]))
    .compile();
}

export function selectPlanQuery(db: Kysely<StoreDatabase>, id: string): CompiledQuery<{ plan: string }> {
  return db.selectFrom('rollout_plans').select('plan').where('rollout_id', '=', id).compile();
}

/** Inserts steps, or replaces the mutable columns of existing ones. */
export function upsertStepsQuery(
  db: Kysely<StoreDatabase>,
  rows: readonly HostStepsTable[],
): CompiledQuery<InsertResult> {
  return db
    .insertInto('host_steps')
    .values([...rows])
    .onConflict((oc) =>
      oc.column('id').doUpdateSet((eb) => ({
        status: eb.ref('excluded.status'),
        dispatched_at: eb.ref('excluded.dispatched_at'),
        finished_at: eb.ref('excluded.finished_at'),
        result: eb.ref('excluded.result'),
        error: eb.ref('excluded.error'),
      })),
    )
    .compile();
}

export function selectStepsQuery(
  db: Kysely<StoreDatabase>,
  rolloutId: string,
  wave?: number,
): CompiledQuery<HostStepsTable> {
  let q = db.selectFrom('host_steps').selectAll().where('rollout_id', '=', rolloutId);
  if (wave !== undefined) q = q.where('wave', '=', wave);
  return q.orderBy('wave').orderBy('batch').orderBy('host').compile();
}

export function upsertOperationsQuery(
  db: Kysely<StoreDatabase>,
  rows: readonly VmOperationsTable[],
): CompiledQuery<InsertResult> {
  return db
    .insertInto('vm_operations')
    .values([...rows])
    .onConflict((oc) =>
      oc.columns(['step_id', 'vm']).doUpdateSet((eb) => ({
        outcome: eb.ref('excluded.outcome'),
        pause_ms: eb.ref('excluded.pause_ms'),
        clock_offset_ms: eb.ref('excluded.clock_offset_ms'),
        clock_residual_ms: eb.ref('excluded.clock_residual_ms'),
        at: eb.ref('excluded.at'),
      })),
    )
    .compile();
}

export function selectOperationsQuery(
  db: Kysely<StoreDatabase>,
  options: { rolloutId?: string; vm?: string; limit?: number },
): CompiledQuery<VmOperationsTable> {
  let q = db.selectFrom('vm_operations').selectAll();
  if (options.rolloutId !== undefined) q = q.where('rollout_id', '=', options.rolloutId);
  if (options.vm !== undefined) q = q.where('vm', '=', options.vm);
  q = q.orderBy('at', 'desc').orderBy('vm', 'asc');
  if (options.limit !== undefined) q = q.limit(options.limit);
  return q.compile();
}
