/**
 * How the driver starts a resume watchdog process (`watchdog.ts`) and tells that it is up: its
 * command, its arguments (the one place that names them, beside the parser in `watchdog.ts`), and
 * the log entry it writes once connected to its monitor.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** What one watchdog process is given. */
export interface WatchdogArgs {
  /** The watchdog's own monitor of the process. */
  readonly monitor: string;
  /** `<vm>/lease.json`. */
  readonly lease: string;
  readonly maxPauseMs: number;
  readonly vm: string;
  /** `<vm>/lease-resumes.json`: where it records its resumes and the clock resync after each. */
  readonly leaseResumes: string;
  /** `<vm>/clock.lock`: held for a resync, shared with the driver. */
  readonly clockLock: string;
  /** The guest agent's socket; absent for a VM without one (its clock cannot be reached). */
  readonly guestAgent?: string;
}

/** The command-line arguments of `watchdog.ts` for `args`. */
export function watchdogArgv(args: WatchdogArgs): string[] {
  return [
    '--qmp',
    args.monitor,
    '--lease',
    args.lease,
    '--max-pause-ms',
    String(args.maxPauseMs),
    '--vm',
    args.vm,
    '--lease-resumes',
    args.leaseResumes,
    '--clock-lock',
    args.clockLock,
    ...(args.guestAgent === undefined ? [] : ['--guest-agent', args.guestAgent]),
  ];
}

/** Whether a watchdog's log shows it connected to its monitor (its `start` entry). */
export function watchdogStarted(logFile: string): boolean {
  try {
    return readFileSync(logFile, 'utf8').includes('"event":"start"');
  } catch {
    return false;
  }
}

/**
 * How to start the watchdog: `node watchdog.js` beside this module once built, or through tsx when
 * running from source.
 */
export function defaultWatchdogCommand(): string[] {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    const tsx: string = String(import.meta.resolve('tsx'));
    return [process.execPath, '--import', tsx, fileURLToPath(new URL('./watchdog.ts', here))];
  }
  return [process.execPath, fileURLToPath(new URL('./watchdog.js', here))];
}
