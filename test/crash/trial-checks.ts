/**
 * Crash trials, the accounting: what a trial observed, and the violations found in it. Pure
 * functions over data the runner collected (the store through the control API, what tenants read
 * through their metadata listeners, the agents' and controller's logs, the simulated hosts' ground
 * truth or the QEMU guests' consoles), so that each rule can be read, and tested, on its own.
 */
import type { EventsBody, RolloutBody, SimHostBody, TenantRead } from './harness.js';

/** The classes of violation a trial adds up. */
export const VIOLATION_CLASSES = [
  /** Invariant 1: a VM stayed paused longer than its pause budget. */
  'paused-past-budget',
  /** Invariant 5: an event of a published wave is not in the store, or was never shown to its VMs. */
  'event-lost',
  /** Invariant 5: an event was published twice (logged twice, reappeared, or a re-plan made a new one). */
  'event-published-twice',
  /** Invariant 5: a VM's DocumentIncarnation went down. */
  'incarnation-down',
  /** Invariant 5: a host step ran twice (started twice, or its update applied or its VMs paused twice). */
  'step-run-twice',
  /** The rollout did not finish or halt within the deadline, or left a step, event or VM behind. */
  'rollout-unfinished',
  /** Invariant 4 (QEMU): after the trial a guest's clock is off the host's by more than the bound. */
  'clock-behind',
] as const;
export type ViolationClass = (typeof VIOLATION_CLASSES)[number];

export interface Violation {
  readonly kind: ViolationClass;
  readonly detail: string;
}

type Plan = NonNullable<RolloutBody['plan']>;

/** One look at a simulated host, by the process (generation) that served it. */
export interface SimLook {
  readonly host: string;
  /** 0 for the first process of the host's agent, +1 per restart. */
  readonly generation: number;
  readonly at: number;
  readonly view: SimHostBody & {
    readonly vms: readonly (SimHostBody['vms'][number] & { readonly pausedSince: number | null })[];
  };
}

/** A pause of a QEMU guest as seen from outside (host-stamped console beats, or the watchdog's log). */
export interface ObservedPause {
  readonly vm: string;
  readonly pausedMs: number;
  readonly source: string;
}

/** Everything a trial observed. */
export interface TrialObservation {
  readonly plan: Plan;
  readonly updateId: string;
  readonly pauseBudgetMs: number;
  /** The rollout once it ended, or its last state when it did not. */
  readonly final: RolloutBody | undefined;
  /** Whether it reached completed, halted or cancelled within the deadline. */
  readonly ended: boolean;
  /** `/v1/events?all=true` at the end. */
  readonly history: EventsBody | undefined;
  readonly controllerLogs: readonly Record<string, unknown>[];
  readonly agentLogs: ReadonlyMap<string, readonly Record<string, unknown>[]>;
  readonly reads: ReadonlyMap<string, readonly TenantRead[]>;
  /** Simulated hosts: every look, oldest first (the last look of a killed process is its last word). */
  readonly simLooks: readonly SimLook[];
  /** QEMU: pauses seen from outside. */
  readonly pauses: readonly ObservedPause[];
  /** Each VM's state at the end, as its agent reports it. */
  readonly vmStates: ReadonlyMap<string, string>;
  /** QEMU: each guest's clock offset from the host at the end (ms; negative: behind). */
  readonly clockOffsets: ReadonlyMap<string, number>;
  /** QEMU: how many times each host's update command ran to its end (it leaves a trace then). */
  readonly updatesCompleted: ReadonlyMap<string, number>;
  readonly maxClockOffsetMs: number;
}

/** The events a rollout must have published by where it stopped: every wave it reached. */
export function expectedEvents(plan: Plan, rollout: RolloutBody['rollout']): Map<string, readonly string[]> {
  const out = new Map<string, readonly string[]>();
  for (const wave of plan.waves) {
    const reached =
      rollout.status === 'completed' ||
      wave.index < rollout.wave ||
      (wave.index === rollout.wave && rollout.wavePhase !== 'pending');
    if (reached) for (const e of wave.events) out.set(e.eventId, e.resources);
  }
  return out;
}

/** Every violation in one trial's observation. */
export function findViolations(o: TrialObservation): Violation[] {
  return [...checkRollout(o), ...checkEvents(o), ...checkSteps(o), ...checkPauses(o), ...checkClocks(o)];
}

function checkRollout(o: TrialObservation): Violation[] {
  const out: Violation[] = [];
  const add = (detail: string): void => {
    out.push({ kind: 'rollout-unfinished', detail });
  };
  if (!o.final) return [{ kind: 'rollout-unfinished', detail: 'the rollout could not be read at the end' }];
  const { rollout, steps } = o.final;
  if (!o.ended) add(`not ended within the deadline: ${rollout.status}, wave ${rollout.wave} ${rollout.wavePhase}`);
  if (o.ended && rollout.status === 'halted' && !rollout.reason) add('halted without a reason');
  for (const s of steps.filter((x) => x.status === 'dispatched'))
    add(`step ${s.id} on ${s.host} still dispatched at the end`);
  for (const [vm, state] of o.vmStates) if (state !== 'running') add(`${vm} is ${state} at the end`);
  for (const vm of o.plan.waves.flatMap((w) => w.events.flatMap((e) => e.resources))) {
    if (!o.vmStates.has(vm)) add(`${vm} is not reported by its agent at the end`);
  }
  const rolloutEvents = new Set(o.plan.waves.flatMap((w) => w.events.map((e) => e.eventId)));
  for (const e of o.history?.events ?? []) {
    if (rolloutEvents.has(e.eventId) && (e.phase === 'Scheduled' || e.phase === 'Started')) {
      add(`event ${e.eventId} is still ${e.phase} after the rollout ended`);
    }
  }
  return out;
}

function checkEvents(o: TrialObservation): Violation[] {
  const out: Violation[] = [];
  if (!o.final || !o.history) return out;
  const history = o.history.events;
  const stored = new Map(history.map((e) => [e.eventId, e]));
  const planned = new Set(o.plan.waves.flatMap((w) => w.events.map((e) => e.eventId)));

  // In the store: each expected event once; no rollout event outside the plan (a re-plan).
  const ids = history.map((e) => e.eventId);
  for (const id of new Set(ids.filter((id, i) => ids.indexOf(id) !== i))) {
    out.push({ kind: 'event-published-twice', detail: `event ${id} is in the history more than once` });
  }
  const owner = `rollout:${o.final.rollout.id}`;
  for (const e of history.filter((x) => x.owner === owner)) {
    if (!planned.has(e.eventId)) {
      out.push({
        kind: 'event-published-twice',
        detail: `event ${e.eventId} of the rollout is not in its plan (re-planned?)`,
      });
    }
  }
  const expected = expectedEvents(o.plan, o.final.rollout);
  for (const [id, resources] of expected) {
    const e = stored.get(id);
    if (!e) {
      out.push({ kind: 'event-lost', detail: `event ${id} of a published wave is not in the store` });
      continue;
    }
    // Shown by the metadata service: every VM of a started event read it at least once.
    if (e.startedAt === null) continue;
    for (const vm of resources) {
      const seen = (o.reads.get(vm) ?? []).some((r) => r.events.some((x) => x.id === id));
      if (!seen) out.push({ kind: 'event-lost', detail: `event ${id} started but ${vm}'s metadata never showed it` });
    }
  }
  // Logged as scheduled more than once, across controller processes.
  const logged = new Map<string, number>();
  for (const line of o.controllerLogs) {
    if (line.msg === 'event scheduled' && typeof line.eventId === 'string') {
      logged.set(line.eventId, (logged.get(line.eventId) ?? 0) + 1);
    }
  }
  for (const [id, n] of logged) {
    if (n > 1) out.push({ kind: 'event-published-twice', detail: `event ${id} was logged as scheduled ${n} times` });
  }
  // What tenants read: only stored events; an event never comes back once gone; incarnations never go down.
  for (const [vm, reads] of o.reads) {
    const gone = new Set<string>();
    const present = new Set<string>();
    for (let i = 0; i < reads.length; i++) {
      const read = reads[i];
      if (!read) continue;
      const previous = reads[i - 1];
      if (previous && read.incarnation < previous.incarnation) {
        out.push({
          kind: 'incarnation-down',
          detail: `${vm}: DocumentIncarnation went from ${previous.incarnation} to ${read.incarnation}`,
        });
      }
      const now = new Set(read.events.map((e) => e.id));
      for (const id of now) {
        if (!stored.has(id))
          out.push({ kind: 'event-lost', detail: `${vm} was shown event ${id}, which the store does not have` });
        if (gone.has(id)) {
          out.push({ kind: 'event-published-twice', detail: `${vm} was shown event ${id} again after it had gone` });
          gone.delete(id);
        }
      }
      for (const id of present) if (!now.has(id)) gone.add(id);
      present.clear();
      for (const id of now) present.add(id);
    }
  }
  return dedupe(out);
}

function checkSteps(o: TrialObservation): Violation[] {
  const out: Violation[] = [];
  // The agents' own word: a step started by two processes (or twice by one).
  for (const [host, lines] of o.agentLogs) {
    const started = new Map<string, number>();
    for (const line of lines) {
      if (line.msg === 'host step started' && typeof line.step === 'string') {
        started.set(line.step, (started.get(line.step) ?? 0) + 1);
      }
    }
    for (const [step, n] of started) {
      if (n > 1) out.push({ kind: 'step-run-twice', detail: `${host}: step ${step} was started ${n} times` });
    }
  }
  // The simulated hosts' ground truth, summed over the agent's processes (each one's last look).
  const last = new Map<string, SimLook>();
  for (const look of o.simLooks) last.set(`${look.host}#${look.generation}`, look);
  const applied = new Map<string, number>();
  const paused = new Map<string, number>();
  for (const look of last.values()) {
    applied.set(
      look.host,
      (applied.get(look.host) ?? 0) + look.view.appliedUpdates.filter((u) => u === o.updateId).length,
    );
    for (const h of look.view.history) {
      if ((h.kind === 'paused' || h.kind === 'swapped') && h.vm !== undefined)
        paused.set(h.vm, (paused.get(h.vm) ?? 0) + 1);
    }
  }
  for (const [host, n] of o.updatesCompleted) applied.set(host, (applied.get(host) ?? 0) + n);
  for (const [host, n] of applied) {
    if (n > 1) out.push({ kind: 'step-run-twice', detail: `${host} applied update ${o.updateId} ${n} times` });
  }
  for (const [vm, n] of paused) {
    if (n > 1) out.push({ kind: 'step-run-twice', detail: `${vm} was paused or swapped ${n} times by one step` });
  }
  return out;
}

function checkPauses(o: TrialObservation): Violation[] {
  const out: Violation[] = [];
  const budget = o.pauseBudgetMs;
  for (const op of o.final?.operations ?? []) {
    if (op.pauseMs !== null && op.pauseMs > op.pauseBudgetMs) {
      out.push({
        kind: 'paused-past-budget',
        detail: `${op.vm}: the store records a pause of ${op.pauseMs} ms (budget ${op.pauseBudgetMs} ms)`,
      });
    }
  }
  for (const look of o.simLooks) {
    for (const vm of look.view.vms) {
      if (vm.longestPauseMs > budget) {
        out.push({
          kind: 'paused-past-budget',
          detail: `${vm.name} on ${look.host}: paused ${vm.longestPauseMs} ms (simulator)`,
        });
      }
      if (vm.state === 'paused' && vm.pausedSince !== null && look.at - vm.pausedSince > budget) {
        out.push({
          kind: 'paused-past-budget',
          detail: `${vm.name} on ${look.host}: still paused ${look.at - vm.pausedSince} ms after its pause began (simulator)`,
        });
      }
    }
  }
  for (const p of o.pauses) {
    if (p.pausedMs > budget)
      out.push({ kind: 'paused-past-budget', detail: `${p.vm}: paused ${p.pausedMs} ms (${p.source})` });
  }
  return dedupe(out);
}

function checkClocks(o: TrialObservation): Violation[] {
  const out: Violation[] = [];
  for (const [vm, offset] of o.clockOffsets) {
    if (Math.abs(offset) > o.maxClockOffsetMs) {
      out.push({
        kind: 'clock-behind',
        detail: `${vm}: guest clock ${offset} ms off the host's (bound ${o.maxClockOffsetMs} ms)`,
      });
    }
  }
  return out;
}

function dedupe(list: readonly Violation[]): Violation[] {
  const seen = new Set<string>();
  return list.filter((v) => {
    const key = `${v.kind} ${v.detail.replace(/\d+ ms/g, '')}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
