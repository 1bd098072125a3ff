import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { errorBodySchema, eventListSchema, eventViewSchema, scopeDocumentSchema } from '../../src/control/schemas.js';
import type { RunningServer } from '../../src/service/http.js';
import { controlWorld, serveOnLoopback, type ControlWorld } from './helpers.js';

// Issue 12, items 1 and 10: times and durations are checked at the edge, nothing unreadable is
// committed, internal messages never reach clients, and an unknown event id is answered without
// reading the history. Real HTTP on loopback, with a tenant token, as a hostile tenant would.

let w: ControlWorld;
let server: RunningServer;
let base: string;
let tenant: string;

before(async () => {
  w = await controlWorld();
  ({ server, base } = await serveOnLoopback(w));
  tenant = await w.tokens.issue({ role: 'tenant', name: 'acme', vms: ['web_0', 'web_1'] });
});
after(async () => {
  await server.close();
  await w.close();
});

async function call(
  method: 'GET' | 'POST',
  path: string,
  options: { token?: string; body?: unknown } = {},
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${options.token ?? tenant}`,
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

/** Every scope's document and the full history: what rejected input must leave untouched. */
async function snapshot(): Promise<unknown> {
  return {
    docs: ['web_0', 'solo'].map((vm) => w.service.document(vm)),
    history: await w.service.history({ includeRemoved: true }),
  };
}

/** The listing still answers for everyone, and every event in it reads as a valid view. */
async function assertListingAnswers(): Promise<void> {
  for (const token of [tenant, w.operator]) {
    const list = await call('GET', '/v1/events', { token });
    assert.equal(list.status, 200, `GET /v1/events answers: ${JSON.stringify(list.body)}`);
    eventListSchema.parse(list.body);
    const all = await call('GET', '/v1/events?all=true', { token });
    assert.equal(all.status, 200);
    eventListSchema.parse(all.body);
  }
  const doc = await call('GET', '/v1/vms/web_0/scheduled-events');
  assert.equal(doc.status, 200);
  scopeDocumentSchema.parse(doc.body);
}

function errorOf(body: unknown): { code: string; message: string } {
  return errorBodySchema.parse(body).error;
}

describe('POST /v1/events: times and durations at the edge', () => {
  const hostile: [string, Record<string, unknown>][] = [
    ['a notice past the end of time (8.7e15 ms)', { notice: 8_700_000_000_000_000 }],
    ['a notice of 100000000 days', { notice: '100000000d' }],
    ['a notice of 2^53-1 ms', { notice: Number.MAX_SAFE_INTEGER }],
    ['a notice of a year', { notice: '365d' }],
    ['an ISO notice of 100000000 days', { notice: 'P100000000D' }],
    ['a notice whose number overflows', { notice: `${'9'.repeat(400)}s` }],
    ['a NotBefore in the year 9999', { notBefore: '9999-12-31T23:59:59Z' }],
    ['a NotBefore in the year 1', { notBefore: '0001-01-01T00:00:00Z' }],
    ['a NotBefore that is not a date', { notBefore: '2026-02-31T00:00:00Z' }],
    ['a DurationInSeconds of 2^53-1', { durationInSeconds: Number.MAX_SAFE_INTEGER }],
    ['a DurationInSeconds of a year', { durationInSeconds: 365 * 86_400 }],
    // Within the listener's 1 MiB body limit, so the schema answers (a larger body gets 413 first).
    ['a description of half a megabyte', { description: 'x'.repeat(1 << 19) }],
  ];
  for (const [what, fields] of hostile) {
    it(`answers 400 with a clear message and commits nothing for ${what}`, async () => {
      const before = await snapshot();
      const res = await call('POST', '/v1/events', { body: { type: 'Freeze', vms: ['web_0'], ...fields } });
      assert.equal(res.status, 400, JSON.stringify(res.body));
      const error = errorOf(res.body);
      assert.ok(['INVALID_INPUT', 'NOTICE_TOO_SHORT'].includes(error.code), error.code);
      assert.doesNotMatch(error.message, /Invalid time value|Invalid Date|RangeError/);
      assert.deepEqual(await snapshot(), before, 'rejected input changed no state');
      await assertListingAnswers();
    });
  }

  it('names the bound in the message when the notice is too long', async () => {
    const res = await call('POST', '/v1/events', { body: { type: 'Freeze', vms: ['web_0'], notice: '100000000d' } });
    assert.equal(res.status, 400);
    assert.match(errorOf(res.body).message, /notice "100000000d" is too long: at most 168h/);
  });

  it('still accepts the longest allowed notice, and the event reads back everywhere', async () => {
    const res = await call('POST', '/v1/events', { body: { type: 'Freeze', vms: ['web_0'], notice: '7d' } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const view = eventViewSchema.parse(res.body);
    assert.equal(Date.parse(view.notBefore) - Date.parse(view.createdAt), 7 * 86_400_000);
    await assertListingAnswers();
    const one = await call('GET', `/v1/events/${view.eventId}`);
    assert.equal(one.status, 200);
    assert.deepEqual(one.body, view);
  });
});

describe('internal failures', () => {
  it('answers 500 INTERNAL with a reference, never the internal message', async () => {
    const original = w.service.list.bind(w.service);
    w.service.list = () => {
      throw new RangeError('Invalid time value');
    };
    try {
      const res = await call('GET', '/v1/events');
      assert.equal(res.status, 500);
      const error = errorOf(res.body);
      assert.equal(error.code, 'INTERNAL');
      assert.doesNotMatch(error.message, /Invalid time value/);
      assert.match(error.message, /reference [0-9a-f]{8}/);
      assert.doesNotMatch(JSON.stringify(res.body), /Invalid time value|RangeError|at .*\.ts/);
    } finally {
      w.service.list = original;
    }
  });
});

describe('GET /v1/events/:id', () => {
  it('answers 404 for an id that is not a GUID without a lookup, and for an unknown one without reading the history', async () => {
    const original = w.service.history.bind(w.service);
    let historyReads = 0;
    w.service.history = (query) => {
      historyReads++;
      return original(query);
    };
    try {
      const originalGet = w.service.find.bind(w.service);
      let finds = 0;
      w.service.find = (id) => {
        finds++;
        return originalGet(id);
      };
      try {
        const bad = await call('GET', `/v1/events/not-a-guid${'x'.repeat(500)}`);
        assert.equal(bad.status, 404);
        assert.equal(errorOf(bad.body).code, 'NOT_FOUND');
        assert.match(errorOf(bad.body).message, /is a GUID/);
        assert.equal(finds, 0, 'a malformed id is refused before any lookup');
      } finally {
        w.service.find = originalGet;
      }
      const unknown = await call('GET', '/v1/events/00000000-0000-4000-8000-000000000000');
      assert.equal(unknown.status, 404);
      assert.equal(errorOf(unknown.body).code, 'NOT_FOUND');
      assert.equal(historyReads, 0, 'the whole history was not loaded');
    } finally {
      w.service.history = original;
    }
  });

  it('finds a removed event by id, and hides another tenant’s', async () => {
    const created = await call('POST', '/v1/events', { body: { type: 'Freeze', vms: ['web_1'] } });
    assert.equal(created.status, 201);
    const id = eventViewSchema.parse(created.body).eventId;
    const cancelled = await call('POST', `/v1/events/${id}/cancel`);
    assert.equal(cancelled.status, 200);
    const again = await call('GET', `/v1/events/${id.toLowerCase()}`);
    assert.equal(again.status, 200);
    assert.equal(eventViewSchema.parse(again.body).phase, 'Removed');
    const stranger = await w.tokens.issue({ role: 'tenant', name: 'other', vms: ['solo'] });
    const hidden = await call('GET', `/v1/events/${id}`, { token: stranger });
    assert.equal(hidden.status, 404);
  });
});
