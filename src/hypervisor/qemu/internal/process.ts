/**
 * Processes that outlive the driver: QEMU and its resume watchdog run detached (their own session
 * and process group), with output to log files, so that an agent that exits or dies leaves them
 * running; a later driver finds them by pid and checks that each pid is still the process it
 * started (its command line names the VM's directory).
 */
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
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

/**
 * The live processes whose arguments satisfy `match`, from a scan of /proc: how a process is found
 * whose pid was never recorded (its driver died between starting it and writing the pid down).
 */
export function findProcesses(match: (args: readonly string[]) => boolean): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let args: string[];
    try {
      args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile, or not ours to read
    }
    if (match(args) && isAlive(Number(entry))) found.push(Number(entry));
  }
  return found;
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

/**
 * Sets the scheduling priority (nice value) of threads of process `pid`: on Linux `setpriority`
 * applies to one thread, so each thread listed under `/proc/PID/task` whose id and name
 * (`comm`, e.g. `CPU 0/TCG`, `live_migration`) `select` accepts is set. Best effort: a thread or
 * process that is gone, or a priority the caller may not set, is skipped. Returns the threads set.
 */
export function setThreadPriority(
  pid: number,
  priority: number,
  select: (thread: { readonly tid: number; readonly name: string }) => boolean = () => true,
): number[] {
  if (!(Number.isInteger(pid) && pid > 0)) return [];
  let tids: number[];
  try {
    tids = readdirSync(`/proc/${pid}/task`).map(Number).filter(Number.isInteger);
  } catch {
    return [];
  }
  const set: number[] = [];
  for (const tid of tids) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      if (!select({ tid, name })) continue;
      setPriority(tid, priority);
      set.push(tid);
    } catch {
      // gone, or not allowed
    }
  }
  return set;
}

/** The nice value of thread `tid` (a process's main thread has the process's id); undefined if gone. */
export function threadPriority(tid: number): number | undefined {
  if (!(Number.isInteger(tid) && tid > 0)) return undefined;
  try {
    return getPriority(tid);
  } catch {
    return undefined;
  }
}

/**
 * CPU time used so far by all threads of process `pid`, in nanoseconds (`/proc/PID/schedstat`
 * of each thread under `task/`); undefined when it cannot be read.
 */
export function cpuTimeNs(pid: number): number | undefined {
  if (!(Number.isInteger(pid) && pid > 0)) return undefined;
  try {
    let total = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {
        // a thread that ended meanwhile
      }
    }
    return Number.isFinite(total) ? total : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Sets the scheduling policy of process `pid` with util-linux `chrt`: its main thread to SCHED_FIFO
 * at `priority` (threads it starts later inherit it), or, with null, every thread back to
 * SCHED_OTHER. Best effort: resolves false when `chrt` is missing, refuses, or takes over 2 s.
 */
export function setRealtime(pid: number, priority: number | null): Promise<boolean> {
  if (!(Number.isInteger(pid) && pid > 0)) return Promise.resolve(false);
  const args = priority === null ? ['-a', '-o', '-p', '0', String(pid)] : ['-f', '-p', String(priority), String(pid)];
  return new Promise((resolve) => {
    execFile('chrt', args, { timeout: 2_000 }, (error) => resolve(error === null));
  });
}

/** Sends `signal` to the process `pid` alone (not its group); ignores a missing one. */
export function signalProcess(pid: number, signal: NodeJS.Signals): void {
  if (!(Number.isInteger(pid) && pid > 0)) return;
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Waits until every thread of `pid` is stopped (`T` in its `stat`); false after `timeoutMs`. */
export async function waitStopped(pid: number, timeoutMs: number): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (allThreadsStopped(pid)) return true;
    if (performance.now() >= end || !isAlive(pid)) return false;
    await delay(2);
  }
}

/** Whether every thread of `pid` is stopped (by a signal, or traced). */
export function allThreadsStopped(pid: number): boolean {
  try {
    const tids = readdirSync(`/proc/${pid}/task`);
    return (
      tids.length > 0 &&
      tids.every((tid) => {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const state = stat.charAt(stat.lastIndexOf(')') + 2);
        return state === 'T' || state === 't';
      })
    );
  } catch {
    // a thread that ended meanwhile, or the process
    return false;
  }
}
