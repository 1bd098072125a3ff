import { Hono } from 'hono';
import { z } from 'zod';
import {
  EVENT_SOURCES,
  EVENT_TYPES,
  IntermissionError,
  coerceError,
  minimumNotice,
  parseDuration,
  type MaintenanceEvent,
} from '../domain/index.js';
import type { EventService } from '../service/event-service.js';
import { DRILL_OWNER_PREFIX } from '../service/event-service.js';
import type { Controller } from '../controller/controller.js';
import { attestationRoutes, type AttestationCertificate } from './attestation.js';
import { dashboardRoutes } from './dashboard.js';
import { LIVE_STREAM_PATH, liveStream, type LiveHub } from './live.js';
import { METRICS_PATH, OPENAPI_PATH, openApiDocument } from './openapi.js';
import { metricsHandler, type IntermissionMetrics } from '../metrics/index.js';
import { rolloutRoutes } from './rollouts.js';
import type { Principal, TokenAuthority } from './tokens.js';

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

const iso = (t: number | undefined): string | null => (t === undefined ? null : new Date(t).toISOString());

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
 * Throws SCOPE_VIOLATION (403) unless a tenant may cancel the event: one it scheduled itself through
 * POST /v1/events (owner `drill:<its name>`, source User) for VMs that are all its own. Nothing else
 * (platform events, a rollout's, an operator's drill) is a tenant's to cancel.
 */
function assertTenantMayCancel(principal: Principal & { role: 'tenant' }, event: MaintenanceEvent): void {
  const own = event.resources.every((vm) => principal.vms.includes(vm));
  const scheduledByIt = event.owner === `${DRILL_OWNER_PREFIX}${principal.name}` && event.source === 'User';
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

/** Body of POST /v1/events: a drill or a user event for one or more VMs of one scope. */
export const scheduleRequestSchema = z
  .object({
    type: z.enum(EVENT_TYPES),
    vms: z.array(z.string().min(1)).min(1),
    /** Notice from now, e.g. "15m" or 900000 (ms). Default: the type's minimum notice. */
    notice: z.union([z.string(), z.number().int().nonnegative()]).optional(),
    /** Absolute NotBefore (ISO 8601); exclusive with notice. */
    notBefore: z.iso.datetime({ offset: true }).optional(),
    durationInSeconds: z.number().int().min(-1).optional(),
    description: z.string().max(512).optional(),
    source: z.enum(EVENT_SOURCES).optional(),
  })
  .strict();
export type ScheduleRequest = z.infer<typeof scheduleRequestSchema>;

const tokenRequestSchema = z
  .object({ tenant: z.string().min(1).max(64), vms: z.array(z.string().min(1)).min(1) })
  .strict();

export interface ControlAppOptions {
  readonly service: EventService;
  readonly tokens: TokenAuthority;
  /** The rollout controller; without it the rollout routes answer 404. */
  readonly controller?: Controller;
  /** The live feed behind GET /v1/stream; without it the stream answers 503. */
  readonly live?: LiveHub;
  /** The process's metrics, served at GET /metrics (Prometheus text format, no token). */
  readonly metrics?: IntermissionMetrics;
  /** The attestation certificate, served to operators at GET /v1/attestation/certificate. */
  readonly attestation?: AttestationCertificate;
}

type Env = { Variables: { principal: Principal } };

/**
 * The control API as a fetch handler: fleet, events and drills for operators, and for tenants
 * the events of their own VMs. Every /v1 request needs `Authorization: Bearer <token>`; the OpenAPI
 * document (GET /openapi.json) and the dashboard's static files (/, /dashboard/*) need none.
 */
export function createControlApp({
  service,
  tokens,
  controller,
  live,
  metrics,
  attestation,
}: ControlAppOptions): Hono<Env> {
  const app = new Hono<Env>();

  app.onError((error, c) => {
    const e =
      error instanceof SyntaxError
        ? new IntermissionError('INVALID_INPUT', `body is not JSON: ${error.message}`)
        : coerceError(error);
    return c.json(
      { error: { code: e.code, message: e.message, retryable: e.retryable, details: e.details } },
      e.status as 400,
    );
  });
  app.notFound((c) => c.json({ error: { code: 'NOT_FOUND', message: `no route ${c.req.method} ${c.req.path}` } }, 404));

  // No token: the API's description and the dashboard (which asks for a token itself).
  const openApi = openApiDocument({ scheduleRequest: scheduleRequestSchema, tokenRequest: tokenRequestSchema });
  app.get(OPENAPI_PATH, (c) => c.json(openApi));
  app.route('/', dashboardRoutes());
  // Prometheus scrapes without a token, like most exporters; the control address is loopback by default.
  if (metrics) {
    const serveMetrics = metricsHandler(metrics);
    app.get(METRICS_PATH, (c) => serveMetrics(c.req.raw));
  }

  app.use('/v1/*', async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const bearer = /^Bearer\s+(.+)$/i.exec(header)?.[1]?.trim();
    // EventSource cannot send headers: the stream alone also takes ?token= (documented in openapi.ts).
    const principal = tokens.authenticate(
      bearer ?? (c.req.path === LIVE_STREAM_PATH ? c.req.query('token') : undefined),
    );
    if (!principal)
      throw new IntermissionError(
        'UNAUTHORIZED',
        'send Authorization: Bearer <token> (see control.json in the state directory)',
      );
    c.set('principal', principal);
    await next();
  });

  const mayAct = (principal: Principal, vms: readonly string[]): boolean =>
    principal.role === 'operator' || vms.every((vm) => principal.vms.includes(vm));
  const visible = (principal: Principal, e: MaintenanceEvent): boolean =>
    principal.role === 'operator' || e.resources.some((vm) => principal.vms.includes(vm));

  app.get('/v1/health', (c) =>
    c.json({ ok: true, now: new Date(service.now()).toISOString(), timeScale: service.timing.scale.factor }),
  );

  app.get('/v1/whoami', (c) => c.json(c.get('principal')));

  app.get('/v1/fleet', (c) => {
    const principal = c.get('principal');
    const fleet = service.fleet.fleet;
    const vms = fleet.vms.filter((vm) => mayAct(principal, [vm.name]));
    return c.json({
      hosts: principal.role === 'operator' ? fleet.hosts : [],
      availabilitySets: principal.role === 'operator' ? fleet.availabilitySets : [],
      vms: vms.map((vm) => ({
        name: vm.name,
        vmId: vm.vmId,
        host: vm.host,
        availabilitySet: vm.availabilitySet ?? null,
        updateDomain: vm.updateDomain,
        faultDomain: vm.faultDomain,
        lastPoll: iso(service.lastPoll(vm.name)),
      })),
    });
  });

  app.get('/v1/events', async (c) => {
    const principal = c.get('principal');
    const all = c.req.query('all') === 'true';
    const events = all ? await service.history({ includeRemoved: true, limit: 1000 }) : service.list();
    return c.json({ events: events.filter((e) => visible(principal, e)).map(eventView) });
  });

  app.get('/v1/events/:id', async (c) => {
    const id = c.req.param('id').toUpperCase();
    const event = service.get(id) ?? (await service.history({ includeRemoved: true })).find((e) => e.eventId === id);
    if (!event || !visible(c.get('principal'), event)) throw new IntermissionError('NOT_FOUND', `no event ${id}`);
    return c.json(eventView(event));
  });

  app.post('/v1/events', async (c) => {
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
    const noticeMs =
      body.notice === undefined
        ? body.notBefore === undefined
          ? minimumNotice(body.type, service.timing)
          : undefined
        : typeof body.notice === 'number'
          ? body.notice
          : parseDuration(body.notice);
    const event = await service.schedule({
      type: body.type,
      resources: body.vms,
      ...(noticeMs === undefined ? { notBefore: Date.parse(body.notBefore ?? '') } : { noticeMs }),
      durationInSeconds: body.durationInSeconds ?? (body.type === 'Freeze' ? 5 : -1),
      ...(body.description === undefined ? {} : { description: body.description }),
      // Tenants' events are theirs: User. Operators choose, and drills default to User as well.
      source: principal.role === 'tenant' ? 'User' : (body.source ?? 'User'),
      owner: `${DRILL_OWNER_PREFIX}${principal.name}`,
    });
    return c.json(eventView(event), 201);
  });

  /**
   * Tenants may cancel only the user events they scheduled themselves (owner `drill:<their name>`,
   * source User, all VMs theirs); platform events they may approve (through the metadata service),
   * never cancel. An operator's cancellation of a rollout's event goes through the executor, which
   * records the host steps it leaves out as cancelled by that operator, not as failed.
   */
  app.post('/v1/events/:id/cancel', async (c) => {
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

  app.post('/v1/tokens', async (c) => {
    if (c.get('principal').role !== 'operator')
      throw new IntermissionError('UNAUTHORIZED', 'only operators issue tokens');
    const parsed = tokenRequestSchema.safeParse(await c.req.json());
    if (!parsed.success)
      throw new IntermissionError('INVALID_INPUT', parsed.error.issues.map((i) => i.message).join('; '));
    for (const vm of parsed.data.vms) service.fleet.requireVm(vm);
    const token = await tokens.issue({ role: 'tenant', name: parsed.data.tenant, vms: parsed.data.vms });
    return c.json({ tenant: parsed.data.tenant, vms: parsed.data.vms, token }, 201);
  });

  app.get('/v1/vms/:name/scheduled-events', (c) => {
    const name = c.req.param('name');
    service.fleet.requireVm(name);
    if (!mayAct(c.get('principal'), [name])) throw new IntermissionError('NOT_FOUND', `no VM named ${name}`);
    const doc = service.document(name);
    return c.json({ scope: doc.scope, incarnation: doc.incarnation, events: doc.events.map(eventView) });
  });

  app.get(LIVE_STREAM_PATH, (c) => {
    if (!live) throw new IntermissionError('UNREACHABLE', 'this server has no live feed');
    return liveStream(c, { hub: live, principal: c.get('principal'), now: () => service.now() });
  });

  app.route('/v1', attestationRoutes(attestation));
  if (controller) app.route('/v1', rolloutRoutes(controller));

  return app;
}
