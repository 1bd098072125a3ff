/**
 * The QEMU driver with real guests (TCG): the shared driver contract, then what only real VMs show:
 * a tenant application reading Scheduled Events through its own channel, an in-place VMM swap seen
 * from inside the guest, clock resynchronisation, adoption by a new driver, rollbacks, and the
 * resume watchdog outliving a killed agent.
 *
 * Three guests boot in parallel once (before every test) and every test shares them: vm-a and vm-b
 * for the contract, vm-t (tenant application with tick beats, metadata service) for the rest. Each
 * contract case opens a NEW driver on the run directory: every case is also an adoption.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseFleet, type Clock } from '../../src/domain/index.js';
import {
  QEMU_DRIVER_CAPABILITIES,
  QemuDriver,
  destroyQemuRunDir,
  isDriverError,
  processPaths,
  vmPaths,
  type QemuDriverConfig,
  type QemuVmInfo,
  type SwapPhase,
  type SwapPhaseEvent,
  type VmRuntimeInfo,
} from '../../src/hypervisor/index.js';
import { createMetadataApp, listenMetadata, type MetadataListeners } from '../../src/imds/index.js';
import { MemoryMetadataBackend } from '../../src/testing/metadata-backend.js';
import { expectDriverError, runDriverContract } from '../hypervisor/driver.contract.js';
import {
  REPO,
  SerialWatcher,
  VMM_A,
  VMM_B,
  beats,
  buildGuest,
  fields,
  newRunDir,
  qemuPreflight,
  serialLines,
  sleep,
  testDriverConfig,
  waitForSerial,
  type TestGuest,
} from './qemu-fixture.js';

const preflight = qemuPreflight();
const wallClock: Clock = { now: () => Date.now() };
/** Boots under TCG on a loaded two-core machine take 10-60 s; three at once, longer. */
const BOOT_MS = 240_000;

interface Fixture {
  readonly guest: TestGuest;
  readonly runDir: string;
  readonly config: QemuDriverConfig;
  readonly backend: MemoryMetadataBackend;
  readonly metadata: MetadataListeners;
  readonly tenant: QemuVmInfo;
}

let fixture: Promise<Fixture> | undefined;
const openDrivers = new Set<QemuDriver>();

/** Opens a driver on the shared run dir (adopting the VMs); closed in `after` if a test does not. */
async function openDriver(config: QemuDriverConfig): Promise<QemuDriver> {
  const driver = await QemuDriver.open(config);
  openDrivers.add(driver);
  return driver;
}

async function closeDriver(driver: QemuDriver): Promise<void> {
  await driver.close();
  openDrivers.delete(driver);
}

/** Boots the three guests in parallel, once. */
function setUp(): Promise<Fixture> {
  fixture ??= (async () => {
    preflight.assertReady();
    const guest = buildGuest();
    const runDir = newRunDir('drv');
    const config = testDriverConfig(runDir, guest);
    const fleet = parseFleet({
      hosts: [{ name: config.host }],
      vms: ['vm-a', 'vm-b', 'vm-t'].map((name) => ({ name, host: config.host })),
    });
    const backend = new MemoryMetadataBackend({ fleet, clock: wallClock });
    const app = createMetadataApp({ backend });
    const metadata = await listenMetadata({
      app,
      bindings: ['vm-a', 'vm-b', 'vm-t'].map((vm) => ({ vm, address: { path: join(runDir, `${vm}.imds.sock`) } })),
    });
    const driver = await openDriver(config);
    try {
      const [, , tenant] = await Promise.all([
        driver.launch({ vm: 'vm-a', metadataSocket: join(runDir, 'vm-a.imds.sock') }),
        driver.launch({ vm: 'vm-b', metadataSocket: join(runDir, 'vm-b.imds.sock'), sharedMemory: false }),
        driver.launch({ vm: 'vm-t', metadataSocket: join(runDir, 'vm-t.imds.sock'), kernelArgs: 'tenant.beat=1' }),
      ]);
      return { guest, runDir, config, backend, metadata, tenant };
    } finally {
      await closeDriver(driver);
    }
  })();
  return fixture;
}

after(async () => {
  for (const driver of [...openDrivers]) await closeDriver(driver);
  if (fixture === undefined) return;
  const f = await fixture.catch(() => undefined);
  if (f === undefined) return;
  await f.metadata.close();
  await destroyQemuRunDir(f.runDir);
});

// ---------------------------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------------------------

runDriverContract({
  name: 'qemu (real guests, TCG)',
  newDriver: async () => {
    const f = await setUp();
    const driver = await openDriver(f.config);
    // The guests outlive each case (the sim starts fresh hosts): start every case in step.
    for (const vm of ['vm-a', 'vm-b']) await driver.resyncClock({ vm, toleranceMs: 1 });
    return {
      driver,
      clock: wallClock,
      sleep: (ms) => sleep(Math.max(0, ms)),
      vm: 'vm-a',
      otherVm: 'vm-b',
      targetVersion: VMM_B,
      dispose: () => {
        openDrivers.delete(driver);
        return Promise.resolve();
      },
    };
  },
  capabilities: QEMU_DRIVER_CAPABILITIES,
  // Guest-agent round trips under TCG on a loaded machine reach tens of ms; the watchdog is a process.
  tolerances: { clockMs: 60, swapDowntimeMs: 1000, leaseMs: 1500 },
  skip: preflight.skip || undefined,
});

// ---------------------------------------------------------------------------------------------
// Real guests only
// ---------------------------------------------------------------------------------------------

void describe('QEMU driver with real guests', { skip: preflight.skip }, () => {
  let f: Fixture;
  let driver: QemuDriver;

  /** Closes the test's driver and opens a new one on the same run directory, as an agent restart does. */
  const reopen = async (config: QemuDriverConfig = f.config): Promise<void> => {
    await closeDriver(driver);
    driver = await openDriver(config);
  };

  /** vm-t as the driver lists it now, and the VMM build it is not on: where a swap takes it. */
  const vmtAndOtherBuild = async (): Promise<{ before: VmRuntimeInfo; other: string }> => {
    const before = (await driver.listVms()).find((v) => v.name === 'vm-t');
    assert.ok(before);
    return { before, other: before.vmmVersion === VMM_A ? VMM_B : VMM_A };
  };

  before(
    async () => {
      f = await setUp();
      driver = await openDriver(f.config);
    },
    { timeout: BOOT_MS },
  );

  void it('boots the guests with the tenant application and the guest agent', async () => {
    await waitForSerial(f.tenant.serialLog, /TENANT .* start ip=169\.254\.0\.15\/16/, { timeoutMs: 60_000 });
    const caps = await driver.vmCapabilities({ vm: 'vm-t' });
    assert.deepEqual(
      { ...caps, blockingDevices: [...(caps.blockingDevices ?? [])] },
      {
        sharedMemory: true,
        migratableDevices: true,
        blockingDevices: [],
        guestAgent: true,
        // The host's other build is the same binary: it can load the VM's pinned machine type.
        vmmBuilds: { [VMM_B]: { loadable: true } },
      },
    );
    const info = await driver.describeVm({ vm: 'vm-t' });
    assert.ok(info.watchdogPid !== null, 'a resume watchdog runs beside the VM');
  });

  void it('serves the tenant its Scheduled Events through its own channel; it approves a Freeze', async () => {
    await waitForSerial(f.tenant.serialLog, /TENANT .* incarnation=\d+/, { timeoutMs: 60_000 });
    const event = f.backend.schedule({ type: 'Freeze', resources: ['vm-t'], description: 'in-place VMM update' });
    const seen = await waitForSerial(
      f.tenant.serialLog,
      new RegExp(`TENANT .*event=${event.eventId} type=Freeze status=Scheduled .*`),
      { timeoutMs: 30_000 },
    );
    const line = fields(seen[0]);
    const seenAtMs = Number(line.wall) * 1000;
    assert.ok(seenAtMs < event.notBefore, `the tenant saw the event before its NotBefore (${line.wall})`);
    assert.ok(Number(line.incarnation) >= 1);
    await waitForSerial(f.tenant.serialLog, new RegExp(`TENANT .*event=${event.eventId} approve=ok`), {
      timeoutMs: 30_000,
    });
    const { started } = f.backend.tick();
    assert.deepEqual(
      started.map((e) => e.eventId),
      [event.eventId],
      'the approval makes the event due at once',
    );
    await waitForSerial(f.tenant.serialLog, new RegExp(`TENANT .*event=${event.eventId} type=Freeze status=Started`), {
      timeoutMs: 30_000,
    });
    // Another VM's channel never shows vm-t's event.
    assert.ok(!serialLines(join(f.runDir, 'vm-a', 'serial.log')).some((l) => l.includes(event.eventId)));
  });

  void it('pauses and resumes: the pause dated by QEMU events, the guest clock behind by it', async () => {
    await driver.resyncClock({ vm: 'vm-t' });
    const before = await driver.guestTime({ vm: 'vm-t' });
    const paused = await driver.pause({ vm: 'vm-t', leaseUntil: Date.now() + 20_000 });
    await sleep(1000);
    const resumed = await driver.resume({ vm: 'vm-t' });
    assert.ok(resumed.pausedMs >= 1000 && resumed.pausedMs < 1500, `paused ${resumed.pausedMs} ms`);
    assert.equal(resumed.resumedAt - paused.pausedAt, resumed.pausedMs);
    const afterReading = await driver.guestTime({ vm: 'vm-t' });
    const lost = before.offsetMs - afterReading.offsetMs;
    assert.ok(
      Math.abs(lost - resumed.pausedMs) <= 20 + (before.roundTripMs + afterReading.roundTripMs) / 2,
      `the guest fell behind by the pause: ${lost.toFixed(1)} ms vs ${resumed.pausedMs.toFixed(1)} ms`,
    );
  });

  void it('moves the VM in place: the tenant keeps running, RAM is not copied, the pause is short', async () => {
    const from = (await driver.listVms()).find((v) => v.name === 'vm-t');
    assert.ok(from);
    const rcBefore = serialLines(f.tenant.serialLog).filter((l) => l.startsWith('RC ready')).length;
    const watcher = new SerialWatcher(f.tenant.serialLog);
    let swap;
    try {
      await sleep(1500);
      swap = await driver.swapVmm({ vm: 'vm-t', targetVersion: VMM_B, deadline: Date.now() + 20_000 });
      await sleep(2500);
    } finally {
      watcher.stop();
    }
    assert.equal(swap.changed, true);
    assert.equal(swap.generation, from.generation + 1);
    const now = (await driver.listVms()).find((v) => v.name === 'vm-t');
    assert.equal(now?.state, 'running');
    assert.notEqual(now?.pid, from.pid, 'a new QEMU process');
    assert.equal(now?.vmmVersion, VMM_B);

    // RAM stayed where it was: the migration stream carried device state and small ROMs only.
    const ram = 256 * 1024 * 1024;
    assert.ok(swap.migration !== null);
    assert.ok(swap.migration.transferredBytes < ram / 50, `transferred ${swap.migration.transferredBytes} B of ${ram}`);
    assert.ok(swap.migration.ramTotalBytes < ram / 50, `accounted RAM ${swap.migration.ramTotalBytes} B`);
    assert.ok(swap.downtimeMs > 0 && swap.downtimeMs < 1000, `downtime ${swap.downtimeMs} ms`);
    assert.ok(swap.stoppedAt !== null && swap.resumedAt !== null);

    // Seen from inside: the same boot, the ticker numbering and uptime run on without a reset.
    const rcAfter = serialLines(f.tenant.serialLog).filter((l) => l.startsWith('RC ready')).length;
    assert.equal(rcAfter, rcBefore, 'no reboot');
    const ticks = beats(watcher.lines);
    assert.ok(ticks.length > 50, `the ticker printed (${ticks.length} beats)`);
    for (let i = 1; i < ticks.length; i++) {
      const [a, b] = [ticks[i - 1], ticks[i]];
      assert.ok(a && b);
      assert.equal(b.n, a.n + 1, `beat ${b.n} follows ${a.n}`);
      assert.ok(b.uptime >= a.uptime, 'guest uptime does not go back');
    }
    // Seen from outside: the ticker falls silent from its last beat before the old process stopped
    // to its first beat after the new one resumed: that silence covers the pause. (Under TCG it
    // also holds the new process's translation warm-up, which KVM does not have.)
    const lastBefore = ticks.filter((t) => t.atMs <= (swap.stoppedAt ?? 0)).pop();
    const firstAfter = ticks.find((t) => t.atMs >= (swap.resumedAt ?? Infinity));
    assert.ok(lastBefore && firstAfter, 'beats on both sides of the switchover');
    const silence = firstAfter.atMs - lastBefore.atMs;
    assert.ok(silence >= swap.downtimeMs - 5, `host-observed silence ${silence} ms covers the ${swap.downtimeMs} ms`);
    assert.ok(silence < 3000, `host-observed ticker silence ${silence} ms`);
    // The guest's own clock does not see the pause (it stood still): its ticker gap stays small.
    const guestGaps = serialLines(f.tenant.serialLog)
      .filter((l) => l.startsWith('TICK '))
      .slice(-3)
      .map((l) => Number(fields(l).gap_ms));
    assert.ok(
      guestGaps.every((g) => g < 3000),
      `guest-time ticker gaps ${guestGaps.join(', ')} ms`,
    );
    const agent = await driver.guestTime({ vm: 'vm-t' });
    assert.ok(agent.roundTripMs < 1000, 'the guest agent answers from the new process');
  });

  void it('refuses to move a VM with private RAM in place; a copying migration moves it', async () => {
    const caps = await driver.vmCapabilities({ vm: 'vm-b' });
    assert.equal(caps.sharedMemory, false);
    await expectDriverError(
      driver.swapVmm({ vm: 'vm-b', targetVersion: VMM_B, deadline: Date.now() + 10_000 }),
      'CONFLICT',
      'UNSUPPORTED',
      'in-place swap of private RAM',
    );
    await expectDriverError(
      driver.migrateLocally({ vm: 'vm-t', targetVersion: VMM_A, ramTransfer: 'copy', deadline: Date.now() + 10_000 }),
      'CONFLICT',
      'UNSUPPORTED',
      'copying into shared RAM',
    );
    const before = (await driver.listVms()).find((v) => v.name === 'vm-b');
    const copy = await driver.migrateLocally({
      vm: 'vm-b',
      targetVersion: before?.vmmVersion ?? VMM_A,
      ramTransfer: 'copy',
      deadline: Date.now() + 60_000,
    });
    assert.ok(copy.migration !== null);
    assert.ok(
      copy.migration.ramTotalBytes >= 200 * 1024 * 1024,
      `a copying migration accounts for the guest RAM (${copy.migration.ramTotalBytes} B)`,
    );
    assert.ok(copy.downtimeMs > 0);
    const after = (await driver.listVms()).find((v) => v.name === 'vm-b');
    assert.equal(after?.state, 'running');
    assert.equal(after?.generation, (before?.generation ?? 0) + 1);
    await driver.guestTime({ vm: 'vm-b' });
  });

  void it('brings a 5 s clock offset back to within one guest-agent round trip', async () => {
    await driver.setGuestTime({ vm: 'vm-t', timeMs: Date.now() - 5000 });
    const off = await driver.guestTime({ vm: 'vm-t' });
    assert.ok(Math.abs(off.offsetMs + 5000) < 200, `offset ${off.offsetMs} ms`);
    const result = await driver.resyncClock({ vm: 'vm-t' });
    assert.equal(result.stepped, true);
    assert.ok(Math.abs(result.offsetBeforeMs + 5000) < 200);
    assert.ok(
      Math.abs(result.residualMs) <= result.roundTripMs + 1,
      `residual ${result.residualMs.toFixed(2)} ms within the round trip ${result.roundTripMs.toFixed(2)} ms`,
    );
  });

  void it('is adopted by a new driver: same processes, a paused VM still paused since the same time', async () => {
    const before = await driver.listVms();
    const paused = await driver.pause({ vm: 'vm-t', leaseUntil: Date.now() + 20_000 });
    await reopen();
    const after = await driver.listVms();
    for (const vm of before) {
      const now = after.find((v) => v.name === vm.name);
      assert.ok(now, `${vm.name} adopted`);
      assert.equal(now.pid, vm.pid);
      assert.equal(now.generation, vm.generation);
      assert.equal(now.vmmVersion, vm.vmmVersion);
    }
    const t = after.find((v) => v.name === 'vm-t');
    assert.equal(t?.state, 'paused');
    assert.equal(t?.pausedSince, paused.pausedAt, 'the pause start survives the restart (lease file)');
    const resumed = await driver.resume({ vm: 'vm-t' });
    assert.equal(resumed.alreadyRunning, false);
    assert.equal(resumed.pausedMs, resumed.resumedAt - paused.pausedAt);
  });

  void it('rolls a swap back when the new process cannot start: the old one runs on', async () => {
    const config = { ...f.config, vmmBuilds: { ...f.config.vmmBuilds, broken: '/bin/false' } };
    await reopen(config);
    const before = (await driver.listVms()).find((v) => v.name === 'vm-t');
    const error = await expectDriverError(
      driver.swapVmm({ vm: 'vm-t', targetVersion: 'broken', deadline: Date.now() + 10_000 }),
      'CONFLICT',
      'OPERATION_FAILED',
      'swap to a broken build',
    );
    assert.ok(isDriverError(error));
    assert.equal(error.details.rolledBack, true);
    const after = (await driver.listVms()).find((v) => v.name === 'vm-t');
    assert.equal(after?.state, 'running');
    assert.equal(after?.pid, before?.pid);
    assert.equal(after?.generation, before?.generation);
    await driver.guestTime({ vm: 'vm-t' });
  });

  void it('rolls a swap back at its deadline', async () => {
    const before = (await driver.listVms()).find((v) => v.name === 'vm-t');
    const other = before?.vmmVersion === VMM_A ? VMM_B : VMM_A;
    const error = await expectDriverError(
      driver.swapVmm({ vm: 'vm-t', targetVersion: other, deadline: Date.now() + 60 }),
      'TIMEOUT',
      'DEADLINE_EXCEEDED',
      'swap with a 60 ms deadline',
    );
    assert.ok(isDriverError(error));
    assert.notEqual(error.details.rolledBack, false, 'nothing was left half done');
    const after = (await driver.listVms()).find((v) => v.name === 'vm-t');
    assert.equal(after?.state, 'running');
    assert.equal(after?.pid, before?.pid);
    assert.deepEqual(
      (await driver.describeVm({ vm: 'vm-t' })).generation,
      before?.generation,
      'no new generation recorded',
    );
  });

  void it('finishes a swap aborted after the source completed: no rollback, the VM runs once, in the new process', async () => {
    const abort = new AbortController();
    const phases: SwapPhaseEvent[] = [];
    await reopen({
      ...f.config,
      onSwapPhase: (event) => {
        phases.push(event);
        // Right after the source reported `completed`, before the driver saw the new process's RESUME.
        if (event.phase === 'source-completed') abort.abort(new Error('test: abort after completed'));
      },
    });
    try {
      const { before, other } = await vmtAndOtherBuild();
      const watcher = new SerialWatcher(f.tenant.serialLog);
      let swap;
      let ticks;
      try {
        await beatsAfter(watcher, 0, 5);
        swap = await driver.swapVmm({
          vm: 'vm-t',
          targetVersion: other,
          deadline: Date.now() + 20_000,
          signal: abort.signal,
        });
        ticks = await beatsAfter(watcher, Date.now(), 20);
      } finally {
        watcher.stop();
      }
      assert.deepEqual(
        phases.map((p) => p.phase),
        ['target-ready', 'migration-started', 'source-completed'],
      );
      assert.equal(abort.signal.aborted, true);
      const { sourcePid, targetPid } = phases[2] ?? assert.fail('no source-completed phase');
      assert.equal(sourcePid, before.pid);

      // Not rolled back: the call went forward and reports what interrupted it, with real timings.
      assert.equal(swap.changed, true);
      assert.equal(swap.generation, before.generation + 1);
      assert.equal(swap.interrupted?.reason, 'ABORTED');
      assert.equal(swap.interrupted.lateMs, 0, 'the deadline was far');
      assert.ok(swap.stoppedAt !== null && swap.resumedAt !== null);
      assert.ok(swap.downtimeMs > 0 && swap.downtimeMs < 3000, `downtime ${swap.downtimeMs} ms`);
      assert.ok(swap.migration !== null && swap.migration.qemuTotalMs !== null, 'the source completed its part');

      // Exactly one process runs the VM: the new one, running (not left frozen), with a watchdog.
      assert.equal(processState(sourcePid), undefined, 'the old process is gone');
      assert.ok(!['T', 't', undefined].includes(processState(targetPid)), 'the new process runs');
      const now = (await driver.listVms()).find((v) => v.name === 'vm-t');
      assert.equal(now?.state, 'running', 'query-status on the new process: running');
      assert.equal(now.pid, targetPid);
      assert.equal(now.generation, swap.generation);
      assert.equal(now.vmmVersion, other);
      assert.ok((await driver.describeVm({ vm: 'vm-t' })).watchdogPid !== null);

      // Seen from inside: one ticker counting on without a gap, a repeat or a reboot.
      assertOneTicker(ticks);
      await driver.guestTime({ vm: 'vm-t' });
    } finally {
      await reopen();
    }
  });

  void it('rolls back a swap aborted while its migration is still under way: the old process runs on', async () => {
    const abort = new AbortController();
    const phases: SwapPhaseEvent[] = [];
    await reopen({
      ...f.config,
      onSwapPhase: (event) => {
        phases.push(event);
        // A destination that stalls (here: stopped before the source connects) keeps the migration
        // from completing; the call is aborted once the source has started it.
        if (event.phase === 'target-ready') process.kill(event.targetPid, 'SIGSTOP');
        if (event.phase === 'migration-started') abort.abort(new Error('test: abort mid-migration'));
      },
    });
    try {
      const { before, other } = await vmtAndOtherBuild();
      const watcher = new SerialWatcher(f.tenant.serialLog);
      let error;
      let ticks;
      try {
        await beatsAfter(watcher, 0, 5);
        error = await expectDriverError(
          driver.swapVmm({ vm: 'vm-t', targetVersion: other, deadline: Date.now() + 20_000, signal: abort.signal }),
          'TIMEOUT',
          'ABORTED',
          'swap aborted mid-migration',
        );
        ticks = await beatsAfter(watcher, Date.now(), 20);
      } finally {
        watcher.stop();
      }
      assert.deepEqual(
        phases.map((p) => p.phase),
        ['target-ready', 'migration-started'],
      );
      assert.ok(isDriverError(error));
      assert.equal(error.details.rolledBack, true);
      const { targetPid } = phases[1] ?? assert.fail('no migration-started phase');
      assert.equal(processState(targetPid), undefined, 'the new process was killed, not left stopped');
      const after = (await driver.listVms()).find((v) => v.name === 'vm-t');
      assert.equal(after?.state, 'running');
      assert.equal(after.pid, before.pid);
      assert.equal(after.generation, before.generation);
      assert.equal(after.vmmVersion, before.vmmVersion);
      assertOneTicker(ticks);
      await driver.guestTime({ vm: 'vm-t' });
    } finally {
      await reopen();
    }
  });

  void it('is adopted mid-swap after the agent died once the source completed: forward, never back', async () => {
    const { before, other } = await vmtAndOtherBuild();
    await closeDriver(driver);
    const watcher = new SerialWatcher(f.tenant.serialLog);
    let ticks;
    let event: SwapPhaseEvent;
    try {
      await beatsAfter(watcher, 0, 5);
      event = await swapAndDie(f.config, 'vm-t', other, 'source-completed');
      driver = await openDriver(f.config);
      ticks = await beatsAfter(watcher, Date.now(), 20);
    } finally {
      watcher.stop();
    }
    const now = (await driver.listVms()).find((v) => v.name === 'vm-t');
    assert.equal(now?.state, 'running');
    assert.equal(now.pid, event.targetPid, 'the new process keeps the VM');
    assert.equal(now.generation, before.generation + 1);
    assert.equal(now.vmmVersion, other);
    assert.equal(processState(event.sourcePid), undefined, 'the old process was retired, not resumed');
    assert.ok((await driver.describeVm({ vm: 'vm-t' })).watchdogPid !== null);
    assertOneTicker(ticks);
    await driver.guestTime({ vm: 'vm-t' });
  });

  void it('reports a migration blocker and refuses to move that VM', async () => {
    const shm = `/dev/shm/iq-ivshmem-${process.pid}`;
    try {
      await driver.launch({
        vm: 'vm-x',
        waitForGuestAgent: false,
        objects: [`memory-backend-file,id=hostmem,size=1M,mem-path=${shm},share=on`],
        devices: [{ driver: 'ivshmem-plain', props: { memdev: 'hostmem' } }],
      });
      const caps = await driver.vmCapabilities({ vm: 'vm-x' });
      assert.equal(caps.migratableDevices, false);
      assert.ok(
        (caps.blockingDevices ?? []).some((d) => d.includes('ivshmem')),
        JSON.stringify(caps),
      );
      await expectDriverError(
        driver.swapVmm({ vm: 'vm-x', targetVersion: VMM_B, deadline: Date.now() + 10_000 }),
        'CONFLICT',
        'UNSUPPORTED',
        'swap of a VM with a blocker',
      );
    } finally {
      await driver.destroy({ vm: 'vm-x' }).catch(() => undefined);
      rmSync(shm, { force: true });
    }
  });

  void it('starts a watchdog again before a pause when it has died: no pause goes unguarded', async () => {
    const before = await driver.describeVm({ vm: 'vm-t' });
    assert.ok(before.watchdogPid !== null);
    process.kill(before.watchdogPid, 'SIGKILL');
    while ((await driver.describeVm({ vm: 'vm-t' })).watchdogPid !== null) await sleep(20);
    const leaseUntil = Date.now() + 3000;
    await driver.pause({ vm: 'vm-t', leaseUntil });
    const during = await driver.describeVm({ vm: 'vm-t' });
    assert.ok(during.watchdogPid !== null && during.watchdogPid !== before.watchdogPid, 'a new watchdog');
    await waitForState(driver, 'vm-t', 'running', leaseUntil + 2000);
    assert.ok(Date.now() >= leaseUntil, 'resumed by the new watchdog at the lease');
  });

  void it('resumes a paused VM at its lease after the agent holding the driver is killed (kill -9)', async () => {
    await closeDriver(driver);
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        join(REPO, 'test', 'qemu', 'fixtures', 'pause-and-hang.ts'),
        JSON.stringify(f.config),
        'vm-t',
        '4000',
      ],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let out = '';
    const line = await new Promise<string>((resolve, reject) => {
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (chunk: string) => {
        out += chunk;
        if (out.includes('\n')) resolve(out.split('\n')[0] ?? '');
      });
      child.once('exit', (code) => reject(new Error(`the agent stand-in exited (${code}) before pausing: ${out}`)));
    });
    const { pausedAt, leaseUntil } = JSON.parse(line) as { pausedAt: number; leaseUntil: number };
    child.kill('SIGKILL');
    await exited;
    driver = await openDriver(f.config);
    assert.equal((await driver.listVms()).find((v) => v.name === 'vm-t')?.state, 'paused', 'paused after the kill');
    let resumedSeenAt: number | undefined;
    while (Date.now() < leaseUntil + 5000) {
      const state = (await driver.listVms()).find((v) => v.name === 'vm-t')?.state;
      if (state === 'running') {
        resumedSeenAt = Date.now();
        break;
      }
      await sleep(50);
    }
    assert.ok(resumedSeenAt !== undefined, 'the watchdog resumed the VM');
    assert.ok(resumedSeenAt >= leaseUntil, `not before its lease (${resumedSeenAt - leaseUntil} ms)`);
    assert.ok(resumedSeenAt <= leaseUntil + 1500, `at its lease (${resumedSeenAt - leaseUntil} ms late)`);
    assert.ok(resumedSeenAt - pausedAt < 30_000, 'within the longest pause budget');
    await driver.guestTime({ vm: 'vm-t' });
  });

  void it(
    'reports a VM whose QEMU process died as failed, refuses to pause it, and restarts it',
    { timeout: BOOT_MS },
    async () => {
      const before = await driver.describeVm({ vm: 'vm-b' });
      assert.ok(before.pid !== null);
      process.kill(before.pid, 'SIGKILL');
      await waitForState(driver, 'vm-b', 'failed', Date.now() + 10_000);
      await expectDriverError(driver.pause({ vm: 'vm-b' }), 'UNREACHABLE', 'VM_FAILED', 'pause of a dead VM');
      const result = await driver.reboot({ vm: 'vm-b', deadline: Date.now() + BOOT_MS - 20_000 });
      assert.ok(result.generation > before.generation);
      const now = (await driver.listVms()).find((v) => v.name === 'vm-b');
      assert.equal(now?.state, 'running');
      assert.notEqual(now?.pid, before.pid);
      assert.ok((await driver.describeVm({ vm: 'vm-b' })).watchdogPid !== null);
      const reading = await driver.guestTime({ vm: 'vm-b' });
      assert.ok(
        Math.abs(reading.offsetMs) < 200,
        `the new boot's clock was set from the host (${reading.offsetMs} ms)`,
      );
    },
  );

  void it('is adopted after the agent died before it recorded the new process: found, stopped, the old one runs on', async () => {
    const { before, other } = await vmtAndOtherBuild();
    await closeDriver(driver);
    const event = await swapAndDie(f.config, 'vm-t', other, 'target-ready');
    // As if the agent had died a moment earlier: after starting the new process and its watchdog,
    // before writing their pids down.
    const recordPath = vmPaths(f.config.runDir, 'vm-t').record;
    const record = JSON.parse(readFileSync(recordPath, 'utf8')) as { pending: { pid: number; watchdogPid: number } };
    assert.equal(record.pending.pid, event.targetPid);
    writeFileSync(recordPath, JSON.stringify({ ...record, pending: { ...record.pending, pid: 0, watchdogPid: 0 } }));
    driver = await openDriver(f.config);
    const now = await driver.describeVm({ vm: 'vm-t' });
    assert.equal(now.state, 'running');
    assert.equal(now.pid, before.pid, 'the old process runs the VM on');
    assert.equal(now.generation, before.generation);
    assert.equal(processState(event.targetPid), undefined, 'the unrecorded new process was found and stopped');
    const newDir = processPaths(vmPaths(f.config.runDir, 'vm-t').dir, event.generation);
    assert.deepEqual(processesNaming(newDir.watchdogQmp), [], 'and so was its watchdog');
    await driver.guestTime({ vm: 'vm-t' });
  });

  // Last of the vm-t tests: its VM is lost (both of its processes die) and booted again.
  void it(
    'is adopted after the agent and the old QEMU died before the state was sent: failed, nothing left waiting, restartable',
    { timeout: BOOT_MS + 60_000 },
    async () => {
      const { before, other } = await vmtAndOtherBuild();
      await closeDriver(driver);
      const event = await swapAndDie(f.config, 'vm-t', other, 'target-ready');
      process.kill(event.sourcePid, 'SIGKILL');
      while (processState(event.sourcePid) !== undefined) await sleep(20);
      driver = await openDriver(f.config);
      const now = await driver.describeVm({ vm: 'vm-t' });
      assert.equal(now.state, 'failed', 'neither process can run the VM');
      assert.equal(now.generation, before.generation + 1, 'the new process was recorded, then found gone');
      assert.equal(processState(event.targetPid), undefined, 'the new process no longer waits for a state');
      await expectDriverError(driver.pause({ vm: 'vm-t' }), 'UNREACHABLE', 'VM_FAILED', 'pause of a lost VM');
      const rebooted = await driver.reboot({ vm: 'vm-t', deadline: Date.now() + BOOT_MS - 20_000 });
      assert.ok(rebooted.generation > now.generation);
      assert.equal((await driver.describeVm({ vm: 'vm-t' })).state, 'running');
      await driver.guestTime({ vm: 'vm-t' });
    },
  );
});

/**
 * Runs the agent stand-in that swaps `vm` to `target` and kills itself at `phase` (see
 * fixtures/swap-and-die.ts); returns the phase event it printed.
 */
async function swapAndDie(
  config: QemuDriverConfig,
  vm: string,
  target: string,
  phase: SwapPhase,
): Promise<SwapPhaseEvent> {
  const script = join(REPO, 'test', 'qemu', 'fixtures', 'swap-and-die.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(config), vm, target, phase], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => (out += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  assert.equal(code, null, `the agent stand-in died by its signal: ${out}`);
  const event = JSON.parse(out.split('\n')[0] ?? '') as SwapPhaseEvent;
  assert.equal(event.phase, phase);
  return event;
}

/** Live processes with `path` among their arguments. */
function processesNaming(path: string): number[] {
  return readdirSync('/proc')
    .filter((entry) => {
      if (!/^\d+$/.test(entry) || processState(Number(entry)) === undefined) return false;
      try {
        return readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(path);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** Polls listVms until the VM is in `state`; fails at `until`. */
async function waitForState(driver: QemuDriver, vm: string, state: string, until: number): Promise<void> {
  for (;;) {
    const now = (await driver.listVms()).find((v) => v.name === vm)?.state;
    if (now === state) return;
    if (Date.now() > until) assert.fail(`${vm} is ${now}, not ${state}, at the deadline`);
    await sleep(50);
  }
}

/**
 * The state letter of a process (`R`, `S`, `T` for stopped…) from /proc, or undefined when it is
 * gone (a zombie counts as gone: a QEMU process orphaned by a killed agent may wait to be reaped).
 */
function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state === 'Z' || state === 'X' ? undefined : state;
  } catch {
    return undefined;
  }
}

/** Waits until `watcher` has seen `count` ticker beats after host time `since`; returns every beat seen. */
async function beatsAfter(
  watcher: SerialWatcher,
  since: number,
  count: number,
  timeoutMs = 30_000,
): Promise<ReturnType<typeof beats>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    watcher.poll();
    const all = beats(watcher.lines);
    if (all.filter((b) => b.atMs > since).length >= count) return all;
    if (Date.now() > end) assert.fail(`fewer than ${count} ticker beats after ${since} (${all.length} in all)`);
    await sleep(50);
  }
}

/** One guest ticker counting up one by one: no reboot, no gap, and no second copy of the guest. */
function assertOneTicker(ticks: ReturnType<typeof beats>): void {
  assert.ok(ticks.length > 20, `${ticks.length} beats`);
  for (let i = 1; i < ticks.length; i++) {
    const [a, b] = [ticks[i - 1], ticks[i]];
    assert.ok(a && b);
    assert.equal(b.n, a.n + 1, `beat ${b.n} follows ${a.n}`);
    assert.ok(b.uptime >= a.uptime, 'guest uptime does not go back');
  }
}
