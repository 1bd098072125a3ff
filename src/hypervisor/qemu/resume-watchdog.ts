/**
 * The resume lease at the hypervisor level (invariant 1: no VM stays paused longer than its pause
 * budget, under any failure, the agent's death included). One watchdog runs beside each QEMU
 * process, as a process of its own (`watchdog.ts`), on a QMP monitor of its own, and resumes the VM
 * when a pause outlives its lease: the deadline the driver wrote to `lease.json` before pausing,
 * and at most `maxPauseMs` after the pause began whatever the file says.
 *
 * Only the run state `paused` is ever resumed. A process that is migrating (`inmigrate`,
 * `finish-migrate`, `postmigrate`: the source of an in-place swap stops for its switchover, the
 * destination waits for the incoming state) is left alone; the new process of a swap has a
 * watchdog of its own, which takes the pause over from `lease.json` (`pausedAt`).
 *
 * The driver may freeze the new process of an interrupted swap (SIGSTOP) for a moment while it
 * decides whether the swap goes forward or back. A frozen process does not answer: a look waits
 * for it and sees the state it has once it runs again, and a look that outlasts the command timeout
 * fails (`check-failed`, nothing sent) and is tried again at the paused cadence, its late answer
 * dropped (replies are matched by id). A process killed instead closes the monitor, which ends the
 * watchdog.
 */
import type { QmpClient, QmpRunState } from '../../qmp/index.js';
import type { LeaseFile } from './internal/layout.js';

/**
 * How long before the STOP a lease may have been written and still be this pause's lease: the
 * driver writes it right before `stop`. An older file is a leftover of an earlier pause.
 */
export const LEASE_BINDING_MS = 10_000;

/** How often a paused VM is looked at again, lease or not (the lease file may change). */
export const DEFAULT_PAUSED_RECHECK_MS = 1_000;
/** How often a running VM is looked at, in case an event was missed. */
export const DEFAULT_IDLE_RECHECK_MS = 5_000;

/** The status an `idle` decision carries when the process did not answer `query-status`. */
const UNKNOWN_STATUS = 'unknown';

/** What {@link decideLease} looks at. */
export interface LeaseDecisionInput {
  /** The process's run state (`query-status`). */
  readonly status: QmpRunState;
  /** When the current pause began, if known (STOP event, or `lease.json` `pausedAt`). */
  readonly pausedSince: number | null;
  readonly lease: LeaseFile | undefined;
  readonly now: number;
  readonly maxPauseMs: number;
}

/** What the watchdog does: nothing, wait until `deadline`, or resume now. */
export type LeaseDecision =
  | { readonly kind: 'idle'; readonly status: QmpRunState }
  | { readonly kind: 'wait'; readonly deadline: number; readonly pausedSince: number; readonly leased: boolean }
  | { readonly kind: 'resume'; readonly deadline: number; readonly pausedSince: number; readonly leased: boolean };

/** Whether `lease` was written for a pause that began at `pausedSince`. */
export function leaseApplies(
  lease: LeaseFile | undefined,
  pausedSince: number,
): lease is LeaseFile & { until: number } {
  if (lease === undefined || lease.until === null) return false;
  if (lease.pausedAt !== undefined) return Math.abs(lease.pausedAt - pausedSince) < 1;
  return lease.writtenAt <= pausedSince + 1 && pausedSince - lease.writtenAt <= LEASE_BINDING_MS;
}

/**
 * When the current pause began: the STOP the watchdog saw, or earlier when a fresh lease names an
 * earlier `pausedAt`. That is how the driver carries a pause across a moment of running it did not
 * ask for: a paused VM whose swap failed during the switchover is left in `postmigrate`, and only
 * `cont` then `stop` gets it back to `paused`, which ends the pause and starts another. The lease
 * must have been written after, or at most {@link LEASE_BINDING_MS} before, that STOP: an older one
 * is a leftover. Taking an earlier start only ever brings the resume forward.
 */
export function pauseStart(stoppedAt: number, lease: LeaseFile | undefined): number {
  if (lease?.pausedAt === undefined || lease.pausedAt >= stoppedAt) return stoppedAt;
  return stoppedAt - lease.writtenAt <= LEASE_BINDING_MS ? lease.pausedAt : stoppedAt;
}

/** The lease rule, as a pure function: see the module comment. */
export function decideLease(input: LeaseDecisionInput): LeaseDecision {
  if (input.status !== 'paused') return { kind: 'idle', status: input.status };
  const pausedSince = pauseStart(input.pausedSince ?? input.now, input.lease);
  const cap = pausedSince + input.maxPauseMs;
  const leased = leaseApplies(input.lease, pausedSince);
  const deadline = leased ? Math.min(cap, (input.lease as { until: number }).until) : cap;
  return input.now >= deadline
    ? { kind: 'resume', deadline, pausedSince, leased }
    : { kind: 'wait', deadline, pausedSince, leased };
}

/** One line of the watchdog's log. */
export interface WatchdogLogEntry {
  readonly at: number;
  readonly event:
    'start' | 'resume' | 'resume-failed' | 'check-failed' | 'exit' | 'clock-resync' | 'after-resume-failed';
  readonly [key: string]: unknown;
}

/** Options of {@link ResumeWatchdog}. */
export interface ResumeWatchdogOptions {
  /** A monitor of the watched process, connected, held by nobody else. */
  readonly qmp: QmpClient;
  /** Reads `lease.json` (undefined when absent or malformed). */
  readonly readLease: () => LeaseFile | undefined;
  /** The longest any pause lasts; at most `MAX_PAUSE_BUDGET_MS`. */
  readonly maxPauseMs: number;
  /** Host wall clock (the clock of QMP event timestamps). Default `Date.now`. */
  readonly now?: () => number;
  readonly log?: (entry: WatchdogLogEntry) => void;
  readonly pausedRecheckMs?: number;
  readonly idleRecheckMs?: number;
  /**
   * Called after each resume this watchdog made, without holding up its next look (a new pause
   * must not wait for it): the watchdog process resynchronises the guest clock here (invariant 4).
   * Its failures are logged (`after-resume-failed`), never thrown.
   */
  readonly afterResume?: (resume: { readonly pausedSince: number; readonly resumedAt: number }) => Promise<void>;
}

/** The result of one {@link ResumeWatchdog.checkOnce}. */
export interface WatchdogCheck {
  readonly decision: LeaseDecision;
  /** True when this check sent `cont`. */
  readonly resumed: boolean;
}

/**
 * A watchdog over one QEMU process: {@link checkOnce} is one look (query the run state, read the
 * lease, resume when due) and {@link start} schedules looks, on STOP/RESUME events and timers. It
 * ends when the monitor closes (the process is gone).
 */
export class ResumeWatchdog {
  readonly #qmp: QmpClient;
  readonly #readLease: () => LeaseFile | undefined;
  readonly #maxPauseMs: number;
  readonly #now: () => number;
  readonly #log: (entry: WatchdogLogEntry) => void;
  readonly #pausedRecheckMs: number;
  readonly #idleRecheckMs: number;
  readonly #afterResume: ResumeWatchdogOptions['afterResume'];
  readonly #afterResumes = new Set<Promise<void>>();
  #pausedSince: number | null = null;
  #timer: NodeJS.Timeout | undefined;
  #checking: Promise<WatchdogCheck> | undefined;
  #again = false;
  #stopped = false;
  readonly #done: Promise<void>;
  #resolveDone: () => void = () => undefined;

  constructor(options: ResumeWatchdogOptions) {
    this.#qmp = options.qmp;
    this.#readLease = options.readLease;
    this.#maxPauseMs = options.maxPauseMs;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? (() => undefined);
    this.#pausedRecheckMs = options.pausedRecheckMs ?? DEFAULT_PAUSED_RECHECK_MS;
    this.#idleRecheckMs = options.idleRecheckMs ?? DEFAULT_IDLE_RECHECK_MS;
    this.#afterResume = options.afterResume;
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
  }

  /** Resolves when the watchdog has stopped (its monitor closed, or {@link stop}). */
  get done(): Promise<void> {
    return this.#done;
  }

  /** One look at the process: resumes it when its pause is due. Never rejects for a QMP failure. */
  async checkOnce(): Promise<WatchdogCheck> {
    const now = this.#now();
    let status: QmpRunState;
    try {
      status = (await this.#qmp.execute('query-status')).status;
    } catch (error) {
      this.#log({ at: now, event: 'check-failed', error: String(error) });
      return { decision: { kind: 'idle', status: UNKNOWN_STATUS }, resumed: false };
    }
    const lease = this.#readLease();
    if (status === 'paused' && this.#pausedSince === null) {
      // A pause this watchdog did not see begin: the driver's record of it, else now.
      this.#pausedSince = lease?.pausedAt ?? now;
    }
    if (status === 'running') this.#pausedSince = null;
    const decision = decideLease({
      status,
      pausedSince: this.#pausedSince,
      lease,
      now: this.#now(),
      maxPauseMs: this.#maxPauseMs,
    });
    if (decision.kind !== 'resume') return { decision, resumed: false };
    try {
      await this.#qmp.execute('cont');
      const resumedAt = this.#now();
      this.#log({
        at: resumedAt,
        event: 'resume',
        pausedSince: decision.pausedSince,
        deadline: decision.deadline,
        leased: decision.leased,
        pausedMs: resumedAt - decision.pausedSince,
      });
      this.#startAfterResume(decision.pausedSince, resumedAt);
      return { decision, resumed: true };
    } catch (error) {
      this.#log({ at: this.#now(), event: 'resume-failed', error: String(error) });
      return { decision, resumed: false };
    }
  }

  /** Resolves when the work after every resume so far has ended. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#afterResumes]);
  }

  #startAfterResume(pausedSince: number, resumedAt: number): void {
    const hook = this.#afterResume;
    if (hook === undefined) return;
    const work = hook({ pausedSince, resumedAt }).catch((error: unknown) => {
      this.#log({ at: this.#now(), event: 'after-resume-failed', error: String(error) });
    });
    this.#afterResumes.add(work);
    void work.finally(() => this.#afterResumes.delete(work));
  }

  /** Starts watching: a look now, on every STOP/RESUME, and on timers in between. */
  start(): void {
    this.#qmp.on('STOP', (event) => {
      this.#pausedSince ??= event.timestampMs;
      this.#schedule(0);
    });
    this.#qmp.on('RESUME', () => {
      this.#pausedSince = null;
      this.#schedule(0);
    });
    this.#qmp.on('close', (info) => {
      this.#log({ at: this.#now(), event: 'exit', expected: info.expected });
      void this.stop();
    });
    this.#log({ at: this.#now(), event: 'start', maxPauseMs: this.#maxPauseMs });
    this.#schedule(0);
  }

  /** Stops watching and closes the monitor. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return this.#done;
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#qmp.close();
    // A clock resync under way ends first (its guest-agent calls are bounded).
    await this.settled();
    this.#resolveDone();
    return this.#done;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#run(), Math.max(0, delayMs));
  }

  #run(): void {
    if (this.#checking !== undefined) {
      this.#again = true;
      return;
    }
    this.#checking = this.checkOnce();
    void this.#checking.then((check) => {
      this.#checking = undefined;
      if (this.#again) {
        this.#again = false;
        this.#schedule(0);
        return;
      }
      const { decision } = check;
      if (decision.kind === 'wait') {
        this.#schedule(Math.min(decision.deadline - this.#now(), this.#pausedRecheckMs));
      } else if (decision.kind === 'resume') {
        this.#schedule(check.resumed ? 0 : 100);
      } else if (decision.status === UNKNOWN_STATUS) {
        // No answer (a busy process, or one the driver holds frozen while it settles a swap): it
        // may be paused, so the next look comes at the paused cadence, not the idle one.
        this.#schedule(this.#pausedRecheckMs);
      } else {
        this.#schedule(this.#idleRecheckMs);
      }
    });
  }
}
