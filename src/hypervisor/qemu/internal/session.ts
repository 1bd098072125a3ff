/**
 * The driver's monitor sessions: one QMP connection to the VM's current process, opened when
 * needed, whose STOP and RESUME events keep the VM's pause up to date; and short-lived monitors.
 */
import { QmpClient, type QmpRunState } from '../../../qmp/index.js';
import type { VmRuntimeInfo, VmState } from '../../driver.js';
import { qmpOptions, remaining } from './calls.js';
import {
  alive,
  markRunning,
  pausedSinceOf,
  vmStateOf,
  type Call,
  type QemuContext,
  type Session,
  type VmHandle,
} from './context.js';
import { callError } from './errors.js';
import { EventLog } from './event-log.js';
import { processPaths } from './layout.js';

/** Bound on connecting to a monitor: QEMU answers in milliseconds unless another client holds it. */
export const MONITOR_CONNECT_TIMEOUT_MS = 5_000;

/** The driver's connection to the VM's current process, opened when needed. */
export async function openSession(ctx: QemuContext, handle: VmHandle, call: Call): Promise<Session> {
  const existing = handle.session;
  if (existing !== undefined && !existing.qmp.closed && existing.generation === handle.record.current.generation) {
    return existing;
  }
  if (!alive(handle)) {
    throw callError(ctx, call, 'VM_FAILED', `VM ${handle.name} has failed (its QEMU process is gone); restart it`, {
      state: 'failed',
    });
  }
  const paths = processPaths(handle.paths.dir, handle.record.current.generation);
  let session: Session;
  try {
    session = await connectMonitor(handle, paths.qmp, handle.record.current.generation, call);
  } catch (error) {
    throw callError(
      ctx,
      call,
      'OPERATION_FAILED',
      `cannot reach the QMP monitor of VM ${handle.name} at ${paths.qmp} (is another driver connected?)`,
      {},
      error,
    );
  }
  handle.session = session;
  return session;
}

/** Connects to a monitor; events of the VM's current process keep `pausedSince` up to date. */
export async function connectMonitor(
  handle: VmHandle,
  path: string,
  generation: number,
  call: Call | undefined,
): Promise<Session> {
  const qmp = await QmpClient.connect({
    path,
    timeoutMs: Math.min(call === undefined ? MONITOR_CONNECT_TIMEOUT_MS : remaining(call), MONITOR_CONNECT_TIMEOUT_MS),
    ...(call === undefined ? {} : { signal: call.signal }),
  });
  const session: Session = { qmp, log: new EventLog(qmp), generation };
  qmp.on('STOP', (event) => {
    if (handle.session === session) handle.pausedSince ??= event.timestampMs;
  });
  qmp.on('RESUME', () => {
    if (handle.session === session) markRunning(handle);
  });
  qmp.on('close', () => {
    if (handle.session === session) handle.session = undefined;
  });
  return session;
}

/** The run state of the session's process. */
export async function runStatus(session: Session, call: Call): Promise<QmpRunState> {
  return (await session.qmp.execute('query-status', undefined, qmpOptions(call))).status;
}

/** What `listVms` reports of one VM. */
export async function vmInfo(ctx: QemuContext, handle: VmHandle, call: Call): Promise<VmRuntimeInfo> {
  const current = handle.record.current;
  const info = (state: VmState, pid: number | null, pausedSince: number | null): VmRuntimeInfo =>
    Object.freeze({
      name: handle.name,
      state,
      pid,
      generation: current.generation,
      vmmVersion: current.vmmVersion,
      pausedSince,
    });
  if (handle.operation === 'swap') return info('migrating', current.pid, handle.pausedSince);
  if (handle.operation !== null) return info('stopped', null, null);
  if (!alive(handle)) return info('failed', null, null);
  const status = await runStatus(await openSession(ctx, handle, call), call);
  const state = vmStateOf(status);
  if (state === 'running') markRunning(handle);
  return info(state, current.pid, state === 'paused' ? pausedSinceOf(handle) : null);
}

/** After a call that outlived `close()`: the session it adopted is not kept open. */
export function releaseIfClosed(ctx: QemuContext, handle: VmHandle): void {
  if (!ctx.closed()) return;
  void handle.session?.qmp.close();
  handle.session = undefined;
}

/** Runs `body` on a short-lived monitor connection. */
export async function withMonitor<T>(path: string, body: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await QmpClient.connect({ path, timeoutMs: MONITOR_CONNECT_TIMEOUT_MS });
  try {
    return await body(qmp);
  } finally {
    await qmp.close();
  }
}
