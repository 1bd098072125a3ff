/**
 * The processes of a VM: starting a QEMU process (through the tap wrapper) and the resume watchdog
 * beside it, making a started process the VM's current one, and ending processes.
 */
import { existsSync, rmSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { IntermissionError } from '../../../domain/index.js';
import { defaultWatchdogCommand, watchdogArgv } from '../watchdog-command.js';
import { buildQemuArgv } from './argv.js';
import {
  writeRecord,
  type Call,
  type QemuContext,
  type Session,
  type StartedProcess,
  type VmHandle,
} from './context.js';
import { callError } from './errors.js';
import { ensureDir, processPaths, type ProcessPaths, type ProcessRecord } from './layout.js';
import { isAlive, logTail, signalGroup, spawnDetached, stopGroup, waitGone } from './process.js';
import { connectMonitor } from './session.js';
import { ensureTaps, wrapWithTaps } from './tap.js';

/** Bound on each step of a rollback or a clean-up, which run without the caller's deadline. */
export const CLEANUP_STEP_MS = 5_000;
/** How long a process asked to quit gets before it is killed. */
const QUIT_GRACE_MS = 3_000;

/**
 * Starts a QEMU process for the VM (booting, or waiting for an incoming migration) and its resume
 * watchdog, and connects the driver's monitor. On failure the process is killed again.
 */
export async function startProcess(
  ctx: QemuContext,
  handle: VmHandle,
  process: Pick<ProcessRecord, 'generation' | 'vmmVersion' | 'binary'>,
  incoming: boolean,
  call: Call,
): Promise<StartedProcess> {
  const paths = processPaths(handle.paths.dir, process.generation);
  rmSync(paths.dir, { recursive: true, force: true });
  ensureDir(paths.dir);
  const argv = buildQemuArgv({
    config: ctx.config,
    spec: handle.record.spec,
    vmPaths: handle.paths,
    paths,
    incoming,
    dataDir: ctx.config.buildDataDirs[process.vmmVersion] ?? null,
  });
  // Tenant NICs: the taps exist (a host restart removes them), and QEMU starts through the
  // wrapper that hands it its own queue of each (see internal/tap.ts).
  const nics = handle.record.spec.nics ?? [];
  let child: { pid: number; exited(): boolean };
  try {
    await ensureTaps(nics);
    // A swap's new process gets its queues detached, attached just before the switchover.
    const { command, args } = wrapWithTaps(ctx.config.python, process.binary, argv, nics, { detached: incoming });
    child = await spawnDetached(command, args, { logFile: paths.qemuLog, cwd: paths.dir });
  } catch (error) {
    throw callError(ctx, call, 'OPERATION_FAILED', `cannot start ${process.binary}: ${String(error)}`, {}, error);
  }
  // The watchdog starts at once, beside QEMU (it retries until its monitor exists): a Node process
  // takes a while to start, which then overlaps QEMU's own start.
  let watchdogPid = 0;
  try {
    watchdogPid = await startWatchdog(ctx, handle, paths);
    for (;;) {
      if (existsSync(paths.qmp) && existsSync(paths.watchdogQmp)) break;
      if (child.exited() || !isAlive(child.pid)) {
        throw callError(
          ctx,
          call,
          'OPERATION_FAILED',
          `QEMU for VM ${handle.name} exited at start: ${logTail(paths.qemuLog)}`,
          {
            qemuLog: paths.qemuLog,
          },
        );
      }
      await delay(5, undefined, { signal: call.signal });
    }
    const session = await connectMonitor(handle, paths.qmp, process.generation, call);
    const record: ProcessRecord = { ...process, pid: child.pid, startedAt: Date.now(), watchdogPid };
    return { record, paths, session };
  } catch (error) {
    signalGroup(child.pid, 'SIGKILL');
    if (watchdogPid > 0) signalGroup(watchdogPid, 'SIGKILL');
    await waitGone(child.pid, 2_000);
    throw error;
  }
}

/** Starts the resume watchdog of one process; returns its pid. */
export async function startWatchdog(ctx: QemuContext, handle: VmHandle, paths: ProcessPaths): Promise<number> {
  const [command, ...prefix] = ctx.config.watchdogCommand ?? defaultWatchdogCommand();
  if (command === undefined) throw new IntermissionError('INVALID_INPUT', 'watchdog.command is empty');
  const child = await spawnDetached(
    command,
    [
      ...prefix,
      // After a resume of its own, the watchdog resynchronises the guest clock (invariant 4).
      ...watchdogArgv({
        monitor: paths.watchdogQmp,
        lease: handle.paths.lease,
        maxPauseMs: ctx.config.watchdogMaxPauseMs,
        vm: handle.name,
        leaseResumes: handle.paths.leaseResumes,
        clockLock: handle.paths.clockLock,
        ...(handle.record.spec.guestAgent ? { guestAgent: paths.guestAgent } : {}),
      }),
    ],
    { logFile: paths.watchdogLog, cwd: paths.dir },
  );
  return child.pid;
}

/** Makes a started process the VM's current one, on disk and in memory. */
export function adoptProcess(handle: VmHandle, started: StartedProcess): void {
  writeRecord(handle, { ...handle.record, current: started.record, pending: null });
  void handle.session?.qmp.close();
  handle.session = started.session;
  void handle.agent?.close();
  handle.agent = undefined;
}

/** Quits a process of the VM (killing it when it does not go) and its watchdog; removes its dir. */
export async function retire(handle: VmHandle, process: ProcessRecord, session: Session | undefined): Promise<void> {
  const paths = processPaths(handle.paths.dir, process.generation);
  if (isAlive(process.pid, paths.qmp)) {
    if (session !== undefined && !session.qmp.closed) {
      await session.qmp.execute('quit', undefined, { timeoutMs: CLEANUP_STEP_MS }).catch(() => undefined);
    }
    await stopGroup(process.pid, { graceMs: QUIT_GRACE_MS, needle: paths.qmp });
  } else {
    await stopGroup(process.pid, { graceMs: 0, needle: paths.qmp });
  }
  if (session !== undefined) await session.qmp.close();
  // The watchdog exits with its monitor; this is for one that did not.
  await stopGroup(process.watchdogPid, { graceMs: 1_000, needle: paths.watchdogQmp });
  rmSync(paths.dir, { recursive: true, force: true });
}

/** Kills a VMM process that must not run the VM (no grace: it may hold the VM's state), and its watchdog. */
export async function killProcess(
  process: Pick<ProcessRecord, 'pid' | 'watchdogPid'>,
  paths: ProcessPaths,
): Promise<void> {
  await stopGroup(process.pid, { graceMs: 0, needle: paths.qmp });
  await stopGroup(process.watchdogPid, { graceMs: 0, needle: paths.watchdogQmp });
}
