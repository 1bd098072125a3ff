import { Hono } from 'hono';
import { z } from 'zod';
import {
  EVENT_SOURCES,
  EVENT_TIME_LIMITS,
  EVENT_TYPES,
  IntermissionError,
  formatDuration,
  minimumNotice,
  parseDuration,
  type MaintenanceEvent,
} from '../domain/index.js';
import type { Controller } from '../controller/controller.js';
import type { EventService } from '../service/event-service.js';
import { DRILL_OWNER_PREFIX } from '../service/event-service.js';
import type { Principal } from './tokens.js';

/** An event as the control API shows it: times in ISO 8601, nothing hidden from operators. */
export interface EventView {
  readonly eventId: string;
  readonly scope: string;
  readonly type: string;
  readonly phase: string;
  /** What tenants see: Scheduled or Started, or none once removed. */
  readonly status: 'Scheduled' | 'Started' | null;
  readonly resources: readonly string[];
  readonly description: string;
  readonly source: string;
  readonly durationInSeconds: number;
  readonly createdAt: string;
  readonly notBefore: string;
  readonly approvedAt: string | null;
  readonly approvedBy: string | null;
  readonly startedAt: string | null;
  readonly endedAt: string | null;
  readonly removedAt: string | null;
  readonly removalReason: string | null;
  readonly owner: string;
}

export const iso = (t: number | undefined): string | null => (t === undefined ? null : new Date(t).toISOString());

export function eventView(e: MaintenanceEvent): EventView {
  return {
    eventId: e.eventId,
    scope: e.scope,
    type: e.type,
    phase: e.phase,
    status: e.phase === 'Scheduled' ? 'Scheduled' : e.phase === 'Removed' ? null : 'Started',
    resources: e.resources,
    description: e.description,
    source: e.source,
    durationInSeconds: e.durationInSeconds,
    createdAt: new Date(e.createdAt).toISOString(),
    notBefore: new Date(e.notBefore).toISOString(),
    approvedAt: iso(e.approvedAt),
    approvedBy: e.approvedBy ?? null,
    startedAt: iso(e.startedAt),
    endedAt: iso(e.endedAt),
    removedAt: iso(e.removedAt),
    removalReason: e.removalReason ?? null,
    owner: e.owner,
  };
}

/**
 * Who owns an event scheduled through POST /v1/events. Tenants' and operators' names live in one
 * token file but are kept apart here, so that a tenant whose name matches an operator's never owns
 * that operator's drills.
 */
function drillOwner(principal: Principal): string {
  return principal.role === 'tenant'
    ? `${DRILL_OWNER_PREFIX}tenant:${principal.name}`
    : `${DRILL_OWNER_PREFIX}${principal.name}`;
}

/**
 * Throws SCOPE_VIOLATION (403) unless a tenant may cancel the event: one it scheduled itself through
 * POST /v1/events (owner `drill:tenant:<its name>`, source User) for VMs that are all its own. Nothing
 * else (platform events, a rollout's, an operator's drill) is a tenant's to cancel.
 */
function assertTenantMayCancel(principal: Principal & { role: 'tenant' }, event: MaintenanceEvent): void {
  const own = event.resources.every((vm) => principal.vms.includes(vm));
  const scheduledByIt = event.owner === drillOwner(principal) && event.source === 'User';
  if (own && scheduledByIt) return;
  throw new IntermissionError(
    'SCOPE_VIOLATION',
    event.source === 'Platform'
      ? `event ${event.eventId} is platform maintenance: a tenant may approve it (POST to the metadata ` +
          'service) to start it early, but not cancel it'
      : own
        ? `event ${event.eventId} was not scheduled by this tenant: a tenant may cancel only its own user events`
        : `event ${event.eventId} covers VMs of other tenants: a tenant may cancel only its own user events`,
    { details: { eventId: event.eventId, source: event.source } },
  );
}

/** Body of POST /v1/events: a drill or a user event for one or more VMs of one scope. Bounds: docs/limits.md. */
export const scheduleRequestSchema = z
  .object({
    type: z.enum(EVENT_TYPES),
    vms: z.array(z.string().min(1).max(256)).min(1).max(EVENT_TIME_LIMITS.maxVms),
    /** Notice from now, e.g. "15m" or 900000 (ms), at most 7 days. Default: the type's minimum notice. */
    notice: z
      .union([
        z.string().max(64),
        z
          .number()
          .int()
          .nonnegative()
          .max(EVENT_TIME_LIMITS.maxNoticeMs, `at most ${EVENT_TIME_LIMITS.maxNoticeMs} ms (7d)`),
      ])
      .optional(),
    /** Absolute NotBefore (ISO 8601), at most 7 days ahead; exclusive with notice. */
    notBefore: z.iso.datetime({ offset: true }).optional(),
    /** Expected impact in seconds, -1 when unknown; at most one day. */
    durationInSeconds: z
      .number()
      .int()
      .min(-1)
      .max(EVENT_TIME_LIMITS.maxDurationInSeconds, `at most ${EVENT_TIME_LIMITS.maxDurationInSeconds} (one day)`)
      .optional(),
    description: z.string().max(EVENT_TIME_LIMITS.maxDescriptionLength).optional(),
    source: z.enum(EVENT_SOURCES).optional(),
  })
  .strict();
export type ScheduleRequest = z.infer<typeof scheduleRequestSchema>;

/** Event ids are GUIDs; anything else is refused before the store is asked. */
const EVENT_ID_RE = /^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/i;

/** Whether a caller may act on these VMs: operators on any, a tenant on its own only. */
export const mayAct = (principal: Principal, vms: readonly string[]): boolean =>
  principal.role === 'operator' || vms.every((vm) => principal.vms.includes(vm));

/** Whether a caller sees an event: operators all, a tenant those touching one of its VMs. */
const visible = (principal: Principal, e: MaintenanceEvent): boolean =>
  principal.role === 'operator' || e.resources.some((vm) => principal.vms.includes(vm));

type Env = { Variables: { principal: Principal } };

/**
 * The event routes of the control API, mounted under /v1 behind its authentication: lists, one
 * event, drills and user events, cancellation, and a VM's document as it sees it.
 */
export function eventRoutes({ service, controller }: { service: EventService; controller?: Controller }): Hono<Env> {
  const app = new Hono<Env>();

  app.get('/events', async (c) => {
    const principal = c.get('principal');
    const all = c.req.query('all') === 'true';
    const events = all ? await service.history({ includeRemoved: true, limit: 1000 }) : service.list();
    return c.json({ events: events.filter((e) => visible(principal, e)).map(eventView) });
  });

  app.get('/events/:id', async (c) => {
    const raw = c.req.param('id');
    // A malformed id names no event: 404, as an unknown one, and the store is not asked.
    if (!EVENT_ID_RE.test(raw)) {
      throw new IntermissionError(
        'NOT_FOUND',
        `no event ${JSON.stringify(raw.slice(0, 64))}: an event id is a GUID such as 3F2504E0-4F89-41D3-9A0C-0305E82C3301`,
      );
    }
    const id = raw.toUpperCase();
    const event = await service.find(id);
    if (!event || !visible(c.get('principal'), event)) throw new IntermissionError('NOT_FOUND', `no event ${id}`);
    return c.json(eventView(event));
  });

  app.post('/events', async (c) => {
    const principal = c.get('principal');
    const parsed = scheduleRequestSchema.safeParse(await c.req.json());
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`);
      throw new IntermissionError('INVALID_INPUT', issues.join('; '), { details: { issues } });
    }
    const body = parsed.data;
    if (!mayAct(principal, body.vms)) {
      throw new IntermissionError('SCOPE_VIOLATION', 'a tenant token may schedule events for its own VMs only', {
        details: { vms: body.vms },
      });
    }
    if (body.notice !== undefined && body.notBefore !== undefined) {
      throw new IntermissionError('INVALID_INPUT', 'give either notice or notBefore, not both');
    }
    const { maxNoticeMs } = EVENT_TIME_LIMITS;
    let timing: { noticeMs: number } | { notBefore: number };
    if (body.notBefore !== undefined) {
      const notBefore = Date.parse(body.notBefore);
      if (!Number.isFinite(notBefore)) {
        throw new IntermissionError('INVALID_INPUT', `notBefore ${JSON.stringify(body.notBefore)} is not a date`);
      }
      if (notBefore - service.now() > maxNoticeMs) {
        throw new IntermissionError(
          'INVALID_INPUT',
          `notBefore ${body.notBefore} is too far ahead: at most ${formatDuration(maxNoticeMs)} from now`,
          { details: { notBefore: body.notBefore, maxNoticeMs } },
        );
      }
      timing = { notBefore };
    } else if (body.notice === undefined) {
      timing = { noticeMs: minimumNotice(body.type, service.timing) };
    } else if (typeof body.notice === 'number') {
      timing = { noticeMs: body.notice };
    } else {
      timing = { noticeMs: parseDuration(body.notice, { max: maxNoticeMs, name: 'notice' }) };
    }
    const event = await service.schedule({
      type: body.type,
      resources: body.vms,
      ...timing,
      durationInSeconds: body.durationInSeconds ?? (body.type === 'Freeze' ? 5 : -1),
      ...(body.description === undefined ? {} : { description: body.description }),
      // Tenants' events are theirs: User. Operators choose, and drills default to User as well.
      source: principal.role === 'tenant' ? 'User' : (body.source ?? 'User'),
      owner: drillOwner(principal),
    });
    return c.json(eventView(event), 201);
  });

  /**
   * Tenants may cancel only the user events they scheduled themselves (owner `drill:tenant:<name>`,
   * source User, all VMs theirs); platform events they may approve (through the metadata service),
   * never cancel. An operator's cancellation of a rollout's event goes through the executor, which
   * records the host steps it leaves out as cancelled by that operator, not as failed.
   */
  app.post('/events/:id/cancel', async (c) => {
    const principal = c.get('principal');
    const id = c.req.param('id').toUpperCase();
    const event = service.get(id);
    if (!event || !visible(principal, event)) throw new IntermissionError('NOT_FOUND', `no live event ${id}`);
    if (principal.role === 'tenant') assertTenantMayCancel(principal, event);
    if (controller && !event.owner.startsWith(DRILL_OWNER_PREFIX)) {
      const result = await controller.executor.cancelEvent(id, { by: principal.name });
      return c.json(eventView(result.event));
    }
    const [cancelled] = await service.cancel([id]);
    return c.json(eventView(cancelled ?? event));
  });

  app.get('/vms/:name/scheduled-events', (c) => {
    const name = c.req.param('name');
    service.fleet.requireVm(name);
    if (!mayAct(c.get('principal'), [name])) throw new IntermissionError('NOT_FOUND', `no VM named ${name}`);
    const doc = service.document(name);
    return c.json({ scope: doc.scope, incarnation: doc.incarnation, events: doc.events.map(eventView) });
  });

  return app;
}
