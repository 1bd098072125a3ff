/**
 * Spec section 5 ("Compatibility checklist"), one test group per line, and the error table of 1.5,
 * all through real HTTP against listeners on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { describe, test } from 'node:test';
import { IntermissionError, MINUTE, HOUR, SECOND, parseFleet, type EventType } from '../../src/domain/index.js';
import { AZURE_DISABLE_AFTER_IDLE_MS, DEFAULT_RATE_LIMIT } from '../../src/imds/index.js';
import {
  INVALID_VERSION_TEXT,
  META,
  NEWEST_INSTANCE,
  NEWEST_SE,
  SE,
  SE_LATEST,
  http,
  json,
  serve,
  startRequests,
  withServer,
  fixture,
} from './helpers.js';

interface WireDocument {
  DocumentIncarnation: number;
  Events: Record<string, unknown>[];
}

const BASE_KEYS = ['EventId', 'EventStatus', 'EventType', 'ResourceType', 'Resources', 'NotBefore'];
const HEADER_REQUIRED = '{"error":"Bad request: . Required metadata header not specified"}';
const NOT_FOUND = '{"error":"Not found"}';

void describe('checklist 1: Metadata header', () => {
  void test('accepted in any letter case of name and value', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      for (const headers of [
        { Metadata: 'true' },
        { metadata: 'true' },
        { Metadata: 'True' },
        { METADATA: 'TRUE' },
        { mEtAdAtA: 'tRuE' },
      ]) {
        const res = await http({ port: s.port('as0_0'), path: SE_LATEST, headers });
        assert.equal(res.status, 200, JSON.stringify(headers));
        assert.equal(res.body, '{"DocumentIncarnation":1,"Events":[]}');
      }
    });
  });

  void test('missing or not true: 400 with Azure’s body, on every endpoint', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      const port = s.port('as0_0');
      for (const path of [SE_LATEST, '/metadata/instance?api-version=2021-02-01', '/metadata/versions']) {
        for (const headers of [{}, { Metadata: 'false' }, { Metadata: '' }, { Metadata: 'yes' }]) {
          const res = await http({ port, path, headers });
          assert.equal(res.status, 400, `${path} ${JSON.stringify(headers)}`);
          assert.equal(res.body, HEADER_REQUIRED);
          assert.equal(res.headers['content-type'], 'application/json; charset=utf-8');
        }
      }
      const post = await http({ port, method: 'POST', path: SE_LATEST, headers: {}, body: startRequests('X') });
      assert.equal(post.status, 400);
      assert.equal(post.body, HEADER_REQUIRED);
    });
  });
});

void describe('checklist 2: proxies, duplicate and unknown query parameters', () => {
  void test('X-Forwarded-For is rejected with 400', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      for (const path of [SE_LATEST, '/metadata/instance?api-version=2021-02-01']) {
        const res = await http({ port: s.port('as0_0'), path, headers: { ...META, 'X-Forwarded-For': '10.0.0.9' } });
        assert.equal(res.status, 400);
        assert.equal(res.body, '{"error":"Bad request. Requests with an X-Forwarded-For header are not accepted"}');
      }
    });
  });

  void test('a repeated query parameter name is rejected with 400', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      for (const path of [
        `${SE}?api-version=2020-07-01&api-version=2020-07-01`,
        `${SE}?api-version=2020-07-01&x=1&x=2`,
        '/metadata/instance?api-version=2021-02-01&format=json&format=json',
      ]) {
        const res = await http({ port: s.port('as0_0'), path });
        assert.equal(res.status, 400, path);
        assert.equal(res.body, '{"error":"Bad request. A query parameter is given more than once"}');
      }
    });
  });

  void test('unknown parameters (extended, format on scheduledevents) are ignored', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      const port = s.port('as0_0');
      const events = await http({ port, path: `${SE_LATEST}&format=text&extended=true&foo` });
      assert.equal(events.status, 200);
      assert.equal(events.body, '{"DocumentIncarnation":1,"Events":[]}');
      const instance = await http({ port, path: '/metadata/instance?api-version=2021-08-01&extended=true' });
      assert.equal(instance.status, 200);
      assert.equal(json<{ compute: { name: string } }>(instance.body).compute.name, 'as0_0');
    });
  });
});

void describe('checklist 3: scheduledevents versions', () => {
  const plan: [EventType, string[]][] = [
    ['Freeze', ['as0_0', 'as0_1']],
    ['Reboot', ['as0_1']],
    ['Redeploy', ['as0_2']],
    ['Preempt', ['as0_0']],
    ['Terminate', ['as0_2']],
  ];
  const expected: Record<string, { types: EventType[]; keys: string[] }> = {
    '2017-03-01': { types: ['Freeze', 'Reboot', 'Redeploy'], keys: BASE_KEYS },
    '2017-08-01': { types: ['Freeze', 'Reboot', 'Redeploy'], keys: BASE_KEYS },
    '2017-11-01': { types: ['Freeze', 'Reboot', 'Redeploy', 'Preempt'], keys: BASE_KEYS },
    '2019-01-01': { types: ['Freeze', 'Reboot', 'Redeploy', 'Preempt', 'Terminate'], keys: BASE_KEYS },
    '2019-04-01': {
      types: ['Freeze', 'Reboot', 'Redeploy', 'Preempt', 'Terminate'],
      keys: [...BASE_KEYS, 'Description'],
    },
    '2019-08-01': {
      types: ['Freeze', 'Reboot', 'Redeploy', 'Preempt', 'Terminate'],
      keys: [...BASE_KEYS, 'Description', 'EventSource'],
    },
    '2020-07-01': {
      types: ['Freeze', 'Reboot', 'Redeploy', 'Preempt', 'Terminate'],
      keys: [...BASE_KEYS, 'Description', 'EventSource', 'DurationInSeconds'],
    },
  };

  void test('each of the 7 versions has its field set and event types; only 2017-03-01 prefixes "_"', async () => {
    await withServer({}, ['as0_0'], async (f, s) => {
      for (const [type, resources] of plan) {
        f.backend.schedule({ type, resources, durationInSeconds: 7 });
        f.clock.advance(1);
      }
      for (const [version, want] of Object.entries(expected)) {
        const res = await http({ port: s.port('as0_0'), path: `${SE}?api-version=${version}` });
        assert.equal(res.status, 200, version);
        const doc = json<WireDocument>(res.body);
        assert.equal(doc.DocumentIncarnation, 6, version);
        assert.deepEqual(
          doc.Events.map((e) => e['EventType']),
          want.types,
          version,
        );
        for (const event of doc.Events) assert.deepEqual(Object.keys(event), want.keys, version);
        assert.deepEqual(
          doc.Events[0]?.['Resources'],
          version === '2017-03-01' ? ['_as0_0', '_as0_1'] : ['as0_0', 'as0_1'],
          version,
        );
      }
    });
  });

  void test('exact compact bodies of 2017-03-01 and 2020-07-01', async () => {
    await withServer({}, ['as0_1'], async (f, s) => {
      const e = f.backend.schedule({ type: 'Reboot', resources: ['as0_1'], source: 'User', description: '' });
      const head = `{"EventId":"${e.eventId}","EventStatus":"Scheduled","EventType":"Reboot","ResourceType":"VirtualMachine"`;
      const notBefore = '"NotBefore":"Sat, 11 Apr 2026 22:26:58 GMT"';
      const old = await http({ port: s.port('as0_1'), path: `${SE}?api-version=2017-03-01` });
      assert.equal(old.body, `{"DocumentIncarnation":2,"Events":[${head},"Resources":["_as0_1"],${notBefore}}]}`);
      const latest = await http({ port: s.port('as0_1'), path: SE_LATEST });
      assert.equal(
        latest.body,
        `{"DocumentIncarnation":2,"Events":[${head},"Resources":["as0_1"],${notBefore},` +
          '"Description":"","EventSource":"User","DurationInSeconds":-1}]}',
      );
    });
  });

  void test('{latest}, unknown, instance-only and missing versions: 400 listing the newest scheduledevents versions', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      for (const query of [
        '?api-version={latest}',
        '?api-version=%7Blatest%7D',
        '?api-version=2021-02-01',
        '?api-version=2020-07-02',
        '?api-version=',
        '',
      ]) {
        for (const method of ['GET', 'POST']) {
          const res = await http({
            port: s.port('as0_0'),
            method,
            path: `${SE}${query}`,
            ...(method === 'POST' ? { body: startRequests('X') } : {}),
          });
          assert.equal(res.status, 400, `${method} ${query}`);
          assert.equal(res.body, JSON.stringify({ error: INVALID_VERSION_TEXT, 'newest-versions': NEWEST_SE }));
        }
      }
    });
  });
});

void describe('checklist 4: JSON types', () => {
  void test('DocumentIncarnation and DurationInSeconds are numbers, every other event field a string or string[]', async () => {
    await withServer({}, ['as0_0'], async (f, s) => {
      f.backend.schedule({ type: 'Freeze', resources: ['as0_0', 'as0_2'], durationInSeconds: 9 });
      const doc = json<WireDocument>((await http({ port: s.port('as0_0'), path: SE_LATEST })).body);
      assert.equal(typeof doc.DocumentIncarnation, 'number');
      const event = doc.Events[0] ?? {};
      assert.equal(event['DurationInSeconds'], 9);
      for (const [key, value] of Object.entries(event)) {
        if (key === 'DurationInSeconds') continue;
        if (key === 'Resources') assert.ok(Array.isArray(value) && value.every((v) => typeof v === 'string'));
        else assert.equal(typeof value, 'string', key);
      }
    });
  });

  void test('every instance-metadata primitive is a string, at every version', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      for (const version of ['2017-04-02', '2019-06-04', '2021-02-01', '2025-04-07']) {
        const res = await http({ port: s.port('as0_0'), path: `/metadata/instance?api-version=${version}` });
        assert.equal(res.status, 200);
        const primitives: unknown[] = [];
        const walk = (value: unknown): void => {
          if (Array.isArray(value)) value.forEach(walk);
          else if (typeof value === 'object' && value !== null) Object.values(value).forEach(walk);
          else primitives.push(value);
        };
        walk(JSON.parse(res.body));
        assert.ok(primitives.length > 10);
        assert.deepEqual(
          primitives.filter((p) => typeof p !== 'string'),
          [],
          version,
        );
      }
    });
  });
});

void describe('checklist 5: NotBefore', () => {
  void test('RFC 1123 with the weekday computed from the date, "" once Started', async () => {
    await withServer({}, ['as0_0'], async (f, s) => {
      const a = f.backend.schedule({ type: 'Freeze', resources: ['as0_0'] });
      f.clock.advance(1);
      f.backend.schedule({ type: 'Freeze', resources: ['as0_1'], notBefore: Date.UTC(2026, 11, 7, 3, 4, 5) });
      const doc = json<WireDocument>((await http({ port: s.port('as0_0'), path: SE_LATEST })).body);
      // The SE-doc example says "Mon, 11 Apr 2026"; 11 April 2026 is a Saturday.
      assert.deepEqual(
        doc.Events.map((e) => e['NotBefore']),
        ['Sat, 11 Apr 2026 22:26:58 GMT', 'Mon, 07 Dec 2026 03:04:05 GMT'],
      );
      for (const e of doc.Events) {
        assert.match(
          String(e['NotBefore']),
          /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/,
        );
      }
      await http({ port: s.port('as0_0'), method: 'POST', path: SE_LATEST, body: startRequests(a.eventId) });
      f.backend.tick();
      const started = json<WireDocument>((await http({ port: s.port('as0_0'), path: SE_LATEST })).body);
      assert.deepEqual(
        started.Events.map((e) => [e['EventStatus'], e['NotBefore']]),
        [
          ['Started', ''],
          ['Scheduled', 'Mon, 07 Dec 2026 03:04:05 GMT'],
        ],
      );
    });
  });
});

void describe('checklist 6: lifecycle and incarnation', () => {
  const westNo = parseFleet({
    hosts: [{ name: 'h1' }],
    availabilitySets: [{ name: 'WestNO' }],
    vms: [
      { name: 'WestNO_0', host: 'h1', availabilitySet: 'WestNO' },
      { name: 'WestNO_1', host: 'h1', availabilitySet: 'WestNO' },
    ],
  });

  void test('the SE-doc example sequence, byte for byte: Scheduled → Started → removed, incarnations 1 to 4', async () => {
    await withServer({ fleet: westNo }, ['WestNO_0', 'WestNO_1'], async (f, s) => {
      const get = async (vm: string): Promise<string> => (await http({ port: s.port(vm), path: SE_LATEST })).body;
      assert.equal(await get('WestNO_0'), '{"DocumentIncarnation":1,"Events":[]}');
      f.backend.schedule({
        eventId: 'C7061BAC-AFDC-4513-B24B-AA5F13A16123',
        type: 'Freeze',
        resources: ['WestNO_0', 'WestNO_1'],
        description: 'Virtual machine is being paused because of a memory-preserving Live Migration operation.',
        durationInSeconds: 5,
      });
      const event =
        '{"EventId":"C7061BAC-AFDC-4513-B24B-AA5F13A16123","EventStatus":"%STATUS%","EventType":"Freeze",' +
        '"ResourceType":"VirtualMachine","Resources":["WestNO_0","WestNO_1"],"NotBefore":"%NB%",' +
        '"Description":"Virtual machine is being paused because of a memory-preserving Live Migration operation.",' +
        '"EventSource":"Platform","DurationInSeconds":5}';
      const scheduled = `{"DocumentIncarnation":2,"Events":[${event.replace('%STATUS%', 'Scheduled').replace('%NB%', 'Sat, 11 Apr 2026 22:26:58 GMT')}]}`;
      assert.equal(await get('WestNO_0'), scheduled);
      assert.equal(await get('WestNO_1'), scheduled);

      // Approval changes nothing a tenant sees: the same incarnation, the same document.
      const post = await http({
        port: s.port('WestNO_1'),
        method: 'POST',
        path: SE_LATEST,
        body: startRequests('C7061BAC-AFDC-4513-B24B-AA5F13A16123'),
      });
      assert.equal(post.status, 200);
      assert.equal(await get('WestNO_0'), scheduled);

      f.clock.advance(2 * SECOND);
      assert.equal(f.backend.tick().started.length, 1);
      const started = `{"DocumentIncarnation":3,"Events":[${event.replace('%STATUS%', 'Started').replace('%NB%', '')}]}`;
      assert.equal(await get('WestNO_0'), started);

      f.clock.advance(5 * SECOND);
      f.backend.end(['C7061BAC-AFDC-4513-B24B-AA5F13A16123']);
      assert.equal(await get('WestNO_1'), started, 'an ended event lingers as Started, same incarnation');

      f.clock.advance(5 * MINUTE);
      assert.equal(f.backend.tick().removed.length, 1);
      assert.equal(await get('WestNO_0'), '{"DocumentIncarnation":4,"Events":[]}');
      assert.equal(await get('WestNO_1'), '{"DocumentIncarnation":4,"Events":[]}');
    });
  });

  void test('a cancelled event disappears with a new incarnation; Completed/Canceled never appear', async () => {
    await withServer({}, ['as0_0'], async (f, s) => {
      const bodies: string[] = [];
      const get = async (): Promise<WireDocument> => {
        const body = (await http({ port: s.port('as0_0'), path: SE_LATEST })).body;
        bodies.push(body);
        return json<WireDocument>(body);
      };
      const e = f.backend.schedule({ type: 'Reboot', resources: ['as0_0'] });
      assert.equal((await get()).DocumentIncarnation, 2);
      f.clock.advance(8 * MINUTE);
      f.backend.cancel([e.eventId]);
      assert.deepEqual(await get(), { DocumentIncarnation: 3, Events: [] });
      const u = f.backend.startUnplanned({ type: 'Reboot', resources: ['as0_1'] });
      const unplanned = await get();
      assert.equal(unplanned.DocumentIncarnation, 4);
      assert.deepEqual(
        unplanned.Events.map((x) => [x['EventId'], x['EventStatus'], x['NotBefore']]),
        [[u.eventId, 'Started', '']],
      );
      f.backend.end([u.eventId]);
      f.clock.advance(5 * MINUTE);
      f.backend.tick();
      assert.deepEqual(await get(), { DocumentIncarnation: 5, Events: [] });
      for (const body of bodies) assert.doesNotMatch(body, /Completed|Cancel|Ended|Removed/);
    });
  });
});

void describe('checklist 7: POST approvals', () => {
  void test('JSON body under any Content-Type, extra keys ignored, 200 with an empty body', async () => {
    await withServer({}, ['as0_0'], async (f, s) => {
      const e = f.backend.schedule({ type: 'Freeze', resources: ['as0_0'] });
      const res = await http({
        port: s.port('as0_0'),
        method: 'POST',
        path: `${SE}?api-version=2017-03-01`,
        headers: { ...META, 'Content-Type': 'application/x-www-form-urlencoded' },
        body: JSON.stringify({ DocumentIncarnation: '5', StartRequests: [{ EventId: e.eventId, Extra: 1 }], X: true }),
      });
      assert.equal(res.status, 200);
      assert.equal(res.body, '');
      assert.equal(res.headers['content-length'], '0');
      assert.equal(f.backend.book.get(e.eventId)?.approvedBy, 'as0_0');
    });
  });

  void test('every valid version accepts approvals (GET at 2020-07-01, POST at 2019-08-01)', async () => {
    await withServer({}, ['as0_0'], async (f, s) => {
      for (const version of [
        '2017-03-01',
        '2017-08-01',
        '2017-11-01',
        '2019-01-01',
        '2019-04-01',
        '2019-08-01',
        '2020-07-01',
      ]) {
        const e = f.backend.schedule({ type: 'Freeze', resources: ['as0_0'] });
        const res = await http({
          port: s.port('as0_0'),
          method: 'POST',
          path: `${SE}?api-version=${version}`,
          body: startRequests(e.eventId.toLowerCase()),
        });
        assert.equal(res.status, 200, version);
        assert.notEqual(f.backend.book.get(e.eventId)?.approvedAt, undefined, version);
      }
    });
  });

  void test('already approved, already started and unknown ids: 200, unknown ones reported', async () => {
    await withServer({}, ['as0_0'], async (f, s) => {
      const e = f.backend.schedule({ type: 'Freeze', resources: ['as0_0'] });
      const post = (body: string): ReturnType<typeof http> =>
        http({ port: s.port('as0_0'), method: 'POST', path: SE_LATEST, body });
      assert.equal((await post(startRequests(e.eventId))).status, 200);
      assert.equal((await post(startRequests(e.eventId))).status, 200);
      f.backend.tick();
      assert.equal(f.backend.book.get(e.eventId)?.phase, 'Started');
      assert.equal((await post(startRequests(e.eventId))).status, 200);
      const unknown = await post(startRequests('00000000-0000-0000-0000-000000000000'));
      assert.equal(unknown.status, 200);
      assert.equal(unknown.body, '');
      assert.deepEqual(
        f.events.filter((x) => x.name === 'imds:approve:unknown').map((x) => x.payload),
        [{ vm: 'as0_0', eventIds: ['00000000-0000-0000-0000-000000000000'] }],
      );
      assert.equal((await post('{"StartRequests":[]}')).status, 200);
    });
  });

  void test('malformed bodies: 400 {"error":"Bad request. …"}', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      for (const body of [
        '',
        'not json',
        'StartRequests=X',
        '[]',
        'null',
        '{}',
        '{"StartRequests":{"EventId":"X"}}',
        '{"StartRequests":[{}]}',
        '{"StartRequests":[{"EventId":5}]}',
        '{"StartRequests":[{"EventId":""}]}',
        '{"StartRequests":["X"]}',
      ]) {
        const res = await http({ port: s.port('as0_0'), method: 'POST', path: SE_LATEST, body });
        assert.equal(res.status, 400, body);
        assert.equal(
          res.body,
          '{"error":"Bad request. The body must be JSON of the form {\\"StartRequests\\":[{\\"EventId\\":\\"<id>\\"}]}"}',
        );
      }
    });
  });
});

void describe('checklist 8: approval scope', () => {
  void test('approval by any VM of the scope releases the event for all its Resources', async () => {
    await withServer({}, ['as0_0', 'as0_1', 'as0_2'], async (f, s) => {
      const e = f.backend.schedule({ type: 'Freeze', resources: ['as0_0', 'as0_1', 'as0_2'] });
      const res = await http({
        port: s.port('as0_2'),
        method: 'POST',
        path: SE_LATEST,
        body: startRequests(e.eventId),
      });
      assert.equal(res.status, 200);
      assert.equal(f.backend.book.get(e.eventId)?.approvedBy, 'as0_2');
      f.backend.tick();
      for (const vm of ['as0_0', 'as0_1', 'as0_2']) {
        const doc = json<WireDocument>((await http({ port: s.port(vm), path: SE_LATEST })).body);
        assert.deepEqual(
          doc.Events.map((x) => [x['EventId'], x['EventStatus'], x['Resources']]),
          [[e.eventId, 'Started', ['as0_0', 'as0_1', 'as0_2']]],
          vm,
        );
      }
    });
  });

  void test('a VM of another scope neither sees nor approves; a host-wide operation waits for each scope', async () => {
    await withServer({}, ['as0_0', 'as1_0', 'solo0_0'], async (f, s) => {
      // One host update touching three scopes: one event per scope.
      const a = f.backend.schedule({ type: 'Freeze', resources: ['as0_0'] });
      const b = f.backend.schedule({ type: 'Freeze', resources: ['as1_0'] });
      const c = f.backend.schedule({ type: 'Freeze', resources: ['solo0_0'] });
      const seen = async (vm: string): Promise<unknown[]> =>
        json<WireDocument>((await http({ port: s.port(vm), path: SE_LATEST })).body).Events.map((x) => x['EventId']);
      assert.deepEqual(await seen('as0_0'), [a.eventId]);
      assert.deepEqual(await seen('as1_0'), [b.eventId]);
      assert.deepEqual(await seen('solo0_0'), [c.eventId]);

      const res = await http({
        port: s.port('as1_0'),
        method: 'POST',
        path: SE_LATEST,
        body: startRequests(a.eventId, c.eventId),
      });
      assert.equal(res.status, 200);
      assert.equal(res.body, '');
      assert.equal(f.backend.book.get(a.eventId)?.approvedAt, undefined);
      assert.equal(f.backend.book.get(c.eventId)?.approvedAt, undefined);

      await http({ port: s.port('as1_0'), method: 'POST', path: SE_LATEST, body: startRequests(b.eventId) });
      assert.deepEqual(
        f.backend.book.due(f.clock.now()).map((e) => e.eventId),
        [b.eventId],
        'only the approving scope’s event may start before NotBefore',
      );
      f.clock.advance(15 * MINUTE);
      assert.deepEqual(
        f.backend.book
          .due(f.clock.now())
          .map((e) => e.eventId)
          .sort(),
        [a.eventId, b.eventId, c.eventId].sort(),
      );
    });
  });
});

void describe('checklist 9: rate limit and enablement', () => {
  void test('about 5 req/s per VM with a burst of 10: the 11th request at once gets 429', async () => {
    await withServer({ rateLimit: DEFAULT_RATE_LIMIT }, ['as0_0', 'as0_1'], async (f, s) => {
      const statuses: number[] = [];
      let last = '';
      for (let i = 0; i < 11; i++) {
        const res = await http({ port: s.port('as0_0'), path: SE_LATEST });
        statuses.push(res.status);
        if (res.status === 429) {
          last = res.body;
          assert.equal(res.headers['retry-after'], '1');
        }
      }
      assert.deepEqual(statuses, [...Array<number>(10).fill(200), 429]);
      assert.equal(last, '{"error":"Too many requests"}');
      // Per VM: another VM is not affected.
      assert.equal((await http({ port: s.port('as0_1'), path: SE_LATEST })).status, 200);
      f.clock.advance(199);
      assert.equal((await http({ port: s.port('as0_0'), path: SE_LATEST })).status, 429);
      f.clock.advance(1);
      assert.equal((await http({ port: s.port('as0_0'), path: SE_LATEST })).status, 200);
      f.clock.advance(SECOND);
      const burst = await Promise.all(
        Array.from({ length: 7 }, () => http({ port: s.port('as0_0'), path: SE_LATEST })),
      );
      assert.deepEqual(burst.map((r) => r.status).sort(), [200, 200, 200, 200, 200, 429, 429]);
    });
  });

  void test('a 1 Hz poller doing GET + POST (and instance reads) is never throttled', async () => {
    await withServer({ rateLimit: DEFAULT_RATE_LIMIT }, ['as0_0'], async (f, s) => {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const e = f.backend.schedule({ type: 'Freeze', resources: ['as0_0'], noticeMs: HOUR });
        const statuses = new Map<number, number>();
        const count = (status: number): void => void statuses.set(status, (statuses.get(status) ?? 0) + 1);
        for (let second = 0; second < 120; second++) {
          count((await http({ port: s.port('as0_0'), path: SE_LATEST, agent })).status);
          count(
            (
              await http({
                port: s.port('as0_0'),
                method: 'POST',
                path: SE_LATEST,
                body: startRequests(e.eventId),
                agent,
              })
            ).status,
          );
          if (second % 30 === 0) {
            count(
              (await http({ port: s.port('as0_0'), path: '/metadata/instance?api-version=2021-02-01', agent })).status,
            );
          }
          // Jitter: the poll lands anywhere from 600 to 1400 ms after the last.
          f.clock.advance(1000 + (second % 2 === 0 ? -400 : 400));
        }
        assert.deepEqual([...statuses], [[200, 244]]);
      } finally {
        agent.destroy();
      }
    });
  });

  void test('the first request of a scope waits for the enablement delay; later ones do not', async () => {
    await withServer({ enablementDelayMs: 300 }, ['as0_0', 'as0_1'], async (f, s) => {
      const timed = async (vm: string): Promise<{ ms: number; status: number; body: string }> => {
        const started = performance.now();
        const res = await http({ port: s.port(vm), path: SE_LATEST });
        return { ms: performance.now() - started, status: res.status, body: res.body };
      };
      const first = await timed('as0_0');
      assert.equal(first.status, 200);
      assert.ok(first.ms >= 290, `first call took ${first.ms} ms`);
      const again = await timed('as0_0');
      const sibling = await timed('as0_1');
      assert.ok(again.ms < 290 && sibling.ms < 290, `${again.ms} / ${sibling.ms} ms`);
      assert.deepEqual(
        f.events.filter((x) => x.name === 'imds:enabled').map((x) => x.payload),
        [{ vm: 'as0_0', scope: 'set:as0', reset: false, delayMs: 300 }],
      );
    });
  });

  void test('by default never disabled: after days without requests the incarnation has not gone down', async () => {
    await withServer({}, ['as0_0'], async (f, s) => {
      f.backend.schedule({ type: 'Freeze', resources: ['as0_0'], noticeMs: 7 * 24 * HOUR });
      const first = json<WireDocument>((await http({ port: s.port('as0_0'), path: SE_LATEST })).body);
      assert.equal(first.DocumentIncarnation, 2);
      f.clock.advance(3 * 24 * HOUR);
      const later = json<WireDocument>((await http({ port: s.port('as0_0'), path: SE_LATEST })).body);
      assert.equal(later.DocumentIncarnation, 2, 'invariant 5: a DocumentIncarnation never goes down');
    });
  });

  void test('opt-in Azure enablement: disabled after 24 h idle, re-enabled with the incarnation starting at 1', async () => {
    await withServer({ disableAfterIdleMs: AZURE_DISABLE_AFTER_IDLE_MS }, ['as0_0', 'as0_1'], async (f, s) => {
      const get = async (vm = 'as0_0'): Promise<{ doc: WireDocument; etag: string | undefined }> => {
        const res = await http({ port: s.port(vm), path: SE_LATEST });
        return { doc: json<WireDocument>(res.body), etag: res.headers.etag };
      };
      f.backend.schedule({ type: 'Freeze', resources: ['as0_0'], noticeMs: 7 * 24 * HOUR });
      f.clock.advance(1);
      f.backend.schedule({ type: 'Freeze', resources: ['as0_1'], noticeMs: 7 * 24 * HOUR });
      const before = await get();
      assert.equal(before.doc.DocumentIncarnation, 3);
      f.clock.advance(24 * HOUR - 1);
      assert.equal((await get('as0_1')).doc.DocumentIncarnation, 3, 'any VM of the scope keeps it enabled');
      f.clock.advance(24 * HOUR);
      const after = await get();
      assert.equal(after.doc.DocumentIncarnation, 1);
      assert.deepEqual(after.doc.Events, before.doc.Events);
      assert.notEqual(after.etag, before.etag);
      assert.equal((await get('as0_1')).doc.DocumentIncarnation, 1);
      f.backend.schedule({ type: 'Reboot', resources: ['as0_1'] });
      assert.equal((await get()).doc.DocumentIncarnation, 2);
      assert.deepEqual(
        f.events.filter((x) => x.name === 'imds:enabled').map((x) => x.payload),
        [
          { vm: 'as0_0', scope: 'set:as0', reset: false, delayMs: 0 },
          { vm: 'as0_0', scope: 'set:as0', reset: true, delayMs: 0 },
        ],
      );
    });
  });
});

void describe('checklist 10: names', () => {
  void test('compute.name equals the Resources entry; /metadata/instance/compute?api-version=2019-11-01 is 200', async () => {
    await withServer({}, ['as1_2'], async (f, s) => {
      f.backend.schedule({ type: 'Freeze', resources: ['as1_2'] });
      const port = s.port('as1_2');
      const doc = json<WireDocument>((await http({ port, path: `${SE}?api-version=2019-08-01` })).body);
      const name = await http({ port, path: '/metadata/instance/compute/name?api-version=2021-02-01&format=text' });
      assert.equal(name.status, 200);
      assert.equal(name.headers['content-type'], 'text/plain; charset=utf-8');
      assert.deepEqual(doc.Events[0]?.['Resources'], [name.body]);
      assert.match(name.body, /^[A-Za-z0-9]+_\d+$/, 'scale-set style name_<n>, as seoperator2 needs');
      const compute = await http({ port, path: '/metadata/instance/compute?api-version=2019-11-01' });
      assert.equal(compute.status, 200);
      assert.equal(json<{ name: string }>(compute.body).name, 'as1_2');
    });
  });
});

void describe('checklist 11: ETag and If-None-Match', () => {
  void test('304 for the current ETag, 200 with a new one after a change; 0/null never match', async () => {
    await withServer({}, ['as0_0'], async (f, s) => {
      const port = s.port('as0_0');
      const first = await http({ port, path: SE_LATEST });
      const etag = first.headers.etag ?? '';
      assert.match(etag, /^"1-20200701-[0-9a-f]{8}"$/);
      const same = await http({ port, path: SE_LATEST, headers: { ...META, 'If-None-Match': etag } });
      assert.equal(same.status, 304);
      assert.equal(same.body, '');
      assert.equal(same.headers.etag, etag);
      for (const value of ['0', 'null', '"0"', '*-no', 'W/"nope"']) {
        const res = await http({
          port,
          path: SE_LATEST,
          headers: { ...META, 'If-None-Match': value, 'Content-Type': 'application/json' },
        });
        assert.equal(res.status, 200, value);
        assert.equal(res.body, first.body);
      }
      assert.equal(
        (await http({ port, path: SE_LATEST, headers: { ...META, 'If-None-Match': `"x", W/${etag}` } })).status,
        304,
      );
      const other = await http({
        port,
        path: `${SE}?api-version=2019-08-01`,
        headers: { ...META, 'If-None-Match': etag },
      });
      assert.equal(other.status, 200, 'an ETag belongs to one version');
      f.backend.schedule({ type: 'Freeze', resources: ['as0_0'] });
      const changed = await http({ port, path: SE_LATEST, headers: { ...META, 'If-None-Match': etag } });
      assert.equal(changed.status, 200);
      assert.equal(json<WireDocument>(changed.body).DocumentIncarnation, 2);
      assert.notEqual(changed.headers.etag, etag);
    });
  });

  void test('never 304 where no ETag is issued', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      for (const path of ['/metadata/instance?api-version=2021-02-01', '/metadata/versions']) {
        const res = await http({ port: s.port('as0_0'), path, headers: { ...META, 'If-None-Match': '*' } });
        assert.equal(res.status, 200, path);
        assert.equal(res.headers.etag, undefined);
      }
    });
  });
});

void describe('spec 1.5 error table', () => {
  void test('400 missing Metadata header; 400 invalid api-version with newest-versions (instance and /metadata)', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      const port = s.port('as0_0');
      assert.equal((await http({ port, path: SE_LATEST, headers: {} })).body, HEADER_REQUIRED);
      const instanceBody = JSON.stringify({ error: INVALID_VERSION_TEXT, 'newest-versions': NEWEST_INSTANCE });
      for (const path of [
        '/metadata',
        '/metadata/instance',
        '/metadata/instance?api-version=2020-07-01',
        '/metadata/instance/compute?api-version=latest',
      ]) {
        const res = await http({ port, path });
        assert.equal(res.status, 400, path);
        assert.equal(res.body, instanceBody);
      }
    });
  });

  void test('404 for unknown paths and out-of-scope endpoints', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      for (const path of [
        '/',
        '/latest/meta-data/',
        '/metadata/scheduledevent?api-version=2020-07-01',
        '/metadata/attested/document?api-version=2021-02-01',
        '/metadata/identity/oauth2/token?api-version=2018-02-01',
        '/metadata?api-version=2021-02-01',
        '/metadata/instance/nope?api-version=2021-02-01',
      ]) {
        const res = await http({ port: s.port('as0_0'), path });
        assert.equal(res.status, 404, path);
        assert.equal(res.body, NOT_FOUND);
      }
    });
  });

  void test('405 with Allow for methods an endpoint does not serve', async () => {
    await withServer({}, ['as0_0'], async (_f, s) => {
      const cases: [string, string, string][] = [
        ['PUT', SE_LATEST, 'GET, POST'],
        ['DELETE', SE_LATEST, 'GET, POST'],
        ['PATCH', SE_LATEST, 'GET, POST'],
        ['POST', '/metadata/instance?api-version=2021-02-01', 'GET'],
        ['PUT', '/metadata/instance/compute?api-version=2021-02-01', 'GET'],
        ['POST', '/metadata/versions', 'GET'],
        ['DELETE', '/metadata', 'GET'],
      ];
      for (const [method, path, allow] of cases) {
        const res = await http({ port: s.port('as0_0'), method, path, ...(method === 'GET' ? {} : { body: '{}' }) });
        assert.equal(res.status, 405, `${method} ${path}`);
        assert.equal(res.headers.allow, allow);
        assert.equal(res.body, '{"error":"Method not allowed"}');
      }
      const head = await http({ port: s.port('as0_0'), method: 'HEAD', path: SE_LATEST });
      assert.equal(head.status, 405);
      assert.equal(head.headers.allow, 'GET, POST');
    });
  });

  void test('413 for a body over the bound, declared or streamed', async () => {
    await withServer({ maxBodyBytes: 1024 }, ['as0_0'], async (_f, s) => {
      const big = `{"StartRequests":[],"pad":"${'x'.repeat(2000)}"}`;
      const declared = await http({ port: s.port('as0_0'), method: 'POST', path: SE_LATEST, body: big });
      assert.equal(declared.status, 413);
      assert.equal(declared.body, '{"error":"Request body too large"}');
      assert.equal(declared.headers.connection, 'close');
      const chunks = Array.from({ length: 8 }, (_, i) => (i === 0 ? '{"StartRequests":[],"pad":"' : 'y'.repeat(300)));
      const streamed = await http({ port: s.port('as0_0'), method: 'POST', path: SE_LATEST, body: chunks });
      assert.equal(streamed.status, 413);
      assert.equal(streamed.body, '{"error":"Request body too large"}');
      const fits = await http({
        port: s.port('as0_0'),
        method: 'POST',
        path: SE_LATEST,
        body: ['{"StartRequests"', ':[]}'],
      });
      assert.equal(fits.status, 200);
    });
  });

  void test('500 and 503 for failures of the backend, without internals', async () => {
    const f = fixture();
    const s = await serve(f.app, ['as0_0']);
    try {
      f.backend.document = () => {
        throw new Error('disk on fire');
      };
      const broken = await http({ port: s.port('as0_0'), path: SE_LATEST });
      assert.equal(broken.status, 500);
      assert.equal(broken.body, '{"error":"Internal server error"}');
      f.backend.approve = () => Promise.reject(new IntermissionError('STORE_FAILURE', 'database is locked'));
      const busy = await http({ port: s.port('as0_0'), method: 'POST', path: SE_LATEST, body: startRequests('X') });
      assert.equal(busy.status, 503);
      assert.equal(busy.headers['retry-after'], '1');
      assert.equal(busy.body, '{"error":"Service unavailable"}');
      assert.deepEqual(
        f.events
          .filter((x) => x.name === 'imds:error')
          .map((x) => (x.name === 'imds:error' ? x.payload.error.code : '')),
        ['INTERNAL', 'STORE_FAILURE'],
      );
    } finally {
      await s.listeners.close();
    }
  });
});
