import { IntermissionError } from '../domain/index.js';
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

/**
 * Where a host step is. `cancelled`: an operator cancelled a Scheduled event of the step's VMs, so
 * the step never ran and its host is left out of this wave (it is not a failure and does not count
 * against the failure budget; {@link StepRecord.cancellation} says who and when).
 */
export const STEP_STATUSES = ['pending', 'dispatched', 'succeeded', 'failed', 'cancelled'] as const;
export type StepStatus = (typeof STEP_STATUSES)[number];

/** Statuses after which a step never changes again. */
export const FINISHED_STEP_STATUSES: ReadonlySet<StepStatus> = new Set(['succeeded', 'failed', 'cancelled']);

/** Who cancelled a host step, when, and through which events. */
export interface StepCancellation {
  /** The operator (control-API principal name) who cancelled the event. */
  readonly by: string;
  readonly at: number;
  /** The cancelled events of the step's VMs (the operator's, and those withdrawn with it). */
  readonly eventIds: readonly string[];
  /** One sentence for the operator. */
  readonly reason: string;
}

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
  /** Set when the step is `cancelled`. */
  readonly cancellation: StepCancellation | null;
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
  /**
   * Creates a rollout with its steps (all pending). Refuses, with CONFLICT and nothing written, an id
   * that exists, and a rollout with a host that another rollout still holds (see
   * {@link busyHostsOf}); the check and the insert are one transaction, so of two concurrent
   * creations over the same hosts one fails.
   */
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
        cancellation: null,
      })),
    ),
  );
}

/** A host that an existing rollout still holds, as {@link busyHostsOf} reports it. */
export interface BusyHost {
  readonly host: string;
  readonly rolloutId: string;
  readonly rolloutStatus: RolloutStatus;
  readonly stepStatus: StepStatus;
}

/** Rollout statuses that hold every host of their plan: their pending steps may still run. */
export const HOLDING_ROLLOUT_STATUSES: ReadonlySet<RolloutStatus> = new Set(['running', 'paused']);

/** How many overlapping hosts a refusal names (the count is always given). */
export const OVERLAP_HOSTS_NAMED = 10;

/**
 * The rule behind {@link RolloutStore.createRollout}'s overlap check: a host is held by a running or
 * paused rollout (any of its steps, finished or not: a later wave, or a health gate, still counts on
 * it), and by any rollout whose step on it is still dispatched (a halted or cancelled rollout lets
 * steps under way finish). Two rollouts on one host fail each other's steps and health gates.
 */
export function isHolding(rolloutStatus: RolloutStatus, stepStatus: StepStatus): boolean {
  return HOLDING_ROLLOUT_STATUSES.has(rolloutStatus) || stepStatus === 'dispatched';
}

/**
 * The CONFLICT a new rollout gets when `busy` (what the store found, in any order) holds some of its
 * hosts; undefined when nothing overlaps. Names the first other rollout and up to
 * {@link OVERLAP_HOSTS_NAMED} of the overlapping hosts.
 */
export function overlapConflict(
  newRolloutId: string,
  newHosts: ReadonlySet<string>,
  busy: readonly BusyHost[],
): IntermissionError | undefined {
  const overlapping = busy
    .filter((b) => b.rolloutId !== newRolloutId && newHosts.has(b.host) && isHolding(b.rolloutStatus, b.stepStatus))
    .sort((a, b) => (a.rolloutId === b.rolloutId ? (a.host < b.host ? -1 : 1) : a.rolloutId < b.rolloutId ? -1 : 1));
  const first = overlapping[0];
  if (!first) return undefined;
  const others = [...new Set(overlapping.map((b) => b.rolloutId))];
  const hosts = [...new Set(overlapping.filter((b) => b.rolloutId === first.rolloutId).map((b) => b.host))];
  const allHosts = new Set(overlapping.map((b) => b.host));
  const named = hosts.slice(0, OVERLAP_HOSTS_NAMED);
  const more = hosts.length > named.length ? ` and ${hosts.length - named.length} more` : '';
  return new IntermissionError(
    'CONFLICT',
    `rollout ${newRolloutId} overlaps rollout ${first.rolloutId} (${first.rolloutStatus}) on ` +
      `${hosts.length === 1 ? 'host' : `${hosts.length} hosts`} ${named.join(', ')}${more}` +
      (others.length > 1 ? ` (and ${others.length - 1} other rollout(s): ${others.slice(1).join(', ')})` : '') +
      `; wait for ${first.rolloutId} to end, or cancel it, or leave these hosts out of ${newRolloutId}`,
    {
      details: {
        rollout: newRolloutId,
        conflictsWith: first.rolloutId,
        conflictStatus: first.rolloutStatus,
        hosts: named,
        overlappingHosts: allHosts.size,
        rollouts: others,
      },
    },
  );
}
