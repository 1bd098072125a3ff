import { IntermissionError, MAX_PAUSE_BUDGET_MS } from '../../domain/index.js';
import { driverCapabilities, type DriverCapabilities, type DriverCapabilityFlag } from '../driver.js';
import type { SimTime } from './sim-time.js';

/**
 * A bounded duration distribution (triangular): draws fall in [min, max] with most of them near
 * `mode`. A fixed duration has min = mode = max ({@link fixed}).
 */
export interface Distribution {
  readonly min: number;
  readonly mode: number;
  readonly max: number;
}

/** A distribution that always gives `value`. */
export function fixed(value: number): Distribution {
  return Object.freeze({ min: value, mode: value, max: value });
}

/** How long simulated operations take, in milliseconds unless said otherwise. */
export interface SimTimings {
  /** QMP `stop`: the vCPUs stop within a few ms. */
  readonly pauseMs: Distribution;
  /** QMP `cont`. */
  readonly resumeMs: Distribution;
  /**
   * In-place swap, before the switchover: start the new VMM process and connect the two, with the
   * VM still running.
   */
  readonly swapPrepareMs: Distribution;
  /**
   * In-place swap, the switchover: vCPUs stopped while device state moves. RAM is shared, not
   * copied, so it does not depend on the RAM size (measured on QEMU: 10 ms for 256 MB).
   */
  readonly swapDowntimeMs: Distribution;
  /** A VM restart: shutdown, new process, boot to a running guest. */
  readonly rebootMs: Distribution;
  /** Factor applied to an update's `expectedApplyMs`: its jitter. */
  readonly applyFactor: Distribution;
  /** A guest-agent round trip (QEMU under TCG: 7-100 ms; under KVM a few ms). */
  readonly agentRoundTripMs: Distribution;
  /** Where in its round trip the guest handles a request, as a fraction: the asymmetry of the path. */
  readonly agentArrivalFraction: Distribution;
  /** Guest clock drift, in parts per million, drawn per VM unless its spec gives one. */
  readonly driftPpm: Distribution;
}

/** Realistic defaults for {@link SimTimings}, from the measurements in the QEMU notes. */
export const DEFAULT_SIM_TIMINGS: SimTimings = Object.freeze({
  pauseMs: Object.freeze({ min: 1, mode: 2, max: 6 }),
  resumeMs: Object.freeze({ min: 1, mode: 2, max: 6 }),
  swapPrepareMs: Object.freeze({ min: 60, mode: 120, max: 400 }),
  swapDowntimeMs: Object.freeze({ min: 10, mode: 15, max: 30 }),
  rebootMs: Object.freeze({ min: 2_000, mode: 3_500, max: 9_000 }),
  applyFactor: Object.freeze({ min: 0.85, mode: 0.97, max: 1.15 }),
  agentRoundTripMs: Object.freeze({ min: 1, mode: 3, max: 15 }),
  agentArrivalFraction: Object.freeze({ min: 0.3, mode: 0.5, max: 0.7 }),
  driftPpm: Object.freeze({ min: -20, mode: 0, max: 20 }),
});

/**
 * Without a deadline, a simulated operation gives up after this long: no call waits forever on a
 * hung hypervisor, and nothing worth waiting for takes longer than the longest pause budget.
 */
export const DEFAULT_OPERATION_TIMEOUT_MS = MAX_PAUSE_BUDGET_MS;

/** The driver operations a fault can target. */
export const SIM_OPERATIONS = [
  'pause',
  'resume',
  'swapVmm',
  'applyHostUpdate',
  'reboot',
  'guestTime',
  'setGuestTime',
] as const;
/** One of {@link SIM_OPERATIONS}. */
export type SimOperation = (typeof SIM_OPERATIONS)[number];

/**
 * The kinds of fault:
 * - `hang`: the operation never completes; it ends at its deadline (TIMEOUT) or on abort. A hung
 *   swap hangs in its switchover, the VM paused, and rolls back at the deadline.
 * - `crash`: the VM's process dies halfway through: the VM becomes `failed` and the call rejects with
 *   `VM_FAILED`. On `applyHostUpdate` the apply completes, but the named VM (or every VM) died.
 * - `fail`: the hypervisor refuses the operation after its usual duration (`OPERATION_FAILED`,
 *   retryable); the VM is as before (a swap rolls back).
 * - `slow`: the operation takes `factor` times as long (a slow host patch).
 */
export const SIM_FAULT_KINDS = ['hang', 'crash', 'fail', 'slow'] as const;
/** One of {@link SIM_FAULT_KINDS}. */
export type SimFaultKind = (typeof SIM_FAULT_KINDS)[number];

/** Fields every fault has. */
interface SimFaultBase {
  readonly operation: SimOperation;
  /**
   * The VM whose operations it hits; absent: every VM. For `applyHostUpdate` (a host operation) only a
   * `crash` may name a VM: the one that dies.
   */
  readonly vm?: string;
  /** How many calls it hits before it is spent; absent: every call. */
  readonly times?: number;
}

/** A fault declared as data; see {@link SIM_FAULT_KINDS}. */
export type SimFault =
  | (SimFaultBase & { readonly kind: 'hang' | 'crash' | 'fail' })
  | (SimFaultBase & { readonly kind: 'slow'; readonly factor: number });

/** One simulated VM. */
export interface SimVmSpec {
  readonly name: string;
  /** RAM size; it changes nothing in the timings of a swap (RAM is shared, not copied). Default 1024. */
  readonly ramMb?: number;
  /** Initial state. Default `running`. */
  readonly state?: 'running' | 'paused' | 'stopped';
  /** RAM in shareable memory. Default true. */
  readonly sharedMemory?: boolean;
  /** Devices that cannot be migrated (e.g. `vfio-pci 0000:3b:00.0`). Default none. */
  readonly blockingDevices?: readonly string[];
  /** A guest agent answers. Default true. */
  readonly guestAgent?: boolean;
  /** Guest clock drift in ppm; default: drawn from {@link SimTimings.driftPpm}. */
  readonly driftPpm?: number;
  /** Guest clock offset at start (negative: behind). Default 0. */
  readonly clockOffsetMs?: number;
  /** VMM build running it. Default: the host's `vmmVersion`. */
  readonly vmmVersion?: string;
  /**
   * VMM builds that cannot load this VM, with the reason (e.g. `{ '6.2': 'build 6.2 has no machine
   * type pc-i440fx-7.2' }`), reported in `vmCapabilities().vmmBuilds` as the QEMU driver does.
   * Default none: every build loads it.
   */
  readonly unloadableBuilds?: Readonly<Record<string, string>>;
}

/** Configuration of a simulated host ({@link SimHost}). */
export interface SimHostConfig {
  /** Host name. */
  readonly name: string;
  /** Clock and sleeper: {@link VirtualTime} in tests, {@link realTime} in the embedded default. */
  readonly time: SimTime;
  /** Seeds every random draw: the same seed and calls give the same results. Default 1. */
  readonly seed?: number;
  readonly vms?: readonly SimVmSpec[];
  /** Faults active from the start. */
  readonly faults?: readonly SimFault[];
  /** Overrides of {@link DEFAULT_SIM_TIMINGS}. */
  readonly timings?: Partial<SimTimings>;
  /** VMM build of VMs that do not name one. Default `sim-1.0`. */
  readonly vmmVersion?: string;
  /** Turns driver capabilities off (the simulator has them all) to exercise capability gating. */
  readonly capabilities?: Partial<Record<DriverCapabilityFlag, boolean>>;
  /** Default {@link DEFAULT_OPERATION_TIMEOUT_MS}. */
  readonly operationTimeoutMs?: number;
}

/** The simulator's capability profile: it can do everything a driver can. */
export const SIM_DRIVER_CAPABILITIES: DriverCapabilities = driverCapabilities({
  inPlaceMigration: true,
  hostUpdate: true,
  guestClock: true,
  reboot: true,
});

/** The default VMM build of simulated VMs. */
export const DEFAULT_SIM_VMM_VERSION = 'sim-1.0';

/** Checks a distribution; throws INVALID_INPUT naming `what`. */
export function checkDistribution(what: string, dist: Distribution): void {
  const ok = [dist.min, dist.mode, dist.max].every(Number.isFinite) && dist.min <= dist.mode && dist.mode <= dist.max;
  if (!ok) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `timing ${what} must have finite min <= mode <= max, got ${JSON.stringify(dist)}`,
    );
  }
}

/** Checks a fault; throws INVALID_INPUT with what is wrong. */
export function checkFault(fault: SimFault): void {
  const problem = faultProblem(fault);
  if (problem !== undefined) {
    throw new IntermissionError('INVALID_INPUT', `invalid fault ${JSON.stringify(fault)}: ${problem}`);
  }
}

function faultProblem(fault: SimFault): string | undefined {
  if (!(SIM_FAULT_KINDS as readonly string[]).includes(fault.kind)) {
    return `kind must be one of ${SIM_FAULT_KINDS.join(', ')}`;
  }
  if (!(SIM_OPERATIONS as readonly string[]).includes(fault.operation)) {
    return `operation must be one of ${SIM_OPERATIONS.join(', ')}`;
  }
  if (fault.times !== undefined && !(Number.isInteger(fault.times) && fault.times > 0)) {
    return 'times must be a positive integer';
  }
  if (fault.kind === 'slow' && !(Number.isFinite(fault.factor) && fault.factor > 0)) {
    return 'factor must be a positive number';
  }
  if (fault.operation === 'applyHostUpdate' && fault.vm !== undefined && fault.kind !== 'crash') {
    return 'applyHostUpdate is a host operation: only a crash fault may name a VM';
  }
  return undefined;
}
