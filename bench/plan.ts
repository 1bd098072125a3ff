/**
 * Rollout planner benchmark: a region of 10,000 hosts, 250,000 VMs, 5,000 availability sets of 20
 * update domains (48 VMs each, 240,000 VMs) plus 10,000 standalone VMs.
 *
 *   node --import tsx bench/plan.ts [--placement=aligned|scattered|both] [--kind=host-patch|…]
 *                                   [--runs=5] [--json] [--serialize]
 *
 * Each measurement runs in a fresh child process (with --expose-gc), so that its peak RSS is its
 * own: the baseline child builds the fleet and a FleetIndex of it; the plan child builds the same
 * fleet and plans it. Targets: plan ≤ 2 s, peak memory ≤ 1 GiB.
 *
 * Placements: `aligned` is how clouds place availability sets (host group g holds update domain g
 * of every set), `scattered` puts each set's VMs on random distinct hosts, so the waves come from
 * graph colouring with no structure to find.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FleetIndex } from '../src/domain/fleet.js';
import { formatDuration, MINUTE, SECOND } from '../src/domain/time.js';
import { buildRegion, HOSTS, SETS, STANDALONE, UPDATE_DOMAINS, VMS_PER_SET, type Placement } from './region.js';
import {
  planLowerBound,
  planRollout,
  UPDATE_KINDS,
  type Plan,
  type RolloutPolicy,
  type Update,
  type UpdateKind,
} from '../src/domain/rollout/index.js';

const TARGET_MS = 2_000;
const TARGET_BYTES = 1024 ** 3;

type Phase = 'index' | 'plan';

interface ChildResult {
  readonly phase: Phase;
  readonly placement: Placement;
  readonly buildFleetMs: number;
  /** Each run's wall-clock time, the first one cold. */
  readonly runsMs: readonly number[];
  /**
   * Each run's CPU time (user + system, all threads, GC included). On a busy machine wall time
   * exceeds it by the time the process waited for a core.
   */
  readonly runsCpuMs: readonly number[];
  readonly maxRssBytes: number;
  /** Heap held after the runs (with gc) minus the heap before them: what one result retains. */
  readonly retainedHeapBytes: number;
  readonly stats?: Plan['stats'];
  readonly lowerBoundMs?: number;
  readonly serializeMs?: number;
  readonly jsonBytes?: number;
}

function arg(name: string, fallback: string): string {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit === undefined ? fallback : hit.slice(name.length + 3);
}
const flag = (name: string) => process.argv.includes(`--${name}`);

const NOW = Date.UTC(2026, 0, 1);
const POLICY: RolloutPolicy = {
  pauseBudgetMs: 30 * SECOND,
  pauseBudgets: { sets: { 'set-0000': 5 * SECOND } },
  maxHostsInParallel: 250,
  maxVmsPausedAtOnce: 6_000,
  settleMs: 5 * MINUTE,
  failureBudget: { maxFailedFraction: 0.01 },
};

function update(kind: UpdateKind): Update {
  return {
    id: `bench-${kind}`,
    kind,
    expectedApplyMs: kind === 'host-patch' ? 10 * SECOND : 30 * SECOND,
    vmm: kind === 'vmm-update' ? { fromVersion: '9.1.0', toVersion: '9.2.0' } : undefined,
  };
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

function runChild(phase: Phase, placement: Placement, kind: UpdateKind, runs: number): ChildResult {
  const t0 = performance.now();
  const { fleet, capabilities } = buildRegion(placement);
  const buildFleetMs = performance.now() - t0;
  gc();
  const heapBefore = process.memoryUsage().heapUsed;
  const runsMs: number[] = [];
  const runsCpuMs: number[] = [];
  let keep: FleetIndex | Plan | undefined;
  for (let r = 0; r < runs; r++) {
    keep = undefined;
    gc();
    const cpu = process.cpuUsage();
    const start = performance.now();
    keep =
      phase === 'index'
        ? new FleetIndex(fleet)
        : planRollout({ fleet, update: update(kind), policy: POLICY, now: NOW, capabilities });
    runsMs.push(performance.now() - start);
    const used = process.cpuUsage(cpu);
    runsCpuMs.push((used.user + used.system) / 1000);
  }
  gc();
  const retainedHeapBytes = process.memoryUsage().heapUsed - heapBefore;
  const maxRssBytes = process.resourceUsage().maxRSS * 1024;
  const result: ChildResult = { phase, placement, buildFleetMs, runsMs, runsCpuMs, maxRssBytes, retainedHeapBytes };
  if (phase === 'plan' && keep !== undefined && !(keep instanceof FleetIndex)) {
    const plan = keep;
    let serialize: { serializeMs: number; jsonBytes: number } | undefined;
    if (flag('serialize')) {
      const s0 = performance.now();
      const json = JSON.stringify(plan);
      serialize = { serializeMs: performance.now() - s0, jsonBytes: Buffer.byteLength(json) };
    }
    return { ...result, stats: plan.stats, lowerBoundMs: planLowerBound(plan), ...serialize };
  }
  return result;
}

function spawn(phase: Phase, placement: Placement, kind: UpdateKind, runs: number): ChildResult {
  const child = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      '--max-old-space-size=4096',
      ...process.execArgv,
      fileURLToPath(import.meta.url),
      `--child=${phase}`,
      `--placement=${placement}`,
      `--kind=${kind}`,
      `--runs=${runs}`,
      ...(flag('serialize') ? ['--serialize'] : []),
    ],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  if (child.status !== 0) throw new Error(`bench child ${phase}/${placement} failed:\n${child.stderr}`);
  return JSON.parse(child.stdout) as ChildResult;
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const ms = (x: number) => `${x.toFixed(0)} ms`;
const mib = (b: number) => `${(b / 1024 ** 2).toFixed(0)} MiB`;

function report(placement: Placement, kind: UpdateKind, base: ChildResult, plan: ChildResult): boolean {
  const baseMed = median(base.runsMs);
  const planMed = median(plan.runsMs);
  const planWorst = Math.max(...plan.runsMs);
  const s = plan.stats;
  const rows: [string, string, string, string][] = [
    ['', 'baseline: FleetIndex', `planRollout (${kind})`, 'ratio'],
    ['time, median', ms(baseMed), ms(planMed), `${(planMed / baseMed).toFixed(1)}×`],
    [
      'time, best',
      ms(Math.min(...base.runsMs)),
      ms(Math.min(...plan.runsMs)),
      `${(Math.min(...plan.runsMs) / Math.min(...base.runsMs)).toFixed(1)}×`,
    ],
    [
      'CPU time, median',
      ms(median(base.runsCpuMs)),
      ms(median(plan.runsCpuMs)),
      `${(median(plan.runsCpuMs) / median(base.runsCpuMs)).toFixed(1)}×`,
    ],
    ['time, cold (first run)', ms(base.runsMs[0] ?? 0), ms(plan.runsMs[0] ?? 0), ''],
    ['time, worst', ms(Math.max(...base.runsMs)), ms(planWorst), ''],
    [
      'peak RSS (whole process)',
      mib(base.maxRssBytes),
      mib(plan.maxRssBytes),
      `${(plan.maxRssBytes / base.maxRssBytes).toFixed(1)}×`,
    ],
    ['heap retained by result', mib(base.retainedHeapBytes), mib(plan.retainedHeapBytes), ''],
  ];
  const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]?.length ?? 0)));
  console.log(
    `\n== ${placement} placement: ${HOSTS} hosts, ${SETS * VMS_PER_SET + STANDALONE} VMs, ${SETS} sets × ${UPDATE_DOMAINS} UDs (fleet built in ${ms(plan.buildFleetMs)})`,
  );
  for (const r of rows)
    console.log(
      r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join('   '),
    );
  if (s) {
    console.log(
      `plan: ${s.waves} waves, ${s.batches} batches, ${s.events} events, ${s.plannedHosts} hosts planned, ${s.blockedHosts} blocked, peak ${s.peakPausedVms} VMs paused`,
    );
    console.log(
      `paths: ${Object.entries(s.byPath)
        .filter(([, n]) => n > 0)
        .map(([p, n]) => `${p} ${n}`)
        .join(', ')}`,
    );
    console.log(
      `reasons: ${
        Object.entries(s.byReason)
          .filter(([, n]) => n > 0)
          .map(([p, n]) => `${p} ${n}`)
          .join(', ') || 'none'
      }`,
    );
    console.log(
      `makespan: expected ${formatDuration(s.expectedMakespanMs)}, lower bound (Σ notice + longest step) ${formatDuration(plan.lowerBoundMs ?? 0)}`,
    );
  }
  if (plan.serializeMs !== undefined) console.log(`JSON: ${mib(plan.jsonBytes ?? 0)} in ${ms(plan.serializeMs)}`);
  const timeOk = planWorst <= TARGET_MS;
  const memOk = plan.maxRssBytes <= TARGET_BYTES;
  console.log(
    `targets: plan ≤ ${ms(TARGET_MS)} ${timeOk ? 'MET' : 'MISSED'} (worst ${ms(planWorst)}), peak ≤ 1 GiB ${memOk ? 'MET' : 'MISSED'} (${mib(plan.maxRssBytes)})`,
  );
  return timeOk && memOk;
}

const child = arg('child', '');
const placementArg = arg('placement', 'both');
const kind = arg('kind', 'host-patch') as UpdateKind;
const runs = Math.max(1, Number(arg('runs', '5')));
if (!(UPDATE_KINDS as readonly string[]).includes(kind))
  throw new Error(`--kind must be one of ${UPDATE_KINDS.join(', ')}`);

if (child === 'index' || child === 'plan') {
  process.stdout.write(JSON.stringify(runChild(child, placementArg as Placement, kind, runs)));
} else {
  const placements: Placement[] = placementArg === 'both' ? ['aligned', 'scattered'] : [placementArg as Placement];
  const results: { placement: Placement; baseline: ChildResult; plan: ChildResult }[] = [];
  let ok = true;
  for (const placement of placements) {
    const baseline = spawn('index', placement, kind, runs);
    const plan = spawn('plan', placement, kind, runs);
    results.push({ placement, baseline, plan });
    if (!flag('json')) ok = report(placement, kind, baseline, plan) && ok;
  }
  if (flag('json')) console.log(JSON.stringify({ node: process.version, kind, runs, results }, null, 2));
  process.exitCode = ok ? 0 : 1;
}
