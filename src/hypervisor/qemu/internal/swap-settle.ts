/**
 * Settling a swap that was interrupted after `migrate` may have reached the source: the one moment
 * at which two processes could run one guest on the RAM they share. The new process is frozen
 * while the source is asked how far the migration got, and the swap then goes forward (the new
 * process keeps the VM; the old one is never resumed) or back (the new process is killed). A live
 * swap and a new driver adopting a half-done swap follow the same rule.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { QmpClient, type QmpMigrationInfo, type QmpRunState } from '../../../qmp/index.js';
import type { Session } from './context.js';
import { EventLog } from './event-log.js';
import type { ProcessPaths } from './layout.js';
import { isAlive, signalGroup, signalProcess, waitGone, waitStopped } from './process.js';
import { MONITOR_CONNECT_TIMEOUT_MS } from './session.js';
import { CLEANUP_STEP_MS } from './vm-process.js';

/** Migration states in which the source still moves state (and may be cancelled). */
export const ACTIVE_MIGRATION: ReadonlySet<string> = new Set([
  'setup',
  'active',
  'pre-switchover',
  'device',
  'wait-unplug',
  'postcopy-active',
]);

/** How an interrupted swap ends: on the new process (`forward`) or back on the old one. */
export type SwapVerdict = 'forward' | 'back';

/** The new process of an interrupted swap. */
export interface SwapTarget {
  readonly pid: number;
  readonly paths: ProcessPaths;
  /** The driver's session on it, if it has one. */
  readonly session: Session | undefined;
  /** A mark in the session's events taken while the process was still waiting for the state. */
  readonly mark: number;
}

/** The old process of an interrupted swap. */
export interface SwapSource {
  readonly pid: number;
  readonly paths: ProcessPaths;
  /** Runs `body` on a monitor of the process (the driver's session, else a short-lived one). */
  readonly monitor: <T>(body: (qmp: QmpClient) => Promise<T>) => Promise<T>;
}

/** What a swap that went forward found in its new process. */
export type ForwardOutcome =
  | {
      readonly kind: 'runs';
      /** `running`, or `paused` for a VM paused before the swap. */
      readonly status: QmpRunState;
      /** Its RESUME (as this driver saw it), for a VM that runs. */
      readonly resumedAt: number | null;
    }
  /** Alive but, at the end of the wait, still loading the state (`inmigrate`) or held paused. */
  | { readonly kind: 'stuck'; readonly status: QmpRunState | undefined }
  /** Gone, or in a state that cannot run the VM. */
  | { readonly kind: 'failed'; readonly status: QmpRunState | undefined };

/**
 * How long the driver waits for a process it sent SIGSTOP to have stopped (all its threads)
 * before it decides anyway: delivery takes microseconds unless a thread sits in the kernel.
 */
const FREEZE_CONFIRM_MS = 1_000;
/**
 * How long, after the freeze, the driver lets its event loop read what the frozen process wrote
 * before it stopped. QEMU writes RESUME to every monitor before it starts the vCPUs, so if the new
 * process ran the guest at all, its RESUME is in the socket by then.
 */
const FREEZE_DRAIN_MS = 20;
/**
 * How long a swap that goes forward waits for the new process to leave `inmigrate` (and to run
 * after a `cont`): it has the whole state by then, or almost, so this covers a loaded host only.
 */
const FORWARD_SETTLE_MS = 10_000;
/**
 * How long a source gets to answer while the new process is frozen. A source that completed has
 * nothing left to send and answers at once; one that does not answer is most likely blocked
 * sending its device state to the frozen process (QEMU holds its main lock while it does, and its
 * monitors wait for that lock), so it has not completed: the swap goes back, and killing the new
 * process unblocks it (its migration fails, and QEMU resumes the VM by itself).
 */
const FROZEN_SOURCE_ANSWER_MS = 1_000;
/** Migration states of a source whose migration has not ended yet (`cancelling` included). */
const UNSETTLED_MIGRATION = new Set([...ACTIVE_MIGRATION, 'cancelling']);

/**
 * Decides how a swap interrupted after `migrate` may have been sent ends, the only moment at which
 * two processes could run one guest on the RAM they share. The new process is frozen first
 * (SIGSTOP), so that it cannot start the guest, or run it further, while the decision is made:
 *
 * - forward when the new process has left `inmigrate` (it loaded the state), when it sent RESUME
 *   before it stopped (it ran the guest), or when the source reports `completed`, before or in
 *   answer to `migrate_cancel` (which does nothing to a migration that completed meanwhile): the
 *   old process must then never run the VM again;
 * - back otherwise: the migration is cancelled, so the source holds the only state that counts.
 *
 * The new process leaves here running again (forward) or killed (back), never frozen, whatever
 * fails on the way. A source that does not answer while alive is taken as not completed (back,
 * see {@link FROZEN_SOURCE_ANSWER_MS}); one that is gone leaves the new process as the VM's only
 * chance (forward). Never rejects.
 */
export async function settleInterruptedSwap(target: SwapTarget, source: SwapSource): Promise<SwapVerdict> {
  const { pid } = target;
  if (!isAlive(pid, target.paths.qmp)) return decideOnSource(source);
  const observer = await monitorOfTarget(target);
  // Only a fresh monitor asks the state: one that left `inmigrate` has the VM.
  if (observer?.status !== undefined && observer.status !== 'inmigrate') {
    await observer.close();
    return 'forward';
  }
  let verdict: SwapVerdict | undefined;
  signalProcess(pid, 'SIGSTOP');
  try {
    await waitStopped(pid, FREEZE_CONFIRM_MS);
    await delay(FREEZE_DRAIN_MS);
    if (observer?.log.find('RESUME', observer.mark) !== undefined) {
      verdict = 'forward';
    } else {
      verdict = await decideOnSource(source);
    }
    return verdict;
  } finally {
    await observer?.close().catch(() => undefined);
    if (verdict === 'back') {
      signalGroup(pid, 'SIGKILL');
      await waitGone(pid, CLEANUP_STEP_MS);
    }
    // Forward, an unexpected failure above, or a kill that did not take: it runs again.
    if (isAlive(pid, target.paths.qmp)) signalProcess(pid, 'SIGCONT');
  }
}

/**
 * The source's side of {@link settleInterruptedSwap}, with the new process frozen: `forward` when
 * the migration completed; otherwise `migrate_cancel`, wait for the migration to end, and
 * `forward` only if it completed after all. A live source that does not answer is `back`: see
 * {@link FROZEN_SOURCE_ANSWER_MS}.
 */
export async function decideOnSource(source: SwapSource): Promise<SwapVerdict> {
  let status: string | undefined;
  try {
    status = await source.monitor(async (qmp) => {
      const options = { timeoutMs: CLEANUP_STEP_MS };
      let now = outgoingStatus(await qmp.execute('query-migrate', undefined, { timeoutMs: FROZEN_SOURCE_ANSWER_MS }));
      if (now !== undefined && ACTIVE_MIGRATION.has(now)) {
        await qmp.execute('migrate_cancel', undefined, options);
      }
      const end = Date.now() + CLEANUP_STEP_MS;
      while (now !== undefined && UNSETTLED_MIGRATION.has(now) && Date.now() < end) {
        await delay(10);
        now = outgoingStatus(await qmp.execute('query-migrate', undefined, options));
      }
      return now;
    });
  } catch {
    return isAlive(source.pid, source.paths.qmp) ? 'back' : 'forward';
  }
  return status === 'completed' ? 'forward' : 'back';
}

/**
 * Finishes a swap that went forward: waits (at most {@link FORWARD_SETTLE_MS}) for the new process
 * to leave `inmigrate`, and `cont`s it when it settled paused though the VM ran before the swap.
 * Runs without the caller's deadline. Never rejects.
 */
export async function settleForward(target: SwapTarget, wasPaused: boolean): Promise<ForwardOutcome> {
  const { pid, paths } = target;
  if (!isAlive(pid, paths.qmp)) return { kind: 'failed', status: undefined };
  const monitor = await monitorOfTarget(target);
  if (monitor === undefined) {
    return isAlive(pid, paths.qmp) ? { kind: 'stuck', status: undefined } : { kind: 'failed', status: undefined };
  }
  const options = { timeoutMs: CLEANUP_STEP_MS };
  const end = Date.now() + FORWARD_SETTLE_MS;
  let contSent = false;
  try {
    for (;;) {
      if (!isAlive(pid, paths.qmp)) return { kind: 'failed', status: undefined };
      const status = await monitor.qmp
        .execute('query-status', undefined, options)
        .then((s) => s.status)
        .catch(() => undefined);
      if (status === 'running') {
        const resume = monitor.log.find('RESUME', monitor.mark);
        return { kind: 'runs', status, resumedAt: resume?.timestampMs ?? Date.now() };
      }
      if (status === 'paused' && wasPaused) return { kind: 'runs', status, resumedAt: null };
      if (status === 'paused' && !contSent) {
        // Loaded, but not started (the source's run state said paused): it was running before.
        contSent = true;
        await monitor.qmp.execute('cont', undefined, options).catch(() => undefined);
        continue;
      }
      if (status !== undefined && status !== 'inmigrate' && status !== 'paused') return { kind: 'failed', status };
      if (Date.now() >= end) return { kind: 'stuck', status };
      await delay(20);
    }
  } finally {
    await monitor.close().catch(() => undefined);
  }
}

/** A monitor on a process and its events since `mark`; `close` lets go of what was opened for it. */
interface ProcessMonitor {
  readonly qmp: QmpClient;
  readonly log: EventLog;
  readonly mark: number;
  /** Its run state when a fresh monitor was opened; undefined on the driver's own session. */
  readonly status: QmpRunState | undefined;
  readonly close: () => Promise<void>;
}

/**
 * The new process's monitor: the driver's session on it while open (with the swap's mark, so
 * that events from before the interruption count), else a fresh one ({@link observeProcess}).
 */
async function monitorOfTarget(target: SwapTarget): Promise<ProcessMonitor | undefined> {
  const { session } = target;
  if (session !== undefined && !session.qmp.closed) {
    return { qmp: session.qmp, log: session.log, mark: target.mark, status: undefined, close: () => Promise.resolve() };
  }
  return observeProcess(target.paths.qmp);
}

/** A fresh monitor on a process: its run state now, and its events from before that answer on. */
async function observeProcess(path: string): Promise<(ProcessMonitor & { readonly status: QmpRunState }) | undefined> {
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect({ path, timeoutMs: MONITOR_CONNECT_TIMEOUT_MS });
  } catch {
    return undefined;
  }
  const log = new EventLog(qmp);
  const mark = log.seq;
  try {
    const { status } = await qmp.execute('query-status', undefined, { timeoutMs: CLEANUP_STEP_MS });
    return { qmp, log, mark, status, close: () => qmp.close() };
  } catch {
    await qmp.close();
    return undefined;
  }
}

/**
 * The source's final `query-migrate` (QEMU fills in its downtime figures just after the status
 * turns `completed`), waiting up to {@link CLEANUP_STEP_MS} for a migration that has not ended
 * yet; `fallback` when the source does not tell.
 */
export async function finalMigrationInfo(
  session: Session,
  fallback: QmpMigrationInfo | undefined,
): Promise<QmpMigrationInfo> {
  const end = Date.now() + CLEANUP_STEP_MS;
  try {
    for (;;) {
      const info = await session.qmp.execute('query-migrate', undefined, { timeoutMs: CLEANUP_STEP_MS });
      const status = outgoingStatus(info);
      if (status === 'completed') return info;
      if (status === undefined || !UNSETTLED_MIGRATION.has(status) || Date.now() >= end) break;
      await delay(10);
    }
  } catch {
    // the source does not answer (or the driver closed its monitor)
  }
  return fallback ?? {};
}

/**
 * The state of a process's outgoing migration from its `query-migrate`. QEMU shows the incoming
 * migration's state there while no outgoing one was started, so a process that was itself the new
 * process of an earlier swap reports `completed` until it migrates out; only an outgoing migration
 * that completed reports timings (`total-time`), and that tells them apart.
 */
export function outgoingStatus(info: QmpMigrationInfo): string | undefined {
  if (info.status === 'completed' && info['total-time'] === undefined) return 'none';
  return info.status;
}
