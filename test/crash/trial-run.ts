/**
 * Crash trials, the run: one trial applies a rollout, reaches its drawn point (trial-point.ts),
 * sends the signal after the drawn delay, brings the process back (restart after SIGKILL, SIGCONT
 * after SIGSTOP), lets the rollout end, and collects what {@link findViolations} judges. What
 * differs between simulated hosts and QEMU guests (the cluster, the processes of an update
 * command or a watchdog, the outside view of a pause, the guest clocks) is behind
 * {@link TrialBackend}.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findViolations, type SimLook, type TrialObservation, type Violation } from './trial-checks.js';
import { describeTrial, TRIAL_TIMING, type TrialSpec } from './trial-plan.js';
import { Watcher, parseLogLines, sleep, type Cluster, type EventsBody, type RolloutBody } from './harness.js';
import type { AgentVmsBody, BackendObservation, TrialBackend } from './trial-backend.js';
import { fault, reachPoint } from './trial-point.js';

export type { AgentVmsBody, BackendObservation, TrialBackend } from './trial-backend.js';
/** The outcome of one trial. */
export interface TrialResult {
  readonly spec: TrialSpec;
  /** Whether the drawn point was reached (and the signal sent). */
  readonly hit: boolean;
  /** What the trial did, for the report. */
  readonly note: string;
  readonly rolloutStatus: string;
  readonly violations: readonly Violation[];
  /** How much the checks had to go on (a check over nothing finds nothing). */
  readonly evidence: TrialEvidence;
  readonly wallMs: number;
}

/** Counts of what a trial's checks looked at. */
export interface TrialEvidence {
  /** Successful reads of Scheduled Events through the VMs' metadata listeners. */
  readonly tenantReads: number;
  /** `host step started` lines of the agents. */
  readonly stepsStarted: number;
  /** `event scheduled` lines of the controller. */
  readonly eventsLogged: number;
  /** Looks at the simulated hosts' ground truth. */
  readonly simLooks: number;
  /** Pauses seen from outside (QEMU). */
  readonly pausesSeen: number;
  /** Guest clocks read at the end (QEMU). */
  readonly clocksRead: number;
}

const NO_EVIDENCE: TrialEvidence = {
  tenantReads: 0,
  stepsStarted: 0,
  eventsLogged: 0,
  simLooks: 0,
  pausesSeen: 0,
  clocksRead: 0,
};

function evidenceOf(o: TrialObservation): TrialEvidence {
  return {
    tenantReads: [...o.reads.values()].reduce((n, r) => n + r.length, 0),
    stepsStarted: [...o.agentLogs.values()].flat().filter((l) => l.msg === 'host step started').length,
    eventsLogged: o.controllerLogs.filter((l) => l.msg === 'event scheduled').length,
    simLooks: o.simLooks.length,
    pausesSeen: o.pauses.length,
    clocksRead: o.clockOffsets.size,
  };
}

const TERMINAL = new Set(['completed', 'halted', 'cancelled']);
/** How long a rollout may take after the fault to end (3 waves of seconds each; QEMU is slow). */
const END_DEADLINE_MS = { sim: 90_000, qemu: 240_000 } as const;

/** Runs one trial. Never throws for what it finds: violations are in the result. */
export async function runTrial(
  spec: TrialSpec,
  backend: TrialBackend,
  log: (line: string) => void,
): Promise<TrialResult> {
  const began = Date.now();
  const cluster = await backend.acquire(spec);
  let note = '';
  let hit = false;
  let watcher: Watcher | undefined;
  let simPoller: SimPoller | undefined;
  let outside: BackendObservation | undefined;
  try {
    const updateId = `trial-${spec.seed}-${spec.update}`;
    const versions = spec.update === 'vmm-update' ? await backend.vmmVersions(cluster) : undefined;
    const id = await applyRollout(cluster, spec, updateId, versions);
    const { plan } = await cluster.control<RolloutBody>(`/v1/rollouts/${encodeURIComponent(id)}?plan=true`);
    if (!plan) throw new Error('the rollout has no plan');
    watcher = new Watcher(cluster, id, { readUnixChannels: true });
    watcher.start();
    if (backend.hosts === 'sim') simPoller = new SimPoller(cluster);
    outside = await backend.observe(cluster, updateId);

    const waves = plan.waves.map((w) => w.batches.flatMap((b) => b.steps.map((s) => s.host)));
    const wave = Math.min(spec.wave, waves.length - 1);
    const hostsOfWave = waves[wave] ?? [];
    const host = hostsOfWave[spec.hostPick % hostsOfWave.length] ?? '';
    const eventIds = new Set(plan.waves[wave]?.events.map((e) => e.eventId) ?? []);
    const vmsOf = new Set(backend.fleet.vms.filter((v) => v.host === host).map((v) => v.name));

    const reached = await reachPoint({ cluster, spec, host, eventIds, vmsOf, watcher, versions, backend });
    if (reached === undefined) {
      note = `point not reached (${describeTrial(spec)})`;
    } else {
      await sleep(spec.delayMs);
      const signalled = cluster.controller.proc;
      const did = await fault(cluster, backend, spec, host);
      note = `${reached}; ${did}`;
      if (spec.point === 'mid-publish' && spec.target === 'controller') {
        // How far the publication got in the process signalled (its log lines, read to their end).
        const logged = new Set(
          parseLogLines(signalled.lines())
            .filter((e) => e.msg === 'event scheduled' && eventIds.has(String(e.eventId)))
            .map((e) => String(e.eventId)),
        );
        note += ` (it had logged ${logged.size} of the wave's ${eventIds.size} events)`;
      }
      hit = !did.startsWith('no ');
    }
    log(`  ${note}`);

    const ended = await watcher
      .until((r) => TERMINAL.has(r.rollout.status), END_DEADLINE_MS[backend.hosts])
      .then(() => true)
      .catch(() => false);
    // Steps under way finish and Started events end and linger (5 min / 300 = 1 s) after the end.
    if (ended) await untilQuiet(cluster, id, plan, 15_000);
    await sleep(600); // a few more tenant reads
    await watcher.stop();
    const simLooks = simPoller ? await simPoller.stop() : [];
    const seen = await outside.stop();
    if (backend.hosts === 'qemu') {
      const pauses = seen.pauses.map((x) => `${x.vm} ${x.pausedMs} ms (${x.source})`).join(', ');
      const clocks = [...seen.clockOffsets].map(([vm, ms]) => `${vm} ${ms} ms`).join(', ');
      log(`  pauses seen from outside: ${pauses || 'none'}; guest clocks at the end: ${clocks || 'none read'}`);
    }
    const final = await cluster
      .control<RolloutBody>(`/v1/rollouts/${encodeURIComponent(id)}`)
      .catch(() => watcher?.latest);
    const history = await cluster.control<EventsBody>('/v1/events?all=true').catch(() => undefined);
    const vmStates = new Map<string, string>();
    for (const h of backend.fleet.hosts) {
      const body = await cluster.agentGet<AgentVmsBody>(h.name, '/v1/vms').catch(() => undefined);
      for (const vm of body?.vms ?? []) vmStates.set(vm.name, vm.state);
    }
    const observation: TrialObservation = {
      plan,
      updateId,
      pauseBudgetMs: TRIAL_TIMING.pauseBudgetMs,
      final,
      ended,
      history,
      controllerLogs: cluster.controllerLogs(),
      agentLogs: new Map(backend.fleet.hosts.map((h) => [h.name, cluster.agentLogs(h.name)])),
      reads: watcher.reads,
      simLooks,
      pauses: seen.pauses,
      vmStates,
      clockOffsets: seen.clockOffsets,
      updatesCompleted: seen.updatesCompleted,
      maxClockOffsetMs: backend.maxClockOffsetMs,
    };
    const violations = findViolations(observation);
    if (violations.length > 0) log(cluster.tails(15));
    return {
      spec,
      hit,
      note,
      rolloutStatus: final?.rollout.status ?? 'unknown',
      violations,
      evidence: evidenceOf(observation),
      wallMs: Date.now() - began,
    };
  } catch (error) {
    log(`  trial error: ${(error as Error).stack ?? String(error)}\n${cluster.tails(15)}`);
    return {
      spec,
      hit,
      note: `${note} (trial error: ${(error as Error).message.split('\n')[0] ?? ''})`,
      rolloutStatus: 'unknown',
      violations: [
        {
          kind: 'rollout-unfinished',
          detail: `the trial itself failed: ${(error as Error).message.split('\n')[0] ?? ''}`,
        },
      ],
      evidence: NO_EVIDENCE,
      wallMs: Date.now() - began,
    };
  } finally {
    await watcher?.stop();
    await simPoller?.stop();
    await outside?.stop().catch(() => undefined);
    await backend.release(cluster);
  }
}

async function applyRollout(
  cluster: Cluster,
  spec: TrialSpec,
  updateId: string,
  versions: { from: string; to: string } | undefined,
): Promise<string> {
  const updateFile = join(cluster.dir, `${updateId}.update.json`);
  const policyFile = join(cluster.dir, `${updateId}.policy.json`);
  await writeFile(
    updateFile,
    JSON.stringify({
      id: updateId,
      kind: spec.update,
      expectedApplyMs: spec.update === 'vmm-update' ? 300 : TRIAL_TIMING.applyMs[spec.hosts],
      ...(versions ? { vmm: { fromVersion: versions.from, toVersion: versions.to } } : {}),
    }),
  );
  await writeFile(
    policyFile,
    JSON.stringify({
      pauseBudgetMs: TRIAL_TIMING.pauseBudgetMs,
      settleMs: TRIAL_TIMING.settle,
      // One fault fails at most one host: the rollout may complete past it, or halt cleanly.
      failureBudget: { maxFailedHosts: 1 },
    }),
  );
  const out = await cluster.cli(['apply', '--update', updateFile, '--policy', policyFile, '--json']);
  return (JSON.parse(out) as { id: string }).id;
}

/**
 * After the end: waits until no step is dispatched and no event of the rollout is Scheduled or
 * Started (the controller keeps polling steps under way and ends their events), or the time is up;
 * what is left then is judged by the checks.
 */
async function untilQuiet(
  cluster: Cluster,
  id: string,
  plan: NonNullable<RolloutBody['plan']>,
  timeoutMs: number,
): Promise<void> {
  const ids = new Set(plan.waves.flatMap((w) => w.events.map((e) => e.eventId)));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const [detail, history] = await Promise.all([
      cluster.control<RolloutBody>(`/v1/rollouts/${encodeURIComponent(id)}`).catch(() => undefined),
      cluster.control<EventsBody>('/v1/events?all=true').catch(() => undefined),
    ]);
    const busy =
      !detail ||
      !history ||
      detail.steps.some((s) => s.status === 'dispatched') ||
      history.events.some((e) => ids.has(e.eventId) && (e.phase === 'Scheduled' || e.phase === 'Started'));
    if (!busy) return;
    await sleep(250);
  }
}

/** Looks at every simulated host (`/v1/sim/host`) every 250 ms, remembering which process answered. */
class SimPoller {
  readonly #looks: SimLook[] = [];
  readonly #cluster: Cluster;
  #stopped = false;
  readonly #loop: Promise<void>;

  constructor(cluster: Cluster) {
    this.#cluster = cluster;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      await this.#lookAll();
      await sleep(250);
    }
    await this.#lookAll();
  }

  async #lookAll(): Promise<void> {
    await Promise.all(
      [...this.#cluster.agents.values()].map(async (slot) => {
        const generation = slot.generations.length - 1;
        if (!slot.proc.alive) return;
        const at = Date.now();
        const view = await this.#cluster.agentGet<SimLook['view']>(slot.host, '/v1/sim/host').catch(() => undefined);
        // A process that died while answering is not the one that answered.
        if (view && slot.generations.length - 1 === generation)
          this.#looks.push({ host: slot.host, generation, at, view });
      }),
    );
  }

  async stop(): Promise<SimLook[]> {
    this.#stopped = true;
    await this.#loop;
    return this.#looks;
  }
}
