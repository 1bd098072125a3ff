/**
 * # Hypervisor driver terminology
 *
 * - **Driver**: what a host agent uses to act on the VMs of its own host ({@link HypervisorDriver}).
 *   One instance per host and connection; `qemu/` talks QMP and the guest agent, `sim/` simulates.
 *   Several may be connected to one host at once (the agent's, and the resume watchdog's, which must
 *   be able to act while the other is busy: a QMP socket of its own for QEMU).
 * - **VMM process**: the process that runs a VM (a QEMU process). Its **generation** goes up each time
 *   the VM moves to a new one (in-place VMM swap, restart), while the VM keeps its name.
 * - **Pause**: vCPUs stopped with the guest's RAM left where it is; the guest's wall clock stops too,
 *   so after a pause the guest is behind by the pause length until its clock is resynchronised.
 * - **In-place VMM swap** (in-place VM migration): the VM moves to a new VMM process of another
 *   version on the same host, its RAM mapped by both processes and never copied, so the downtime
 *   does not grow with the RAM size. On failure the old process keeps (or resumes) running the VM.
 * - **Host update**: a host patch the driver applies while the executor keeps the VMs paused.
 * - **Driver clock**: every timestamp a driver returns and every `deadline` it takes is in
 *   milliseconds since the epoch on the clock the driver was built with (the host's wall clock for
 *   QEMU, the injected clock for the simulator).
 *
 * A driver only reports and acts. It never resumes a VM on its own initiative: the resume lease that
 * bounds every pause is the agent's job, and the driver exposes `pausedSince` so that the agent can
 * measure. The one exception is asked for by the caller: a pause given `leaseUntil` is also bounded
 * at the hypervisor level (a watchdog beside the VMM for QEMU), so that it ends even when the agent
 * process dies (invariant 1). Whatever resumes a VM resynchronises its clock: the hypervisor-level
 * lease does it right after its resume and records the residual (invariant 4), which
 * {@link HypervisorDriver.leaseResumes} reports to the agent that adopts the host afterwards.
 */
import type { UpdateKind, VmCapabilities } from '../domain/rollout/index.js';

// ---------------------------------------------------------------------------------------------
// States and capabilities
// ---------------------------------------------------------------------------------------------

/**
 * States of a VM as a driver reports them:
 * - `running`: vCPUs run;
 * - `paused`: vCPUs stopped, RAM kept (see `pausedSince`);
 * - `stopped`: no guest runs (shut down, or restarting);
 * - `migrating`: an in-place VMM swap is under way; the VM runs, or is paused for the switchover
 *   (then `pausedSince` is set);
 * - `failed`: the VMM process died; only a restart brings the VM back.
 */
export const VM_STATES = ['running', 'paused', 'stopped', 'migrating', 'failed'] as const;
/** One of {@link VM_STATES}. */
export type VmState = (typeof VM_STATES)[number];

/**
 * What a driver can do, as flags that default to false (see {@link driverCapabilities}). A caller
 * checks a flag before it calls the matching method; a driver without the flag rejects the call with
 * `CONFLICT` (`details.reason: 'UNSUPPORTED'`). Per-VM facts (shared RAM, migratable devices, a guest
 * agent) are not here: they come from {@link HypervisorDriver.vmCapabilities}.
 */
export const DRIVER_CAPABILITY_FLAGS = ['inPlaceMigration', 'hostUpdate', 'guestClock', 'reboot'] as const;
/** One of {@link DRIVER_CAPABILITY_FLAGS}. */
export type DriverCapabilityFlag = (typeof DRIVER_CAPABILITY_FLAGS)[number];

/**
 * The capability profile of a driver:
 * - `inPlaceMigration`: {@link HypervisorDriver.swapVmm} moves a VM to a new VMM process in place;
 * - `hostUpdate`: {@link HypervisorDriver.applyHostUpdate} applies host patches;
 * - `guestClock`: {@link HypervisorDriver.guestTime}, `setGuestTime` and `resyncClock` reach the guest
 *   agent (of VMs that have one);
 * - `reboot`: {@link HypervisorDriver.reboot} restarts a VM in a new VMM process.
 */
export type DriverCapabilities = Readonly<Record<DriverCapabilityFlag, boolean>>;

/**
 * A frozen capability profile: every flag not given is false, so a driver never claims what it did
 * not declare (the failure this prevents: an executor choosing a path that the driver cannot take).
 */
export function driverCapabilities(flags: Partial<Record<DriverCapabilityFlag, boolean>> = {}): DriverCapabilities {
  const profile = {} as Record<DriverCapabilityFlag, boolean>;
  for (const flag of DRIVER_CAPABILITY_FLAGS) profile[flag] = flags[flag] === true;
  return Object.freeze(profile);
}

// ---------------------------------------------------------------------------------------------
// Options and results
// ---------------------------------------------------------------------------------------------

/**
 * Options every operation takes. An operation that has not completed by `deadline` rejects with
 * `TIMEOUT` (`details.reason: 'DEADLINE_EXCEEDED'`); one whose `signal` aborts rejects with `TIMEOUT`
 * (`'ABORTED'`). A deadline already past rejects at once, before anything is done.
 */
export interface OperationOptions {
  /**
   * Absolute time on the driver clock. When absent the driver's own default timeout applies, so that
   * no call waits forever on a hung hypervisor.
   */
  readonly deadline?: number;
  /** Cancels the wait; what the operation already did is not undone (except a swap, see `swapVmm`). */
  readonly signal?: AbortSignal;
}

/** Options of an operation on one VM. */
export interface VmOperationOptions extends OperationOptions {
  /** The VM's name; an unknown name rejects with `NOT_FOUND`. */
  readonly vm: string;
}

/** Options of {@link HypervisorDriver.pause}. */
export interface PauseOptions extends VmOperationOptions {
  /**
   * The hypervisor-level resume lease (driver clock): when the VM is still paused at this time, it is
   * resumed without any further call, even if the caller (the agent) is gone. Set it to the end of
   * the VM's pause budget. Absent: no lease is asked for (QEMU's watchdog still resumes a VM paused
   * for the longest pause budget, `MAX_PAUSE_BUDGET_MS`; the simulator applies none). Ignored when
   * the VM was already paused (`alreadyPaused`): the first pause's lease stands.
   */
  readonly leaseUntil?: number;
}

/** One VM as the driver sees it. */
export interface VmRuntimeInfo {
  readonly name: string;
  readonly state: VmState;
  /** OS process id of the VMM process (synthetic in the simulator); `null` when no process runs. */
  readonly pid: number | null;
  /** Goes up by one each time the VM moves to a new VMM process (swap or restart); starts at 1. */
  readonly generation: number;
  /** Version of the VMM build running the VM. */
  readonly vmmVersion: string;
  /**
   * When the vCPUs stopped (driver clock), while they are stopped by a pause or a swap switchover;
   * `null` otherwise. The agent's resume lease measures from here.
   */
  readonly pausedSince: number | null;
}

/** Result of {@link HypervisorDriver.pause}. */
export interface PauseResult {
  /** When the vCPUs stopped, as the hypervisor reports it (driver clock). */
  readonly pausedAt: number;
  /** True when the VM was already paused: nothing was done and `pausedAt` is the earlier pause. */
  readonly alreadyPaused: boolean;
}

/** Result of {@link HypervisorDriver.resume}. */
export interface ResumeResult {
  /** When the vCPUs ran again (driver clock). */
  readonly resumedAt: number;
  /** How long the VM was paused; 0 when it was already running. */
  readonly pausedMs: number;
  /** True when the VM was already running: nothing was done. */
  readonly alreadyRunning: boolean;
}

/** Options of {@link HypervisorDriver.swapVmm}. */
export interface SwapVmmOptions extends VmOperationOptions {
  /** The VMM build to move the VM to. */
  readonly targetVersion: string;
  /**
   * Required: a swap pauses the VM for its switchover, so the caller bounds it (typically the pause
   * budget from the start). At the deadline the swap is cancelled and the old process resumes.
   */
  readonly deadline: number;
}

/** Result of {@link HypervisorDriver.swapVmm}. */
export interface SwapVmmResult {
  /** False when the VM already ran `targetVersion`: nothing was done. */
  readonly changed: boolean;
  readonly fromVersion: string;
  readonly toVersion: string;
  /** The VM's process generation after the swap. */
  readonly generation: number;
  /**
   * How long the vCPUs were stopped for the switchover: the guest-visible pause, what counts against
   * the pause budget and what the guest clock falls behind by. It does not grow with the RAM size.
   * 0 when nothing was done or the VM was already paused.
   */
  readonly downtimeMs: number;
  /** From the call to the VM running in the new process (preparing the new process included). */
  readonly totalMs: number;
  readonly startedAt: number;
  readonly completedAt: number;
}

/**
 * The slice of an update a driver needs (a `ResolvedUpdate` of the planner fits): what the host
 * applies and how long it is expected to take.
 */
export interface HostUpdateSpec {
  readonly id: string;
  readonly kind: UpdateKind;
  readonly expectedApplyMs: number;
}

/** Options of {@link HypervisorDriver.applyHostUpdate}. */
export interface ApplyHostUpdateOptions extends OperationOptions {
  readonly update: HostUpdateSpec;
  /** Required: VMs are usually paused meanwhile, so the caller bounds the apply by their budget. */
  readonly deadline: number;
}

/** Result of {@link HypervisorDriver.applyHostUpdate}. */
export interface ApplyHostUpdateResult {
  readonly updateId: string;
  readonly startedAt: number;
  readonly completedAt: number;
  /** How long the apply took. */
  readonly applyMs: number;
}

/** Options of {@link HypervisorDriver.reboot}. */
export interface RebootOptions extends VmOperationOptions {
  /** Restart the VM on this VMM build; default: the one it runs. */
  readonly targetVersion?: string;
}

/** Result of {@link HypervisorDriver.reboot}. */
export interface RebootResult {
  readonly generation: number;
  readonly vmmVersion: string;
  /** When the VM ran again (driver clock). */
  readonly startedAt: number;
  /** From the call to the VM running again. */
  readonly rebootMs: number;
}

/** Result of {@link HypervisorDriver.guestTime}: one reading of the guest's wall clock through its agent. */
export interface GuestTimeResult {
  /** The guest's wall clock, milliseconds since the epoch. */
  readonly guestMs: number;
  /** The driver clock at the middle of the round trip: the best estimate of when `guestMs` was read. */
  readonly hostMs: number;
  /** `guestMs - hostMs`: negative when the guest is behind; its error is at most half the round trip. */
  readonly offsetMs: number;
  /** How long the agent took to answer. */
  readonly roundTripMs: number;
}

/** Options of {@link HypervisorDriver.setGuestTime}. */
export interface SetGuestTimeOptions extends VmOperationOptions {
  /** The guest wall clock to set, milliseconds since the epoch, as it should read on arrival. */
  readonly timeMs: number;
}

/** Result of {@link HypervisorDriver.setGuestTime}. */
export interface SetGuestTimeResult {
  /** When the agent confirmed (driver clock). */
  readonly completedAt: number;
  readonly roundTripMs: number;
}

/** Options of {@link HypervisorDriver.resyncClock}. */
export interface ResyncClockOptions extends VmOperationOptions {
  /**
   * The guest clock is stepped only when its measured offset is larger than this. Default
   * {@link DEFAULT_RESYNC_TOLERANCE_MS}.
   */
  readonly toleranceMs?: number;
}

/**
 * An offset below this is left alone by a resync. 0 by default: an offset is stepped whenever it is
 * larger than half the round trip that measured it (the measurement's own error, below which a step
 * is as likely to add error as remove it), so that the residual is within one round trip, the best
 * a step through the guest agent can do. A larger tolerance spares the guest small steps.
 */
export const DEFAULT_RESYNC_TOLERANCE_MS = 0;

/** Result of {@link HypervisorDriver.resyncClock}: what invariant 4 records. */
export interface ResyncClockResult {
  /** The guest's offset before (negative: behind), as measured. */
  readonly offsetBeforeMs: number;
  /** Whether the guest clock was stepped. */
  readonly stepped: boolean;
  /** The offset measured after the step (or the offset before, when not stepped). */
  readonly residualMs: number;
  /** Round trip of the measurement of the residual: its error is at most half of it. */
  readonly roundTripMs: number;
  /** When the residual was measured (driver clock). */
  readonly measuredAt: number;
}

/**
 * A pause that the hypervisor-level resume lease ended (see {@link PauseOptions.leaseUntil}): the
 * caller was gone or late. The lease then resynchronised the guest clock (invariant 4): `clock` is
 * that resync, or null with `clockError` when it failed (no guest agent, no answer in time).
 */
export interface LeaseResume {
  readonly vm: string;
  /** When the pause began (driver clock). */
  readonly pausedAt: number;
  /** When the lease resumed the VM (driver clock). */
  readonly resumedAt: number;
  readonly clock: ResyncClockResult | null;
  readonly clockError: { readonly code: string; readonly message: string } | null;
}

/**
 * How many {@link LeaseResume}s a driver keeps per VM, newest last: an agent that restarts reads
 * those of the step it was running; more only matter to someone reading the host's history.
 */
export const LEASE_RESUMES_KEPT = 16;

// ---------------------------------------------------------------------------------------------
// The port
// ---------------------------------------------------------------------------------------------

/**
 * The one interface a host agent uses to act on its host's VMs, the same for QEMU and the
 * simulator. Every method takes one options object and returns a result object.
 *
 * Errors are `IntermissionError`s with the project's codes and a driver-level
 * `details.reason` (see `DRIVER_ERROR_REASONS`): `NOT_FOUND` for an unknown VM; `CONFLICT` for a
 * state that does not allow the call, a capability the driver or VM lacks, or an operation the
 * hypervisor refused (then `retryable`); `TIMEOUT` at the deadline or on abort; `UNREACHABLE` when
 * the VM's process died (`VM_FAILED`, not retryable), the guest agent does not answer, or the driver
 * is closed.
 *
 * Pause and resume are idempotent, so that a retry after a timeout never fails because the first
 * attempt did succeed.
 */
export interface HypervisorDriver {
  /** The host this driver acts on. */
  readonly host: string;
  /** What this driver can do; flags default to false. */
  readonly capabilities: DriverCapabilities;

  /** The VMs of the host, by name. */
  listVms(options?: OperationOptions): Promise<readonly VmRuntimeInfo[]>;

  /** Facts the planner needs about one VM: every flag is given, true only when known to hold. */
  vmCapabilities(options: VmOperationOptions): Promise<VmCapabilities>;

  /**
   * Stops the vCPUs, RAM kept. A paused VM stays paused until resumed, or until its `leaseUntil`.
   * Idempotent.
   */
  pause(options: PauseOptions): Promise<PauseResult>;

  /** Runs the vCPUs again. Idempotent on a running VM; `CONFLICT` on a stopped one. */
  resume(options: VmOperationOptions): Promise<ResumeResult>;

  /**
   * Moves a running (or paused) VM to a new VMM process of `targetVersion` on this host, its RAM
   * untouched; a paused VM stays paused. On any failure before the switchover completes (refusal,
   * deadline, abort) the old process keeps running the VM (`details.rolledBack: true`). A VM already
   * on `targetVersion` is left alone (`changed: false`). Needs `capabilities.inPlaceMigration` and,
   * for the VM, shared memory and migratable devices.
   */
  swapVmm(options: SwapVmmOptions): Promise<SwapVmmResult>;

  /**
   * Applies a host patch. The driver does not pause or resume anything: the executor pauses the VMs
   * before and resumes them after. Needs `capabilities.hostUpdate`.
   */
  applyHostUpdate(options: ApplyHostUpdateOptions): Promise<ApplyHostUpdateResult>;

  /**
   * Restarts the VM in a new VMM process (also a failed or stopped one): the guest boots again and
   * its clock starts from the host's. Needs `capabilities.reboot`.
   */
  reboot(options: RebootOptions): Promise<RebootResult>;

  /** Reads the guest wall clock through the guest agent. `CONFLICT` while the vCPUs are stopped. */
  guestTime(options: VmOperationOptions): Promise<GuestTimeResult>;

  /** Sets the guest wall clock through the guest agent. `CONFLICT` while the vCPUs are stopped. */
  setGuestTime(options: SetGuestTimeOptions): Promise<SetGuestTimeResult>;

  /**
   * Measures the guest's offset, steps its clock to the host's when the offset is beyond the
   * tolerance, and measures the residual (invariant 4).
   */
  resyncClock(options: ResyncClockOptions): Promise<ResyncClockResult>;

  /**
   * The pauses of this VM that its hypervisor-level lease ended, each with the clock resync that
   * followed, oldest first (at most {@link LEASE_RESUMES_KEPT}). A resync under way is waited for.
   * They outlive the driver that paused the VM: an agent that restarts reads here what its
   * predecessor's leases did.
   */
  leaseResumes(options: VmOperationOptions): Promise<readonly LeaseResume[]>;

  /**
   * Disconnects: calls under way and later calls reject with `UNREACHABLE` (`DRIVER_CLOSED`). The
   * VMs keep running (or stay paused) as they are. Idempotent.
   */
  close(): Promise<void>;
}
