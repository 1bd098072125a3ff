import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import {
  EVENT_TYPES,
  IntermissionError,
  SECOND,
  VISIBLE_EVENT_STATUSES,
  type EventType,
  type VisibleEventStatus,
} from '../../src/domain/index.js';
import {
  EVENT_TRANSITIONS,
  METRIC_NAMES,
  createMetrics,
  type EventTransition,
  type IntermissionMetrics,
} from '../../src/metrics/index.js';
import { DRILL_OWNER_PREFIX, type EventService } from '../../src/service/event-service.js';
import { Exposition, labelKey } from './exposition.js';
import { LINGER_MS, openServiceWorld } from './fixtures.js';

const DRILL = `${DRILL_OWNER_PREFIX}metrics`;

type Transitions = Partial<Record<`${EventType}:${EventTransition}`, number>>;

async function scrape(metrics: IntermissionMetrics): Promise<Exposition> {
  return Exposition.parse(await metrics.render());
}

/** Every one of the 30 transition series, zero unless given. */
function assertTransitions(exposition: Exposition, expected: Transitions): void {
  const actual = exposition.series(METRIC_NAMES.eventTransitions);
  assert.equal(actual.size, EVENT_TYPES.length * EVENT_TRANSITIONS.length, 'every type × transition series exists');
  for (const type of EVENT_TYPES) {
    for (const transition of EVENT_TRANSITIONS) {
      assert.equal(
        actual.get(labelKey({ type, transition })),
        expected[`${type}:${transition}`] ?? 0,
        `${type} ${transition}`,
      );
    }
  }
}

/** The live-events gauge equals what the service lists, for every type and visible status. */
function assertLiveMatchesService(exposition: Exposition, service: EventService): void {
  const listed = new Map<string, number>();
  for (const event of service.list()) {
    const status: VisibleEventStatus = event.phase === 'Scheduled' ? 'Scheduled' : 'Started';
    const key = labelKey({ type: event.type, status });
    listed.set(key, (listed.get(key) ?? 0) + 1);
  }
  const gauge = exposition.series(METRIC_NAMES.liveEvents);
  assert.equal(gauge.size, EVENT_TYPES.length * VISIBLE_EVENT_STATUSES.length);
  for (const [key, value] of gauge) assert.equal(value, listed.get(key) ?? 0, `live ${key}`);
}

function live(exposition: Exposition, type: EventType, status: VisibleEventStatus): number {
  return exposition.value(METRIC_NAMES.liveEvents, { type, status });
}

describe('metrics of the event service (real EventService over SQLite)', () => {
  it('counts every transition by type and keeps the live-events gauge exact through a whole lifecycle', async () => {
    const w = await openServiceWorld();
    // An event that exists before the subscription: it is live but was not seen being scheduled.
    const early = await w.service.schedule({ type: 'Reboot', resources: ['solo'], owner: DRILL });
    const metrics = createMetrics();
    metrics.observeEventService(w.service);

    let x = await scrape(metrics);
    assertTransitions(x, {});
    assert.equal(live(x, 'Reboot', 'Scheduled'), 1, 'seeded from list()');
    assertLiveMatchesService(x, w.service);

    const freeze = await w.service.schedule({
      type: 'Freeze',
      resources: ['web_0', 'web_1'],
      durationInSeconds: 5,
      owner: DRILL,
    });
    await w.service.approve('web_1', [freeze.eventId]);
    x = await scrape(metrics);
    assertTransitions(x, { 'Freeze:scheduled': 1, 'Freeze:approved': 1 });
    assert.equal(live(x, 'Freeze', 'Scheduled'), 1);
    assertLiveMatchesService(x, w.service);

    assert.equal((await w.service.tick()).started.length, 1, 'the approved drill starts');
    x = await scrape(metrics);
    assertTransitions(x, { 'Freeze:scheduled': 1, 'Freeze:approved': 1, 'Freeze:started': 1 });
    assert.equal(live(x, 'Freeze', 'Scheduled'), 0);
    assert.equal(live(x, 'Freeze', 'Started'), 1);
    assertLiveMatchesService(x, w.service);

    w.clock.advance(5 * SECOND);
    assert.equal((await w.service.tick()).ended.length, 1);
    await w.service.cancel([early.eventId]);
    const unplanned = await w.service.startUnplanned({
      type: 'Redeploy',
      resources: ['solo'],
      durationInSeconds: 10,
      owner: DRILL,
    });
    assert.equal(unplanned.phase, 'Started');
    x = await scrape(metrics);
    assertTransitions(x, {
      'Freeze:scheduled': 1,
      'Freeze:approved': 1,
      'Freeze:started': 1,
      'Freeze:ended': 1,
      'Reboot:removed_cancelled': 1,
      'Redeploy:scheduled': 1,
      'Redeploy:started': 1,
    });
    assert.equal(live(x, 'Freeze', 'Started'), 1, 'an ended event is listed as Started for its linger');
    assert.equal(live(x, 'Reboot', 'Scheduled'), 0);
    assert.equal(live(x, 'Redeploy', 'Started'), 1);
    assertLiveMatchesService(x, w.service);

    w.clock.advance(LINGER_MS);
    const t = await w.service.tick();
    assert.deepEqual(
      [t.ended.length, t.removed.length],
      [1, 1],
      'the unplanned drill ends, the Freeze leaves after its linger',
    );
    x = await scrape(metrics);
    assertTransitions(x, {
      'Freeze:scheduled': 1,
      'Freeze:approved': 1,
      'Freeze:started': 1,
      'Freeze:ended': 1,
      'Freeze:removed_completed': 1,
      'Reboot:removed_cancelled': 1,
      'Redeploy:scheduled': 1,
      'Redeploy:started': 1,
      'Redeploy:ended': 1,
    });
    assert.equal(live(x, 'Freeze', 'Started'), 0);
    assert.equal(live(x, 'Redeploy', 'Started'), 1);
    assertLiveMatchesService(x, w.service);

    w.clock.advance(LINGER_MS);
    await w.service.tick();
    x = await scrape(metrics);
    assert.equal(x.value(METRIC_NAMES.eventTransitions, { type: 'Redeploy', transition: 'removed_completed' }), 1);
    assert.deepEqual(w.service.list(), []);
    for (const value of x.series(METRIC_NAMES.liveEvents).values()) assert.equal(value, 0);

    // Event ids and VM names never become label values.
    const forbidden = new Set([freeze.eventId, early.eventId, unplanned.eventId, 'web_0', 'web_1', 'solo']);
    for (const family of x.families.values()) {
      for (const sample of family.samples) {
        for (const value of Object.values(sample.labels)) {
          assert.ok(!forbidden.has(value), `${family.name} labelled ${value}`);
        }
      }
    }
    await w.close();
  });

  it('counts tick errors by code, subscribes once per service, and stops at unsubscribe', async () => {
    const w = await openServiceWorld();
    const metrics = createMetrics();
    const unsubscribe = metrics.observeEventService(w.service);
    assert.equal(metrics.observeEventService(w.service), unsubscribe, 'a second observe is the same subscription');

    w.service.emit('tick:error', new IntermissionError('STORE_FAILURE', 'disk full'));
    await w.service.schedule({ type: 'Freeze', resources: ['solo'], owner: DRILL });
    let x = await scrape(metrics);
    assert.equal(x.value(METRIC_NAMES.tickErrors, { code: 'STORE_FAILURE' }), 1);
    assert.equal(
      x.value(METRIC_NAMES.eventTransitions, { type: 'Freeze', transition: 'scheduled' }),
      1,
      'counted once',
    );

    unsubscribe();
    unsubscribe();
    assert.equal(w.service.listenerCount('event:scheduled'), 0, 'every listener removed');
    await w.service.schedule({ type: 'Freeze', resources: ['web_0'], owner: DRILL });
    x = await scrape(metrics);
    assert.equal(x.value(METRIC_NAMES.eventTransitions, { type: 'Freeze', transition: 'scheduled' }), 1);
    await w.close();
  });
});
