import { z } from 'zod';
import { EVENT_PHASES, EVENT_SOURCES, EVENT_TYPES } from '../domain/index.js';
import {
  UPDATE_KINDS,
  VM_PATHS,
  rolloutPolicySchema,
  updateSchema,
  type TenantEvent,
} from '../domain/rollout/index.js';
import { hostStepStatusSchema, vmStepResultSchema } from '../agent/index.js';
import { ROLLOUT_STATUSES, STEP_STATUSES, WAVE_PHASES } from '../store/rollout-store.js';
import type { StepRecord, VmOperationRecord } from '../store/rollout-store.js';
import type { EventView } from './app.js';
import type { LiveMessageType } from './live.js';
import type { RolloutSummary } from './rollouts.js';
import { TOKEN_ROLES, type Principal, type TokenInfo } from './tokens.js';

/**
 * Schemas of what the control API answers, for its OpenAPI document and for tests that hold real
 * answers against them. Each is strict, and where a TypeScript type describes the same value a
 * compile-time check below keeps the two in step: a field added to a view and not here fails the
 * type check.
 */

const isoTime = z.iso.datetime({ offset: true });
const nullableIso = isoTime.nullable();

/** The error body of every failed request. */
export const errorBodySchema = z.strictObject({
  error: z.strictObject({
    /** Stable code (INVALID_INPUT, NOT_FOUND, CONFLICT, UNAUTHORIZED, …): match on it, never on the text. */
    code: z.string(),
    message: z.string(),
    retryable: z.boolean().optional(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});

/** GET /v1/health. */
export const healthSchema = z.strictObject({
  ok: z.literal(true),
  now: isoTime,
  timeScale: z.number(),
  /** The controller's leader lease: whether this replica leads, with which epoch (absent without a controller). */
  lease: z
    .strictObject({ holder: z.string(), leading: z.boolean(), epoch: z.number().int().positive().nullable() })
    .optional(),
});

/** GET /v1/whoami. */
export const principalSchema = z.union([
  z.strictObject({ role: z.literal('operator'), name: z.string() }),
  z.strictObject({ role: z.literal('tenant'), name: z.string(), vms: z.array(z.string()) }),
]);

/** GET /v1/fleet: tenants see their own VMs and no hosts or sets. */
export const fleetViewSchema = z.strictObject({
  hosts: z.array(z.strictObject({ name: z.string(), labels: z.record(z.string(), z.string()) })),
  availabilitySets: z.array(
    z.strictObject({ name: z.string(), updateDomains: z.number().int(), faultDomains: z.number().int() }),
  ),
  vms: z.array(
    z.strictObject({
      name: z.string(),
      vmId: z.string(),
      host: z.string(),
      availabilitySet: z.string().nullable(),
      updateDomain: z.number().int(),
      faultDomain: z.number().int(),
      /** When the VM last read its Scheduled Events, since the control plane started. */
      lastPoll: nullableIso,
    }),
  ),
});

/** An event as operators see it (tenants see the same for their own VMs). */
export const eventViewSchema = z.strictObject({
  eventId: z.string(),
  scope: z.string(),
  type: z.enum(EVENT_TYPES),
  phase: z.enum(EVENT_PHASES),
  /** What tenants see: Scheduled or Started, or null once removed. */
  status: z.enum(['Scheduled', 'Started']).nullable(),
  resources: z.array(z.string()),
  description: z.string(),
  source: z.enum(EVENT_SOURCES),
  durationInSeconds: z.number().int(),
  createdAt: isoTime,
  notBefore: isoTime,
  approvedAt: nullableIso,
  approvedBy: z.string().nullable(),
  startedAt: nullableIso,
  endedAt: nullableIso,
  removedAt: nullableIso,
  removalReason: z.string().nullable(),
  owner: z.string(),
});

/** GET /v1/events. */
export const eventListSchema = z.strictObject({ events: z.array(eventViewSchema) });

/** GET /v1/vms/{name}/scheduled-events: the document of the VM's scope. */
export const scopeDocumentSchema = z.strictObject({
  scope: z.string(),
  incarnation: z.number().int(),
  events: z.array(eventViewSchema),
});

/** POST /v1/tokens. The token is shown once. */
export const issuedTokenSchema = z.union([
  z.strictObject({ tenant: z.string(), vms: z.array(z.string()), token: z.string(), expiresAt: isoTime }),
  z.strictObject({ metrics: z.string(), token: z.string(), expiresAt: isoTime }),
]);

/** A stored token as GET /v1/tokens lists it: never the token or its hash. */
export const tokenInfoSchema = z.strictObject({
  name: z.string(),
  role: z.enum(TOKEN_ROLES),
  vms: z.array(z.string()),
  createdAt: isoTime,
  expiresAt: isoTime,
  expired: z.boolean(),
});

/** GET /v1/tokens. */
export const tokenListSchema = z.strictObject({ tokens: z.array(tokenInfoSchema) });

/** DELETE /v1/tokens/{name}. */
export const revokedTokenSchema = z.strictObject({ revoked: tokenInfoSchema });

/** POST /v1/sign-in-codes: a one-time dashboard sign-in code, and the page path that uses it. */
export const signInCodeSchema = z.strictObject({ code: z.string(), expiresAt: isoTime, path: z.string() });

/** POST /v1/sessions: the session is in the Set-Cookie header; this says whose it is and until when. */
export const sessionSchema = z.strictObject({ principal: principalSchema, expiresAt: isoTime });

/** GET /v1/sessions: the session of this browser's cookie, if any. */
export const currentSessionSchema = z.strictObject({
  principal: principalSchema.nullable(),
  expiresAt: isoTime.nullable(),
});

/** DELETE /v1/sessions. */
export const signedOutSchema = z.strictObject({ ok: z.literal(true) });

/** A rollout without its plan. */
export const rolloutSummarySchema = z.strictObject({
  id: z.string(),
  status: z.enum(ROLLOUT_STATUSES),
  reason: z.string().nullable(),
  updateKind: z.enum(UPDATE_KINDS),
  description: z.string(),
  createdAt: isoTime,
  updatedAt: isoTime,
  /** Index of the current wave; equals `waves` once completed. */
  wave: z.number().int(),
  waves: z.number().int(),
  wavePhase: z.enum(WAVE_PHASES),
  failedHosts: z.number().int(),
  failureBudget: z.number().int(),
  hosts: z.number().int(),
  vms: z.number().int(),
});

/** GET /v1/rollouts. */
export const rolloutListSchema = z.strictObject({ rollouts: z.array(rolloutSummarySchema) });

/**
 * What an agent measured for one VM of a host step, and a host step's status as its agent reports
 * it: the agent protocol's own schemas, so that the API documents exactly what agents send.
 */
export { hostStepStatusSchema, vmStepResultSchema };

/** One host step of a rollout. Times are milliseconds since the epoch. */
export const stepRecordSchema = z.strictObject({
  /** `<rollout id>/w<wave>/<host>`. */
  id: z.string(),
  rolloutId: z.string(),
  wave: z.number().int(),
  batch: z.number().int(),
  host: z.string(),
  status: z.enum(STEP_STATUSES),
  dispatchedAt: z.number().nullable(),
  finishedAt: z.number().nullable(),
  /** The agent's status once finished. */
  result: hostStepStatusSchema.nullable(),
  error: z.string().nullable(),
  /**
   * Set when `status` is `cancelled`: an operator cancelled a Scheduled event of the step's VMs, so
   * the host was left out of this wave (not a failure; the rollout went on with the other hosts).
   */
  cancellation: z
    .strictObject({
      by: z.string(),
      at: z.number(),
      eventIds: z.array(z.string()),
      reason: z.string(),
    })
    .nullable(),
});

/** One measured operation on a VM: pause and clock against its budget. */
export const vmOperationSchema = z.strictObject({
  rolloutId: z.string(),
  stepId: z.string(),
  vm: z.string(),
  host: z.string(),
  path: z.string(),
  outcome: z.string(),
  pauseMs: z.number().nullable(),
  pauseBudgetMs: z.number(),
  clockOffsetMs: z.number().nullable(),
  clockResidualMs: z.number().nullable(),
  at: z.number(),
});

const classificationSchema = z.looseObject({
  path: z.enum(VM_PATHS),
  preserving: z.boolean(),
  eventType: z.enum(EVENT_TYPES).nullable(),
  expectedPauseMs: z.number(),
  pauseBudgetMs: z.number(),
  /** Why the VM does not take the memory-preserving path (stable codes). */
  reasons: z.array(z.string()),
  advisories: z.array(z.string()),
  blockingDevices: z.array(z.string()),
  /** One sentence for the operator. */
  explanation: z.string(),
});

const plannedVmSchema = z.looseObject({
  name: z.string(),
  scope: z.string(),
  updateDomain: z.number().int(),
  eventType: z.enum(EVENT_TYPES).nullable(),
  eventId: z.string().nullable(),
  notBefore: z.number().nullable(),
  durationInSeconds: z.number().int(),
  classification: classificationSchema,
});

const hostStepSchema = z.looseObject({
  kind: z.string(),
  host: z.string(),
  wave: z.number().int(),
  batch: z.number().int(),
  expectedStartAt: z.number(),
  expectedDurationMs: z.number(),
  applyMs: z.number(),
  pausedVms: z.number().int(),
  vms: z.array(plannedVmSchema),
});

const plannedEventSchema = z.looseObject({
  eventId: z.string(),
  scope: z.string(),
  type: z.enum(EVENT_TYPES),
  resources: z.array(z.string()),
  createdAt: z.number(),
  notBefore: z.number(),
  durationInSeconds: z.number().int(),
  wave: z.number().int(),
});

/**
 * A rollout plan (pure data; times in milliseconds since the epoch). The main fields are listed;
 * the planner's model (src/domain/rollout/model.ts) is the full reference.
 */
export const planSchema = z.looseObject({
  formatVersion: z.literal(1),
  id: z.string(),
  plannedAt: z.number(),
  update: z.looseObject({ id: z.string(), kind: z.enum(UPDATE_KINDS), description: z.string() }),
  policy: z.looseObject({ pauseBudgetMs: z.number(), settleMs: z.number(), noticeMs: z.number() }),
  timeScale: z.number(),
  failureBudget: z.looseObject({ maxFailedHosts: z.number().int() }),
  waves: z.array(
    z.looseObject({
      index: z.number().int(),
      publishAt: z.number(),
      startAt: z.number(),
      expectedEndAt: z.number(),
      noticeMs: z.number(),
      hosts: z.number().int(),
      vms: z.number().int(),
      /** The update domain in maintenance of each availability set, by set name. */
      updateDomains: z.record(z.string(), z.number().int()),
      batches: z.array(z.looseObject({ index: z.number().int(), steps: z.array(hostStepSchema) })),
      events: z.array(plannedEventSchema),
    }),
  ),
  blocked: z.array(
    z.looseObject({ host: z.string(), reason: z.string(), vms: z.array(z.string()), explanation: z.string() }),
  ),
  expectedEndAt: z.number(),
  stats: z.looseObject({
    plannedHosts: z.number().int(),
    plannedVms: z.number().int(),
    waves: z.number().int(),
    events: z.number().int(),
    byPath: z.record(z.string(), z.number().int()),
    byReason: z.record(z.string(), z.number().int()),
    peakPausedVms: z.number().int(),
    expectedMakespanMs: z.number(),
  }),
});

/** One event as one tenant will see it (times in milliseconds since the epoch). */
export const tenantEventSchema = z.strictObject({
  eventId: z.string(),
  type: z.enum(EVENT_TYPES),
  resources: z.array(z.string()),
  /** When it appears in the scope's document. */
  createdAt: z.number(),
  notBefore: z.number(),
  durationInSeconds: z.number().int(),
  wave: z.number().int(),
});

/** POST /v1/plans: the plan, the plan in words, and what each tenant will see and when. */
export const planPreviewSchema = z.strictObject({
  plan: planSchema,
  text: z.string(),
  tenants: z.array(z.strictObject({ scope: z.string(), events: z.array(tenantEventSchema) })),
});

/** GET /v1/rollouts/{id}: the plan only with `?plan=true`. */
export const rolloutDetailSchema = z.strictObject({
  rollout: rolloutSummarySchema,
  plan: planSchema.optional(),
  steps: z.array(stepRecordSchema),
  operations: z.array(vmOperationSchema),
});

/** The body of POST /v1/plans and POST /v1/rollouts: an update and an optional policy. */
export const rolloutRequestSchema = z.strictObject({ update: updateSchema, policy: rolloutPolicySchema.optional() });

const LIVE_MESSAGE_TYPES = [
  'hello',
  'event:scheduled',
  'event:approved',
  'event:started',
  'event:ended',
  'event:removed',
  'rollout:created',
  'rollout:status',
  'rollout:wave:published',
  'rollout:step:dispatched',
  'rollout:step:finished',
  'rollout:step:cancelled',
  'rollout:wave:settled',
  'rollout:error',
] as const satisfies readonly LiveMessageType[];

/**
 * One message of GET /v1/stream (the JSON `data` of an SSE message). `data` is an event view for
 * `event:*`, a rollout summary for `rollout:created` and `rollout:status`, `{ step }` or
 * `{ step, vms }` for host steps, and `{ rollout, wave, … }` for waves.
 */
export const liveMessageSchema = z.strictObject({
  seq: z.number().int(),
  at: isoTime,
  type: z.enum(LIVE_MESSAGE_TYPES),
  data: z.union([
    eventViewSchema,
    rolloutSummarySchema,
    z.strictObject({ step: stepRecordSchema }),
    z.strictObject({ step: stepRecordSchema, vms: z.array(vmStepResultSchema) }),
    z.looseObject({ rollout: z.string(), wave: z.number().int() }),
    z.strictObject({ rollout: z.string(), code: z.string(), message: z.string() }),
    z.strictObject({
      principal: z.string(),
      role: z.enum(['operator', 'tenant']),
      now: isoTime,
      lastSeq: z.number().int(),
    }),
  ]),
});

// --- Each schema describes its TypeScript type: same keys, and every value it accepts fits. ----------

type Describes<S extends z.ZodType, T> = [z.output<S>] extends [T]
  ? [Exclude<keyof T, keyof z.output<S>> | Exclude<keyof z.output<S>, keyof T>] extends [never]
    ? true
    : false
  : false;
const _event: Describes<typeof eventViewSchema, EventView> = true;
const _summary: Describes<typeof rolloutSummarySchema, RolloutSummary> = true;
const _step: Describes<typeof stepRecordSchema, StepRecord> = true;
const _operation: Describes<typeof vmOperationSchema, VmOperationRecord> = true;
const _principal: Describes<typeof principalSchema, Principal> = true;
const _tenantEvent: Describes<typeof tenantEventSchema, TenantEvent> = true;
const _tokenInfo: Describes<typeof tokenInfoSchema, TokenInfo> = true;
const _liveTypes: [Exclude<LiveMessageType, (typeof LIVE_MESSAGE_TYPES)[number]>] extends [never] ? true : false = true;
