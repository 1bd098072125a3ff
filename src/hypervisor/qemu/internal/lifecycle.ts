/**
 * The QEMU driver's calls on a running VM that do not move it: listing, pausing (with a lease its
 * resume watchdog enforces), resuming, rebooting into a fresh process, and the host update run
 * while they are paused.
 */
import { IntermissionError } from '../../../domain/index.js';
import type {
  ApplyHostUpdateOptions,
  ApplyHostUpdateResult,
  OperationOptions,
  PauseOptions,
  PauseResult,
  RebootOptions,
  RebootResult,
  ResumeResult,
  VmOperationOptions,
  VmRuntimeInfo,
} from '../../driver.js';
import { withDetails } from '../../errors.js';
import { ensureWatchdog } from './adoption.js';
import { binaryOf, handleOf, qmpOptions, runCall } from './calls.js';
import { resyncQuietly, waitForAgent } from './clock.js';
import { markRunning, pausedSinceOf, type QemuContext } from './context.js';
import { callError, normalize, notBusy, stateError } from './errors.js';
import { removeFile, writeJsonAtomic, type LeaseFile, type ProcessRecord } from './layout.js';
import { openSession, runStatus, vmInfo } from './session.js';
import { adoptProcess, retire, startProcess } from './vm-process.js';

/** {@link HypervisorDriver.listVms}: every VM of the driver, by name. */
export function listVms(ctx: QemuContext, options: OperationOptions): Promise<readonly VmRuntimeInfo[]> {
  return runCall(ctx, 'listVms', options, undefined, undefined, async (call) => {
    const handles = [...ctx.handles.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
    const infos: VmRuntimeInfo[] = [];
    for (const handle of handles) infos.push(await vmInfo(ctx, handle, call));
    return infos;
  });
}

/**
 * {@link HypervisorDriver.pause}: stops the vCPUs, after writing the lease the VM's resume
 * watchdog holds it to (a watchdog that died is started again first).
 */
export function pause(ctx: QemuContext, options: PauseOptions): Promise<PauseResult> {
  return runCall(ctx, 'pause', options, undefined, undefined, async (call) => {
    const handle = handleOf(ctx, call);
    notBusy(ctx, call, handle);
    const session = await openSession(ctx, handle, call);
    const status = await runStatus(session, call);
    if (status === 'paused') return Object.freeze({ pausedAt: pausedSinceOf(handle), alreadyPaused: true });
    if (status !== 'running') throw stateError(ctx, call, handle, status);
    // No pause without a watchdog: one that died is started again first.
    await ensureWatchdog(ctx, handle);
    const lease: LeaseFile = { until: options.leaseUntil ?? null, writtenAt: Date.now() };
    // Before the stop: the watchdog must find the lease as soon as it sees the STOP.
    writeJsonAtomic(handle.paths.lease, lease);
    const mark = session.log.seq;
    await session.qmp.execute('stop', undefined, qmpOptions(call));
    const stop = await session.log.waitFor('STOP', mark, { timeoutMs: 2_000, signal: call.signal });
    const pausedAt = stop?.timestampMs ?? Date.now();
    handle.pausedSince = pausedAt;
    writeJsonAtomic(handle.paths.lease, { ...lease, pausedAt });
    return Object.freeze({ pausedAt, alreadyPaused: false });
  });
}

/** {@link HypervisorDriver.resume}: runs the vCPUs again and drops the lease. */
export function resume(ctx: QemuContext, options: VmOperationOptions): Promise<ResumeResult> {
  return runCall(ctx, 'resume', options, undefined, undefined, async (call) => {
    const handle = handleOf(ctx, call);
    notBusy(ctx, call, handle);
    const session = await openSession(ctx, handle, call);
    const status = await runStatus(session, call);
    if (status === 'running') {
      markRunning(handle);
      return Object.freeze({ resumedAt: Date.now(), pausedMs: 0, alreadyRunning: true });
    }
    if (status !== 'paused') throw stateError(ctx, call, handle, status);
    const since = pausedSinceOf(handle);
    const mark = session.log.seq;
    await session.qmp.execute('cont', undefined, qmpOptions(call));
    const resumed = await session.log.waitFor('RESUME', mark, { timeoutMs: 2_000, signal: call.signal });
    const resumedAt = resumed?.timestampMs ?? Date.now();
    markRunning(handle);
    return Object.freeze({ resumedAt, pausedMs: resumedAt - since, alreadyRunning: false });
  });
}

/** {@link HypervisorDriver.reboot}: a fresh boot in a new process (of another build if asked). */
export function reboot(ctx: QemuContext, options: RebootOptions): Promise<RebootResult> {
  return runCall(ctx, 'reboot', options, 'reboot', ctx.config.bootTimeoutMs, async (call) => {
    const handle = handleOf(ctx, call);
    notBusy(ctx, call, handle);
    const version = options.targetVersion ?? handle.record.current.vmmVersion;
    const binary = binaryOf(ctx, call, version);
    handle.operation = 'reboot';
    try {
      await retire(handle, handle.record.current, handle.session);
      handle.session = undefined;
      handle.agent = undefined;
      handle.pausedSince = null;
      removeFile(handle.paths.lease);
      // A fresh boot: the old RAM has no use, and a new file starts zeroed.
      if (handle.record.spec.memPath !== null) removeFile(handle.record.spec.memPath);
      const next: ProcessRecord = {
        generation: handle.record.current.generation + 1,
        vmmVersion: version,
        binary,
        pid: 0,
        startedAt: 0,
        watchdogPid: 0,
      };
      const started = await startProcess(ctx, handle, next, false, call);
      adoptProcess(handle, started);
      handle.operation = null;
      let startedAt = started.record.startedAt;
      if (handle.record.spec.guestAgent) {
        startedAt = await waitForAgent(ctx, handle, call);
        await resyncQuietly(ctx, handle, call);
      }
      return Object.freeze({
        generation: started.record.generation,
        vmmVersion: version,
        startedAt,
        rebootMs: startedAt - call.startedAt,
      });
    } finally {
      if (handle.operation === 'reboot') handle.operation = null;
    }
  });
}

/** {@link HypervisorDriver.applyHostUpdate}: the configured host update, one at a time. */
export function applyHostUpdate(ctx: QemuContext, options: ApplyHostUpdateOptions): Promise<ApplyHostUpdateResult> {
  return runCall(ctx, 'applyHostUpdate', options, 'hostUpdate', undefined, async (call) => {
    const { update } = options;
    if (!(Number.isFinite(update.expectedApplyMs) && update.expectedApplyMs >= 0)) {
      throw new IntermissionError('INVALID_INPUT', `update ${update.id}: expectedApplyMs must be a number of ms >= 0`);
    }
    const state = ctx.hostUpdate;
    if (state.applying !== null) {
      throw callError(ctx, call, 'BUSY', `host ${ctx.host} is already applying update ${state.applying}`, {
        applying: state.applying,
      });
    }
    state.applying = update.id;
    try {
      await ctx.config.hostUpdate({ update, deadline: call.deadline, signal: call.signal });
      const completedAt = Date.now();
      return Object.freeze({
        updateId: update.id,
        startedAt: call.startedAt,
        completedAt,
        applyMs: completedAt - call.startedAt,
      });
    } catch (error) {
      throw withDetails(normalize(ctx, call, error), { updateId: update.id, applied: false });
    } finally {
      state.applying = null;
    }
  });
}
