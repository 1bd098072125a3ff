import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { FleetIndex, isIntermissionError, parseFleet } from '../../src/domain/index.js';
import { planRollout } from '../../src/domain/rollout/index.js';
import { pendingStepsOf, type RolloutRecord, type RolloutStore, type StepRecord } from '../../src/store/index.js';

/** A rollout store the contract can close. */
export type ClosableRolloutStore = RolloutStore & { close(): Promise<void> };

/** How the contract reaches one implementation of the {@link RolloutStore} port. */
export interface RolloutStoreContractOptions<S extends ClosableRolloutStore> {
  /** Shown in the test names, e.g. `sqlite (file)`. */
  readonly name: string;
  /** A fresh, empty store. The suite closes every store it gets. */
  readonly newStore: () => Promise<S>;
  /** Opens again the data of a store the suite has just closed; absent when nothing outlives close(). */
  readonly reopen?: (closed: S) => Promise<S>;
  /** Why `reopen` is absent, shown on the skipped tests. */
  readonly noReopenReason?: string;
  /** A reason to skip the whole suite (store not selected or not available). */
  readonly skip?: string | undefined;
}

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

/** Another rollout over `hosts` of the same fleet (both by default). */
function otherRollout(id: string, hosts?: string[]): { record: RolloutRecord; steps: StepRecord[] } {
  const other = planRollout({
    fleet,
    update: {
      id,
      kind: 'host-patch',
      expectedApplyMs: 2000,
      ...(hosts ? { hosts: { kind: 'names' as const, names: hosts } } : {}),
    },
    now: Date.UTC(2026, 0, 1),
    capabilities: new Map([
      ['web_0', { sharedMemory: true, migratableDevices: true, guestAgent: true }],
      ['web_1', { sharedMemory: true, migratableDevices: true, guestAgent: true }],
    ]),
  });
  return { record: rollout({ id: other.id, plan: other }), steps: pendingStepsOf(other) };
}

/**
 * The behaviour every {@link RolloutStore} must show, run once per implementation (SQLite and
 * PostgreSQL): rollouts, steps and measurements kept whole across a reopen, atomic progress writes,
 * and the one-rollout-per-host rule (409 CONFLICT naming the other rollout) decided in the same
 * transaction as the insert.
 */
export function runRolloutStoreContract<S extends ClosableRolloutStore>(options: RolloutStoreContractOptions<S>): void {
  const { newStore, reopen } = options;
  const noReopen = reopen ? false : (options.noReopenReason ?? 'this store cannot reopen its data');

  /** Reopens a closed store; only called by tests that are skipped when `reopen` is absent. */
  function reopened(closed: S): Promise<S> {
    if (!reopen) throw new Error('this test needs reopen() and should have been skipped');
    return reopen(closed);
  }

  void describe(`RolloutStore contract: ${options.name}`, { skip: options.skip ?? false }, () => {
    void it(
      'keeps a rollout, its steps and measurements across a reopen, plan included',
      { skip: noReopen },
      async () => {
        let store = await newStore();
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
        store = await reopened(store);
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
      },
    );

    void it('refuses a second rollout with the same id and writes nothing of it', async () => {
      const store = await newStore();
      await store.createRollout(rollout(), steps);
      await assert.rejects(store.createRollout(rollout({ status: 'paused' }), []), { code: 'CONFLICT' });
      assert.equal((await store.getRollout(plan.id))?.status, 'running');
      await store.close();
    });

    void it('lists active rollouts only when asked, and refuses progress for an unknown rollout', async () => {
      const store = await newStore();
      await store.createRollout(rollout(), steps);
      await store.saveProgress({ rollout: rollout({ status: 'completed', wave: 2 }) });
      assert.equal((await store.listRollouts({ active: true })).length, 0);
      assert.equal((await store.listRollouts()).length, 1);
      await assert.rejects(store.saveProgress({ rollout: rollout({ id: 'nope' }) }), { code: 'NOT_FOUND' });
      await store.close();
    });

    void it('a failed progress write leaves the earlier state whole', async () => {
      const store = await newStore();
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

    void it('refuses a rollout whose hosts a running or paused rollout holds, naming it and the hosts, and writes nothing', async () => {
      const store = await newStore();
      await store.createRollout(rollout(), steps);
      const both = otherRollout('patch-2');
      await assert.rejects(store.createRollout(both.record, both.steps), (error: unknown) => {
        assert.ok(isIntermissionError(error, 'CONFLICT'), String(error));
        assert.match(error.message, /rollout patch-2 overlaps rollout patch-1 \(running\) on 2 hosts h1, h2;/);
        assert.deepEqual(error.details, {
          rollout: 'patch-2',
          conflictsWith: 'patch-1',
          conflictStatus: 'running',
          hosts: ['h1', 'h2'],
          overlappingHosts: 2,
          rollouts: ['patch-1'],
        });
        return true;
      });
      assert.equal(await store.getRollout('patch-2'), undefined, 'nothing of it written');
      assert.deepEqual(await store.listSteps('patch-2'), []);

      // Paused holds its hosts as well.
      await store.saveProgress({ rollout: rollout({ status: 'paused' }) });
      const one = otherRollout('patch-3', ['h2']);
      await assert.rejects(
        store.createRollout(one.record, one.steps),
        /overlaps rollout patch-1 \(paused\) on host h2;/,
      );

      // Halted: only the hosts whose step is still under way are held.
      const [h1, h2] = steps;
      assert.ok(h1 && h2 && h1.host === 'h1' && h2.host === 'h2');
      await store.saveProgress({
        rollout: rollout({ status: 'halted' }),
        steps: [{ ...h1, status: 'dispatched', dispatchedAt: 2 }],
      });
      const onH1 = otherRollout('patch-4', ['h1']);
      await assert.rejects(
        store.createRollout(onH1.record, onH1.steps),
        /overlaps rollout patch-1 \(halted\) on host h1;/,
      );
      await store.createRollout(one.record, one.steps);
      assert.equal((await store.getRollout('patch-3'))?.status, 'running', 'h2 was free: its step never ran');
      await store.close();
    });

    void it('frees the hosts of completed and cancelled rollouts', async () => {
      const store = await newStore();
      await store.createRollout(rollout(), steps);
      await store.saveProgress({ rollout: rollout({ status: 'cancelled' }) });
      const second = otherRollout('patch-2');
      await store.createRollout(second.record, second.steps);
      await store.saveProgress({ rollout: { ...second.record, status: 'completed', wave: 2 } });
      const third = otherRollout('patch-3');
      await store.createRollout(third.record, third.steps);
      assert.equal((await store.listRollouts({ active: true })).filter((r) => r.status === 'running').length, 1);
      await store.close();
    });

    void it('of two concurrent creations over one host, exactly one is stored', async () => {
      const store = await newStore();
      const a = otherRollout('race-a', ['h1', 'h2']);
      const b = otherRollout('race-b', ['h2']);
      const results = await Promise.allSettled([
        store.createRollout(a.record, a.steps),
        store.createRollout(b.record, b.steps),
      ]);
      assert.deepEqual(
        results.map((r) => r.status).sort(),
        ['fulfilled', 'rejected'],
        JSON.stringify(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok'))),
      );
      const rejected = results.find((r) => r.status === 'rejected');
      assert.ok(isIntermissionError(rejected?.reason, 'CONFLICT'));
      assert.equal((await store.listRollouts()).length, 1);
      await store.close();
    });

    void it(
      'keeps a step an operator cancelled, with who, when and which events, across a reopen',
      { skip: noReopen },
      async () => {
        let store = await newStore();
        await store.createRollout(rollout(), steps);
        const [first] = steps;
        assert.ok(first);
        const cancelled: StepRecord = {
          ...first,
          status: 'cancelled',
          finishedAt: 7,
          cancellation: {
            by: 'op-alice',
            at: 7.4,
            eventIds: ['E1', 'E2'],
            reason: 'operator op-alice cancelled event E1',
          },
        };
        await store.saveProgress({ steps: [cancelled] });
        await store.close();
        store = await reopened(store);
        const [got] = await store.listSteps(plan.id);
        assert.deepEqual(got, { ...cancelled, cancellation: { ...cancelled.cancellation, at: 7 } });
        // A cancellation on a step that is not cancelled is a bug of the caller: nothing is written.
        await assert.rejects(store.saveProgress({ steps: [{ ...cancelled, status: 'failed' }] }), { code: 'INTERNAL' });
        assert.equal((await store.listSteps(plan.id))[0]?.status, 'cancelled');
        await store.close();
      },
    );
  });
}
