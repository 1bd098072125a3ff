/**
 * Issue 12, item 12 on a real guest (TCG): a host agent is killed (SIGKILL) while a host patch holds
 * its VM paused. Whoever resumes the VM resynchronises its clock and records the residual
 * (invariant 4):
 *
 * 1. nobody restarts the agent in time: the resume watchdog resumes the VM at its lease, then
 *    resynchronises the guest clock through the guest agent and records it; the guest is in step
 *    before any agent comes back, and the agent that adopts the host later reports it;
 * 2. the agent restarts while the VM is still paused: it resumes the VM at start-up and
 *    resynchronises the clock itself; the watchdog has nothing to resume.
 *
 * The budgets are scaled down from the (20 s patch, 30 s budget) to keep the test short:
 * a 6 s budget and a 20 s patch, killed about 1 s into the pause. One guest, its own run directory,
 * RAM file and sockets, so that other QEMU tests may run beside it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileJournal, HostAgent, type HostStepStatus, type VmStepResult } from '../../src/agent/index.js';
import {
  QemuDriver,
  destroyQemuRunDir,
  realTime,
  type LeaseResume,
  type QemuDriverConfig,
} from '../../src/hypervisor/index.js';
import { REPO, buildGuest, newRunDir, qemuPreflight, sleep, testDriverConfig } from './qemu-fixture.js';

const preflight = qemuPreflight();
/** A boot under TCG on a loaded two-core machine takes 10-60 s. */
const BOOT_MS = 240_000;
const VM = 'vm-clk';
const BUDGET_MS = 6_000;
const APPLY_MS = 20_000;
/** How far a guest clock may be from the host's beyond the round trip that measures it (TCG). */
const CLOCK_TOLERANCE_MS = 60;

/** Runs the agent stand-in until the VM is paused; returns the pause start and a kill -9. */
async function agentMidPause(
  config: QemuDriverConfig,
  journal: string,
  stepId: string,
): Promise<{ pausedAt: number; kill: () => Promise<number> }> {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(REPO, 'test', 'qemu', 'fixtures', 'agent-mid-pause.ts'),
      JSON.stringify(config),
      journal,
      stepId,
      VM,
      String(BUDGET_MS),
      String(APPLY_MS),
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
    child.once('exit', (code) => reject(new Error(`the agent exited (${code}) before its VM was paused: ${out}`)));
  });
  const { pausedAt } = JSON.parse(line) as { pausedAt: number };
  return {
    pausedAt,
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
      return Date.now();
    },
  };
}

/** Waits until `probe` returns a value; fails after `timeoutMs`. */
async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

void describe('a crash mid-pause leaves no guest clock behind (real QEMU, TCG)', { skip: preflight.skip }, () => {
  let config: QemuDriverConfig;
  let runDir: string;
  const drivers = new Set<QemuDriver>();
  const open = async (): Promise<QemuDriver> => {
    const driver = await QemuDriver.open(config);
    drivers.add(driver);
    return driver;
  };

  before(
    async () => {
      preflight.assertReady();
      runDir = newRunDir('clk');
      config = testDriverConfig(runDir, buildGuest(), { host: 'clk-host' });
      const driver = await open();
      await driver.launch({ vm: VM });
      // QEMU serves one client per monitor: the agents of the tests connect next.
      await driver.close();
      drivers.delete(driver);
    },
    { timeout: BOOT_MS },
  );

  after(async () => {
    for (const driver of drivers) await driver.close();
    if (runDir !== undefined) await destroyQemuRunDir(runDir);
  });

  void it(
    'the watchdog resumes the VM at its lease and resynchronises its clock; the adopting agent reports it',
    { timeout: 120_000 },
    async (t) => {
      const journal = join(runDir, 'journal-1.json');
      const agent = await agentMidPause(config, journal, 'r1/w0/clk-host');
      await sleep(1_000);
      const killedAt = await agent.kill();
      t.diagnostic(`agent killed ${killedAt - agent.pausedAt} ms into the pause`);
      const driver = await open();
      assert.equal((await driver.listVms()).find((v) => v.name === VM)?.state, 'paused', 'paused after the kill');
      await waitFor('the watchdog to resume the VM', BUDGET_MS + 5_000, async () =>
        (await driver.listVms()).find((v) => v.name === VM)?.state === 'running' ? true : undefined,
      );
      const resumedSeenAt = Date.now();
      assert.ok(resumedSeenAt - agent.pausedAt < BUDGET_MS + 1_500, 'resumed within the budget (and a poll)');
      // Nobody but the watchdog acted: the guest is in step again before any agent returns.
      const record = await waitFor<LeaseResume>('the lease resume record', 20_000, async () =>
        (await driver.leaseResumes({ vm: VM })).find((r) => Math.abs(r.pausedAt - agent.pausedAt) < 2),
      );
      const reading = await driver.guestTime({ vm: VM });
      t.diagnostic(
        `watchdog: paused ${record.resumedAt - record.pausedAt} ms, offset before ${record.clock?.offsetBeforeMs} ms, ` +
          `residual ${record.clock?.residualMs} ms (round trip ${record.clock?.roundTripMs} ms); ` +
          `guest now ${reading.offsetMs.toFixed(1)} ms (round trip ${reading.roundTripMs.toFixed(1)} ms)`,
      );
      assert.ok(
        Math.abs(reading.offsetMs) <= CLOCK_TOLERANCE_MS + reading.roundTripMs,
        `the guest clock is in step after the watchdog's resume: ${reading.offsetMs} ms`,
      );
      assert.equal(record.clockError, null);
      assert.ok(record.clock);
      assert.ok(
        record.resumedAt - record.pausedAt < BUDGET_MS,
        `within the budget: ${record.resumedAt - record.pausedAt}`,
      );
      assert.ok(record.clock.offsetBeforeMs < -BUDGET_MS / 2, `behind by the pause: ${record.clock.offsetBeforeMs}`);
      assert.ok(
        Math.abs(record.clock.residualMs) <= CLOCK_TOLERANCE_MS + record.clock.roundTripMs,
        `residual ${record.clock.residualMs} ms`,
      );
      await driver.close();
      drivers.delete(driver);

      // The agent comes back and adopts the host: the step is failed, never run again, and reports
      // what the watchdog did to its VM.
      const adopting = await HostAgent.start({
        driver: await open(),
        journal: await FileJournal.open(journal),
        time: realTime(),
      });
      const status: HostStepStatus | undefined = adopting.status('r1/w0/clk-host');
      assert.ok(status);
      assert.equal(status.status, 'failed');
      const vm: VmStepResult | undefined = status.vms.find((v) => v.name === VM);
      assert.ok(vm, JSON.stringify(status));
      t.diagnostic(`adopting agent reports ${JSON.stringify(vm)}`);
      assert.equal(vm.outcome, 'lease-resumed');
      assert.ok(vm.pauseMs !== null && vm.pauseMs < BUDGET_MS, `pause ${vm.pauseMs}`);
      assert.equal(vm.clockOffsetMs, record.clock.offsetBeforeMs, 'the offset the watchdog found');
      assert.ok(
        vm.clockResidualMs !== null && vm.clockRoundTripMs !== null,
        'the residual measured again by the adopting agent',
      );
      assert.ok(Math.abs(vm.clockResidualMs) <= CLOCK_TOLERANCE_MS + vm.clockRoundTripMs, `${vm.clockResidualMs}`);
      await adopting.close();
    },
  );

  void it(
    'an agent restarted while the VM is still paused resumes it and resynchronises its clock itself',
    { timeout: 120_000 },
    async (t) => {
      const journal = join(runDir, 'journal-2.json');
      const agent = await agentMidPause(config, journal, 'r2/w0/clk-host');
      await sleep(1_000);
      await agent.kill();
      const driver = await open();
      const before = (await driver.leaseResumes({ vm: VM })).length;
      const adopting = await HostAgent.start({ driver, journal: await FileJournal.open(journal), time: realTime() });
      const adoptedAt = Date.now();
      assert.ok(adoptedAt - agent.pausedAt < BUDGET_MS, 'adopted before the lease');
      assert.equal((await driver.listVms()).find((v) => v.name === VM)?.state, 'running');
      const reading = await driver.guestTime({ vm: VM });
      assert.ok(
        Math.abs(reading.offsetMs) <= CLOCK_TOLERANCE_MS + reading.roundTripMs,
        `in step after the adopting agent's resume: ${reading.offsetMs} ms`,
      );
      const vm = adopting.status('r2/w0/clk-host')?.vms.find((v) => v.name === VM);
      assert.ok(vm);
      t.diagnostic(`adopting agent reports ${JSON.stringify(vm)}`);
      assert.equal(vm.outcome, 'failed');
      assert.ok(vm.clockOffsetMs !== null && vm.clockOffsetMs < -500, `behind by the pause: ${vm.clockOffsetMs}`);
      assert.ok(vm.clockResidualMs !== null && vm.clockRoundTripMs !== null);
      assert.ok(Math.abs(vm.clockResidualMs) <= CLOCK_TOLERANCE_MS + vm.clockRoundTripMs, `${vm.clockResidualMs}`);
      // The watchdog saw the VM running at its lease: nothing to resume, nothing recorded.
      await sleep(Math.max(0, agent.pausedAt + BUDGET_MS + 1_000 - Date.now()));
      assert.equal((await driver.leaseResumes({ vm: VM })).length, before);
      await adopting.close();
      drivers.delete(driver);
    },
  );
});
