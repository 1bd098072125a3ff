/**
 * The processes of a VM beyond starting them (which the driver class does): the resume watchdog
 * beside each QEMU process, making a started process the VM's current one, and ending processes.
 */
import { rmSync } from 'node:fs';
import { IntermissionError } from '../../../domain/index.js';
import { defaultWatchdogCommand, watchdogArgv } from '../watchdog-command.js';
import { writeRecord, type QemuContext, type Session, type StartedProcess, type VmHandle } from './context.js';
import { processPaths, type ProcessPaths, type ProcessRecord } from './layout.js';
import { isAlive, spawnDetached, stopGroup } from './process.js';

/** Bound on each step of a rollback or a clean-up, which run without the caller's deadline. */
export const CLEANUP_STEP_MS = 5_000;
/** How long a process asked to quit gets before it is killed. */
const QUIT_GRACE_MS = 3_000;

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
