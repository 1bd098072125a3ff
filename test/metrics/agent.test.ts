import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { HostAgent, MemoryJournal, type HostStepRequest, type HostStepStatus } from '../../src/agent/index.js';
import { IntermissionError } from '../../src/domain/index.js';
import { SimHost, VirtualTime, type SimFault } from '../../src/hypervisor/sim/index.js';
import {
  METRIC_NAMES,
  PAUSE_SECONDS_BUCKETS,
  createMetrics,
  type CreateMetricsOptions,
} from '../../src/metrics/index.js';
import { Exposition, cumulativeBuckets } from './exposition.js';

interface AgentWorld {
  readonly time: VirtualTime;
  readonly agent: HostAgent;
  /** Every `agent:step:end` status, as the agent announced it. */
  readonly ended: HostStepStatus[];
}

/** A real agent on a simulated host `h1` with VMs `a`, `b` (preserving) and `c`. */
async function agentWorld(faults: SimFault[] = []): Promise<AgentWorld> {
  const time = new VirtualTime();
  const sim = new SimHost({ name: 'h1', time, seed: 7, vms: [{ name: 'a' }, { name: 'b' }, { name: 'c' }], faults });
  const agent = await HostAgent.start({ driver: sim.connect(), journal: new MemoryJournal(), time });
  const ended: HostStepStatus[] = [];
  agent.on('agent:step:end', (status) => ended.push(status));
  return { time, agent, ended };
}

function request(vms: HostStepRequest['vms']): HostStepRequest {
  return {
    stepId: 'r1/w0/h1',
    rolloutId: 'r1',
    host: 'h1',
    kind: 'freeze-apply-resume',
    update: { id: 'patch-1', kind: 'host-patch', expectedApplyMs: 4000, targetVmmVersion: null },
    vms,
    maxClockResidualMs: 50,
  };
}

/** Moves virtual time until the step has finished. */
async function finish(w: AgentWorld, stepId: string): Promise<HostStepStatus> {
  for (let i = 0; i < 10_000; i++) {
    const status = w.agent.status(stepId);
    if (status && status.status !== 'running') return status;
    const next = w.time.nextDue();
    if (next === undefined) await new Promise((r) => setTimeout(r, 1));
    else await w.time.advanceTo(next);
  }
  throw new Error(`step ${stepId} did not finish`);
}

async function run(options: CreateMetricsOptions, faults: SimFault[], vms: HostStepRequest['vms']) {
  const w = await agentWorld(faults);
  const metrics = createMetrics(options);
  metrics.observeAgent(w.agent);
  await w.agent.submit(request(vms));
  const status = await finish(w, 'r1/w0/h1');
  await w.agent.close();
  return { w, status, x: Exposition.parse(await metrics.render()), metrics };
}

describe('metrics of a host agent (real HostAgent on a simulated host)', () => {
  it('counts steps by host and result and, as the measurement source, the VMs it paused', async () => {
    const { w, status, x } = await run(
      { vmMeasurementsFrom: 'agent' },
      [],
      [
        { name: 'a', path: 'pause', pauseBudgetMs: 30_000 },
        { name: 'b', path: 'pause', pauseBudgetMs: 30_000 },
        { name: 'c', path: 'reboot', pauseBudgetMs: 30_000 },
      ],
    );
    assert.equal(status.status, 'succeeded');
    assert.deepEqual(w.ended, [status]);
    assert.equal(x.value(METRIC_NAMES.agentHostSteps, { host: 'h1', result: 'succeeded' }), 1);
    assert.equal(x.value(METRIC_NAMES.leaseExpirations, { host: 'h1' }), 0, 'the host has a series from the start');

    const pauses = status.vms.flatMap((v) => (v.pauseMs === null ? [] : [v.pauseMs / 1000]));
    assert.equal(pauses.length, 2);
    const pause = x.histogram(METRIC_NAMES.vmPause, { path: 'pause' });
    assert.equal(pause.count, 2);
    assert.equal(
      pause.sum,
      pauses.reduce((s, v) => s + v, 0),
    );
    assert.deepEqual(pause.buckets, cumulativeBuckets(pauses, PAUSE_SECONDS_BUCKETS));
    const offsets = status.vms.flatMap((v) => (v.clockOffsetMs === null ? [] : [Math.abs(v.clockOffsetMs) / 1000]));
    assert.equal(
      x.histogram(METRIC_NAMES.vmClockOffset, { path: 'pause' }).sum,
      offsets.reduce((s, v) => s + v, 0),
    );
    assert.equal(x.histogram(METRIC_NAMES.vmClockResidual, { path: 'pause' }).count, 2);
    assert.equal(x.value(METRIC_NAMES.vmOperations, { path: 'pause', outcome: 'ok' }), 2);
    assert.equal(x.value(METRIC_NAMES.vmOperations, { path: 'reboot', outcome: 'ok' }), 1);
    assert.equal(x.value(METRIC_NAMES.pauseBudgetViolations, { path: 'pause' }), 0);
  });

  it('counts a resume-lease expiration by host when the update hangs', async () => {
    const { status, x } = await run(
      {},
      [{ kind: 'hang', operation: 'applyHostUpdate' }],
      [
        { name: 'a', path: 'pause', pauseBudgetMs: 8000 },
        { name: 'b', path: 'pause', pauseBudgetMs: 20_000 },
      ],
    );
    assert.equal(status.status, 'failed');
    assert.equal(x.value(METRIC_NAMES.leaseExpirations, { host: 'h1' }), 1);
    assert.equal(x.value(METRIC_NAMES.agentHostSteps, { host: 'h1', result: 'failed' }), 1);
    // The executor is the default source: the agent's own announcement adds no VM measurement.
    assert.equal(x.histogram(METRIC_NAMES.vmPause, { path: 'pause' }).count, 0);
    assert.equal(x.family(METRIC_NAMES.vmOperations).samples.length, 0);
  });

  it('counts agent errors and adopted resumes by host, and stops at unsubscribe', async () => {
    const w = await agentWorld();
    const metrics = createMetrics();
    const unsubscribe = metrics.observeAgent(w.agent);
    w.agent.emit('agent:error', new IntermissionError('UNREACHABLE', 'hypervisor gone'));
    w.agent.emit('agent:adopt:resumed', { host: 'h1', vm: 'a' });
    unsubscribe();
    w.agent.emit('agent:error', new IntermissionError('UNREACHABLE', 'hypervisor gone'));
    const x = Exposition.parse(await metrics.render());
    assert.equal(x.value(METRIC_NAMES.agentErrors, { host: 'h1', code: 'UNREACHABLE' }), 1);
    assert.equal(x.value(METRIC_NAMES.adoptedResumes, { host: 'h1' }), 1);
    assert.equal(w.agent.listenerCount('agent:error'), 0);
    await w.agent.close();
  });
});
