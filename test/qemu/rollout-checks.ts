/**
 * What the rollout tests on real QEMU guests share: driving a rollout through the CLI, following it
 * to its end while watching every guest's serial console, and the checks every VM of a completed
 * rollout must pass (its event seen from inside, its pause within budget as the agent measured it
 * and as its ticker lived it, its clock resynchronised, notice honoured).
 */
import { strict as assert } from 'node:assert';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { destroyQemuRunDir, serialLogOf } from '../../src/hypervisor/qemu/index.js';
import { Cluster, Watcher, type FleetSpec, type RolloutBody } from '../crash/harness.js';
import {
  SerialWatcher,
  beats,
  fields,
  serialLines,
  waitForSerial,
  writeQemuHostConfigs,
  type ObservedLine,
} from './qemu-fixture.js';

/** Options of {@link startQemuCluster}: the host files' (see {@link writeQemuHostConfigs}) and the cluster's. */
export type QemuClusterOptions = Parameters<typeof writeQemuHostConfigs>[0] & {
  readonly name: string;
  readonly fleet: FleetSpec;
  /** Default 60. */
  readonly timeScale?: number;
};

/** A controller and one `agent --driver qemu` per host, as {@link startQemuCluster} started them. */
export interface QemuCluster {
  readonly cluster: Cluster;
  readonly runDirs: ReadonlyMap<string, string>;
  readonly patchLog: (host: string) => string;
  /** Kills the processes, then every VM of every host, and removes the run directories. */
  readonly close: () => Promise<void>;
}

/**
 * Writes each host's QEMU agent config under `options.base` and starts the controller and the
 * agents (the guests boot in parallel); on failure, what started is torn down again.
 */
export async function startQemuCluster(options: QemuClusterOptions): Promise<QemuCluster> {
  const { runDirs, patchLog, configOf, metadataDir } = await writeQemuHostConfigs(options);
  const destroyVms = async (): Promise<void> => {
    for (const dir of runDirs.values()) await destroyQemuRunDir(dir).catch(() => undefined);
  };
  let cluster: Cluster;
  try {
    cluster = await Cluster.start({
      name: options.name,
      fleet: options.fleet,
      timeScale: options.timeScale ?? 60,
      seed: 1,
      agentArgs: (host) => ['--driver', 'qemu', '--qemu-config', configOf(host)],
      // A finished event stays listed 10 min / time scale: the guests' tenants (polling once a
      // second) see it Started.
      controllerArgs: ['--metadata-dir', metadataDir, '--linger', '10m'],
      bindMetadata: false,
      agentStartTimeoutMs: 300_000,
    });
  } catch (error) {
    await destroyVms();
    await rm(options.base, { recursive: true, force: true });
    throw error;
  }
  return {
    cluster,
    runDirs,
    patchLog,
    close: async () => {
      await cluster.close();
      await destroyVms();
    },
  };
}

/** The statuses a rollout ends in. */
export const TERMINAL = new Set(['completed', 'halted', 'cancelled', 'failed']);

/** A cluster of QEMU hosts under test, as the checks need it. */
export interface RolloutSetup {
  readonly cluster: Cluster;
  readonly fleet: FleetSpec;
  /** Short paths: unix sockets live under them (108 bytes at most). */
  readonly base: string;
  readonly runDirs: ReadonlyMap<string, string>;
}

export interface Operation {
  readonly vm: string;
  readonly host: string;
  readonly outcome: string;
  readonly pauseMs: number | null;
  readonly pauseBudgetMs: number;
  readonly clockOffsetMs: number | null;
  readonly clockResidualMs: number | null;
}
export interface StepResultVm {
  readonly name: string;
  /** Host wall clock, as QEMU's STOP event dated it. */
  readonly pausedAt: number | null;
  readonly resumedAt: number | null;
  readonly clockRoundTripMs: number | null;
}
export type Detail = Omit<RolloutBody, 'operations' | 'steps'> & {
  readonly operations: readonly Operation[];
  readonly steps: readonly (RolloutBody['steps'][number] & {
    readonly result: { readonly vms: readonly StepResultVm[] } | null;
  })[];
};

export interface AgentVms {
  readonly vms: readonly { readonly name: string; readonly state: string; readonly vmmVersion: string }[];
}

/** The rollout as the control API shows it, with its plan. */
export function detailOf(s: RolloutSetup, id: string): Promise<Detail> {
  return s.cluster.control<Detail>(`/v1/rollouts/${encodeURIComponent(id)}?plan=true`);
}

/** Applies an update with a policy through the CLI; returns the rollout id. */
export async function apply(s: RolloutSetup, name: string, update: object, policy: object): Promise<string> {
  const updateFile = join(s.base, `${name}.update.json`);
  const policyFile = join(s.base, `${name}.policy.json`);
  await writeFile(updateFile, JSON.stringify(update));
  await writeFile(policyFile, JSON.stringify(policy));
  const out = await s.cluster.cli(['apply', '--update', updateFile, '--policy', policyFile, '--json']);
  return (JSON.parse(out) as { id: string }).id;
}

/** Watches every guest's serial console (host-stamped) while `body` runs. */
export async function watchingGuests<T>(
  s: RolloutSetup,
  body: (watchers: Map<string, SerialWatcher>) => Promise<T>,
): Promise<T> {
  const watchers = new Map(
    s.fleet.vms.map((vm) => [vm.name, new SerialWatcher(serialLogOf(s.runDirs.get(vm.host) ?? '', vm.name))]),
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
export function gapAround(
  lines: readonly ObservedLine[],
  from: number,
  to: number,
): { gapMs: number; endedAt: number } {
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

export interface EventRecord {
  readonly eventId: string;
  readonly createdAt: string;
  readonly notBefore: string;
  readonly approvedAt: string | null;
  readonly approvedBy: string | null;
}

/** Every event the controller ever published, as its history keeps it. */
export async function eventsOf(s: RolloutSetup): Promise<readonly EventRecord[]> {
  return (await s.cluster.control<{ events: readonly EventRecord[] }>('/v1/events?all=true')).events;
}

/** What the agent reported for one VM in the rollout's steps. */
export function resultOf(detail: Detail, vm: string): StepResultVm | undefined {
  return detail.steps.flatMap((x) => x.result?.vms ?? []).find((v) => v.name === vm);
}

/** TENANT lines of a guest about one event. */
export function tenantLines(serialLog: string, eventId: string): Record<string, string>[] {
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
export async function tenantsSawStarted(s: RolloutSetup, detail: Detail): Promise<void> {
  for (const vm of s.fleet.vms) {
    const event = detail.plan?.waves.flatMap((w) => w.events).find((e) => e.resources.includes(vm.name));
    if (!event) continue;
    await waitForSerial(
      serialLogOf(s.runDirs.get(vm.host) ?? '', vm.name),
      new RegExp(`TENANT .*event=${event.eventId} type=\\w+ status=Started`),
      { timeoutMs: 15_000 },
    );
  }
}

export function checkTenants(
  s: RolloutSetup,
  detail: Detail,
  events: readonly EventRecord[],
  watchers: Map<string, SerialWatcher>,
): string[] {
  const report: string[] = [];
  const plan = detail.plan;
  assert.ok(plan);
  for (const vm of s.fleet.vms) {
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

export async function waitDone(watcher: Watcher, timeoutMs: number): Promise<void> {
  await watcher.until((r) => TERMINAL.has(r.rollout.status), timeoutMs);
}

/**
 * Follows a rollout to its end while watching the guests' consoles; checks that it completed and
 * what every tenant saw (see {@link checkTenants}). Returns the rollout and each guest's lines.
 */
export async function followToCompletion(
  s: RolloutSetup,
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
export async function patchesOf(log: string): Promise<string[]> {
  const text = await readFile(log, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return '';
    throw error;
  });
  return text.split('\n').filter((line) => line !== '');
}
