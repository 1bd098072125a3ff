import { randomBytes } from 'node:crypto';
import { Hono } from 'hono';
import { deleteCookie, setCookie } from 'hono/cookie';
import { parse as parseCookies } from 'hono/utils/cookie';
import { HTTPException } from 'hono/http-exception';
import { z } from 'zod';
import type { healthSchema } from './schemas.js';
import { ERROR_CODES, IntermissionError, type ErrorCode } from '../domain/index.js';
import type { EventService } from '../service/event-service.js';
import type { Controller } from '../controller/controller.js';
import { attestationRoutes, type AttestationCertificate } from './attestation.js';
import { dashboardRoutes } from './dashboard.js';
import { LIVE_STREAM_PATH, liveStream, type LiveHub } from './live.js';
import { METRICS_PATH, OPENAPI_PATH, openApiDocument } from './openapi.js';
import { metricsHandler, type IntermissionMetrics } from '../metrics/index.js';
import { eventRoutes, iso, mayAct, scheduleRequestSchema } from './events.js';
import { rolloutRoutes } from './rollouts.js';
import { DashboardSessions, SESSION_COOKIE } from './sessions.js';
import { parseTokenTtl, type Principal, type TokenAuthority } from './tokens.js';

export { eventView, scheduleRequestSchema, type EventView, type ScheduleRequest } from './events.js';

/** A token's lifetime in a request body: `30d`, `12h`, `PT1H` or seconds (see {@link parseTokenTtl}). */
const ttlField = z.string().min(1).max(32).optional();

/** Body of POST /v1/tokens: a tenant token for its VMs, or a scrape-only metrics token. */
const tokenRequestSchema = z.union([
  z.object({ tenant: z.string().min(1).max(64), vms: z.array(z.string().min(1)).min(1), ttl: ttlField }).strict(),
  z.object({ metrics: z.string().min(1).max(64), ttl: ttlField }).strict(),
]);

/** Body of POST /v1/sessions: a one-time sign-in code, or an operator token pasted into the page. */
const sessionRequestSchema = z.union([
  z.object({ code: z.string().min(1).max(128) }).strict(),
  z.object({ token: z.string().min(1).max(256) }).strict(),
]);

/** Where the dashboard trades a sign-in code (or a pasted token) for a session cookie. */
export const SESSIONS_PATH = '/v1/sessions';
/**
 * The header a cookie-authenticated POST or DELETE must carry. A page of another origin cannot set
 * it without a CORS preflight this server never grants, so a session cookie cannot be ridden
 * (SameSite=Strict alone still lets other ports of the same host through).
 */
export const CSRF_HEADER = 'x-intermission-csrf';

/** Who authenticated a request, and what ends its access. */
interface Auth {
  readonly name: string;
  readonly expiresAt: number;
  /** Set when a dashboard session (cookie) authenticated the request. */
  readonly sessionKey?: string;
}

/** The dashboard session id of a Cookie header, if any. */
function sessionCookie(header: string | undefined): string | undefined {
  return header ? parseCookies(header, SESSION_COOKIE)[SESSION_COOKIE] : undefined;
}

/** Longest delay setTimeout keeps (about 24.8 days); longer ones fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Ends a streamed response when `watch` calls its `end`: the source stream is cancelled (so that
 * its producer stops, as if the client had gone) and the client's body ends.
 */
function endWhen(res: Response, watch: (end: () => void) => () => void): Response {
  const body = res.body;
  if (!body) return res;
  const reader = (body as ReadableStream<Uint8Array>).getReader();
  let stop: () => void = () => undefined;
  let finished = false;
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      stop = watch(() => {
        if (finished) return;
        finished = true;
        stop();
        reader.cancel().catch(() => undefined);
        try {
          controller.close();
        } catch {
          // closed already
        }
      });
    },
    async pull(controller) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        stop();
        try {
          controller.close();
        } catch {
          // closed already
        }
      } else controller.enqueue(value);
    },
    cancel(reason) {
      finished = true;
      stop();
      return reader.cancel(reason);
    },
  });
  return new Response(stream, { status: res.status, headers: res.headers });
}

/**
 * Calls `fire` once `now()` reaches `at`, also when that is further away than setTimeout reaches;
 * re-checks `now()` whenever a timer fires, so that an injected clock is honoured.
 */
function timerAt(at: number, now: () => number, fire: () => void): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = (): void => {
    const delay = at - now();
    if (delay <= 0) return fire();
    timer = setTimeout(arm, Math.min(delay, MAX_TIMER_MS));
    timer.unref?.();
  };
  arm();
  return () => clearTimeout(timer);
}

export interface ControlAppOptions {
  readonly service: EventService;
  readonly tokens: TokenAuthority;
  /** The rollout controller; without it the rollout routes answer 404. */
  readonly controller?: Controller;
  /** The live feed behind GET /v1/stream; without it the stream answers 503. */
  readonly live?: LiveHub;
  /** The process's metrics, served at GET /metrics (Prometheus text format). */
  readonly metrics?: IntermissionMetrics;
  /**
   * Who may scrape GET /metrics: `none` (default: anyone who reaches the control address, which is
   * loopback by default) or `token` (an operator or a metrics token, as `Authorization: Bearer`).
   */
  readonly metricsAuth?: MetricsAuth;
  /** Dashboard sign-in codes and sessions; default: a new set (the runtime passes its own to print a link). */
  readonly sessions?: DashboardSessions;
  /** The attestation certificate, served to operators at GET /v1/attestation/certificate. */
  readonly attestation?: AttestationCertificate;
  /**
   * Hears every internal failure with its detail (the client sees only `reference`); by default it
   * is written to stderr.
   */
  readonly onInternalError?: (failure: InternalFailure) => void;
}

/** An internal failure of a request, as {@link ControlAppOptions.onInternalError} hears it. */
export interface InternalFailure {
  /** Short id, also sent to the client, to find this entry in the log. */
  readonly reference: string;
  readonly method: string;
  readonly path: string;
  readonly error: unknown;
}

/** Codes whose messages stay inside: a bug's, and the store's (driver text, file paths). */
const HIDDEN_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['INTERNAL', 'STORE_FAILURE']);

function logInternalError({ reference, method, path, error }: InternalFailure): void {
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
  console.error(`control API internal error ${reference} on ${method} ${path}: ${detail}`);
}

function codeForStatus(status: number): ErrorCode {
  const found = (Object.keys(ERROR_CODES) as ErrorCode[]).find((code) => ERROR_CODES[code].status === status);
  return found ?? 'INVALID_INPUT';
}

/** The access modes of GET /metrics. */
export const METRICS_AUTH_MODES = ['none', 'token'] as const;
export type MetricsAuth = (typeof METRICS_AUTH_MODES)[number];

type Env = { Variables: { principal: Principal; auth: Auth } };

/**
 * The control API as a fetch handler: fleet, events and drills for operators, and for tenants
 * the events of their own VMs. Every /v1 request needs `Authorization: Bearer <token>` of a valid,
 * unexpired operator or tenant token, or a dashboard session cookie (see sessions.ts), except signing
 * in (POST /v1/sessions) and asking for the current session (GET /v1/sessions). The OpenAPI document
 * (GET /openapi.json) and the dashboard's static files (/, /dashboard/*) need none; GET /metrics needs
 * one only with `metricsAuth: 'token'`. See docs/security.md.
 */
export function createControlApp({
  service,
  tokens,
  controller,
  live,
  metrics,
  metricsAuth = 'none',
  sessions = new DashboardSessions({ tokens }),
  attestation,
  onInternalError,
}: ControlAppOptions): Hono<Env> {
  const app = new Hono<Env>();
  const bearerOf = (header: string | undefined): string | undefined =>
    /^Bearer\s+(.+)$/i.exec(header ?? '')?.[1]?.trim();

  app.onError((error, c) => {
    if (error instanceof SyntaxError) {
      const e = new IntermissionError('INVALID_INPUT', `body is not JSON: ${error.message}`);
      return c.json({ error: e.toJSON() }, 400);
    }
    if (error instanceof HTTPException && error.status < 500) {
      // Hono's own refusals (e.g. a body limit): the status and message are meant for the client.
      const code = codeForStatus(error.status);
      return c.json({ error: { code, message: error.message || code, retryable: false } }, error.status);
    }
    if (error instanceof IntermissionError && !HIDDEN_CODES.has(error.code)) {
      return c.json({ error: error.toJSON() }, error.status as 400);
    }
    // A bug or a failure inside: the client gets a reference, the log gets the detail. The message
    // of an internal error ("Invalid time value", a driver's text with a file path) is ours alone.
    const reference = randomBytes(4).toString('hex');
    const e = error instanceof IntermissionError ? error : undefined;
    const code: ErrorCode = e?.code ?? 'INTERNAL';
    (onInternalError ?? logInternalError)({ reference, method: c.req.method, path: c.req.path, error });
    return c.json(
      {
        error: {
          code,
          message:
            code === 'INTERNAL' ? `internal error; reference ${reference}` : `the store failed; reference ${reference}`,
          retryable: e?.retryable ?? false,
          details: { reference },
        },
      },
      ERROR_CODES[code].status as 500,
    );
  });
  app.notFound((c) => c.json({ error: { code: 'NOT_FOUND', message: `no route ${c.req.method} ${c.req.path}` } }, 404));

  // No token: the API's description and the dashboard (which signs in itself).
  const openApi = openApiDocument({ scheduleRequest: scheduleRequestSchema, tokenRequest: tokenRequestSchema });
  app.get(OPENAPI_PATH, (c) => c.json(openApi));
  app.route('/', dashboardRoutes());
  // By default Prometheus scrapes without a token, like most exporters, on the loopback control
  // address; `metricsAuth: 'token'` asks for an operator or metrics token (docs/security.md).
  if (metrics) {
    const serveMetrics = metricsHandler(metrics);
    app.get(METRICS_PATH, (c) => {
      if (metricsAuth === 'token') {
        const holder = tokens.identify(bearerOf(c.req.header('authorization')));
        if (holder?.role !== 'operator' && holder?.role !== 'metrics') {
          c.header('www-authenticate', 'Bearer realm="intermission-metrics"');
          throw new IntermissionError(
            'UNAUTHORIZED',
            'GET /metrics needs Authorization: Bearer <metrics or operator token>',
          );
        }
      }
      return serveMetrics(c.req.raw);
    });
  }

  app.use('/v1/*', async (c, next) => {
    // Signing in is how a session starts (the body carries the proof), and asking whether this
    // browser holds one answers 200 either way (a page load without a session logs no 401).
    if (c.req.path === SESSIONS_PATH && (c.req.method === 'POST' || c.req.method === 'GET')) return next();
    const bearer = bearerOf(c.req.header('authorization'));
    let auth: Auth | undefined;
    let principal: Principal | undefined;
    if (bearer !== undefined) {
      const holder = tokens.identify(bearer);
      principal = holder?.principal;
      if (holder) auth = { name: holder.name, expiresAt: holder.expiresAt };
    } else {
      const session = sessions.authenticate(sessionCookie(c.req.header('cookie')));
      if (session) {
        if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && c.req.header(CSRF_HEADER) !== '1') {
          throw new IntermissionError(
            'UNAUTHORIZED',
            `a dashboard session needs the ${CSRF_HEADER}: 1 header on ${c.req.method}`,
          );
        }
        principal = session.holder.principal;
        auth = { name: session.holder.name, expiresAt: session.expiresAt, sessionKey: session.key };
      }
    }
    if (!principal || !auth) {
      if (c.req.path === LIVE_STREAM_PATH && c.req.query('token') !== undefined) {
        throw new IntermissionError(
          'UNAUTHORIZED',
          '?token= is no longer accepted (a URL ends up in logs and histories): send Authorization: Bearer <token>, or sign in to the dashboard',
        );
      }
      throw new IntermissionError(
        'UNAUTHORIZED',
        'send Authorization: Bearer <token> of a valid, unexpired operator or tenant token (see control.json in the state directory)',
      );
    }
    c.set('principal', principal);
    c.set('auth', auth);
    await next();
  });

  // A revoked token's live streams end at once (the hub closes every stream of that principal).
  tokens.onRevoke((name) => live?.closeStreams(name));

  const requireOperator = (principal: Principal, what: string): void => {
    if (principal.role !== 'operator') throw new IntermissionError('UNAUTHORIZED', `only operators ${what}`);
  };

  app.post(SESSIONS_PATH, async (c) => {
    if (c.req.header(CSRF_HEADER) !== '1') {
      throw new IntermissionError('INVALID_INPUT', `signing in needs the ${CSRF_HEADER}: 1 header`);
    }
    const parsed = sessionRequestSchema.safeParse(await c.req.json());
    if (!parsed.success)
      throw new IntermissionError('INVALID_INPUT', 'send {"code": "<sign-in code>"} or {"token": "<operator token>"}');
    const session = sessions.start(parsed.data);
    setCookie(c, SESSION_COOKIE, session.id, {
      httpOnly: true,
      sameSite: 'Strict',
      path: '/',
      maxAge: Math.max(1, Math.floor((session.expiresAt - Date.now()) / 1000)),
    });
    return c.json({ principal: session.holder.principal, expiresAt: new Date(session.expiresAt).toISOString() }, 201);
  });

  app.get(SESSIONS_PATH, (c) => {
    const session = sessions.authenticate(sessionCookie(c.req.header('cookie')));
    return c.json(
      session
        ? { principal: session.holder.principal ?? null, expiresAt: new Date(session.expiresAt).toISOString() }
        : { principal: null, expiresAt: null },
    );
  });

  app.delete(SESSIONS_PATH, (c) => {
    const id = sessionCookie(c.req.header('cookie'));
    if (id) sessions.end(id);
    deleteCookie(c, SESSION_COOKIE, { path: '/' });
    return c.json({ ok: true });
  });

  app.post('/v1/sign-in-codes', (c) => {
    const principal = c.get('principal');
    requireOperator(principal, 'sign in to the dashboard');
    const { code, expiresAt } = sessions.issueCode(principal.name);
    return c.json({ code, expiresAt: new Date(expiresAt).toISOString(), path: `/#code=${code}` }, 201);
  });

  app.get('/v1/health', (c) => {
    const lease = controller?.lease;
    const epoch = lease?.epoch;
    return c.json({
      ok: true,
      now: new Date(service.now()).toISOString(),
      timeScale: service.timing.scale.factor,
      // Whether this replica leads: a standby answers reads and refuses writes (NOT_LEADER).
      ...(lease ? { lease: { holder: lease.holder, leading: epoch !== undefined, epoch: epoch ?? null } } : {}),
    } satisfies z.infer<typeof healthSchema>);
  });

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

  app.post('/v1/tokens', async (c) => {
    requireOperator(c.get('principal'), 'issue tokens');
    const parsed = tokenRequestSchema.safeParse(await c.req.json());
    if (!parsed.success)
      throw new IntermissionError('INVALID_INPUT', parsed.error.issues.map((i) => i.message).join('; '));
    const body = parsed.data;
    const ttlMs = body.ttl === undefined ? undefined : parseTokenTtl(body.ttl);
    const ttl = ttlMs === undefined ? {} : { ttlMs };
    if ('metrics' in body) {
      const token = await tokens.issue({ role: 'metrics', name: body.metrics }, ttl);
      const info = tokens.list().find((t) => t.name === body.metrics);
      return c.json({ metrics: body.metrics, token, expiresAt: info?.expiresAt }, 201);
    }
    for (const vm of body.vms) service.fleet.requireVm(vm);
    const token = await tokens.issue({ role: 'tenant', name: body.tenant, vms: body.vms }, ttl);
    const info = tokens.list().find((t) => t.name === body.tenant);
    return c.json({ tenant: body.tenant, vms: body.vms, token, expiresAt: info?.expiresAt }, 201);
  });

  app.get('/v1/tokens', (c) => {
    requireOperator(c.get('principal'), 'list tokens');
    return c.json({ tokens: tokens.list() });
  });

  app.delete('/v1/tokens/:name', async (c) => {
    requireOperator(c.get('principal'), 'revoke tokens');
    const revoked = await tokens.revoke(c.req.param('name'));
    return c.json({ revoked });
  });

  app.get(LIVE_STREAM_PATH, (c) => {
    if (!live) throw new IntermissionError('UNREACHABLE', 'this server has no live feed');
    const auth = c.get('auth');
    const res = liveStream(c, { hub: live, principal: c.get('principal'), now: () => service.now() });
    // A stream lives no longer than what opened it: its token (expired; revoked: see above) or its session.
    return endWhen(res, (end) => {
      // (A revoked token's streams are closed by the hub: see the onRevoke listener above.)
      const stops = [
        sessions.onEnd((key) => key === auth.sessionKey && end()),
        timerAt(auth.expiresAt, () => tokens.now(), end),
      ];
      return () => {
        for (const stop of stops) stop();
      };
    });
  });

  app.route('/v1', attestationRoutes(attestation));
  app.route('/v1', eventRoutes({ service, ...(controller ? { controller } : {}) }));
  if (controller) app.route('/v1', rolloutRoutes(controller));

  return app;
}
