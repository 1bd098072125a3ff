/**
 * A driver taking over a run directory (an agent restart): every recorded VM adopted, a swap a
 * previous driver left half done finished or rolled back, and missing watchdogs restarted.
 */
import { rmSync } from 'node:fs';
import { writeRecord, type QemuContext, type VmHandle } from './context.js';
import { listVmDirs, processPaths, readVmRecord, vmPaths, type PendingSwap, type ProcessRecord } from './layout.js';
import { findProcesses, isAlive, setRealtime, setThreadPriority, signalProcess, threadPriority } from './process.js';
import { keepingPause, restoreSource } from './rollback.js';
import { withMonitor } from './session.js';
import { settleForward, settleInterruptedSwap, type SwapTarget } from './swap-settle.js';
import { killProcess, retire, startWatchdog } from './vm-process.js';

export async function adoptAll(ctx: QemuContext): Promise<void> {
  for (const name of listVmDirs(ctx.config.runDir)) {
    const paths = vmPaths(ctx.config.runDir, name);
    const record = readVmRecord(paths.record);
    if (record === undefined) continue;
    const handle: VmHandle = {
      name,
      paths,
      record,
      session: undefined,
      agent: undefined,
      pausedSince: null,
      operation: null,
      agentSeen: false,
    };
    ctx.handles.set(name, handle);
    if (record.pending !== null) await finishPendingSwap(handle, record.pending);
    await ensureWatchdog(ctx, handle);
  }
}

/**
 * A swap a previous driver left under way, settled by the rule a live swap follows (see
 * settleInterruptedSwap): forward when the new process has left `inmigrate` (it has the VM) or
 * the source reports `completed` (or is gone), and then the old process is never resumed; back
 * otherwise, the new process killed and the old one running on (or held paused, as it was).
 */
async function finishPendingSwap(handle: VmHandle, recorded: PendingSwap): Promise<void> {
  const from = handle.record.current;
  const oldPaths = processPaths(handle.paths.dir, from.generation);
  const newPaths = processPaths(handle.paths.dir, recorded.generation);
  // A driver that died while it started the new process had not written its pid down yet: the
  // process (and its watchdog) are found by their monitor sockets, which name VM and generation.
  const pending: PendingSwap =
    recorded.pid > 0
      ? recorded
      : {
          ...recorded,
          pid: findProcesses((args) => args.some((arg) => arg.startsWith(`unix:${newPaths.qmp},`)))[0] ?? 0,
          watchdogPid: findProcesses((args) => args.includes(newPaths.watchdogQmp))[0] ?? 0,
        };
  // A driver that died mid-swap may have left the switchover threads boosted: back to the policy
  // and nice value QEMU processes start with (this driver's own).
  const nice = threadPriority(process.pid);
  for (const [pid, paths] of [
    [from.pid, oldPaths],
    [pending.pid, newPaths],
  ] as const) {
    if (!isAlive(pid, paths.qmp)) continue;
    await setRealtime(pid, null);
    if (nice !== undefined) setThreadPriority(pid, nice);
  }
  // A driver that died while it held the new process frozen (deciding this very question) left
  // it stopped: it runs again first, so that it answers; the decision freezes it once more.
  if (isAlive(pending.pid, newPaths.qmp)) signalProcess(pending.pid, 'SIGCONT');
  const target: SwapTarget = { pid: pending.pid, paths: newPaths, session: undefined, mark: 0 };
  const verdict = await settleInterruptedSwap(target, {
    pid: from.pid,
    paths: oldPaths,
    monitor: (body) => withMonitor(oldPaths.qmp, body),
  });
  if (verdict === 'back') {
    await killProcess(pending, newPaths);
    rmSync(newPaths.dir, { recursive: true, force: true });
    if (isAlive(from.pid, oldPaths.qmp)) {
      await keepingPause(handle, pending.wasPaused, () =>
        withMonitor(oldPaths.qmp, (qmp) => restoreSource(qmp, pending.wasPaused)).catch(() => undefined),
      );
    }
    writeRecord(handle, { ...handle.record, pending: null });
    return;
  }
  // Forward: the new process is the VM's from now on, whatever state it settles in (one that
  // died or cannot run leaves the VM `failed`, to be restarted; the old process is no way back).
  const outcome = await settleForward(target, pending.wasPaused);
  if (outcome.kind === 'stuck' && outcome.status === 'inmigrate' && !isAlive(from.pid, oldPaths.qmp)) {
    // The old process died before it sent the VM's state, and the new one would wait for it for
    // good: neither can run the VM. The new one is stopped, so that the VM shows `failed` (its
    // process is gone) and can be restarted, instead of `migrating` for ever.
    await killProcess(pending, newPaths);
  }
  const next: ProcessRecord = {
    generation: pending.generation,
    vmmVersion: pending.vmmVersion,
    binary: pending.binary,
    pid: pending.pid,
    startedAt: pending.startedAt,
    watchdogPid: pending.watchdogPid,
  };
  writeRecord(handle, { ...handle.record, current: next, pending: null });
  await retire(handle, from, undefined);
}

/** Restarts the watchdog of a live process that has none. */
export async function ensureWatchdog(ctx: QemuContext, handle: VmHandle): Promise<void> {
  const current = handle.record.current;
  const paths = processPaths(handle.paths.dir, current.generation);
  if (!isAlive(current.pid, paths.qmp) || isAlive(current.watchdogPid, paths.watchdogQmp)) return;
  const watchdogPid = await startWatchdog(ctx, handle, paths);
  writeRecord(handle, { ...handle.record, current: { ...current, watchdogPid } });
}
