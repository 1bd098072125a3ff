/**
 * The guest agent and the guest clock of the QEMU driver's VMs: reading and setting the guest's
 * time, resynchronising it (under the VM's clock lock, shared with its resume watchdog: see
 * `../guest-clock.ts`), and waiting for the agent of a VM that boots.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { isIntermissionError } from '../../../domain/index.js';
import { GuestAgentClient, preciseWallClock } from '../../../qmp/index.js';
import { resyncGuestClock } from '../../clock-sync.js';
import type {
  GuestTimeResult,
  LeaseResume,
  ResyncClockOptions,
  ResyncClockResult,
  SetGuestTimeOptions,
  SetGuestTimeResult,
  VmOperationOptions,
} from '../../driver.js';
import { driverError, withDetails } from '../../errors.js';
import { readLeaseResumes, resyncRepeating, withClockLock } from '../guest-clock.js';
import { agentOptions, handleOf, remaining, runCall } from './calls.js';
import { alive, qemuLog, vmStateOf, type Call, type QemuContext, type VmHandle } from './context.js';
import { callError, closedError, notBusy } from './errors.js';
import { processPaths } from './layout.js';
import { logTail } from './process.js';
import { openSession, runStatus } from './session.js';

/** {@link HypervisorDriver.guestTime}: the guest's clock, read through its agent. */
export function guestTime(ctx: QemuContext, options: VmOperationOptions): Promise<GuestTimeResult> {
  return runCall(ctx, 'guestTime', options, 'guestClock', undefined, async (call) => {
    const handle = await agentReady(ctx, call);
    const reading = await agentOf(handle).getTime(agentOptions(call));
    handle.agentSeen = true;
    return Object.freeze({
      guestMs: reading.guestTimeMs,
      hostMs: reading.hostMidpointMs,
      offsetMs: reading.offsetMs,
      roundTripMs: reading.roundTripMs,
    });
  });
}

/** {@link HypervisorDriver.setGuestTime}: sets the guest's clock through its agent. */
export function setGuestTime(ctx: QemuContext, options: SetGuestTimeOptions): Promise<SetGuestTimeResult> {
  // `timeMs` is what the guest should read when the value arrives, as of the call: connecting
  // and syncing with the agent take a round trip first, so the time that passed is added (to the
  // microsecond: whole milliseconds would be as large as the round trip itself).
  const askedAt = performance.now();
  return runCall(ctx, 'setGuestTime', options, 'guestClock', undefined, async (call) => {
    const handle = await agentReady(ctx, call);
    const result = await agentOf(handle).setTime({
      ...agentOptions(call),
      timeMs: () => options.timeMs + (performance.now() - askedAt),
    });
    return Object.freeze({ completedAt: result.hostReceivedMs, roundTripMs: result.roundTripMs });
  });
}

/**
 * {@link resyncRepeating}: {@link resyncGuestClock} stepped again while the residual is larger
 * than its round trip, holding the VM's clock lock, so that it never interleaves with the resume
 * watchdog's resync of the same VM (see `guest-clock.ts`).
 */
export async function resyncClock(ctx: QemuContext, options: ResyncClockOptions): Promise<ResyncClockResult> {
  const handle = ctx.handles.get(options.vm);
  const resync = (): Promise<ResyncClockResult> =>
    resyncRepeating((o) => resyncOnce(ctx, { ...options, ...o }), options.toleranceMs);
  return handle === undefined ? resync() : withClockLock(handle.paths.clockLock, resync);
}

function resyncOnce(ctx: QemuContext, options: ResyncClockOptions): Promise<ResyncClockResult> {
  if (ctx.closed()) return Promise.reject(closedError(ctx, 'resyncClock', options.vm));
  if (!ctx.capabilities.guestClock) {
    return Promise.reject(
      driverError({
        reason: 'UNSUPPORTED',
        message: `driver of host ${ctx.host} does not declare guestClock`,
        details: { operation: 'resyncClock', host: ctx.host, vm: options.vm, capability: 'guestClock' },
      }),
    );
  }
  return resyncGuestClock({ ...options, driver: ctx.driver, clock: preciseWallClock });
}

/**
 * The pauses the VM's resume watchdog ended, with its clock resync after each (from
 * `lease-resumes.json`, which outlives drivers and processes). A resync under way is waited for:
 * the watchdog holds the clock lock until it has recorded it.
 */
export function leaseResumes(ctx: QemuContext, options: VmOperationOptions): Promise<readonly LeaseResume[]> {
  return runCall(ctx, 'leaseResumes', options, undefined, undefined, async (call) => {
    const handle = handleOf(ctx, call);
    const path = handle.paths.leaseResumes;
    return Object.freeze(
      await withClockLock(handle.paths.clockLock, () => Promise.resolve(readLeaseResumes(path)), {
        waitMs: Math.max(0, call.deadline - Date.now()),
      }),
    );
  });
}

/** The guest-agent client of the VM's current process. */
export function agentOf(handle: VmHandle): GuestAgentClient {
  const path = processPaths(handle.paths.dir, handle.record.current.generation).guestAgent;
  if (handle.agent === undefined || handle.agent.path !== path) {
    void handle.agent?.close();
    handle.agent = new GuestAgentClient({ path, now: () => Date.now() });
  }
  return handle.agent;
}

/** The VM of a guest-agent call, checked: it has an agent and its vCPUs run. */
async function agentReady(ctx: QemuContext, call: Call): Promise<VmHandle> {
  const handle = handleOf(ctx, call);
  if (!handle.record.spec.guestAgent) {
    throw callError(ctx, call, 'GUEST_AGENT_UNREACHABLE', `VM ${handle.name} has no guest agent`, {}, undefined, false);
  }
  if (handle.operation !== null && handle.operation !== 'launch') notBusy(ctx, call, handle);
  // Just after a swap's resume the guest is left to settle first (see SWAP_AGENT_SETTLE_MS),
  // when that leaves the call at least half of its time.
  const quiet = (handle.agentQuietUntil ?? 0) - Date.now();
  if (quiet > 0 && quiet <= remaining(call) / 2) await delay(quiet, undefined, { signal: call.signal });
  const status = await runStatus(await openSession(ctx, handle, call), call);
  if (status !== 'running') {
    throw callError(ctx, call, 'WRONG_STATE', `the guest agent of VM ${handle.name} cannot answer: it is ${status}`, {
      state: vmStateOf(status),
      status,
    });
  }
  return handle;
}

/** Waits until the guest agent answers (a boot); returns when it did. */
export async function waitForAgent(ctx: QemuContext, handle: VmHandle, call: Call): Promise<number> {
  const agent = agentOf(handle);
  for (;;) {
    if (!alive(handle)) {
      throw callError(
        ctx,
        call,
        'VM_FAILED',
        `VM ${handle.name} died while booting: ${logTail(qemuLog(handle), 500)}`,
        {
          state: 'failed',
        },
      );
    }
    try {
      await agent.ping({ timeoutMs: Math.min(2_000, remaining(call)), signal: call.signal });
      handle.agentSeen = true;
      return Date.now();
    } catch (error) {
      if (call.signal.aborted) {
        throw withDetails(call.signal.reason, { serialLogTail: logTail(handle.paths.serialLog, 500) });
      }
      if (!isIntermissionError(error)) throw error;
    }
    await delay(Math.min(250, remaining(call)), undefined, { signal: call.signal }).catch(() => undefined);
  }
}

/** After a boot: set the guest clock from the host's (the RTC has whole seconds). Best effort. */
export async function resyncQuietly(ctx: QemuContext, handle: VmHandle, call: Call): Promise<void> {
  await resyncClock(ctx, { vm: handle.name, deadline: call.deadline, toleranceMs: 1 }).catch(() => undefined);
}
