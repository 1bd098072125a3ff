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
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { destroyQemuRunDir, serialLogOf } from '../../src/hypervisor/qemu/index.js';
import { Cluster, Watcher, ensureBuilt, type FleetSpec, type RolloutBody } from '../crash/harness.js';
import { waveHosts } from '../crash/checks.js';
import { QEMU_TRIAL_FLEET } from '../crash/trial-qemu.js';
import {
  SerialWatcher,
  VMM_A,
  VMM_B,
  beats,
  buildGuest,
  fields,
  qemuPreflight,
  serialLines,
  sleep,
  waitForSerial,
  type ObservedLine,
  writeQemuHostConfigs,
} from './qemu-fixture.js';

const preflight = qemuPreflight();

/** Two hosts, three guests, two sets of two update domains: the crash trials' fleet, two waves. */
const FLEET: FleetSpec = QEMU_TRIAL_FLEET;
const VMS = FLEET.vms.map((v) => v.name);
const TERMINAL = new Set(['completed', 'halted', 'cancelled', 'failed']);

interface Setup {
  readonly cluster: Cluster;
  /** Short paths: unix sockets live under them (108 bytes at most). */
  readonly base: string;
  readonly runDirs: ReadonlyMap<string, string>;
  readonly patchLog: (host: string) => string;
}

let setup: Promise<Setup> | undefined;

/** Hosts' run dirs, agents and controller: started once, the guests booting in parallel. */
function start(): Promise<Setup> {
  setup ??= (async () => {
    preflight.assertReady();
    await ensureBuilt();
    const guest = buildGuest();
    const base = await mkdtemp('/tmp/iq-roll-');
    const { runDirs, patchLog, configOf, metadataDir } = await writeQemuHostConfigs({
      base,
      hosts: FLEET.hosts.map((h) => h.name),
      guest,
    });
    const cluster = await Cluster.start({
      name: 'qemu',
      fleet: FLEET,
      timeScale: 60,
      seed: 1,
      agentArgs: (host) => ['--driver', 'qemu', '--qemu-config', configOf(host)],
      controllerArgs: ['--metadata-dir', metadataDir, '--linger', '10m'],
      bindMetadata: false,
      agentStartTimeoutMs: 300_000,
    });
    return { cluster, base, runDirs, patchLog };
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
  await s.cluster.close();
  for (const dir of s.runDirs.values()) await destroyQemuRunDir(dir);
  await rm(s.base, { recursive: true, force: true });
});

interface Operation {
  readonly vm: string;
  readonly host: string;
  readonly outcome: string;
  readonly pauseMs: number | null;
  readonly pauseBudgetMs: number;
  readonly clockOffsetMs: number | null;
  readonly clockResidualMs: number | null;
}
interface StepResultVm {
  readonly name: string;
  /** Host wall clock, as QEMU's STOP event dated it. */
  readonly pausedAt: number | null;
  readonly resumedAt: number | null;
  readonly clockRoundTripMs: number | null;
}
type Detail = Omit<RolloutBody, 'operations' | 'steps'> & {
  readonly operations: readonly Operation[];
  readonly steps: readonly (RolloutBody['steps'][number] & {
    readonly result: { readonly vms: readonly StepResultVm[] } | null;
  })[];
};

interface AgentVms {
  readonly vms: readonly { readonly name: string; readonly state: string; readonly vmmVersion: string }[];
}

/** The rollout as the control API shows it, with its plan. */
function detailOf(s: Setup, id: string): Promise<Detail> {
  return s.cluster.control<Detail>(`/v1/rollouts/${encodeURIComponent(id)}?plan=true`);
}

/** Applies an update with a policy through the CLI; returns the rollout id. */
async function apply(s: Setup, name: string, update: object, policy: object): Promise<string> {
  const updateFile = join(s.base, `${name}.update.json`);
  const policyFile = join(s.base, `${name}.policy.json`);
  await writeFile(updateFile, JSON.stringify(update));
  await writeFile(policyFile, JSON.stringify(policy));
  const out = await s.cluster.cli(['apply', '--update', updateFile, '--policy', policyFile, '--json']);
  return (JSON.parse(out) as { id: string }).id;
}

/** Watches every guest's serial console (host-stamped) while `body` runs. */
async function watchingGuests<T>(s: Setup, body: (watchers: Map<string, SerialWatcher>) => Promise<T>): Promise<T> {
  const watchers = new Map(
    FLEET.vms.map((vm) => [vm.name, new SerialWatcher(serialLogOf(s.runDirs.get(vm.host) ?? '', vm.name))]),
  );
  try {
    return await body(watchers);
  } finally {
    for (const w of watchers.values()) w.stop();
  }
}

/**
 * The guest's real pause as the host saw it: the longest gap between two tick beats (printed every
 * 10 ms in the guest, stamped by the host as they arrive) that ends in `[from, to]`. Host time, so it
 * covers what the guest's own clocks cannot see. The window, not the exact pause instant, because
 * a busy host may stamp a line a little after the guest wrote it.
 */
function gapAround(lines: readonly ObservedLine[], from: number, to: number): { gapMs: number; endedAt: number } {
  const b = beats(lines);
  let gapMs = Number.NaN;
  let endedAt = Number.NaN;
  for (let i = 1; i < b.length; i++) {
    const end = b[i]?.atMs ?? 0;
    const gap = end - (b[i - 1]?.atMs ?? 0);
    if (end >= from && end <= to && !(gap <= gapMs)) {
      gapMs = gap;
      endedAt = end;
    }
  }
  return { gapMs, endedAt };
}

interface EventRecord {
  readonly eventId: string;
  readonly createdAt: string;
  readonly notBefore: string;
  readonly approvedAt: string | null;
  readonly approvedBy: string | null;
}

/** Every event the controller ever published, as its history keeps it. */
async function eventsOf(s: Setup): Promise<readonly EventRecord[]> {
  return (await s.cluster.control<{ events: readonly EventRecord[] }>('/v1/events?all=true')).events;
}

/** What the agent reported for one VM in the rollout's steps. */
function resultOf(detail: Detail, vm: string): StepResultVm | undefined {
  return detail.steps.flatMap((x) => x.result?.vms ?? []).find((v) => v.name === vm);
}

/** TENANT lines of a guest about one event. */
function tenantLines(serialLog: string, eventId: string): Record<string, string>[] {
  return serialLines(serialLog)
    .filter((l) => l.startsWith('TENANT ') && l.includes(`event=${eventId}`))
    .map(fields);
}

/**
 * What every VM of a completed rollout must show: its event seen from inside before its host step
 * (Scheduled, approved, Started), one measured operation within budget, a clock resynchronised to
 * within the agent's round trip, and the VM running afterwards.
 */
/** Waits until every guest's tenant has logged its event as Started (it polls once a second). */
async function tenantsSawStarted(s: Setup, detail: Detail): Promise<void> {
  for (const vm of FLEET.vms) {
    const event = detail.plan?.waves.flatMap((w) => w.events).find((e) => e.resources.includes(vm.name));
    if (!event) continue;
    await waitForSerial(
      serialLogOf(s.runDirs.get(vm.host) ?? '', vm.name),
      new RegExp(`TENANT .*event=${event.eventId} type=\\w+ status=Started`),
      { timeoutMs: 15_000 },
    );
  }
}

function checkTenants(
  s: Setup,
  detail: Detail,
  events: readonly EventRecord[],
  watchers: Map<string, SerialWatcher>,
): string[] {
  const report: string[] = [];
  const plan = detail.plan;
  assert.ok(plan);
  for (const vm of FLEET.vms) {
    const event = plan.waves.flatMap((w) => w.events).find((e) => e.resources.includes(vm.name));
    assert.ok(event, `${vm.name} has an event in the plan`);
    const log = serialLogOf(s.runDirs.get(vm.host) ?? '', vm.name);
    const seen = tenantLines(log, event.eventId);
    assert.ok(
      seen.length > 0 && seen.every((f) => f.type === undefined || f.type === 'Freeze'),
      `${vm.name}'s tenant saw ${event.eventId} as a Freeze:\n${serialLines(log).slice(-20).join('\n')}`,
    );
    assert.ok(
      seen.some((f) => f.status === 'Started'),
      `${vm.name}'s tenant saw ${event.eventId} Started`,
    );
    const scheduled = seen.find((f) => f.status === 'Scheduled');
    const record = events.find((e) => e.eventId === event.eventId);
    assert.ok(record, `${event.eventId} is in the event history`);

    const op = detail.operations.find((o) => o.vm === vm.name);
    assert.ok(op, `${vm.name} has a measured operation`);
    assert.equal(op.outcome, 'ok', `${vm.name}: ${op.outcome}`);
    assert.ok(
      op.pauseMs !== null && op.pauseMs >= 0 && op.pauseMs <= op.pauseBudgetMs,
      `${vm.name} paused ${op.pauseMs} ms`,
    );
    const result = resultOf(detail, vm.name);
    const roundTripMs = result?.clockRoundTripMs;
    assert.ok(op.clockResidualMs !== null && typeof roundTripMs === 'number', `${vm.name}'s clock was measured`);
    // Within the measurement error (half the agent round trip), with a floor: right after a swap under
    // TCG the new process's guest clock settles for a few hundred ms, and a reading can move by tens of ms.
    assert.ok(
      Math.abs(op.clockResidualMs) <= Math.max(roundTripMs, 100),
      `${vm.name}: residual ${op.clockResidualMs} ms, agent round trip ${roundTripMs} ms`,
    );

    // The guest's own view: its ticker stopped once, for about the measured pause, then ran on.
    const watched = watchers.get(vm.name)?.lines ?? [];
    assert.ok(
      typeof result?.pausedAt === 'number' && typeof result.resumedAt === 'number',
      `${vm.name}: the agent dated the pause`,
    );
    const { gapMs, endedAt } = gapAround(watched, result.pausedAt, result.resumedAt + 2000);
    assert.ok(gapMs <= op.pauseBudgetMs, `${vm.name}'s ticker stopped for ${gapMs} ms`);
    // Notice (invariant 3): the event was published before the pause, and the pause began only
    // once the event was approved or its NotBefore had come.
    const pausedAt = result.pausedAt;
    assert.ok(Date.parse(record.createdAt) < pausedAt, `${event.eventId} was published before ${vm.name}'s pause`);
    const dueAt = Math.min(Date.parse(record.notBefore), Date.parse(record.approvedAt ?? record.notBefore));
    assert.ok(dueAt <= pausedAt + 1, `${vm.name} was paused only once its event was due`);
    // The tenant's side: when it read the event with time to answer (it polls once a second; a
    // guest starved of CPU may read late), it approved it.
    const seenAt = scheduled ? Number(scheduled.wall) * 1000 : Number.NaN;
    const noticeMs = endedAt - gapMs - seenAt;
    if (scheduled && noticeMs > 2000) {
      assert.ok(
        seen.some((f) => f.approve === 'ok'),
        `${vm.name}'s tenant approved ${event.eventId}`,
      );
    }
    const tenantView = scheduled
      ? `read by this VM's tenant ${(noticeMs / 1000).toFixed(1)} s before its pause${record.approvedBy === null ? '' : `, approved by ${record.approvedBy}`}`
      : 'not read by the tenant before its NotBefore';
    report.push(
      `${vm.name}: event ${tenantView}; pause ${op.pauseMs} ms measured by the agent (longest guest ticker gap around it ${gapMs} ms); clock offset ${op.clockOffsetMs} ms → residual ${op.clockResidualMs} ms (agent round trip ${roundTripMs} ms)`,
    );
  }
  return report;
}

async function waitDone(watcher: Watcher, timeoutMs: number): Promise<void> {
  await watcher.until((r) => TERMINAL.has(r.rollout.status), timeoutMs);
}

/**
 * Follows a rollout to its end while watching the guests' consoles; checks that it completed and
 * what every tenant saw (see {@link checkTenants}). Returns the rollout and each guest's lines.
 */
async function followToCompletion(
  s: Setup,
  id: string,
  t: TestContext,
): Promise<{ detail: Detail; lines: Map<string, readonly ObservedLine[]> }> {
  const watcher = new Watcher(s.cluster, id);
  watcher.start();
  return watchingGuests(s, async (watchers) => {
    await waitDone(watcher, 240_000);
    await watcher.stop();
    const detail = await detailOf(s, id);
    assert.equal(detail.rollout.status, 'completed', detail.rollout.reason ?? '');
    await tenantsSawStarted(s, detail);
    for (const line of checkTenants(s, detail, await eventsOf(s), watchers)) t.diagnostic(line);
    return { detail, lines: new Map([...watchers].map(([vm, w]) => [vm, w.lines])) };
  });
}

/** The update ids a host's patch command logged, oldest first (none when it never ran). */
async function patchesOf(log: string): Promise<string[]> {
  const text = await readFile(log, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return '';
    throw error;
  });
  return text.split('\n').filter((line) => line !== '');
}

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
