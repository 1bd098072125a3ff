import { z } from 'zod';
import {
  errorBodySchema,
  eventListSchema,
  eventViewSchema,
  fleetViewSchema,
  healthSchema,
  issuedTokenSchema,
  revokedTokenSchema,
  sessionSchema,
  currentSessionSchema,
  signInCodeSchema,
  signedOutSchema,
  tokenListSchema,
  liveMessageSchema,
  planPreviewSchema,
  principalSchema,
  rolloutDetailSchema,
  rolloutListSchema,
  rolloutRequestSchema,
  rolloutSummarySchema,
  scopeDocumentSchema,
} from './schemas.js';

/** Path of the OpenAPI document on the control API. */
export const OPENAPI_PATH = '/openapi.json';
/** Where the Prometheus text exposition is served. */
export const METRICS_PATH = '/metrics';

/** A JSON Schema (2020-12), as OpenAPI 3.1 embeds it. */
export type JsonSchema = { readonly [key: string]: unknown };

/** The parts of OpenAPI 3.1 this document uses. */
export interface OpenApiDocument {
  readonly openapi: '3.1.0';
  readonly info: { readonly title: string; readonly version: string; readonly description: string };
  readonly servers: readonly { readonly url: string }[];
  readonly security: readonly Readonly<Record<string, readonly string[]>>[];
  readonly tags: readonly { readonly name: string; readonly description: string }[];
  readonly paths: Readonly<Record<string, Readonly<Partial<Record<HttpMethod, OpenApiOperation>>>>>;
  readonly components: {
    readonly schemas: Readonly<Record<string, JsonSchema>>;
    readonly securitySchemes: Readonly<Record<string, JsonSchema>>;
    readonly responses: Readonly<Record<string, OpenApiResponse>>;
  };
}

/** The HTTP methods of OpenAPI path items, in lower case. */
export type HttpMethod = 'get' | 'post' | 'put' | 'delete' | 'patch';

/** One operation of a path. */
export interface OpenApiOperation {
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tags: readonly string[];
  /** `[]` for routes that need no token. */
  readonly security?: readonly Readonly<Record<string, readonly string[]>>[];
  readonly parameters?: readonly OpenApiParameter[];
  readonly requestBody?: {
    readonly required: boolean;
    readonly content: Readonly<Record<string, { readonly schema: JsonSchema }>>;
  };
  readonly responses: Readonly<Record<string, OpenApiResponse | { readonly $ref: string }>>;
}

/** A path or query parameter. */
export interface OpenApiParameter {
  readonly name: string;
  readonly in: 'path' | 'query' | 'header';
  readonly required: boolean;
  readonly description: string;
  readonly schema: JsonSchema;
}

/** A response of an operation. */
export interface OpenApiResponse {
  readonly description: string;
  readonly headers?: Readonly<Record<string, { readonly description: string; readonly schema: JsonSchema }>>;
  readonly content?: Readonly<Record<string, { readonly schema: JsonSchema }>>;
}

/** Request schemas owned by the control app (app.ts), handed over so that this module imports no route. */
export interface ControlRequestSchemas {
  /** Body of POST /v1/events. */
  readonly scheduleRequest: z.ZodType;
  /** Body of POST /v1/tokens. */
  readonly tokenRequest: z.ZodType;
}

const ref = (name: string): JsonSchema => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: JsonSchema): Readonly<Record<string, { readonly schema: JsonSchema }>> => ({
  'application/json': { schema },
});
const ok = (description: string, schema: string): OpenApiResponse => ({ description, content: json(ref(schema)) });
const errors = (
  ...statuses: (400 | 401 | 403 | 404 | 408 | 409 | 413 | 429 | 503)[]
): Record<string, { $ref: string }> =>
  Object.fromEntries(statuses.map((s) => [String(s), { $ref: `#/components/responses/E${s}` }]));
const pathParam = (name: string, description: string): OpenApiParameter => ({
  name,
  in: 'path',
  required: true,
  description,
  schema: { type: 'string' },
});
const queryFlag = (name: string, description: string): OpenApiParameter => ({
  name,
  in: 'query',
  required: false,
  description,
  schema: { type: 'string', enum: ['true', 'false'] },
});
const NO_TOKEN = [] as const;
const ROLLOUT_ID = pathParam('id', 'The rollout id (the update id).');

/** Converts the schemas of one registry to OpenAPI components, without per-schema `$id`/`$schema`. */
function components(schemas: Record<string, z.ZodType>, io: 'input' | 'output'): Record<string, JsonSchema> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(schemas)) registry.add(schema, { id });
  const out = z.toJSONSchema(registry, {
    io,
    target: 'draft-2020-12',
    unrepresentable: 'any',
    uri: (id) => `#/components/schemas/${id}`,
  }).schemas;
  return Object.fromEntries(
    Object.entries(out).map(([id, { $id: _id, $schema: _schema, ...rest }]) => [id, rest as JsonSchema]),
  );
}

/**
 * The OpenAPI 3.1 document of the control API: every route with its parameters, request body and
 * responses. Request bodies come from the zod schemas the routes validate with (as input: durations
 * may be text such as `"30s"`); responses from the strict schemas in schemas.ts.
 */
export function openApiDocument(requests: ControlRequestSchemas): OpenApiDocument {
  const operator = 'Operators only; a tenant token gets 401.';
  const rolloutAction = (action: 'pause' | 'resume' | 'cancel', summary: string): OpenApiOperation => ({
    operationId: `${action}Rollout`,
    summary,
    tags: ['rollouts'],
    parameters: [ROLLOUT_ID],
    responses: { '200': ok('The rollout after the change.', 'RolloutSummary'), ...errors(401, 404, 409) },
  });
  return withListenerLimits({
    openapi: '3.1.0',
    info: {
      title: 'Intermission control API',
      version: '1',
      description: [
        'Operators declare host updates and roll them out wave by wave; tenants see the events of their own VMs.',
        'Every /v1 route needs `Authorization: Bearer <token>` (the operator token is in `<state>/control.json`),',
        'or the dashboard session cookie (`im_session`, HttpOnly, SameSite=Strict; POST and DELETE with it also need',
        'the header `X-Intermission-CSRF: 1`). Tokens expire (tenants 30 days by default) and can be revoked;',
        'no route takes a token in the query string. The dashboard signs in with a one-time code (POST /v1/sessions).',
        'Errors are `{"error": {"code", "message", "retryable", "details"}}`; match on `code`.',
      ].join(' '),
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    tags: [
      { name: 'fleet', description: 'Hosts, availability sets and VMs.' },
      { name: 'events', description: 'Scheduled events: drills, user events, documents.' },
      { name: 'rollouts', description: 'Plans and rollouts of host updates (operators).' },
      { name: 'live', description: 'Server-Sent Events of what the control plane does.' },
      { name: 'meta', description: 'Health, identity, tokens, this document and the dashboard.' },
    ],
    paths: {
      [OPENAPI_PATH]: {
        get: {
          operationId: 'getOpenApi',
          summary: 'This document.',
          tags: ['meta'],
          security: NO_TOKEN,
          responses: { '200': { description: 'OpenAPI 3.1.', content: json({ type: 'object' }) } },
        },
      },
      [METRICS_PATH]: {
        get: {
          operationId: 'getMetrics',
          summary:
            'Prometheus metrics: VM pauses, clock residuals, events, rollout progress, metadata requests, lease expirations.',
          description:
            'No token by default (the control address is loopback by default). Started with `--metrics-auth token`, it needs an operator or metrics token (401 otherwise).',
          tags: ['meta'],
          security: [{}, { bearer: [] }],
          responses: {
            '200': {
              description: 'Prometheus text exposition 0.0.4.',
              content: { 'text/plain': { schema: { type: 'string' } } },
            },
          },
        },
      },
      '/': {
        get: {
          operationId: 'getDashboardRoot',
          summary: 'The operator dashboard (HTML); it asks for a token itself.',
          tags: ['meta'],
          security: NO_TOKEN,
          responses: {
            '200': { description: 'The page.', content: { 'text/html': { schema: { type: 'string' } } } },
          },
        },
      },
      '/dashboard': {
        get: {
          operationId: 'redirectDashboard',
          summary: 'Redirects to /dashboard/.',
          tags: ['meta'],
          security: NO_TOKEN,
          responses: { '301': { description: 'To /dashboard/.' } },
        },
      },
      '/dashboard/vendor/{file}': {
        get: {
          operationId: 'getDashboardVendorFile',
          summary: 'A library of the dashboard (preact, htm, uPlot), served from the installed packages.',
          tags: ['meta'],
          security: NO_TOKEN,
          parameters: [pathParam('file', 'preact.mjs, preact-hooks.mjs, htm.mjs, uPlot.esm.js or uPlot.min.css.')],
          responses: {
            '200': {
              description: 'The file.',
              content: {
                'text/javascript': { schema: { type: 'string' } },
                'text/css': { schema: { type: 'string' } },
              },
            },
            '404': { description: 'No such file.', content: json(ref('ErrorBody')) },
          },
        },
      },
      '/dashboard/{path}': {
        get: {
          operationId: 'getDashboardFile',
          summary: 'The dashboard page (path empty or index.html) and its modules and styles.',
          tags: ['meta'],
          security: NO_TOKEN,
          parameters: [pathParam('path', 'A file of the dashboard, e.g. app.js or styles.css.')],
          responses: {
            '200': {
              description: 'The file.',
              content: {
                'text/html': { schema: { type: 'string' } },
                'text/javascript': { schema: { type: 'string' } },
                'text/css': { schema: { type: 'string' } },
              },
            },
            '404': { description: 'No such file.', content: json(ref('ErrorBody')) },
          },
        },
      },
      '/v1/health': {
        get: {
          operationId: 'getHealth',
          summary: 'The server clock and time scale.',
          tags: ['meta'],
          responses: { '200': ok('Healthy.', 'Health'), ...errors(401) },
        },
      },
      '/v1/whoami': {
        get: {
          operationId: 'whoAmI',
          summary: 'Whom the token belongs to.',
          tags: ['meta'],
          responses: { '200': ok('The principal.', 'Principal'), ...errors(401) },
        },
      },
      '/v1/fleet': {
        get: {
          operationId: 'getFleet',
          summary: 'Hosts, availability sets and VMs (tenants: their own VMs only).',
          tags: ['fleet'],
          responses: { '200': ok('The fleet.', 'FleetView'), ...errors(401) },
        },
      },
      '/v1/events': {
        get: {
          operationId: 'listEvents',
          summary: 'Live events, or with all=true the history including removed ones (up to 1000).',
          tags: ['events'],
          parameters: [queryFlag('all', 'Include removed events from the store.')],
          responses: { '200': ok('Events, oldest first.', 'EventList'), ...errors(401) },
        },
        post: {
          operationId: 'scheduleEvent',
          summary: 'Schedules a drill or user event for VMs of one scope (tenants: their own VMs).',
          tags: ['events'],
          requestBody: { required: true, content: json(ref('ScheduleRequest')) },
          responses: { '201': ok('The event.', 'EventView'), ...errors(400, 401, 403, 404, 409) },
        },
      },
      '/v1/events/{id}': {
        get: {
          operationId: 'getEvent',
          summary: 'One event, live or from the history.',
          tags: ['events'],
          parameters: [pathParam('id', 'The event id (GUID, any case).')],
          responses: { '200': ok('The event.', 'EventView'), ...errors(401, 404) },
        },
      },
      '/v1/events/{id}/cancel': {
        post: {
          operationId: 'cancelEvent',
          summary: 'Withdraws a live event.',
          description:
            'Only a Scheduled event (409 CONFLICT once Started). Tenants cancel only the user events they ' +
            'scheduled themselves; any other event, platform maintenance included, answers 403 ' +
            'SCOPE_VIOLATION (tenants approve platform events through the metadata service instead). ' +
            "An operator's cancellation of a rollout's event leaves the host steps with a VM of it out " +
            "of the wave: each is recorded as `cancelled` with the operator's name and the time (not " +
            'failed, not counted against the failure budget), and the rollout goes on with the other hosts.',
          tags: ['events'],
          parameters: [pathParam('id', 'The event id.')],
          responses: { '200': ok('The event as cancelled.', 'EventView'), ...errors(401, 403, 404, 409) },
        },
      },
      '/v1/tokens': {
        get: {
          operationId: 'listTokens',
          summary: 'Every stored token (expired ones marked), never the token or its hash.',
          description: operator,
          tags: ['meta'],
          responses: { '200': ok('Tokens.', 'TokenList'), ...errors(401) },
        },
        post: {
          operationId: 'issueToken',
          summary:
            'Issues a tenant token limited to some VMs, or a scrape-only metrics token, with a ttl (default 30 days for tenants, 90 for metrics, at most 365). Shown once.',
          description: operator,
          tags: ['meta'],
          requestBody: { required: true, content: json(ref('TokenRequest')) },
          responses: { '201': ok('The token.', 'IssuedToken'), ...errors(400, 401, 404, 409) },
        },
      },
      '/v1/tokens/{name}': {
        delete: {
          operationId: 'revokeToken',
          summary: 'Revokes a token at once: its requests get 401, its live streams and dashboard sessions end.',
          description: operator,
          tags: ['meta'],
          parameters: [pathParam('name', 'The token name (tenant name, metrics name, operator-…).')],
          responses: { '200': ok('The revoked token.', 'RevokedToken'), ...errors(401, 404) },
        },
      },
      '/v1/sign-in-codes': {
        post: {
          operationId: 'issueSignInCode',
          summary:
            'A one-time dashboard sign-in code (single use, 5 minutes): open `path` on this server. `intermission dashboard` prints it as a link.',
          description: operator,
          tags: ['meta'],
          responses: { '201': ok('The code.', 'SignInCode'), ...errors(401, 409) },
        },
      },
      '/v1/sessions': {
        get: {
          operationId: 'getSession',
          summary: "The dashboard session of this browser's cookie, or principal null: 200 either way.",
          tags: ['meta'],
          security: NO_TOKEN,
          responses: { '200': ok('The session, if any.', 'CurrentSession') },
        },
        post: {
          operationId: 'startSession',
          summary:
            'Trades a sign-in code (or an operator token pasted into the page) for a dashboard session: Set-Cookie im_session (HttpOnly, SameSite=Strict, 12 h at most). Needs the header X-Intermission-CSRF: 1.',
          tags: ['meta'],
          security: NO_TOKEN,
          requestBody: {
            required: true,
            content: json({
              oneOf: [
                {
                  type: 'object',
                  properties: { code: { type: 'string' } },
                  required: ['code'],
                  additionalProperties: false,
                },
                {
                  type: 'object',
                  properties: { token: { type: 'string' } },
                  required: ['token'],
                  additionalProperties: false,
                },
              ],
            }),
          },
          responses: { '201': ok('The session.', 'Session'), ...errors(400, 401, 409) },
        },
        delete: {
          operationId: 'endSession',
          summary: 'Signs out: ends the session of the cookie and clears it.',
          tags: ['meta'],
          responses: { '200': ok('Signed out.', 'SignedOut'), ...errors(401) },
        },
      },
      '/v1/vms/{name}/scheduled-events': {
        get: {
          operationId: 'getScheduledEventsDocument',
          summary: "The document of the VM's scope, as the VM reads it from the metadata service.",
          tags: ['events'],
          parameters: [pathParam('name', 'The VM name.')],
          responses: { '200': ok('The document.', 'ScopeDocument'), ...errors(401, 404) },
        },
      },
      '/v1/attestation/certificate': {
        get: {
          operationId: 'getAttestationCertificate',
          summary:
            'The certificate that verifies /metadata/attested/document signatures, PEM (operators only); its SHA-256 fingerprint in X-Certificate-SHA256.',
          tags: ['meta'],
          responses: {
            '200': {
              description: 'The certificate.',
              content: { 'application/x-pem-file': { schema: { type: 'string' } } },
            },
            ...errors(401, 404),
          },
        },
      },
      '/v1/stream': {
        get: {
          operationId: 'streamLive',
          summary: 'Server-Sent Events: event:* and rollout:* messages as JSON, with keep-alive comments.',
          description: [
            'Each SSE message has `id: <seq>` and JSON `data` (LiveMessage): first `hello`, then, when the',
            'request has `Last-Event-ID`, the messages after it that the server still holds, then every new',
            'one. A `: keep-alive` comment is sent every 15 s. Tenants receive only events of their VMs.',
            'The dashboard opens it with its session cookie. The stream ends when its token is revoked or',
            'expires, or its session ends.',
          ].join(' '),
          tags: ['live'],
          parameters: [
            {
              name: 'Last-Event-ID',
              in: 'header',
              required: false,
              description: 'The last `id` received; later messages still held are replayed.',
              schema: { type: 'string' },
            },
          ],
          responses: {
            '200': {
              description: 'An endless text/event-stream; each `data` is a LiveMessage.',
              content: { 'text/event-stream': { schema: ref('LiveMessage') } },
            },
            ...errors(401, 429, 503),
          },
        },
      },
      '/v1/plans': {
        post: {
          operationId: 'planRollout',
          summary: 'A dry run: the plan, in words, and what each tenant will see. Nothing changes.',
          description: operator,
          tags: ['rollouts'],
          requestBody: { required: true, content: json(ref('RolloutRequest')) },
          responses: { '200': ok('The plan.', 'PlanPreview'), ...errors(400, 401) },
        },
      },
      '/v1/rollouts': {
        get: {
          operationId: 'listRollouts',
          summary: 'Every rollout, without plans.',
          description: operator,
          tags: ['rollouts'],
          responses: { '200': ok('Rollouts.', 'RolloutList'), ...errors(401) },
        },
        post: {
          operationId: 'applyRollout',
          summary: 'Plans and starts a rollout.',
          description:
            `${operator} 409 CONFLICT when a host of the update is held by another rollout: one that is ` +
            'running or paused, or one whose step on that host is still under way. The error names that ' +
            'rollout and up to 10 of the overlapping hosts (`details.hosts`, `details.overlappingHosts`).',
          tags: ['rollouts'],
          requestBody: { required: true, content: json(ref('RolloutRequest')) },
          responses: { '201': ok('The new rollout.', 'RolloutSummary'), ...errors(400, 401, 409) },
        },
      },
      '/v1/rollouts/{id}': {
        get: {
          operationId: 'getRollout',
          summary: 'A rollout with its host steps and the measured pause and clock of each VM.',
          description: operator,
          tags: ['rollouts'],
          parameters: [ROLLOUT_ID, queryFlag('plan', 'Include the plan.')],
          responses: { '200': ok('The rollout.', 'RolloutDetail'), ...errors(401, 404) },
        },
      },
      '/v1/rollouts/{id}/pause': {
        post: rolloutAction('pause', 'Stops dispatching new host steps; steps under way finish.'),
      },
      '/v1/rollouts/{id}/resume': { post: rolloutAction('resume', 'Resumes a paused rollout.') },
      '/v1/rollouts/{id}/cancel': {
        post: rolloutAction('cancel', 'Cancels: scheduled events of the wave are withdrawn; nothing new starts.'),
      },
    },
    components: {
      schemas: {
        ...components(
          {
            ScheduleRequest: requests.scheduleRequest,
            TokenRequest: requests.tokenRequest,
            RolloutRequest: rolloutRequestSchema,
          },
          'input',
        ),
        ...components(
          {
            ErrorBody: errorBodySchema,
            Health: healthSchema,
            Principal: principalSchema,
            FleetView: fleetViewSchema,
            EventView: eventViewSchema,
            EventList: eventListSchema,
            ScopeDocument: scopeDocumentSchema,
            IssuedToken: issuedTokenSchema,
            TokenList: tokenListSchema,
            RevokedToken: revokedTokenSchema,
            SignInCode: signInCodeSchema,
            Session: sessionSchema,
            CurrentSession: currentSessionSchema,
            SignedOut: signedOutSchema,
            RolloutSummary: rolloutSummarySchema,
            RolloutList: rolloutListSchema,
            RolloutDetail: rolloutDetailSchema,
            PlanPreview: planPreviewSchema,
            LiveMessage: liveMessageSchema,
          },
          'output',
        ),
      },
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          description:
            'A control-API token: the operator token from control.json, or a tenant token (a metrics token only for GET /metrics).',
        },
      },
      responses: {
        E400: { description: 'Invalid input (INVALID_INPUT, NOTICE_TOO_SHORT).', content: json(ref('ErrorBody')) },
        E401: { description: 'No valid token, or not allowed for this role.', content: json(ref('ErrorBody')) },
        E403: { description: 'Outside the tenant’s VMs (SCOPE_VIOLATION).', content: json(ref('ErrorBody')) },
        E404: { description: 'Not found.', content: json(ref('ErrorBody')) },
        E408: {
          description: 'The request did not arrive whole within the listener’s request timeout (docs/limits.md).',
          content: json(ref('ErrorBody')),
        },
        E409: { description: 'Conflict with the current state.', content: json(ref('ErrorBody')) },
        E413: {
          description: 'The body is larger than the listener allows (PAYLOAD_TOO_LARGE; 1 MiB by default).',
          content: json(ref('ErrorBody')),
        },
        E429: {
          description: 'Too many live streams for this token (TOO_MANY_REQUESTS; 8 by default).',
          content: json(ref('ErrorBody')),
        },
        E503: { description: 'Unavailable; retry.', content: json(ref('ErrorBody')) },
      },
    },
  });
}

/**
 * The listener answers any request that may carry a body (POST, PUT, PATCH, DELETE) with 413 when
 * the body is too large and 408 when it does not arrive in time, before a route sees it: every such
 * operation lists both.
 */
function withListenerLimits(doc: OpenApiDocument): OpenApiDocument {
  const paths = Object.fromEntries(
    Object.entries(doc.paths).map(([path, item]) => [
      path,
      Object.fromEntries(
        Object.entries(item).map(([method, op]) =>
          ['post', 'put', 'patch', 'delete'].includes(method)
            ? [method, { ...op, responses: { ...op.responses, ...errors(408, 413) } }]
            : [method, op],
        ),
      ),
    ]),
  );
  return { ...doc, paths };
}
