/** Invariant checks shared by the crash tests: events, the tenants' view, pauses. */
import { strict as assert } from 'node:assert';
import type { EventsBody, RolloutBody, SimHostBody, TenantRead } from './harness.js';

type Plan = NonNullable<RolloutBody['plan']>;

/** Planned events, by id, with the wave that publishes them. */
export function plannedEvents(plan: Plan): Map<string, { wave: number; resources: readonly string[] }> {
  return new Map(
    plan.waves.flatMap((w) => w.events.map((e) => [e.eventId, { wave: w.index, resources: e.resources }])),
  );
}

/** The hosts of each wave, in wave order. */
export function waveHosts(plan: Plan): string[][] {
  return plan.waves.map((w) => w.batches.flatMap((b) => b.steps.map((s) => s.host)));
}

/**
 * Invariant 5, events: every event of the plan is in the store's history exactly once and was
 * used (started, never cancelled), no other rollout event exists (a re-plan after a restart would
 * make new ids), and no controller process logged the publication of an event twice. Logs are an
 * upper bound only (kill -9 can drop buffered lines); the store gives the lower bound.
 */
export function checkEventsOnce(options: {
  plan: Plan;
  history: EventsBody;
  controllerLogs: readonly Record<string, unknown>[];
}): void {
  const planned = plannedEvents(options.plan);
  const ids = options.history.events.map((e) => e.eventId);
  assert.equal(new Set(ids).size, ids.length, `event ids in the history are unique: ${ids.join(', ')}`);
  for (const [id, { wave }] of planned) {
    const event = options.history.events.find((e) => e.eventId === id);
    assert.ok(event, `event ${id} of wave ${wave} is in the history (not lost)`);
    assert.ok(event.startedAt !== null, `event ${id} of wave ${wave} started`);
    assert.notEqual(event.removalReason, 'cancelled', `event ${id} of wave ${wave} was not cancelled`);
  }
  for (const e of options.history.events.filter((x) => x.owner.startsWith('rollout:'))) {
    assert.ok(planned.has(e.eventId), `event ${e.eventId} (${e.owner}) belongs to the plan`);
  }
  const logged = new Map<string, number>();
  for (const line of options.controllerLogs) {
    if (line.msg === 'event scheduled' && typeof line.eventId === 'string') {
      logged.set(line.eventId, (logged.get(line.eventId) ?? 0) + 1);
    }
  }
  for (const [id, n] of logged) assert.ok(n <= 1, `event ${id} was published ${n} times`);
}

/** When each VM was first paused, from the simulated hosts' ground truth. */
export function firstPauses(views: readonly Pick<SimHostBody, 'history'>[]): Map<string, number> {
  const paused = new Map<string, number>();
  for (const view of views) {
    for (const h of view.history) {
      if (h.kind === 'paused' && h.vm !== undefined && !paused.has(h.vm)) paused.set(h.vm, h.at);
    }
  }
  return paused;
}

/**
 * What tenants saw through their metadata listeners, across controller restarts:
 * - invariant 5: a VM's DocumentIncarnation never went down;
 * - invariant 3: every VM of a planned event saw it as Scheduled, and before the VM was first
 *   paused (when the pause is known from the ground truth; reads and pauses share the machine's clock).
 */
export function checkTenantView(options: {
  plan: Plan;
  reads: ReadonlyMap<string, readonly TenantRead[]>;
  pausedAt: ReadonlyMap<string, number>;
  vms: readonly string[];
}): void {
  for (const vm of options.vms) {
    const reads = options.reads.get(vm) ?? [];
    assert.ok(reads.length > 10, `${vm} was read through its metadata listener (${reads.length} reads)`);
    for (let i = 1; i < reads.length; i++) {
      const [before, now] = [reads[i - 1], reads[i]];
      if (!before || !now) continue;
      assert.ok(
        now.incarnation >= before.incarnation,
        `${vm}: DocumentIncarnation went down from ${before.incarnation} to ${now.incarnation} at read ${i}`,
      );
    }
  }
  for (const [id, { wave, resources }] of plannedEvents(options.plan)) {
    for (const vm of resources) {
      const seen = (options.reads.get(vm) ?? []).find((r) =>
        r.events.some((e) => e.id === id && e.status === 'Scheduled'),
      );
      assert.ok(seen, `${vm} saw event ${id} (wave ${wave}) as Scheduled`);
      const pausedAt = options.pausedAt.get(vm);
      if (pausedAt !== undefined) {
        assert.ok(seen.at < pausedAt, `${vm} saw event ${id} at ${seen.at}, before its pause at ${pausedAt}`);
      }
    }
  }
}
