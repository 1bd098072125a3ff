import { IntermissionError, isRenderableTime } from '../../domain/index.js';
import { PLAN_FORMAT_VERSION, planTimeProblem, type Plan } from '../../domain/rollout/index.js';
import {
  ROLLOUT_STATUSES,
  STEP_STATUSES,
  WAVE_PHASES,
  type RolloutRecord,
  type StepCancellation,
  type StepRecord,
  type VmOperationRecord,
} from '../rollout-store.js';
import type { HostStepsTable, RolloutPlansTable, RolloutsTable, VmOperationsTable } from './schema.js';

/** Engines may hand back bigint columns as strings (PostgreSQL) or numbers (SQLite). */
function num(value: number | string | bigint): number {
  const n = Number(value);
  if (!Number.isFinite(n)) throw new IntermissionError('STORE_FAILURE', `stored number ${String(value)} is not finite`);
  return n;
}
function numOrNull(value: number | string | bigint | null): number | null {
  return value === null ? null : num(value);
}
function oneOf<T extends string>(allowed: readonly T[], value: string, what: string): T {
  if (!(allowed as readonly string[]).includes(value)) {
    throw new IntermissionError('STORE_FAILURE', `stored ${what} ${JSON.stringify(value)} is unknown to this version`);
  }
  return value as T;
}

/** Times and counts are whole milliseconds in storage; measured clocks may carry fractions. */
function int(value: number): number {
  return Math.round(value);
}
function intOrNull(value: number | null): number | null {
  return value === null ? null : Math.round(value);
}

/** Rollout rows (the plan is in its own table, decoded once per rollout and cached by the store). */
export type RolloutRowHead = RolloutsTable;

/**
 * Encodes a new rollout. Refuses (STORE_FAILURE, not retryable) a plan with a time no client could
 * render: the planner refuses such plans already, and one stored would never render nor finish.
 */
export function encodeRollout(r: RolloutRecord): { head: RolloutsTable; plan: RolloutPlansTable } {
  const problem = planTimeProblem(r.plan);
  if (problem !== null) {
    throw new IntermissionError('STORE_FAILURE', `cannot store rollout ${r.id}: ${problem}`, {
      retryable: false,
      details: { rollout: r.id, problem },
    });
  }
  return { head: encodeRolloutHead(r), plan: { rollout_id: r.id, plan: JSON.stringify(r.plan) } };
}

/** Encodes a rollout's head. Refuses (STORE_FAILURE, not retryable) a time no client could render. */
export function encodeRolloutHead(r: RolloutRecord): RolloutRowHead {
  const times = {
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    wavePublishedAt: r.wavePublishedAt,
    settleUntil: r.settleUntil,
  };
  for (const [field, t] of Object.entries(times)) {
    if (t !== null && !isRenderableTime(Math.round(t))) {
      throw new IntermissionError('STORE_FAILURE', `cannot store rollout ${r.id}: ${field} ${t} is not a time`, {
        retryable: false,
        details: { rollout: r.id, field, value: t },
      });
    }
  }
  return {
    id: r.id,
    status: r.status,
    reason: r.reason,
    created_at: int(r.createdAt),
    updated_at: int(r.updatedAt),
    wave: r.wave,
    wave_phase: r.wavePhase,
    wave_published_at: intOrNull(r.wavePublishedAt),
    settle_until: intOrNull(r.settleUntil),
    failed_hosts: r.failedHosts,
  };
}

/**
 * JSON columns come back as text (SQLite; PostgreSQL with the store's type parsers) or already parsed
 * (a PostgreSQL pool with node-postgres's defaults); both read the same.
 */
function parseJson(value: unknown): unknown {
  return typeof value === 'string' ? (JSON.parse(value) as unknown) : value;
}

export function decodePlan(value: unknown): Plan {
  const plan = parseJson(value) as { formatVersion?: unknown } | null;
  if (typeof plan !== 'object' || plan === null) {
    throw new IntermissionError('STORE_FAILURE', 'stored plan is not a JSON object');
  }
  if (plan.formatVersion !== PLAN_FORMAT_VERSION) {
    throw new IntermissionError(
      'STORE_FAILURE',
      `stored plan has format ${String(plan.formatVersion)}; this version reads ${PLAN_FORMAT_VERSION}`,
    );
  }
  return plan as Plan;
}

export function decodeRollout(row: RolloutRowHead, plan: Plan): RolloutRecord {
  return {
    id: row.id,
    plan,
    status: oneOf(ROLLOUT_STATUSES, row.status, 'rollout status'),
    reason: row.reason,
    createdAt: num(row.created_at),
    updatedAt: num(row.updated_at),
    wave: num(row.wave),
    wavePhase: oneOf(WAVE_PHASES, row.wave_phase, 'wave phase'),
    wavePublishedAt: numOrNull(row.wave_published_at),
    settleUntil: numOrNull(row.settle_until),
    failedHosts: num(row.failed_hosts),
  };
}

/**
 * The `result` column holds the agent's status of a finished step, or, for a step an operator
 * cancelled, `{"cancellation": {...}}` (who, when, which events): no column was needed for it.
 */
function encodeStepResult(s: StepRecord): string | null {
  if (s.cancellation !== null) {
    if (s.status !== 'cancelled')
      throw new IntermissionError('INTERNAL', `step ${s.id} has a cancellation but is ${s.status}`);
    return JSON.stringify({ cancellation: { ...s.cancellation, at: int(s.cancellation.at) } });
  }
  return s.result === null || s.result === undefined ? null : JSON.stringify(s.result);
}

function decodeCancellation(id: string, value: unknown): StepCancellation {
  const c = (value as { cancellation?: unknown } | null)?.cancellation as Partial<StepCancellation> | undefined;
  if (
    typeof c?.by !== 'string' ||
    typeof c.at !== 'number' ||
    typeof c.reason !== 'string' ||
    !Array.isArray(c.eventIds) ||
    !c.eventIds.every((e) => typeof e === 'string')
  ) {
    throw new IntermissionError('STORE_FAILURE', `stored step ${id} is cancelled but has no readable cancellation`);
  }
  return { by: c.by, at: num(c.at), eventIds: [...c.eventIds], reason: c.reason };
}

export function encodeStep(s: StepRecord): HostStepsTable {
  return {
    id: s.id,
    rollout_id: s.rolloutId,
    wave: s.wave,
    batch: s.batch,
    host: s.host,
    status: s.status,
    dispatched_at: intOrNull(s.dispatchedAt),
    finished_at: intOrNull(s.finishedAt),
    result: encodeStepResult(s),
    error: s.error,
  };
}

export function decodeStep(row: HostStepsTable): StepRecord {
  const status = oneOf(STEP_STATUSES, row.status, 'step status');
  const result = row.result === null ? null : parseJson(row.result);
  const cancelled = status === 'cancelled';
  return {
    id: row.id,
    rolloutId: row.rollout_id,
    wave: num(row.wave),
    batch: num(row.batch),
    host: row.host,
    status,
    dispatchedAt: numOrNull(row.dispatched_at),
    finishedAt: numOrNull(row.finished_at),
    result: cancelled ? null : result,
    error: row.error,
    cancellation: cancelled ? decodeCancellation(row.id, result) : null,
  };
}

export function encodeOperation(o: VmOperationRecord): VmOperationsTable {
  return {
    rollout_id: o.rolloutId,
    step_id: o.stepId,
    vm: o.vm,
    host: o.host,
    path: o.path,
    outcome: o.outcome,
    pause_ms: o.pauseMs,
    pause_budget_ms: int(o.pauseBudgetMs),
    clock_offset_ms: o.clockOffsetMs,
    clock_residual_ms: o.clockResidualMs,
    at: int(o.at),
  };
}

export function decodeOperation(row: VmOperationsTable): VmOperationRecord {
  return {
    rolloutId: row.rollout_id,
    stepId: row.step_id,
    vm: row.vm,
    host: row.host,
    path: row.path,
    outcome: row.outcome,
    pauseMs: numOrNull(row.pause_ms),
    pauseBudgetMs: num(row.pause_budget_ms),
    clockOffsetMs: numOrNull(row.clock_offset_ms),
    clockResidualMs: numOrNull(row.clock_residual_ms),
    at: num(row.at),
  };
}
