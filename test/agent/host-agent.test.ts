import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AgentClient,
  FileJournal,
  HostAgent,
  MemoryJournal,
  createAgentApp,
  type HostStepRequest,
  type HostStepStatus,
} from '../../src/agent/index.js';
import { SimHost, VirtualTime, type SimFault } from '../../src/hypervisor/sim/index.js';

const BUDGET = 30_000;

function host(time: VirtualTime, faults: SimFault[] = []): SimHost {
  return new SimHost({
    name: 'h1',
    time,
    seed: 7,
    vms: [{ name: 'a' }, { name: 'b' }, { name: 'c', sharedMemory: false }],
    faults,
  });
}

function request(overrides: Partial<HostStepRequest> = {}): HostStepRequest {
  return {
    stepId: 'r1/w0/h1',
    rolloutId: 'r1',
    host: 'h1',
    kind: 'freeze-apply-resume',
    update: { id: 'patch-1', kind: 'host-patch', expectedApplyMs: 4000, targetVmmVersion: null },
    vms: [
      { name: 'a', path: 'pause', pauseBudgetMs: BUDGET },
      { name: 'b', path: 'pause', pauseBudgetMs: BUDGET },
      { name: 'c', path: 'reboot', pauseBudgetMs: BUDGET },
    ],
    maxClockResidualMs: 50,
    ...overrides,
  };
}

async function finish(time: VirtualTime, agent: HostAgent, stepId: string): Promise<HostStepStatus> {
  for (let i = 0; i < 10_000; i++) {
    const status = agent.status(stepId);
    if (status && status.status !== 'running') return status;
    const next = time.nextDue();
    if (next === undefined) await new Promise((r) => setTimeout(r, 1));
    else await time.advanceTo(next);
  }
  throw new Error(`step ${stepId} did not finish`);
}

/**
 * Awaits a promise while moving virtual time whenever nothing else can happen; waits in real time
 * for real I/O (journal files) in between.
 */
async function drive<T>(time: VirtualTime, promise: Promise<T>): Promise<T> {
  let settled = false;
  const watched = promise.finally(() => {
    settled = true;
  });
  watched.catch(() => undefined);
  for (let i = 0; i < 100_000 && !settled; i++) {
    await new Promise((r) => setImmediate(r));
    if (settled) break;
    const next = time.nextDue();
    if (next !== undefined) await time.advanceTo(next);
    else await new Promise((r) => setTimeout(r, 1));
  }
  return watched;
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'intermission-agent-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('HostAgent on the simulator', () => {
  it('pauses, applies, resumes and resynchronises: pauses within budget, clocks measured, fallbacks restarted', async () => {
    const time = new VirtualTime();
    const sim = host(time);
    const agent = await HostAgent.start({ driver: sim.connect(), journal: new MemoryJournal(), time });
    await agent.submit(request());
    const status = await finish(time, agent, 'r1/w0/h1');
    assert.equal(status.status, 'succeeded', JSON.stringify(status.error));
    const byName = new Map(status.vms.map((v) => [v.name, v]));
    for (const name of ['a', 'b']) {
      const vm = byName.get(name);
      assert.equal(vm?.outcome, 'ok');
      assert.ok(vm.pauseMs !== null && vm.pauseMs >= 3400 && vm.pauseMs < BUDGET, `${name} paused ${vm.pauseMs} ms`);
      assert.ok(
        vm.clockOffsetMs !== null && vm.clockOffsetMs < -3000,
        `guest clock was behind by the pause: ${vm.clockOffsetMs}`,
      );
      assert.ok(vm.clockResidualMs !== null && Math.abs(vm.clockResidualMs) <= 50, `residual ${vm.clockResidualMs}`);
    }
    assert.equal(byName.get('c')?.outcome, 'ok');
    assert.equal(byName.get('c')?.pauseMs, null, 'the reboot fallback was not paused');
    assert.deepEqual(sim.appliedUpdates(), ['patch-1']);
    assert.ok(sim.vms().every((v) => v.state === 'running'));
  });

  it('the resume lease resumes a VM before its budget when the update hangs, and fails the step', async () => {
    const time = new VirtualTime();
    const sim = host(time, [{ kind: 'hang', operation: 'applyHostUpdate' }]);
    const agent = await HostAgent.start({ driver: sim.connect(), journal: new MemoryJournal(), time });
    const expired: string[] = [];
    agent.on('agent:lease:expired', (e) => expired.push(e.vm));
    await agent.submit(
      request({
        vms: [
          { name: 'a', path: 'pause', pauseBudgetMs: 8000 },
          { name: 'b', path: 'pause', pauseBudgetMs: 20_000 },
        ],
      }),
    );
    const status = await finish(time, agent, 'r1/w0/h1');
    assert.equal(status.status, 'failed');
    const a = status.vms.find((v) => v.name === 'a');
    const b = status.vms.find((v) => v.name === 'b');
    assert.equal(a?.outcome, 'lease-resumed');
    assert.equal(a.error?.code, 'PAUSE_BUDGET_EXCEEDED');
    assert.ok(a.pauseMs !== null && a.pauseMs <= 8000, `a paused ${a.pauseMs} ms, budget 8000`);
    assert.ok(
      b?.pauseMs !== null && b !== undefined && (b.pauseMs ?? Infinity) <= 8000 + 100,
      'the others are resumed when the update is aborted',
    );
    assert.deepEqual(expired, ['a']);
    assert.ok(
      sim.vms().every((v) => v.state === 'running'),
      'no VM is left paused',
    );
  });

  it('retries a failing resume so that no VM stays paused', async () => {
    const time = new VirtualTime();
    const sim = host(time, [{ kind: 'fail', operation: 'resume', vm: 'a', times: 3 }]);
    const agent = await HostAgent.start({ driver: sim.connect(), journal: new MemoryJournal(), time });
    await agent.submit(request({ vms: [{ name: 'a', path: 'pause', pauseBudgetMs: BUDGET }] }));
    const status = await finish(time, agent, 'r1/w0/h1');
    assert.equal(status.status, 'succeeded', JSON.stringify(status));
    assert.equal(sim.vm('a').state, 'running');
  });

  it('never runs a step twice: a repeated request answers the recorded status; other contents conflict', async () => {
    const time = new VirtualTime();
    const sim = host(time);
    const agent = await HostAgent.start({ driver: sim.connect(), journal: new MemoryJournal(), time });
    await agent.submit(request());
    const again = await agent.submit(request());
    assert.equal(again.status, 'running');
    await finish(time, agent, 'r1/w0/h1');
    const done = await agent.submit(request());
    assert.equal(done.status, 'succeeded');
    assert.deepEqual(sim.appliedUpdates(), ['patch-1'], 'applied once');
    await assert.rejects(agent.submit(request({ maxClockResidualMs: 10 })), { code: 'CONFLICT' });
  });

  it('after a restart mid-pause, resumes the paused VMs and records the step as failed instead of running it again', async () => {
    const time = new VirtualTime();
    const sim = host(time, [{ kind: 'slow', factor: 3, operation: 'applyHostUpdate' }]);
    const journalPath = join(dir, 'restart.json');
    const first = await HostAgent.start({ driver: sim.connect(), journal: await FileJournal.open(journalPath), time });
    await drive(time, first.submit(request()));
    await time.advance(1000); // paused, applying
    assert.equal(sim.vm('a').state, 'paused');
    // The old agent process is gone (its driver connection with it); a new one starts on the same host.
    const second = await drive(
      time,
      HostAgent.start({ driver: sim.connect(), journal: await FileJournal.open(journalPath), time }),
    );
    assert.equal(sim.vm('a').state, 'running');
    assert.equal(sim.vm('b').state, 'running');
    const status = await second.submit(request());
    assert.equal(status.status, 'failed');
    assert.equal(status.error?.code, 'UNREACHABLE');
  });

  it('moves VMs in place to the new VMM with a short pause', async () => {
    const time = new VirtualTime();
    const sim = host(time);
    const agent = await HostAgent.start({ driver: sim.connect(), journal: new MemoryJournal(), time });
    await agent.submit(
      request({
        kind: 'migrate-in-place',
        update: { id: 'vmm-2', kind: 'vmm-update', expectedApplyMs: 1000, targetVmmVersion: 'sim-2.0' },
        vms: [
          { name: 'a', path: 'in-place-migration', pauseBudgetMs: BUDGET },
          { name: 'b', path: 'in-place-migration', pauseBudgetMs: BUDGET },
          { name: 'c', path: 'reboot', pauseBudgetMs: BUDGET },
        ],
      }),
    );
    const status = await finish(time, agent, 'r1/w0/h1');
    assert.equal(status.status, 'succeeded', JSON.stringify(status.error));
    for (const vm of status.vms.filter((v) => v.path === 'in-place-migration')) {
      assert.ok(vm.pauseMs !== null && vm.pauseMs <= 50, `${vm.name} downtime ${vm.pauseMs}`);
    }
    assert.ok(
      sim.vms().every((v) => v.vmmVersion === 'sim-2.0'),
      JSON.stringify(sim.vms()),
    );
  });

  it('speaks the protocol over its HTTP app: token required, requests validated, answers parsed', async () => {
    const time = new VirtualTime();
    const sim = host(time);
    const agent = await HostAgent.start({ driver: sim.connect(), journal: new MemoryJournal(), time });
    const app = createAgentApp({ agent, token: 'secret' });
    const client = new AgentClient({
      host: 'h1',
      baseUrl: 'http://agent.invalid',
      token: 'secret',
      fetch: (r) => app.fetch(r),
    });
    const intruder = new AgentClient({
      host: 'h1',
      baseUrl: 'http://agent.invalid',
      token: 'wrong',
      fetch: (r) => app.fetch(r),
    });
    await assert.rejects(intruder.vms(), { code: 'UNAUTHORIZED' });
    assert.equal((await client.vms()).length, 3);
    assert.equal(await client.status('nope'), undefined);
    assert.equal((await client.submit(request())).status, 'running');
    await finish(time, agent, 'r1/w0/h1');
    assert.equal((await client.status('r1/w0/h1'))?.status, 'succeeded');
    await assert.rejects(client.submit(request({ host: 'h2' })), { code: 'INVALID_INPUT' });
  });
});
