import type { PostgresMigration } from './migration.js';

/**
 * The events and the scopes' DocumentIncarnations: the tables of SQLite's migration 000001 in
 * PostgreSQL's types (see `../../sql/schema.ts` for the conventions). Times and durations are
 * bigint (milliseconds since the epoch); resources are `json`, which keeps the text as written and
 * checks that it is a list. Ids and scopes compare byte by byte (`COLLATE "C"`), as in SQLite, so
 * that ordering and equality do not depend on the database's locale.
 */
export const migration000001: PostgresMigration = {
  version: 1,
  name: 'events-and-scopes',
  statements: [
    `CREATE TABLE events (
  event_id text COLLATE "C" NOT NULL PRIMARY KEY,
  scope text COLLATE "C" NOT NULL,
  type text NOT NULL,
  phase text NOT NULL,
  resources json NOT NULL CHECK (json_typeof(resources) = 'array'),
  description text NOT NULL,
  source text NOT NULL,
  duration_in_seconds bigint NOT NULL,
  created_at bigint NOT NULL,
  not_before bigint NOT NULL,
  approved_at bigint,
  approved_by text,
  started_at bigint,
  ended_at bigint,
  linger_ms bigint NOT NULL,
  removed_at bigint,
  removal_reason text,
  owner text NOT NULL
)`,
    // What a restarting process loads: live events only, while the history keeps growing.
    `CREATE INDEX events_live ON events (created_at, event_id) WHERE phase <> 'Removed'`,
    // Operators' history queries, newest first, for the fleet or one scope.
    `CREATE INDEX events_by_created ON events (created_at, event_id)`,
    `CREATE INDEX events_by_scope ON events (scope, created_at, event_id)`,
    `CREATE TABLE scopes (
  scope text COLLATE "C" NOT NULL PRIMARY KEY,
  incarnation bigint NOT NULL CHECK (incarnation >= 1)
)`,
  ],
};
