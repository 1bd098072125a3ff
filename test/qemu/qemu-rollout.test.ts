/**
 * Rollouts through the controller on real QEMU guests (TCG), as deployed: one `intermission
 * controller` process and one `intermission agent --driver qemu` process per host, each a real
 * process spawned from the compiled CLI. Two hosts on this machine, three guests, two availability
 * sets, two update domains:
 *
 *   qh0: web_0 (web, UD 0), db_0 (db, UD 0)        qh1: web_1 (web, UD 1)
 *
 * Each guest's tenant application polls Scheduled Events over 169.254.169.254 (forwarded by QEMU to
 * the controller's listener of that VM), approves Freeze events and ticks every 10 ms on the
 * serial console, which the test timestamps as lines arrive: the pause as the guest lived it.
 *
 * 1. An in-place VMM update (qemu-7.2-a → qemu-7.2-b): every VM moves to a new QEMU process, one
 *    update domain at a time, its events seen from inside, its pause and clock residual measured.
 * 2. A host patch under pause: a command runs on each host while its VMs are paused.
 * 3. The agent of qh0 is killed (SIGKILL) while its VMs are paused for a patch: the resume watchdog
 *    beside each QEMU process resumes them within their budget; the restarted agent adopts them,
 *    records the interrupted step as failed, and the rollout halts.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { serialLogOf } from '../../src/hypervisor/qemu/index.js';
import { Watcher, ensureBuilt, type FleetSpec, type RolloutBody } from '../crash/harness.js';
import { waveHosts } from '../crash/checks.js';
import { QEMU_TRIAL_FLEET } from '../crash/trial-qemu.js';
import { VMM_A, VMM_B, buildGuest, fields, qemuPreflight, serialLines, sleep } from './qemu-fixture.js';
import {
  apply,
  startQemuCluster,
  detailOf,
  followToCompletion,
  gapAround,
  patchesOf,
  resultOf,
  waitDone,
  watchingGuests,
  type AgentVms,
  type RolloutSetup,
} from './rollout-checks.js';

const preflight = qemuPreflight();

/** Two hosts, three guests, two sets of two update domains: the crash trials' fleet, two waves. */
const FLEET: FleetSpec = QEMU_TRIAL_FLEET;
const VMS = FLEET.vms.map((v) => v.name);

interface Setup extends RolloutSetup {
  readonly patchLog: (host: string) => string;
  readonly close: () => Promise<void>;
}

let setup: Promise<Setup> | undefined;

/** Hosts' run dirs, agents and controller: started once, the guests booting in parallel. */
function start(): Promise<Setup> {
  setup ??= (async () => {
    preflight.assertReady();
    await ensureBuilt();
    const guest = buildGuest();
    const base = await mkdtemp('/tmp/iq-roll-');
    const { cluster, runDirs, patchLog, close } = await startQemuCluster({
      name: 'qemu',
      fleet: FLEET,
      base,
      hosts: FLEET.hosts.map((h) => h.name),
      guest,
    });
    return { cluster, fleet: FLEET, base, runDirs, patchLog, close };
  })();
  return setup;
}

before(
  async () => {
    if (preflight.skip === false) await start();
  },
  { timeout: 420_000 },
);

after(async () => {
  const s = await setup?.catch(() => undefined);
  if (!s) return;
  await s.close();
  await rm(s.base, { recursive: true, force: true });
});

describe('rollouts through the controller on real QEMU guests (TCG)', { skip: preflight.skip }, () => {
  it('moves every VM to a new QEMU process in place, one update domain at a time', { timeout: 300_000 }, async (t) => {
    const s = await start();
    const c = s.cluster;
    const id = await apply(
      s,
      'vmm',
      { id: 'vmm-7.2-b', kind: 'vmm-update', expectedApplyMs: 500, vmm: { fromVersion: VMM_A, toVersion: VMM_B } },
      { settleMs: '2s' },
    );
    const { plan } = await c.control<RolloutBody>(`/v1/rollouts/${encodeURIComponent(id)}?plan=true`);
    assert.ok(plan);
    assert.deepEqual(waveHosts(plan), [['qh0'], ['qh1']], 'update domain 0 first, then 1');
    const { detail } = await followToCompletion(s, id, t);
    // Every VM runs on the new build, in a new process.
    for (const host of ['qh0', 'qh1']) {
      const { vms } = await c.agentGet<AgentVms>(host, '/v1/vms');
      for (const vm of vms) {
        assert.equal(vm.state, 'running', `${vm.name}`);
        assert.equal(vm.vmmVersion, VMM_B, `${vm.name} runs ${VMM_B}`);
      }
    }
    assert.deepEqual(
      detail.steps.map((x) => [x.host, x.wave, x.status]),
      [
        ['qh0', 0, 'succeeded'],
        ['qh1', 1, 'succeeded'],
      ],
    );
    // The tenant of web_1 kept running through web_0's swap: no guest rebooted.
    for (const vm of VMS) {
      const log = serialLogOf(s.runDirs.get(FLEET.vms.find((v) => v.name === vm)?.host ?? '') ?? '', vm);
      const boots = new Set(
        serialLines(log)
          .filter((l) => / start ip=/.test(l))
          .map((l) => fields(l).boot),
      );
      assert.equal(boots.size, 1, `${vm} booted once`);
    }
  });

  it(
    'patches the hosts while their VMs are paused, then resumes and resynchronises them',
    { timeout: 300_000 },
    async (t) => {
      const s = await start();
      const c = s.cluster;
      const id = await apply(
        s,
        'patch',
        { id: 'patch-1', kind: 'host-patch', expectedApplyMs: '2s' },
        { settleMs: '2s', pauseBudgetMs: 10_000 },
      );
      const { detail: d, lines } = await followToCompletion(s, id, t);
      for (const vm of FLEET.vms) {
        const op = d.operations.find((o) => o.vm === vm.name);
        const r = resultOf(d, vm.name);
        const gap = gapAround(lines.get(vm.name) ?? [], r?.pausedAt ?? 0, (r?.resumedAt ?? 0) + 2000).gapMs;
        // Paused across the whole patch: at least its 2 s, as the guest lived it.
        assert.ok(gap >= 1900, `${vm.name}'s ticker stopped ${gap} ms, across the 2 s patch`);
        assert.ok((op?.clockOffsetMs ?? 0) <= -1500, `${vm.name}'s clock was behind by the pause before resync`);
      }
      for (const host of ['qh0', 'qh1']) {
        const patched = (await readFile(s.patchLog(host), 'utf8')).trim().split('\n');
        assert.deepEqual(patched, ['patch-1'], `${host} ran the patch once`);
        const { vms } = await c.agentGet<AgentVms>(host, '/v1/vms');
        for (const vm of vms) assert.equal(vm.state, 'running', `${vm.name}`);
      }
    },
  );

  it(
    'kill -9 the agent while its VMs are paused: the resume lease still resumes them within budget',
    { timeout: 300_000 },
    async (t) => {
      const s = await start();
      const c = s.cluster;
      const BUDGET_MS = 8000;
      // What qh0 had patched before (an earlier test's patch, or nothing when this test runs alone).
      const patchedBefore = await patchesOf(s.patchLog('qh0'));
      const id = await apply(
        s,
        'killed',
        { id: 'patch-2', kind: 'host-patch', expectedApplyMs: '6s', hosts: { kind: 'names', names: ['qh0'] } },
        { settleMs: '2s', pauseBudgetMs: BUDGET_MS },
      );
      const watcher = new Watcher(c, id);
      watcher.start();
      await watchingGuests(s, async (watchers) => {
        // Wait until qh0's VMs are paused for the patch, then kill its agent.
        const deadline = Date.now() + 120_000;
        for (;;) {
          // A request may time out while the host is busy: ask again.
          const vms = await c.agentGet<AgentVms>('qh0', '/v1/vms').then(
            (body) => body.vms,
            () => [],
          );
          if (vms.length > 0 && vms.every((v) => v.state === 'paused')) break;
          assert.ok(Date.now() < deadline, 'qh0 paused its VMs');
          await sleep(20);
        }
        await sleep(500);
        const killedAt = Date.now();
        await c.killAgent('qh0');
        t.diagnostic(`agent of qh0 killed with both VMs paused`);

        // The watchdogs resume both guests: their tickers run again within the budget.
        for (const vm of ['web_0', 'db_0']) {
          const w = watchers.get(vm);
          assert.ok(w);
          const until = Date.now() + BUDGET_MS + 5000;
          const resumed = (): { gapMs: number; endedAt: number } => gapAround(w.lines, killedAt, Date.now());
          while (!(resumed().gapMs > 0) && Date.now() < until) await sleep(50);
          const { gapMs, endedAt } = resumed();
          assert.ok(endedAt > killedAt, `${vm} ticks again after the agent died`);
          assert.ok(gapMs <= BUDGET_MS, `${vm} was paused ${gapMs} ms, budget ${BUDGET_MS} ms`);
          t.diagnostic(`${vm}: paused ${gapMs} ms in all (budget ${BUDGET_MS} ms), resumed by its watchdog`);
        }
        await c.restartAgent('qh0');
        await waitDone(watcher, 120_000);
        await watcher.stop();
      });
      const d = await detailOf(s, id);
      assert.equal(d.rollout.status, 'halted', `halted on the failed host: ${d.rollout.reason ?? ''}`);
      const step = d.steps.find((x) => x.host === 'qh0');
      assert.equal(step?.status, 'failed');
      assert.match(step.error ?? '', /restarted while the step ran/);
      // Invariant 4, whoever resumed them: each watchdog resynchronised its guest's clock after its
      // resume, and the restarted agent reported it, as the controller recorded it.
      for (const vm of ['web_0', 'db_0']) {
        const op = d.operations.find((o) => o.vm === vm && o.host === 'qh0');
        assert.ok(op, `${vm} has an operation of the interrupted step: ${JSON.stringify(d.operations)}`);
        t.diagnostic(
          `${vm}: ${op.outcome}, paused ${op.pauseMs} ms, clock ${op.clockOffsetMs} → ${op.clockResidualMs} ms`,
        );
        assert.equal(op.outcome, 'lease-resumed');
        assert.ok(op.pauseMs !== null && op.pauseMs <= BUDGET_MS, `${vm} paused ${op.pauseMs} ms`);
        assert.ok(
          op.clockOffsetMs !== null && op.clockOffsetMs < -BUDGET_MS / 2,
          `${vm} was behind: ${op.clockOffsetMs}`,
        );
        const roundTripMs = resultOf(d, vm)?.clockRoundTripMs;
        assert.ok(op.clockResidualMs !== null && typeof roundTripMs === 'number', `${vm}'s residual was measured`);
        assert.ok(
          Math.abs(op.clockResidualMs) <= Math.max(roundTripMs, 100),
          `${vm}: residual ${op.clockResidualMs} ms, round trip ${roundTripMs} ms`,
        );
      }
      // The patch was cut short with its agent, and the new agent never ran the step again.
      assert.deepEqual(await patchesOf(s.patchLog('qh0')), patchedBefore, 'patch-2 never completed on qh0');
      const { vms } = await c.agentGet<AgentVms>('qh0', '/v1/vms');
      assert.deepEqual(
        vms.map((v) => [v.name, v.state]),
        [
          ['db_0', 'running'],
          ['web_0', 'running'],
        ],
        'the restarted agent adopted both VMs, running',
      );
    },
  );
});
