import type { HostStep, Plan } from '../domain/rollout/index.js';

/** Where a rollout is in its life. */
export const ROLLOUT_STATUSES = ['running', 'paused', 'halted', 'cancelled', 'completed'] as const;
export type RolloutStatus = (typeof ROLLOUT_STATUSES)[number];

/**
 * Where the current wave is: `pending` (events not yet published), `published` (events out, host
 * steps being dispatched as their events come due), `settling` (every step finished; waiting the
 * settle time and checking health before the next wave).
 */
export const WAVE_PHASES = ['pending', 'published', 'settling'] as const;
export type WavePhase = (typeof WAVE_PHASES)[number];

/** One rollout as stored. The plan is kept whole: the executor applies it and nothing else. */
export interface RolloutRecord {
  readonly id: string;
  readonly plan: Plan;
  readonly status: RolloutStatus;
  /** Why it halted or was cancelled, for the operator. */
  readonly reason: string | null;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** Index of the current wave; equals the number of waves once completed. */
  readonly wave: number;
  readonly wavePhase: WavePhase;
  readonly wavePublishedAt: number | null;
  /** When the current wave's settle time ends. */
  readonly settleUntil: number | null;
  /** Hosts whose step failed or whose VMs failed the health gate. */
  readonly failedHosts: number;
}

export const STEP_STATUSES = ['pending', 'dispatched', 'succeeded', 'failed'] as const;
export type StepStatus = (typeof STEP_STATUSES)[number];

/** One host step of a rollout as stored. `dispatched` is written before the agent is asked. */
export interface StepRecord {
  /** `<rollout id>/w<wave>/<host>`: the agent's idempotency key. */
  readonly id: string;
  readonly rolloutId: string;
  readonly wave: number;
  readonly batch: number;
  readonly host: string;
  readonly status: StepStatus;
  readonly dispatchedAt: number | null;
  readonly finishedAt: number | null;
  /** The agent's result (JSON), once finished. */
  readonly result: unknown;
  /** Failure summary for the operator, when failed. */
  readonly error: string | null;
}

/** One measured operation on a VM: what the operator sees per VM against its budget. */
export interface VmOperationRecord {
  readonly rolloutId: string;
  readonly stepId: string;
  readonly vm: string;
  readonly host: string;
  readonly path: string;
  readonly outcome: string;
  /** Measured guest-visible pause, when the VM was paused. */
  readonly pauseMs: number | null;
  readonly pauseBudgetMs: number;
  /** Guest clock offset right after resume, and what was left after resynchronisation. */
  readonly clockOffsetMs: number | null;
  readonly clockResidualMs: number | null;
  readonly at: number;
}

/**
 * Durable home of rollouts, their host steps and the measurements. Every write is atomic; a
 * rollout's record and the step rows it changes are written together.
 */
export interface RolloutStore {
  /** Creates a rollout with its steps (all pending). Refuses an id that exists (CONFLICT). */
  createRollout(rollout: RolloutRecord, steps: readonly StepRecord[]): Promise<void>;
  getRollout(id: string): Promise<RolloutRecord | undefined>;
  listRollouts(options?: { readonly active?: boolean }): Promise<RolloutRecord[]>;
  /** The rollout's steps in plan order; only one wave's when `wave` is given. */
  listSteps(rolloutId: string, options?: { readonly wave?: number }): Promise<StepRecord[]>;
  /** Writes the rollout record and the given steps and measurements in one transaction. */
  saveProgress(progress: {
    readonly rollout?: RolloutRecord;
    readonly steps?: readonly StepRecord[];
    readonly operations?: readonly VmOperationRecord[];
  }): Promise<void>;
  listOperations(options?: {
    readonly rolloutId?: string;
    readonly vm?: string;
    readonly limit?: number;
  }): Promise<VmOperationRecord[]>;
}

/** Steps are named `<rollout>/w<wave>/<host>`: stable, so a restarted controller sends the same id. */
export function stepIdOf(rolloutId: string, step: Pick<HostStep, 'wave' | 'host'>): string {
  return `${rolloutId}/w${step.wave}/${step.host}`;
}

/** The step records of a new rollout of `plan`: one per host step, all pending. */
export function pendingStepsOf(plan: Plan): StepRecord[] {
  return plan.waves.flatMap((w) =>
    w.batches.flatMap((b) =>
      b.steps.map((s): StepRecord => ({
        id: stepIdOf(plan.id, s),
        rolloutId: plan.id,
        wave: s.wave,
        batch: s.batch,
        host: s.host,
        status: 'pending',
        dispatchedAt: null,
        finishedAt: null,
        result: null,
        error: null,
      })),
    ),
  );
}
