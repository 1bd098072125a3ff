import type { SqliteMigration } from './migration.js';

/**
 * The events and the scopes' DocumentIncarnations (see `../../sql/schema.ts` for the conventions a
 * PostgreSQL twin follows). Tables are STRICT, so that a value of the wrong type fails instead of
 * being stored as whatever it was.
 */
export const migration000001: SqliteMigration = {
  version: 1,
  name: 'events-and-scopes',
  statements: [
    `CREATE TABLE events (
  event_id TEXT NOT NULL PRIMARY KEY,
  scope TEXT NOT NULL,
  type TEXT NOT NULL,
  phase TEXT NOT NULL,
  resources TEXT NOT NULL CHECK (json_valid(resources) AND json_type(resources) = 'array'),
  description TEXT NOT NULL,
  source TEXT NOT NULL,
  duration_in_seconds INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  not_before INTEGER NOT NULL,
  approved_at INTEGER,
  approved_by TEXT,
  started_at INTEGER,
  ended_at INTEGER,
  linger_ms INTEGER NOT NULL,
  removed_at INTEGER,
  removal_reason TEXT,
  owner TEXT NOT NULL
) STRICT`,
    // What a restarting process loads: live events only, while the history keeps growing.
    `CREATE INDEX events_live ON events (created_at, event_id) WHERE phase <> 'Removed'`,
    // Operators' history queries, newest first, for the fleet or one scope.
    `CREATE INDEX events_by_created ON events (created_at, event_id)`,
    `CREATE INDEX events_by_scope ON events (scope, created_at, event_id)`,
    `CREATE TABLE scopes (
  scope TEXT NOT NULL PRIMARY KEY,
  incarnation INTEGER NOT NULL CHECK (incarnation >= 1)
) STRICT`,
  ],
};
