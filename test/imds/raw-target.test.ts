import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, test } from 'node:test';
import { rawTargetVerdict } from '../../src/imds/index.js';
import { INVALID_VERSION_TEXT, SE_LATEST, fixture, serve, type RecordedEvent } from './helpers.js';

/** What a raw HTTP/1 exchange brought back: the status line's code and the body. */
interface RawAnswer {
  readonly status: number;
  readonly body: string;
}

/**
 * Writes `requestLine` and a guest's headers to the listener byte for byte (node:net, no HTTP client
 * in between to normalise the target), and reads the answer until the server closes.
 */
function rawRequest(port: number, requestLine: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
      const split = text.indexOf('\r\n\r\n');
      const head = text.slice(0, split);
      const rest = text.slice(split + 4);
      // Bodies are small; a chunked one is one chunk plus the terminator.
      const body = /transfer-encoding: chunked/i.test(head) ? (rest.split('\r\n')[1] ?? '') : rest;
      resolve({ status, body });
    });
    socket.write(`${requestLine}\r\nHost: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n\r\n`);
  });
}

const NOT_FOUND = { status: 404, body: '{"error":"Not found"}' };
const MALFORMED = { status: 400, body: '{"error":"Bad request. The request line is malformed"}' };

/** Each spelling that the listener served as the scheduled-events document before, and IMDS's answer. */
const SPELLINGS: readonly { readonly line: string; readonly why: string; readonly answer: RawAnswer }[] = [
  {
    line: `GET /metadata/scheduled%65vents?api-version=2020-07-01 HTTP/1.1`,
    why: 'percent-encoded letter',
    answer: NOT_FOUND,
  },
  {
    line: `GET /metadata/x/../scheduledevents?api-version=2020-07-01 HTTP/1.1`,
    why: 'dot-dot segment',
    answer: NOT_FOUND,
  },
  {
    line: `GET /metadata/%2e%2e/metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1`,
    why: 'encoded dot-dot segment',
    answer: NOT_FOUND,
  },
  { line: `GET /metadata/scheduledevents/.?api-version=2020-07-01 HTTP/1.1`, why: 'dot segment', answer: NOT_FOUND },
  {
    line: `GET http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1`,
    why: 'absolute-form target (a request meant for a proxy)',
    answer: MALFORMED,
  },
  {
    line: `GET /metadata/scheduledevents?api-version=2020-07-01 HTTP/2.0`,
    why: 'HTTP/2.0 request line over HTTP/1',
    answer: MALFORMED,
  },
  {
    line: `GET /metadata/scheduledevents#?api-version=2020-07-01 HTTP/1.1`,
    why: 'query hidden in a fragment',
    answer: MALFORMED,
  },
];

void describe('raw request targets on a real listener (raw TCP, exact bytes)', () => {
  void test('the plain spelling is served (control)', async () => {
    const f = fixture();
    const s = await serve(f.app, ['as0_0']);
    try {
      const answer = await rawRequest(s.port('as0_0'), `GET ${SE_LATEST} HTTP/1.1`);
      assert.equal(answer.status, 200);
      assert.equal(answer.body, '{"DocumentIncarnation":1,"Events":[]}');
      // HTTP/1.0 is still spoken (busybox wget, old clients).
      const old = await rawRequest(s.port('as0_0'), `GET ${SE_LATEST} HTTP/1.0`);
      assert.equal(old.status, 200);
    } finally {
      await s.listeners.close();
    }
  });

  for (const { line, why, answer } of SPELLINGS) {
    void test(`${why}: ${line} is answered ${answer.status}, never with the document`, async () => {
      const f = fixture();
      const s = await serve(f.app, ['as0_0']);
      try {
        assert.deepEqual(await rawRequest(s.port('as0_0'), line), answer);
        const rejected = f.events.filter(
          (e): e is Extract<RecordedEvent, { name: 'imds:rejected' }> => e.name === 'imds:rejected',
        );
        assert.equal(rejected.length, 1, 'the refusal is reported like any other');
        assert.equal(rejected[0]?.payload.status, answer.status);
        // Nothing reached the document: the scope was never enabled and no poll was recorded.
        assert.equal(
          f.events.some((e) => e.name === 'imds:enabled'),
          false,
        );
        assert.equal(f.backend.lastPoll('as0_0'), undefined);
      } finally {
        await s.listeners.close();
      }
    });
  }

  void test('in-process, a query after a # is no query: 400 for the missing api-version', async () => {
    const f = fixture();
    // The fetch API drops the fragment itself; the app must not read a query out of it either.
    const res = await f.app.hono.request(
      '/metadata/scheduledevents#?api-version=2020-07-01',
      { headers: { Metadata: 'true' } },
      { vm: 'as0_0' },
    );
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: string }).error, INVALID_VERSION_TEXT);
  });
});

void describe('rawTargetVerdict (pure)', () => {
  const ok = (target: string, httpVersion = '1.1'): void =>
    assert.equal(rawTargetVerdict({ method: 'GET', target, httpVersion }), undefined, target);
  const refused = (target: string, status: number, httpVersion = '1.1', method = 'GET'): void =>
    assert.equal(rawTargetVerdict({ method, target, httpVersion })?.status, status, target);

  void test('origin-form targets of real clients pass', () => {
    ok('/metadata/scheduledevents?api-version=2020-07-01');
    ok('/metadata/instance?api-version=2021-08-01&extended=true');
    ok('/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress?api-version=2021-02-01&format=text');
    ok('/metadata/attested/document?api-version=2020-09-01&nonce=abcde12345');
    ok('/metadata/versions');
    ok('/metadata/instance/compute/');
    ok('/metadata/scheduledevents?api-version=2020-07-01', '1.0');
    // The query may carry percent-encoding; only the path is literal.
    ok('/metadata/attested/document?api-version=2020-09-01&nonce=a%20b');
  });

  void test('path spellings are 404, malformed request lines 400', () => {
    refused('/metadata/scheduled%65vents', 404);
    refused('/metadata/%73cheduledevents?api-version=2020-07-01', 404);
    refused('/metadata/./scheduledevents', 404);
    refused('/metadata/scheduledevents/..', 404);
    refused('/metadata/%2E%2E/scheduledevents', 404);
    refused('/metadata\\scheduledevents', 404);
    refused('http://169.254.169.254/metadata/scheduledevents', 400);
    refused('169.254.169.254:80', 400, '1.1', 'CONNECT');
    refused('*', 400, '1.1', 'OPTIONS');
    refused('/metadata/scheduledevents', 400, '2.0');
    refused('/metadata/scheduledevents', 400, '1.2');
    refused('/metadata/scheduledevents#x', 400);
    refused('/metadata/scheduledevents?api-version=2020-07-01#frag', 400);
  });
});
