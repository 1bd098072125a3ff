import type { VmCapabilities } from '../../domain/rollout/index.js';
import type { VmRuntimeInfo } from '../driver.js';
import type { SimFault } from './sim-config.js';

/** What a simulated host records, for tests and the dashboard: the ground truth, not a driver's view. */
export const SIM_HOST_EVENT_KINDS = [
  'paused',
  'resumed',
  'swapped',
  'swap-rolled-back',
  'crashed',
  'stopped',
  'started',
  'clock-set',
  'update-applied',
] as const;
/** One of {@link SIM_HOST_EVENT_KINDS}. */
export type SimHostEventKind = (typeof SIM_HOST_EVENT_KINDS)[number];

/** One entry of a simulated host's history. */
export interface SimHostEvent {
  /** Host time. */
  readonly at: number;
  readonly kind: SimHostEventKind;
  /** The VM, for VM events. */
  readonly vm?: string;
  /** For `resumed`, `swapped` and `swap-rolled-back`: how long the vCPUs had been stopped. */
  readonly pausedMs?: number;
  /** For `swapped`: the versions; for `update-applied`: the update id. */
  readonly fromVersion?: string;
  readonly toVersion?: string;
  readonly updateId?: string;
  /** For `resumed`: true when the hypervisor-level resume lease (`pause({ leaseUntil })`) did it. */
  readonly byLease?: boolean;
}

/** The ground truth of one simulated VM, beyond what a driver reports. */
export interface SimVmSnapshot extends VmRuntimeInfo {
  readonly ramMb: number;
  readonly capabilities: VmCapabilities;
  /** The guest wall clock now. */
  readonly guestClockMs: number;
  /** Guest wall clock minus host time now (negative: behind). */
  readonly clockOffsetMs: number;
  readonly driftPpm: number;
  /** Guest boots: 1 at creation (of a VM not created stopped), +1 per restart. */
  readonly bootCount: number;
  /** Completed pauses (a swap's switchover counts as one). */
  readonly pauseCount: number;
  readonly totalPausedMs: number;
  /** The longest completed pause: what invariant 1 bounds. */
  readonly longestPauseMs: number;
}

/** A fault injected into a host, with what is left of it. */
export interface ActiveSimFault {
  /** Identifies it for `removeFault`. */
  readonly id: number;
  readonly fault: SimFault;
  /** Calls it still hits; `null`: every call. */
  readonly remaining: number | null;
}
