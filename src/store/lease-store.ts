/**
 * The leader lease: several controller replicas share one store, and exactly one of them leads at a
 * time. The lease is one row per name (`controller`), holding who leads, until when, and an epoch
 * that fences everything a leader does: agents refuse a command carrying an epoch lower than one
 * they have seen (see `src/agent/epoch-fence.ts`).
 *
 * Time: every comparison and every `expiresAt` is in the database's clock (milliseconds since the
 * epoch), never the replicas' own. Replicas run on different machines whose clocks may be seconds
 * apart; measured against one clock, a lease that one replica thinks has expired has expired for
 * all of them, and clock skew cannot make two leaders. A test may inject `now` instead (then every
 * call on that lease must, so that one clock is used throughout). A leader does not trust
 * `expiresAt` for its own deadline either: it counts `ttlMs` on its own monotonic clock from before
 * it sent the request (see `LeaderLease`), which ends no later than the database's expiry.
 */

/** The lease of the controllers. */
export const CONTROLLER_LEASE = 'controller';

/** What {@link LeaseStore.acquireOrRenew} found or made. */
export interface LeaseState {
  /** True when the caller holds the lease now (acquired or renewed by this call). */
  readonly leader: boolean;
  /**
   * The fencing epoch of the current holder: 1 for the first holder, and one more each time the
   * lease changes hands (a renewal by its holder keeps it). 0 when nobody ever held it.
   */
  readonly epoch: number;
  /** Who holds it (undefined: released, or never held). Possibly expired when `leader` is false. */
  readonly holder: string | undefined;
  /** When the holder's lease ends, in the database's clock (or the injected `now`'s). */
  readonly expiresAt: number;
  /** The time the call was decided at, in that clock. */
  readonly now: number;
}

/** Options of {@link LeaseStore.acquireOrRenew}. */
export interface AcquireLeaseOptions {
  /** Which lease; default {@link CONTROLLER_LEASE}. */
  readonly name?: string;
  /** Who asks: unique per process (a restarted process is a new holder, with a new epoch). */
  readonly holder: string;
  /** How long the lease lasts from now: an integer of 1 ms or more. */
  readonly ttlMs: number;
  /** Tests only: the time to decide at, instead of the database's clock (see the module comment). */
  readonly now?: number;
}

/**
 * The lease port, implemented by every SQL store (one atomic statement, see `lease-queries.ts`).
 *
 * Guarantees, however many replicas race: at any time at most one holder has an unexpired lease;
 * the epoch never goes down and goes up by exactly one when the lease changes hands; a holder that
 * renews before its lease ends keeps its epoch.
 */
export interface LeaseStore {
  /**
   * Takes the lease when it is free (never held, released, or expired) or renews it when the caller
   * holds it; otherwise reports who does. Never waits for the lease.
   */
  acquireOrRenew(options: AcquireLeaseOptions): Promise<LeaseState>;
  /**
   * Gives the lease up when the caller holds it, so that another replica takes over at once instead
   * of after the ttl. True when it was the caller's. The epoch stays (the next holder gets one more).
   */
  release(options: { readonly holder: string; readonly name?: string }): Promise<boolean>;
  /** The lease as stored, without taking it (undefined when never held). */
  readLease(options?: { readonly name?: string; readonly now?: number }): Promise<LeaseState | undefined>;
}
