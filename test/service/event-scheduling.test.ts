import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  EVENT_TYPES,
  FleetIndex,
  IntermissionError,
  ManualClock,
  SECOND,
  eventTiming,
  parseFleet,
  scaled,
  timeScale,
  type EventType,
  type MaintenanceEvent,
  type Mutation,
} from '../../src/domain/index.js';
import { DRILL_OWNER_PREFIX, EventService } from '../../src/service/event-service.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { EventStore } from '../../src/store/store.js';
import { VirtualTimers } from './virtual-timers.js';

// Issue 12, item 3: transitions starved under steady activity. Every change reset one timer, and
// the next deadline ignored approved and already-due drills, so a tenant scheduling its own events
// three times a second kept another scope's approved drill Scheduled for as long as it went on.
// The service's timers are virtual here: time moves only when the test says, and nothing sleeps.

const fleet = new FleetIndex(
  parseFleet({
    hosts: [{ name: 'h1' }, { name: 'h2' }],
    availabilitySets: [
      { name: 'web', updateDomains: 2 },
      { name: 'db', updateDomains: 2 },
    ],
    vms: [
      { name: 'web_0', host: 'h1', availabilitySet: 'web' },
      { name: 'web_1', host: 'h2', availabilitySet: 'web' },
      { name: 'db_0', host: 'h1', availabilitySet: 'db' },
      { name: 'db_1', host: 'h2', availabilitySet: 'db' },
      { name: 'solo', host: 'h1' },
      { name: 'lone', host: 'h2' },
    ],
  }),
);
/** One VM of each scope, for scheduling and approving. */
const SCOPE_VMS = ['web_0', 'db_1', 'solo', 'lone'] as const;
const SCALE = timeScale(60);
const timing = eventTiming({ scale: SCALE, lingerMs: 60 * SECOND });
const START = Date.UTC(2026, 0, 1);
/** How far a drill's start or end may be from its due time, in virtual milliseconds. */
const TOLERANCE_MS = 1;

interface World {
  readonly clock: ManualClock;
  readonly timers: VirtualTimers;
  readonly service: EventService;
  /** Runs virtual time to `t`, firing every timer due on the way. */
  runUntil(t: number): Promise<void>;
  close(): Promise<void>;
}

async function world(): Promise<World> {
  const clock = new ManualClock(START);
  const timers = new VirtualTimers(clock);
  const store = await openSqliteStore({ path: ':memory:' });
  const service = await EventService.open({ fleet, store, clock, timing, timers });
  service.startTicking();
  return {
    clock,
    timers,
    service,
    runUntil: (t) => timers.runUntil(t, () => service.idle()),
    close: async () => {
      await service.stop();
      await store.close();
    },
  };
}

/** When a drill is due: approval releases it at once, NotBefore at the latest. */
function dueAt(e: MaintenanceEvent): number {
  return Math.min(e.notBefore, e.approvedAt ?? Number.POSITIVE_INFINITY);
}

function impactMs(e: MaintenanceEvent): number {
  return e.durationInSeconds > 0 ? scaled(e.durationInSeconds * SECOND, SCALE) : 0;
}

/**
 * Checks every drill in the history: each one that was due by `end` started at its due time, ended
 * when its impact was over, and was removed when its linger ran out, whatever else went on.
 */
async function assertOnTime(service: EventService, end: number): Promise<{ started: number }> {
  let started = 0;
  for (const e of await service.history({ includeRemoved: true })) {
    if (e.removalReason === 'cancelled' && e.startedAt === undefined) continue;
    const due = dueAt(e);
    if (due > end) continue;
    assert.notEqual(e.startedAt, undefined, `drill ${e.eventId} due at +${due - START} ms never started`);
    const startedAt = e.startedAt ?? 0;
    started++;
    assert.ok(
      Math.abs(startedAt - due) <= TOLERANCE_MS,
      `drill ${e.eventId} due at +${due - START} ms started at +${startedAt - START} ms`,
    );
    const endsAt = startedAt + impactMs(e);
    if (endsAt > end) continue;
    assert.ok(
      e.endedAt !== undefined && Math.abs(e.endedAt - endsAt) <= TOLERANCE_MS,
      `drill ${e.eventId} should have ended at +${endsAt - START} ms, ended ${String(e.endedAt && e.endedAt - START)}`,
    );
    const goneAt = (e.endedAt ?? 0) + e.lingerMs;
    if (goneAt > end) continue;
    assert.ok(
      e.removedAt !== undefined && Math.abs(e.removedAt - goneAt) <= TOLERANCE_MS,
      `drill ${e.eventId} should have been removed at +${goneAt - START} ms`,
    );
  }
  return { started };
}

void describe('EventService wake-ups', () => {
  void it('starts an approved drill at once while another tenant schedules its own events three times a second', async () => {
    const w = await world();
    try {
      const drill = await w.service.schedule({
        type: 'Freeze',
        resources: ['web_0', 'web_1'],
        durationInSeconds: 5,
        owner: `${DRILL_OWNER_PREFIX}op`,
      });
      await w.runUntil(START + 2 * SECOND);
      await w.service.approve('web_1', [drill.eventId]);
      const approvedAt = w.clock.now();
      // The noise: `solo` schedules (and cancels every other) event of its own, every 333 ms, for 12 s.
      for (let i = 0; i < 36; i++) {
        await w.runUntil(approvedAt + i * 333);
        const noise = await w.service.schedule({
          type: 'Freeze',
          resources: ['solo'],
          owner: `${DRILL_OWNER_PREFIX}tenant`,
        });
        if (i % 2 === 1) await w.service.cancel([noise.eventId]);
      }
      const during = await w.service.find(drill.eventId);
      assert.notEqual(during?.startedAt, undefined, 'the approved drill started while the noise went on');
      assert.equal(during?.startedAt, approvedAt, 'at the moment it was approved');
      await w.runUntil(approvedAt + 30 * SECOND);
      await assertOnTime(w.service, w.clock.now());
    } finally {
      await w.close();
    }
  });

  void it('never postpones an earlier wake-up, and sleeps at most a second', async () => {
    const w = await world();
    try {
      const drill = await w.service.schedule({
        type: 'Preempt',
        resources: ['lone'],
        owner: `${DRILL_OWNER_PREFIX}op`,
      }); // due in 500 ms (30 s / 60)
      const wake = (): number | undefined => w.timers.pending()[0]?.at;
      assert.equal(wake(), drill.notBefore);
      await w.runUntil(START + 100);
      await w.service.schedule({ type: 'Freeze', resources: ['solo'], owner: `${DRILL_OWNER_PREFIX}t` });
      assert.equal(wake(), drill.notBefore, 'a later deadline elsewhere does not move the wake-up');
      await w.service.cancel([drill.eventId]);
      assert.ok((wake() ?? 0) <= w.clock.now() + SECOND);
    } finally {
      await w.close();
    }
  });

  void it('retries a failed pass a second later instead of spinning, and starts the drill once the store recovers', async () => {
    const clock = new ManualClock(START);
    const timers = new VirtualTimers(clock);
    const real = await openSqliteStore({ path: ':memory:' });
    let failing = false;
    const store: EventStore = {
      capabilities: real.capabilities,
      loadEvents: () => real.loadEvents(),
      queryEvents: (q) => real.queryEvents(q),
      getEvent: (id) => real.getEvent(id),
      close: () => real.close(),
      commit: (m: Mutation) =>
        failing ? Promise.reject(new IntermissionError('STORE_FAILURE', 'disk full')) : real.commit(m),
    };
    const service = await EventService.open({ fleet, store, clock, timing, timers });
    const errors: string[] = [];
    service.on('tick:error', (e) => errors.push(e.code));
    service.startTicking();
    try {
      const drill = await service.schedule({ type: 'Freeze', resources: ['solo'], owner: `${DRILL_OWNER_PREFIX}op` });
      await service.approve('solo', [drill.eventId]);
      failing = true;
      const firedBefore = timers.fired;
      await timers.runUntil(START + 5 * SECOND, () => service.idle());
      assert.ok(errors.length >= 4 && errors.length <= 6, `${errors.length} failed passes in 5 s`);
      assert.ok(timers.fired - firedBefore <= 6, `${timers.fired - firedBefore} wake-ups in 5 s: a hot loop`);
      failing = false;
      await timers.runUntil(START + 6 * SECOND, () => service.idle());
      const after = await service.find(drill.eventId);
      assert.ok(
        after?.startedAt !== undefined && after.startedAt > START + 5 * SECOND,
        'started once the store took it',
      );
    } finally {
      await service.stop();
      await real.close();
    }
  });

  void it('starts every drill at its due time under random streams of changes across scopes (property)', async () => {
    type Op =
      | { kind: 'schedule'; dt: number; scope: number; type: EventType; extraMs: number; seconds: number }
      | { kind: 'approve'; dt: number; pick: number; by: number }
      | { kind: 'cancel'; dt: number; pick: number };
    const dt = fc.oneof(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: 20_000 }));
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({
        kind: fc.constant('schedule' as const),
        dt,
        scope: fc.nat(SCOPE_VMS.length - 1),
        type: fc.constantFrom<EventType>('Freeze', 'Preempt', 'Redeploy'),
        extraMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 30_000 })),
        seconds: fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 120 })),
      }),
      fc.record({ kind: fc.constant('approve' as const), dt, pick: fc.nat(), by: fc.nat(1) }),
      fc.record({ kind: fc.constant('cancel' as const), dt, pick: fc.nat() }),
    );
    assert.ok(EVENT_TYPES.includes('Preempt'));
    let totalStarted = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40 }), async (ops) => {
        const w = await world();
        try {
          const ids: string[] = [];
          let t = START;
          for (const o of ops) {
            t += o.dt;
            await w.runUntil(t);
            if (o.kind === 'schedule') {
              const vm = SCOPE_VMS[o.scope] ?? 'solo';
              const e = await w.service.schedule({
                type: o.type,
                resources: [vm],
                noticeMs: scaled(o.type === 'Preempt' ? 30 * SECOND : 15 * 60 * SECOND, SCALE) + o.extraMs,
                durationInSeconds: o.seconds,
                owner: `${DRILL_OWNER_PREFIX}p`,
              });
              ids.push(e.eventId);
            } else if (ids.length > 0) {
              const id = ids[o.pick % ids.length] ?? '';
              const e = w.service.get(id);
              if (o.kind === 'approve' && e) {
                const vms = fleet.fleet.vms.filter((v) => fleet.scopeOfVm(v.name) === e.scope);
                await w.service.approve(vms[o.by % vms.length]?.name ?? '', [id]);
              } else if (o.kind === 'cancel' && e?.phase === 'Scheduled') {
                await w.service.cancel([id]);
              }
            }
          }
          // Long enough for the latest drill: notice 15 s + 30 s, impact 2 s, linger 1 s (scale 60).
          await w.runUntil(t + 60 * SECOND);
          totalStarted += (await assertOnTime(w.service, w.clock.now())).started;
        } finally {
          await w.close();
        }
      }),
      { numRuns: 60 },
    );
    assert.ok(totalStarted > 50, `the runs started only ${totalStarted} drills`);
  });
});
