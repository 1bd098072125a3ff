import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IntermissionError, ManualClock, type ScopeDocument } from '../../src/domain/index.js';
import { createMetadataApp, type MetadataBackend } from '../../src/imds/index.js';
import { MemoryMetadataBackend, buildTestFleet } from '../../src/testing/metadata-backend.js';
import { META, SE, SE_LATEST, T0, fixture, startRequests } from './helpers.js';

void describe('caller identity', () => {
  void test('the same request answers for whichever VM the listener names', async () => {
    const f = fixture();
    const a = f.backend.schedule({ type: 'Freeze', resources: ['as0_0'] });
    const b = f.backend.schedule({ type: 'Reboot', resources: ['as1_1'] });
    const request = (): Request =>
      new Request(`http://as1_1${SE_LATEST}&vm=as1_1`, { headers: { ...META, Host: 'as1_1', 'X-Ms-Vm': 'as1_1' } });
    const asA = (await (await f.app.fetch(request(), 'as0_0')).json()) as { Events: { EventId: string }[] };
    const asB = (await (await f.app.fetch(request(), 'as1_1')).json()) as { Events: { EventId: string }[] };
    assert.deepEqual(
      asA.Events.map((e) => e.EventId),
      [a.eventId],
    );
    assert.deepEqual(
      asB.Events.map((e) => e.EventId),
      [b.eventId],
    );
  });

  void test('hono.request with env { vm } works for tests', async () => {
    const f = fixture();
    const res = await f.app.hono.request(
      '/metadata/instance/compute/name?api-version=2021-02-01&format=text',
      { headers: META },
      { vm: 'solo0_0' },
    );
    assert.equal(await res.text(), 'solo0_0');
  });

  void test('a VM outside the fleet: 404 on scheduled events and instance', async () => {
    const f = fixture();
    for (const path of [SE_LATEST, '/metadata/instance?api-version=2021-02-01']) {
      const res = await f.fetch(path, {}, 'stranger_0');
      assert.equal(res.status, 404, path);
      assert.equal(await res.text(), '{"error":"Not found"}');
    }
  });
});

void describe('options', () => {
  void test('out-of-range options are refused with INVALID_INPUT', () => {
    const backend = new MemoryMetadataBackend({ fleet: buildTestFleet() });
    for (const bad of [
      { rateLimit: { requestsPerSecond: 0 } },
      { rateLimit: { burst: 0.5 } },
      { maxBodyBytes: 0 },
      { maxBodyBytes: 1.5 },
      { enablementDelayMs: -1 },
      { enablementDelayMs: Number.NaN },
      { disableAfterIdleMs: 0 },
    ]) {
      assert.throws(
        () => createMetadataApp({ backend, ...bad }),
        (e: unknown) => e instanceof IntermissionError && e.code === 'INVALID_INPUT',
        JSON.stringify(bad),
      );
    }
  });

  void test('the rate limit is on by default: 5/s with a burst of 10', async () => {
    const clock = new ManualClock(T0);
    const backend = new MemoryMetadataBackend({ fleet: buildTestFleet(), clock });
    const app = createMetadataApp({ backend });
    const get = async (): Promise<number> =>
      (await app.fetch(new Request(`http://x${SE_LATEST}`, { headers: META }), 'as0_0')).status;
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) statuses.push(await get());
    assert.deepEqual(statuses, [...Array<number>(10).fill(200), 429]);
    clock.advance(1000);
    for (let i = 0; i < 5; i++) assert.equal(await get(), 200);
    assert.equal(await get(), 429);
  });

  void test('a clock that jumps back does not lock a VM out', async () => {
    const f = fixture({ rateLimit: { requestsPerSecond: 5, burst: 1 } });
    assert.equal((await f.fetch(SE_LATEST)).status, 200);
    assert.equal((await f.fetch(SE_LATEST)).status, 429);
    f.clock.set(T0 - 60_000);
    assert.equal((await f.fetch(SE_LATEST)).status, 429);
    f.clock.advance(200);
    assert.equal((await f.fetch(SE_LATEST)).status, 200);
  });

  void test('the 1 Hz poller stays unthrottled for an hour (in process)', async () => {
    const f = fixture({ rateLimit: {} });
    const e = f.backend.schedule({ type: 'Freeze', resources: ['as0_0'], noticeMs: 2 * 3_600_000 });
    const statuses = new Set<number>();
    for (let second = 0; second < 3600; second++) {
      statuses.add((await f.fetch(SE_LATEST)).status);
      statuses.add(
        (await f.fetch(SE_LATEST, { method: 'POST', headers: META, body: startRequests(e.eventId) })).status,
      );
      f.clock.advance(1000);
    }
    assert.deepEqual([...statuses], [200]);
  });
});

void describe('hot path', () => {
  void test('a repeated GET serves the cached body: no rendering while the incarnation stands', async () => {
    const clock = new ManualClock(T0);
    const inner = new MemoryMetadataBackend({ fleet: buildTestFleet(), clock });
    let doc: ScopeDocument | undefined;
    const backend: MetadataBackend = {
      vm: (name) => inner.vm(name),
      document: (name) => doc ?? inner.document(name),
      approve: (name, ids) => inner.approve(name, ids),
      recordPoll: (name, at) => inner.recordPoll(name, at),
      now: () => inner.now(),
    };
    const app = createMetadataApp({ backend, rateLimit: false });
    const get = async (): Promise<string> =>
      (await app.fetch(new Request(`http://x${SE_LATEST}`, { headers: META }), 'as0_0')).text();
    const e = inner.schedule({ type: 'Freeze', resources: ['as0_0'] });
    const first = await get();
    assert.match(first, new RegExp(e.eventId));
    // Same incarnation, different events: only a cache can still answer the old body.
    doc = { ...inner.document('as0_0'), events: [] };
    assert.equal(await get(), first);
    doc = { ...inner.document('as0_0'), incarnation: 3, events: [] };
    assert.equal(await get(), '{"DocumentIncarnation":3,"Events":[]}');
  });

  void test('a cached GET answers synchronously (no promise in the hot path)', () => {
    const f = fixture();
    const request = (): Request => new Request(`http://x${SE_LATEST}`, { headers: META });
    const first = f.app.fetch(request(), 'as0_0');
    assert.ok(first instanceof Response);
    assert.ok(f.app.fetch(request(), 'as0_0') instanceof Response);
  });

  void test('recordPoll on every served GET (200 and 304), not on refusals or POSTs', async () => {
    const f = fixture();
    assert.equal(f.backend.lastPoll('as0_0'), undefined);
    await f.fetch(`${SE}?api-version=bad`);
    await f.fetch(SE_LATEST, { method: 'POST', headers: META, body: startRequests('x') });
    assert.equal(f.backend.lastPoll('as0_0'), undefined);
    const res = await f.fetch(SE_LATEST);
    assert.equal(f.backend.lastPoll('as0_0'), T0);
    f.clock.advance(1000);
    const etag = res.headers.get('etag') ?? '';
    assert.equal((await f.fetch(SE_LATEST, { headers: { ...META, 'If-None-Match': etag } })).status, 304);
    assert.equal(f.backend.lastPoll('as0_0'), T0 + 1000);
  });
});

void describe('request handling details', () => {
  void test('percent-encoded names count: api%2Dversion is api-version, and a duplicate', async () => {
    const f = fixture();
    assert.equal((await f.fetch(`${SE}?api%2Dversion=2020-07-01`)).status, 200);
    const dup = await f.fetch(`${SE}?api-version=2020-07-01&api%2Dversion=2020-07-01`);
    assert.equal(dup.status, 400);
    const bad = await f.fetch(`${SE}?api-version=2020-07-01&x=%zz`);
    assert.equal(bad.status, 400);
    assert.equal(await bad.text(), '{"error":"Bad request. The query string is malformed"}');
  });

  void test('a trailing slash is the same path', async () => {
    const f = fixture();
    assert.equal((await f.fetch(`${SE}/?api-version=2020-07-01`)).status, 200);
    assert.equal((await f.fetch('/metadata/instance/compute/?api-version=2021-02-01')).status, 200);
  });

  void test('413 for a streamed body without Content-Length; 400 for bytes that are not UTF-8', async () => {
    const f = fixture({ maxBodyBytes: 100 });
    const chunk = new TextEncoder().encode('x'.repeat(60));
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        controller.enqueue(chunk);
      },
    });
    const res = await f.fetch(SE_LATEST, { method: 'POST', headers: META, body: stream, duplex: 'half' });
    assert.equal(res.status, 413);
    assert.equal(await res.text(), '{"error":"Request body too large"}');
    const latin1 = await f.fetch(SE_LATEST, {
      method: 'POST',
      headers: META,
      body: new Uint8Array([0x7b, 0xff, 0x7d]),
    });
    assert.equal(latin1.status, 400);
  });

  void test('a subscriber that throws changes nothing for the guest', async () => {
    const backend = new MemoryMetadataBackend({ fleet: buildTestFleet() });
    const app = createMetadataApp({
      backend,
      rateLimit: false,
      onEvent: () => {
        throw new Error('logger down');
      },
    });
    const res = await app.fetch(new Request(`http://x${SE}?api-version=nope`, { headers: META }), 'as0_0');
    assert.equal(res.status, 400);
  });

  void test('requests during the enablement delay all wait, then see the document as it is then', async () => {
    const f = fixture({ enablementDelayMs: 50 });
    const first = f.fetch(SE_LATEST);
    const second = f.fetch(SE_LATEST, {}, 'as0_1');
    const e = f.backend.schedule({ type: 'Freeze', resources: ['as0_1'] });
    const bodies = await Promise.all([first, second].map(async (p) => (await p).text()));
    for (const body of bodies)
      assert.match(body, new RegExp(`"DocumentIncarnation":2,"Events":\\[\\{"EventId":"${e.eventId}"`));
    assert.equal(f.events.filter((x) => x.name === 'imds:enabled').length, 1);
  });

  void test('every refusal is reported with its code, for logs', async () => {
    const f = fixture();
    await f.fetch(SE_LATEST, { method: 'DELETE', headers: META });
    await f.fetch(SE_LATEST, { headers: {} });
    assert.deepEqual(
      f.events
        .filter((x) => x.name === 'imds:rejected')
        .map((x) =>
          x.name === 'imds:rejected' ? [x.payload.status, x.payload.code, x.payload.method, x.payload.path] : [],
        ),
      [
        [405, 'METHOD_NOT_ALLOWED', 'DELETE', SE],
        [400, 'METADATA_HEADER_REQUIRED', 'GET', SE],
      ],
    );
  });

  void test('backend NOT_FOUND becomes 404, other IntermissionErrors keep their status', async () => {
    const f = fixture();
    f.backend.approve = () => Promise.reject(new IntermissionError('CONFLICT', 'raced'));
    const res = await f.fetch(SE_LATEST, { method: 'POST', headers: META, body: startRequests('x') });
    assert.equal(res.status, 409);
    assert.equal(await res.text(), '{"error":"Conflict"}');
  });
});
