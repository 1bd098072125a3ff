import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { IntermissionError, coerceError } from '../domain/index.js';
import { CONTROLLER_LEASE, type LeaseState, type LeaseStore } from '../store/lease-store.js';

/** What a {@link LeaderLease} announces; the log, metrics and the controller subscribe. */
export interface LeaderLeaseEventMap {
  /** This replica leads from now on, with this epoch. */
  'lease:acquired': [info: { holder: string; epoch: number }];
  /** This replica stopped leading: not renewed in time, deposed (an agent saw a newer epoch), or stopped. */
  'lease:lost': [info: { holder: string; epoch: number; reason: string }];
  /** A pass found another replica leading (or the lease free but not won): this replica stands by. */
  'lease:standby': [state: LeaseState];
  /** A pass failed (the store unreachable); the next one tries again. */
  'lease:error': [error: IntermissionError];
}

/**
 * How long a lease lasts without renewal: a leader that dies or stalls is replaced within about
 * this plus {@link DEFAULT_LEASE_INTERVAL_MS} (the target is 10 s).
 */
export const DEFAULT_LEASE_TTL_MS = 5000;
/**
 * How often every replica asks: the leader renews, standbys try to take over. Well under the ttl,
 * so that a leader renews several times per lease (one slow call does not cost it the lease) and a
 * standby notices an expired lease within a second.
 */
export const DEFAULT_LEASE_INTERVAL_MS = 1000;

export interface LeaderLeaseOptions {
  readonly store: LeaseStore;
  /** Who this replica is; unique per process (see {@link uniqueHolder}). */
  readonly holder: string;
  /** Which lease; default `controller`. */
  readonly name?: string;
  readonly ttlMs?: number;
  readonly intervalMs?: number;
  /**
   * The leader stops acting this long before its lease could end, measured on its own clock from
   * before the request that renewed it: room for a command already on its way. Default a fifth of
   * the ttl.
   */
  readonly marginMs?: number;
  /** A monotonic clock in milliseconds (`performance.now` by default): wall-clock jumps must not extend a lease. */
  readonly monotonic?: () => number;
}

/** A holder name unique to this process: host, pid and random bits (a restarted process is a new holder). */
export function uniqueHolder(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

interface Tenure {
  readonly epoch: number;
  /** On the monotonic clock: the leader acts only before this. */
  validUntil: number;
  timer: NodeJS.Timeout | undefined;
}

/**
 * One replica's side of the leader lease: a loop that renews the lease while it leads and tries to
 * take it while it stands by, and the answer to "may I act now, and with which epoch?".
 *
 * Self-fencing: the leader's deadline is counted on its own monotonic clock from the moment before
 * it sent the renewal that succeeded, `ttl − margin` later. The database counted the same ttl from a
 * later moment (when the statement ran), so the leader stops before any other replica can take the
 * lease, whatever the skew between their wall clocks (only a difference in clock *rate* could eat
 * into the margin). A stalled leader (SIGSTOP, a partition, a hung call) therefore finds its
 * {@link epoch} gone when it wakes, and agents refuse whatever it had in flight once the next
 * leader has spoken to them (STALE_EPOCH).
 */
export class LeaderLease extends EventEmitter<LeaderLeaseEventMap> {
  readonly holder: string;
  readonly #store: LeaseStore;
  readonly #name: string;
  readonly #ttlMs: number;
  readonly #intervalMs: number;
  readonly #marginMs: number;
  readonly #monotonic: () => number;
  #tenure: Tenure | undefined;
  /** Epochs at or below this one are never led again (an agent said a newer one exists). */
  #deposedAt = 0;
  #loop: Promise<void> | undefined;
  #stopper: AbortController | undefined;
  #ticking: Promise<LeaseState | undefined> | undefined;

  constructor(options: LeaderLeaseOptions) {
    super();
    this.holder = options.holder;
    this.#store = options.store;
    this.#name = options.name ?? CONTROLLER_LEASE;
    this.#ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS;
    this.#intervalMs = options.intervalMs ?? DEFAULT_LEASE_INTERVAL_MS;
    this.#marginMs = options.marginMs ?? Math.floor(this.#ttlMs / 5);
    this.#monotonic = options.monotonic ?? (() => performance.now());
    if (!(this.#marginMs >= 0 && this.#marginMs < this.#ttlMs && this.#intervalMs > 0)) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `lease timings do not work: ttl ${this.#ttlMs} ms, margin ${this.#marginMs} ms, interval ${this.#intervalMs} ms`,
      );
    }
  }

  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** The epoch to act with, or undefined when this replica does not lead (or its deadline passed). */
  get epoch(): number | undefined {
    const tenure = this.#tenure;
    if (!tenure) return undefined;
    if (this.#monotonic() >= tenure.validUntil) {
      this.#lose('the lease was not renewed before its deadline');
      return undefined;
    }
    return tenure.epoch;
  }

  isLeader(): boolean {
    return this.epoch !== undefined;
  }

  /**
   * One pass: renews or takes the lease. Concurrent calls share one pass. Never throws: a store
   * failure is announced (`lease:error`) and the leader keeps its current deadline, no more.
   */
  tickOnce(): Promise<LeaseState | undefined> {
    this.#ticking ??= this.#tick().finally(() => {
      this.#ticking = undefined;
    });
    return this.#ticking;
  }

  async #tick(): Promise<LeaseState | undefined> {
    const sentAt = this.#monotonic();
    let state: LeaseState;
    try {
      state = await this.#store.acquireOrRenew({ name: this.#name, holder: this.holder, ttlMs: this.#ttlMs });
    } catch (error) {
      this.emit('lease:error', coerceError(error));
      void this.epoch; // loses the tenure if its deadline passed meanwhile
      return undefined;
    }
    if (state.leader && state.epoch <= this.#deposedAt) {
      // Never lead again with an epoch an agent has seen superseded: give it up so that the next
      // holder (this replica too) comes with a higher one.
      await this.#store.release({ name: this.#name, holder: this.holder }).catch(() => undefined);
      this.emit('lease:standby', { ...state, leader: false });
      return state;
    }
    if (!state.leader) {
      if (this.#tenure) this.#lose(`another replica holds the lease (${state.holder ?? 'none'}, epoch ${state.epoch})`);
      this.emit('lease:standby', state);
      return state;
    }
    const validUntil = sentAt + this.#ttlMs - this.#marginMs;
    const current = this.#tenure;
    if (current && current.epoch === state.epoch) {
      current.validUntil = Math.max(current.validUntil, validUntil);
      this.#arm(current);
      return state;
    }
    if (current) this.#lose(`the lease came back with epoch ${state.epoch}`);
    if (this.#monotonic() >= validUntil) return state; // won, but too late to act on it: the next pass renews
    const tenure: Tenure = { epoch: state.epoch, validUntil, timer: undefined };
    this.#tenure = tenure;
    this.#arm(tenure);
    this.emit('lease:acquired', { holder: this.holder, epoch: state.epoch });
    return state;
  }

  /** A timer at the deadline, so that a leader whose renewals hang is told it stopped leading. */
  #arm(tenure: Tenure): void {
    if (tenure.timer) clearTimeout(tenure.timer);
    tenure.timer = setTimeout(() => void this.epoch, Math.max(0, tenure.validUntil - this.#monotonic()) + 1);
    tenure.timer.unref();
  }

  #lose(reason: string): void {
    const tenure = this.#tenure;
    if (!tenure) return;
    if (tenure.timer) clearTimeout(tenure.timer);
    this.#tenure = undefined;
    this.emit('lease:lost', { holder: this.holder, epoch: tenure.epoch, reason });
  }

  /**
   * An agent refused a command of this epoch (STALE_EPOCH): another replica leads. Stops acting at
   * once and never leads again at this epoch or below.
   */
  depose(epoch: number, reason: string): void {
    this.#deposedAt = Math.max(this.#deposedAt, epoch);
    if (this.#tenure && this.#tenure.epoch <= epoch) this.#lose(reason);
  }

  /** Runs {@link tickOnce} every interval. Idempotent. */
  start(): void {
    if (this.#loop) return;
    const stopper = new AbortController();
    this.#stopper = stopper;
    this.#loop = (async () => {
      while (!stopper.signal.aborted) {
        await this.tickOnce();
        await sleep(this.#intervalMs, undefined, { signal: stopper.signal }).catch(() => undefined);
      }
    })();
  }

  /**
   * Stops the loop and, unless `release` is false, gives the lease up so that a standby takes over
   * at once. Idempotent.
   */
  async stop(options: { readonly release?: boolean } = {}): Promise<void> {
    this.#stopper?.abort();
    await this.#loop;
    this.#loop = undefined;
    await this.#ticking;
    this.#lose('stopped');
    if (options.release !== false) {
      await this.#store.release({ name: this.#name, holder: this.holder }).catch((error: unknown) => {
        this.emit('lease:error', coerceError(error));
      });
    }
  }
}
