import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FleetIndex, parseFleet } from '../../src/domain/index.js';
import { planRollout } from '../../src/domain/rollout/index.js';
import { openSqliteStore, pendingStepsOf, type RolloutRecord } from '../../src/store/index.js';

const fleet = new FleetIndex(
  parseFleet({
    hosts: [{ name: 'h1' }, { name: 'h2' }],
    availabilitySets: [{ name: 'web', updateDomains: 2 }],
    vms: [
      { name: 'web_0', host: 'h1', availabilitySet: 'web' },
      { name: 'web_1', host: 'h2', availabilitySet: 'web' },
    ],
  }),
);
const plan = planRollout({
  fleet,
  update: { id: 'patch-1', kind: 'host-patch', expectedApplyMs: 2000 },
  now: Date.UTC(2026, 0, 1),
  capabilities: new Map([
    ['web_0', { sharedMemory: true, migratableDevices: true, guestAgent: true }],
    ['web_1', { sharedMemory: true, migratableDevices: true, guestAgent: true }],
  ]),
});

function rollout(overrides: Partial<RolloutRecord> = {}): RolloutRecord {
  return {
    id: plan.id,
    plan,
    status: 'running',
    reason: null,
    createdAt: 1,
    updatedAt: 1,
    wave: 0,
    wavePhase: 'pending',
    wavePublishedAt: null,
    settleUntil: null,
    failedHosts: 0,
    ...overrides,
  };
}

const steps = pendingStepsOf(plan);

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'intermission-rollouts-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('RolloutStore on SQLite', () => {
  it('keeps a rollout, its steps and measurements across a reopen, plan included', async () => {
    const path = join(dir, 'a.db');
    let store = await openSqliteStore({ path });
    assert.equal(plan.waves.length, 2, 'two update domains: two waves');
    await store.createRollout(rollout(), steps);
    const [first] = steps;
    assert.ok(first, 'a step');
    await store.saveProgress({
      rollout: rollout({ wavePhase: 'published', wavePublishedAt: 5, updatedAt: 5 }),
      steps: [{ ...first, status: 'succeeded', dispatchedAt: 5, finishedAt: 9, result: { ok: true } }],
      operations: [
        {
          rolloutId: plan.id,
          stepId: first.id,
          vm: 'web_0',
          host: first.host,
          path: 'pause',
          outcome: 'ok',
          pauseMs: 2012.5,
          pauseBudgetMs: 30_000,
          clockOffsetMs: -2011.25,
          clockResidualMs: 1.5,
          at: 9,
        },
      ],
    });
    await store.close();
    store = await openSqliteStore({ path });
    const got = await store.getRollout(plan.id);
    assert.deepEqual(got, rollout({ wavePhase: 'published', wavePublishedAt: 5, updatedAt: 5 }));
    const gotSteps = await store.listSteps(plan.id);
    assert.equal(gotSteps.length, steps.length);
    assert.deepEqual(gotSteps[0], {
      ...first,
      status: 'succeeded',
      dispatchedAt: 5,
      finishedAt: 9,
      result: { ok: true },
    });
    const ops = await store.listOperations({ rolloutId: plan.id });
    assert.equal(ops[0]?.pauseMs, 2012.5);
    assert.equal(ops[0]?.clockResidualMs, 1.5);
    assert.deepEqual(await store.listOperations({ vm: 'nobody' }), []);
    await store.close();
  });

  it('refuses a second rollout with the same id and writes nothing of it', async () => {
    const store = await openSqliteStore({ path: join(dir, 'b.db') });
    await store.createRollout(rollout(), steps);
    await assert.rejects(store.createRollout(rollout({ status: 'paused' }), []), { code: 'CONFLICT' });
    assert.equal((await store.getRollout(plan.id))?.status, 'running');
    await store.close();
  });

  it('lists active rollouts only when asked, and refuses progress for an unknown rollout', async () => {
    const store = await openSqliteStore({ path: join(dir, 'c.db') });
    await store.createRollout(rollout(), steps);
    await store.saveProgress({ rollout: rollout({ status: 'completed', wave: 2 }) });
    assert.equal((await store.listRollouts({ active: true })).length, 0);
    assert.equal((await store.listRollouts()).length, 1);
    await assert.rejects(store.saveProgress({ rollout: rollout({ id: 'nope' }) }), { code: 'NOT_FOUND' });
    await store.close();
  });

  it('a failed progress write leaves the earlier state whole', async () => {
    const store = await openSqliteStore({ path: join(dir, 'd.db') });
    await store.createRollout(rollout(), steps);
    const [first] = steps;
    assert.ok(first, 'a step');
    await assert.rejects(
      store.saveProgress({
        steps: [{ ...first, status: 'dispatched', dispatchedAt: 3 }],
        operations: [
          // References a step that does not exist: the foreign key fails the whole transaction.
          {
            rolloutId: plan.id,
            stepId: 'missing',
            vm: 'x',
            host: 'h',
            path: 'pause',
            outcome: 'ok',
            pauseMs: 1,
            pauseBudgetMs: 1,
            clockOffsetMs: null,
            clockResidualMs: null,
            at: 1,
          },
        ],
      }),
      { code: 'STORE_FAILURE' },
    );
    assert.equal((await store.listSteps(plan.id))[0]?.status, 'pending');
    await store.close();
  });
});
