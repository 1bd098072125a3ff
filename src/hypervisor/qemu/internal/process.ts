/**
 * Processes that outlive the driver: QEMU and its resume watchdog run detached (their own session
 * and process group), with output to log files, so that an agent that exits or dies leaves them
 * running; a later driver finds them by pid and checks that each pid is still the process it
 * started (its command line names the VM's directory).
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

/** A detached process just started. */
export interface DetachedProcess {
  readonly pid: number;
  /** Whether it has exited, as far as this process saw (only for processes we spawned). */
  exited(): boolean;
}

/** Starts `command args` in its own session, stdout and stderr appended to `logFile`. */
export function spawnDetached(
  command: string,
  args: readonly string[],
  options: { readonly logFile: string; readonly cwd?: string; readonly env?: NodeJS.ProcessEnv },
): Promise<DetachedProcess> {
  const fd = openSync(options.logFile, 'a');
  return new Promise((resolve, reject) => {
    let exited = false;
    const child = spawn(command, args, {
      detached: true,
      stdio: ['ignore', fd, fd],
      cwd: options.cwd,
      env: options.env ?? process.env,
    });
    closeSync(fd);
    child.once('exit', () => {
      exited = true;
    });
    child.once('error', (error) => reject(error));
    child.once('spawn', () => {
      child.unref();
      const pid = child.pid;
      if (pid === undefined) {
        reject(new Error(`${command} started without a pid`));
        return;
      }
      resolve({ pid, exited: () => exited });
    });
  });
}

/**
 * Whether `pid` is a live process (a zombie counts as gone) and, when `needle` is given, whether its
 * command line contains it: a pid reused by an unrelated process is not ours.
 */
export function isAlive(pid: number, needle?: string): boolean {
  if (!(Number.isInteger(pid) && pid > 0)) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return false;
    if (needle !== undefined) {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle);
    }
  } catch {
    return existsSync(`/proc/${pid}`) && needle === undefined;
  }
  return true;
}

/** Whether any process (a zombie included) has this pid. */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Sends `signal` to the process group led by `pid` (and to `pid` itself); ignores a missing one. */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  if (!(Number.isInteger(pid) && pid > 0)) return;
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, signal);
    } catch {
      // already gone
    }
  }
}

/** Waits until `pid` is gone; false when it still runs after `timeoutMs`. */
export async function waitGone(pid: number, timeoutMs: number, needle?: string): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  while (isAlive(pid, needle)) {
    if (performance.now() >= end) return false;
    await delay(10);
  }
  return true;
}

/**
 * Stops a process group: SIGTERM, then SIGKILL after `graceMs`; resolves once `pid` is gone (or
 * after the SIGKILL had a second to work). `needle` guards against a reused pid.
 */
export async function stopGroup(
  pid: number,
  options: { readonly graceMs: number; readonly needle?: string },
): Promise<void> {
  if (!isAlive(pid, options.needle)) {
    // The leader is gone; what is left of its group (socat children of QEMU) goes too. A pid that
    // now belongs to another process is left alone.
    if (!pidExists(pid)) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // no such group
      }
    }
    return;
  }
  signalGroup(pid, 'SIGTERM');
  if (await waitGone(pid, options.graceMs, options.needle)) {
    signalGroup(pid, 'SIGKILL');
    return;
  }
  signalGroup(pid, 'SIGKILL');
  await waitGone(pid, 1000, options.needle);
}

/** The last `bytes` of a log file, for error messages; empty when it cannot be read. */
export function logTail(path: string, bytes = 2000): string {
  try {
    const text = readFileSync(path, 'utf8');
    return text.slice(-bytes).trim();
  } catch {
    return '';
  }
}
