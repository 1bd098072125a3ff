/**
 * Crash trials in CI: a few fixed seeds on simulated hosts (real processes: the compiled CLI's
 * controller and one agent per host; about 16 s a trial), and two on real QEMU guests (skipped with
 * the reason where QEMU cannot run, failing under CI=true; see test/qemu/qemu-fixture.ts). Each seed
 * draws one fault: a process killed or frozen at a point of a rollout (see trial-plan.ts); a trial
 * fails with every violation found, its seed, and the command that replays it. The long series is
 * bench/crash-trials.ts; what is checked is in trial-checks.ts and docs/reliability.md.
 *
 * The accounting itself is tested first, on observations made up to hold one violation each: a
 * check that never fires would make every trial pass.
 *
 * INTERMISSION_CRASH_SEED=<n> runs that seed instead of the fixed ones (on both kinds of hosts).
 */
import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { qemuPreflight } from '../qemu/qemu-fixture.js';
import { ensureBuilt, type RolloutBody, type TenantRead } from './harness.js';
import { findViolations, type SimLook, type TrialObservation, type ViolationClass } from './trial-checks.js';
import { describeTrial, drawTrial, reproduceCommand, type TrialHosts } from './trial-plan.js';
import { qemuBackend, type QemuTrialBackend } from './trial-qemu.js';
import { runTrial, type TrialBackend } from './trial-run.js';
import { simBackend } from './trials.js';

/**
 * Simulated seeds covering each point: the controller at mid-publish, step-saved and mid-commit, an
 * agent at mid-pause, mid-swap and mid-commit.
 */
const SIM_SEEDS = [30, 14, 6, 9, 4, 3];
/** QEMU seeds: an agent killed with its VMs paused (its watchdogs resume them), and a watchdog killed mid-pause. */
const QEMU_SEEDS = [45, 1];

function seeds(fixed: readonly number[]): readonly number[] {
  const text = process.env.INTERMISSION_CRASH_SEED;
  if (text === undefined || text === '') return fixed;
  const seed = Number(text);
  if (!Number.isSafeInteger(seed)) throw new Error(`INTERMISSION_CRASH_SEED must be an integer, got ${text}`);
  return [seed];
}

// ---------------------------------------------------------------------------------------------
// The accounting

const PLAN: NonNullable<RolloutBody['plan']> = {
  waves: [
    { index: 0, events: [{ eventId: 'e0', resources: ['a'] }], batches: [{ steps: [{ host: 'h0' }] }] },
    { index: 1, events: [{ eventId: 'e1', resources: ['b'] }], batches: [{ steps: [{ host: 'h1' }] }] },
  ],
};

function read(at: number, incarnation: number, ids: readonly string[]): TenantRead {
  return { at, incarnation, events: ids.map((id) => ({ id, status: 'Scheduled' })) };
}

function simLook(host: string, generation: number, patch: Partial<SimLook['view']> = {}): SimLook {
  return {
    host,
    generation,
    at: 1000,
    view: { host, appliedUpdates: ['u'], vms: [], history: [], ...patch },
  };
}

/** A trial that went right: both waves done, each event shown and used once, each host patched once. */
function cleanObservation(): TrialObservation {
  const event = (eventId: string, vm: string) => ({
    eventId,
    owner: 'rollout:r',
    phase: 'Removed',
    startedAt: '2026-01-01T00:00:00.000Z',
    removalReason: 'ended',
    resources: [vm],
  });
  return {
    plan: PLAN,
    updateId: 'u',
    pauseBudgetMs: 8000,
    final: {
      rollout: { id: 'r', status: 'completed', wave: 2, wavePhase: 'pending', failedHosts: 0, reason: null },
      steps: [
        { id: 's0', host: 'h0', wave: 0, status: 'succeeded', error: null },
        { id: 's1', host: 'h1', wave: 1, status: 'succeeded', error: null },
      ],
      operations: [
        { vm: 'a', host: 'h0', stepId: 's0', outcome: 'ok', pauseMs: 1500, pauseBudgetMs: 8000 },
        { vm: 'b', host: 'h1', stepId: 's1', outcome: 'ok', pauseMs: 1500, pauseBudgetMs: 8000 },
      ],
    },
    ended: true,
    history: { events: [event('e0', 'a'), event('e1', 'b')] },
    controllerLogs: [
      { msg: 'event scheduled', eventId: 'e0' },
      { msg: 'event scheduled', eventId: 'e1' },
    ],
    agentLogs: new Map([
      ['h0', [{ msg: 'host step started', step: 's0' }]],
      ['h1', [{ msg: 'host step started', step: 's1' }]],
    ]),
    reads: new Map([
      ['a', [read(1, 1, []), read(2, 2, ['e0']), read(3, 3, [])]],
      ['b', [read(1, 1, []), read(2, 2, ['e1']), read(3, 3, [])]],
    ]),
    simLooks: [
      simLook('h0', 0, { history: [{ at: 1, kind: 'paused', vm: 'a' }] }),
      simLook('h1', 0, { history: [{ at: 1, kind: 'paused', vm: 'b' }] }),
    ],
    pauses: [],
    vmStates: new Map([
      ['a', 'running'],
      ['b', 'running'],
    ]),
    clockOffsets: new Map([['a', 12]]),
    updatesCompleted: new Map(),
    maxClockOffsetMs: 1000,
  };
}

function kinds(o: TrialObservation): ViolationClass[] {
  return findViolations(o).map((v) => v.kind);
}

describe('crash trials: the accounting finds each class of violation', () => {
  it('finds nothing in a clean trial', () => {
    assert.deepEqual(findViolations(cleanObservation()), []);
  });

  it('a pause past the budget: in the store, in the simulator, left paused, or seen from outside', () => {
    const o = cleanObservation();
    const op = o.final?.operations[0];
    assert.ok(op && o.final);
    assert.deepEqual(kinds({ ...o, final: { ...o.final, operations: [{ ...op, pauseMs: 8001 }] } }), [
      'paused-past-budget',
    ]);
    const vm = { name: 'a', state: 'paused', pauseCount: 0, longestPauseMs: 0, pausedSince: 1000 - 9000 };
    assert.deepEqual(
      kinds({ ...o, simLooks: [...o.simLooks, simLook('h0', 1, { vms: [{ ...vm }], appliedUpdates: [] })] }),
      ['paused-past-budget'],
    );
    assert.deepEqual(
      kinds({
        ...o,
        simLooks: [
          ...o.simLooks,
          simLook('h0', 1, { vms: [{ ...vm, state: 'running', longestPauseMs: 9000 }], appliedUpdates: [] }),
        ],
      }),
      ['paused-past-budget'],
    );
    assert.deepEqual(kinds({ ...o, pauses: [{ vm: 'a', pausedMs: 8500, source: 'console' }] }), ['paused-past-budget']);
  });

  it('an event lost: missing from the store, never shown to its VM, or shown but not stored', () => {
    const o = cleanObservation();
    const history = o.history?.events ?? [];
    // Missing from the store, and so shown to its VM without being stored: two findings.
    assert.deepEqual(kinds({ ...o, history: { events: history.slice(1) } }), ['event-lost', 'event-lost']);
    assert.deepEqual(kinds({ ...o, reads: new Map([...o.reads, ['b', [read(1, 1, [])]]]) }), ['event-lost']);
    assert.deepEqual(kinds({ ...o, reads: new Map([...o.reads, ['b', [read(1, 1, ['e1', 'ghost'])]]]) }), [
      'event-lost',
    ]);
  });

  it('an event published twice: logged twice, shown again after it had gone, stored twice, or re-planned', () => {
    const o = cleanObservation();
    assert.deepEqual(
      kinds({ ...o, controllerLogs: [...o.controllerLogs, { msg: 'event scheduled', eventId: 'e1' }] }),
      ['event-published-twice'],
    );
    assert.deepEqual(
      kinds({ ...o, reads: new Map([...o.reads, ['b', [read(1, 1, ['e1']), read(2, 2, []), read(3, 3, ['e1'])]]]) }),
      ['event-published-twice'],
    );
    const history = o.history?.events ?? [];
    assert.deepEqual(kinds({ ...o, history: { events: [...history, ...history.slice(1)] } }), [
      'event-published-twice',
    ]);
    const replanned = { ...history[0], eventId: 'e9' } as (typeof history)[number];
    assert.deepEqual(kinds({ ...o, history: { events: [...history, replanned] } }), ['event-published-twice']);
  });

  it('a DocumentIncarnation that goes down', () => {
    const o = cleanObservation();
    assert.deepEqual(kinds({ ...o, reads: new Map([...o.reads, ['b', [read(1, 2, ['e1']), read(2, 1, ['e1'])]]]) }), [
      'incarnation-down',
    ]);
  });

  it('a host step run twice: started by two agent processes, its update applied twice, or its VMs paused twice', () => {
    const o = cleanObservation();
    const again = new Map([
      ...o.agentLogs,
      [
        'h1',
        [
          { msg: 'host step started', step: 's1' },
          { msg: 'host step started', step: 's1', generation: 1 },
        ],
      ],
    ]);
    assert.deepEqual(kinds({ ...o, agentLogs: again }), ['step-run-twice']);
    assert.deepEqual(kinds({ ...o, simLooks: [...o.simLooks, simLook('h1', 1)] }), ['step-run-twice']);
    assert.deepEqual(kinds({ ...o, simLooks: [], updatesCompleted: new Map([['h1', 2]]) }), ['step-run-twice']);
    assert.deepEqual(
      kinds({
        ...o,
        simLooks: [
          ...o.simLooks,
          simLook('h1', 1, { appliedUpdates: [], history: [{ at: 2, kind: 'paused', vm: 'b' }] }),
        ],
      }),
      ['step-run-twice'],
    );
  });

  it('a rollout that did not end, or ended leaving a step, an event or a VM behind', () => {
    const o = cleanObservation();
    assert.ok(o.final);
    assert.deepEqual(kinds({ ...o, ended: false }), ['rollout-unfinished']);
    const dispatched = o.final.steps.map((s) => (s.host === 'h1' ? { ...s, status: 'dispatched' } : s));
    assert.deepEqual(kinds({ ...o, final: { ...o.final, steps: dispatched } }), ['rollout-unfinished']);
    const history = (o.history?.events ?? []).map((e) => (e.eventId === 'e1' ? { ...e, phase: 'Started' } : e));
    assert.deepEqual(kinds({ ...o, history: { events: history } }), ['rollout-unfinished']);
    assert.deepEqual(kinds({ ...o, vmStates: new Map([...o.vmStates, ['b', 'paused']]) }), ['rollout-unfinished']);
  });

  it('a guest clock left behind (QEMU)', () => {
    assert.deepEqual(kinds({ ...cleanObservation(), clockOffsets: new Map([['a', -4600]]) }), ['clock-behind']);
  });

  it('a seed always draws the same trial, and says how to replay it', () => {
    assert.deepEqual(drawTrial(30, 'sim'), drawTrial(30, 'sim'));
    assert.notDeepEqual(drawTrial(30, 'sim'), drawTrial(31, 'sim'));
    assert.match(reproduceCommand(drawTrial(30, 'sim')), /bench\/crash-trials\.ts --trials 1 --seed 30$/);
    assert.match(reproduceCommand(drawTrial(45, 'qemu')), /--trials 0 --qemu 1 --seed 45$/);
  });
});

// ---------------------------------------------------------------------------------------------
// The trials

async function trial(
  backend: TrialBackend,
  hosts: TrialHosts,
  seed: number,
  diagnostic: (line: string) => void,
): Promise<void> {
  const spec = drawTrial(seed, hosts);
  diagnostic(describeTrial(spec));
  const lines: string[] = [];
  const result = await runTrial(spec, backend, (line) => lines.push(line));
  diagnostic(`${result.note}; rollout ${result.rolloutStatus} in ${(result.wallMs / 1000).toFixed(1)} s`);
  assert.ok(result.hit, `the drawn point was reached (${result.note})`);
  const e = result.evidence;
  diagnostic(
    `checked ${e.tenantReads} tenant reads, ${e.eventsLogged} events logged, ${e.stepsStarted} steps started, ${e.simLooks} looks at simulated hosts, ${e.pausesSeen} pauses seen from outside, ${e.clocksRead} guest clocks`,
  );
  assert.ok(e.tenantReads > 0 && e.eventsLogged > 0 && e.stepsStarted > 0, 'the checks had something to look at');
  if (hosts === 'sim') assert.ok(e.simLooks > 0, 'the simulated hosts were looked at');
  else assert.ok(e.clocksRead > 0, "the guests' clocks were read");
  assert.deepEqual(
    result.violations,
    [],
    `seed ${seed}: ${describeTrial(spec)}\nreproduce: ${reproduceCommand(spec)}\n${lines.join('\n')}`,
  );
}

describe('crash trials on simulated hosts (real processes)', () => {
  before(() => ensureBuilt(), { timeout: 300_000 });
  for (const seed of seeds(SIM_SEEDS)) {
    it(
      `seed ${seed}: ${describeTrial(drawTrial(seed, 'sim')).replace(/^seed \d+ \(sim\): /, '')}`,
      { timeout: 150_000 },
      async (t) => {
        await trial(simBackend(), 'sim', seed, (line) => t.diagnostic(line));
      },
    );
  }
});

const preflight = qemuPreflight();

describe('crash trials on QEMU guests (TCG)', { skip: preflight.skip }, () => {
  let backend: Promise<QemuTrialBackend> | undefined;
  const shared = (): Promise<QemuTrialBackend> => (backend ??= qemuBackend());
  before(() => shared().then(() => undefined), { timeout: 600_000 });
  after(async () => {
    await (await backend?.catch(() => undefined))?.close();
  });
  for (const seed of seeds(QEMU_SEEDS)) {
    it(
      `seed ${seed}: ${describeTrial(drawTrial(seed, 'qemu')).replace(/^seed \d+ \(qemu\): /, '')}`,
      { timeout: 400_000 },
      async (t) => {
        await trial(await shared(), 'qemu', seed, (line) => t.diagnostic(line));
      },
    );
  }
});
