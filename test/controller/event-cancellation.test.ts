import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { FleetIndex, parseFleet } from '../../src/domain/index.js';
import { planRollout } from '../../src/domain/rollout/index.js';
import { completionNote, planEventCancellation, settledEvents } from '../../src/controller/event-cancellation.js';
import { pendingStepsOf, type StepRecord } from '../../src/store/index.js';

// One set over two update domains; UD 0 spans h1 and h2, which also hold a standalone VM each.
const fleet = new FleetIndex(
  parseFleet({
    hosts: [{ name: 'h1' }, { name: 'h2' }, { name: 'h3' }],
    availabilitySets: [{ name: 'web', updateDomains: 2 }],
    vms: [
      { name: 'web_0', host: 'h1', availabilitySet: 'web', updateDomain: 0 },
      { name: 'web_1', host: 'h2', availabilitySet: 'web', updateDomain: 0 },
      { name: 'web_2', host: 'h3', availabilitySet: 'web', updateDomain: 1 },
      { name: 'solo', host: 'h1' },
      { name: 'lone', host: 'h2' },
    ],
  }),
);
const capable = { sharedMemory: true, migratableDevices: true, guestAgent: true };
const plan = planRollout({
  fleet,
  update: { id: 'p', kind: 'host-patch', expectedApplyMs: 1000 },
  now: 0,
  capabilities: new Map(['web_0', 'web_1', 'web_2', 'solo', 'lone'].map((vm) => [vm, capable])),
});
const wave = plan.waves[0];
assert.ok(wave);
const steps = pendingStepsOf(plan).filter((s) => s.wave === 0);
const eventOf = (scope: string): string => {
  const e = wave.events.find((x) => x.scope === scope);
  assert.ok(e, scope);
  return e.eventId;
};

describe('what cancelling a rollout event does to its wave', () => {
  it('the wave is what the cases below assume: h1 and h2 with set:web, vm:solo and vm:lone', () => {
    assert.deepEqual(steps.map((s) => s.host).sort(), ['h1', 'h2']);
    assert.deepEqual(wave.events.map((e) => e.scope).sort(), ['set:web', 'vm:lone', 'vm:solo']);
  });

  it("a standalone VM's event leaves its host out; the set's event stays, another host needs it", () => {
    const solo = eventOf('vm:solo');
    const result = planEventCancellation({
      rolloutId: plan.id,
      wave,
      steps,
      eventId: solo,
      by: 'op',
      now: 42,
      isScheduled: () => true,
    });
    assert.deepEqual(result.withdraw, [solo]);
    assert.deepEqual(
      result.steps.map((s) => [s.host, s.status, s.finishedAt, s.error]),
      [['h1', 'cancelled', 42, null]],
    );
    assert.deepEqual(result.steps[0]?.cancellation, {
      by: 'op',
      at: 42,
      eventIds: [solo],
      reason: `operator op cancelled event ${solo}; host h1 was left out of wave 1 and not updated (its VMs were not touched)`,
    });
  });

  it("the set's event leaves out every host of it, and withdraws the events only those hosts needed", () => {
    const web = eventOf('set:web');
    const result = planEventCancellation({
      rolloutId: plan.id,
      wave,
      steps,
      eventId: web,
      by: 'op',
      now: 1,
      isScheduled: () => true,
    });
    assert.deepEqual(result.steps.map((s) => s.host).sort(), ['h1', 'h2']);
    assert.deepEqual(result.withdraw[0], web);
    assert.deepEqual([...result.withdraw].sort(), [web, eventOf('vm:lone'), eventOf('vm:solo')].sort());
    // A step already finished is not rewritten, and an event no longer Scheduled is not withdrawn.
    const h2Done = steps.map((s): StepRecord => (s.host === 'h2' ? { ...s, status: 'failed' } : s));
    const partial = planEventCancellation({
      rolloutId: plan.id,
      wave,
      steps: h2Done,
      eventId: web,
      by: 'op',
      now: 1,
      isScheduled: (id) => id !== eventOf('vm:solo'),
    });
    assert.deepEqual(
      partial.steps.map((s) => s.host),
      ['h1'],
    );
    assert.deepEqual(partial.withdraw, [web]);
  });

  it('settles events whose steps are all over: Started ones end, Scheduled ones are withdrawn', () => {
    const [h1, h2] = [...steps].sort((a, b) => (a.host < b.host ? -1 : 1));
    assert.ok(h1 && h2);
    const phases = new Map([
      [eventOf('set:web'), 'Started'],
      [eventOf('vm:solo'), 'Scheduled'],
      [eventOf('vm:lone'), 'Started'],
    ]);
    const cancelledH1: StepRecord = { ...h1, status: 'cancelled' };
    assert.deepEqual(
      settledEvents(plan.id, wave, [cancelledH1, h2], (id) => phases.get(id)),
      { end: [], withdraw: [eventOf('vm:solo')] },
      'set:web still waits for h2',
    );
    const settled = settledEvents(plan.id, wave, [cancelledH1, { ...h2, status: 'succeeded' }], (id) => phases.get(id));
    assert.deepEqual(settled.end.sort(), [eventOf('set:web'), eventOf('vm:lone')].sort());
    assert.deepEqual(settled.withdraw, [eventOf('vm:solo')]);
  });

  it('a completed rollout names the hosts left out, or says nothing', () => {
    assert.equal(completionNote(steps), null);
    const [h1] = steps;
    assert.ok(h1);
    const note = completionNote([
      { ...h1, status: 'cancelled', cancellation: { by: 'op', at: 1, eventIds: [], reason: '' } },
    ]);
    assert.equal(note, 'completed without 1 host step(s) cancelled by an operator: h1 (wave 1, by op)');
  });
});
