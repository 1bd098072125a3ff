import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import type { HostStepStatus, VmStepResult } from '../../src/agent/index.js';
import { RolloutExecutor, type ExecutorEventMap } from '../../src/controller/executor.js';
import { IntermissionError } from '../../src/domain/index.js';
import { parseUpdate, planRollout, type VmPath } from '../../src/domain/rollout/index.js';
import {
  CLOCK_RESIDUAL_SECONDS_BUCKETS,
  METRIC_NAMES,
  PAUSE_SECONDS_BUCKETS,
  createMetrics,
  type IntermissionMetrics,
} from '../../src/metrics/index.js';
import type { RolloutRecord, StepRecord } from '../../src/store/index.js';
import { Exposition, cumulativeBuckets, labelKey } from './exposition.js';
import { openServiceWorld, type ServiceWorld } from './fixtures.js';

async function scrape(metrics: IntermissionMetrics): Promise<Exposition> {
  return Exposition.parse(await metrics.render());
}

function vm(
  name: string,
  path: VmPath,
  outcome: VmStepResult['outcome'],
  measured: Partial<VmStepResult> = {},
): VmStepResult {
  return {
    name,
    path,
    outcome,
    pausedAt: null,
    resumedAt: null,
    pauseMs: null,
    pauseBudgetMs: 30_000,
    clockOffsetMs: null,
    clockResidualMs: null,
    clockRoundTripMs: null,
    error: null,
    ...measured,
  };
}

function finished(step: StepRecord, status: HostStepStatus): [StepRecord, HostStepStatus] {
  const ok = status.status === 'succeeded';
  return [
    {
      ...step,
      status: ok ? 'succeeded' : 'failed',
      finishedAt: status.finishedAt,
      result: status,
      error: ok ? null : 'failed',
    },
    status,
  ];
}

/** A real executor over the world's store and event service; it never reaches an agent here. */
function executorOf(w: ServiceWorld): RolloutExecutor {
  return new RolloutExecutor({
    store: w.store,
    events: w.service,
    clock: w.clock,
    agent: (host) => {
      throw new IntermissionError('UNREACHABLE', `no agent for ${host} in this test`);
    },
  });
}

async function createRollout(w: ServiceWorld, executor: RolloutExecutor): Promise<RolloutRecord> {
  const plan = planRollout({
    fleet: w.fleet,
    update: parseUpdate({ id: 'patch-1', kind: 'host-patch', expectedApplyMs: '3s' }),
    now: w.clock.now(),
    timing: w.service.timing,
  });
  return executor.create(plan);
}

/** The per-rollout gauges of one rollout, or undefined for each when its series are gone. */
function perRollout(x: Exposition, rollout: string) {
  const one = (name: string) => x.series(name).get(labelKey({ rollout }));
  return {
    wave: one(METRIC_NAMES.rolloutCurrentWave),
    waves: one(METRIC_NAMES.rolloutWaves),
    failedHosts: one(METRIC_NAMES.rolloutFailedHosts),
    steps: Object.fromEntries(
      ['pending', 'dispatched', 'succeeded', 'failed'].map((status) => [
        status,
        x.series(METRIC_NAMES.rolloutHostSteps).get(labelKey({ rollout, status })),
      ]),
    ),
  };
}

function rolloutsByStatus(x: Exposition): Record<string, number | undefined> {
  const series = x.series(METRIC_NAMES.rollouts);
  return Object.fromEntries(
    ['running', 'paused', 'halted', 'cancelled', 'completed'].map((status) => [
      status,
      series.get(labelKey({ status })),
    ]),
  );
}

describe('metrics of the rollout executor (real RolloutExecutor over SQLite)', () => {
  it('follows a rollout: status, waves, steps, failed hosts, and drops its series once it is over', async () => {
    const w = await openServiceWorld();
    const executor = executorOf(w);
    const metrics = createMetrics();
    metrics.observeExecutor(executor);
    metrics.observeEventService(w.service);

    const rollout = await createRollout(w, executor);
    assert.equal(rollout.plan.waves.length, 2, 'one host per wave: h1 (web_0, solo), then h2 (web_1)');
    let x = await scrape(metrics);
    assert.deepEqual(rolloutsByStatus(x), { running: 1, paused: 0, halted: 0, cancelled: 0, completed: 0 });
    assert.deepEqual(perRollout(x, rollout.id), {
      wave: 0,
      waves: 2,
      failedHosts: 0,
      steps: { pending: 2, dispatched: 0, succeeded: 0, failed: 0 },
    });

    // One real reconcile pass publishes wave 0: its events reach the event-service metrics.
    await executor.reconcileOnce();
    x = await scrape(metrics);
    const wave0 = rollout.plan.waves[0]?.events ?? [];
    assert.equal(wave0.length, 2);
    assert.equal(x.value(METRIC_NAMES.eventTransitions, { type: 'Reboot', transition: 'scheduled' }), 2);
    assert.equal(x.value(METRIC_NAMES.liveEvents, { type: 'Reboot', status: 'Scheduled' }), 2);

    // A controller restarted now, restoring from the store, shows the same rollout gauges.
    const restored = createMetrics();
    restored.observeExecutor(new EventEmitter<ExecutorEventMap>(), {
      restore: { rollouts: await w.store.listRollouts(), steps: await w.store.listSteps(rollout.id) },
    });
    const y = await scrape(restored);
    for (const name of [
      METRIC_NAMES.rollouts,
      METRIC_NAMES.rolloutCurrentWave,
      METRIC_NAMES.rolloutWaves,
      METRIC_NAMES.rolloutFailedHosts,
      METRIC_NAMES.rolloutHostSteps,
    ]) {
      assert.deepEqual(y.series(name), x.series(name), name);
    }

    const [s1, s2] = (await w.store.listSteps(rollout.id)).sort((a, b) => a.wave - b.wave);
    assert.ok(s1 && s2);
    const d1: StepRecord = { ...s1, status: 'dispatched', dispatchedAt: w.clock.now() };
    executor.emit('rollout:step:dispatched', d1);
    x = await scrape(metrics);
    assert.deepEqual(perRollout(x, rollout.id).steps, { pending: 1, dispatched: 1, succeeded: 0, failed: 0 });

    const now = w.clock.now();
    executor.emit(
      'rollout:step:finished',
      ...finished(d1, {
        stepId: d1.id,
        host: d1.host,
        status: 'succeeded',
        startedAt: now,
        finishedAt: now + 4000,
        error: null,
        vms: [
          vm('web_0', 'pause', 'ok', { pauseMs: 3200, clockOffsetMs: -3250, clockResidualMs: 0.4 }),
          vm('solo', 'in-place-migration', 'ok', { pauseMs: 12, clockOffsetMs: 15, clockResidualMs: -0.2 }),
          vm('extra', 'reboot', 'ok'),
        ],
      }),
    );
    executor.emit('rollout:wave:settled', { rollout: rollout.id, wave: 0, failedHosts: 0 });
    executor.emit('rollout:status', { ...rollout, wave: 1, wavePhase: 'pending' });
    const d2: StepRecord = { ...s2, status: 'dispatched', dispatchedAt: now + 5000 };
    executor.emit('rollout:step:dispatched', d2);
    executor.emit(
      'rollout:step:finished',
      ...finished(d2, {
        stepId: d2.id,
        host: d2.host,
        status: 'failed',
        startedAt: now + 5000,
        finishedAt: now + 40_000,
        error: { code: 'PAUSE_BUDGET_EXCEEDED', message: 'resumed by its lease' },
        vms: [vm('web_1', 'pause', 'lease-resumed', { pauseMs: 31_000, clockOffsetMs: -31_050, clockResidualMs: 300 })],
      }),
    );
    x = await scrape(metrics);
    assert.deepEqual(perRollout(x, rollout.id), {
      wave: 1,
      waves: 2,
      failedHosts: 1,
      steps: { pending: 0, dispatched: 0, succeeded: 1, failed: 1 },
    });

    executor.emit('rollout:wave:settled', { rollout: rollout.id, wave: 1, failedHosts: 1 });
    executor.emit('rollout:status', { ...rollout, wave: 1, wavePhase: 'settling', failedHosts: 2 });
    executor.emit('rollout:error', { rollout: rollout.id, error: new IntermissionError('TIMEOUT', 'agent slow') });
    x = await scrape(metrics);
    assert.equal(perRollout(x, rollout.id).failedHosts, 2, 'the rollout record is the truth');
    assert.equal(x.value(METRIC_NAMES.healthGateFailedHosts), 1);
    assert.equal(x.value(METRIC_NAMES.rolloutErrors, { code: 'TIMEOUT' }), 1);
    assert.equal(x.value(METRIC_NAMES.hostStepsFinished, { result: 'succeeded' }), 1);
    assert.equal(x.value(METRIC_NAMES.hostStepsFinished, { result: 'failed' }), 1);

    // VM measurements, exactly.
    const pause = x.histogram(METRIC_NAMES.vmPause, { path: 'pause' });
    assert.equal(pause.count, 2);
    assert.equal(pause.sum, 3.2 + 31);
    assert.deepEqual(pause.buckets, cumulativeBuckets([3.2, 31], PAUSE_SECONDS_BUCKETS));
    assert.deepEqual(
      [pause.buckets.get(3), pause.buckets.get(5), pause.buckets.get(30), pause.buckets.get(Infinity)],
      [0, 1, 1, 2],
    );
    const migration = x.histogram(METRIC_NAMES.vmPause, { path: 'in-place-migration' });
    assert.deepEqual(
      [migration.count, migration.sum, migration.buckets.get(0.01), migration.buckets.get(0.025)],
      [1, 0.012, 0, 1],
    );
    const offset = x.histogram(METRIC_NAMES.vmClockOffset, { path: 'pause' });
    assert.deepEqual([offset.count, offset.sum], [2, 3.25 + 31.05], 'offsets are absolute');
    const residual = x.histogram(METRIC_NAMES.vmClockResidual, { path: 'pause' });
    assert.equal(residual.count, 2);
    assert.equal(residual.sum, 0.0004 + 0.3);
    assert.deepEqual(residual.buckets, cumulativeBuckets([0.0004, 0.3], CLOCK_RESIDUAL_SECONDS_BUCKETS));
    assert.equal(x.histogram(METRIC_NAMES.vmClockResidual, { path: 'in-place-migration' }).sum, 0.0002);
    assert.deepEqual(
      x.family(METRIC_NAMES.vmPause).histograms.map((h) => h.labels.path),
      ['pause', 'in-place-migration'],
      'no series for paths without a pause (the reboot VM)',
    );
    assert.equal(x.value(METRIC_NAMES.pauseBudgetViolations, { path: 'pause' }), 1);
    assert.equal(x.value(METRIC_NAMES.pauseBudgetViolations, { path: 'in-place-migration' }), 0);
    assert.deepEqual(
      x.series(METRIC_NAMES.vmOperations),
      new Map([
        [labelKey({ path: 'pause', outcome: 'ok' }), 1],
        [labelKey({ path: 'in-place-migration', outcome: 'ok' }), 1],
        [labelKey({ path: 'reboot', outcome: 'ok' }), 1],
        [labelKey({ path: 'pause', outcome: 'lease-resumed' }), 1],
      ]),
    );

    // Halted keeps the series (an operator must act); completed drops them.
    executor.emit('rollout:status', { ...rollout, status: 'halted', wave: 1, failedHosts: 2 });
    x = await scrape(metrics);
    assert.deepEqual(rolloutsByStatus(x), { running: 0, paused: 0, halted: 1, cancelled: 0, completed: 0 });
    assert.equal(perRollout(x, rollout.id).failedHosts, 2);
    executor.emit('rollout:status', { ...rollout, status: 'cancelled', wave: 1, failedHosts: 2 });
    executor.emit('rollout:status', { ...rollout, status: 'running' });
    x = await scrape(metrics);
    assert.deepEqual(
      rolloutsByStatus(x),
      { running: 0, paused: 0, halted: 0, cancelled: 1, completed: 0 },
      'never revived',
    );
    assert.deepEqual(perRollout(x, rollout.id), {
      wave: undefined,
      waves: undefined,
      failedHosts: undefined,
      steps: { pending: undefined, dispatched: undefined, succeeded: undefined, failed: undefined },
    });
    assert.equal(x.family(METRIC_NAMES.rolloutHostSteps).samples.length, 0);
    await w.close();
  });

  it('takes VM measurements from one source only, and never throws into the executor', async () => {
    const w = await openServiceWorld();
    const executor = executorOf(w);
    const rollout = await createRollout(w, executor);
    const [step] = await w.store.listSteps(rollout.id);
    assert.ok(step);
    const status: HostStepStatus = {
      stepId: step.id,
      host: step.host,
      status: 'succeeded',
      startedAt: 0,
      finishedAt: 1,
      error: null,
      vms: [vm('web_0', 'pause', 'ok', { pauseMs: 1000 })],
    };
    const fromAgents = createMetrics({ vmMeasurementsFrom: 'agent' });
    fromAgents.observeExecutor(executor);
    executor.emit('rollout:step:finished', ...finished(step, status));
    let x = await scrape(fromAgents);
    assert.equal(x.histogram(METRIC_NAMES.vmPause, { path: 'pause' }).count, 0);
    assert.equal(x.value(METRIC_NAMES.hostStepsFinished, { result: 'succeeded' }), 1, 'steps are still counted');

    const metrics = createMetrics();
    metrics.observeExecutor(executor);
    const broken = { ...status, vms: null } as unknown as HostStepStatus;
    assert.doesNotThrow(() => executor.emit('rollout:step:finished', ...finished(step, broken)));
    x = await scrape(metrics);
    assert.equal(x.value(METRIC_NAMES.listenerErrors, { event: 'rollout:step:finished' }), 1);
    await w.close();
  });
});
