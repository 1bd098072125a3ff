import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import type { z } from 'zod';
import { OPENAPI_PATH, type OpenApiDocument } from '../../src/control/openapi.js';
import {
  errorBodySchema,
  eventListSchema,
  eventViewSchema,
  fleetViewSchema,
  healthSchema,
  issuedTokenSchema,
  revokedTokenSchema,
  sessionSchema,
  signInCodeSchema,
  signedOutSchema,
  tokenListSchema,
  planPreviewSchema,
  principalSchema,
  rolloutDetailSchema,
  rolloutListSchema,
  rolloutSummarySchema,
  scopeDocumentSchema,
} from '../../src/control/schemas.js';
import { controlWorld, type ControlWorld } from './helpers.js';

/** Hono's `/v1/events/:id` and `/dashboard/*` as OpenAPI writes them. */
function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\/\*$/, '/{path}');
}

/** Every `$ref` in a JSON value. */
function refs(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) for (const v of value) refs(v, out);
  else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refs(v, out);
    }
  }
  return out;
}

let w: ControlWorld;
let doc: OpenApiDocument;
before(async () => {
  w = await controlWorld();
  const res = await w.app.request(OPENAPI_PATH);
  assert.equal(res.status, 200);
  doc = (await res.json()) as OpenApiDocument;
});
after(async () => {
  await w.close();
});

describe('the OpenAPI document', () => {
  it('is served without a token as OpenAPI 3.1', () => {
    assert.equal(doc.openapi, '3.1.0');
    assert.match(doc.info.description, /no route takes a token in the query string/);
  });

  it('lists every route the app registers, and no route it does not', () => {
    const registered = new Set(
      w.app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method.toLowerCase()} ${openApiPath(r.path)}`),
    );
    const documented = new Set(
      Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`)),
    );
    const undocumented = [...registered].filter((r) => !documented.has(r));
    const phantom = [...documented].filter((r) => !registered.has(r));
    assert.deepEqual(undocumented, [], 'routes missing from the document');
    assert.deepEqual(phantom, [], 'documented routes the app does not serve');
    assert.ok(registered.size >= 20, `expected the whole API, got ${registered.size} routes`);
  });

  it('resolves every $ref, gives every operation a unique id, and a body schema to every POST that reads one', () => {
    for (const ref of refs(doc)) {
      const [, section, name] = /^#\/components\/(schemas|responses)\/(.+)$/.exec(ref) ?? [];
      assert.ok(section && name, `unexpected $ref ${ref}`);
      const table = section === 'schemas' ? doc.components.schemas : doc.components.responses;
      assert.ok(name in table, `dangling $ref ${ref}`);
    }
    const ids = Object.values(doc.paths).flatMap((item) => Object.values(item).map((op) => op.operationId));
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
    for (const path of ['/v1/events', '/v1/tokens', '/v1/plans', '/v1/rollouts']) {
      assert.ok(doc.paths[path]?.post?.requestBody, `POST ${path} documents its body`);
    }
    // Request bodies come from the validating zod schemas: the update's durations may be text.
    const update = (doc.components.schemas.RolloutRequest as { properties: { update: { properties: object } } })
      .properties.update.properties;
    assert.ok('expectedApplyMs' in update && 'kind' in update);
  });

  it('lists the listener’s 413 and 408 on every operation that may carry a body, and 429 on the stream', () => {
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const mayCarryBody = ['post', 'put', 'patch', 'delete'].includes(method);
        assert.equal('413' in op.responses && '408' in op.responses, mayCarryBody, `${method} ${path}`);
      }
    }
    assert.ok('429' in (doc.paths['/v1/stream']?.get?.responses ?? {}));
  });
});

describe('answers match the documented schemas', () => {
  const get = async <S extends z.ZodType>(path: string, schema: S, status = 200): Promise<z.output<S>> => {
    const res = await w.app.request(path, { headers: w.auth });
    assert.equal(res.status, status, `${path}: ${res.status}`);
    return schema.parse(await res.json());
  };
  const post = async <S extends z.ZodType>(path: string, body: unknown, schema: S, status: number) => {
    const res = await w.app.request(path, {
      method: 'POST',
      headers: { ...w.auth, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    assert.equal(res.status, status, `${path}: ${res.status} ${await res.clone().text()}`);
    return schema.parse(await res.json());
  };

  it('for fleet, events, documents, tokens, plans, rollouts and errors', async () => {
    await get('/v1/health', healthSchema);
    await get('/v1/whoami', principalSchema);
    const fleet = await get('/v1/fleet', fleetViewSchema);
    assert.equal(fleet.vms.length, 3);
    const event = await post('/v1/events', { type: 'Freeze', vms: ['web_0'] }, eventViewSchema, 201);
    await get('/v1/events', eventListSchema);
    await get('/v1/events?all=true', eventListSchema);
    await get(`/v1/events/${event.eventId}`, eventViewSchema);
    await get('/v1/vms/web_1/scheduled-events', scopeDocumentSchema);
    await post(`/v1/events/${event.eventId}/cancel`, {}, eventViewSchema, 200);
    await post('/v1/tokens', { tenant: 'acme', vms: ['solo'] }, issuedTokenSchema, 201);
    await post('/v1/tokens', { metrics: 'scraper', ttl: '7d' }, issuedTokenSchema, 201);
    await get('/v1/tokens', tokenListSchema);
    const revoked = await w.app.request('/v1/tokens/acme', { method: 'DELETE', headers: w.auth });
    revokedTokenSchema.parse(await revoked.json());
    const { code } = await post('/v1/sign-in-codes', undefined, signInCodeSchema, 201);
    const session = await w.app.request('/v1/sessions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-intermission-csrf': '1' },
      body: JSON.stringify({ code }),
    });
    assert.equal(session.status, 201);
    sessionSchema.parse(await session.json());
    const cookie = (session.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
    const out = await w.app.request('/v1/sessions', {
      method: 'DELETE',
      headers: { cookie, 'x-intermission-csrf': '1' },
    });
    signedOutSchema.parse(await out.json());

    const request = { update: { id: 'doc-1', kind: 'host-patch', expectedApplyMs: '1s' }, policy: { settleMs: '0s' } };
    const preview = await post('/v1/plans', request, planPreviewSchema, 200);
    assert.ok(preview.plan.waves.length >= 2);
    const created = await post('/v1/rollouts', request, rolloutSummarySchema, 201);
    await get('/v1/rollouts', rolloutListSchema);
    const detail = await get(`/v1/rollouts/${created.id}?plan=true`, rolloutDetailSchema);
    assert.ok(detail.plan, 'the plan is included when asked');
    await post(`/v1/rollouts/${created.id}/pause`, {}, rolloutSummarySchema, 200);
    await post(`/v1/rollouts/${created.id}/resume`, {}, rolloutSummarySchema, 200);
    await post(`/v1/rollouts/${created.id}/cancel`, {}, rolloutSummarySchema, 200);
    const conflict = await post(`/v1/rollouts/${created.id}/resume`, {}, errorBodySchema, 409);
    assert.equal(conflict.error.code, 'CONFLICT');
    await get('/v1/events/NOPE', errorBodySchema, 404);
  });
});
