import type { RolloutRecord, RolloutStatus, StepRecord, StepStatus } from '../../store/rollout-store.js';

/** Statuses after which a rollout changes no more: its per-rollout series are dropped. */
const FINAL_STATUSES: ReadonlySet<RolloutStatus> = new Set(['completed', 'cancelled']);

/** What the per-rollout gauges show of one rollout that is not over. */
export interface RolloutView {
  readonly id: string;
  readonly status: RolloutStatus;
  /** Index of the current wave, from 0 (the executor's `RolloutRecord.wave`). */
  readonly wave: number;
  readonly waves: number;
  readonly failedHosts: number;
  readonly steps: ReadonlyMap<StepStatus, number>;
}

interface RolloutState {
  status: RolloutStatus;
  wave: number;
  waves: number;
  failedHosts: number;
  /** Step status by `<wave>/<host>`, the part of the step id that names it within its rollout. */
  readonly steps: Map<string, StepStatus>;
}

/**
 * The rollouts as the executor's announcements describe them, for the rollout gauges. Rollout
 * records carry absolute values (status, wave, failed hosts), so each `rollout:status` corrects
 * whatever was inferred since. Steps are tracked one by one, so a repeated announcement changes
 * nothing. A completed or cancelled rollout keeps only its status: its steps are forgotten and its
 * per-rollout series disappear, which bounds the `rollout` label to the rollouts that are not over.
 */
export class RolloutCensus {
  readonly #rollouts = new Map<string, RolloutState>();
  readonly #final = new Map<string, RolloutStatus>();

  /** Takes rollouts and their steps as stored, e.g. after a restart. Later announcements win. */
  restore(rollouts: readonly RolloutRecord[], steps: readonly StepRecord[] = []): void {
    for (const rollout of rollouts) this.#record(rollout, false);
    for (const step of steps) {
      const state = this.#rollouts.get(step.rolloutId);
      if (state) state.steps.set(stepKey(step), step.status);
    }
  }

  /** A new rollout: every step of its plan is pending. */
  created(rollout: RolloutRecord): void {
    this.#record(rollout, true);
  }

  /** A rollout record was saved: its status, wave and failed hosts are taken as they are. */
  status(rollout: RolloutRecord): void {
    this.#record(rollout, false);
  }

  /** A host step was handed to its agent. */
  stepDispatched(step: StepRecord): void {
    this.#state(step.rolloutId)?.steps.set(stepKey(step), 'dispatched');
  }

  /** A host step an operator left out by cancelling an event of its VMs: it will not run, and it is no failure. */
  stepCancelled(step: StepRecord): void {
    this.#state(step.rolloutId)?.steps.set(stepKey(step), 'cancelled');
  }

  /**
   * A host step finished with the agent's status. A step that did not succeed counts as a failed
   * host at once, as the executor does when it records the step; the next rollout record confirms.
   */
  stepFinished(step: StepRecord, succeeded: boolean): void {
    const state = this.#state(step.rolloutId);
    if (!state) return;
    const key = stepKey(step);
    const next: StepStatus = succeeded ? 'succeeded' : 'failed';
    if (!succeeded && state.steps.get(key) !== 'failed') state.failedHosts++;
    state.steps.set(key, next);
  }

  /** Rollouts by status: those not over, and the completed and cancelled ones seen. */
  statusCounts(): Map<RolloutStatus, number> {
    const counts = new Map<RolloutStatus, number>();
    for (const state of this.#rollouts.values()) counts.set(state.status, (counts.get(state.status) ?? 0) + 1);
    for (const status of this.#final.values()) counts.set(status, (counts.get(status) ?? 0) + 1);
    return counts;
  }

  /** The rollouts that are not over (running, paused, halted), oldest first. */
  *active(): IterableIterator<RolloutView> {
    for (const [id, state] of this.#rollouts) {
      const steps = new Map<StepStatus, number>();
      for (const status of state.steps.values()) steps.set(status, (steps.get(status) ?? 0) + 1);
      yield { id, status: state.status, wave: state.wave, waves: state.waves, failedHosts: state.failedHosts, steps };
    }
  }

  #state(id: string): RolloutState | undefined {
    return this.#rollouts.get(id);
  }

  #record(rollout: RolloutRecord, created: boolean): void {
    if (FINAL_STATUSES.has(rollout.status)) {
      this.#rollouts.delete(rollout.id);
      this.#final.set(rollout.id, rollout.status);
      return;
    }
    // A rollout is never revived once over; an announcement arriving late must not bring it back.
    if (this.#final.has(rollout.id)) return;
    let state = this.#rollouts.get(rollout.id);
    if (!state) {
      state = { status: rollout.status, wave: 0, waves: 0, failedHosts: 0, steps: new Map() };
      this.#rollouts.set(rollout.id, state);
    }
    state.status = rollout.status;
    state.wave = rollout.wave;
    state.waves = rollout.plan.waves.length;
    state.failedHosts = rollout.failedHosts;
    if (created) {
      for (const wave of rollout.plan.waves) {
        for (const batch of wave.batches) {
          for (const step of batch.steps) {
            const key = stepKey(step);
            if (!state.steps.has(key)) state.steps.set(key, 'pending');
          }
        }
      }
    }
  }
}

function stepKey(step: { readonly wave: number; readonly host: string }): string {
  return `${step.wave}/${step.host}`;
}
