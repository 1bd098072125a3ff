/**
 * Crash trials, the series: runs trials seed after seed on a backend (simulated hosts here, QEMU
 * guests in trial-qemu.ts) and adds up what they found: trials, the faults by target, point and
 * signal, each class of violation, and the wall time. Used by test/crash/trials.test.ts (a few
 * fixed seeds) and bench/crash-trials.ts (hundreds).
 */
import { Cluster } from './harness.js';
import { VIOLATION_CLASSES, type ViolationClass } from './trial-checks.js';
import {
  describeTrial,
  drawTrial,
  reproduceCommand,
  TRIAL_FLEET,
  TRIAL_TIME_SCALE,
  type TrialHosts,
} from './trial-plan.js';
import { runTrial, type TrialBackend, type TrialResult } from './trial-run.js';

/** Simulated hosts: a fresh cluster per trial (4 processes: 3 agents and the controller). */
export function simBackend(): TrialBackend {
  return {
    hosts: 'sim',
    fleet: TRIAL_FLEET,
    acquire: (spec) =>
      Cluster.start({ name: `trial-${spec.seed}`, fleet: TRIAL_FLEET, timeScale: TRIAL_TIME_SCALE, seed: spec.seed }),
    release: (cluster) => cluster.close(),
    vmmVersions: () => Promise.resolve({ from: 'sim-1.0', to: 'sim-2.0' }),
    pidsOf: () => [],
    observe: () =>
      Promise.resolve({
        stop: () => Promise.resolve({ pauses: [], clockOffsets: new Map(), updatesCompleted: new Map() }),
      }),
    maxClockOffsetMs: Number.POSITIVE_INFINITY,
  };
}

/** The totals of a series. */
export interface TrialTotals {
  trials: number;
  /** Trials whose point was reached and whose signal was sent. */
  hits: number;
  readonly byTarget: Map<string, number>;
  readonly byPoint: Map<string, number>;
  readonly bySignal: Map<string, number>;
  readonly byOutcome: Map<string, number>;
  readonly violations: Map<ViolationClass, number>;
  /** Every trial that found a violation. */
  readonly failed: TrialResult[];
  wallMs: number;
}

export function emptyTotals(): TrialTotals {
  return {
    trials: 0,
    hits: 0,
    byTarget: new Map(),
    byPoint: new Map(),
    bySignal: new Map(),
    byOutcome: new Map(),
    violations: new Map(VIOLATION_CLASSES.map((k) => [k, 0])),
    failed: [],
    wallMs: 0,
  };
}

function bump<K>(map: Map<K, number>, key: K, by = 1): void {
  map.set(key, (map.get(key) ?? 0) + by);
}

/** Adds one trial to the totals. */
export function addTrial(totals: TrialTotals, result: TrialResult): void {
  totals.trials++;
  totals.wallMs += result.wallMs;
  bump(totals.byOutcome, result.rolloutStatus);
  if (result.hit) {
    totals.hits++;
    bump(totals.byTarget, result.spec.target);
    bump(totals.byPoint, result.spec.point);
    bump(totals.bySignal, result.spec.signal);
  } else {
    bump(totals.byPoint, 'point not reached');
  }
  for (const v of result.violations) bump(totals.violations, v.kind);
  if (result.violations.length > 0) totals.failed.push(result);
}

/** Runs `count` trials with seeds `firstSeed`, `firstSeed + 1`, … on a backend, one after the other. */
export async function runTrials(options: {
  readonly backend: TrialBackend;
  readonly firstSeed: number;
  readonly count: number;
  readonly totals?: TrialTotals;
  readonly log?: (line: string) => void;
}): Promise<TrialTotals> {
  const totals = options.totals ?? emptyTotals();
  const log = options.log ?? (() => undefined);
  for (let i = 0; i < options.count; i++) {
    const spec = drawTrial(options.firstSeed + i, options.backend.hosts);
    log(`trial ${i + 1}/${options.count}: ${describeTrial(spec)}`);
    const result = await runTrial(spec, options.backend, log);
    addTrial(totals, result);
    log(
      `  → rollout ${result.rolloutStatus}, ${result.violations.length} violation(s), ${(result.wallMs / 1000).toFixed(1)} s`,
    );
    for (const v of result.violations) log(`    ${v.kind}: ${v.detail}`);
    if (result.violations.length > 0) log(`    reproduce: ${reproduceCommand(spec)}`);
  }
  return totals;
}

/** The totals as lines of text. */
export function formatTotals(totals: TrialTotals, hosts: TrialHosts | 'all' = 'all'): string[] {
  const list = (m: Map<string, number>): string =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .map(([k, n]) => `${k} ${n}`)
      .join(', ') || '-';
  const violations = [...totals.violations.values()].reduce((a, b) => a + b, 0);
  return [
    `crash trials (${hosts}): ${totals.trials} trials, ${totals.hits} faults sent, ${violations} violations, ${(totals.wallMs / 1000).toFixed(0)} s`,
    `  faults by target: ${list(totals.byTarget)}`,
    `  faults by point: ${list(totals.byPoint)}`,
    `  faults by signal: ${list(totals.bySignal)}`,
    `  rollouts: ${list(totals.byOutcome)}`,
    `  violations: ${[...totals.violations].map(([k, n]) => `${k} ${n}`).join(', ')}`,
    ...totals.failed.map(
      (r) =>
        `  FAILED ${describeTrial(r.spec)}\n    ${r.violations.map((v) => `${v.kind}: ${v.detail}`).join('\n    ')}\n    reproduce: ${reproduceCommand(r.spec)}`,
    ),
  ];
}
