import { setMaxListeners } from 'node:events';
import { IntermissionError, coerceError } from '../../domain/index.js';
import type { VmCapabilities } from '../../domain/rollout/index.js';
import { resyncGuestClock } from '../clock-sync.js';
import {
  LEASE_RESUMES_KEPT,
  type ApplyHostUpdateOptions,
  type ApplyHostUpdateResult,
  type DriverCapabilities,
  type DriverCapabilityFlag,
  type GuestTimeResult,
  type HypervisorDriver,
  type LeaseResume,
  type OperationOptions,
  type PauseOptions,
  type PauseResult,
  type RebootOptions,
  type RebootResult,
  type ResumeResult,
  type ResyncClockOptions,
  type ResyncClockResult,
  type SetGuestTimeOptions,
  type SetGuestTimeResult,
  type SwapVmmOptions,
  type SwapVmmResult,
  type VmOperationOptions,
  type VmRuntimeInfo,
} from '../driver.js';
import { operationError, withDetails, type DriverErrorReason } from '../errors.js';
import { GuestClock } from './internal/guest-clock.js';
import type { HostState, VmRecord } from './internal/host-state.js';
import type { SimFault } from './sim-config.js';

/** One call under way: what every wait and error of it needs. */
interface Call {
  readonly operation: string;
  readonly vm: string | undefined;
  readonly startedAt: number;
  readonly deadline: number;
  readonly signal: AbortSignal;
}

/**
 * The simulated {@link HypervisorDriver}: a connection to a simulated host (made by
 * `SimHost.connect()`). Operations take time by awaiting the host's `SimTime`, with durations drawn
 * from its seeded timings, and meet the faults injected into the host. Closing it leaves the VMs as
 * they are, so a new connection (an agent restart) finds them unchanged.
 *
 * Checks, in order: closed (`DRIVER_CLOSED`), capability flag (`UNSUPPORTED`), deadline already past
 * (`DEADLINE_EXCEEDED`), unknown VM (`VM_NOT_FOUND`), the VM's state. A state change is applied at the
 * end of the operation's duration, after the state is checked again.
 */
export class SimDriver implements HypervisorDriver {
  readonly host: string;
  readonly capabilities: DriverCapabilities;
  readonly #state: HostState;
  readonly #closer = new AbortController();
  #closed = false;

  /** Use `SimHost.connect()`. */
  constructor(state: HostState) {
    this.#state = state;
    // Every wait of every call listens to this signal: many at once is the normal case.
    setMaxListeners(0, this.#closer.signal);
    this.host = state.name;
    this.capabilities = state.capabilities;
  }

  listVms(options: OperationOptions = {}): Promise<readonly VmRuntimeInfo[]> {
    return this.#sync('listVms', options, undefined, () =>
      [...this.#state.vms.values()].map((vm) => vm.runtimeInfo()).sort((a, b) => (a.name < b.name ? -1 : 1)),
    );
  }

  vmCapabilities(options: VmOperationOptions): Promise<VmCapabilities> {
    return this.#sync('vmCapabilities', options, undefined, (call) => this.#vm(call).capabilities());
  }

  async pause(options: PauseOptions): Promise<PauseResult> {
    const call = this.#begin('pause', options);
    const vm = this.#vm(call);
    const early = this.#pauseOutcome(call, vm);
    if (early !== undefined) return early;
    const fault = this.#state.takeFault('pause', vm.name);
    await this.#perform(call, vm, fault, vm.rng.sample(this.#state.timings.pauseMs));
    const late = this.#pauseOutcome(call, vm);
    if (late !== undefined) return late;
    const now = this.#now();
    vm.stopVcpus(now);
    vm.state = 'paused';
    this.#state.record({ kind: 'paused', vm: vm.name });
    if (options.leaseUntil !== undefined) this.#armLease(vm, now, options.leaseUntil);
    return Object.freeze({ pausedAt: now, alreadyPaused: false });
  }

  async resume(options: VmOperationOptions): Promise<ResumeResult> {
    const call = this.#begin('resume', options);
    const vm = this.#vm(call);
    const early = this.#resumeOutcome(call, vm);
    if (early !== undefined) return early;
    const fault = this.#state.takeFault('resume', vm.name);
    await this.#perform(call, vm, fault, vm.rng.sample(this.#state.timings.resumeMs));
    const late = this.#resumeOutcome(call, vm);
    if (late !== undefined) return late;
    const now = this.#now();
    const pausedMs = vm.startVcpus(now);
    vm.state = 'running';
    vm.cancelLease();
    this.#state.record({ kind: 'resumed', vm: vm.name, pausedMs });
    return Object.freeze({ resumedAt: now, pausedMs, alreadyRunning: false });
  }

  async swapVmm(options: SwapVmmOptions): Promise<SwapVmmResult> {
    const call = this.#begin('swapVmm', options, 'inPlaceMigration');
    const vm = this.#vm(call);
    this.#alive(call, vm);
    if (!vm.sharedMemory || vm.blockingDevices.length > 0) {
      throw this.#error(call, 'UNSUPPORTED', `VM ${vm.name} cannot move in place: ${swapBlocker(vm)}`, {
        sharedMemory: vm.sharedMemory,
        blockingDevices: vm.blockingDevices,
      });
    }
    const fromVersion = vm.vmmVersion;
    const toVersion = options.targetVersion;
    if (fromVersion === toVersion) {
      return Object.freeze({
        changed: false,
        fromVersion,
        toVersion,
        generation: vm.generation,
        downtimeMs: 0,
        totalMs: 0,
        startedAt: call.startedAt,
        completedAt: call.startedAt,
      });
    }
    this.#movable(call, vm);
    const wasPaused = vm.state === 'paused';
    const fault = this.#state.takeFault('swapVmm', vm.name);
    // Both draws up front, so that a fault changes no later draw of this VM.
    const prepareMs = vm.rng.sample(this.#state.timings.swapPrepareMs);
    const downtimeMs = vm.rng.sample(this.#state.timings.swapDowntimeMs);
    vm.state = 'migrating';
    try {
      if (fault?.kind === 'crash') await this.#crashHalfway(call, vm, prepareMs, fault);
      await this.#wait(call, fault?.kind === 'slow' ? prepareMs * fault.factor : prepareMs, fault);
      this.#alive(call, vm);
      // Switchover: the vCPUs stop while device state moves to the new process.
      if (!wasPaused) vm.stopVcpus(this.#now());
      await this.#wait(call, scaledDuration(downtimeMs, fault), fault);
      this.#alive(call, vm);
      if (fault?.kind === 'fail') {
        throw this.#error(call, 'OPERATION_FAILED', `the new VMM process refused VM ${vm.name}`, { fault: 'fail' });
      }
      const completedAt = this.#now();
      vm.generation++;
      vm.pid = this.#state.newPid();
      vm.vmmVersion = toVersion;
      const stoppedMs = wasPaused ? 0 : vm.startVcpus(completedAt);
      vm.state = wasPaused ? 'paused' : 'running';
      this.#state.record({ kind: 'swapped', vm: vm.name, pausedMs: stoppedMs, fromVersion, toVersion });
      return Object.freeze({
        changed: true,
        fromVersion,
        toVersion,
        generation: vm.generation,
        downtimeMs: stoppedMs,
        totalMs: completedAt - call.startedAt,
        startedAt: call.startedAt,
        completedAt,
      });
    } catch (error) {
      if (vm.state !== 'migrating') throw withDetails(error, { rolledBack: false });
      // The old process still holds the VM: cancel and let it run on.
      const pausedMs = wasPaused ? 0 : vm.startVcpus(this.#now());
      vm.state = wasPaused ? 'paused' : 'running';
      this.#state.record({ kind: 'swap-rolled-back', vm: vm.name, pausedMs, fromVersion, toVersion });
      throw withDetails(error, { rolledBack: true });
    }
  }

  async applyHostUpdate(options: ApplyHostUpdateOptions): Promise<ApplyHostUpdateResult> {
    const call = this.#begin('applyHostUpdate', options, 'hostUpdate');
    const { update } = options;
    if (!(Number.isFinite(update.expectedApplyMs) && update.expectedApplyMs >= 0)) {
      throw new IntermissionError('INVALID_INPUT', `update ${update.id}: expectedApplyMs must be a number of ms >= 0`);
    }
    if (this.#state.applying !== null) {
      throw this.#error(call, 'BUSY', `host ${this.host} is already applying update ${this.#state.applying}`, {
        applying: this.#state.applying,
      });
    }
    const fault = this.#state.takeFault('applyHostUpdate', undefined);
    const applyMs = update.expectedApplyMs * this.#state.rng.sample(this.#state.timings.applyFactor);
    this.#state.applying = update.id;
    try {
      if (fault?.kind === 'crash') {
        await this.#wait(call, applyMs / 2, fault);
        for (const vm of this.#state.vms.values()) {
          if (vm.state === 'stopped' || vm.state === 'failed') continue;
          if (fault.vm !== undefined && fault.vm !== vm.name) continue;
          this.#kill(vm);
        }
        await this.#wait(call, applyMs / 2, fault);
      } else {
        await this.#wait(call, scaledDuration(applyMs, fault), fault);
      }
      await this.#untilReleased(call);
      if (fault?.kind === 'fail') {
        throw this.#error(call, 'OPERATION_FAILED', `host ${this.host} failed to apply update ${update.id}`, {
          fault: 'fail',
          updateId: update.id,
        });
      }
      const completedAt = this.#now();
      this.#state.appliedUpdates.push(update.id);
      this.#state.record({ kind: 'update-applied', updateId: update.id });
      return Object.freeze({
        updateId: update.id,
        startedAt: call.startedAt,
        completedAt,
        applyMs: completedAt - call.startedAt,
      });
    } catch (error) {
      throw withDetails(error, { updateId: update.id, applied: false });
    } finally {
      this.#state.applying = null;
    }
  }

  async reboot(options: RebootOptions): Promise<RebootResult> {
    const call = this.#begin('reboot', options, 'reboot');
    const vm = this.#vm(call);
    if (vm.state === 'migrating') {
      throw this.#error(call, 'BUSY', `VM ${vm.name} is moving to a new VMM process`, { state: vm.state });
    }
    const fault = this.#state.takeFault('reboot', vm.name);
    const rebootMs = vm.rng.sample(this.#state.timings.rebootMs);
    if (fault?.kind === 'fail') {
      // Refused before anything stopped: the VM is as before.
      await this.#wait(call, vm.rng.sample(this.#state.timings.pauseMs), fault);
      throw this.#error(call, 'OPERATION_FAILED', `the hypervisor refused to restart VM ${vm.name}`, { fault: 'fail' });
    }
    this.#shutdown(vm);
    if (fault?.kind === 'crash') await this.#crashHalfway(call, vm, rebootMs, fault);
    // On a timeout or abort the VM stays stopped: a stuck boot; the caller may restart it again.
    await this.#wait(call, scaledDuration(rebootMs, fault), fault);
    if (vm.state !== 'stopped') {
      throw this.#error(call, 'WRONG_STATE', `VM ${vm.name} changed state while it restarted`, { state: vm.state });
    }
    const startedAt = this.#now();
    vm.generation++;
    vm.pid = this.#state.newPid();
    vm.vmmVersion = options.targetVersion ?? vm.vmmVersion;
    vm.bootCount++;
    // A new boot reads the host's RTC: the guest clock starts at the host's time.
    vm.clock = new GuestClock({ hostNow: startedAt, offsetMs: 0, driftPpm: vm.driftPpm, running: true });
    vm.state = 'running';
    this.#state.record({ kind: 'started', vm: vm.name, toVersion: vm.vmmVersion });
    return Object.freeze({
      generation: vm.generation,
      vmmVersion: vm.vmmVersion,
      startedAt,
      rebootMs: startedAt - call.startedAt,
    });
  }

  async guestTime(options: VmOperationOptions): Promise<GuestTimeResult> {
    const { call, vm, fault, roundTripMs, arrival } = this.#agentCall('guestTime', options);
    await this.#wait(call, roundTripMs * arrival, fault);
    this.#agentReady(call, vm);
    this.#agentFailure(call, vm, fault);
    const guestMs = vm.clock.read(this.#now());
    await this.#wait(call, roundTripMs * (1 - arrival), fault);
    const end = this.#now();
    const hostMs = (call.startedAt + end) / 2;
    return Object.freeze({ guestMs, hostMs, offsetMs: guestMs - hostMs, roundTripMs: end - call.startedAt });
  }

  async setGuestTime(options: SetGuestTimeOptions): Promise<SetGuestTimeResult> {
    const { call, vm, fault, roundTripMs, arrival } = this.#agentCall('setGuestTime', options);
    await this.#wait(call, roundTripMs * arrival, fault);
    this.#agentReady(call, vm);
    this.#agentFailure(call, vm, fault);
    vm.clock.set(this.#now(), options.timeMs);
    this.#state.record({ kind: 'clock-set', vm: vm.name });
    await this.#wait(call, roundTripMs * (1 - arrival), fault);
    const completedAt = this.#now();
    return Object.freeze({ completedAt, roundTripMs: completedAt - call.startedAt });
  }

  resyncClock(options: ResyncClockOptions): Promise<ResyncClockResult> {
    return resyncGuestClock({ ...options, driver: this, clock: this.#state.time });
  }

  async leaseResumes(options: VmOperationOptions): Promise<readonly LeaseResume[]> {
    const call = this.#begin('leaseResumes', options);
    const vm = this.#vm(call);
    await vm.leaseResync;
    return Object.freeze([...vm.leaseResumes]);
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#closer.abort();
    }
    return Promise.resolve();
  }

  // -------------------------------------------------------------------------------------------
  // Building blocks
  // -------------------------------------------------------------------------------------------

  #now(): number {
    return this.#state.time.now();
  }

  /** Starts a call: closed, capability and deadline checks, and the signal that ends its waits. */
  #begin(operation: string, options: OperationOptions & { readonly vm?: string }, flag?: DriverCapabilityFlag): Call {
    const startedAt = this.#now();
    const base = { operation, vm: options.vm, startedAt, deadline: startedAt, signal: this.#closer.signal };
    if (this.#closed) throw this.#closedError(base);
    if (flag !== undefined && !this.capabilities[flag]) {
      throw this.#error(base, 'UNSUPPORTED', `driver of host ${this.host} does not declare ${flag}`, {
        capability: flag,
      });
    }
    const deadline = options.deadline ?? startedAt + this.#state.operationTimeoutMs;
    if (!(deadline > startedAt)) {
      throw this.#error(base, 'DEADLINE_EXCEEDED', `${operation}: the deadline had passed before the call`, {
        deadline,
      });
    }
    if (options.signal?.aborted === true) {
      throw this.#error(base, 'ABORTED', `${operation} was aborted before it started`, {}, options.signal.reason);
    }
    const signal =
      options.signal === undefined ? this.#closer.signal : AbortSignal.any([options.signal, this.#closer.signal]);
    return { operation, vm: options.vm, startedAt, deadline, signal };
  }

  /** A call that takes no time (a lookup). */
  #sync<T>(
    operation: string,
    options: OperationOptions & { readonly vm?: string },
    flag: DriverCapabilityFlag | undefined,
    body: (call: Call) => T,
  ): Promise<T> {
    try {
      return Promise.resolve(body(this.#begin(operation, options, flag)));
    } catch (error) {
      return Promise.reject(coerceError(error));
    }
  }

  /**
   * Lets `ms` pass for a call. Past its deadline it waits until the deadline and rejects with
   * `DEADLINE_EXCEEDED` (a hang passes `Infinity`); an abort or `close()` ends the wait at once.
   */
  async #wait(call: Call, ms: number, fault: SimFault | undefined): Promise<void> {
    const now = this.#now();
    const timedOut = now + ms > call.deadline;
    try {
      await this.#state.time.sleep(timedOut ? call.deadline - now : ms, { signal: call.signal });
    } catch (cause) {
      if (this.#closed) throw this.#closedError(call);
      throw this.#error(call, 'ABORTED', `${call.operation} was aborted`, faultDetail(fault), cause);
    }
    if (timedOut) {
      throw this.#error(
        call,
        'DEADLINE_EXCEEDED',
        `${call.operation}${call.vm === undefined ? '' : ` of VM ${call.vm}`} did not complete by its deadline`,
        { deadline: call.deadline, ...faultDetail(fault) },
      );
    }
  }

  /**
   * Waits while the host's updates are held (`SimHost.holdUpdates`): until the release, the call's
   * deadline (`DEADLINE_EXCEEDED`), or an abort or `close()`.
   */
  async #untilReleased(call: Call): Promise<void> {
    if (this.#state.updateHolds.size === 0) return;
    const hold = Promise.all(this.#state.updateHolds);
    const released = new AbortController();
    const expiry = this.#wait(
      { ...call, signal: AbortSignal.any([call.signal, released.signal]) },
      Number.POSITIVE_INFINITY,
      undefined,
    );
    try {
      await Promise.race([hold, expiry]);
    } finally {
      released.abort();
      // Once released, the expiry's wait ends aborted: that rejection is expected and dropped.
      await expiry.catch(() => undefined);
    }
  }

  /** The common shape of a short VM operation: crash, hang, slow or fail as the fault says. */
  async #perform(call: Call, vm: VmRecord, fault: SimFault | undefined, ms: number): Promise<void> {
    if (fault?.kind === 'crash') await this.#crashHalfway(call, vm, ms, fault);
    await this.#wait(call, scaledDuration(ms, fault), fault);
    if (fault?.kind === 'fail') {
      throw this.#error(call, 'OPERATION_FAILED', `the hypervisor refused to ${call.operation} VM ${vm.name}`, {
        fault: 'fail',
      });
    }
  }

  /** Waits half of `ms`, then the VM's process dies and the call rejects. */
  async #crashHalfway(call: Call, vm: VmRecord, ms: number, fault: SimFault): Promise<never> {
    await this.#wait(call, ms / 2, fault);
    if (vm.state !== 'failed') this.#kill(vm);
    throw this.#failedError(call, vm, { fault: 'crash' });
  }

  /**
   * Models the hypervisor-level resume lease: a timer of the host, not of this connection (closing
   * the driver, like an agent that dies, leaves it armed), that resumes the VM at `leaseUntil` when
   * the same pause is still on. A swap under way finishes first (the VM is re-checked just after).
   */
  #armLease(vm: VmRecord, pausedAt: number, leaseUntil: number): void {
    vm.cancelLease();
    const lease = new AbortController();
    vm.leaseTimer = lease;
    const time = this.#state.time;
    const check = (delayMs: number): void => {
      time.sleep(Math.max(0, delayMs), { signal: lease.signal }).then(
        () => {
          if (vm.pausedSince !== pausedAt) return;
          if (vm.state === 'migrating') {
            check(1);
            return;
          }
          if (vm.state !== 'paused') return;
          vm.leaseTimer = null;
          const resumedAt = time.now();
          const pausedMs = vm.startVcpus(resumedAt);
          vm.state = 'running';
          this.#state.record({ kind: 'resumed', vm: vm.name, pausedMs, byLease: true });
          vm.leaseResync = this.#leaseResync(vm, pausedAt, resumedAt);
        },
        () => undefined,
      );
    };
    check(leaseUntil - pausedAt);
  }

  /**
   * What the QEMU watchdog does after its resume: the guest clock resynchronised through a
   * connection of the host's own (this one may be closed, like an agent that died), the result kept.
   */
  async #leaseResync(vm: VmRecord, pausedAt: number, resumedAt: number): Promise<void> {
    let clock: ResyncClockResult | null = null;
    let clockError: LeaseResume['clockError'] = null;
    try {
      clock = await new SimDriver(this.#state).resyncClock({ vm: vm.name });
    } catch (error) {
      const e = coerceError(error);
      clockError = { code: e.code, message: e.message };
    }
    vm.leaseResumes.push(Object.freeze({ vm: vm.name, pausedAt, resumedAt, clock, clockError }));
    vm.leaseResumes.splice(0, Math.max(0, vm.leaseResumes.length - LEASE_RESUMES_KEPT));
    vm.leaseResync = null;
  }

  #kill(vm: VmRecord): void {
    vm.kill(this.#now());
    this.#state.record({ kind: 'crashed', vm: vm.name });
  }

  /** Shuts the VM down for a restart: a pause under way ends, the process goes. */
  #shutdown(vm: VmRecord): void {
    const now = this.#now();
    vm.cancelLease();
    vm.startVcpus(now);
    vm.clock.stop(now);
    vm.state = 'stopped';
    vm.pid = null;
    this.#state.record({ kind: 'stopped', vm: vm.name });
  }

  #vm(call: Call): VmRecord {
    const vm = call.vm === undefined ? undefined : this.#state.vms.get(call.vm);
    if (vm === undefined) {
      throw this.#error(call, 'VM_NOT_FOUND', `host ${this.host} has no VM named ${JSON.stringify(call.vm)}`);
    }
    return vm;
  }

  #alive(call: Call, vm: VmRecord): void {
    if (vm.state === 'failed') throw this.#failedError(call, vm);
  }

  /** A swap needs a VM that runs or is paused, and no other swap. */
  #movable(call: Call, vm: VmRecord): void {
    if (vm.state === 'migrating') {
      throw this.#error(call, 'BUSY', `VM ${vm.name} is already moving to a new VMM process`, { state: vm.state });
    }
    if (vm.state === 'stopped') {
      throw this.#error(call, 'WRONG_STATE', `VM ${vm.name} is stopped: restart it instead`, { state: vm.state });
    }
  }

  /** What a pause returns without acting, or undefined when the VM runs and may be paused. */
  #pauseOutcome(call: Call, vm: VmRecord): PauseResult | undefined {
    this.#alive(call, vm);
    if (vm.state === 'paused') return Object.freeze({ pausedAt: vm.pausedSince ?? this.#now(), alreadyPaused: true });
    if (vm.state === 'running') return undefined;
    throw this.#stateError(call, vm);
  }

  /** What a resume returns without acting, or undefined when the VM is paused and may be resumed. */
  #resumeOutcome(call: Call, vm: VmRecord): ResumeResult | undefined {
    this.#alive(call, vm);
    if (vm.state === 'running') return Object.freeze({ resumedAt: this.#now(), pausedMs: 0, alreadyRunning: true });
    if (vm.state === 'paused') return undefined;
    throw this.#stateError(call, vm);
  }

  #stateError(call: Call, vm: VmRecord): IntermissionError {
    return vm.state === 'migrating'
      ? this.#error(call, 'BUSY', `VM ${vm.name} is moving to a new VMM process; wait for the swap to end`, {
          state: vm.state,
        })
      : this.#error(call, 'WRONG_STATE', `cannot ${call.operation} VM ${vm.name}: it is ${vm.state}`, {
          state: vm.state,
        });
  }

  /** Starts a guest-agent call: checks, fault, and the draws of its round trip. */
  #agentCall(
    operation: 'guestTime' | 'setGuestTime',
    options: VmOperationOptions,
  ): { call: Call; vm: VmRecord; fault: SimFault | undefined; roundTripMs: number; arrival: number } {
    const call = this.#begin(operation, options, 'guestClock');
    const vm = this.#vm(call);
    this.#agentReady(call, vm);
    const fault = this.#state.takeFault(operation, vm.name);
    const roundTripMs = vm.rng.sample(this.#state.timings.agentRoundTripMs);
    const arrival = vm.rng.sample(this.#state.timings.agentArrivalFraction);
    return { call, vm, fault, roundTripMs: scaledDuration(roundTripMs, fault), arrival };
  }

  /** The guest agent answers only from a live guest with running vCPUs. */
  #agentReady(call: Call, vm: VmRecord): void {
    this.#alive(call, vm);
    if (!vm.guestAgent) {
      throw this.#error(call, 'GUEST_AGENT_UNREACHABLE', `VM ${vm.name} has no guest agent`, {}, undefined, false);
    }
    if (vm.state === 'stopped' || vm.vcpusStopped) {
      throw this.#error(call, 'WRONG_STATE', `the guest agent of VM ${vm.name} cannot answer: it is ${vm.state}`, {
        state: vm.state,
      });
    }
  }

  /** A crash or refusal met by a guest-agent call when it reaches the guest. */
  #agentFailure(call: Call, vm: VmRecord, fault: SimFault | undefined): void {
    if (fault?.kind === 'crash') {
      if (vm.state !== 'failed') this.#kill(vm);
      throw this.#failedError(call, vm, { fault: 'crash' });
    }
    if (fault?.kind === 'fail') {
      throw this.#error(call, 'OPERATION_FAILED', `the guest agent refused ${call.operation}`, { fault: 'fail' });
    }
  }

  #failedError(call: Call, vm: VmRecord, extra: Readonly<Record<string, unknown>> = {}): IntermissionError {
    return this.#error(call, 'VM_FAILED', `VM ${vm.name} has failed (its VMM process died); restart it`, {
      state: 'failed',
      ...extra,
    });
  }

  #closedError(call: Pick<Call, 'operation' | 'vm'>): IntermissionError {
    return this.#error(call, 'DRIVER_CLOSED', `the driver of host ${this.host} is closed`);
  }

  #error(
    call: Pick<Call, 'operation' | 'vm'>,
    reason: DriverErrorReason,
    message: string,
    extra: Readonly<Record<string, unknown>> = {},
    cause?: unknown,
    retryable?: boolean,
  ): IntermissionError {
    return operationError({
      host: this.host,
      call,
      reason,
      message,
      extra,
      cause,
      ...(retryable === undefined ? {} : { retryable }),
    });
  }
}

/** A duration as a fault changes it: a hang never ends, a slow operation takes `factor` times longer. */
function scaledDuration(ms: number, fault: SimFault | undefined): number {
  if (fault?.kind === 'hang') return Number.POSITIVE_INFINITY;
  if (fault?.kind === 'slow') return ms * fault.factor;
  return ms;
}

function faultDetail(fault: SimFault | undefined): { fault?: string } {
  return fault === undefined ? {} : { fault: fault.kind };
}

function swapBlocker(vm: VmRecord): string {
  const parts: string[] = [];
  if (!vm.sharedMemory) parts.push('its RAM is not in shareable memory');
  if (vm.blockingDevices.length > 0) parts.push(`devices ${vm.blockingDevices.join(', ')} cannot be migrated`);
  return parts.join('; ');
}
