import type { SqliteMigration } from './migration.js';

/*
 * Issue 12: before times were bounded, a tenant's `"notice":"100000000d"` committed an event with a
 * NotBefore in the year 275760. It read back as a number, but no client could render it: every
 * listing answered 500, for everyone, across restarts. This migration retires every event whose
 * times this version cannot read back, so that such a database answers again.
 *
 * The bounds are literals on purpose: a released migration never changes, even if the domain's
 * constants do. 253402300799999 is 9999-12-31T23:59:59.999Z (MAX_RENDERABLE_TIME), and
 * 9007199254740991 is 2^53-1 (Number.MAX_SAFE_INTEGER).
 */

const MAX_TIME = '253402300799999';
const MAX_SAFE = '9007199254740991';
const TIME_COLUMNS = ['created_at', 'not_before', 'approved_at', 'started_at', 'ended_at', 'removed_at'] as const;

/** True for a time column that holds a value outside 1970 to 9999 (NULL is fine). */
const badTime = (column: string): string => `coalesce(${column} NOT BETWEEN 0 AND ${MAX_TIME}, 0)`;
/** True for a duration column that no JavaScript number holds exactly. */
const badDuration = (column: string): string => `(${column} NOT BETWEEN -${MAX_SAFE} AND ${MAX_SAFE})`;

/** The rows to retire: any unreadable time or duration. */
const UNREADABLE = [...TIME_COLUMNS.map(badTime), badDuration('duration_in_seconds'), badDuration('linger_ms')].join(
  ' OR ',
);

/** Milliseconds since the epoch, now (constant within one statement). */
const NOW_MS = `CAST(round((julianday('now') - 2440587.5) * 86400000) AS INTEGER)`;

/**
 * Retires unreadable events: a live one becomes Removed with reason `retired`, and its scope's
 * DocumentIncarnation goes up by one (its document changes: the event leaves it), never down. Every
 * unreadable time is then replaced by the time of the migration and every unreadable duration by
 * -1 (DurationInSeconds) or 0 (linger), so that the row reads back as history. The report lists
 * each retired row as it was.
 */
export const migration000004: SqliteMigration = {
  version: 4,
  name: 'retire-unreadable-event-times',
  report: {
    summary: 'events retired because a time or duration could not be read back',
    sql: `SELECT event_id, scope, phase, ${TIME_COLUMNS.join(', ')}, duration_in_seconds, linger_ms
FROM events WHERE ${UNREADABLE} ORDER BY event_id`,
  },
  statements: [
    // First the incarnations, while the phase still tells which events were visible. An INSERT …
    // SELECT with an upsert needs its WHERE to parse; scopes without a row are at 1, so they go to 2.
    `INSERT INTO scopes (scope, incarnation)
SELECT DISTINCT scope, 2 FROM events WHERE phase <> 'Removed' AND (${UNREADABLE})
ON CONFLICT (scope) DO UPDATE SET incarnation = scopes.incarnation + 1`,
    `UPDATE events SET
  removal_reason = CASE WHEN phase <> 'Removed' THEN 'retired' ELSE removal_reason END,
  removed_at = CASE WHEN phase <> 'Removed' OR ${badTime('removed_at')} THEN ${NOW_MS} ELSE removed_at END,
  phase = 'Removed',
${TIME_COLUMNS.filter((c) => c !== 'removed_at')
  .map((c) => `  ${c} = CASE WHEN ${badTime(c)} THEN ${NOW_MS} ELSE ${c} END`)
  .join(',\n')},
  duration_in_seconds = CASE WHEN ${badDuration('duration_in_seconds')} THEN -1 ELSE duration_in_seconds END,
  linger_ms = CASE WHEN ${badDuration('linger_ms')} THEN 0 ELSE linger_ms END
WHERE ${UNREADABLE}`,
  ],
};
