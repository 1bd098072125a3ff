import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isIntermissionError } from '../../src/domain/index.js';
import {
  SIM_DRIVER_CAPABILITIES,
  SimHost,
  VirtualTime,
  driverCapabilities,
  fixed,
  type SimDriver,
  type SimHostConfig,
  type SimTimings,
} from '../../src/hypervisor/index.js';
import { driverSkipReason } from './driver-matrix.js';
import { expectDriverError, runDriverContract, type DriverContractSubject } from './driver.contract.js';

/** A simulated host with two VMs in auto-advancing virtual time: the contract's subject. */
function simSubject(config: Partial<SimHostConfig> = {}): Promise<DriverContractSubject> {
  const time = new VirtualTime({ autoAdvance: true });
  const host = new SimHost({ name: 'sim-1', time, seed: 7, vms: [{ name: 'vm-a' }, { name: 'vm-b' }], ...config });
  return Promise.resolve({
    driver: host.connect(),
    clock: time,
    sleep: (ms) => time.sleep(ms),
    vm: 'vm-a',
    otherVm: 'vm-b',
    targetVersion: 'sim-2.0',
  });
}

runDriverContract({
  name: 'sim (virtual time)',
  newDriver: () => simSubject(),
  capabilities: SIM_DRIVER_CAPABILITIES,
  skip: driverSkipReason('sim'),
});

runDriverContract({
  name: 'sim (no optional capabilities)',
  newDriver: () =>
    simSubject({ capabilities: { inPlaceMigration: false, hostUpdate: false, guestClock: false, reboot: false } }),
  capabilities: driverCapabilities(),
  skip: driverSkipReason('sim'),
});

// ---------------------------------------------------------------------------------------------
// Simulator-specific behaviour, in hand-driven virtual time: nothing sleeps.
// ---------------------------------------------------------------------------------------------

/** Timings with no randomness, so that tests can name exact instants. */
const EXACT: Partial<SimTimings> = {
  pauseMs: fixed(2),
  resumeMs: fixed(3),
  swapPrepareMs: fixed(100),
  swapDowntimeMs: fixed(20),
  rebootMs: fixed(4_000),
  applyFactor: fixed(1),
  agentRoundTripMs: fixed(4),
  agentArrivalFraction: fixed(0.5),
  driftPpm: fixed(0),
};

interface Setup {
  readonly time: VirtualTime;
  readonly host: SimHost;
  readonly driver: SimDriver;
  readonly t0: number;
}

function setup(config: Partial<SimHostConfig> = {}, options: { autoAdvance?: boolean } = {}): Setup {
  const time = new VirtualTime({ autoAdvance: options.autoAdvance ?? false });
  const host = new SimHost({ name: 'h1', time, seed: 1, vms: [{ name: 'vm1' }, { name: 'vm2' }], ...config });
  return { time, host, driver: host.connect(), t0: time.now() };
}

/** Tracks whether a promise has settled, without leaving a rejection unhandled. */
function track<T>(promise: Promise<T>): { readonly settled: () => boolean; readonly promise: Promise<T> } {
  let done = false;
  const watched = promise.finally(() => {
    done = true;
  });
  watched.catch(() => undefined);
  return { settled: () => done, promise: watched };
}

void describe('sim: faults', () => {
  void it('a hung pause rejects with TIMEOUT exactly at its deadline, the VM unchanged', async () => {
    const { time, host, driver, t0 } = setup({
      timings: EXACT,
      faults: [{ kind: 'hang', operation: 'pause', vm: 'vm1', times: 1 }],
    });
    const call = track(driver.pause({ vm: 'vm1', deadline: t0 + 1_000 }));
    await time.advance(999);
    assert.equal(call.settled(), false, 'still hanging 1 ms before the deadline');
    await time.advance(1);
    const error = await expectDriverError(call.promise, 'TIMEOUT', 'DEADLINE_EXCEEDED');
    assert.equal(time.now(), t0 + 1_000);
    assert.ok(isIntermissionError(error));
    assert.equal(error.details.fault, 'hang');
    assert.equal(error.retryable, true);
    assert.equal(host.vm('vm1').state, 'running');
    // The fault hit once: the retry goes through.
    const retry = await time.run(driver.pause({ vm: 'vm1' }));
    assert.equal(retry.pausedAt, t0 + 1_002);
  });

  void it('a hung call without a deadline ends at the default operation timeout', async () => {
    const { time, driver, t0 } = setup({ operationTimeoutMs: 5_000, faults: [{ kind: 'hang', operation: 'resume' }] });
    await time.run(driver.pause({ vm: 'vm1' }));
    const start = time.now();
    await expectDriverError(time.run(driver.resume({ vm: 'vm1' })), 'TIMEOUT', 'DEADLINE_EXCEEDED');
    assert.equal(time.now(), start + 5_000);
    assert.ok(start > t0);
  });

  void it('an abort ends a hung call at once with TIMEOUT (ABORTED)', async () => {
    const { time, driver, t0 } = setup({ faults: [{ kind: 'hang', operation: 'pause' }] });
    const controller = new AbortController();
    const call = track(driver.pause({ vm: 'vm1', signal: controller.signal }));
    await time.advance(10);
    controller.abort();
    await expectDriverError(call.promise, 'TIMEOUT', 'ABORTED');
    assert.equal(time.now(), t0 + 10);
    await expectDriverError(driver.pause({ vm: 'vm1', signal: controller.signal }), 'TIMEOUT', 'ABORTED');
  });

  void it('close() ends a hung call with UNREACHABLE; another connection still reaches the host', async () => {
    const { time, host, driver } = setup({ faults: [{ kind: 'hang', operation: 'pause', times: 1 }] });
    const call = track(driver.pause({ vm: 'vm1' }));
    await time.advance(5);
    await driver.close();
    const error = await expectDriverError(call.promise, 'UNREACHABLE', 'DRIVER_CLOSED');
    assert.ok(isIntermissionError(error));
    assert.equal(error.retryable, false);
    const other = host.connect();
    assert.equal((await time.run(other.pause({ vm: 'vm1' }))).alreadyPaused, false);
  });

  void it('a hung swap hangs in its switchover and rolls back at the deadline: the old process runs on', async () => {
    const { time, host, driver, t0 } = setup({
      timings: EXACT,
      faults: [{ kind: 'hang', operation: 'swapVmm', vm: 'vm1', times: 1 }],
    });
    const call = track(driver.swapVmm({ vm: 'vm1', targetVersion: 'sim-2.0', deadline: t0 + 1_000 }));
    await time.advance(150);
    assert.equal(host.vm('vm1').state, 'migrating');
    assert.equal(host.vm('vm1').pausedSince, t0 + 100, 'the switchover stopped the vCPUs');
    await time.advance(850);
    const error = await expectDriverError(call.promise, 'TIMEOUT', 'DEADLINE_EXCEEDED');
    assert.ok(isIntermissionError(error));
    assert.equal(error.details.rolledBack, true);
    assert.equal(error.details.fault, 'hang');
    const vm = host.vm('vm1');
    assert.equal(vm.state, 'running');
    assert.equal(vm.vmmVersion, 'sim-1.0');
    assert.equal(vm.generation, 1);
    assert.equal(vm.pausedSince, null);
    assert.equal(vm.longestPauseMs, 900, 'stopped from the switchover to the deadline');
    assert.deepEqual(
      host.history().map((e) => e.kind),
      ['swap-rolled-back'],
    );
  });

  void it('a refused swap rolls back after its switchover (OPERATION_FAILED, retryable)', async () => {
    const { time, host, driver } = setup({
      timings: EXACT,
      faults: [{ kind: 'fail', operation: 'swapVmm', times: 1 }],
    });
    const error = await expectDriverError(
      time.run(driver.swapVmm({ vm: 'vm1', targetVersion: 'sim-2.0', deadline: time.now() + 5_000 })),
      'CONFLICT',
      'OPERATION_FAILED',
    );
    assert.ok(isIntermissionError(error));
    assert.equal(error.retryable, true);
    assert.equal(error.details.rolledBack, true);
    assert.equal(host.vm('vm1').state, 'running');
    assert.equal(host.vm('vm1').vmmVersion, 'sim-1.0');
    const retry = await time.run(driver.swapVmm({ vm: 'vm1', targetVersion: 'sim-2.0', deadline: time.now() + 5_000 }));
    assert.equal(retry.changed, true);
    assert.equal(retry.downtimeMs, 20);
  });

  void it('a resume that fails N times keeps the VM paused, then succeeds', async () => {
    const { time, host, driver, t0 } = setup({ timings: EXACT });
    await time.run(driver.pause({ vm: 'vm1' }));
    host.injectFault({ kind: 'fail', operation: 'resume', vm: 'vm1', times: 2 });
    for (let attempt = 1; attempt <= 2; attempt++) {
      const error = await expectDriverError(time.run(driver.resume({ vm: 'vm1' })), 'CONFLICT', 'OPERATION_FAILED');
      assert.ok(isIntermissionError(error));
      assert.equal(error.retryable, true);
      assert.equal(host.vm('vm1').state, 'paused', `still paused after failure ${attempt}`);
      assert.equal(host.vm('vm1').pausedSince, t0 + 2);
    }
    assert.deepEqual(host.faults(), [], 'the fault is spent');
    const resumed = await time.run(driver.resume({ vm: 'vm1' }));
    assert.equal(resumed.pausedMs, 9, 'the whole pause: three resumes of 3 ms');
    assert.equal(host.vm('vm1').state, 'running');
  });

  void it('a crash during a swap leaves the VM failed until it is restarted', async () => {
    const { time, host, driver } = setup({
      timings: EXACT,
      faults: [{ kind: 'crash', operation: 'swapVmm', vm: 'vm1' }],
    });
    const error = await expectDriverError(
      time.run(driver.swapVmm({ vm: 'vm1', targetVersion: 'sim-2.0', deadline: time.now() + 5_000 })),
      'UNREACHABLE',
      'VM_FAILED',
    );
    assert.ok(isIntermissionError(error));
    assert.equal(error.retryable, false);
    assert.equal(error.details.rolledBack, false);
    const [vm1, vm2] = await driver.listVms();
    assert.equal(vm1?.state, 'failed');
    assert.equal(vm1?.pid, null);
    assert.equal(vm2?.state, 'running', 'the other VM is untouched');
    await expectDriverError(time.run(driver.pause({ vm: 'vm1' })), 'UNREACHABLE', 'VM_FAILED');
    await expectDriverError(time.run(driver.guestTime({ vm: 'vm1' })), 'UNREACHABLE', 'VM_FAILED');
    const restarted = await time.run(driver.reboot({ vm: 'vm1' }));
    assert.equal(restarted.rebootMs, 4_000);
    assert.equal(restarted.generation, 2);
    assert.equal(host.vm('vm1').state, 'running');
    assert.equal(host.vm('vm1').bootCount, 2);
  });

  void it('a VM that dies while paused cannot be resumed', async () => {
    const { time, host, driver } = setup();
    await time.run(driver.pause({ vm: 'vm2' }));
    host.crash({ vm: 'vm2' });
    await expectDriverError(time.run(driver.resume({ vm: 'vm2' })), 'UNREACHABLE', 'VM_FAILED');
    assert.equal(host.vm('vm2').pausedSince, null);
  });

  void it('a crash during a host update kills the named VM; the apply completes', async () => {
    const { time, host, driver } = setup({
      timings: EXACT,
      faults: [{ kind: 'crash', operation: 'applyHostUpdate', vm: 'vm2' }],
    });
    const result = await time.run(
      driver.applyHostUpdate({
        update: { id: 'p1', kind: 'host-patch', expectedApplyMs: 2_000 },
        deadline: time.now() + 10_000,
      }),
    );
    assert.equal(result.applyMs, 2_000);
    assert.equal(host.vm('vm1').state, 'running');
    assert.equal(host.vm('vm2').state, 'failed');
    assert.deepEqual(host.appliedUpdates(), ['p1']);
  });

  void it('a slow host update misses its deadline: TIMEOUT, not applied', async () => {
    const { time, host, driver, t0 } = setup({
      timings: EXACT,
      faults: [{ kind: 'slow', operation: 'applyHostUpdate', factor: 3, times: 1 }],
    });
    const update = { id: 'p2', kind: 'host-patch', expectedApplyMs: 1_000 } as const;
    const error = await expectDriverError(
      time.run(driver.applyHostUpdate({ update, deadline: t0 + 1_500 })),
      'TIMEOUT',
      'DEADLINE_EXCEEDED',
    );
    assert.ok(isIntermissionError(error));
    assert.equal(error.details.applied, false);
    assert.equal(error.details.fault, 'slow');
    assert.equal(time.now(), t0 + 1_500);
    assert.deepEqual(host.appliedUpdates(), []);
    const slowButInTime = setup({
      timings: EXACT,
      faults: [{ kind: 'slow', operation: 'applyHostUpdate', factor: 3 }],
    });
    const done = await slowButInTime.time.run(
      slowButInTime.driver.applyHostUpdate({ update, deadline: slowButInTime.t0 + 10_000 }),
    );
    assert.equal(done.applyMs, 3_000);
  });

  void it('refuses a second update while one is being applied (BUSY)', async () => {
    const { time, driver, t0 } = setup({ timings: EXACT });
    const first = track(
      driver.applyHostUpdate({ update: { id: 'a', kind: 'host-patch', expectedApplyMs: 100 }, deadline: t0 + 1_000 }),
    );
    await expectDriverError(
      driver.applyHostUpdate({ update: { id: 'b', kind: 'host-patch', expectedApplyMs: 100 }, deadline: t0 + 1_000 }),
      'CONFLICT',
      'BUSY',
    );
    await time.advance(100);
    assert.equal((await first.promise).updateId, 'a');
  });

  void it('validates faults as data', () => {
    const { host } = setup();
    assert.throws(() => host.injectFault({ kind: 'slow', operation: 'pause', factor: 0 }), { code: 'INVALID_INPUT' });
    assert.throws(() => host.injectFault({ kind: 'hang', operation: 'pause', times: 0 }), { code: 'INVALID_INPUT' });
    assert.throws(() => host.injectFault({ kind: 'hang', operation: 'applyHostUpdate', vm: 'vm1' }), {
      code: 'INVALID_INPUT',
    });
    const { id } = host.injectFault({ kind: 'hang', operation: 'reboot' });
    assert.equal(host.faults().length, 1);
    assert.equal(host.removeFault({ id }), true);
    assert.equal(host.removeFault({ id }), false);
  });
});

void describe('sim: VMs, swaps and states', () => {
  void it('shows a swap under way: migrating, then stopped for the switchover only, then the new process', async () => {
    const { time, host, driver, t0 } = setup({ timings: EXACT });
    const call = track(driver.swapVmm({ vm: 'vm1', targetVersion: 'sim-2.0', deadline: t0 + 5_000 }));
    await time.advance(50);
    assert.equal(host.vm('vm1').state, 'migrating');
    assert.equal(host.vm('vm1').pausedSince, null, 'the VM runs while the new process starts');
    await expectDriverError(driver.pause({ vm: 'vm1' }), 'CONFLICT', 'BUSY');
    await expectDriverError(driver.reboot({ vm: 'vm1' }), 'CONFLICT', 'BUSY');
    await time.advance(60);
    assert.equal(host.vm('vm1').pausedSince, t0 + 100);
    await expectDriverError(driver.guestTime({ vm: 'vm1' }), 'CONFLICT', 'WRONG_STATE');
    await time.advance(10);
    const result = await call.promise;
    assert.deepEqual(result, {
      changed: true,
      fromVersion: 'sim-1.0',
      toVersion: 'sim-2.0',
      generation: 2,
      downtimeMs: 20,
      totalMs: 120,
      startedAt: t0,
      completedAt: t0 + 120,
    });
    const vm = host.vm('vm1');
    assert.equal(vm.state, 'running');
    assert.equal(vm.bootCount, 1, 'no reboot: the guest runs on');
    assert.equal(vm.clockOffsetMs, -20, 'the guest clock fell behind by the downtime only');
  });

  void it('refuses a swap of a VM without shared RAM or with passthrough devices, naming them', async () => {
    const { time, driver } = setup({
      vms: [
        { name: 'gpu', blockingDevices: ['vfio-pci 0000:3b:00.0'] },
        { name: 'anon', sharedMemory: false },
      ],
    });
    assert.deepEqual(await driver.vmCapabilities({ vm: 'gpu' }), {
      sharedMemory: true,
      migratableDevices: false,
      blockingDevices: ['vfio-pci 0000:3b:00.0'],
      guestAgent: true,
    });
    const error = await expectDriverError(
      time.run(driver.swapVmm({ vm: 'gpu', targetVersion: 'v2', deadline: time.now() + 1_000 })),
      'CONFLICT',
      'UNSUPPORTED',
    );
    assert.ok(isIntermissionError(error));
    assert.deepEqual(error.details.blockingDevices, ['vfio-pci 0000:3b:00.0']);
    await expectDriverError(
      time.run(driver.swapVmm({ vm: 'anon', targetVersion: 'v2', deadline: time.now() + 1_000 })),
      'CONFLICT',
      'UNSUPPORTED',
    );
  });

  void it('reports a VM without a guest agent as UNREACHABLE for clock calls', async () => {
    const { time, driver } = setup({ vms: [{ name: 'bare', guestAgent: false }] });
    assert.equal((await driver.vmCapabilities({ vm: 'bare' })).guestAgent, false);
    const error = await expectDriverError(
      time.run(driver.resyncClock({ vm: 'bare' })),
      'UNREACHABLE',
      'GUEST_AGENT_UNREACHABLE',
    );
    assert.ok(isIntermissionError(error));
    assert.equal(error.retryable, false);
  });

  void it('refuses to resume a stopped VM, and restarts it', async () => {
    const { time, host, driver } = setup({ timings: EXACT, vms: [{ name: 'off', state: 'stopped' }] });
    assert.equal(host.vm('off').pid, null);
    await expectDriverError(driver.resume({ vm: 'off' }), 'CONFLICT', 'WRONG_STATE');
    const started = await time.run(driver.reboot({ vm: 'off', targetVersion: 'sim-3.0' }));
    assert.equal(started.vmmVersion, 'sim-3.0');
    assert.equal(host.vm('off').state, 'running');
    assert.equal(host.vm('off').bootCount, 1);
  });

  void it('keeps a paused VM paused across a driver restart (a new connection)', async () => {
    const { time, host, driver, t0 } = setup({ timings: EXACT });
    const paused = await time.run(driver.pause({ vm: 'vm1' }));
    await driver.close();
    await time.advance(5_000);
    const again = host.connect();
    const info = (await again.listVms()).find((v) => v.name === 'vm1');
    assert.equal(info?.state, 'paused');
    assert.equal(info?.pausedSince, paused.pausedAt);
    assert.equal(paused.pausedAt, t0 + 2);
    const resumed = await time.run(again.resume({ vm: 'vm1' }));
    assert.equal(resumed.pausedMs, 5_003);
    assert.equal(host.vm('vm1').longestPauseMs, 5_003);
  });

  void it('adds VMs and rejects a duplicate name with CONFLICT', () => {
    const { host } = setup();
    assert.equal(host.addVm({ name: 'vm3', ramMb: 65_536 }).ramMb, 65_536);
    assert.throws(() => host.addVm({ name: 'vm3' }), { code: 'CONFLICT' });
    assert.throws(() => host.vm('nope'), { code: 'NOT_FOUND' });
    assert.throws(
      () => new SimHost({ name: 'x', time: new VirtualTime(), timings: { pauseMs: { min: 5, mode: 1, max: 9 } } }),
      {
        code: 'INVALID_INPUT',
      },
    );
  });
});

void describe('sim: guest clock', () => {
  void it('falls behind by exactly the pause length, drifts by its ppm, and resyncs to within a round trip', async () => {
    const { time, host, driver } = setup({ timings: EXACT, vms: [{ name: 'g', driftPpm: 20 }] });
    await time.run(driver.pause({ vm: 'g' }));
    await time.advance(5_000);
    await time.run(driver.resume({ vm: 'g' }));
    assert.ok(Math.abs(host.vm('g').clockOffsetMs - -5_003) < 0.001, 'behind by the pause');
    await time.advance(3_600_000);
    assert.ok(Math.abs(host.vm('g').clockOffsetMs - (-5_003 + 72)) < 0.01, 'an hour at +20 ppm gains 72 ms');
    const result = await time.run(driver.resyncClock({ vm: 'g' }));
    assert.ok(Math.abs(result.offsetBeforeMs - (-5_003 + 72)) < 0.01);
    assert.equal(result.stepped, true);
    assert.ok(Math.abs(result.residualMs) <= result.roundTripMs);
    assert.ok(Math.abs(host.vm('g').clockOffsetMs) <= 4, `ground truth ${host.vm('g').clockOffsetMs}`);
  });

  void it('restarts with the host time after a reboot', async () => {
    const { time, host, driver } = setup({ vms: [{ name: 'g', clockOffsetMs: -60_000, driftPpm: 0 }] });
    assert.equal(host.vm('g').clockOffsetMs, -60_000);
    await time.run(driver.reboot({ vm: 'g' }));
    assert.equal(host.vm('g').clockOffsetMs, 0);
  });
});

void describe('sim: timings', () => {
  void it('draws realistic durations; the swap downtime does not depend on the RAM size', async () => {
    const vms = Array.from({ length: 40 }, (_, i) => ({ name: `vm${i}`, ramMb: i % 2 === 0 ? 512 : 262_144 }));
    const { time, driver } = setup({ vms }, { autoAdvance: true });
    const downtime = { small: [] as number[], large: [] as number[] };
    for (const [i, vm] of vms.entries()) {
      const before = time.now();
      const p = await driver.pause({ vm: vm.name });
      assert.ok(p.pausedAt - before >= 1 && p.pausedAt - before <= 6, `pause ${p.pausedAt - before}`);
      const r = await driver.resume({ vm: vm.name });
      assert.ok(r.pausedMs >= 1 && r.pausedMs <= 6, `resume ${r.pausedMs}`);
      const swap = await driver.swapVmm({ vm: vm.name, targetVersion: 'sim-2.0', deadline: time.now() + 5_000 });
      assert.ok(swap.downtimeMs >= 10 && swap.downtimeMs <= 30, `downtime ${swap.downtimeMs}`);
      assert.ok(swap.totalMs >= 70 && swap.totalMs <= 430, `total ${swap.totalMs}`);
      (i % 2 === 0 ? downtime.small : downtime.large).push(swap.downtimeMs);
    }
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(Math.abs(mean(downtime.small) - mean(downtime.large)) < 5, 'same distribution for 512 MB and 256 GB');
    const reboot = await driver.reboot({ vm: 'vm0' });
    assert.ok(reboot.rebootMs >= 2_000 && reboot.rebootMs <= 9_000, `reboot ${reboot.rebootMs}`);
    const apply = await driver.applyHostUpdate({
      update: { id: 'p', kind: 'host-patch', expectedApplyMs: 10_000 },
      deadline: time.now() + 20_000,
    });
    assert.ok(apply.applyMs >= 8_500 && apply.applyMs <= 11_500, `apply ${apply.applyMs}`);
  });

  void it('is deterministic per seed, and each VM draws from its own stream', async () => {
    async function scenario(seed: number, touchOther: boolean): Promise<unknown[]> {
      const { time, host, driver } = setup({ seed }, { autoAdvance: true });
      const out: unknown[] = [];
      if (touchOther) {
        await driver.pause({ vm: 'vm2' });
        await driver.resume({ vm: 'vm2' });
      }
      const start = time.now();
      out.push((await driver.pause({ vm: 'vm1' })).pausedAt - start);
      out.push((await driver.resume({ vm: 'vm1' })).pausedMs);
      out.push(
        await driver
          .swapVmm({ vm: 'vm1', targetVersion: 'v2', deadline: time.now() + 5_000 })
          .then((s) => [s.downtimeMs, s.totalMs]),
      );
      out.push((await driver.guestTime({ vm: 'vm1' })).roundTripMs);
      out.push(host.vm('vm1').driftPpm, host.vm('vm1').pid);
      return out;
    }
    const a = await scenario(42, false);
    assert.deepEqual(await scenario(42, false), a, 'same seed, same results');
    assert.notDeepEqual(await scenario(43, false), a, 'another seed, other results');
    const withOther = await scenario(42, true);
    assert.deepEqual(withOther.slice(0, 5), a.slice(0, 5), "vm1's draws ignore vm2's calls");
  });
});

void describe('sim: at scale', () => {
  void it('pauses, patches, resumes and resyncs 100 hosts of 20 VMs in virtual time, fast', async () => {
    const time = new VirtualTime({ autoAdvance: true });
    const hosts = Array.from(
      { length: 100 },
      (_, h) =>
        new SimHost({
          name: `h${h}`,
          time,
          seed: 3,
          vms: Array.from({ length: 20 }, (_, v) => ({ name: `h${h}-vm${v}` })),
        }),
    );
    const wallStart = performance.now();
    const virtualStart = time.now();
    const residuals = await Promise.all(
      hosts.map(async (host) => {
        const driver = host.connect();
        const vms = (await driver.listVms()).map((v) => v.name);
        await Promise.all(vms.map((vm) => driver.pause({ vm })));
        await driver.applyHostUpdate({
          update: { id: 'patch-1', kind: 'host-patch', expectedApplyMs: 5_000 },
          deadline: time.now() + 20_000,
        });
        await Promise.all(vms.map((vm) => driver.resume({ vm })));
        const synced = await Promise.all(vms.map((vm) => driver.resyncClock({ vm })));
        await driver.close();
        return synced.map((s) => Math.abs(s.residualMs));
      }),
    );
    const wallMs = performance.now() - wallStart;
    const virtualMs = time.now() - virtualStart;
    assert.ok(virtualMs >= 5_000, `${virtualMs} ms of virtual time passed`);
    // About 2 s on an idle 2-core machine; the bound only catches a hang, not a busy machine.
    assert.ok(wallMs < 30_000, `took ${Math.round(wallMs)} ms of wall time`);
    assert.ok(Math.max(...residuals.flat()) <= 15, 'every residual within a round trip');
    for (const host of hosts) {
      assert.deepEqual(host.appliedUpdates(), ['patch-1']);
      for (const vm of host.vms()) {
        assert.equal(vm.state, 'running');
        assert.ok(vm.longestPauseMs <= 5_000 * 1.15 + 20, `${vm.name} paused ${vm.longestPauseMs} ms`);
      }
    }
  });
});
