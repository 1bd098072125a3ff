import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FleetIndex, MINUTE, SECOND, eventTiming, parseFleet, timeScale, type Fleet } from '../../src/domain/index.js';
import { AgentClient, HostAgent, MemoryJournal, createAgentApp, type HostStepStatus } from '../../src/agent/index.js';
import { Controller } from '../../src/controller/controller.js';
import type { SimHost } from '../../src/hypervisor/sim/index.js';
import { VirtualTime, createSimFleet, type SimFault } from '../../src/hypervisor/sim/index.js';
import { EventService } from '../../src/service/event-service.js';
import { openSqliteStore, type RolloutRecord, type SqliteEventStore } from '../../src/store/index.js';

/** Two sets of 6 VMs over 3 UDs, hosts aligned with UDs, plus standalone VMs. */
function regionFleet(): Fleet {
  const hosts = Array.from({ length: 6 }, (_, i) => ({ name: `h${i}` }));
  const vms = [];
  for (const set of ['web', 'db']) {
    for (let i = 0; i < 6; i++) {
      vms.push({
        name: `${set}_${i}`,
        host: `h${(i % 3) + (set === 'db' ? 3 : 0)}`,
        availabilitySet: set,
        updateDomain: i % 3,
        faultDomain: i % 2,
      });
    }
  }
  vms.push({ name: 'solo', host: 'h0' });
  return parseFleet({
    hosts,
    availabilitySets: [
      { name: 'web', updateDomains: 3 },
      { name: 'db', updateDomains: 3 },
    ],
    vms,
  });
}

interface World {
  time: VirtualTime;
  store: SqliteEventStore;
  events: EventService;
  controller: Controller;
  sim: ReadonlyMap<string, SimHost>;
  fleet: FleetIndex;
  finished: HostStepStatus[];
  close(): Promise<void>;
}

async function world(dir: string, name: string, faults: (host: string) => SimFault[] = () => []): Promise<World> {
  const time = new VirtualTime();
  const fleet = new FleetIndex(regionFleet());
  const store = await openSqliteStore({ path: join(dir, `${name}.db`) });
  const events = await EventService.open({
    fleet,
    store,
    clock: time.clock,
    timing: eventTiming({ scale: timeScale(60) }),
  });
  const sim = createSimFleet({ fleet: fleet.fleet, time, seed: 3, host: (h) => ({ faults: faults(h) }) });
  const clients = new Map<string, AgentClient>();
  const agents: HostAgent[] = [];
  for (const [host, simHost] of sim) {
    const agent = await HostAgent.start({ driver: simHost.connect(), journal: new MemoryJournal(), time });
    agents.push(agent);
    const app = createAgentApp({ agent, token: 't' });
    clients.set(
      host,
      new AgentClient({ host, baseUrl: 'http://agent.invalid', token: 't', fetch: (r) => app.fetch(r) }),
    );
  }
  const controller = new Controller({ events, store, agents: clients, time, pollGraceMs: 5 * SECOND });
  const finished: HostStepStatus[] = [];
  controller.executor.on('rollout:step:finished', (_s, status) => finished.push(status));
  return {
    time,
    store,
    events,
    controller,
    sim,
    fleet,
    finished,
    close: async () => {
      await Promise.all(agents.map((a) => a.close()));
      await events.stop();
      await store.close();
    },
  };
}

/** Runs reconcile passes and event ticks, moving virtual time, until the rollout ends. */
async function runUntilDone(w: World, id: string, onPass?: () => Promise<void>): Promise<RolloutRecord> {
  for (let pass = 0; pass < 20_000; pass++) {
    await w.controller.executor.reconcileOnce();
    await w.events.tick();
    if (onPass) await onPass();
    const r = await w.store.getRollout(id);
    if (r && ['completed', 'halted', 'cancelled'].includes(r.status)) return r;
    await w.time.advance(250);
  }
  throw new Error('rollout did not end');
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'intermission-exec-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('RolloutExecutor over simulated hosts', () => {
  it('applies a host patch under pause one update domain at a time, within budgets, with clocks resynchronised', async () => {
    const w = await world(dir, 'patch');
    // Track which (set, update domain) pairs are in maintenance while steps run: invariant 2.
    const inFlight = new Map<string, Set<string>>();
    let violations = 0;
    w.controller.executor.on('rollout:step:dispatched', (step) => {
      const pairs = new Set(
        w.fleet
          .vmsOnHost(step.host)
          .filter((v) => v.availabilitySet)
          .map((v) => `${v.availabilitySet}:${v.updateDomain}`),
      );
      inFlight.set(step.host, pairs);
      const bySet = new Map<string, Set<string>>();
      for (const p of [...inFlight.values()].flatMap((s) => [...s])) {
        const [set, ud] = p.split(':') as [string, string];
        bySet.set(set, (bySet.get(set) ?? new Set()).add(ud));
      }
      if ([...bySet.values()].some((uds) => uds.size > 1)) violations++;
    });
    w.controller.executor.on('rollout:step:finished', (step) => inFlight.delete(step.host));
    // Invariant 3: every VM's maintenance starts after its event was visible and due.
    const startedEvents = new Map<string, number>();
    w.events.on('event:started', (e) => {
      assert.ok(e.approvedAt !== undefined || (e.startedAt ?? 0) >= e.notBefore, `event ${e.eventId} started early`);
      assert.ok(e.notBefore - e.createdAt >= 15 * SECOND, 'Freeze notice (scaled 60x) is at least 15 s');
      for (const vm of e.resources) startedEvents.set(vm, e.startedAt ?? 0);
    });

    const rollout = await w.controller.apply({ update: { id: 'patch-1', kind: 'host-patch', expectedApplyMs: '3s' } });
    assert.equal(rollout.plan.waves.length, 3);
    const done = await runUntilDone(w, rollout.id);
    assert.equal(done.status, 'completed', done.reason ?? '');
    assert.equal(violations, 0, 'never two update domains of a set at once');

    const ops = await w.store.listOperations({ rolloutId: rollout.id });
    assert.equal(ops.length, 13, 'every VM measured once');
    for (const op of ops) {
      assert.equal(op.outcome, 'ok', `${op.vm}: ${op.outcome}`);
      assert.ok(
        op.pauseMs !== null && op.pauseMs > 2000 && op.pauseMs <= op.pauseBudgetMs,
        `${op.vm} paused ${op.pauseMs}`,
      );
      assert.ok(op.clockOffsetMs !== null && op.clockOffsetMs < -2000, `${op.vm} was behind after the pause`);
      assert.ok(
        op.clockResidualMs !== null && Math.abs(op.clockResidualMs) < 50,
        `${op.vm} residual ${op.clockResidualMs}`,
      );
      assert.ok(startedEvents.has(op.vm), `${op.vm} had a started event before its pause`);
    }
    assert.ok([...w.sim.values()].every((h) => h.vms().every((v) => v.state === 'running')));
    // After the linger every event is gone and every scope's document is empty.
    await w.time.advance(10 * MINUTE);
    await w.events.tick();
    assert.deepEqual(w.events.list(), []);
    await w.close();
  });

  it('starts a wave early when a tenant approves, and never before', async () => {
    const w = await world(dir, 'approve');
    const rollout = await w.controller.apply({ update: { id: 'patch-2', kind: 'host-patch', expectedApplyMs: '1s' } });
    // Every tenant approves as soon as it sees an event: a host step waits for all the scopes on its host.
    const r = await runUntilDone(w, rollout.id, async () => {
      for (const e of w.events.list().filter((x) => x.phase === 'Scheduled' && x.approvedAt === undefined)) {
        const vm = e.resources.at(-1);
        if (vm) await w.events.approve(vm, [e.eventId]);
      }
    });
    assert.equal(r.status, 'completed');
    const history = await w.events.history({ includeRemoved: true, scope: 'set:web' });
    assert.equal(history.length, 3, 'one web event per wave');
    for (const e of history) {
      assert.ok(e.approvedBy !== undefined, 'approved by a VM of its scope');
      assert.ok(e.startedAt !== undefined && e.startedAt < e.notBefore, 'the approved event started before NotBefore');
      assert.ok(e.startedAt >= (e.approvedAt ?? Infinity), 'never before the approval');
    }
    await w.close();
  });

  it('halts when a host update hangs: the lease resumes the VMs within budget and no further wave starts', async () => {
    const w = await world(dir, 'hang', (h) => (h === 'h1' ? [{ kind: 'hang', operation: 'applyHostUpdate' }] : []));
    const rollout = await w.controller.apply({
      update: { id: 'patch-3', kind: 'host-patch', expectedApplyMs: '2s' },
      policy: { pauseBudgetMs: '10s' },
    });
    const r = await runUntilDone(w, rollout.id);
    assert.equal(r.status, 'halted');
    assert.match(r.reason ?? '', /failure budget/);
    const ops = await w.store.listOperations({ rolloutId: rollout.id });
    const leased = ops.filter((o) => o.outcome === 'lease-resumed');
    assert.ok(leased.length > 0, 'the lease resumed the VMs of the hung host');
    for (const op of ops)
      assert.ok((op.pauseMs ?? 0) <= op.pauseBudgetMs, `${op.vm} paused ${op.pauseMs} > ${op.pauseBudgetMs}`);
    assert.ok(r.wave < 2, 'later waves did not run');
    assert.ok(
      [...w.sim.values()].every((h) => h.vms().every((v) => v.state === 'running')),
      'no VM left paused',
    );
    await w.close();
  });

  it('a restarted controller continues without repeating a host step or losing an event', async () => {
    const first = await world(dir, 'restart');
    const rollout = await first.controller.apply({
      update: { id: 'patch-4', kind: 'host-patch', expectedApplyMs: '1s' },
    });
    // Run until the first wave has steps in flight, then "crash" the controller (drop it) and start a new one.
    for (let i = 0; i < 400; i++) {
      await first.controller.executor.reconcileOnce();
      await first.events.tick();
      const steps = await first.store.listSteps(rollout.id);
      if (steps.some((s) => s.status === 'dispatched')) break;
      await first.time.advance(250);
    }
    const eventsBefore = first.events
      .list()
      .map((e) => e.eventId)
      .sort();
    assert.ok(eventsBefore.length > 0);
    const second = new Controller({
      events: first.events,
      store: first.store,
      agents: new Map([...first.sim.keys()].map((h) => [h, first.controller.agent(h)])),
      time: first.time,
    });
    let pass = 0;
    for (; pass < 20_000; pass++) {
      await second.executor.reconcileOnce();
      await first.events.tick();
      const r = await first.store.getRollout(rollout.id);
      if (r?.status === 'completed') break;
      await first.time.advance(250);
    }
    const applied = [...first.sim.values()].map((h) => h.appliedUpdates());
    assert.ok(
      applied.every((a) => a.length === 1),
      `each host patched exactly once: ${JSON.stringify(applied)}`,
    );
    const history = await first.events.history({ includeRemoved: true });
    for (const id of eventsBefore)
      assert.ok(
        history.some((e) => e.eventId === id),
        `event ${id} kept`,
      );
    assert.equal(new Set(history.map((e) => e.eventId)).size, history.length, 'no event published twice');
    await first.close();
  });
});
