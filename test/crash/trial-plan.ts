/**
 * Crash trials, the draw: what one seed decides. A trial is one rollout on a fresh cluster (or a
 * reused QEMU one) with one fault: a process is killed (SIGKILL, then restarted) or frozen
 * (SIGSTOP, then SIGCONT) at a point of the rollout reached by watching logs and state, after a
 * seeded delay. Everything random about a trial comes from its seed, so that a violation can be
 * replayed with the same seed (the kill lands at the same point, not at the same instant: the
 * processes' own timing still varies a little).
 */
import { Random, type FleetSpec } from './harness.js';

/** What is killed or frozen. */
export const TRIAL_TARGETS = ['controller', 'agent', 'host-update', 'watchdog'] as const;
export type TrialTarget = (typeof TRIAL_TARGETS)[number];

/**
 * Where in the rollout:
 * - `mid-publish`: the controller has written the first event of a wave, maybe not yet the others;
 * - `step-saved`: a host step is saved as dispatched, and is being sent to its agent;
 * - `mid-commit`: a step's outcome is being written (by the agent to its journal once the update
 *   is applied, or by the controller to its store once the agent reports it);
 * - `mid-pause`: a host's VMs are paused and its update is being applied;
 * - `mid-swap`: VMs are moving to a new VMM process in place.
 */
export const TRIAL_POINTS = ['mid-publish', 'step-saved', 'mid-commit', 'mid-pause', 'mid-swap'] as const;
export type TrialPoint = (typeof TRIAL_POINTS)[number];

export type TrialSignal = 'SIGKILL' | 'SIGSTOP';

/** The hosts a trial runs on: simulated hosts in their agents' processes, or QEMU guests. */
export type TrialHosts = 'sim' | 'qemu';

/** One drawn trial. */
export interface TrialSpec {
  readonly seed: number;
  readonly hosts: TrialHosts;
  readonly target: TrialTarget;
  readonly point: TrialPoint;
  readonly signal: TrialSignal;
  /** `host-patch` pauses VMs while the host is patched; `vmm-update` moves them in place. */
  readonly update: 'host-patch' | 'vmm-update';
  /** The wave whose point is hit. */
  readonly wave: number;
  /** Picks the host among the wave's hosts (index modulo their number). */
  readonly hostPick: number;
  /** From the point to the signal. */
  readonly delayMs: number;
  /** From SIGKILL to the restart, or from SIGSTOP to SIGCONT. */
  readonly downMs: number;
}

/** Which points make sense for which target, and on which hosts. */
const COMBINATIONS: Readonly<Record<TrialTarget, readonly TrialPoint[]>> = {
  controller: ['mid-publish', 'step-saved', 'mid-commit', 'mid-pause', 'mid-swap'],
  agent: ['step-saved', 'mid-commit', 'mid-pause', 'mid-swap'],
  // The update command runs while the VMs are paused.
  'host-update': ['mid-pause'],
  // A watchdog matters while its VM is paused or moving.
  watchdog: ['mid-pause', 'mid-swap'],
};

/**
 * The targets of each kind of hosts, with their weights. A simulated host has no watchdog, and its
 * update runs inside its agent (so `host-update` there is the agent killed mid-update: weighed low,
 * as `agent` at `mid-pause` covers it too).
 */
const TARGET_WEIGHTS: Readonly<Record<TrialHosts, readonly (readonly [TrialTarget, number])[]>> = {
  sim: [
    ['controller', 0.45],
    ['agent', 0.4],
    ['host-update', 0.15],
  ],
  qemu: [
    ['controller', 0.2],
    ['agent', 0.3],
    ['host-update', 0.25],
    ['watchdog', 0.25],
  ],
};

/** The targets a kind of hosts offers. */
export function targetsOf(hosts: TrialHosts): readonly TrialTarget[] {
  return TARGET_WEIGHTS[hosts].map(([t]) => t);
}

/** Spreads consecutive seeds apart (the PRNG's first draws of seeds n and n + 1 are close). */
function mix(seed: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Timings of the trials (real milliseconds; notices are divided by {@link TRIAL_TIME_SCALE}). */
export const TRIAL_TIMING = {
  /**
   * The host patch's apply time: long enough to land a kill inside it. QEMU's update command
   * sleeps whole seconds, and its guests are slower to pause.
   */
  applyMs: { sim: 1500, qemu: 3000 },
  /** The VMs' pause budget: the patch plus a freeze of the agent fits in it (see draw). */
  pauseBudgetMs: 8000,
  /** Between waves, before scaling (300 s / 300 = 1 s). */
  settle: '300s',
  /** Longest a frozen agent stays frozen on simulated hosts (its VMs are frozen with it). */
  maxSimAgentFreezeMs: 2500,
} as const;

/**
 * Notices are divided by this: a Freeze's 15 minutes become 3 s, which leaves a tenant reading
 * every 250 ms many reads of every event even across a controller restart.
 */
export const TRIAL_TIME_SCALE = 300;

/**
 * The simulated trials' fleet: 3 hosts, two availability sets of 2 update domains and two
 * standalone VMs; two waves (the standalone host beside the first update domain).
 */
export const TRIAL_FLEET: FleetSpec = {
  hosts: [{ name: 't0' }, { name: 't1' }, { name: 't2' }],
  availabilitySets: [
    { name: 'web', updateDomains: 2 },
    { name: 'db', updateDomains: 2 },
  ],
  vms: [
    { name: 'web_0', host: 't0', availabilitySet: 'web', updateDomain: 0 },
    { name: 'db_0', host: 't0', availabilitySet: 'db', updateDomain: 0 },
    { name: 'web_1', host: 't1', availabilitySet: 'web', updateDomain: 1 },
    { name: 'db_1', host: 't1', availabilitySet: 'db', updateDomain: 1 },
    { name: 'solo_a', host: 't2' },
    { name: 'solo_b', host: 't2' },
  ],
};

/** Draws the trial of a seed. */
export function drawTrial(seed: number, hosts: TrialHosts): TrialSpec {
  const random = new Random(mix(seed));
  let roll = random.next();
  const weighted = TARGET_WEIGHTS[hosts];
  const target = weighted.find(([, w]) => (roll -= w) < 0)?.[0] ?? weighted[0]?.[0] ?? 'controller';
  const point = random.pick(COMBINATIONS[target]);
  const signal: TrialSignal = random.next() < 0.6 ? 'SIGKILL' : 'SIGSTOP';
  const update =
    point === 'mid-swap'
      ? 'vmm-update'
      : point === 'mid-pause'
        ? 'host-patch'
        : random.pick(['host-patch', 'vmm-update'] as const);
  const wave = random.int(0, 1);
  const hostPick = random.int(0, 7);
  const delayMs = (() => {
    switch (point) {
      case 'mid-publish':
        return random.int(0, 2);
      case 'step-saved':
        return random.int(0, 5);
      case 'mid-commit':
        // The agent commits within a few ms of the update's end; the controller within a poll (250 ms).
        return target === 'controller' ? random.int(0, 350) : random.int(0, 30);
      case 'mid-pause':
        return random.int(0, TRIAL_TIMING.applyMs[hosts] - 300);
      case 'mid-swap':
        return random.int(0, 400);
    }
  })();
  const frozenWithItsVms = hosts === 'sim' && (target === 'agent' || target === 'host-update');
  const downMs =
    signal === 'SIGKILL'
      ? random.int(200, 1500)
      : frozenWithItsVms
        ? random.int(300, TRIAL_TIMING.maxSimAgentFreezeMs)
        : // A frozen QEMU agent, update command or watchdog may stay frozen past the budget: the
          // other side of the lease (watchdog or agent) must resume the VM in time.
          random.int(300, target === 'controller' ? 2500 : TRIAL_TIMING.pauseBudgetMs + 2000);
  return { seed, hosts, target, point, signal, update, wave, hostPick, delayMs, downMs };
}

/** One line that says what a trial does. */
export function describeTrial(spec: TrialSpec): string {
  const restarted = spec.hosts === 'sim' || spec.target === 'controller' || spec.target === 'agent';
  const action =
    spec.signal === 'SIGSTOP'
      ? `SIGSTOP for ${spec.downMs} ms`
      : restarted
        ? `kill -9, restart after ${spec.downMs} ms`
        : 'kill -9';
  return `seed ${spec.seed} (${spec.hosts}): ${spec.target} at ${spec.point} of wave ${spec.wave} (+${spec.delayMs} ms), ${action}, ${spec.update}`;
}

/** The command that replays one trial. */
export function reproduceCommand(spec: TrialSpec): string {
  return spec.hosts === 'qemu'
    ? `node --import tsx bench/crash-trials.ts --trials 0 --qemu 1 --seed ${spec.seed}`
    : `node --import tsx bench/crash-trials.ts --trials 1 --seed ${spec.seed}`;
}
