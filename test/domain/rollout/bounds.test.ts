import assert from 'node:assert/strict';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isIntermissionError } from '../../../src/domain/errors.js';
import { eventTiming } from '../../../src/domain/events/notice.js';
import { FLEET_LIMITS, parseFleet } from '../../../src/domain/fleet.js';
import { HOUR, MAX_RENDERABLE_TIME, MINUTE, SECOND, isRenderableTime, timeScale } from '../../../src/domain/time.js';
import { MAX_FAULT_DOMAINS, MAX_UPDATE_DOMAINS, type Fleet } from '../../../src/domain/vocabulary.js';
import {
  describePlan,
  parseRolloutPolicy,
  parseUpdate,
  planRollout,
  planTimeProblem,
  ROLLOUT_LIMITS,
  tenantTimeline,
  UPDATE_KINDS,
  type Plan,
  type RolloutPolicy,
  type Update,
} from '../../../src/domain/rollout/index.js';
import { loadFleetFile } from '../../../src/service/fleet-file.js';
import { openSqliteStore } from '../../../src/store/sqlite/index.js';
import { fleetOf, NOW } from './helpers.js';

// Issue 12, item 1, for rollouts, policies and fleet files: every time, duration and count is
// bounded where it enters, and no plan the schema accepts holds a time that cannot be rendered.

const RUNS = Number(process.env.FC_RUNS ?? 300);
const DAY = 24 * HOUR;

/** Asserts that `fn` throws INVALID_INPUT whose message matches every pattern. */
function refuses(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(isIntermissionError(error, 'INVALID_INPUT'), `expected INVALID_INPUT, got ${String(error)}`);
    for (const p of patterns) assert.match(error.message, p);
    assert.doesNotMatch(error.message, /Invalid time value|Invalid Date/);
    return true;
  });
}

const update = (fields: Record<string, unknown> = {}): unknown => ({
  id: 'u',
  kind: 'host-patch',
  expectedApplyMs: '1s',
  ...fields,
});

describe('update bounds', () => {
  it('takes every duration at its bound, in number and text form, and refuses 1 ms more naming the field', () => {
    const fields: [string, (v: unknown) => unknown][] = [
      ['expectedApplyMs', (v) => update({ expectedApplyMs: v })],
      ['durations.inPlaceMigrationPauseMs', (v) => update({ durations: { inPlaceMigrationPauseMs: v } })],
      ['durations.resumeOverheadMs', (v) => update({ durations: { resumeOverheadMs: v } })],
      ['durations.hostRebootMs', (v) => update({ durations: { hostRebootMs: v } })],
      ['durations.vmRestartMs', (v) => update({ durations: { vmRestartMs: v } })],
      ['durations.vmRedeployMs', (v) => update({ durations: { vmRedeployMs: v } })],
    ];
    const max = ROLLOUT_LIMITS.maxStepPartMs;
    assert.equal(max, 6 * HOUR);
    for (const [field, make] of fields) {
      assert.doesNotThrow(() => parseUpdate(make(max)), field);
      assert.doesNotThrow(() => parseUpdate(make('6h')), field);
      assert.doesNotThrow(() => parseUpdate(make('PT6H')), field);
      const name = new RegExp(`^invalid update: ${field.replace('.', '\\.')}: `);
      refuses(() => parseUpdate(make(max + 1)), name, /at most 6h \(21600000 ms\)/);
      refuses(() => parseUpdate(make('21601s')), name, /"21601s" is too long: at most 6h/);
      refuses(() => parseUpdate(make(1e300)), name);
      refuses(() => parseUpdate(make('100000000d')), name);
      refuses(() => parseUpdate(make(`${'9'.repeat(400)}s`)), name);
      refuses(() => parseUpdate(make(-1)), name, /0 or more/);
      refuses(() => parseUpdate(make(-0.4)), name, /0 or more/);
    }
  });

  it('rounds a number of milliseconds to a whole one, as the text form does', () => {
    assert.equal(parseUpdate(update({ expectedApplyMs: 1500.4 })).expectedApplyMs, 1500);
    assert.equal(parseUpdate(update({ expectedApplyMs: '1.5s' })).expectedApplyMs, 1500);
    // -0 (JSON `-0`) is read as 0: -0 does not survive JSON, so a plan holding it would not round-trip.
    assert.ok(Object.is(parseUpdate(update({ expectedApplyMs: -0 })).expectedApplyMs, 0));
    assert.ok(Object.is(parseUpdate(update({ expectedApplyMs: 0.4 })).expectedApplyMs, 0));
  });

  it('bounds the description, the VMM versions and the host selector', () => {
    const max = ROLLOUT_LIMITS.maxDescriptionLength;
    assert.doesNotThrow(() => parseUpdate(update({ description: 'x'.repeat(max) })));
    refuses(() => parseUpdate(update({ description: 'x'.repeat(max + 1) })), /description: at most 512 characters/);
    refuses(
      () => parseUpdate(update({ kind: 'vmm-update', vmm: { fromVersion: '1', toVersion: 'v'.repeat(129) } })),
      /vmm\.toVersion: at most 128 characters/,
    );
    const names = (n: number) => Array.from({ length: n }, (_, i) => `h${i}`);
    assert.doesNotThrow(() => parseUpdate(update({ hosts: { kind: 'names', names: names(FLEET_LIMITS.maxHosts) } })));
    refuses(
      () => parseUpdate(update({ hosts: { kind: 'names', names: names(FLEET_LIMITS.maxHosts + 1) } })),
      /hosts\.names: at most 50000 hosts/,
    );
    refuses(() => parseUpdate(update({ hosts: { kind: 'names', names: ['h'.repeat(65)] } })), /hosts\.names\.0/);
    const labels = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
    refuses(() => parseUpdate(update({ hosts: { kind: 'labels', labels: labels(65) } })), /at most 64 labels/);
    refuses(
      () => parseUpdate(update({ hosts: { kind: 'labels', labels: { rack: 'r'.repeat(257) } } })),
      /hosts\.labels\.rack: at most 256 characters/,
    );
  });
});

describe('policy bounds', () => {
  it('bounds every duration with the figure in the message', () => {
    const cases: [string, number, string][] = [
      ['settleMs', ROLLOUT_LIMITS.maxSettleMs, '24h'],
      ['noticeMs', ROLLOUT_LIMITS.maxNoticeMs, '168h'],
      ['pauseBudgetMs', 30 * SECOND, '30s'],
    ];
    for (const [field, max, text] of cases) {
      assert.equal(parseRolloutPolicy({ [field]: max })[field as keyof RolloutPolicy], max);
      assert.equal(parseRolloutPolicy({ [field]: text })[field as keyof RolloutPolicy], max);
      refuses(
        () => parseRolloutPolicy({ [field]: max + 1 }),
        new RegExp(`${field}: .*at most ${text} \\(${max} ms\\)`),
      );
      refuses(() => parseRolloutPolicy({ [field]: 1e300 }), new RegExp(`${field}:`));
      refuses(() => parseRolloutPolicy({ [field]: '100000000d' }), new RegExp(`${field}:`));
    }
    refuses(() => parseRolloutPolicy({ pauseBudgetMs: 0 }), /pauseBudgetMs: a pause budget of more than 0/);
    refuses(() => parseRolloutPolicy({ pauseBudgets: { vms: { a: '31s' } } }), /pauseBudgets\.vms\.a: pause budget/);
  });

  it('bounds counts by the largest fleet and lists by their figures', () => {
    assert.doesNotThrow(() =>
      parseRolloutPolicy({ maxHostsInParallel: FLEET_LIMITS.maxHosts, maxVmsPausedAtOnce: FLEET_LIMITS.maxVms }),
    );
    refuses(
      () => parseRolloutPolicy({ maxHostsInParallel: FLEET_LIMITS.maxHosts + 1 }),
      /maxHostsInParallel: at most 50000/,
    );
    refuses(
      () => parseRolloutPolicy({ maxVmsPausedAtOnce: FLEET_LIMITS.maxVms + 1 }),
      /maxVmsPausedAtOnce: at most 1000000/,
    );
    refuses(() => parseRolloutPolicy({ maxHostsInParallel: 1.5 }), /maxHostsInParallel/);
    refuses(() => parseRolloutPolicy({ failureBudget: { maxFailedHosts: 1e300 } }), /failureBudget/);
    refuses(() => parseRolloutPolicy({ failureBudget: { maxFailedFraction: 1.01 } }), /failureBudget/);
    const daily = { kind: 'daily', start: '01:00', durationMs: '1h' };
    assert.doesNotThrow(() => parseRolloutPolicy({ windows: Array.from({ length: 1000 }, () => daily) }));
    refuses(
      () => parseRolloutPolicy({ windows: Array.from({ length: 1001 }, () => daily) }),
      /windows: at most 1000 windows/,
    );
    refuses(
      () =>
        parseRolloutPolicy({ windows: [{ ...daily, days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun', 'mon'] }] }),
      /days: at most the 7 weekdays/,
    );
    refuses(
      () => parseRolloutPolicy({ windows: [{ ...daily, durationMs: '25h' }] }),
      /windows\.0\.durationMs: .*at most 24h/,
    );
    const many = Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`vm${i}`, '10s']));
    refuses(() => parseRolloutPolicy({ pauseBudgets: { vms: many } }), /pauseBudgets\.vms: at most 10000 overrides/);
  });

  it('takes interval windows only from 1970 to 9999, in either form', () => {
    const ok = parseRolloutPolicy({
      windows: [{ kind: 'interval', start: '9999-12-31T00:00:00Z', end: MAX_RENDERABLE_TIME }],
    });
    assert.deepEqual(ok.windows?.[0], {
      kind: 'interval',
      start: MAX_RENDERABLE_TIME - DAY + 1,
      end: MAX_RENDERABLE_TIME,
    });
    refuses(
      () => parseRolloutPolicy({ windows: [{ kind: 'interval', start: 0, end: 8.64e15 }] }),
      /windows\.0\.end: .*9999-12-31/,
    );
    refuses(() => parseRolloutPolicy({ windows: [{ kind: 'interval', start: -1, end: NOW }] }), /windows\.0\.start/);
    refuses(
      () => parseRolloutPolicy({ windows: [{ kind: 'interval', start: '0001-01-01T00:00:00Z', end: NOW }] }),
      /windows\.0\.start/,
    );
  });
});

const twoHosts: Fleet = fleetOf({
  hosts: ['h1', 'h2'],
  sets: [{ name: 'web', updateDomains: 2, faultDomains: 2 }],
  vms: [
    { name: 'web_0', host: 'h1', set: 'web', ud: 0 },
    { name: 'web_1', host: 'h2', set: 'web', ud: 1 },
    { name: 'solo', host: 'h1' },
  ],
});

describe('the planner behind the edge', () => {
  it('refuses a wave that would wait more than 366 days for its window, naming the wave and the date', () => {
    const far = Date.UTC(2030, 0, 1);
    refuses(
      () =>
        planRollout({
          fleet: twoHosts,
          update: update() as Update,
          policy: { windows: [{ kind: 'interval', start: far, end: far + HOUR }] },
          now: NOW,
        }),
      /wave 1 of 2 would wait until 2030-01-01T00:00:00.000Z for a maintenance window, more than 366 days/,
    );
    const soon = NOW + 300 * DAY;
    const p = planRollout({
      fleet: twoHosts,
      update: update() as Update,
      policy: { windows: [{ kind: 'interval', start: soon, end: soon + DAY }] },
      now: NOW,
    });
    assert.equal(p.waves[0]?.startAt, soon);
  });

  it('refuses a plan whose times run past 9999, and a `now` that is not a time; floors a fractional one', () => {
    const late = MAX_RENDERABLE_TIME - 10 * MINUTE;
    refuses(
      () =>
        planRollout({
          fleet: twoHosts,
          update: update({ expectedApplyMs: '6h' }) as Update,
          now: late,
        }),
      /the plan cannot be carried out: .* is not a time clients can read/,
    );
    refuses(() => planRollout({ fleet: twoHosts, update: update() as Update, now: 1e300 }), /`now` must be/);
    refuses(() => planRollout({ fleet: twoHosts, update: update() as Update, now: -1 }), /`now` must be/);
    // A virtual clock between two milliseconds plans from the whole one before it.
    assert.equal(planRollout({ fleet: twoHosts, update: update() as Update, now: NOW + 0.5 }).plannedAt, NOW);
  });

  it('the store refuses to commit a plan with a time that cannot render, and keeps nothing of it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'intermission-bounds-'));
    const store = await openSqliteStore({ path: join(dir, 'intermission.db') });
    try {
      const good = planRollout({ fleet: twoHosts, update: update() as Update, now: NOW });
      const forged: Plan = { ...good, expectedEndAt: 1e300 };
      assert.match(planTimeProblem(forged) ?? '', /expectedEndAt 1e\+300 is not a time/);
      const record = {
        id: 'forged',
        plan: forged,
        status: 'running' as const,
        reason: null,
        createdAt: NOW,
        updatedAt: NOW,
        wave: 0,
        wavePhase: 'pending' as const,
        wavePublishedAt: null,
        settleUntil: null,
        failedHosts: 0,
      };
      await assert.rejects(store.createRollout(record, []), (error: unknown) => {
        assert.ok(isIntermissionError(error, 'STORE_FAILURE'), String(error));
        assert.equal(error.retryable, false);
        assert.match(error.message, /cannot store rollout forged: expectedEndAt/);
        return true;
      });
      assert.deepEqual(await store.listRollouts(), []);
      await store.createRollout({ ...record, plan: good }, []);
      assert.deepEqual(
        (await store.listRollouts()).map((r) => r.id),
        ['forged'],
        'the same rollout with a renderable plan is stored',
      );
    } finally {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// --- Property: whatever the schema accepts plans to times every client can render ----------------

/** Durations near and past `max`, and hostile ones, in number and text forms. */
function durationArb(max: number): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 24, arbitrary: fc.integer({ min: 0, max }) },
    { weight: 8, arbitrary: fc.integer({ min: 0, max: Math.floor(max / SECOND) }).map((s) => `${s}s`) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        0,
        1,
        max,
        max + 1,
        0.4,
        1e300,
        Number.MAX_SAFE_INTEGER,
        8.64e15,
        -1,
        '100000000d',
        'P99999D',
        `${max}ms`,
      ),
    },
    { weight: 1, arbitrary: fc.double({ min: -1, max: 2 * max, noNaN: true }) },
  );
}

/** Times across and past the renderable range, in both forms. */
const instantArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: fc.integer({ min: NOW - 30 * DAY, max: NOW + 400 * DAY }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: MAX_RENDERABLE_TIME }) },
  { weight: 1, arbitrary: fc.constantFrom(-1, 0, MAX_RENDERABLE_TIME, MAX_RENDERABLE_TIME + 1, 8.64e15, 1e300) },
  {
    weight: 1,
    arbitrary: fc
      .date({ min: new Date(NOW - 30 * DAY), max: new Date(NOW + 400 * DAY), noInvalidDate: true })
      .map((d) => d.toISOString()),
  },
  { weight: 1, arbitrary: fc.constantFrom('9999-12-31T23:59:59Z', '0001-01-01T00:00:00Z', '2026-02-31T00:00:00Z') },
);

const windowArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.record({ kind: fc.constant('interval'), start: instantArb, end: instantArb }),
  fc.record({
    kind: fc.constant('daily'),
    start: fc.constantFrom('00:00', '03:30', '23:59'),
    durationMs: durationArb(DAY),
    days: fc.option(fc.subarray(['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']), { nil: undefined }),
  }),
);

const countArb = (max: number): fc.Arbitrary<unknown> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 1, max: 8 }) },
    { weight: 1, arbitrary: fc.constantFrom(null, 0, max, max + 1, 1e300, 2.5) },
  );

const updateArb: fc.Arbitrary<unknown> = fc.record(
  {
    id: fc.constant('prop'),
    kind: fc.constantFrom(...UPDATE_KINDS),
    expectedApplyMs: durationArb(ROLLOUT_LIMITS.maxStepPartMs),
    durations: fc.record(
      {
        inPlaceMigrationPauseMs: durationArb(ROLLOUT_LIMITS.maxStepPartMs),
        resumeOverheadMs: durationArb(ROLLOUT_LIMITS.maxStepPartMs),
        hostRebootMs: durationArb(ROLLOUT_LIMITS.maxStepPartMs),
        vmRestartMs: durationArb(ROLLOUT_LIMITS.maxStepPartMs),
        vmRedeployMs: durationArb(ROLLOUT_LIMITS.maxStepPartMs),
      },
      { requiredKeys: [] },
    ),
  },
  { requiredKeys: ['id', 'kind', 'expectedApplyMs'] },
);

const policyArb: fc.Arbitrary<unknown> = fc.record(
  {
    pauseBudgetMs: durationArb(30 * SECOND),
    maxHostsInParallel: countArb(FLEET_LIMITS.maxHosts),
    maxVmsPausedAtOnce: countArb(FLEET_LIMITS.maxVms),
    settleMs: durationArb(ROLLOUT_LIMITS.maxSettleMs),
    noticeMs: durationArb(ROLLOUT_LIMITS.maxNoticeMs),
    windows: fc.array(windowArb, { maxLength: 2 }),
    failureBudget: fc.oneof(
      fc.record({ maxFailedHosts: countArb(FLEET_LIMITS.maxHosts) }),
      fc.record({ maxFailedFraction: fc.double({ min: 0, max: 1, noNaN: true }) }),
    ),
  },
  { requiredKeys: [] },
);

/** A fleet of up to six hosts, every VM in an update domain of its own host's. */
const fleetArb: fc.Arbitrary<Fleet> = fc
  .record({ hosts: fc.integer({ min: 1, max: 6 }), vms: fc.integer({ min: 0, max: 12 }) })
  .map(({ hosts, vms }) =>
    fleetOf({
      hosts: Array.from({ length: hosts }, (_, i) => `h${i}`),
      sets: [{ name: 'web', updateDomains: 3, faultDomains: 2 }],
      vms: Array.from({ length: vms }, (_, i) =>
        i % 3 === 2
          ? { name: `solo${i}`, host: `h${i % hosts}` }
          : { name: `web${i}`, host: `h${i % hosts}`, set: 'web', ud: (i % hosts) % 3 },
      ),
    }),
  );

const TIME_KEYS = new Set([
  'plannedAt',
  'expectedEndAt',
  'publishAt',
  'startAt',
  'expectedStartAt',
  'notBefore',
  'createdAt',
]);

/** Every time of `value` (by key), and every number a safe integer or a plain fraction. */
function assertRenderable(value: unknown, path: string): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => assertRenderable(v, `${path}[${i}]`));
  } else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      if (TIME_KEYS.has(k) && v !== null)
        assert.ok(typeof v === 'number' && isRenderableTime(v), `${path}.${k} = ${String(v)}`);
      if (typeof v === 'number') assert.ok(Number.isFinite(v), `${path}.${k} = ${v}`);
      assertRenderable(v, `${path}.${k}`);
    }
  }
}

describe('property: any update and policy the schema accepts plans to renderable times', () => {
  it('plans either fail with a clear INVALID_INPUT or hold only renderable times, render, and round-trip', () => {
    const outcomes = { accepted: 0, refusedAtEdge: 0, refusedByPlanner: 0 };
    fc.assert(
      fc.property(
        updateArb,
        policyArb,
        fleetArb,
        fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2100, 0, 1) }),
        fc.constantFrom(1, 60),
        (rawUpdate, rawPolicy, fleet, now, scale) => {
          let u: Update;
          let p: RolloutPolicy;
          try {
            u = parseUpdate(rawUpdate);
            p = parseRolloutPolicy(rawPolicy);
          } catch (error) {
            assert.ok(isIntermissionError(error, 'INVALID_INPUT'), String(error));
            assert.doesNotMatch(error.message, /Invalid time value|undefined|NaN/);
            outcomes.refusedAtEdge++;
            return;
          }
          let plan: Plan;
          try {
            plan = planRollout({ fleet, update: u, policy: p, now, timing: eventTiming({ scale: timeScale(scale) }) });
          } catch (error) {
            // Only what the policy itself asks for may refuse a plan: a window that never opens or
            // opens too late, or a host pausing more VMs than allowed. Never a time that overflows.
            assert.ok(isIntermissionError(error, 'INVALID_INPUT'), String(error));
            assert.match(error.message, /maintenance window|maxVmsPausedAtOnce/);
            assert.doesNotMatch(error.message, /cannot be carried out|Invalid time value/);
            outcomes.refusedByPlanner++;
            return;
          }
          outcomes.accepted++;
          assertRenderable(plan, 'plan');
          assert.ok(isRenderableTime(plan.expectedEndAt + plan.policy.settleMs), 'the last settle deadline renders');
          assert.equal(planTimeProblem(plan), null);
          assert.deepEqual(JSON.parse(JSON.stringify(plan)), plan, 'the plan round-trips through JSON');
          // What the operator and the tenants are shown renders without throwing.
          assert.equal(typeof describePlan(plan), 'string');
          JSON.stringify(tenantTimeline(plan));
        },
      ),
      { numRuns: RUNS, seed: Number(process.env.FC_SEED ?? 12) },
    );
    if (process.env.FC_VERBOSE) console.log(outcomes);
    assert.ok(outcomes.accepted > RUNS / 10, `enough accepted inputs to mean something: ${JSON.stringify(outcomes)}`);
    assert.ok(outcomes.refusedAtEdge > 0, JSON.stringify(outcomes));
  });
});

// --- The fleet file ---------------------------------------------------------------------------

describe('fleet file bounds', () => {
  const base = () => ({
    hosts: [{ name: 'h1' }],
    availabilitySets: [{ name: 'web' }],
    vms: [{ name: 'web_0', host: 'h1', availabilitySet: 'web' }],
  });
  const refusesFleet = (input: unknown, pattern: RegExp) => refuses(() => parseFleet(input), /invalid fleet/, pattern);

  it('bounds the counts of hosts, VMs and availability sets', () => {
    const hosts = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `h${i}` }));
    assert.doesNotThrow(() => parseFleet({ hosts: hosts(FLEET_LIMITS.maxHosts), vms: [] }));
    refusesFleet({ hosts: hosts(FLEET_LIMITS.maxHosts + 1), vms: [] }, /hosts: at most 50000 hosts/);
    const vms = Array.from({ length: FLEET_LIMITS.maxVms + 1 }, (_, i) => ({ name: `v${i}`, host: 'h1' }));
    refusesFleet({ hosts: [{ name: 'h1' }], vms }, /vms: at most 1000000 VMs/);
    const sets = Array.from({ length: FLEET_LIMITS.maxAvailabilitySets + 1 }, (_, i) => ({ name: `s${i}` }));
    refusesFleet({ hosts: [], availabilitySets: sets, vms: [] }, /availabilitySets: at most 200000 availability sets/);
  });

  it('keeps update domains to 20 and fault domains to 3, on sets and on VMs', () => {
    assert.equal(MAX_UPDATE_DOMAINS, 20);
    assert.equal(MAX_FAULT_DOMAINS, 3);
    const ok = parseFleet({ ...base(), availabilitySets: [{ name: 'web', updateDomains: 20, faultDomains: 3 }] });
    assert.deepEqual(ok.availabilitySets[0], { name: 'web', updateDomains: 20, faultDomains: 3 });
    refusesFleet({ ...base(), availabilitySets: [{ name: 'web', updateDomains: 21 }] }, /at most 20 update domains/);
    refusesFleet({ ...base(), availabilitySets: [{ name: 'web', faultDomains: 4 }] }, /at most 3 fault domains/);
    refusesFleet(
      { ...base(), vms: [{ name: 'web_0', host: 'h1', availabilitySet: 'web', updateDomain: 1e300 }] },
      /vms\.0\.updateDomain/,
    );
    refusesFleet(
      { ...base(), vms: [{ name: 'web_0', host: 'h1', availabilitySet: 'web', updateDomain: 20 }] },
      /vms\.0\.updateDomain: at most 19/,
    );
    refusesFleet(
      { ...base(), vms: [{ name: 'web_0', host: 'h1', availabilitySet: 'web', faultDomain: 3 }] },
      /vms\.0\.faultDomain: at most 2/,
    );
  });

  it('bounds names, labels and instance facts', () => {
    refusesFleet({ ...base(), hosts: [{ name: 'h'.repeat(65) }] }, /hosts\.0\.name/);
    const labels = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v']));
    refusesFleet({ ...base(), hosts: [{ name: 'h1', labels }] }, /hosts\.0\.labels: at most 64 labels/);
    refusesFleet({ ...base(), hosts: [{ name: 'h1', labels: { k: 'v'.repeat(257) } }] }, /hosts\.0\.labels\.k/);
    const tags = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`t${i}`, 'v']));
    refusesFleet({ ...base(), defaults: { tags } }, /defaults\.tags: at most 50 tags/);
    refusesFleet({ ...base(), defaults: { userData: 'x'.repeat(64 * 1024 + 1) } }, /defaults\.userData/);
    refusesFleet({ ...base(), defaults: { location: 'x'.repeat(257) } }, /defaults\.location/);
    const keys = Array.from({ length: 33 }, () => ({ keyData: 'ssh-ed25519 AAAA', path: '/k' }));
    refusesFleet({ ...base(), defaults: { publicKeys: keys } }, /defaults\.publicKeys/);
    assert.doesNotThrow(() => parseFleet({ ...base(), defaults: { userData: 'x'.repeat(64 * 1024), tags: {} } }));
  });

  it('refuses a fleet file larger than 256 MiB before reading it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'intermission-fleet-'));
    try {
      const path = join(dir, 'fleet.yaml');
      await writeFile(path, 'hosts: []\nvms: []\n');
      // Sparse: the size is there, the bytes are not written.
      const file = await open(path, 'r+');
      await file.truncate(FLEET_LIMITS.maxFileBytes + 1);
      await file.close();
      await assert.rejects(loadFleetFile(path), (error: unknown) => {
        assert.ok(isIntermissionError(error, 'INVALID_INPUT'), String(error));
        assert.match(error.message, /is 268435457 bytes, more than the 268435456 \(256 MiB\) a fleet file may be/);
        return true;
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
