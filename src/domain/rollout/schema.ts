import { z } from 'zod';
import { IntermissionError } from '../errors.js';
import { HOUR, parseDuration, scaled, type TimeScale } from '../time.js';
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
import { parseTimeOfDay } from './windows.js';

/** A duration: milliseconds as a number, or text such as `30s`, `15m`, `PT5M` (see parseDuration). */
const duration = z.union([
  z.number().finite().nonnegative(),
  z.string().transform((text, ctx) => {
    try {
      return parseDuration(text);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: error instanceof Error ? error.message : String(error) });
      return z.NEVER;
    }
  }),
]);

/** A point in time: milliseconds since the epoch, or an ISO-8601 date-time with a zone. */
const instant = z.union([z.number().finite(), z.iso.datetime({ offset: true }).transform((text) => Date.parse(text))]);

const pauseBudget = duration.refine((ms) => ms > 0 && ms <= MAX_PAUSE_BUDGET_MS, {
  message: `a pause budget is more than 0 and at most ${MAX_PAUSE_BUDGET_MS} ms`,
});

const hostSelectorSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('all') }).strict(),
  z.object({ kind: z.literal('names'), names: z.array(z.string().min(1)).min(1) }).strict(),
  z
    .object({
      kind: z.literal('labels'),
      labels: z.record(z.string(), z.string()).refine((l) => Object.keys(l).length > 0, 'give at least one label'),
    })
    .strict(),
]);

const durationsSchema = z
  .object({
    inPlaceMigrationPauseMs: duration,
    resumeOverheadMs: duration,
    hostRebootMs: duration,
    vmRestartMs: duration,
    vmRedeployMs: duration,
  })
  .strict()
  .partial();

/** Schema of an {@link Update} as the CLI or the API receives it; durations may be text (`45s`). */
export const updateSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/, 'must be 1-128 letters, digits, "_", ".", ":" or "-"'),
    kind: z.enum(UPDATE_KINDS),
    description: z.string().optional(),
    hosts: hostSelectorSchema.optional(),
    expectedApplyMs: duration,
    vmm: z
      .object({ fromVersion: z.string().min(1), toVersion: z.string().min(1) })
      .strict()
      .optional(),
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
      durationMs: duration.refine((ms) => ms > 0 && ms <= 24 * HOUR, 'a daily window lasts more than 0, at most 24h'),
      days: z.array(z.enum(WEEKDAYS)).min(1).optional(),
    })
    .strict(),
]);

const failureBudgetSchema = z.union([
  z.object({ maxFailedHosts: z.number().int().nonnegative() }).strict(),
  z.object({ maxFailedFraction: z.number().min(0).max(1) }).strict(),
]);

const limit = z.number().int().positive().nullable();

/** Schema of a {@link RolloutPolicy}; durations may be text (`30s`) and window bounds ISO date-times. */
export const rolloutPolicySchema = z
  .object({
    pauseBudgetMs: pauseBudget.optional(),
    pauseBudgets: z
      .object({ sets: z.record(z.string(), pauseBudget).optional(), vms: z.record(z.string(), pauseBudget).optional() })
      .strict()
      .optional(),
    maxHostsInParallel: limit.optional(),
    maxVmsPausedAtOnce: limit.optional(),
    settleMs: duration.optional(),
    noticeMs: duration.optional(),
    windows: z.array(windowSchema).optional(),
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
  const windows: MaintenanceWindow[] = (p.windows ?? []).map((w) =>
    Object.freeze(w.kind === 'daily' && w.days ? { ...w, days: Object.freeze([...w.days]) } : { ...w }),
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
