/**
 * What the modules of the QEMU driver share: the driver's state of each VM ({@link VmHandle}), one
 * call under way ({@link Call}), and the {@link QemuContext} every module function takes in place
 * of the driver object. The driver class (`qemu-driver.ts`) owns these and delegates to the modules:
 * `calls.ts` and `errors.ts` (running a call, its errors), `session.ts` (monitors), `vm-process.ts`
 * (processes and watchdogs), `lifecycle.ts` (list, pause, resume, reboot, host update), `clock.ts`
 * (guest agent and clock), `swap.ts`, `switchover.ts`, `swap-settle.ts` and `rollback.ts` (moving a
 * VM to a new process), and `adoption.ts` (a new driver taking over a run directory).
 */
import type { GuestAgentClient, QmpClient, QmpRunState } from '../../../qmp/index.js';
import type { DriverCapabilities, HypervisorDriver, VmState } from '../../driver.js';
import type { ResolvedQemuConfig } from '../qemu-config.js';
import type { BuildProbe } from './builds.js';
import type { EventLog } from './event-log.js';
import {
  processPaths,
  readLease,
  removeFile,
  writeJsonAtomic,
  type ProcessPaths,
  type ProcessRecord,
  type VmPaths,
  type VmRecordFile,
} from './layout.js';
import { isAlive } from './process.js';

/** One QMP connection to one process of a VM, with its recent events. */
export interface Session {
  readonly qmp: QmpClient;
  readonly log: EventLog;
  readonly generation: number;
}

/** What the driver holds for one VM. */
export interface VmHandle {
  readonly name: string;
  readonly paths: VmPaths;
  record: VmRecordFile;
  /** The driver's connection to the current process; opened on first use. */
  session: Session | undefined;
  agent: GuestAgentClient | undefined;
  /** When the vCPUs of the current process stopped, while they are stopped. */
  pausedSince: number | null;
  /** An operation that owns the VM for its duration. */
  operation: 'launch' | 'swap' | 'reboot' | 'destroy' | null;
  /** Whether the guest agent answered the last time it was asked. */
  agentSeen: boolean;
  /**
   * Until when (host wall clock, ms) the guest agent is left alone after a swap's resume: see
   * {@link SWAP_AGENT_SETTLE_MS}. Unset when no swap happened in this driver.
   */
  agentQuietUntil?: number;
}

/**
 * How long after a swap's resume the driver waits before it talks to the guest agent (the agent's
 * clock resync comes right after the swap). A guest-agent call (the resync's guest-set-time) in
 * the first moments of the guest in its new process froze the guest's tasks for 0.9-5.2 s
 * (tenant-vm-rollout.test.ts under TCG: the serial ticker stopped while the vCPU thread kept using
 * 20-70% of a core, the kernel's TCP went on with its timers but took the peer's ACKs only seconds
 * later, so the tenant's stream stalled 1.8-4.4 s in retransmission backoff). The same resync 0.5 s
 * after the resume froze nothing on a lightly loaded machine, but still did (2-10 s) with the
 * machine loaded four times over; 1.5 s froze nothing there either. The guest's clock stays behind
 * by the swap's pause (ms) for that long.
 */
export const SWAP_AGENT_SETTLE_MS = 1500;

/** One call under way. */
export interface Call {
  readonly operation: string;
  readonly vm: string | undefined;
  readonly startedAt: number;
  readonly deadline: number;
  /** Aborts at the deadline, on the caller's abort and on `close()`, with the driver error as reason. */
  readonly signal: AbortSignal;
  handle?: VmHandle;
}

/** A process just started for a VM. */
export interface StartedProcess {
  readonly record: ProcessRecord;
  readonly paths: ProcessPaths;
  readonly session: Session;
}

/** The driver as its modules see it: its settings, its VMs and builds, whether it is closed. */
export interface QemuContext {
  readonly host: string;
  readonly config: ResolvedQemuConfig;
  readonly capabilities: DriverCapabilities;
  /** The VMs of the driver, by name (the driver's own map). */
  readonly handles: Map<string, VmHandle>;
  /** Aborts on `close()`, with the driver error as reason. */
  readonly closer: AbortSignal;
  /** Whether `close()` was called. */
  readonly closed: () => boolean;
  /** The host update under way (one at a time). */
  readonly hostUpdate: { applying: string | null };
  /** The driver, for what is built on its public calls (the guest clock resync). */
  readonly driver: Pick<HypervisorDriver, 'guestTime' | 'setGuestTime'>;
  /** What each VMM build of the host is and can load, probed when the driver opened. */
  readonly builds: () => ReadonlyMap<string, BuildProbe>;
}

/** Whether the VM's current QEMU process runs. */
export function alive(handle: VmHandle): boolean {
  const current = handle.record.current;
  return isAlive(current.pid, processPaths(handle.paths.dir, current.generation).qmp);
}

/** Records the VM's state, on disk and in memory. */
export function writeRecord(handle: VmHandle, record: VmRecordFile): void {
  handle.record = record;
  writeJsonAtomic(handle.paths.record, record);
}

/** The VM runs: no pause, no lease (synchronous, so that a later pause's lease is never removed). */
export function markRunning(handle: VmHandle): void {
  handle.pausedSince = null;
  removeFile(handle.paths.lease);
}

/** When the current pause began: seen by this driver, else recorded in the lease file, else now. */
export function pausedSinceOf(handle: VmHandle): number {
  handle.pausedSince ??= readLease(handle.paths.lease)?.pausedAt ?? Date.now();
  return handle.pausedSince;
}

/** The QEMU log of the VM's current process. */
export function qemuLog(handle: VmHandle): string {
  return processPaths(handle.paths.dir, handle.record.current.generation).qemuLog;
}

/** The driver's state of a VM from QEMU's run state. */
export function vmStateOf(status: QmpRunState): VmState {
  switch (status) {
    case 'running':
      return 'running';
    case 'paused':
    case 'suspended':
    case 'debug':
      return 'paused';
    case 'inmigrate':
    case 'finish-migrate':
    case 'postmigrate':
    case 'save-vm':
    case 'restore-vm':
      return 'migrating';
    case 'shutdown':
    case 'prelaunch':
      return 'stopped';
    default:
      return 'failed';
  }
}
