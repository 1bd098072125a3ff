/**
 * Crash trials on real QEMU guests (TCG): one cluster of two hosts and three guests, as in
 * test/qemu/qemu-rollout.test.ts, booted once (in parallel) and reused by every trial. Only here
 * can a VM left paused by a dead or frozen agent be seen: the guests outlive their agent, and each
 * QEMU process has a resume watchdog of its own.
 *
 * What this backend adds to a trial:
 * - the processes to signal besides agent and controller: a host's update command (a shell that
 *   sleeps the update's expected time, run by the agent while the VMs are paused) with its
 *   children, and the resume watchdogs of a host's VMs;
 * - the pauses as seen from outside: gaps between the guest's tick beats (every 10 ms on the
 *   serial console, stamped by the host as they arrive) and the watchdogs' own `resume` records;
 * - each guest's clock against the host's at the end, read through its guest agent
 *   (`guest-get-time`), against {@link QEMU_MAX_CLOCK_OFFSET_MS}.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { serialLogOf } from '../../src/hypervisor/qemu/index.js';
import { GuestAgentClient } from '../../src/qmp/index.js';
import { SerialWatcher, VMM_A, VMM_B, beats, buildGuest, qemuPreflight } from '../qemu/qemu-fixture.js';
import { ensureBuilt, type Cluster, type FleetSpec } from './harness.js';
import { startQemuCluster } from '../qemu/rollout-checks.js';
import type { ObservedPause } from './trial-checks.js';
import { TRIAL_TIME_SCALE } from './trial-plan.js';
import type { BackendObservation, OutsideView, TrialBackend } from './trial-backend.js';

/** Two hosts, three guests, two availability sets of two update domains: two waves. */
export const QEMU_TRIAL_FLEET: FleetSpec = {
  hosts: [{ name: 'qh0' }, { name: 'qh1' }],
  availabilitySets: [
    { name: 'web', updateDomains: 2 },
    { name: 'db', updateDomains: 2 },
  ],
  vms: [
    { name: 'web_0', host: 'qh0', availabilitySet: 'web', updateDomain: 0 },
    { name: 'db_0', host: 'qh0', availabilitySet: 'db', updateDomain: 0 },
    { name: 'web_1', host: 'qh1', availabilitySet: 'web', updateDomain: 1 },
  ],
};

/**
 * How far a guest's clock may be from the host's after a trial: the controller's own bound on a
 * resynchronised clock (its health gate's `maxClockResidualMs`, 250 ms). The agent resynchronises
 * to within its round trip (under 20 ms measured here under TCG); a pause left unresynchronised
 * leaves the guest behind by the whole pause.
 */
export const QEMU_MAX_CLOCK_OFFSET_MS = 250;

/** A gap between tick beats longer than this is a pause (beats come every 10 ms; TCG may stall a few hundred). */
const PAUSE_GAP_MS = 1000;

/** A QEMU backend holds a cluster: close it when done. */
export interface QemuTrialBackend extends TrialBackend {
  close(): Promise<void>;
}

/** Boots the cluster (guests in parallel); throws with the reason when QEMU cannot run here. */
export async function qemuBackend(): Promise<QemuTrialBackend> {
  const preflight = qemuPreflight();
  if (preflight.skip !== false) throw new Error(preflight.skip);
  preflight.assertReady();
  await ensureBuilt();
  const guest = buildGuest();
  // Short and unique: sockets live under it (108 bytes at most), and other runs share /tmp.
  const base = await mkdtemp('/tmp/iq-ct-');
  const {
    cluster,
    runDirs,
    patchLog: patchMarker,
    close,
  } = await startQemuCluster({
    name: 'qtrial',
    fleet: QEMU_TRIAL_FLEET,
    timeScale: TRIAL_TIME_SCALE,
    base,
    hosts: QEMU_TRIAL_FLEET.hosts.map((h) => h.name),
    guest,
  });
  const vmHost = new Map(QEMU_TRIAL_FLEET.vms.map((v) => [v.name, v.host]));
  const vmDir = (vm: string): string => join(runDirs.get(vmHost.get(vm) ?? '') ?? '', vm);
  const shared = cluster;
  // The clocks as the last trial left them (read at its end, when no step runs: the guest agent's
  // channel takes one client at a time, and a read during a step would fail the agent's resync).
  const clocks = {
    last: await readClocks(
      QEMU_TRIAL_FLEET.vms.map((v) => v.name),
      vmDir,
    ),
  };

  return {
    hosts: 'qemu',
    fleet: QEMU_TRIAL_FLEET,
    maxClockOffsetMs: QEMU_MAX_CLOCK_OFFSET_MS,
    acquire: async () => {
      // A trial that went wrong may have left a process down or frozen: bring everything back.
      for (const slot of shared.agents.values()) {
        slot.proc.signal('SIGCONT');
        if (!slot.proc.alive) await shared.restartAgent(slot.host);
      }
      shared.controller.proc.signal('SIGCONT');
      if (!shared.controller.proc.alive) await shared.startController();
      return shared;
    },
    release: () => Promise.resolve(),
    vmmVersions: async () => {
      const { vms } = await shared.agentGet<{ vms: { vmmVersion: string }[] }>('qh0', '/v1/vms');
      const from = vms[0]?.vmmVersion ?? VMM_A;
      return { from, to: from === VMM_A ? VMM_B : VMM_A };
    },
    pidsOf: (target, host) => {
      if (target === 'host-update') {
        const shells = findPids((cmd) => cmd.includes(patchMarker(host)));
        return [...shells, ...shells.flatMap((pid) => childrenOf(pid))];
      }
      const vms = QEMU_TRIAL_FLEET.vms.filter((v) => v.host === host).map((v) => v.name);
      return findPids(
        (cmd) =>
          cmd.includes('--qmp') && vms.some((vm) => cmd.includes(`${vmDir(vm)}/g`) && cmd.includes('watchdog.sock')),
      );
    },
    observe: (c, updateId) => Promise.resolve(observeGuests({ cluster: c, vmDir, clocks, patchMarker, updateId })),
    close: async () => {
      await close();
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** Watches every guest's console and, at the end, reads the watchdogs' logs and the guests' clocks. */
function observeGuests(options: {
  readonly cluster: Cluster;
  readonly vmDir: (vm: string) => string;
  readonly clocks: { last: Map<string, number> };
  readonly patchMarker: (host: string) => string;
  readonly updateId: string;
}): BackendObservation {
  const { cluster, vmDir, clocks, patchMarker, updateId } = options;
  const since = Date.now();
  const vms = cluster.options.fleet.vms.map((v) => v.name);
  const consoles = new Map(vms.map((vm) => [vm, new SerialWatcher(serialLogOf(join(vmDir(vm), '..'), vm))]));
  const before = clocks.last;
  let result: Promise<OutsideView> | undefined;
  return {
    stop: () =>
      (result ??= (async () => {
        for (const w of consoles.values()) w.stop();
        const pauses: ObservedPause[] = [];
        for (const [vm, w] of consoles) {
          const b = beats(w.lines);
          for (let i = 1; i < b.length; i++) {
            const gap = (b[i]?.atMs ?? 0) - (b[i - 1]?.atMs ?? 0);
            if (gap > PAUSE_GAP_MS) pauses.push({ vm, pausedMs: gap, source: 'gap between console beats' });
          }
          for (const entry of watchdogResumes(vmDir(vm), since)) {
            pauses.push({ vm, pausedMs: entry, source: 'its watchdog resumed it' });
          }
        }
        const after = await readClocks(vms, vmDir);
        clocks.last = after;
        // A guest already off at the start was counted by the trial that left it so.
        const clockOffsets = new Map(
          [...after].filter(([vm]) => Math.abs(before.get(vm) ?? 0) <= QEMU_MAX_CLOCK_OFFSET_MS),
        );
        // The update command appends the update's id to its host's trace once it ran to its end.
        const updatesCompleted = new Map(
          [...new Set(cluster.options.fleet.vms.map((v) => v.host))].map((host) => [
            host,
            traceLines(patchMarker(host)).filter((id) => id === updateId).length,
          ]),
        );
        return { pauses, clockOffsets, updatesCompleted };
      })()),
  };
}

/** The lines of an update command's trace file (none when it never ran to its end). */
function traceLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l !== '');
  } catch {
    return [];
  }
}

/** `pausedMs` of every `resume` a watchdog of the VM logged after `since`. */
function watchdogResumes(dir: string, since: number): number[] {
  const out: number[] = [];
  for (const name of safeReaddir(dir).filter((n) => /^g\d+$/.test(n))) {
    let text = '';
    try {
      text = readFileSync(join(dir, name, 'watchdog.log'), 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      try {
        const entry = JSON.parse(line) as { at?: number; event?: string; pausedMs?: number };
        if (entry.event === 'resume' && (entry.at ?? 0) >= since && typeof entry.pausedMs === 'number')
          out.push(entry.pausedMs);
      } catch {
        // not a JSON line
      }
    }
  }
  return out;
}

/** Each guest's clock minus the host's (ms), through the guest agent of its newest process. */
async function readClocks(vms: readonly string[], vmDir: (vm: string) => string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const vm of vms) {
    const generations = safeReaddir(vmDir(vm))
      .filter((n) => /^g\d+$/.test(n))
      .map((n) => Number(n.slice(1)))
      .sort((a, b) => b - a);
    const newest = generations[0];
    if (newest === undefined) continue;
    const client = new GuestAgentClient({ path: join(vmDir(vm), `g${newest}`, 'qga.sock'), timeoutMs: 5000 });
    try {
      out.set(vm, Math.round((await client.getTime()).offsetMs));
    } catch {
      // busy or gone: not measured
    } finally {
      await client.close();
    }
  }
  return out;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Pids of processes whose command line (arguments joined by spaces) `test` accepts. */
function findPids(test: (cmdline: string) => boolean): number[] {
  const out: number[] = [];
  for (const name of safeReaddir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ');
      if (test(cmd)) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}

/** Direct children of a process. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of safeReaddir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // Fields after the command name (which is in parentheses): state, ppid, …
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // gone
    }
  }
  return out;
}
