import type { Wave } from '../domain/rollout/index.js';
import { FINISHED_STEP_STATUSES, stepIdOf, type StepRecord } from '../store/rollout-store.js';

/**
 * What an operator's cancellation of a rollout's event does, as pure functions over the wave's plan
 * and its step records; the executor applies the result.
 *
 * A host step runs only once every event of its VMs is due (invariant 3), and a host update cannot
 * leave some VMs of a host out, so a step with a VM of the cancelled event never runs: it is recorded
 * as `cancelled` (by whom, when), its host is not updated in this wave, and it does not count against
 * the failure budget. The step's other events that no remaining step needs are withdrawn with it, so
 * that no tenant keeps seeing an event for maintenance that will not come. The rest of the wave and
 * the later waves go on as planned.
 */

/** The event ids of each planned host step of a wave, by step id. */
export function eventsByStep(rolloutId: string, wave: Wave): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const step of wave.batches.flatMap((b) => b.steps)) {
    const ids = new Set(step.vms.flatMap((vm) => (vm.eventId === null ? [] : [vm.eventId])));
    out.set(stepIdOf(rolloutId, step), ids);
  }
  return out;
}

/** What cancelling `eventId` does to the wave: steps to record as cancelled, events to withdraw. */
export interface EventCancellationPlan {
  readonly steps: readonly StepRecord[];
  /** The operator's event first, then the events only the cancelled steps needed (still Scheduled). */
  readonly withdraw: readonly string[];
}

export function planEventCancellation(input: {
  readonly rolloutId: string;
  readonly wave: Wave;
  /** The wave's step records as stored. */
  readonly steps: readonly StepRecord[];
  readonly eventId: string;
  /** The operator (principal name). */
  readonly by: string;
  readonly now: number;
  /** Whether an event is live and Scheduled (only those can be withdrawn). */
  readonly isScheduled: (eventId: string) => boolean;
}): EventCancellationPlan {
  const { rolloutId, wave, steps, eventId, by, now, isScheduled } = input;
  const byStep = eventsByStep(rolloutId, wave);
  const affected = steps.filter((s) => s.status === 'pending' && byStep.get(s.id)?.has(eventId));
  const affectedIds = new Set(affected.map((s) => s.id));
  const needed = new Set(
    steps
      .filter((s) => !affectedIds.has(s.id) && !FINISHED_STEP_STATUSES.has(s.status))
      .flatMap((s) => [...(byStep.get(s.id) ?? [])]),
  );
  const withdraw = [eventId];
  for (const step of affected) {
    for (const id of byStep.get(step.id) ?? []) {
      if (id !== eventId && !needed.has(id) && !withdraw.includes(id) && isScheduled(id)) withdraw.push(id);
    }
  }
  const cancelled = affected.map((step): StepRecord => {
    const eventIds = withdraw.filter((id) => byStep.get(step.id)?.has(id));
    return {
      ...step,
      status: 'cancelled',
      finishedAt: now,
      error: null,
      cancellation: {
        by,
        at: now,
        eventIds,
        reason:
          `operator ${by} cancelled event ${eventId}; host ${step.host} was left out of wave ${step.wave + 1} ` +
          `and not updated (its VMs were not touched)`,
      },
    };
  });
  return { steps: cancelled, withdraw };
}

/**
 * Events of the wave no unfinished step needs any more: Started ones are ended, Scheduled ones
 * (left by cancelled or withdrawn steps, e.g. after a crash between recording a cancellation and
 * withdrawing its events) are withdrawn.
 */
export function settledEvents(
  rolloutId: string,
  wave: Wave,
  steps: readonly StepRecord[],
  phaseOf: (eventId: string) => string | undefined,
): { end: string[]; withdraw: string[] } {
  const byStep = eventsByStep(rolloutId, wave);
  const status = new Map(steps.map((s) => [s.id, s.status]));
  const waiting = new Map<string, boolean>();
  for (const [stepId, ids] of byStep) {
    const s = status.get(stepId);
    const open = s === undefined || !FINISHED_STEP_STATUSES.has(s);
    for (const id of ids) waiting.set(id, (waiting.get(id) ?? false) || open);
  }
  const end: string[] = [];
  const withdraw: string[] = [];
  for (const [id, wait] of waiting) {
    if (wait) continue;
    const phase = phaseOf(id);
    if (phase === 'Started') end.push(id);
    else if (phase === 'Scheduled') withdraw.push(id);
  }
  return { end, withdraw };
}

/** A completed rollout's note: which hosts operators left out by cancelling their events (null: none). */
export function completionNote(steps: readonly StepRecord[]): string | null {
  const cancelled = steps.filter((s) => s.status === 'cancelled');
  if (cancelled.length === 0) return null;
  const named = cancelled.slice(0, 10).map((s) => `${s.host} (wave ${s.wave + 1}, by ${s.cancellation?.by ?? '?'})`);
  const more = cancelled.length > named.length ? ` and ${cancelled.length - named.length} more` : '';
  return `completed without ${cancelled.length} host step(s) cancelled by an operator: ${named.join(', ')}${more}`;
}
