import { z } from 'zod';
import { IntermissionError } from '../errors.js';
import { MAX_RENDERABLE_TIME, isRenderableTime, parseDuration, scaled, type TimeScale } from '../time.js';
import { MAX_PAUSE_BUDGET_MS } from '../vocabulary.js';
import {
  DEFAULT_PAUSE_BUDGET_MS,
  DEFAULT_SETTLE_MS,
  DEFAULT_UPDATE_DURATIONS,
  FALLBACK_PATHS,
  UPDATE_IMPACTS,
  UPDATE_KINDS,
  WEEKDAYS,
  type FailureBudget,
  type HostSelector,
  type MaintenanceWindow,
  type ResolvedFailureBudget,
  type ResolvedPolicy,
  type ResolvedUpdate,
  type RolloutPolicy,
  type Update,
  type UpdateDurations,
} from './model.js';
import { ROLLOUT_LIMITS, describeBound } from './limits.js';
import { parseTimeOfDay } from './windows.js';

/** What a duration field accepts: its name in messages, its upper bound, and whether 0 is allowed. */
interface DurationBounds {
  readonly max: number;
  /** What the value is, in messages: `pause budget`. Default `duration`. */
  readonly label?: string;
  /** True when the duration must be more than 0 (a pause budget, a window). */
  readonly positive?: boolean;
}

/**
 * A duration: milliseconds as a number (rounded to whole ms), or text such as `30s`, `15m`, `PT5M`
 * (see parseDuration). Both forms are bounded by `bounds.max`: 1e300 and `100000000d` alike are
 * refused with the bound in the message, never carried into the plan's times.
 */
function duration(bounds: DurationBounds) {
  const min = bounds.positive === true ? 'more than 0' : '0 or more';
  const label = bounds.label ?? 'duration';
  const range = `${min}, at most ${describeBound(bounds.max)}`;
  const tooLong = (input: unknown): string =>
    `${label} ${String(input)} ms is too long: at most ${describeBound(bounds.max)}`;
  // The number form carries its bounds as JSON Schema `minimum`/`maximum`, so the OpenAPI document
  // shows them; the transform checks both forms again.
  const numberForm = z
    .number()
    .min(0, { error: () => `a ${label} of ${range}` })
    .max(bounds.max, { error: (issue) => tooLong(issue.input) });
  // No duration is written in more than a few characters: a long text is refused before it is read.
  const textForm = z.string().max(64, `${label} text is at most 64 characters, e.g. "30s", "15m", "PT2H"`);
  return z
    .union([numberForm, textForm])
    .meta({ description: `milliseconds, or text such as "30s", "15m", "PT2H"; ${range}` })
    .transform((value, ctx): number => {
      let ms: number;
      if (typeof value === 'number') {
        if (!Number.isFinite(value) || value > bounds.max) {
          ctx.addIssue({ code: 'custom', message: tooLong(value) });
          return z.NEVER;
        }
        // `+ 0` turns -0 (JSON `-0`) into 0: -0 survives JSON as 0 and would not round-trip.
        ms = value < 0 ? value : Math.round(value) + 0;
      } else {
        try {
          ms = parseDuration(value, { max: bounds.max, name: label });
        } catch (error) {
          ctx.addIssue({ code: 'custom', message: error instanceof Error ? error.message : String(error) });
          return z.NEVER;
        }
      }
      if (ms < 0 || (bounds.positive === true && ms === 0)) {
        ctx.addIssue({ code: 'custom', message: `a ${label} of ${range}` });
        return z.NEVER;
      }
      return ms;
    });
}

/**
 * A point in time: milliseconds since the epoch (rounded to whole ms), or an ISO-8601 date-time with
 * a zone; in either form a time clients can render (1970 to 9999, see isRenderableTime).
 */
const instant = z
  .union([z.number(), z.iso.datetime({ offset: true }).transform((text) => Date.parse(text))])
  .transform((t, ctx): number => {
    const ms = Math.round(t) + 0;
    if (!isRenderableTime(ms)) {
      ctx.addIssue({
        code: 'custom',
        message: `${t} is not a time from 1970 to ${new Date(MAX_RENDERABLE_TIME).toISOString()}`,
      });
      return z.NEVER;
    }
    return ms;
  });

/** A pause budget: more than 0, at most the design's hard bound of 30 s (invariant 1). */
const pauseBudget = duration({ max: MAX_PAUSE_BUDGET_MS, positive: true, label: 'pause budget' });

/** A host, set or VM name as an update or policy gives it (the fleet says which exist). */
const name = z.string().min(1).max(ROLLOUT_LIMITS.maxNameLength, `at most ${ROLLOUT_LIMITS.maxNameLength} characters`);

const hostSelectorSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('all') }).strict(),
  z
    .object({
      kind: z.literal('names'),
      names: z
        .array(name)
        .min(1)
        .max(ROLLOUT_LIMITS.maxHostNames, `at most ${ROLLOUT_LIMITS.maxHostNames} hosts, the largest fleet`),
    })
    .strict(),
  z
    .object({
      kind: z.literal('labels'),
      labels: z
        .record(
          z.string().max(ROLLOUT_LIMITS.maxLabelLength, `at most ${ROLLOUT_LIMITS.maxLabelLength} characters`),
          z.string().max(ROLLOUT_LIMITS.maxLabelLength, `at most ${ROLLOUT_LIMITS.maxLabelLength} characters`),
        )
        .refine((l) => Object.keys(l).length > 0, 'give at least one label')
        .refine((l) => Object.keys(l).length <= ROLLOUT_LIMITS.maxLabels, `at most ${ROLLOUT_LIMITS.maxLabels} labels`),
    })
    .strict(),
]);

const stepPart = duration({ max: ROLLOUT_LIMITS.maxStepPartMs });

const durationsSchema = z
  .object({
    inPlaceMigrationPauseMs: stepPart,
    resumeOverheadMs: stepPart,
    hostRebootMs: stepPart,
    vmRestartMs: stepPart,
    vmRedeployMs: stepPart,
  })
  .strict()
  .partial();

const version = z
  .string()
  .min(1)
  .max(ROLLOUT_LIMITS.maxVersionLength, `at most ${ROLLOUT_LIMITS.maxVersionLength} characters`);

/** Schema of an {@link Update} as the CLI or the API receives it; durations may be text (`45s`). */
export const updateSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/, 'must be 1-128 letters, digits, "_", ".", ":" or "-"'),
    kind: z.enum(UPDATE_KINDS),
    description: z
      .string()
      .max(ROLLOUT_LIMITS.maxDescriptionLength, `at most ${ROLLOUT_LIMITS.maxDescriptionLength} characters`)
      .optional(),
    hosts: hostSelectorSchema.optional(),
    expectedApplyMs: stepPart,
    vmm: z.object({ fromVersion: version, toVersion: version }).strict().optional(),
    durations: durationsSchema.optional(),
  })
  .strict();

const windowSchema = z.discriminatedUnion('kind', [
  z
    .object({ kind: z.literal('interval'), start: instant, end: instant })
    .strict()
    .refine((w) => w.start < w.end, 'a window ends after it starts'),
  z
    .object({
      kind: z.literal('daily'),
      start: z.string().refine((s) => {
        try {
          parseTimeOfDay(s);
          return true;
        } catch {
          return false;
        }
      }, 'must be HH:MM, UTC'),
      durationMs: duration({ max: ROLLOUT_LIMITS.maxDailyWindowMs, positive: true }),
      days: z.array(z.enum(WEEKDAYS)).min(1).max(WEEKDAYS.length, 'at most the 7 weekdays').optional(),
    })
    .strict(),
]);

const failureBudgetSchema = z.union([
  z
    .object({
      maxFailedHosts: z
        .number()
        .int()
        .nonnegative()
        .max(ROLLOUT_LIMITS.maxHosts, `at most ${ROLLOUT_LIMITS.maxHosts}, the largest fleet`),
    })
    .strict(),
  z.object({ maxFailedFraction: z.number().min(0).max(1) }).strict(),
]);

/** A count limit: a whole number from 1 to `max`, or `null` for none. */
const limit = (max: number, what: string) =>
  z.number().int().positive().max(max, `at most ${max}, the ${what} of the largest fleet`).nullable();

/** Pause budget overrides by name, at most {@link ROLLOUT_LIMITS.maxPauseBudgetOverrides}. */
const overrides = z
  .record(name, pauseBudget)
  .refine(
    (r) => Object.keys(r).length <= ROLLOUT_LIMITS.maxPauseBudgetOverrides,
    `at most ${ROLLOUT_LIMITS.maxPauseBudgetOverrides} overrides`,
  );

/** Schema of a {@link RolloutPolicy}; durations may be text (`30s`) and window bounds ISO date-times. */
export const rolloutPolicySchema = z
  .object({
    pauseBudgetMs: pauseBudget.optional(),
    pauseBudgets: z.object({ sets: overrides.optional(), vms: overrides.optional() }).strict().optional(),
    maxHostsInParallel: limit(ROLLOUT_LIMITS.maxHosts, 'hosts').optional(),
    maxVmsPausedAtOnce: limit(ROLLOUT_LIMITS.maxVms, 'VMs').optional(),
    settleMs: duration({ max: ROLLOUT_LIMITS.maxSettleMs }).optional(),
    noticeMs: duration({ max: ROLLOUT_LIMITS.maxNoticeMs }).optional(),
    windows: z
      .array(windowSchema)
      .max(ROLLOUT_LIMITS.maxWindows, `at most ${ROLLOUT_LIMITS.maxWindows} windows`)
      .optional(),
    failureBudget: failureBudgetSchema.optional(),
    fallback: z.enum(FALLBACK_PATHS).optional(),
    requireGuestAgent: z.boolean().optional(),
  })
  .strict();

// Both schemas must produce exactly the hand-written types, whose JSDoc is the reference.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const _updateMatches: Same<z.output<typeof updateSchema>, Mutable<Update>> = true;
const _policyMatches: Same<z.output<typeof rolloutPolicySchema>, Mutable<RolloutPolicy>> = true;
type Mutable<T> = T extends readonly (infer U)[]
  ? Mutable<U>[]
  : T extends object
    ? { -readonly [K in keyof T]: Mutable<T[K]> }
    : T;

function invalid(what: string, error: z.ZodError): IntermissionError {
  const issues = error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  return new IntermissionError('INVALID_INPUT', `invalid ${what}: ${issues.join('; ')}`, { details: { issues } });
}

/** Validates an update from untrusted input (CLI, API, file). Throws INVALID_INPUT with every issue. */
export function parseUpdate(input: unknown): Update {
  const parsed = updateSchema.safeParse(input);
  if (!parsed.success) throw invalid('update', parsed.error);
  return parsed.data;
}

/** Validates a rollout policy from untrusted input. Throws INVALID_INPUT with every issue. */
export function parseRolloutPolicy(input: unknown): RolloutPolicy {
  const parsed = rolloutPolicySchema.safeParse(input ?? {});
  if (!parsed.success) throw invalid('rollout policy', parsed.error);
  return parsed.data;
}

/** Validates an update and fills in its defaults. */
export function resolveUpdate(update: Update): ResolvedUpdate {
  const u = parseUpdate(update);
  const durations: UpdateDurations = Object.freeze({ ...DEFAULT_UPDATE_DURATIONS, ...u.durations });
  const hosts: HostSelector = freezeSelector(u.hosts ?? { kind: 'all' });
  return Object.freeze({
    id: u.id,
    kind: u.kind,
    description: u.description ?? UPDATE_IMPACTS[u.kind].impact,
    hosts,
    expectedApplyMs: u.expectedApplyMs,
    vmm: u.vmm ? Object.freeze({ ...u.vmm }) : null,
    durations,
  });
}

function freezeSelector(s: HostSelector): HostSelector {
  if (s.kind === 'names') return Object.freeze({ kind: 'names', names: Object.freeze([...s.names]) });
  if (s.kind === 'labels') return Object.freeze({ kind: 'labels', labels: Object.freeze({ ...s.labels }) });
  return Object.freeze({ kind: 'all' });
}

/** Validates a policy and fills in its defaults; settle time and notice are scaled by `scale`. */
export function resolvePolicy(policy: RolloutPolicy | undefined, scale: TimeScale): ResolvedPolicy {
  const p = parseRolloutPolicy(policy ?? {});
  // Only the keys that hold a value: `days: undefined` would not survive the plan's JSON round-trip.
  const windows: MaintenanceWindow[] = (p.windows ?? []).map((w) =>
    Object.freeze(
      w.kind === 'interval'
        ? { kind: w.kind, start: w.start, end: w.end }
        : w.days
          ? { kind: w.kind, start: w.start, durationMs: w.durationMs, days: Object.freeze([...w.days]) }
          : { kind: w.kind, start: w.start, durationMs: w.durationMs },
    ),
  );
  return Object.freeze({
    pauseBudgetMs: p.pauseBudgetMs ?? DEFAULT_PAUSE_BUDGET_MS,
    pauseBudgets: Object.freeze({
      sets: Object.freeze({ ...p.pauseBudgets?.sets }),
      vms: Object.freeze({ ...p.pauseBudgets?.vms }),
    }),
    maxHostsInParallel: p.maxHostsInParallel ?? null,
    maxVmsPausedAtOnce: p.maxVmsPausedAtOnce ?? null,
    settleMs: scaled(p.settleMs ?? DEFAULT_SETTLE_MS, scale),
    noticeMs: scaled(p.noticeMs ?? 0, scale),
    windows: Object.freeze(windows),
    fallback: p.fallback ?? 'reboot',
    requireGuestAgent: p.requireGuestAgent ?? false,
  });
}

/** The failure budget as a host count over `plannedHosts` hosts (a fraction rounds down). */
export function resolveFailureBudget(budget: FailureBudget | undefined, plannedHosts: number): ResolvedFailureBudget {
  const b = budget ?? { maxFailedHosts: 0 };
  if ('maxFailedFraction' in b) {
    return Object.freeze({
      maxFailedHosts: Math.floor(b.maxFailedFraction * plannedHosts),
      maxFailedFraction: b.maxFailedFraction,
    });
  }
  return Object.freeze({ maxFailedHosts: b.maxFailedHosts, maxFailedFraction: null });
}
