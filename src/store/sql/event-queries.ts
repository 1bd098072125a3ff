import { sql, type CompiledQuery, type InsertResult, type Kysely } from 'kysely';
import type { ScopeState } from '../../domain/index.js';
import type { EventQuery } from '../store.js';
import type { EventRow } from './event-rows.js';
import type { EventsTable, ScopesTable, StoreDatabase } from './schema.js';

/**
 * The store's SQL as values: each function compiles one statement for the engine of `db` and returns
 * it as `{ sql, parameters }` without running it, so that the statements can be read, reviewed and
 * tested on their own. The same functions serve every Kysely dialect (SQLite, PostgreSQL).
 */

/** Most rows per INSERT: 18 columns × 500 rows stays far below every engine's parameter limit. */
export const MAX_ROWS_PER_INSERT = 500;

/**
 * Inserts events or replaces every column of those that exist (history rows included). The caller
 * splits large batches by {@link MAX_ROWS_PER_INSERT}.
 */
export function upsertEventsQuery(db: Kysely<StoreDatabase>, rows: readonly EventRow[]): CompiledQuery<InsertResult> {
  return db
    .insertInto('events')
    .values([...rows])
    .onConflict((oc) =>
      oc.column('event_id').doUpdateSet((eb) => ({
        scope: eb.ref('excluded.scope'),
        type: eb.ref('excluded.type'),
        phase: eb.ref('excluded.phase'),
        resources: eb.ref('excluded.resources'),
        description: eb.ref('excluded.description'),
        source: eb.ref('excluded.source'),
        duration_in_seconds: eb.ref('excluded.duration_in_seconds'),
        created_at: eb.ref('excluded.created_at'),
        not_before: eb.ref('excluded.not_before'),
        approved_at: eb.ref('excluded.approved_at'),
        approved_by: eb.ref('excluded.approved_by'),
        started_at: eb.ref('excluded.started_at'),
        ended_at: eb.ref('excluded.ended_at'),
        linger_ms: eb.ref('excluded.linger_ms'),
        removed_at: eb.ref('excluded.removed_at'),
        removal_reason: eb.ref('excluded.removal_reason'),
        owner: eb.ref('excluded.owner'),
      })),
    )
    .compile();
}

/**
 * Writes a scope's incarnation unless that would lower it: the update only happens when the new value
 * is at least the stored one. The statement then reports 0 affected rows, which the caller turns
 * into a refusal of the whole mutation. Equal values pass, so that replaying a mutation is harmless.
 */
export function raiseIncarnationQuery(db: Kysely<StoreDatabase>, state: ScopeState): CompiledQuery<InsertResult> {
  return db
    .insertInto('scopes')
    .values({ scope: state.scope, incarnation: state.incarnation })
    .onConflict((oc) =>
      oc
        .column('scope')
        .doUpdateSet((eb) => ({ incarnation: eb.ref('excluded.incarnation') }))
        .where((eb) => eb('excluded.incarnation', '>=', eb.ref('scopes.incarnation'))),
    )
    .compile();
}

/** One scope's stored incarnation (to explain a refusal). */
export function selectScopeQuery(db: Kysely<StoreDatabase>, scope: string): CompiledQuery<ScopesTable> {
  return db.selectFrom('scopes').select(['scope', 'incarnation']).where('scope', '=', scope).compile();
}

/** Every scope, by id. */
export function selectScopesQuery(db: Kysely<StoreDatabase>): CompiledQuery<ScopesTable> {
  return db.selectFrom('scopes').select(['scope', 'incarnation']).orderBy('scope').compile();
}

/**
 * `phase <> 'Removed'` with the literal inlined, not bound: an engine can only use a partial index
 * on live events (SQLite's `events_live`) when the query repeats its condition literally.
 */
const isLive = sql<boolean>`phase <> 'Removed'`;

/** Live (not removed) events, oldest first: what a restarting process loads. */
export function selectLiveEventsQuery(db: Kysely<StoreDatabase>): CompiledQuery<EventsTable> {
  return db
    .selectFrom('events')
    .selectAll()
    .where(isLive)
    .orderBy('created_at', 'asc')
    .orderBy('event_id', 'asc')
    .compile();
}

/** One event by id (the primary key), removed or not. */
export function selectEventByIdQuery(db: Kysely<StoreDatabase>, eventId: string): CompiledQuery<EventsTable> {
  return db.selectFrom('events').selectAll().where('event_id', '=', eventId).compile();
}

/** Events for operators, newest first (ties by event id, descending). `query` is already validated. */
export function selectEventsQuery(db: Kysely<StoreDatabase>, query: EventQuery): CompiledQuery<EventsTable> {
  let q = db.selectFrom('events').selectAll();
  if (query.includeRemoved !== true) q = q.where(isLive);
  if (query.scope !== undefined) q = q.where('scope', '=', query.scope);
  if (query.since !== undefined) q = q.where('created_at', '>=', query.since);
  q = q.orderBy('created_at', 'desc').orderBy('event_id', 'desc');
  if (query.limit !== undefined) q = q.limit(query.limit);
  return q.compile();
}
