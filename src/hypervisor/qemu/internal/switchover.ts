/**
 * Preparing the CPUs for a swap's switchover: the new process's watchdog settled first, and the
 * switchover's threads put ahead of everything else while it runs.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { watchdogStarted } from '../watchdog-command.js';
import type { Call, QemuContext, StartedProcess } from './context.js';
import { remaining } from './calls.js';
import { cpuTimeNs, isAlive, setRealtime, setThreadPriority, threadPriority } from './process.js';

/** How long a swap waits for the new process's watchdog to connect and settle before the switchover. */
const WATCHDOG_READY_TIMEOUT_MS = 5_000;
/** A watchdog is settled once its CPU time grew by less than this… */
const WATCHDOG_BUSY_NS = 1_000_000;
/** …for this long. */
const WATCHDOG_QUIET_MS = 60;

/**
 * Puts the main threads of `pids` ahead on the CPUs for a switchover: the configured
 * {@link QemuDriverConfig.switchoverNice}, and with `realtime` (in-place swaps, whose work in the
 * switchover is bounded) SCHED_FIFO at {@link QemuDriverConfig.switchoverRealtime}. Threads a
 * boosted main thread starts meanwhile (the old process's migration thread) inherit it. Returns
 * what puts every thread of those processes back: SCHED_OTHER, and the nice value the main thread
 * had. Best effort: never rejects; without the privilege nothing changes.
 */
export async function boostSwitchover(
  ctx: QemuContext,
  pids: readonly number[],
  realtime: boolean,
): Promise<() => Promise<void>> {
  const { switchoverNice: nice, switchoverRealtime } = ctx.config;
  const fifo = realtime ? switchoverRealtime : null;
  const before = pids.map((pid) => ({ pid, priority: threadPriority(pid) }));
  for (const { pid, priority } of before) {
    if (priority === undefined) continue;
    if (nice !== null) setThreadPriority(pid, nice, ({ tid }) => tid === pid);
    if (fifo !== null) await setRealtime(pid, fifo);
  }
  let restored = false;
  return async () => {
    if (restored) return;
    restored = true;
    for (const { pid, priority } of before) {
      if (priority === undefined) continue;
      if (fifo !== null) await setRealtime(pid, null);
      if (nice !== null) setThreadPriority(pid, priority);
    }
  };
}

/**
 * Waits until the watchdog of a process just started has connected to its monitor (its log's
 * `start` line) and settled (its CPU time stopped growing: a Node process keeps compiling and
 * collecting for a while after it starts), within half of what is left of the call and at most
 * {@link WATCHDOG_READY_TIMEOUT_MS}. A watchdog that takes longer does not hold the swap up
 * further. Returns whether it settled.
 */
export async function watchdogReady(started: StartedProcess, call: Call): Promise<boolean> {
  const end = Date.now() + Math.min(remaining(call) / 2, WATCHDOG_READY_TIMEOUT_MS);
  const { watchdogPid } = started.record;
  let connected = false;
  let last: { at: number; cpuNs: number } | undefined;
  for (;;) {
    if (!isAlive(watchdogPid, started.paths.watchdogQmp)) return false;
    connected ||= watchdogStarted(started.paths.watchdogLog);
    if (connected) {
      const cpuNs = cpuTimeNs(watchdogPid);
      const at = performance.now();
      if (cpuNs === undefined) return true;
      if (last === undefined || cpuNs - last.cpuNs > WATCHDOG_BUSY_NS) {
        last = { at, cpuNs };
      } else if (at - last.at >= WATCHDOG_QUIET_MS) {
        return true;
      }
    }
    if (Date.now() >= end) return false;
    await delay(10, undefined, { signal: call.signal });
  }
}
