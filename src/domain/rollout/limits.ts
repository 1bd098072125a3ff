import { EVENT_TIME_LIMITS } from '../events/notice.js';
import { FLEET_LIMITS } from '../fleet.js';
import { HOUR, MAX_RENDERABLE_TIME, formatDuration, isRenderableTime } from '../time.js';
import type { Plan } from './model.js';

/**
 * Bounds of what an operator may ask of an update and a rollout policy (docs/limits.md, "Rollouts,
 * policies and fleet files"). Issue 12: `"expectedApplyMs": 1e300` made `POST /v1/plans` answer 500
 * ("Invalid time value") and `POST /v1/rollouts` start a rollout whose times no client could
 * render and that could never finish. Every figure is far above what a real rollout asks, and far
 * below where a time overflows: with every field at its bound, a plan over the largest fleet still
 * ends long before 9999-12-31 (see {@link planTimeProblem}).
 */
export const ROLLOUT_LIMITS = Object.freeze({
  /**
   * Longest host-side apply time, and longest expected duration of any part of a host step
   * (`durations.*`): 6 hours. A host patch or VMM install takes minutes, a firmware update with a
   * reboot well under an hour. Past 24.8 days a Node timer (`setTimeout`) fires at once instead of
   * waiting, so a simulated or QEMU apply of that length would end immediately; and 1e300 overflowed
   * every time of the plan (issue 12).
   */
  maxStepPartMs: 6 * HOUR,
  /**
   * Longest settle time between waves: 1 day. Health checks report within minutes (default 5 min);
   * a day lets an operator settle overnight. Longer leaves a rollout holding its hosts for weeks.
   */
  maxSettleMs: 24 * HOUR,
  /**
   * Longest notice a rollout's events give: 7 days, the same bound as a drill's notice
   * ({@link EVENT_TIME_LIMITS}), since tenants read both in the same document. Longer is nearly always
   * a unit mistake that would leave events Scheduled for months.
   */
  maxNoticeMs: EVENT_TIME_LIMITS.maxNoticeMs,
  /**
   * Longest a wave may wait for its maintenance window, past its earliest start (the previous wave's
   * end, its settle time and the notice): 366 days. A rollout holds its hosts while it waits (no
   * other rollout may take them), so an interval window in the year 9999, or one given in
   * microseconds, would hold them for good without a word.
   */
  maxWindowWaitMs: 366 * 24 * HOUR,
  /** Longest daily window: a day (a window that never closes is "no window"). */
  maxDailyWindowMs: 24 * HOUR,
  /**
   * Most maintenance windows in a policy: 1,000. A year of nightly interval windows is 366; the
   * planner looks every window up for every wave, so an unbounded list made planning quadratic.
   */
  maxWindows: 1000,
  /** Longest update description, in characters: one sentence for the operator, as an event's. */
  maxDescriptionLength: EVENT_TIME_LIMITS.maxDescriptionLength,
  /** Longest VMM version text: a build id or a package version, never a paragraph. */
  maxVersionLength: 128,
  /** Most host names an update may list: every host of the largest fleet. */
  maxHostNames: FLEET_LIMITS.maxHosts,
  /** Longest name of a host, set or VM an update or policy may give: the fleet file's own bound. */
  maxNameLength: FLEET_LIMITS.maxNameLength,
  /** Most labels an update's selector may match on, and their key and value lengths: as on hosts. */
  maxLabels: FLEET_LIMITS.maxLabels,
  maxLabelLength: FLEET_LIMITS.maxLabelLength,
  /**
   * Most pause budget overrides, per sets and per VMs: 10,000. Overrides are for a few sensitive
   * applications; the rest take the policy's budget. Each is looked up once per VM classified.
   */
  maxPauseBudgetOverrides: 10_000,
  /** `maxHostsInParallel` and `maxFailedHosts` at most: every host of the largest fleet. */
  maxHosts: FLEET_LIMITS.maxHosts,
  /** `maxVmsPausedAtOnce` at most: every VM of the largest fleet. */
  maxVms: FLEET_LIMITS.maxVms,
} as const);

/**
 * Why `plan` holds a time that no client could read back, or `null` when every time renders (see
 * {@link isRenderableTime}): the planner refuses such a plan (INVALID_INPUT) and the store refuses to
 * commit it. The schema's bounds keep every plan of a real fleet far inside the range; this is the
 * check behind them, for a window set in the year 9999, a `now` of the wrong unit, or a bound
 * raised too far.
 */
export function planTimeProblem(plan: Plan): string | null {
  // Messages are built only for a bad time: the walk visits every VM of a region (250,000).
  const bad = (what: string, t: number): string =>
    `${what} ${t} is not a time clients can read (a whole millisecond from 1970 to ${new Date(MAX_RENDERABLE_TIME).toISOString()})`;
  const ok = isRenderableTime;
  if (!ok(plan.plannedAt)) return bad('plannedAt', plan.plannedAt);
  if (!ok(plan.expectedEndAt)) return bad('expectedEndAt', plan.expectedEndAt);
  // The executor's settle deadline after the last wave: now + settle, with now near the plan's end.
  const settled = plan.expectedEndAt + plan.policy.settleMs;
  if (!ok(settled)) return bad('the end of the last settle time', settled);
  for (const w of plan.waves) {
    const wave = `wave ${w.index + 1}`;
    if (!ok(w.publishAt)) return bad(`${wave} publishAt`, w.publishAt);
    if (!ok(w.startAt)) return bad(`${wave} startAt`, w.startAt);
    if (!ok(w.expectedEndAt)) return bad(`${wave} expectedEndAt`, w.expectedEndAt);
    for (const b of w.batches) {
      if (!ok(b.expectedStartAt)) return bad(`${wave} batch ${b.index + 1} expectedStartAt`, b.expectedStartAt);
      for (const s of b.steps) {
        if (!ok(s.expectedStartAt)) return bad(`${wave} step of ${s.host} expectedStartAt`, s.expectedStartAt);
        for (const vm of s.vms) {
          if (vm.notBefore !== null && !ok(vm.notBefore))
            return bad(`${wave} notBefore of VM ${vm.name}`, vm.notBefore);
        }
      }
    }
    for (const e of w.events) {
      if (!ok(e.createdAt)) return bad(`${wave} event ${e.eventId} createdAt`, e.createdAt);
      if (!ok(e.notBefore)) return bad(`${wave} event ${e.eventId} notBefore`, e.notBefore);
    }
  }
  return null;
}

/** `ms` as the docs and messages show a bound: `6h (21600000 ms)`. */
export function describeBound(ms: number): string {
  return `${formatDuration(ms)} (${ms} ms)`;
}
