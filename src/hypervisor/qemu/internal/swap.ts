/**
 * Moving a VM to a new QEMU process on the same host (`swapVmm`, `migrateLocally`): the new process
 * started waiting for the state, the migration (RAM skipped when shared), the switchover, and what
 * an interruption does on each side of the point of no return (rolled back before it, finished
 * on the new process after it: see `swap-settle.ts` and `rollback.ts`).
 */
import { appendFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import type { IntermissionError } from '../../../domain/index.js';
import type { QmpClient, QmpMigrationInfo } from '../../../qmp/index.js';
import { driverErrorReason, withDetails } from '../../errors.js';
import type {
  QemuMigrationStats,
  QemuSwapInterruption,
  QemuSwapVmmResult,
  RamTransferMode,
  SwapPhase,
} from '../qemu-types.js';
import { binaryOf, qmpOptions, remaining } from './calls.js';
import {
  alive,
  pausedSinceOf,
  vmStateOf,
  writeRecord,
  type Call,
  type QemuContext,
  type Session,
  type StartedProcess,
  type VmHandle,
} from './context.js';
import { blockers } from './describe.js';
import { callError, normalize, notBusy, stateError } from './errors.js';
import { processPaths, readLease, writeJsonAtomic, type PendingSwap, type ProcessRecord } from './layout.js';
import { logTail } from './process.js';
import { rollback } from './rollback.js';
import { openSession, releaseIfClosed, runStatus, withMonitor } from './session.js';
import { finalMigrationInfo, settleForward, settleInterruptedSwap, type ForwardOutcome } from './swap-settle.js';
import { boostSwitchover, watchdogReady } from './switchover.js';
import { attachQueues, type AttachOutcome } from './tap.js';
import { adoptProcess, retire, startProcess } from './vm-process.js';

/** Migration states in which a migration has ended. */
const MIGRATION_ENDED: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);
/** How often a swap asks for the migration's state when no MIGRATION event says it ended. */
const MIGRATION_RECHECK_MS = 250;
/** Bandwidth of a copying local migration (bytes/s): a unix socket, so as fast as QEMU can send. */
const COPY_MIGRATION_BANDWIDTH = 64 * 1024 ** 3;

/**
 * The body of `swapVmm` (`shared`, `skipSameVersion`) and `migrateLocally`: moves the VM to a new
 * process of `targetVersion` and reports how long it was stopped. See the driver's `swapVmm` for
 * what an interruption does on each side of the point of no return.
 */
export async function migrate(
  ctx: QemuContext,
  call: Call,
  handle: VmHandle,
  targetVersion: string,
  ramTransfer: RamTransferMode,
  skipSameVersion: boolean,
): Promise<QemuSwapVmmResult> {
  const { spec } = handle.record;
  const from = handle.record.current;
  if (alive(handle)) notBusy(ctx, call, handle);
  const binary = binaryOf(ctx, call, targetVersion);
  const problems: string[] = [];
  if (ramTransfer === 'shared' && !spec.sharedMemory) problems.push('its RAM is not in shareable memory');
  // Copying into a mapping both processes share would overwrite the running guest's memory with
  // older copies of its pages: a copying migration needs private RAM.
  if (ramTransfer === 'copy' && spec.sharedMemory) problems.push('a copying migration needs private RAM');
  const oldSession = await openSession(ctx, handle, call);
  const blockingDevices = await blockers(ctx, handle, call);
  if (blockingDevices.length > 0) problems.push(`devices ${blockingDevices.join('; ')} cannot be migrated`);
  if (problems.length > 0) {
    throw callError(
      ctx,
      call,
      'UNSUPPORTED',
      `VM ${handle.name} cannot move to a new process: ${problems.join('; ')}`,
      {
        sharedMemory: spec.sharedMemory,
        blockingDevices,
      },
    );
  }
  if (skipSameVersion && from.vmmVersion === targetVersion) {
    return Object.freeze({
      changed: false,
      fromVersion: from.vmmVersion,
      toVersion: targetVersion,
      generation: from.generation,
      downtimeMs: 0,
      totalMs: 0,
      startedAt: call.startedAt,
      completedAt: call.startedAt,
      ramTransfer,
      migration: null,
      stoppedAt: null,
      resumedAt: null,
      interrupted: null,
    });
  }
  const status = await runStatus(oldSession, call);
  if (status !== 'running' && status !== 'paused') throw stateError(ctx, call, handle, status);
  const wasPaused = status === 'paused';
  const pausedBefore = wasPaused ? pausedSinceOf(handle) : null;
  handle.operation = 'swap';
  const next: ProcessRecord = {
    generation: from.generation + 1,
    vmmVersion: targetVersion,
    binary,
    pid: 0,
    startedAt: 0,
    watchdogPid: 0,
  };
  const pending = (process: ProcessRecord): PendingSwap => ({ ...process, wasPaused, ramTransfer });
  writeRecord(handle, { ...handle.record, pending: pending(next) });

  let started: StartedProcess | undefined;
  let resumedAt: number | null = null;
  let info: QmpMigrationInfo | undefined;
  let boosted: (() => Promise<void>) | undefined;
  // The helper that attached the new process's tap queues, holding the old one's.
  let queues: AttachOutcome | undefined;
  // Whether `migrate` may have reached the source: set before it is sent, as an answer that is
  // lost (deadline, abort) does not mean that QEMU did not start the migration.
  let migrateSent = false;
  // Whether the new process holds the VM paused at the end (a VM paused before the swap), and what
  // interrupted a swap that was finished anyway past its point of no return.
  let heldPaused = wasPaused;
  let interrupted: IntermissionError | null = null;
  let oldMark = oldSession.log.seq;
  let newMark = 0;
  try {
    started = await startProcess(ctx, handle, next, true, call);
    writeRecord(handle, { ...handle.record, pending: pending(started.record) });
    const target = started.session;
    // The new process's watchdog starts up (a Node process: a few hundred ms of CPU) while the
    // migration is prepared; the switchover waits for it so as not to share the CPUs with it,
    // and so that the VM never runs in a process without a watchdog connected.
    await watchdogReady(started, call);
    const capabilities = [
      { capability: 'events', state: true },
      { capability: 'x-ignore-shared', state: ramTransfer === 'shared' },
    ];
    await Promise.all(
      [oldSession, target].map((s) => s.qmp.execute('migrate-set-capabilities', { capabilities }, qmpOptions(call))),
    );
    if (ramTransfer === 'copy') {
      await oldSession.qmp.executeRaw(
        'migrate-set-parameters',
        { 'max-bandwidth': COPY_MIGRATION_BANDWIDTH },
        qmpOptions(call),
      );
    }
    const uri = `unix:${started.paths.migrate}`;
    // The switchover's threads get the CPU first (see `switchoverNice`): the new process's main
    // thread, and the old one's, whose migration thread (started by `migrate`) inherits it.
    boosted = await boostSwitchover(ctx, [started.record.pid, from.pid], ramTransfer === 'shared');
    await target.qmp.execute('migrate-incoming', { uri }, qmpOptions(call));
    oldMark = oldSession.log.seq;
    newMark = target.log.seq;
    swapPhase(ctx, call, handle, 'target-ready', from, started);
    // The new process's queue of each tap, detached until now, is attached, and the guest's packets
    // go there from here on (see internal/tap.ts): they wait for the switchover, a few ms with
    // shared RAM. A copying migration runs the guest on the old process for a while yet: its
    // packets stay with the old queue until the source completed.
    if (ramTransfer === 'shared') {
      queues = await attachNewQueues(ctx, call, handle, started, 1, { oldPid: from.pid });
    } else {
      await attachNewQueues(ctx, call, handle, started, 0);
    }
    migrateSent = true;
    await oldSession.qmp.execute('migrate', { uri }, qmpOptions(call));
    swapPhase(ctx, call, handle, 'migration-started', from, started);
    info = await awaitMigration(ctx, handle, oldSession, call);
    // The point of no return: from here on an interruption finishes the swap (see the catch).
    swapPhase(ctx, call, handle, 'source-completed', from, started);
    if (ramTransfer === 'copy') {
      queues = await attachNewQueues(ctx, call, handle, started, 1, { oldPid: from.pid, required: false });
    }
    if (!wasPaused) {
      const resume = await target.log.waitFor('RESUME', newMark, {
        timeoutMs: remaining(call),
        signal: call.signal,
      });
      if (resume === undefined) {
        if (call.signal.aborted) throw call.signal.reason;
        throw callError(
          ctx,
          call,
          'OPERATION_FAILED',
          `the new QEMU process of VM ${handle.name} did not start the VM: ${logTail(started.paths.qemuLog, 500)}`,
        );
      }
      resumedAt = resume.timestampMs;
    } else {
      await awaitIncomingDone(ctx, target, call);
    }
    // The new process has the VM: the old one's queues would only take packets now.
    queues?.release(true);
  } catch (error) {
    queues?.release(false);
    const cause = normalize(ctx, call, error);
    // Before `migrate` the new process cannot have the VM; after it, the new process is frozen
    // while the source is asked how far the migration got (see settleInterruptedSwap).
    const oldPaths = processPaths(handle.paths.dir, from.generation);
    // The old process's monitor: the driver's session, else (the driver closed mid-swap, which
    // closes that session, perhaps under the question) the spare monitor.
    const sourceMonitor = async <T>(body: (qmp: QmpClient) => Promise<T>): Promise<T> => {
      if (!ctx.closed() && !oldSession.qmp.closed) {
        try {
          return await body(oldSession.qmp);
        } catch (failure) {
          if (!ctx.closed() && !oldSession.qmp.closed) throw failure;
        }
      }
      return withMonitor(oldPaths.opsQmp, body);
    };
    const verdict =
      started !== undefined && migrateSent
        ? await settleInterruptedSwap(
            { pid: started.record.pid, paths: started.paths, session: started.session, mark: newMark },
            { pid: from.pid, paths: oldPaths, monitor: sourceMonitor },
          )
        : 'back';
    await boosted?.();
    if (verdict === 'back' || started === undefined) {
      if (await rollback(handle, started, wasPaused)) throw withDetails(cause, { rolledBack: true });
      throw callError(
        ctx,
        call,
        'VM_FAILED',
        `${call.operation} of VM ${handle.name} was interrupted (${cause.message}); its new QEMU process was ` +
          'stopped, but the old one had completed its migration meanwhile and is never resumed: restart the VM',
        { rolledBack: false, state: 'failed', interruptedBy: driverErrorReason(cause) ?? null },
        cause,
      );
    }
    // Forward: the VM is the new process's now, and the old one is never resumed (the new one
    // may have run the guest on the RAM both map). Finish the swap there, without the deadline.
    const outcome = await settleForward(
      { pid: started.record.pid, paths: started.paths, session: started.session, mark: newMark },
      wasPaused,
    );
    if (outcome.kind !== 'runs') {
      adoptProcess(handle, started);
      handle.pausedSince = null;
      handle.operation = null;
      await retire(handle, from, oldSession);
      releaseIfClosed(ctx, handle);
      throw forwardError(ctx, call, handle, cause, outcome, started.record.generation);
    }
    resumedAt = wasPaused ? null : outcome.resumedAt;
    heldPaused = outcome.status === 'paused';
    interrupted = cause;
  }
  return completeSwap(ctx, {
    call,
    handle,
    from,
    started,
    oldSession,
    targetVersion,
    ramTransfer,
    pausedBefore: heldPaused ? pausedBefore : null,
    stoppedAt: wasPaused ? null : (oldSession.log.find('STOP', oldMark)?.timestampMs ?? null),
    resumedAt,
    info,
    interrupted,
  });
}

/**
 * The end of a swap that reached the new process (it runs the VM, or holds it paused): adopts the
 * new process, retires the old one, and reports. `interrupted` is what interrupted a swap that
 * was then finished anyway (see {@link QemuSwapVmmResult.interrupted}).
 */
async function completeSwap(
  ctx: QemuContext,
  done: {
    readonly call: Call;
    readonly handle: VmHandle;
    readonly from: ProcessRecord;
    readonly started: StartedProcess;
    readonly oldSession: Session;
    readonly targetVersion: string;
    readonly ramTransfer: RamTransferMode;
    /** When the VM's pause began, for a VM that stays paused; null when it runs. */
    readonly pausedBefore: number | null;
    readonly stoppedAt: number | null;
    readonly resumedAt: number | null;
    readonly info: QmpMigrationInfo | undefined;
    readonly interrupted: IntermissionError | null;
  },
): Promise<QemuSwapVmmResult> {
  const { call, handle, from, started, oldSession, pausedBefore, stoppedAt, resumedAt } = done;
  // The new process runs the VM (or holds it paused): from here on there is no way back.
  const completedAt = resumedAt ?? Date.now();
  adoptProcess(handle, started);
  handle.pausedSince = pausedBefore;
  if (pausedBefore !== null) {
    const lease = readLease(handle.paths.lease);
    if (lease !== undefined) writeJsonAtomic(handle.paths.lease, { ...lease, pausedAt: pausedBefore });
  }
  handle.operation = null;
  // QEMU fills in its downtime figures just after the status turns `completed`: read them again
  // (and, for a swap that went forward as soon as the new process ran, wait for the source to
  // get there: its last writes were read by then).
  const stats = await finalMigrationInfo(oldSession, done.info);
  await retire(handle, from, oldSession);
  releaseIfClosed(ctx, handle);
  const downtimeMs = stoppedAt !== null && resumedAt !== null ? resumedAt - stoppedAt : 0;
  let interrupted: QemuSwapInterruption | null = null;
  if (done.interrupted !== null) {
    const settledAt = Date.now();
    interrupted = Object.freeze({
      reason: driverErrorReason(done.interrupted) ?? 'OPERATION_FAILED',
      message: done.interrupted.message,
      settledAt,
      lateMs: Math.max(0, settledAt - call.deadline),
    });
  }
  return Object.freeze({
    changed: true,
    fromVersion: from.vmmVersion,
    toVersion: done.targetVersion,
    generation: started.record.generation,
    downtimeMs,
    totalMs: completedAt - call.startedAt,
    startedAt: call.startedAt,
    completedAt,
    ramTransfer: done.ramTransfer,
    migration: migrationStats(stats),
    stoppedAt,
    resumedAt,
    interrupted,
  });
}

/**
 * The error of a swap that went forward but whose new process does not run the VM: it died or
 * ended in a state that cannot run (`VM_FAILED`), or it is still loading the state or held
 * paused at the end of the wait (the interruption's reason). Either way the VM is the new
 * process's (`rolledBack: false`) and the old one is gone.
 */
function forwardError(
  ctx: QemuContext,
  call: Call,
  handle: VmHandle,
  cause: IntermissionError,
  outcome: Exclude<ForwardOutcome, { kind: 'runs' }>,
  generation: number,
): IntermissionError {
  const what = `${call.operation} of VM ${handle.name} was interrupted (${cause.message}) after its point of no return`;
  const details = {
    rolledBack: false,
    switchedOver: true,
    generation,
    status: outcome.status ?? null,
    interruptedBy: driverErrorReason(cause) ?? null,
  };
  if (outcome.kind === 'failed') {
    return callError(
      ctx,
      call,
      'VM_FAILED',
      `${what}; its new QEMU process (generation ${generation}) then ${outcome.status === undefined ? 'died' : `ended in state ${outcome.status}`}, and the old one was not resumed (the new one may have run the guest): restart the VM`,
      { ...details, state: 'failed' },
      cause,
    );
  }
  return callError(
    ctx,
    call,
    driverErrorReason(cause) ?? 'OPERATION_FAILED',
    `${what}; the VM is its new QEMU process's (generation ${generation}), which is still ${outcome.status ?? 'not answering'}`,
    { ...details, state: outcome.status === undefined ? 'migrating' : vmStateOf(outcome.status) },
    cause,
  );
}

/**
 * Attaches the new process's tap queues and steers the guest's packets to queue `queue` (1: the new
 * process's; 0: the old one's); with `oldPid`, the helper then holds the old process's queues, to
 * detach them once the new process runs the VM ({@link AttachOutcome.release}). A queue that may
 * still be detached fails the swap when `required` (the default: before `migrate`, it is then
 * rolled back); past the point of no return it is only logged (the queues were attached before
 * `migrate` then). A steering failure is written to the new process's QEMU log and otherwise
 * ignored: the swap then works as before steering, with the stall that steering avoids.
 */
async function attachNewQueues(
  ctx: QemuContext,
  call: Call,
  handle: VmHandle,
  started: StartedProcess,
  queue: 0 | 1,
  options: { readonly oldPid?: number; readonly required?: boolean } = {},
): Promise<AttachOutcome> {
  const nics = handle.record.spec.nics ?? [];
  const outcome = await attachQueues(
    ctx.config.python,
    {
      pid: started.record.pid,
      dir: started.paths.dir,
      ...(options.oldPid === undefined ? {} : { oldPid: options.oldPid }),
    },
    nics.length,
    queue,
  );
  if (outcome.problem !== null) {
    try {
      appendFileSync(started.paths.qemuLog, `intermission: ${outcome.problem}\n`);
    } catch {
      // The log is for operators only.
    }
  }
  if ((options.required ?? true) && !outcome.attached) {
    outcome.release(false);
    throw callError(
      ctx,
      call,
      'OPERATION_FAILED',
      `the new QEMU process of VM ${handle.name}: ${outcome.problem ?? ''}`,
    );
  }
  return outcome;
}

/** Calls the test-only {@link QemuDriverConfig.onSwapPhase} hook, then honours an abort it caused. */
function swapPhase(
  ctx: QemuContext,
  call: Call,
  handle: VmHandle,
  phase: SwapPhase,
  from: ProcessRecord,
  started: StartedProcess,
): void {
  ctx.config.onSwapPhase?.({
    vm: handle.name,
    phase,
    sourcePid: from.pid,
    targetPid: started.record.pid,
    generation: started.record.generation,
  });
  if (call.signal.aborted) throw call.signal.reason;
}

/**
 * Waits for the outgoing migration to end, on the source's MIGRATION events (the `events`
 * capability), and reads the outcome with `query-migrate`: once at the start, once per event that
 * ends the migration, and every {@link MIGRATION_RECHECK_MS} in case an event was missed. Nothing
 * is asked while the migration runs: the switchover does not share the CPUs with our traffic.
 */
async function awaitMigration(
  ctx: QemuContext,
  handle: VmHandle,
  session: Session,
  call: Call,
): Promise<QmpMigrationInfo> {
  for (;;) {
    const mark = session.log.seq;
    const info = await session.qmp.execute('query-migrate', undefined, qmpOptions(call));
    if (info.status === 'completed') return info;
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw callError(
        ctx,
        call,
        'OPERATION_FAILED',
        `migration of VM ${handle.name} ${info.status}: ${info['error-desc'] ?? 'no reason given'}`,
        {
          migrationStatus: info.status,
        },
      );
    }
    await session.log.waitFor('MIGRATION', mark, {
      timeoutMs: Math.min(MIGRATION_RECHECK_MS, remaining(call)),
      signal: call.signal,
      accept: (event) => event.known && event.name === 'MIGRATION' && MIGRATION_ENDED.has(event.data.status),
    });
    if (call.signal.aborted) throw call.signal.reason;
  }
}

/** For a paused VM, which the destination does not start: waits until it has left `inmigrate`. */
async function awaitIncomingDone(ctx: QemuContext, session: Session, call: Call): Promise<void> {
  for (;;) {
    const status = await runStatus(session, call);
    if (status === 'paused' || status === 'running') return;
    if (status !== 'inmigrate') {
      throw callError(ctx, call, 'OPERATION_FAILED', `the new QEMU process ended in state ${status}`, { status });
    }
    await delay(5, undefined, { signal: call.signal });
  }
}

function migrationStats(info: QmpMigrationInfo): QemuMigrationStats {
  return Object.freeze({
    transferredBytes: info.ram?.transferred ?? 0,
    ramTotalBytes: info.ram?.total ?? 0,
    qemuDowntimeMs: info.downtime ?? null,
    qemuTotalMs: info['total-time'] ?? null,
    setupMs: info['setup-time'] ?? null,
  });
}
