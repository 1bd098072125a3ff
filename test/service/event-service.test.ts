import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  FleetIndex,
  IntermissionError,
  ManualClock,
  MINUTE,
  SECOND,
  eventTiming,
  parseFleet,
  type Mutation,
} from '../../src/domain/index.js';
import { DRILL_OWNER_PREFIX, EventService } from '../../src/service/event-service.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import type { EventStore } from '../../src/store/store.js';

const fleet = new FleetIndex(
  parseFleet({
    hosts: [{ name: 'h1' }, { name: 'h2' }],
    availabilitySets: [{ name: 'web', updateDomains: 2 }],
    vms: [
      { name: 'web_0', host: 'h1', availabilitySet: 'web' },
      { name: 'web_1', host: 'h2', availabilitySet: 'web' },
      { name: 'solo', host: 'h1' },
    ],
  }),
);

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'intermission-svc-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function open(
  path: string,
  clock: ManualClock,
  store?: EventStore,
): Promise<{ service: EventService; store: EventStore }> {
  const s = store ?? (await openSqliteStore({ path }));
  const service = await EventService.open({ fleet, store: s, clock, timing: eventTiming({ lingerMs: 2 * MINUTE }) });
  return { service, store: s };
}

describe('EventService over the SQLite store', () => {
  it('runs a drill through Scheduled → approved → Started → Ended → removed, bumping incarnations only on visible changes', async () => {
    const clock = new ManualClock();
    const { service, store } = await open(join(dir, 'lifecycle.db'), clock);
    const scope = 'set:web';
    assert.equal(service.document('web_0').incarnation, 1);

    const event = await service.schedule({
      type: 'Freeze',
      resources: ['web_0', 'web_1'],
      durationInSeconds: 5,
      owner: `${DRILL_OWNER_PREFIX}test`,
    });
    assert.equal(event.notBefore - event.createdAt, 15 * MINUTE);
    const seenBy0 = service.document('web_0');
    assert.deepEqual(seenBy0, service.document('web_1'), 'every VM of the scope sees the same document');
    assert.equal(seenBy0.scope, scope);
    assert.equal(seenBy0.incarnation, 2);
    assert.equal(service.document('solo').events.length, 0, 'another scope sees nothing');

    await service.tick();
    assert.equal(service.get(event.eventId)?.phase, 'Scheduled', 'not started before NotBefore without approval');

    const other = await service.approve('solo', [event.eventId]);
    assert.deepEqual(other.unknown, [event.eventId], 'a VM of another scope cannot approve');
    const approval = await service.approve('web_1', [event.eventId.toLowerCase()]);
    assert.deepEqual(approval.approved, [event.eventId]);
    assert.equal(service.document('web_0').incarnation, 2, 'approval alone changes no document');

    const t1 = await service.tick();
    assert.deepEqual(
      t1.started.map((e) => e.eventId),
      [event.eventId],
    );
    assert.equal(service.document('web_0').incarnation, 3);

    clock.advance(4 * SECOND);
    assert.equal((await service.tick()).ended.length, 0, 'the impact lasts DurationInSeconds');
    clock.advance(1 * SECOND);
    assert.equal((await service.tick()).ended.length, 1);
    assert.equal(service.document('web_0').incarnation, 3, 'ending the impact keeps the event listed as Started');

    clock.advance(2 * MINUTE - 1);
    assert.equal((await service.tick()).removed.length, 0);
    clock.advance(1);
    assert.equal((await service.tick()).removed.length, 1);
    assert.deepEqual(service.document('web_1'), { scope, incarnation: 4, events: [] });

    const history = await service.history({ includeRemoved: true });
    assert.equal(history[0]?.removalReason, 'completed');
    await service.stop();
    await store.close();
  });

  it('keeps events and incarnations across a restart and never lowers an incarnation', async () => {
    const clock = new ManualClock();
    const path = join(dir, 'restart.db');
    let { service, store } = await open(path, clock);
    const a = await service.schedule({
      type: 'Reboot',
      resources: ['solo'],
      noticeMs: 20 * MINUTE,
      owner: 'rollout:r1',
    });
    const b = await service.schedule({ type: 'Freeze', resources: ['web_0'], owner: 'rollout:r1' });
    await service.cancel([b.eventId]);
    const before = { solo: service.document('solo'), web: service.document('web_0') };
    await service.stop();
    await store.close();

    ({ service, store } = await open(path, clock));
    assert.deepEqual(service.document('solo'), before.solo);
    assert.deepEqual(service.document('web_0'), before.web);
    assert.equal(before.web.incarnation, 3);
    clock.advance(20 * MINUTE);
    await service.tick();
    assert.equal(service.get(a.eventId)?.phase, 'Scheduled', 'events owned by an executor are not driven by ticks');
    await service.start([a.eventId]);
    assert.equal(service.document('solo').incarnation, before.solo.incarnation + 1);
    await service.stop();
    await store.close();
  });

  it('changes nothing in memory when the store refuses a mutation', async () => {
    const clock = new ManualClock();
    const real = await openSqliteStore({ path: join(dir, 'failing.db') });
    let fail = false;
    const failing: EventStore = {
      capabilities: real.capabilities,
      loadEvents: () => real.loadEvents(),
      queryEvents: (q) => real.queryEvents(q),
      getEvent: (id) => real.getEvent(id),
      close: () => real.close(),
      commit: (m: Mutation) =>
        fail ? Promise.reject(new IntermissionError('STORE_FAILURE', 'disk full')) : real.commit(m),
    };
    const { service } = await open('', clock, failing);
    fail = true;
    await assert.rejects(service.schedule({ type: 'Freeze', resources: ['web_0'] }), { code: 'STORE_FAILURE' });
    assert.deepEqual(service.document('web_0'), { scope: 'set:web', incarnation: 1, events: [] });
    fail = false;
    await service.schedule({ type: 'Freeze', resources: ['web_0'] });
    assert.equal(service.document('web_0').incarnation, 2, 'the next mutation follows the last durable one');
    await service.stop();
    await real.close();
  });

  it('serialises concurrent operations: each computes on the state the previous one left', async () => {
    const clock = new ManualClock();
    const { service, store } = await open(join(dir, 'concurrent.db'), clock);
    const scheduled = await Promise.all(
      Array.from({ length: 20 }, () => service.schedule({ type: 'Freeze', resources: ['web_0', 'web_1'] })),
    );
    await Promise.all(scheduled.map((e, i) => service.approve(i % 2 === 0 ? 'web_0' : 'web_1', [e.eventId])));
    assert.equal(service.document('web_0').incarnation, 21);
    assert.equal(service.list().filter((e) => e.approvedAt !== undefined).length, 20);
    await service.stop();
    await store.close();
  });

  it('refuses events with too little notice or spanning scopes, with stable codes', async () => {
    const clock = new ManualClock();
    const { service, store } = await open(join(dir, 'invalid.db'), clock);
    await assert.rejects(service.schedule({ type: 'Freeze', resources: ['web_0'], noticeMs: 14 * MINUTE }), {
      code: 'NOTICE_TOO_SHORT',
    });
    await assert.rejects(service.schedule({ type: 'Freeze', resources: ['web_0', 'solo'] }), {
      code: 'SCOPE_VIOLATION',
    });
    await assert.rejects(service.schedule({ type: 'Freeze', resources: ['nope'] }), { code: 'NOT_FOUND' });
    assert.equal(service.document('web_0').incarnation, 1);
    await service.stop();
    await store.close();
  });
});
