import type { MaintenanceEvent, Mutation, ScopeState } from '../domain/index.js';

/** What a store declares it can do; flags default to false (absent). */
export interface StoreCapabilities {
  /** Several processes may share the store (PostgreSQL); SQLite is one process's. */
  readonly multiProcess?: boolean;
}

export interface EventQuery {
  /** Include removed (completed or cancelled) events: the history. */
  readonly includeRemoved?: boolean;
  readonly scope?: string;
  /** Only events created at or after this time. */
  readonly since?: number;
  readonly limit?: number;
}

/**
 * Durable home of events and incarnations. A mutation is written atomically or not at all, and an
 * incarnation is never written lower than what is stored (the store refuses it).
 */
export interface EventStore {
  readonly capabilities: StoreCapabilities;
  /** Live events (not removed) and every scope's incarnation: what a restarting process needs. */
  loadEvents(): Promise<{ events: MaintenanceEvent[]; scopes: ScopeState[] }>;
  /** Writes one mutation atomically. Throws STORE_FAILURE (and writes nothing) on failure. */
  commit(mutation: Mutation): Promise<void>;
  /** Events for operators, newest first. */
  queryEvents(query?: EventQuery): Promise<MaintenanceEvent[]>;
  close(): Promise<void>;
}
