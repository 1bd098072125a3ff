import { isDeepStrictEqual } from 'node:util';
import {
  EVENT_PHASES,
  MAX_RENDERABLE_TIME,
  EVENT_SOURCES,
  EVENT_TYPES,
  IntermissionError,
  REMOVAL_REASONS,
  isRenderableTime,
  type MaintenanceEvent,
  type ScopeId,
  type ScopeState,
} from '../../domain/index.js';
import type { EventsTable } from './schema.js';

/**
 * The row codec between domain values and the logical schema: pure, engine-neutral. Encoding refuses
 * what no engine could store faithfully (a fractional millisecond, a non-string VM name) before any
 * SQL runs; decoding refuses rows this version cannot read. Both throw STORE_FAILURE that is not
 * retryable: the same input fails the same way again.
 */

const INTEGER_FIELDS = ['durationInSeconds', 'createdAt', 'notBefore', 'lingerMs'] as const;
const OPTIONAL_INTEGER_FIELDS = ['approvedAt', 'startedAt', 'endedAt', 'removedAt'] as const;
const SCOPE_RE = /^(?:set|vm):./s;

/** A row of `events` as written and read, with every column present. */
export type EventRow = EventsTable;

/** Encodes an event as a row. Throws STORE_FAILURE (not retryable) for a value no engine can keep. */
export function encodeEvent(event: MaintenanceEvent): EventRow {
  const unstorable = (field: string, why: string): IntermissionError =>
    new IntermissionError('STORE_FAILURE', `cannot store event ${event.eventId}: ${field} ${why}`, {
      retryable: false,
      details: { eventId: event.eventId, field },
    });
  for (const field of INTEGER_FIELDS) {
    if (!Number.isSafeInteger(event[field])) throw unstorable(field, 'must be an integer');
  }
  for (const field of OPTIONAL_INTEGER_FIELDS) {
    const value = event[field];
    if (value !== undefined && !Number.isSafeInteger(value)) throw unstorable(field, 'must be an integer or absent');
  }
  if (!Array.isArray(event.resources) || !event.resources.every((r) => typeof r === 'string')) {
    throw unstorable('resources', 'must be a list of VM names');
  }
  return {
    event_id: event.eventId,
    scope: event.scope,
    type: event.type,
    phase: event.phase,
    resources: JSON.stringify(event.resources),
    description: event.description,
    source: event.source,
    duration_in_seconds: event.durationInSeconds,
    created_at: event.createdAt,
    not_before: event.notBefore,
    approved_at: event.approvedAt ?? null,
    approved_by: event.approvedBy ?? null,
    started_at: event.startedAt ?? null,
    ended_at: event.endedAt ?? null,
    linger_ms: event.lingerMs,
    removed_at: event.removedAt ?? null,
    removal_reason: event.removalReason ?? null,
    owner: event.owner,
  };
}

/**
 * Decodes a row of `events`. Accepts integers as numbers, bigints or decimal strings (how PostgreSQL
 * drivers return bigint) and resources as JSON text or an already parsed array (jsonb).
 */
export function decodeEvent(row: object): MaintenanceEvent {
  const columns = row as Readonly<Record<string, unknown>>;
  const r = new RowReader(`event ${String(columns.event_id)}`, columns);
  return {
    eventId: r.text('event_id'),
    scope: r.scope('scope'),
    type: r.oneOf('type', EVENT_TYPES),
    phase: r.oneOf('phase', EVENT_PHASES),
    resources: r.stringList('resources'),
    description: r.text('description'),
    source: r.oneOf('source', EVENT_SOURCES),
    durationInSeconds: r.integer('duration_in_seconds'),
    createdAt: r.time('created_at'),
    notBefore: r.time('not_before'),
    approvedAt: r.optional('approved_at', () => r.time('approved_at')),
    approvedBy: r.optional('approved_by', () => r.text('approved_by')),
    startedAt: r.optional('started_at', () => r.time('started_at')),
    endedAt: r.optional('ended_at', () => r.time('ended_at')),
    lingerMs: r.integer('linger_ms'),
    removedAt: r.optional('removed_at', () => r.time('removed_at')),
    removalReason: r.optional('removal_reason', () => r.oneOf('removal_reason', REMOVAL_REASONS)),
    owner: r.text('owner'),
  };
}

/**
 * Encodes an event and reads the row back through {@link decodeEvent}: what a store commits must
 * load again, or one unreadable row breaks every later load and listing (issue 12: a NotBefore past
 * the year 275760 was stored, and then no listing answered). Throws STORE_FAILURE (not retryable)
 * naming the column, before any SQL runs.
 */
export function encodeReadableEvent(event: MaintenanceEvent): EventRow {
  const row = encodeEvent(event);
  let back: MaintenanceEvent;
  try {
    back = decodeEvent(row);
  } catch (error) {
    const why = error instanceof IntermissionError ? error.message : String(error);
    throw new IntermissionError(
      'STORE_FAILURE',
      `cannot store event ${event.eventId}: it would not read back (${why})`,
      {
        retryable: false,
        cause: error,
        details: { eventId: event.eventId },
      },
    );
  }
  const changed = (Object.keys(back) as (keyof MaintenanceEvent)[]).filter(
    (key) => !isDeepStrictEqual(key === 'resources' ? [...event.resources] : event[key], back[key]),
  );
  if (changed.length > 0) {
    throw new IntermissionError(
      'STORE_FAILURE',
      `cannot store event ${event.eventId}: ${changed.join(', ')} would read back changed`,
      { retryable: false, details: { eventId: event.eventId, fields: changed } },
    );
  }
  return row;
}

/** Decodes a row of `scopes`. */
export function decodeScope(row: object): ScopeState {
  const columns = row as Readonly<Record<string, unknown>>;
  const r = new RowReader(`scope ${String(columns.scope)}`, columns);
  const incarnation = r.integer('incarnation');
  if (incarnation < 1) throw r.unreadable('incarnation', 'is below 1');
  return { scope: r.scope('scope'), incarnation };
}

/** Reads typed columns out of an untyped row, naming the row and column in every error. */
class RowReader {
  readonly #what: string;
  readonly #row: Readonly<Record<string, unknown>>;

  constructor(what: string, row: Readonly<Record<string, unknown>>) {
    this.#what = what;
    this.#row = row;
  }

  unreadable(column: string, why: string): IntermissionError {
    return new IntermissionError(
      'STORE_FAILURE',
      `the store holds data this version cannot read: ${this.#what}, column ${column} ${why}`,
      { retryable: false, details: { row: this.#what, column } },
    );
  }

  text(column: string): string {
    const value = this.#row[column];
    if (typeof value !== 'string') throw this.unreadable(column, 'is not text');
    return value;
  }

  integer(column: string): number {
    const value = this.#row[column];
    const n =
      typeof value === 'number'
        ? value
        : typeof value === 'bigint' || (typeof value === 'string' && /^-?\d+$/.test(value))
          ? Number(value)
          : Number.NaN;
    if (!Number.isSafeInteger(n)) throw this.unreadable(column, 'is not an integer');
    return n;
  }

  /** A time: an integer that ISO 8601 and RFC 1123 render with a four-digit year (see isRenderableTime). */
  time(column: string): number {
    const t = this.integer(column);
    if (!isRenderableTime(t)) {
      throw this.unreadable(
        column,
        `holds ${t}, not a time from 1970 to ${new Date(MAX_RENDERABLE_TIME).toISOString()}`,
      );
    }
    return t;
  }

  oneOf<T extends string>(column: string, allowed: readonly T[]): T {
    const value = this.text(column);
    if (!(allowed as readonly string[]).includes(value)) {
      throw this.unreadable(column, `holds ${JSON.stringify(value)}, not one of ${allowed.join(', ')}`);
    }
    return value as T;
  }

  scope(column: string): ScopeId {
    const value = this.text(column);
    if (!SCOPE_RE.test(value)) throw this.unreadable(column, `holds ${JSON.stringify(value)}, not a scope id`);
    return value as ScopeId;
  }

  stringList(column: string): string[] {
    const raw = this.#row[column];
    let value: unknown = raw;
    if (typeof raw === 'string') {
      try {
        value = JSON.parse(raw);
      } catch {
        throw this.unreadable(column, 'is not valid JSON');
      }
    }
    if (!Array.isArray(value) || !value.every((v): v is string => typeof v === 'string')) {
      throw this.unreadable(column, 'is not a JSON list of strings');
    }
    return value;
  }

  /** NULL (or an absent column) reads as undefined; anything else goes through `read`. */
  optional<T>(column: string, read: () => T): T | undefined {
    const value = this.#row[column];
    return value === null || value === undefined ? undefined : read();
  }
}
