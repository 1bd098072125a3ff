import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AgentClient,
  FileJournal,
  HostAgent,
  MemoryJournal,
  createAgentApp,
  type AgentJournal,
  type HostStepRequest,
  type HostStepStatus,
  type VmStepResult,
} from '../../src/agent/index.js';
import type { HypervisorDriver, ResumeResult } from '../../src/hypervisor/index.js';
import { SimHost, VirtualTime, type SimFault } from '../../src/hypervisor/sim/index.js';
import { KEEP_FINISHED } from '../../src/agent/journal.js';

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

/**
 * An agent whose process can be killed: from `kill()` on, nothing it does reaches the disk (its
 * journal writes never land) or the host (its driver connection is closed).
 */
async function dyingAgent(
  sim: SimHost,
  time: VirtualTime,
  journalPath: string,
): Promise<{ agent: HostAgent; kill: () => Promise<void> }> {
  const dead = { value: false };
  const real = await FileJournal.open(journalPath);
  const journal: AgentJournal = {
    durable: true,
    get: (id) => real.get(id),
    compacted: (id) => real.compacted(id),
    entries: () => real.entries(),
    put: (entry) => (dead.value ? new Promise<void>(() => undefined) : real.put(entry)),
  };
  const driver = sim.connect();
  const agent = await HostAgent.start({ driver, journal, time });
  return {
    agent,
    kill: async () => {
      dead.value = true;
      await driver.close();
    },
  };
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

  it('resynchronises the clocks of VMs resumed after a failed update and of a VM its lease resumed', async () => {
    // Crash trials on QEMU: an update command that failed (or was killed) left the guests behind by
    // their pause, because the resync ran only after a successful update. Likewise a VM resumed by
    // the agent's own lease.
    for (const fault of [
      { kind: 'fail', operation: 'applyHostUpdate' },
      { kind: 'hang', operation: 'applyHostUpdate' },
    ] as const) {
      const time = new VirtualTime();
      const sim = host(time, [fault]);
      const agent = await HostAgent.start({ driver: sim.connect(), journal: new MemoryJournal(), time });
      await agent.submit(
        request({
          vms: [
            { name: 'a', path: 'pause', pauseBudgetMs: 8000 },
            { name: 'b', path: 'pause', pauseBudgetMs: 20_000 },
          ],
        }),
      );
      const status = await finish(time, agent, 'r1/w0/h1');
      assert.equal(status.status, 'failed', `${fault.kind}: the step fails`);
      for (const vm of status.vms) {
        assert.ok(
          vm.clockResidualMs !== null && Math.abs(vm.clockResidualMs) <= 50,
          `${fault.kind}: ${vm.name} (${vm.outcome}) resynchronised, residual ${vm.clockResidualMs}`,
        );
        assert.ok(vm.clockOffsetMs !== null && vm.clockOffsetMs < -1000, `${vm.name} was behind by its pause`);
        assert.ok(Math.abs(sim.vm(vm.name).clockOffsetMs) <= 50, `${fault.kind}: ${vm.name}'s guest clock`);
      }
      if (fault.kind === 'hang') assert.equal(status.vms.find((v) => v.name === 'a')?.outcome, 'lease-resumed');
    }
  });

  it('a resume beaten by the hypervisor lease records when the lease resumed the VM, not when it looked', async () => {
    // Crash trials on QEMU: an agent frozen past its lease found the VM running (the watchdog had
    // resumed it in time) and dated the resume by its own late reading, reporting a budget breach
    // that did not happen.
    const time = new VirtualTime();
    const sim = host(time, [{ kind: 'hang', operation: 'applyHostUpdate' }]);
    // The agent is frozen from 6.5 s to 9 s into the pause, as its own lease (at 7 s) and the end of
    // the hung update come due: its resumes reach the host only after the hypervisor's lease (at
    // 7.5 s) has resumed the VM.
    const driver = sim.connect();
    const frozen = { from: time.now() + 6500, until: time.now() + 9000 };
    const lateResume = async (options: { readonly vm: string }): Promise<ResumeResult> => {
      const now = time.now();
      if (now >= frozen.from && now < frozen.until) await time.sleep(frozen.until - now);
      return driver.resume(options);
    };
    const late = new Proxy(driver, {
      get: (target, prop) => {
        if (prop === 'resume') return lateResume;
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    }) as HypervisorDriver;
    const agent = await HostAgent.start({ driver: late, journal: new MemoryJournal(), time });
    await agent.submit(request({ vms: [{ name: 'a', path: 'pause', pauseBudgetMs: 8000 }] }));
    const status = await finish(time, agent, 'r1/w0/h1');
    const a = status.vms.find((v) => v.name === 'a');
    const [leased] = await driver.leaseResumes({ vm: 'a' });
    assert.ok(leased, 'the hypervisor lease resumed a');
    assert.equal(a?.resumedAt, leased.resumedAt, 'the lease’s own time');
    assert.ok(a.pauseMs !== null && a.pauseMs <= 8000, `a paused ${a.pauseMs} ms, budget 8000`);
    assert.ok(Math.abs(sim.vm('a').clockOffsetMs) <= 50, 'and its clock resynchronised');
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
    const first = await dyingAgent(sim, time, journalPath);
    await drive(time, first.agent.submit(request()));
    await time.advance(1000); // paused, applying
    assert.equal(sim.vm('a').state, 'paused');
    // The old agent process is gone (its driver connection with it); a new one starts on the same host.
    await first.kill();
    const second = await drive(
      time,
      HostAgent.start({ driver: sim.connect(), journal: await FileJournal.open(journalPath), time }),
    );
    assert.equal(sim.vm('a').state, 'running');
    assert.equal(sim.vm('b').state, 'running');
    const status = await second.submit(request());
    assert.equal(status.status, 'failed');
    assert.equal(status.error?.code, 'UNREACHABLE');
    // Invariant 4: the agent that resumed them resynchronised their clocks, and says so.
    for (const name of ['a', 'b']) {
      assert.ok(Math.abs(sim.vm(name).clockOffsetMs) <= 50, `${name} clock offset ${sim.vm(name).clockOffsetMs} ms`);
      const vm = status.vms.find((v) => v.name === name);
      assert.ok(vm, `the step reports ${name}`);
      assert.ok(vm.clockOffsetMs !== null && vm.clockOffsetMs < -500, `${name} was behind: ${vm.clockOffsetMs}`);
      assert.ok(vm.clockResidualMs !== null && Math.abs(vm.clockResidualMs) <= 50, `residual ${vm.clockResidualMs}`);
      assert.ok(vm.pauseMs !== null && vm.pauseMs >= 900, `${name} paused ${vm.pauseMs} ms`);
    }
  });

  it('an agent killed mid-pause: the lease resumes the VMs and resynchronises their clocks; the next agent reports it', async () => {
    const time = new VirtualTime();
    const sim = host(time, [{ kind: 'slow', factor: 3, operation: 'applyHostUpdate' }]);
    const journalPath = join(dir, 'killed.json');
    const { agent: first, kill } = await dyingAgent(sim, time, journalPath);
    const budget = 8000;
    const step = request({
      vms: [
        { name: 'a', path: 'pause', pauseBudgetMs: budget },
        { name: 'b', path: 'pause', pauseBudgetMs: budget },
      ],
    });
    await drive(time, first.submit(step));
    await time.advance(1500);
    assert.equal(sim.vm('a').state, 'paused');
    await kill();
    // The hypervisor's lease resumes them before their budget, and resynchronises their clocks.
    await time.advance(budget);
    for (let i = 0; i < 100 && sim.vms().some((v) => v.state !== 'running'); i++) await time.advance(100);
    for (const name of ['a', 'b']) {
      assert.equal(sim.vm(name).state, 'running');
      assert.ok(sim.vm(name).longestPauseMs < budget, `${name} paused ${sim.vm(name).longestPauseMs} ms`);
      assert.ok(Math.abs(sim.vm(name).clockOffsetMs) <= 50, `${name} clock ${sim.vm(name).clockOffsetMs} ms`);
    }
    const second = await drive(
      time,
      HostAgent.start({ driver: sim.connect(), journal: await FileJournal.open(journalPath), time }),
    );
    const status = second.status(step.stepId);
    assert.ok(status);
    assert.equal(status.status, 'failed');
    for (const name of ['a', 'b']) {
      const vm: VmStepResult | undefined = status.vms.find((v) => v.name === name);
      assert.equal(vm?.outcome, 'lease-resumed', JSON.stringify(vm));
      assert.ok(vm.pauseMs !== null && vm.pauseMs < budget && vm.pauseMs > budget / 2, `${name} paused ${vm.pauseMs}`);
      assert.ok(vm.clockOffsetMs !== null && vm.clockOffsetMs < -budget / 2, `${name} was behind ${vm.clockOffsetMs}`);
      assert.ok(vm.clockResidualMs !== null && Math.abs(vm.clockResidualMs) <= 50, `residual ${vm.clockResidualMs}`);
    }
    assert.deepEqual(sim.appliedUpdates(), [], 'the interrupted update is not applied again');
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

  it('refuses a step of an unknown kind, over HTTP and in process: never run, never journaled, never a success', async () => {
    const time = new VirtualTime();
    const sim = host(time);
    const journal = new MemoryJournal();
    const agent = await HostAgent.start({ driver: sim.connect(), journal, time });
    const app = createAgentApp({ agent, token: 'secret' });
    const body = { ...request(), kind: 'live-migrate' };
    const response = await app.fetch(
      new Request('http://agent.invalid/v1/steps/r1%2Fw0%2Fh1', {
        method: 'PUT',
        headers: { authorization: 'Bearer secret', 'content-type': 'application/json' },
        body: JSON.stringify(body),
      }),
    );
    assert.equal(response.status, 400);
    const answer = (await response.json()) as { error: { code: string; message: string } };
    assert.equal(answer.error.code, 'INVALID_INPUT');
    assert.match(answer.error.message, /kind/);
    // An in-process caller gets past no schema: the agent itself refuses.
    await assert.rejects(agent.submit(body as unknown as HostStepRequest), (error: unknown) => {
      const e = error as { code?: string; message?: string };
      assert.equal(e.code, 'INVALID_INPUT');
      assert.match(e.message ?? '', /unknown step kind "live-migrate"/);
      return true;
    });
    assert.equal(agent.status('r1/w0/h1'), undefined, 'nothing journaled');
    assert.deepEqual(journal.entries(), []);
    assert.deepEqual(sim.appliedUpdates(), [], 'nothing applied');
    assert.ok(sim.vms().every((v) => v.state === 'running'));
  });
});

describe('the journal never forgets a finished step id', () => {
  const hotPatch = (i: number, extra: Partial<HostStepRequest> = {}): HostStepRequest =>
    request({
      stepId: `r${i}/w0/h1`,
      rolloutId: `r${i}`,
      kind: 'hot-patch',
      update: { id: `hp-${i}`, kind: 'hot-patch', expectedApplyMs: 0, targetVmmVersion: null },
      vms: [],
      ...extra,
    });

  it(`answers a resend of a step finished more than ${KEEP_FINISHED} steps ago with its outcome, after a restart too, and never runs it again`, async () => {
    const time = new VirtualTime();
    const sim = host(time);
    const path = join(dir, 'many-steps.json');
    const first = await HostAgent.start({ driver: sim.connect(), journal: await FileJournal.open(path), time });
    const count = KEEP_FINISHED + 5;
    for (let i = 0; i < count; i++) {
      await first.submit(hotPatch(i));
      await finish(time, first, `r${i}/w0/h1`);
    }
    assert.equal(sim.appliedUpdates().length, count);
    // The controller resends the first step (it never recorded the answer): it is not run again.
    const early = await first.submit(hotPatch(0));
    assert.equal(early.status, 'succeeded');
    assert.equal(early.compacted, true, 'answered from the compact record');
    assert.equal(first.status('r0/w0/h1')?.status, 'succeeded', 'GET answers it too');
    await assert.rejects(first.submit(hotPatch(0, { maxClockResidualMs: 7 })), { code: 'CONFLICT' });
    // The agent restarts: the compact records were durable.
    await first.close();
    const second = await HostAgent.start({ driver: sim.connect(), journal: await FileJournal.open(path), time });
    const app = createAgentApp({ agent: second, token: 'secret' });
    const client = new AgentClient({
      host: 'h1',
      baseUrl: 'http://agent.invalid',
      token: 'secret',
      fetch: (r) => app.fetch(r),
    });
    for (const i of [0, 1, 4]) {
      const again = await client.submit(hotPatch(i));
      assert.equal(again.status, 'succeeded', `step ${i}`);
      assert.equal((await client.status(`r${i}/w0/h1`))?.status, 'succeeded');
    }
    await assert.rejects(client.submit(hotPatch(1, { maxClockResidualMs: 7 })), { code: 'CONFLICT' });
    assert.equal(sim.appliedUpdates().length, count, 'no step ran twice');
    assert.equal(sim.appliedUpdates().filter((u) => u === 'hp-0').length, 1);
    // The newest steps are still kept in full, and a new id still runs.
    assert.equal((await client.status(`r${count - 1}/w0/h1`))?.compacted, undefined);
    await client.submit(hotPatch(count));
    assert.equal((await finish(time, second, `r${count}/w0/h1`)).status, 'succeeded');
    await second.close();
  });

  it('reads a version 1 journal and keeps its steps', async () => {
    const time = new VirtualTime();
    const sim = host(time);
    const path = join(dir, 'v1.json');
    const req = hotPatch(1);
    const status: HostStepStatus = {
      stepId: req.stepId,
      host: 'h1',
      status: 'succeeded',
      startedAt: 1,
      finishedAt: 2,
      vms: [],
      error: null,
    };
    await writeFile(path, JSON.stringify({ version: 1, entries: [{ request: req, status }] }));
    const agent = await HostAgent.start({
      driver: sim.connect(),
      journal: await FileJournal.open(path, { keepFinished: 0 }),
      time,
    });
    assert.deepEqual(await agent.submit(req), status);
    await agent.submit(hotPatch(2));
    await finish(time, agent, 'r2/w0/h1');
    // keepFinished 0: both are compact now, and still answered.
    assert.equal(agent.status('r1/w0/h1')?.compacted, true);
    assert.equal((await agent.submit(hotPatch(2))).compacted, true);
    assert.deepEqual(sim.appliedUpdates(), ['hp-2']);
    await agent.close(); // the step's last write has landed
    const file = JSON.parse(await readFile(path, 'utf8')) as {
      version: number;
      entries: unknown[];
      compacted: unknown[];
    };
    assert.equal(file.version, 2);
    assert.equal(file.entries.length, 0);
    assert.equal(file.compacted.length, 2);
  });
});
