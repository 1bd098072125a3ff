import type { SqliteMigration } from './migration.js';

/*
 * Issue 12: before rollouts were bounded, `"expectedApplyMs": 1e300` started a rollout (201) whose
 * plan ends in no year a client can render. A running or paused rollout whose plan or head holds such
 * a time can never finish (the store refuses a head with such a time, on every pass of the executor,
 * and nothing derived from such a plan can be published or rendered), and its hosts stay held, so
 * every new rollout over them gets 409. This migration retires it.
 *
 * The bounds are literals on purpose: a released migration never changes, even if the domain's
 * constants do. 253402300799999 is 9999-12-31T23:59:59.999Z (MAX_RENDERABLE_TIME); no number of a
 * real plan comes near it (counts are at most 1,000,000, durations at most days).
 */

const MAX_TIME = '253402300799999';
const BY = 'migration 000005-retire-unrenderable-rollouts';
const HEAD_TIMES = ['created_at', 'updated_at', 'wave_published_at', 'settle_until'] as const;
/** Head times that may be NULL take NULL when unrenderable; the others take the migration's time. */
const NULLABLE = new Set<string>(['wave_published_at', 'settle_until']);
/** The keys of a plan that hold times (Plan, Wave, HostStep, planned events, VMs' notBefore). */
const PLAN_TIME_KEYS = [
  'plannedAt',
  'expectedEndAt',
  'publishAt',
  'startAt',
  'expectedStartAt',
  'createdAt',
  'notBefore',
];

/** True for a head time of `r` outside 1970 to 9999 (NULL is fine). */
const badTime = (column: string): string => `coalesce(r.${column} NOT BETWEEN 0 AND ${MAX_TIME}, 0)`;

/**
 * True for a node `t` of json_tree(plan) that no client can render: any number beyond the year 9999
 * either way, and at a time key a negative number or anything but a number (JSON.stringify wrote a
 * NaN or an Infinity as null). A VM's notBefore is null when it gets no event. A fractional time is
 * left alone: old builds planned from virtual clocks between two milliseconds, such a time renders,
 * and the executor never writes a plan back.
 */
const BAD_PLAN_NODE = `(t.type IN ('integer', 'real') AND abs(t.atom) > ${MAX_TIME})
  OR (t.key IN (${PLAN_TIME_KEYS.map((k) => `'${k}'`).join(', ')})
    AND CASE
      WHEN t.type IN ('integer', 'real') THEN t.atom < 0
      WHEN t.type = 'null' THEN NOT (t.key = 'notBefore' AND t.path LIKE '%.vms[%]')
      ELSE t.type NOT IN ('object', 'array')
    END)`;

/**
 * Per running or paused rollout with an unrenderable plan: how many values are out of range, and the
 * first one in document order (SQLite takes bare columns from the row of the single min()). Only
 * these plans are scanned: a plan of history is left as it is (see below).
 */
const PLAN_PROBLEMS = `SELECT p.rollout_id AS id, count(*) AS bad_values, min(t.id) AS first_node,
    t.fullkey AS first_key, CASE WHEN t.type = 'null' THEN 'null' ELSE CAST(t.atom AS TEXT) END AS first_value
  FROM rollouts r JOIN rollout_plans p ON p.rollout_id = r.id, json_tree(p.plan) t
  WHERE r.status IN ('running', 'paused') AND (${BAD_PLAN_NODE})
  GROUP BY p.rollout_id`;

/** What is wrong, in words: the plan's first bad value and how many more, then each bad head time. */
const PROBLEM = `rtrim(coalesce('plan ' || pp.first_key || ' = ' || pp.first_value
    || CASE WHEN pp.bad_values > 1 THEN ' (and ' || (pp.bad_values - 1) || ' more)' ELSE '' END || '; ', '')
${HEAD_TIMES.map((c) => `  || CASE WHEN ${badTime(c)} THEN '${c} ' || r.${c} || '; ' ELSE '' END`).join('\n')}, '; ')`;

/** Every rollout this migration changes, as it was, with what it does to it and why. */
const FOUND = `SELECT r.id, r.status, r.reason, ${HEAD_TIMES.map((c) => `r.${c}`).join(', ')},
  pp.first_key AS plan_key, pp.first_value AS plan_value, pp.bad_values AS plan_bad_values,
  CASE WHEN r.status IN ('running', 'paused') THEN 'halted' ELSE 'times replaced' END AS action,
  ${PROBLEM} AS problem
FROM rollouts r LEFT JOIN (${PLAN_PROBLEMS}) pp ON pp.id = r.id
WHERE pp.id IS NOT NULL OR ${HEAD_TIMES.map(badTime).join(' OR ')}`;

/** Milliseconds since the epoch, now (constant within one statement). */
const NOW_MS = `CAST(round((julianday('now') - 2440587.5) * 86400000) AS INTEGER)`;
const FOUND_TABLE = 'temp.retire_000005';

/**
 * Retires unrenderable rollouts. A running or paused one becomes `halted`, with a reason that says
 * this migration retired it and why, and its pending steps become `cancelled` by this migration
 * (never run, not a failure): without that they would stay pending for good (a halted rollout
 * dispatches nothing), and so would the Scheduled events that only they needed; now the executor's
 * next pass withdraws those, as after any cancelled step. Dispatched steps are left as they are: a
 * halted rollout still polls them and lets them finish, and holds their hosts until then (the
 * overlap rule of `createRollout`).
 *
 * Unrenderable head times of every rollout, history included, are replaced (created_at and
 * updated_at by the migration's time, wave_published_at and settle_until by NULL), so that every row
 * reads back. A plan is never rewritten: it is the record of what was asked, and it reads back as it
 * is (JSON numbers; the control API renders only the head's times). So a completed, halted or
 * cancelled rollout whose plan holds such a value keeps its status and plan: it holds no host but
 * the steps under way, and nothing more is planned from it.
 *
 * The report lists each changed rollout as it was, its first bad plan value and how many there are,
 * the action, and the problem in words. Plans are scanned twice (report, then the work table).
 */
export const migration000005: SqliteMigration = {
  version: 5,
  name: 'retire-unrenderable-rollouts',
  report: {
    summary:
      'rollouts retired (running or paused, now halted) or repaired (history: head times replaced) ' +
      'because a time could not be rendered',
    sql: `${FOUND}\nORDER BY r.id`,
  },
  statements: [
    `CREATE TEMP TABLE retire_000005 AS ${FOUND}`,
    // The steps first, while the work table still says which rollouts are retired.
    `UPDATE host_steps SET
  status = 'cancelled',
  finished_at = ${NOW_MS},
  error = NULL,
  result = json_object('cancellation', json_object(
    'by', '${BY}',
    'at', ${NOW_MS},
    'eventIds', json_array(),
    'reason', 'its rollout was retired by ${BY}, a time of it could not be rendered; the step never ran'))
WHERE status = 'pending' AND rollout_id IN (SELECT id FROM ${FOUND_TABLE} WHERE action = 'halted')`,
    `UPDATE rollouts AS r SET
  status = CASE WHEN f.action = 'halted' THEN 'halted' ELSE r.status END,
  reason = CASE WHEN f.action = 'halted'
    THEN 'retired by ${BY} (it was ' || f.status || '): no client can render its ' || f.problem ||
      '. Nothing more is dispatched; plan the update again for its hosts.'
    ELSE r.reason END,
${HEAD_TIMES.map((c) => `  ${c} = CASE WHEN ${badTime(c)} THEN ${NULLABLE.has(c) ? 'NULL' : NOW_MS} ELSE r.${c} END`).join(',\n')}
FROM ${FOUND_TABLE} AS f
WHERE f.id = r.id`,
    `DROP TABLE ${FOUND_TABLE}`,
  ],
};
