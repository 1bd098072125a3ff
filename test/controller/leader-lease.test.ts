import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { HostStepRequest } from '../../src/agent/index.js';
import { Controller } from '../../src/controller/controller.js';
import { LeaderLease } from '../../src/controller/leader-lease.js';
import { FleetIndex, eventTiming, isIntermissionError, parseFleet, timeScale } from '../../src/domain/index.js';
import { realTime } from '../../src/hypervisor/sim/index.js';
import { EventService } from '../../src/service/event-service.js';
import { startSimHosts } from '../../src/service/sim-hosts.js';
import { systemClock } from '../../src/service/system-clock.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';

// The leader lease of one replica, on SQLite, with a fake monotonic clock: self-fencing at the
// deadline, renewal, deposition; and a controller deposed by an agent's STALE_EPOCH.

const dir = await mkdtemp(join(tmpdir(), 'intermission-lease-'));
after(() => rm(dir, { recursive: true, force: true }));
let count = 0;

function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('LeaderLease', () => {
  it('leads until ttl − margin after the renewal was sent, on its own clock, unless renewed', async () => {
    const store = await openSqliteStore({ path: join(dir, `l${++count}.db`) });
    const clock = fakeClock();
    const lease = new LeaderLease({ store, holder: 'a', ttlMs: 5000, marginMs: 1000, monotonic: clock.now });
    const events: string[] = [];
    lease.on('lease:acquired', (i) => events.push(`acquired ${i.epoch}`));
    lease.on('lease:lost', (i) => events.push(`lost ${i.epoch}: ${i.reason}`));
    try {
      await lease.tickOnce();
      assert.equal(lease.epoch, 1);
      clock.advance(3999);
      assert.equal(lease.epoch, 1);
      await lease.tickOnce(); // renewed: 4000 ms from now
      clock.advance(3999);
      assert.equal(lease.epoch, 1);
      clock.advance(1);
      assert.equal(lease.epoch, undefined, 'self-fenced at the deadline');
      assert.equal(lease.isLeader(), false);
      // Nobody took it: the same holder renews with the same epoch (nothing changed hands).
      await lease.tickOnce();
      assert.equal(lease.epoch, 1);
      assert.deepEqual(events, ['acquired 1', 'lost 1: the lease was not renewed before its deadline', 'acquired 1']);
    } finally {
      await lease.stop();
      await store.close();
    }
  });

  it('a second replica stands by; after a release it leads with the next epoch', async () => {
    const path = join(dir, `l${++count}.db`);
    const [s1, s2] = [await openSqliteStore({ path }), await openSqliteStore({ path })];
    const a = new LeaderLease({ store: s1, holder: 'a', ttlMs: 60_000 });
    const b = new LeaderLease({ store: s2, holder: 'b', ttlMs: 60_000 });
    try {
      await a.tickOnce();
      const standby = await b.tickOnce();
      assert.deepEqual([standby?.leader, standby?.holder, b.epoch], [false, 'a', undefined]);
      await a.stop();
      assert.equal(a.epoch, undefined);
      await b.tickOnce();
      assert.equal(b.epoch, 2);
    } finally {
      await b.stop();
      await Promise.all([s1.close(), s2.close()]);
    }
  });

  it('deposed at an epoch, it never leads at that epoch again: it gives the lease up and comes back higher', async () => {
    const store = await openSqliteStore({ path: join(dir, `l${++count}.db`) });
    const lease = new LeaderLease({ store, holder: 'a', ttlMs: 60_000 });
    try {
      await lease.tickOnce();
      assert.equal(lease.epoch, 1);
      lease.depose(1, 'an agent saw epoch 2');
      assert.equal(lease.epoch, undefined);
      await lease.tickOnce(); // the store still says "a, epoch 1": released, not led
      assert.equal(lease.epoch, undefined);
      await lease.tickOnce();
      assert.equal(lease.epoch, 2);
    } finally {
      await lease.stop();
      await store.close();
    }
  });

  it('one controller on SQLite keeps its epoch across a restart (a fixed holder renews at once)', async () => {
    const path = join(dir, `l${++count}.db`);
    let store = await openSqliteStore({ path });
    let lease = new LeaderLease({ store, holder: 'embedded' });
    await lease.tickOnce();
    assert.equal(lease.epoch, 1);
    await lease.stop({ release: false }); // a crash
    await store.close();
    store = await openSqliteStore({ path });
    lease = new LeaderLease({ store, holder: 'embedded' });
    await lease.tickOnce();
    assert.equal(lease.epoch, 1, 'no wait for the ttl, and the same epoch');
    await lease.stop();
    await store.close();
  });
});

describe('a controller deposed by an agent', () => {
  it('stops at STALE_EPOCH: the step stays dispatched (not failed), and the lease is given up', async () => {
    const fleet = parseFleet({ hosts: [{ name: 'h1' }], vms: [{ name: 'solo', host: 'h1' }] });
    const stateDir = join(dir, `c${++count}`);
    const store = await openSqliteStore({ path: join(dir, `c${count}.db`) });
    const hosts = await startSimHosts({ fleet, stateDir });
    const events = await EventService.open({
      fleet: new FleetIndex(fleet),
      store,
      clock: systemClock,
      timing: eventTiming({ scale: timeScale(60) }),
    });
    const lease = new LeaderLease({ store, holder: 'a', ttlMs: 60_000 });
    const controller = new Controller({
      events,
      store,
      agents: hosts.clients,
      time: realTime(),
      lease,
      intervalMs: 50,
    });
    const lost: string[] = [];
    lease.on('lease:lost', (i) => lost.push(i.reason));
    try {
      // Another controller, with epoch 5, has spoken to the agent.
      const client = hosts.clients.get('h1');
      assert.ok(client);
      const other: HostStepRequest = {
        stepId: 'other',
        rolloutId: 'elsewhere',
        host: 'h1',
        kind: 'hot-patch',
        update: { id: 'u', kind: 'hot-patch', expectedApplyMs: 1, targetVmmVersion: null },
        vms: [],
        maxClockResidualMs: 250,
      };
      await client.submit(other, { epoch: 5 });
      await lease.tickOnce();
      assert.equal(lease.epoch, 1);
      controller.start();
      const rollout = await controller.apply({
        update: { id: 'hp', kind: 'hot-patch', expectedApplyMs: '10ms' },
        policy: { settleMs: 0 },
      });
      const deadline = Date.now() + 10_000;
      while (lost.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.match(lost[0] ?? '', /deposed/);
      assert.equal(controller.isLeader(), false);
      const [step] = await store.listSteps(rollout.id);
      assert.equal(step?.status, 'dispatched', 'a refusal for a stale epoch is no verdict on the step');
      assert.equal(hosts.agents.get('h1')?.status(step.id), undefined, 'the agent never ran it');
      await assert.rejects(controller.executor.pause(rollout.id), (e: unknown) => isIntermissionError(e, 'NOT_LEADER'));
    } finally {
      await controller.stop();
      await hosts.close();
      await store.close();
    }
  });
});
