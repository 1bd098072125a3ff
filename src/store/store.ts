import type { MaintenanceEvent, Mutation, ScopeState } from '../domain/index.js';

/** What a store declares it can do; flags default to false (absent). */
export interface StoreCapabilities {
  /** Several processes may share the store (PostgreSQL); SQLite is one process's. */
  readonly multiProcess?: boolean;
  /**
   * `SELECT … FOR SHARE` locks rows until the transaction ends (PostgreSQL). SQLite has no row
   * locks and needs none: one writer at a time holds the whole database.
   */
  readonly rowLocks?: boolean;
}

/** Filters of {@link EventStore.queryEvents}; all optional. */
export interface EventQuery {
  /** Include removed (completed or cancelled) events: the history. */
  readonly includeRemoved?: boolean;
  /** Only the events of this scope id (`set:…` or `vm:…`). */
  readonly scope?: string;
  /** Only events created at or after this time. */
  readonly since?: number;
  /** At most this many events: an integer of 1 or more (INVALID_INPUT otherwise). */
  readonly limit?: number;
}

/**
 * Durable home of events and incarnations. A mutation is written atomically or not at all, and an
 * incarnation is never written lower than what is stored (the store refuses it).
 *
 * Errors (all IntermissionError, matched on `code`):
 * - CONFLICT, not retryable: the mutation would lower a stored DocumentIncarnation. The caller's view
 *   is older than the store's (a second writer, or a bug); nothing was written, and the caller must
 *   reload (`loadEvents`) rather than retry the same mutation.
 * - STORE_FAILURE: the store failed or holds data this version cannot read. `retryable` tells a
 *   passing failure (a lock, an I/O error) from one that will repeat (a value no engine can keep, a
 *   corrupt or newer database, a closed store). Nothing of a failed commit is written.
 * - INVALID_INPUT: a malformed query.
 */
export interface EventStore {
  readonly capabilities: StoreCapabilities;
  /**
   * Live events (not removed), oldest first, and every scope's incarnation, read from one snapshot:
   * what a restarting process needs.
   */
  loadEvents(): Promise<{ events: MaintenanceEvent[]; scopes: ScopeState[] }>;
  /**
   * Writes one mutation atomically: event rows are inserted or replaced whole (removed events stay
   * as history), scope incarnations are raised or kept (an equal value is accepted, so that a replay
   * is harmless). An empty mutation writes nothing.
   */
  commit(mutation: Mutation): Promise<void>;
  /**
   * One event by id, removed ones included, or undefined: a single indexed read, so that a lookup
   * of an unknown id never loads the history. `eventId` is matched as stored (uppercase GUID).
   */
  getEvent(eventId: string): Promise<MaintenanceEvent | undefined>;
  /** Events for operators, newest first (by creation time, then event id, both descending). */
  queryEvents(query?: EventQuery): Promise<MaintenanceEvent[]>;
  /** Waits for calls under way and releases the store; idempotent. Later calls fail with STORE_FAILURE. */
  close(): Promise<void>;
}
