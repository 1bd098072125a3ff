/**
 * The guest clock of a QEMU VM, shared by the two parties that resume it: the driver (the agent's
 * resume) and the resume watchdog (the lease's resume, when the agent is gone or late). Whoever
 * resumes a VM resynchronises its clock (invariant 4), both through the VM's one guest-agent
 * socket, so that:
 *
 * - the resync itself is one function ({@link resyncRepeating} over {@link resyncGuestClock}), for
 *   the driver over its calls and for the watchdog over a bare {@link GuestAgentClient};
 * - a resync holds the VM's clock lock (`<vm>/clock.lock`, {@link withClockLock}) from its first
 *   reading to its last, so that the watchdog's and the agent's never interleave (each would step
 *   the clock from a reading the other made stale) nor wait on each other at the single-client
 *   guest-agent socket call by call;
 * - the lease's resumes and their resyncs are recorded in `<vm>/lease-resumes.json`
 *   ({@link recordLeaseResume}), written before the lock is released: an agent that takes the lock
 *   after a lease's resync reads its record ({@link readLeaseResumes}).
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { coerceError, type Clock } from '../../domain/index.js';
import { GuestAgentClient } from '../../qmp/index.js';
import { resyncGuestClock } from '../clock-sync.js';
import {
  LEASE_RESUMES_KEPT,
  type GuestTimeResult,
  type HypervisorDriver,
  type LeaseResume,
  type ResyncClockOptions,
  type ResyncClockResult,
  type SetGuestTimeResult,
} from '../driver.js';
import { isAlive } from './internal/process.js';
import { readJson, writeJsonAtomic } from './internal/layout.js';

/**
 * Clock steps a resync may take. On a busy guest about one step in three lands a scheduler tick
 * late (4-9 ms under TCG: qemu-ga waits for the tenant's process to yield the vCPU), and the others
 * within a fraction of a millisecond; five give about 2 in 1,000 resyncs left off by a tick. Beyond
 * that the residual is reported as it is (the agent decides what to do with it).
 */
export const RESYNC_ATTEMPTS = 5;

/**
 * How long a resync waits for the clock lock held by a live process. A resync takes well under a
 * second, and the lease's one at most {@link LEASE_RESYNC_TIMEOUT_MS}; a holder that keeps it longer
 * is hung, and a clock left behind is worse than two resyncs at once (each is correct on its own).
 */
export const CLOCK_LOCK_WAIT_MS = 20_000;

/**
 * Bound on the watchdog's resync after a lease resume (guest-agent calls of 5 s at most each; a
 * guest whose agent does not answer within this gets its clock from the agent that adopts it).
 */
export const LEASE_RESYNC_TIMEOUT_MS = 15_000;

/** Bound on one guest-agent call of the watchdog's resync. */
const AGENT_CALL_TIMEOUT_MS = 5_000;

/**
 * {@link resyncGuestClock}, stepped again (up to {@link RESYNC_ATTEMPTS} steps in all) while the
 * residual is larger than the round trip that measured it: a busy guest may run qemu-ga late, and
 * the value then lands late by that much. `offsetBeforeMs` is the first measurement.
 */
export async function resyncRepeating(
  once: (options: { readonly toleranceMs?: number }) => Promise<ResyncClockResult>,
  toleranceMs: number | undefined,
): Promise<ResyncClockResult> {
  const first = await once(toleranceMs === undefined ? {} : { toleranceMs });
  let result = first;
  // Once a step was taken, its aim is the round trip; the tolerance only decides whether to step.
  for (
    let attempt = 1;
    attempt < RESYNC_ATTEMPTS && result.stepped && Math.abs(result.residualMs) > result.roundTripMs;
    attempt++
  ) {
    const again = await once({ toleranceMs: 0 });
    result = Object.freeze({ ...again, offsetBeforeMs: first.offsetBeforeMs, stepped: true });
  }
  return result;
}

/**
 * The two guest-clock primitives over a bare guest-agent client, for a process without a driver
 * (the watchdog). Same measurements as the driver's `guestTime`/`setGuestTime`.
 */
export function guestAgentClock(agent: GuestAgentClient): Pick<HypervisorDriver, 'guestTime' | 'setGuestTime'> {
  const options = (o: { deadline?: number; signal?: AbortSignal }) => ({
    timeoutMs: Math.max(1, Math.min(AGENT_CALL_TIMEOUT_MS, (o.deadline ?? Infinity) - Date.now())),
    ...(o.signal === undefined ? {} : { signal: o.signal }),
    now: () => Date.now(),
  });
  return {
    async guestTime(o): Promise<GuestTimeResult> {
      const reading = await agent.getTime(options(o));
      return Object.freeze({
        guestMs: reading.guestTimeMs,
        hostMs: reading.hostMidpointMs,
        offsetMs: reading.offsetMs,
        roundTripMs: reading.roundTripMs,
      });
    },
    async setGuestTime(o): Promise<SetGuestTimeResult> {
      const askedAt = performance.now();
      const result = await agent.setTime({ ...options(o), timeMs: () => o.timeMs + (performance.now() - askedAt) });
      return Object.freeze({ completedAt: result.hostReceivedMs, roundTripMs: result.roundTripMs });
    },
  };
}

/**
 * Runs `body` holding the VM's clock lock: a file created exclusively, naming its holder's pid. A
 * lock whose holder died is taken over; one held by a live process is waited for, up to `waitMs`,
 * and then `body` runs anyway (see {@link CLOCK_LOCK_WAIT_MS}).
 */
export async function withClockLock<T>(
  path: string,
  body: () => Promise<T>,
  options: { readonly waitMs?: number } = {},
): Promise<T> {
  const token = `${process.pid} ${randomBytes(6).toString('hex')}`;
  const end = Date.now() + (options.waitMs ?? CLOCK_LOCK_WAIT_MS);
  let held = false;
  for (;;) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      try {
        writeSync(fd, token);
      } finally {
        closeSync(fd);
      }
      held = true;
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') break; // no lock to be had: run unlocked
    }
    const holder = Number(readText(path)?.split(' ')[0]);
    // A holder that died, or a file caught half written (no pid yet: give it one more look).
    if (Number.isInteger(holder) && holder > 0 && !isAlive(holder)) {
      rmSync(path, { force: true });
      continue;
    }
    if (Date.now() >= end) break;
    await delay(20);
  }
  try {
    return await body();
  } finally {
    if (held && readText(path) === token) rmSync(path, { force: true });
  }
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Reads `<vm>/lease-resumes.json`; entries that do not parse are left out. */
export function readLeaseResumes(path: string): LeaseResume[] {
  const value = readJson(path);
  if (!Array.isArray(value)) return [];
  return value.filter(isLeaseResume);
}

/** Appends a lease resume to `<vm>/lease-resumes.json`, keeping the newest {@link LEASE_RESUMES_KEPT}. */
export function recordLeaseResume(path: string, entry: LeaseResume): void {
  writeJsonAtomic(path, [...readLeaseResumes(path), entry].slice(-LEASE_RESUMES_KEPT));
}

function isLeaseResume(value: unknown): value is LeaseResume {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    typeof v.vm === 'string' &&
    typeof v.pausedAt === 'number' &&
    typeof v.resumedAt === 'number' &&
    (v.clock === null ||
      (typeof v.clock === 'object' && typeof (v.clock as ResyncClockResult).residualMs === 'number')) &&
    (v.clockError === null || typeof v.clockError === 'object')
  );
}

/** Options of {@link resyncAfterLease}. */
export interface LeaseResyncOptions {
  readonly vm: string;
  /** The guest agent's socket of the process that was resumed. */
  readonly guestAgentPath: string;
  readonly lockPath: string;
  readonly recordPath: string;
  readonly pausedAt: number;
  readonly resumedAt: number;
  /** The host wall clock the guest is set to. */
  readonly clock: Clock;
  /** Default {@link LEASE_RESYNC_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
}

/**
 * What the watchdog does after its lease resumed a VM: resynchronises the guest clock under the
 * clock lock and records the resume with the resync (or its failure) before it lets go of the lock.
 * Never rejects.
 */
export async function resyncAfterLease(options: LeaseResyncOptions): Promise<LeaseResume> {
  return withClockLock(options.lockPath, async () => {
    const agent = new GuestAgentClient({ path: options.guestAgentPath, now: () => Date.now() });
    const deadline = Date.now() + (options.timeoutMs ?? LEASE_RESYNC_TIMEOUT_MS);
    const primitives = guestAgentClock(agent);
    let clock: ResyncClockResult | null = null;
    let clockError: LeaseResume['clockError'] = null;
    try {
      const once = (o: Pick<ResyncClockOptions, 'toleranceMs'>): Promise<ResyncClockResult> =>
        resyncGuestClock({ ...o, vm: options.vm, deadline, driver: primitives, clock: options.clock });
      clock = await resyncRepeating(once, undefined);
    } catch (error) {
      const e = coerceError(error);
      clockError = { code: e.code, message: e.message };
    } finally {
      await agent.close();
    }
    const entry: LeaseResume = Object.freeze({
      vm: options.vm,
      pausedAt: options.pausedAt,
      resumedAt: options.resumedAt,
      clock,
      clockError,
    });
    recordLeaseResume(options.recordPath, entry);
    return entry;
  });
}
