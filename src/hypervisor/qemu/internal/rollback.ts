/**
 * Putting a swap's source back: cancelling its migration and running the VM there again (or
 * holding it paused, as it was), with the VM's pause carried across.
 */
import { rmSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import type { QmpClient } from '../../../qmp/index.js';
import { pausedSinceOf, writeRecord, type StartedProcess, type VmHandle } from './context.js';
import { processPaths, readLease, writeJsonAtomic, type LeaseFile } from './layout.js';
import { withMonitor } from './session.js';
import { ACTIVE_MIGRATION, outgoingStatus } from './swap-settle.js';
import { CLEANUP_STEP_MS, killProcess } from './vm-process.js';

/**
 * Puts the source of a failed migration back: cancels a migration still moving, waits for it to
 * settle, and runs the VM again unless it was paused before (then it stays paused). Resolves false,
 * touching nothing, when the source's migration completed (see below).
 */
export async function restoreSource(qmp: QmpClient, wasPaused: boolean): Promise<boolean> {
  const options = { timeoutMs: CLEANUP_STEP_MS };
  const info = await qmp.execute('query-migrate', undefined, options);
  if (info.status !== undefined && ACTIVE_MIGRATION.has(info.status)) {
    await qmp.execute('migrate_cancel', undefined, options).catch(() => undefined);
  }
  const end = Date.now() + CLEANUP_STEP_MS;
  let status = (await qmp.execute('query-status', undefined, options)).status;
  while (status === 'finish-migrate' && Date.now() < end) {
    await delay(10);
    status = (await qmp.execute('query-status', undefined, options)).status;
  }
  const migrating = outgoingStatus(await qmp.execute('query-migrate', undefined, options));
  // A source whose migration completed is never resumed: its state went to the new process, which
  // may have run the guest on the RAM they share (settleInterruptedSwap goes forward then; this is
  // the last line of defence).
  if (migrating === 'completed') return false;
  if (migrating !== undefined && ACTIVE_MIGRATION.has(migrating)) await delay(50);
  if (status === 'postmigrate' || (status === 'paused' && !wasPaused)) {
    await qmp.execute('cont', undefined, options);
    if (wasPaused) await qmp.execute('stop', undefined, options);
  }
  return true;
}

/**
 * Undoes a swap that did not reach the new process: kills it (settleInterruptedSwap already has,
 * once `migrate` may have been sent), cancels the migration, and lets the old process run the VM
 * again (or hold it paused, as it was). Runs without the caller's deadline. Resolves false when
 * the old process turned out to have completed its migration after all (its monitor answered too
 * late for the decision): it is then not resumed, and the VM is down.
 */
export async function rollback(
  handle: VmHandle,
  started: StartedProcess | undefined,
  wasPaused: boolean,
): Promise<boolean> {
  const pending = handle.record.pending;
  if (started !== undefined) {
    await started.session.qmp.close();
    await killProcess(started.record, started.paths);
    rmSync(started.paths.dir, { recursive: true, force: true });
  } else if (pending !== null) {
    rmSync(processPaths(handle.paths.dir, pending.generation).dir, { recursive: true, force: true });
  }
  const session = handle.session;
  const restored = await keepingPause(handle, wasPaused, async () => {
    if (session !== undefined && !session.qmp.closed) {
      return restoreSource(session.qmp, wasPaused).catch(() => true);
    }
    // The driver's monitor is gone (the driver was closed mid-swap): the spare one still reaches
    // the old process, which must not be left stopped for its switchover.
    const ops = processPaths(handle.paths.dir, handle.record.current.generation).opsQmp;
    return withMonitor(ops, (qmp) => restoreSource(qmp, wasPaused)).catch(() => true);
  });
  writeRecord(handle, { ...handle.record, pending: null });
  handle.operation = null;
  return restored;
}

/**
 * Runs `restore`, which puts a failed swap's source back, and carries the VM's pause across it
 * when the VM was paused: to leave `postmigrate` the source must `cont` then `stop`, a pause that
 * ends and another that starts, as far as QEMU's events tell. The pause keeps its start and its
 * lease, and the lease is written fresh so that the watchdog counts from that start (see
 * `pauseStart`) and the 30 s bound still holds for the pause as a whole.
 */
export async function keepingPause<T>(handle: VmHandle, wasPaused: boolean, restore: () => Promise<T>): Promise<T> {
  if (!wasPaused) return restore();
  const pausedAt = pausedSinceOf(handle);
  const until = readLease(handle.paths.lease)?.until ?? null;
  try {
    return await restore();
  } finally {
    handle.pausedSince = pausedAt;
    writeJsonAtomic(handle.paths.lease, { until, writtenAt: Date.now(), pausedAt } satisfies LeaseFile);
  }
}

// -------------------------------------------------------------------------------------------
