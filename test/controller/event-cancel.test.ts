import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { planEventCancellation } from '../../src/controller/event-cancellation.js';
import type { StepRecord } from '../../src/store/index.js';
import { apiWorld, type ApiWorld } from './api-world.js';

/** A host patch over the whole demo fleet, 1 s of apply per host. */
const PATCH = { update: { id: 'fleet-patch', kind: 'host-patch', expectedApplyMs: '1s' } };

/** Runs the rollout until the Scheduled event of `vm` is published; returns its id. */
async function eventOf(w: ApiWorld, vm: string): Promise<string> {
  let id: string | undefined;
  await w.runUntil(() => {
    id = w.events.list().find((e) => e.phase === 'Scheduled' && e.resources.includes(vm))?.eventId;
    return id !== undefined;
  }, `an event for ${vm} is published`);
  assert.ok(id);
  return id;
}

describe('cancelling a rollout event through the control API (HTTP on loopback)', () => {
  it('a tenant cannot cancel a platform event of its own VM, so it cannot halt the rollout', async () => {
    const w = await apiWorld('tenant-cancel');
    try {
      const tenant = await w.tenant('batch', ['batch-1']);
      const created = await w.call('POST', '/v1/rollouts', w.operator, PATCH);
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const id = await eventOf(w, 'batch-1');
      const before = w.events.get(id);

      const res = await w.call('POST', `/v1/events/${id}/cancel`, tenant);
      const after = w.events.get(id);
      const done = await w.runToEnd(String(created.body.id));
      // Before the fix: 200, the event gone, the host step failed and the rollout halted on its budget.
      assert.deepEqual(
        { cancel: res.status, rollout: done.status, failedHosts: done.failedHosts, reason: done.reason },
        { cancel: 403, rollout: 'completed', failedHosts: 0, reason: null },
      );
      assert.equal(res.body.error?.code, 'SCOPE_VIOLATION');
      assert.match(res.body.error?.message ?? '', /platform maintenance.*approve.*not cancel/);
      assert.deepEqual(after, before, 'the event was unchanged by the refused call');
      const steps = await w.store.listSteps(done.id);
      assert.ok(
        steps.every((s) => s.status === 'succeeded'),
        JSON.stringify(steps.map((s) => [s.host, s.status])),
      );
      // Approving stays the tenant's right: it is what the metadata service is for (tested in test/imds).
    } finally {
      await w.close();
    }
  });

  it("a tenant cancels its own user events, and nobody else's", async () => {
    const w = await apiWorld('tenant-own');
    try {
      const tenant = await w.tenant('batch', ['batch-1']);
      const other = await w.tenant('other', ['batch-1']);
      const own = await w.call('POST', '/v1/events', tenant, { type: 'Freeze', vms: ['batch-1'] });
      assert.equal(own.status, 201, JSON.stringify(own.body));
      const drill = await w.call('POST', '/v1/events', w.operator, { type: 'Freeze', vms: ['batch-1'] });
      assert.equal(drill.status, 201);

      // Another tenant of the same VM did not schedule it: refused.
      const theirs = await w.call('POST', `/v1/events/${String(own.body.eventId)}/cancel`, other);
      assert.equal(theirs.status, 403);
      assert.equal(theirs.body.error?.code, 'SCOPE_VIOLATION');
      assert.match(theirs.body.error?.message ?? '', /not scheduled by this tenant/);
      // The operator's drill on the tenant's VM is not the tenant's either.
      const op = await w.call('POST', `/v1/events/${String(drill.body.eventId)}/cancel`, tenant);
      assert.equal(op.status, 403);
      assert.equal(w.events.get(String(drill.body.eventId))?.phase, 'Scheduled');

      const mine = await w.call('POST', `/v1/events/${String(own.body.eventId)}/cancel`, tenant);
      assert.equal(mine.status, 200, JSON.stringify(mine.body));
      assert.equal(mine.body.removalReason, 'cancelled');
      assert.equal(w.events.get(String(own.body.eventId)), undefined);
      // The operator may cancel the drill.
      assert.equal((await w.call('POST', `/v1/events/${String(drill.body.eventId)}/cancel`, w.operator)).status, 200);
    } finally {
      await w.close();
    }
  });

  it("a tenant that shares an operator's name does not own that operator's drills", async () => {
    const w = await apiWorld('tenant-namesake');
    try {
      // An operator named sam scheduled a User drill on batch-1; sam's token is gone since, and a
      // tenant token of the same name now holds batch-1.
      const drill = await w.events.schedule({
        type: 'Freeze',
        resources: ['batch-1'],
        noticeMs: 15 * 60_000,
        source: 'User',
        owner: 'drill:sam',
      });
      const sam = await w.tenant('sam', ['batch-1']);
      const res = await w.call('POST', `/v1/events/${drill.eventId}/cancel`, sam);
      assert.equal(res.status, 403, JSON.stringify(res.body));
      assert.match(res.body.error?.message ?? '', /not scheduled by this tenant/);
      assert.equal(w.events.get(drill.eventId)?.phase, 'Scheduled');
      // What the tenant schedules itself is its own, under a tenant's owner.
      const own = await w.call('POST', '/v1/events', sam, { type: 'Freeze', vms: ['batch-1'] });
      assert.equal(own.body.owner, 'drill:tenant:sam');
      assert.equal((await w.call('POST', `/v1/events/${String(own.body.eventId)}/cancel`, sam)).status, 200);
    } finally {
      await w.close();
    }
  });

  it("an operator's cancellation leaves the host out, reported as cancelled, not failed, and the rollout goes on", async () => {
    const w = await apiWorld('operator-cancel');
    try {
      const created = await w.call('POST', '/v1/rollouts', w.operator, PATCH);
      assert.equal(created.status, 201);
      const rolloutId = String(created.body.id);
      const id = await eventOf(w, 'batch-1');
      const host = w.events.fleet.vm('batch-1')?.host;
      assert.equal(host, 'host-a');
      const cancelledAt = w.time.now();

      const res = await w.call('POST', `/v1/events/${id}/cancel`, w.operator);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(res.body.removalReason, 'cancelled');
      assert.equal(w.events.get(id), undefined, 'the event left the document');

      // Reported at once: the step record, the control API and the live feed.
      const detail = await w.call('GET', `/v1/rollouts/${rolloutId}`, w.operator);
      const steps = detail.body.steps as StepRecord[];
      const step = steps.find((s) => s.host === host && s.status !== 'pending' && s.status !== 'succeeded');
      assert.ok(step, JSON.stringify(steps));
      assert.equal(step.status, 'cancelled');
      assert.equal(step.error, null, 'not a failure');
      assert.equal(step.cancellation?.by, 'op-alice');
      assert.equal(step.cancellation?.at, cancelledAt);
      assert.ok(step.cancellation?.eventIds.includes(id));
      assert.match(step.cancellation?.reason ?? '', /op-alice cancelled event .*host-a was left out/);
      const message = w.feed.find((m) => m.type === 'rollout:step:cancelled');
      assert.ok(message, 'the live feed announced it');
      assert.equal((message.data as { step: StepRecord }).step.id, step.id);

      // The cancelled step's other events that no other step needs are withdrawn too.
      for (const other of step.cancellation?.eventIds ?? []) assert.equal(w.events.get(other), undefined);

      const done = await w.runToEnd(rolloutId);
      assert.equal(done.status, 'completed', done.reason ?? '');
      assert.equal(done.failedHosts, 0, 'the cancellation is not counted against the failure budget');
      assert.match(
        done.reason ?? '',
        /without 1 host step\(s\) cancelled by an operator: host-a \(wave \d, by op-alice\)/,
      );
      const final = (await w.call('GET', `/v1/rollouts/${rolloutId}`, w.operator)).body;
      assert.equal((final.rollout as { status: string }).status, 'completed');
      const finalSteps = final.steps as StepRecord[];
      assert.deepEqual(
        finalSteps.filter((s) => s.status !== 'succeeded').map((s) => [s.host, s.status]),
        [[host, 'cancelled']],
        'every other step ran',
      );
      // batch-1 was never paused; the host's step of that wave never reached its agent.
      const ops = await w.store.listOperations({ rolloutId });
      assert.ok(!ops.some((o) => o.vm === 'batch-1'), 'batch-1 untouched');
      assert.equal(
        w.sim.get('host-a')?.appliedUpdates().length,
        finalSteps.filter((s) => s.host === 'host-a' && s.status === 'succeeded').length,
      );
      for (const h of ['host-b', 'host-c']) assert.ok((w.sim.get(h)?.appliedUpdates().length ?? 0) > 0, `${h} patched`);
    } finally {
      await w.close();
    }
  });

  it('an operator cannot cancel a started event: CONFLICT, and the step runs on', async () => {
    const w = await apiWorld('operator-started');
    try {
      const created = await w.call('POST', '/v1/rollouts', w.operator, PATCH);
      const id = await eventOf(w, 'batch-1');
      await w.runUntil(() => w.events.get(id)?.phase === 'Started', 'the event starts');
      const res = await w.call('POST', `/v1/events/${id}/cancel`, w.operator);
      assert.equal(res.status, 409, JSON.stringify(res.body));
      assert.equal(res.body.error?.code, 'CONFLICT');
      const done = await w.runToEnd(String(created.body.id));
      assert.equal(done.status, 'completed', done.reason ?? '');
      assert.equal(done.reason, null);
    } finally {
      await w.close();
    }
  });

  it('a cancellation recorded but not yet withdrawn (a crash in between) is completed by the next pass', async () => {
    const w = await apiWorld('operator-crash');
    try {
      const created = await w.call('POST', '/v1/rollouts', w.operator, PATCH);
      const rolloutId = String(created.body.id);
      const id = await eventOf(w, 'batch-1');
      // What cancelEvent writes first, without the withdrawal that follows it.
      const rollout = await w.store.getRollout(rolloutId);
      const wave = rollout?.plan.waves[rollout.wave];
      assert.ok(rollout && wave);
      const plan = planEventCancellation({
        rolloutId,
        wave,
        steps: await w.store.listSteps(rolloutId, { wave: rollout.wave }),
        eventId: id,
        by: 'op-alice',
        now: w.time.now(),
        isScheduled: (e) => w.events.get(e)?.phase === 'Scheduled',
      });
      assert.equal(plan.steps.length, 1);
      await w.store.saveProgress({ steps: plan.steps });
      assert.equal(w.events.get(id)?.phase, 'Scheduled');

      await w.controller.executor.reconcileOnce();
      assert.equal(w.events.get(id), undefined, 'withdrawn: no step needs it any more');
      const [event] = (await w.events.history({ includeRemoved: true, scope: 'vm:batch-1' })).filter(
        (e) => e.eventId === id,
      );
      assert.equal(event?.removalReason, 'cancelled');
      const done = await w.runToEnd(rolloutId);
      assert.equal(done.status, 'completed', done.reason ?? '');
      assert.equal(done.failedHosts, 0);
      const steps = await w.store.listSteps(rolloutId);
      assert.equal(steps.find((s) => s.id === plan.steps[0]?.id)?.status, 'cancelled');
    } finally {
      await w.close();
    }
  });
});
