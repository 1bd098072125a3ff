import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FleetIndex, eventTiming, isIntermissionError, parseFleet, timeScale } from '../../src/domain/index.js';
import { Controller } from '../../src/controller/controller.js';
import { LeaderLease } from '../../src/controller/leader-lease.js';
import { realTime } from '../../src/hypervisor/sim/index.js';
import { EventService } from '../../src/service/event-service.js';
import { startSimHosts, type HostAgents } from '../../src/service/sim-hosts.js';
import { systemClock } from '../../src/service/system-clock.js';
import { openPostgresStore, type PostgresEventStore } from '../../src/store/postgres/index.js';
import type { LeaseStore } from '../../src/store/index.js';
import { postgresSkip, startPostgresCluster, type PostgresCluster } from './postgres-harness.js';

// Two controller replicas in one process on one PostgreSQL database, over the same simulated hosts
// (their agents in this process, reached through their HTTP apps). The leader is killed, or frozen,
// mid-rollout: the other takes over within the 10 s target and finishes the rollout; no host step
// runs twice and no event is published twice.

const cluster: PostgresCluster | undefined = postgresSkip === undefined ? await startPostgresCluster() : undefined;
after(() => cluster?.stop());

/** Four hosts, one VM each, one availability set of four update domains: four waves. */
const fleet = parseFleet({
  hosts: [{ name: 'h1' }, { name: 'h2' }, { name: 'h3' }, { name: 'h4' }],
  availabilitySets: [{ name: 'web', updateDomains: 4 }],
  vms: [
    { name: 'web_0', host: 'h1', availabilitySet: 'web' },
    { name: 'web_1', host: 'h2', availabilitySet: 'web' },
    { name: 'web_2', host: 'h3', availabilitySet: 'web' },
    { name: 'web_3', host: 'h4', availabilitySet: 'web' },
  ],
});

const TTL_MS = 5000;
const TARGET_MS = 10_000;

interface Replica {
  readonly name: string;
  readonly store: PostgresEventStore;
  readonly events: EventService;
  readonly controller: Controller;
  readonly lease: LeaderLease;
  /** performance.now() of each acquisition. */
  readonly acquiredAt: number[];
  /** Event ids this replica published. */
  readonly published: string[];
}

async function replica(
  name: string,
  url: string,
  hosts: HostAgents,
  leaseStore?: (s: LeaseStore) => LeaseStore,
): Promise<Replica> {
  const store = await openPostgresStore({ connectionString: url, maxConnections: 4 });
  const events = await EventService.open({
    fleet: new FleetIndex(fleet),
    store,
    clock: systemClock,
    timing: eventTiming({ scale: timeScale(60) }),
  });
  const lease = new LeaderLease({ store: leaseStore ? leaseStore(store) : store, holder: name, ttlMs: TTL_MS });
  store.fenceWrites({ epoch: () => lease.epoch });
  const controller = new Controller({ events, store, agents: hosts.clients, time: realTime(), lease, intervalMs: 100 });
  const acquiredAt: number[] = [];
  const published: string[] = [];
  lease.on('lease:acquired', () => acquiredAt.push(performance.now()));
  events.on('event:scheduled', (e) => published.push(e.eventId));
  return { name, store, events, controller, lease, acquiredAt, published };
}

/** Approves, through whichever replica leads, every Scheduled event not yet approved (as a guest would). */
async function approveAll(replicas: readonly Replica[]): Promise<void> {
  const leader = replicas.find((r) => r.controller.isLeader());
  if (!leader) return;
  for (const e of leader.events.list().filter((x) => x.phase === 'Scheduled' && x.approvedAt === undefined)) {
    const vm = e.resources[0];
    if (vm === undefined) continue;
    try {
      await leader.events.approve(vm, [e.eventId]);
    } catch (error) {
      if (!isIntermissionError(error, 'NOT_LEADER')) throw error;
    }
  }
}

interface World {
  readonly hosts: HostAgents;
  readonly a: Replica;
  readonly b: Replica;
  /** Host step starts on the agents, by step id. */
  readonly starts: Map<string, number>;
  readonly dir: string;
}

/** A switch that freezes replica A's lease calls; thawing fails the calls it held (as a timeout would). */
class Freeze {
  frozen = false;
  readonly #held: ((error: Error) => void)[] = [];
  hold<T>(): Promise<T> {
    return new Promise<T>((_resolve, reject) => this.#held.push(reject));
  }
  thaw(): void {
    this.frozen = false;
    for (const reject of this.#held.splice(0)) reject(new Error('thawed'));
  }
}

async function world(options: { freezableA?: Freeze } = {}): Promise<World> {
  if (!cluster) throw new Error('PostgreSQL is not running');
  const url = await cluster.createDatabase();
  const dir = await mkdtemp(join(tmpdir(), 'intermission-leader-'));
  const hosts = await startSimHosts({ fleet, stateDir: dir });
  const starts = new Map<string, number>();
  for (const agent of hosts.agents.values()) {
    agent.on('agent:step:start', (r) => starts.set(r.stepId, (starts.get(r.stepId) ?? 0) + 1));
  }
  const freeze = options.freezableA;
  const a = await replica('A', url, hosts, (store) =>
    freeze
      ? {
          // A frozen process (SIGSTOP, a partition from the database) sends no renewal that arrives.
          acquireOrRenew: (o) => (freeze.frozen ? freeze.hold() : store.acquireOrRenew(o)),
          release: (o) => store.release(o),
          readLease: (o) => store.readLease(o),
        }
      : store,
  );
  const b = await replica('B', url, hosts);
  await a.lease.tickOnce();
  assert.equal(a.lease.isLeader(), true);
  a.controller.start();
  b.controller.start();
  return { hosts, a, b, starts, dir };
}

async function closeWorld(w: World): Promise<void> {
  await Promise.allSettled([w.a.controller.stop({ release: false }), w.b.controller.stop()]);
  await Promise.allSettled([w.a.store.close(), w.b.store.close()]);
  await w.hosts.close();
  await rm(w.dir, { recursive: true, force: true });
}

/** Drives the rollout (approvals) until `until` holds, or fails after `ms`. */
async function drive(
  w: World,
  until: () => Promise<boolean>,
  ms: number,
  options: { approve?: boolean } = {},
): Promise<void> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    if (options.approve !== false) await approveAll([w.a, w.b]);
    if (await until()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not reached within ${ms} ms`);
}

async function checkFinished(w: World, rolloutId: string): Promise<void> {
  const detail = await w.b.controller.detail(rolloutId);
  assert.equal(detail.rollout.status, 'completed', detail.rollout.reason ?? '');
  assert.deepEqual(
    detail.steps.map((s) => s.status),
    ['succeeded', 'succeeded', 'succeeded', 'succeeded'],
  );
  // Every host step ran exactly once on its agent, whoever sent it.
  assert.equal(w.starts.size, 4);
  for (const [step, n] of w.starts) assert.equal(n, 1, `step ${step} ran ${n} times`);
  // Every event was published once, by one replica.
  const published = [...w.a.published, ...w.b.published];
  assert.equal(new Set(published).size, published.length, `published twice: ${published.join(', ')}`);
  const stored = await w.b.events.history({ includeRemoved: true });
  assert.equal(stored.length, 4, 'one event per wave in the store');
  assert.deepEqual(new Set(published), new Set(stored.map((e) => e.eventId)));
  // The agents saw epoch 2 at most (the new leader's); the old one's commands are refused now.
  for (const agent of w.hosts.agents.values()) assert.ok(agent.highestEpoch <= 2);
  assert.ok(
    [...w.hosts.agents.values()].some((a) => a.highestEpoch === 2),
    'the new leader commanded hosts',
  );
}

describe('several controllers on one PostgreSQL', { skip: postgresSkip ?? false }, () => {
  it('the leader is killed mid-rollout: the standby takes over within 10 s and finishes without repeating a step', async () => {
    const w = await world();
    try {
      assert.equal(w.b.controller.isLeader(), false);
      // A standby refuses writes, and serves reads.
      await assert.rejects(
        w.b.controller.apply({ update: { id: 'x', kind: 'host-patch', expectedApplyMs: '100ms' } }),
        (e: unknown) => isIntermissionError(e, 'NOT_LEADER'),
      );
      const rollout = await w.a.controller.apply({
        update: { id: 'patch-ha', kind: 'host-patch', expectedApplyMs: '300ms' },
        policy: { settleMs: 0 },
      });
      assert.deepEqual(await w.b.controller.list().then((l) => l.map((r) => r.id)), ['patch-ha']);
      // Mid-rollout: the second wave's step dispatched.
      await drive(
        w,
        async () => (await w.a.store.listSteps(rollout.id)).some((s) => s.wave === 1 && s.status !== 'pending'),
        60_000,
      );
      // Killed: the loops stop where they are and the lease is not released (a crash).
      const killedAt = performance.now();
      await w.a.controller.stop({ release: false });
      await w.a.store.close();
      await drive(w, () => Promise.resolve(w.b.acquiredAt.length > 0), TARGET_MS + 2000);
      const takeoverMs = (w.b.acquiredAt[0] ?? Infinity) - killedAt;
      console.log(`takeover after a kill: ${Math.round(takeoverMs)} ms (ttl ${TTL_MS} ms)`);
      assert.ok(takeoverMs < TARGET_MS, `took over after ${takeoverMs} ms`);
      await drive(w, async () => (await w.b.controller.detail(rollout.id)).rollout.status === 'completed', 60_000);
      await checkFinished(w, rollout.id);
    } finally {
      await closeWorld(w);
    }
  });

  it('the leader freezes mid-rollout: it stops acting before the standby takes over, and its late commands are refused', async () => {
    const frozen = new Freeze();
    const w = await world({ freezableA: frozen });
    try {
      const lostAt: number[] = [];
      w.a.lease.on('lease:lost', () => lostAt.push(performance.now()));
      const rollout = await w.a.controller.apply({
        update: { id: 'patch-freeze', kind: 'host-patch', expectedApplyMs: '300ms' },
        policy: { settleMs: 0 },
      });
      await drive(
        w,
        async () => (await w.a.store.listSteps(rollout.id)).some((s) => s.wave === 1 && s.status !== 'pending'),
        60_000,
      );
      // Its renewals stop arriving; its reconcile loop runs on, believing what it will.
      const frozeAt = performance.now();
      frozen.frozen = true;
      // No approvals meanwhile (the guests are slow), so that the old leader has work left to do.
      await drive(w, () => Promise.resolve(w.b.acquiredAt.length > 0), TARGET_MS + 2000, { approve: false });
      const selfFencedMs = (lostAt[0] ?? Infinity) - frozeAt;
      const takeoverMs = (w.b.acquiredAt[0] ?? Infinity) - frozeAt;
      console.log(
        `freeze: the old leader stopped after ${Math.round(selfFencedMs)} ms, the standby led after ${Math.round(takeoverMs)} ms`,
      );
      assert.ok(
        (lostAt[0] ?? Infinity) < (w.b.acquiredAt[0] ?? 0),
        'the old leader stopped before the new one started',
      );
      assert.ok(takeoverMs < TARGET_MS);
      assert.equal(w.a.controller.isLeader(), false);
      // What the old leader would still send carries epoch 1: every agent that heard from the new
      // leader refuses it.
      await drive(w, async () => (await w.b.controller.detail(rollout.id)).rollout.status === 'completed', 60_000);
      const fenced = [...w.hosts.agents].filter(([, a]) => a.highestEpoch === 2).map(([h]) => h);
      assert.ok(fenced.length >= 1, 'the new leader commanded some hosts');
      const host = fenced[0] as string;
      const client = w.hosts.clients.get(host);
      assert.ok(client);
      await assert.rejects(
        client.submit(
          {
            stepId: 'late',
            rolloutId: rollout.id,
            host,
            kind: 'hot-patch',
            update: { id: 'u', kind: 'hot-patch', expectedApplyMs: 1, targetVmmVersion: null },
            vms: [],
            maxClockResidualMs: 250,
          },
          { epoch: 1 },
        ),
        (e: unknown) => isIntermissionError(e, 'STALE_EPOCH'),
      );
      await checkFinished(w, rollout.id);
    } finally {
      frozen.thaw();
      await closeWorld(w);
    }
  });
});
