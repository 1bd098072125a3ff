/**
 * The resume watchdog's rule (a pure function) and its loop against a fake QMP peer: it resumes a
 * paused process at its lease, never one that is migrating, and caps any pause at its maximum.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  decideLease,
  leaseApplies,
  pauseStart,
  readLeaseResumes,
  resyncAfterLease,
  ResumeWatchdog,
  type LeaseFile,
} from '../../src/hypervisor/index.js';
import { withClockLock } from '../../src/hypervisor/qemu/guest-clock.js';
import { QmpClient, preciseWallClock } from '../../src/qmp/index.js';
import { FakeGuestAgent } from '../qmp/fake-guest-agent.js';
import { FakeQmpServer } from '../qmp/fake-qmp-server.js';

const T0 = 1_800_000_000_000;
const MAX = 30_000;

void describe('decideLease', () => {
  void it('leaves a running or migrating process alone', () => {
    for (const status of ['running', 'inmigrate', 'finish-migrate', 'postmigrate', 'prelaunch', 'shutdown']) {
      const decision = decideLease({ status, pausedSince: T0, lease: undefined, now: T0 + 60_000, maxPauseMs: MAX });
      assert.equal(decision.kind, 'idle', status);
    }
  });

  void it('waits until the lease, then resumes', () => {
    const lease: LeaseFile = { until: T0 + 5_000, writtenAt: T0 - 2, pausedAt: T0 };
    const waiting = decideLease({ status: 'paused', pausedSince: T0, lease, now: T0 + 4_999, maxPauseMs: MAX });
    assert.deepEqual(waiting, { kind: 'wait', deadline: T0 + 5_000, pausedSince: T0, leased: true });
    const due = decideLease({ status: 'paused', pausedSince: T0, lease, now: T0 + 5_000, maxPauseMs: MAX });
    assert.equal(due.kind, 'resume');
  });

  void it('caps every pause at maxPauseMs, lease or not', () => {
    const long: LeaseFile = { until: T0 + 120_000, writtenAt: T0 - 1 };
    const capped = decideLease({ status: 'paused', pausedSince: T0, lease: long, now: T0, maxPauseMs: MAX });
    assert.equal(capped.kind === 'wait' ? capped.deadline : 0, T0 + MAX);
    const none = decideLease({ status: 'paused', pausedSince: T0, lease: undefined, now: T0 + MAX, maxPauseMs: MAX });
    assert.equal(none.kind, 'resume');
    const unknownStart = decideLease({
      status: 'paused',
      pausedSince: null,
      lease: undefined,
      now: T0,
      maxPauseMs: MAX,
    });
    assert.equal(
      unknownStart.kind === 'wait' ? unknownStart.deadline : 0,
      T0 + MAX,
      'from now when the start is unknown',
    );
  });

  void it('ignores a lease left by an earlier pause', () => {
    const stale: LeaseFile = { until: T0 - 60_000 + 5_000, writtenAt: T0 - 60_000, pausedAt: T0 - 60_000 };
    assert.equal(leaseApplies(stale, T0), false);
    const decision = decideLease({ status: 'paused', pausedSince: T0, lease: stale, now: T0 + 1, maxPauseMs: MAX });
    assert.equal(decision.kind === 'wait' ? decision.deadline : 0, T0 + MAX);
    // Written just before the stop, before the driver added pausedAt: it applies.
    assert.equal(leaseApplies({ until: T0 + 1000, writtenAt: T0 - 3 }, T0), true);
    assert.equal(leaseApplies({ until: null, writtenAt: T0 - 3 }, T0), false, 'a pause without a lease');
  });
});

void describe('pauseStart', () => {
  // A paused VM's swap failed in its switchover at T0 + 20 s: the rollback ran it for a moment
  // (cont, stop) to leave postmigrate, and wrote the lease again with the pause's first start.
  const stoppedAgain = T0 + 20_000;
  const carried: LeaseFile = { until: T0 + 25_000, writtenAt: stoppedAgain + 3, pausedAt: T0 };

  void it('counts a pause carried across a rollback from its first start, lease and cap alike', () => {
    assert.equal(pauseStart(stoppedAgain, carried), T0);
    const waiting = decideLease({
      status: 'paused',
      pausedSince: stoppedAgain,
      lease: carried,
      now: stoppedAgain + 10,
      maxPauseMs: MAX,
    });
    assert.deepEqual(waiting, { kind: 'wait', deadline: T0 + 25_000, pausedSince: T0, leased: true });
    // Without a lease deadline the cap still runs from the first start: 30 s in all, not 50.
    const open: LeaseFile = { ...carried, until: null };
    const capped = decideLease({
      status: 'paused',
      pausedSince: stoppedAgain,
      lease: open,
      now: T0 + MAX,
      maxPauseMs: MAX,
    });
    assert.deepEqual(capped, { kind: 'resume', deadline: T0 + MAX, pausedSince: T0, leased: false });
  });

  void it('takes the STOP when the lease is a leftover or names a later start', () => {
    const leftover: LeaseFile = { until: null, writtenAt: T0, pausedAt: T0 };
    assert.equal(pauseStart(T0 + 60_000, leftover), T0 + 60_000);
    assert.equal(pauseStart(T0, { ...carried, pausedAt: T0 + 5 }), T0);
    assert.equal(pauseStart(T0, { until: T0 + 1_000, writtenAt: T0 - 3 }), T0, 'a lease without pausedAt');
  });
});

void describe('ResumeWatchdog against a QMP peer', () => {
  async function setUp(status: string, lease: () => LeaseFile | undefined, now: () => number = Date.now) {
    const server = await FakeQmpServer.start({ status });
    const qmp = await QmpClient.connect({ path: server.path, timeoutMs: 2_000 });
    const log: string[] = [];
    const watchdog = new ResumeWatchdog({
      qmp,
      readLease: lease,
      maxPauseMs: MAX,
      now,
      log: (entry) => log.push(entry.event),
      pausedRecheckMs: 20,
      idleRecheckMs: 50,
    });
    return { server, qmp, watchdog, log };
  }

  void it('checkOnce resumes a paused process whose lease has passed', async () => {
    const now = Date.now();
    const { server, watchdog, log } = await setUp('paused', () => ({
      until: now - 1,
      writtenAt: now - 10,
      pausedAt: now - 5,
    }));
    try {
      const check = await watchdog.checkOnce();
      assert.equal(check.decision.kind, 'resume');
      assert.equal(check.resumed, true);
      assert.equal(server.status, 'running');
      assert.deepEqual(log, ['resume']);
    } finally {
      await watchdog.stop();
      await server.close();
    }
  });

  void it('never resumes a process in migration', async () => {
    const now = Date.now();
    const { server, watchdog } = await setUp('postmigrate', () => ({ until: now - 1, writtenAt: now - 10 }));
    try {
      const check = await watchdog.checkOnce();
      assert.equal(check.decision.kind, 'idle');
      assert.equal(check.resumed, false);
      assert.equal(server.status, 'postmigrate');
      assert.ok(!server.calls.some((c) => c.command === 'cont'));
    } finally {
      await watchdog.stop();
      await server.close();
    }
  });

  void it('started, resumes at the lease a pause it saw begin, and stops with its monitor', async () => {
    const box: { lease?: LeaseFile } = {};
    const { server, qmp, watchdog, log } = await setUp('running', () => box.lease);
    const status = (): string => server.status;
    watchdog.start();
    box.lease = { until: Date.now() + 150, writtenAt: Date.now() };
    const paused = Date.now();
    await qmp.execute('stop');
    assert.equal(status(), 'paused');
    const end = Date.now() + 3_000;
    while (status() !== 'running' && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    const took = Date.now() - paused;
    assert.equal(status(), 'running', 'resumed');
    assert.ok(took >= 140 && took < 1_000, `resumed after ${took} ms`);
    // The watchdog logs once its `cont` is answered, a moment after the peer's status changed.
    while (!log.includes('resume') && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    assert.ok(log.includes('resume'), `the watchdog logged its resume: ${log.join(', ')}`);
    server.dropConnections();
    await watchdog.done;
    await server.close();
  });

  void it('keeps counting from the first start when a rollback runs the paused VM for a moment', async () => {
    const box: { lease?: LeaseFile } = {};
    const { server, qmp, watchdog } = await setUp('running', () => box.lease);
    try {
      watchdog.start();
      const pausedAt = Date.now();
      box.lease = { until: pausedAt + 400, writtenAt: pausedAt };
      await qmp.execute('stop');
      await new Promise((r) => setTimeout(r, 200));
      // What the driver's rollback does: the lease written again, fresh, then `cont` and `stop`.
      box.lease = { until: pausedAt + 400, writtenAt: Date.now(), pausedAt };
      await qmp.execute('cont');
      await qmp.execute('stop');
      const end = Date.now() + 3_000;
      while (server.status !== 'running' && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
      const took = Date.now() - pausedAt;
      assert.equal(server.status, 'running', 'resumed');
      assert.ok(took >= 390 && took < 1_000, `resumed ${took} ms after the first stop (lease 400 ms)`);
    } finally {
      await watchdog.stop();
      await server.close();
    }
  });
});

void describe('the clock after a lease resume (invariant 4)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'iq-wdclock-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  void it('the watchdog resynchronises the guest clock after its own resume and records it', async () => {
    const server = await FakeQmpServer.start({ status: 'running' });
    const agent = await FakeGuestAgent.start({ oneWayDelayMs: 1 });
    const qmp = await QmpClient.connect({ path: server.path, timeoutMs: 2_000 });
    const recordPath = join(dir, 'resumes-1.json');
    const lockPath = join(dir, 'clock-1.lock');
    const box: { lease?: LeaseFile } = {};
    const watchdog = new ResumeWatchdog({
      qmp,
      readLease: () => box.lease,
      maxPauseMs: MAX,
      pausedRecheckMs: 20,
      idleRecheckMs: 50,
      afterResume: async ({ pausedSince, resumedAt }) => {
        await resyncAfterLease({
          vm: 'vm1',
          guestAgentPath: agent.path,
          lockPath,
          recordPath,
          pausedAt: pausedSince,
          resumedAt,
          clock: preciseWallClock,
        });
      },
    });
    try {
      watchdog.start();
      const pausedAt = Date.now();
      box.lease = { until: pausedAt + 300, writtenAt: pausedAt };
      await qmp.execute('stop');
      // The guest's clock stands still while paused: behind by the pause once it runs again.
      agent.clockOffsetMs = -300;
      const end = Date.now() + 5_000;
      while (readLeaseResumes(recordPath).length === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
      const [entry] = readLeaseResumes(recordPath);
      assert.ok(entry, 'recorded');
      assert.equal(server.status, 'running');
      assert.equal(entry.vm, 'vm1');
      assert.equal(entry.clockError, null);
      assert.ok(entry.clock);
      assert.ok(entry.clock.offsetBeforeMs < -250, `behind before: ${entry.clock.offsetBeforeMs}`);
      assert.ok(Math.abs(entry.clock.residualMs) <= Math.max(5, entry.clock.roundTripMs), `${entry.clock.residualMs}`);
      assert.ok(Math.abs(agent.clockOffsetMs) < 5, `the guest clock was set: ${agent.clockOffsetMs}`);
      assert.ok(agent.calls.some((c) => c.command === 'guest-set-time'));
      assert.ok(!existsSync(lockPath), 'the clock lock is released');
    } finally {
      await watchdog.stop();
      await server.close();
      await agent.close();
    }
  });

  void it('records a resync that failed (no guest agent answering), and the resume still happened', async () => {
    const recordPath = join(dir, 'resumes-2.json');
    const entry = await resyncAfterLease({
      vm: 'vm2',
      guestAgentPath: join(dir, 'no-such.sock'),
      lockPath: join(dir, 'clock-2.lock'),
      recordPath,
      pausedAt: 1,
      resumedAt: 2,
      clock: preciseWallClock,
      timeoutMs: 1_000,
    });
    assert.equal(entry.clock, null);
    assert.equal(entry.clockError?.code, 'UNREACHABLE');
    assert.deepEqual(readLeaseResumes(recordPath), [entry]);
  });

  void it('the clock lock serialises resyncs, and is taken over from a holder that died', async () => {
    const lockPath = join(dir, 'clock-3.lock');
    const order: string[] = [];
    const slow = withClockLock(lockPath, async () => {
      order.push('a-start');
      await new Promise((r) => setTimeout(r, 150));
      order.push('a-end');
    });
    await new Promise((r) => setTimeout(r, 10));
    await withClockLock(lockPath, () => {
      order.push('b');
      return Promise.resolve();
    });
    await slow;
    assert.deepEqual(order, ['a-start', 'a-end', 'b']);
    // A holder killed with the lock held (kill -9 of an agent mid-resync): its pid is gone.
    const child = spawn(process.execPath, ['-e', '']);
    const pid = await new Promise<number>((resolve) => child.once('exit', () => resolve(child.pid ?? 0)));
    writeFileSync(lockPath, `${pid} deadbeef`);
    const started = Date.now();
    await withClockLock(lockPath, () => Promise.resolve(), { waitMs: 5_000 });
    assert.ok(Date.now() - started < 1_000, 'taken over at once');
    assert.ok(!existsSync(lockPath));
    // A live holder that never lets go is waited for up to waitMs, then the resync runs anyway.
    writeFileSync(lockPath, `${process.pid} other`);
    const t0 = Date.now();
    await withClockLock(lockPath, () => Promise.resolve(), { waitMs: 200 });
    assert.ok(Date.now() - t0 >= 190);
    assert.equal(readFileSync(lockPath, 'utf8'), `${process.pid} other`, "another holder's lock is left alone");
  });
});
