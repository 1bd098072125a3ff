import { IntermissionError } from '../../../domain/index.js';
import type { VmCapabilities } from '../../../domain/rollout/index.js';
import {
  driverCapabilities,
  type DriverCapabilities,
  type LeaseResume,
  type VmRuntimeInfo,
  type VmState,
} from '../../driver.js';
import {
  DEFAULT_OPERATION_TIMEOUT_MS,
  DEFAULT_SIM_TIMINGS,
  DEFAULT_SIM_VMM_VERSION,
  SIM_DRIVER_CAPABILITIES,
  checkDistribution,
  checkFault,
  type SimFault,
  type SimHostConfig,
  type SimOperation,
  type SimTimings,
  type SimVmSpec,
} from '../sim-config.js';
import type { SimTime } from '../sim-time.js';
import type { ActiveSimFault, SimHostEvent, SimVmSnapshot } from '../sim-types.js';
import { GuestClock } from './guest-clock.js';
import { HistoryLog } from './history-log.js';
import { Prng } from './prng.js';

/** Shared by every VM without blocking devices (nearly all of them): one array, not one per VM. */
const NO_DEVICES: readonly string[] = Object.freeze([]);

/** One simulated VM: mutable state owned by its {@link HostState}. */
export class VmRecord {
  readonly name: string;
  readonly ramMb: number;
  readonly sharedMemory: boolean;
  readonly blockingDevices: readonly string[];
  readonly guestAgent: boolean;
  /** See `SimVmSpec.unloadableBuilds`. */
  readonly unloadableBuilds: Readonly<Record<string, string>> | undefined;
  readonly driftPpm: number;
  /** This VM's own random stream: draws do not depend on other VMs' calls. */
  readonly rng: Prng;
  state: VmState;
  pid: number | null;
  generation = 1;
  vmmVersion: string;
  /** Set while the vCPUs are stopped by a pause or a switchover. */
  pausedSince: number | null = null;
  /** The hypervisor-level resume lease of the current pause (`pause({ leaseUntil })`), if armed. */
  leaseTimer: AbortController | null = null;
  /** Pauses the hypervisor-level lease ended, with the clock resync after each, oldest first. */
  readonly leaseResumes: LeaseResume[] = [];
  /** The lease's clock resync under way, if any. */
  leaseResync: Promise<void> | null = null;
  bootCount: number;
  clock: GuestClock;
  pauseCount = 0;
  totalPausedMs = 0;
  longestPauseMs = 0;

  constructor(options: { spec: SimVmSpec; host: HostState }) {
    const { spec, host } = options;
    const now = host.time.now();
    this.name = spec.name;
    this.ramMb = spec.ramMb ?? 1024;
    this.sharedMemory = spec.sharedMemory ?? true;
    this.blockingDevices =
      spec.blockingDevices === undefined || spec.blockingDevices.length === 0
        ? NO_DEVICES
        : Object.freeze([...spec.blockingDevices]);
    this.guestAgent = spec.guestAgent ?? true;
    this.unloadableBuilds =
      spec.unloadableBuilds === undefined ? undefined : Object.freeze({ ...spec.unloadableBuilds });
    this.rng = Prng.derive(host.seed, `${host.name}/${spec.name}`);
    this.driftPpm = spec.driftPpm ?? this.rng.sample(host.timings.driftPpm);
    this.state = spec.state ?? 'running';
    this.pid = this.state === 'stopped' ? null : host.newPid();
    this.vmmVersion = spec.vmmVersion ?? host.defaultVmmVersion;
    this.bootCount = this.state === 'stopped' ? 0 : 1;
    if (this.state === 'paused') this.pausedSince = now;
    this.clock = new GuestClock({
      hostNow: now,
      offsetMs: spec.clockOffsetMs ?? 0,
      driftPpm: this.driftPpm,
      running: this.state === 'running',
    });
  }

  /** Whether the vCPUs are stopped (paused, or in a swap's switchover). */
  get vcpusStopped(): boolean {
    return this.pausedSince !== null;
  }

  /** Stops the vCPUs at `now`. */
  stopVcpus(now: number): void {
    if (this.pausedSince !== null) return;
    this.pausedSince = now;
    this.clock.stop(now);
  }

  /** Runs the vCPUs again at `now`; returns how long they were stopped. */
  startVcpus(now: number): number {
    const since = this.pausedSince;
    if (since === null) return 0;
    const paused = now - since;
    this.pausedSince = null;
    this.clock.start(now);
    this.pauseCount++;
    this.totalPausedMs += paused;
    this.longestPauseMs = Math.max(this.longestPauseMs, paused);
    return paused;
  }

  /** Disarms the resume lease of the current pause (the VM was resumed, or its process went). */
  cancelLease(): void {
    this.leaseTimer?.abort();
    this.leaseTimer = null;
  }

  /** The process dies: nothing runs, the guest clock stands still. */
  kill(now: number): void {
    this.cancelLease();
    this.clock.stop(now);
    this.state = 'failed';
    this.pid = null;
    this.pausedSince = null;
  }

  capabilities(): VmCapabilities {
    return Object.freeze({
      sharedMemory: this.sharedMemory,
      migratableDevices: this.blockingDevices.length === 0,
      blockingDevices: this.blockingDevices,
      guestAgent: this.guestAgent,
      ...(this.unloadableBuilds === undefined
        ? {}
        : {
            vmmBuilds: Object.freeze(
              Object.fromEntries(
                Object.entries(this.unloadableBuilds).map(([version, reason]) => [
                  version,
                  { loadable: false, reason },
                ]),
              ),
            ),
          }),
    });
  }

  runtimeInfo(): VmRuntimeInfo {
    return Object.freeze({
      name: this.name,
      state: this.state,
      pid: this.pid,
      generation: this.generation,
      vmmVersion: this.vmmVersion,
      pausedSince: this.pausedSince,
    });
  }

  snapshot(now: number): SimVmSnapshot {
    const guestClockMs = this.clock.read(now);
    return Object.freeze({
      ...this.runtimeInfo(),
      ramMb: this.ramMb,
      capabilities: this.capabilities(),
      guestClockMs,
      clockOffsetMs: guestClockMs - now,
      driftPpm: this.driftPpm,
      bootCount: this.bootCount,
      pauseCount: this.pauseCount,
      totalPausedMs: this.totalPausedMs,
      longestPauseMs: this.longestPauseMs,
    });
  }
}

interface FaultEntry {
  readonly id: number;
  readonly fault: SimFault;
  remaining: number | null;
}

/**
 * Everything a simulated host holds: VMs, faults, history, random streams. Shared by the public
 * `SimHost` (inspection, fault injection) and every `SimDriver` connected to it (operations), so that
 * a driver closed and reconnected (an agent restart) finds the VMs as they were.
 */
export class HostState {
  readonly name: string;
  readonly time: SimTime;
  readonly seed: number;
  readonly timings: SimTimings;
  readonly capabilities: DriverCapabilities;
  readonly operationTimeoutMs: number;
  readonly defaultVmmVersion: string;
  /** The host's own random stream, for host operations. */
  readonly rng: Prng;
  readonly vms = new Map<string, VmRecord>();
  /** What happened on the host, oldest first (see {@link HistoryLog}). */
  readonly history = new HistoryLog();
  readonly appliedUpdates: string[] = [];
  /** The update being applied, if any. */
  applying: string | null = null;
  /** Host updates that have run their apply time wait for these (see `SimHost.holdUpdates`). */
  readonly updateHolds = new Set<Promise<void>>();
  readonly #faults: FaultEntry[] = [];
  #nextFaultId = 1;
  #nextPid: number;

  constructor(config: SimHostConfig) {
    if (config.name === '') throw new IntermissionError('INVALID_INPUT', 'a simulated host needs a name');
    this.name = config.name;
    this.time = config.time;
    this.seed = config.seed ?? 1;
    this.timings = Object.freeze({ ...DEFAULT_SIM_TIMINGS, ...config.timings });
    for (const what of Object.keys(this.timings) as (keyof SimTimings)[]) checkDistribution(what, this.timings[what]);
    this.capabilities = driverCapabilities({ ...SIM_DRIVER_CAPABILITIES, ...config.capabilities });
    this.operationTimeoutMs = config.operationTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS;
    if (!(this.operationTimeoutMs > 0)) {
      throw new IntermissionError('INVALID_INPUT', 'operationTimeoutMs must be a positive number of ms');
    }
    this.defaultVmmVersion = config.vmmVersion ?? DEFAULT_SIM_VMM_VERSION;
    this.rng = Prng.derive(this.seed, this.name);
    this.#nextPid = 1000 + Math.floor(this.rng.next() * 30_000);
    for (const spec of config.vms ?? []) this.addVm(spec);
    for (const fault of config.faults ?? []) this.injectFault(fault);
  }

  addVm(spec: SimVmSpec): VmRecord {
    if (spec.name === '') throw new IntermissionError('INVALID_INPUT', 'a simulated VM needs a name');
    if (this.vms.has(spec.name)) {
      throw new IntermissionError('CONFLICT', `host ${this.name} already has a VM named ${JSON.stringify(spec.name)}`);
    }
    const record = new VmRecord({ spec, host: this });
    this.vms.set(spec.name, record);
    return record;
  }

  newPid(): number {
    return this.#nextPid++;
  }

  record(event: Omit<SimHostEvent, 'at'>): void {
    this.history.push(this.time.now(), event);
  }

  injectFault(fault: SimFault): number {
    checkFault(fault);
    const id = this.#nextFaultId++;
    this.#faults.push({ id, fault: Object.freeze({ ...fault }), remaining: fault.times ?? null });
    return id;
  }

  removeFault(id: number): boolean {
    const index = this.#faults.findIndex((f) => f.id === id);
    if (index < 0) return false;
    this.#faults.splice(index, 1);
    return true;
  }

  clearFaults(vm?: string): void {
    for (let i = this.#faults.length - 1; i >= 0; i--) {
      if (vm === undefined || this.#faults[i]?.fault.vm === vm) this.#faults.splice(i, 1);
    }
  }

  activeFaults(): readonly ActiveSimFault[] {
    return this.#faults.map((f) => Object.freeze({ id: f.id, fault: f.fault, remaining: f.remaining }));
  }

  /**
   * The first fault that hits this call, spent by one. For a host operation (`vm` undefined) every
   * fault of the operation hits, whether it names a VM (a crash) or not.
   */
  takeFault(operation: SimOperation, vm: string | undefined): SimFault | undefined {
    const index = this.#faults.findIndex(
      (f) => f.fault.operation === operation && (vm === undefined || f.fault.vm === undefined || f.fault.vm === vm),
    );
    const entry = this.#faults[index];
    if (entry === undefined) return undefined;
    if (entry.remaining !== null && --entry.remaining <= 0) this.#faults.splice(index, 1);
    return entry.fault;
  }
}
