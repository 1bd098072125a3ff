import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { serveFetch, type RunningServer } from '../../src/service/http.js';
import { controlWorld, type ControlWorld } from './helpers.js';

/**
 * Issue 12, item 5: live streams are capped per token (429 past the cap), a principal's streams can
 * be closed (for revocation and expiry), and the listener's request timeout never cuts a stream.
 * Over real HTTP on loopback.
 */

/** An open stream: its response, the text read so far, and a way to close it from the client. */
interface OpenStream {
  readonly response: Response;
  /** Resolves once `pattern` has been received; fails after 5 s. */
  until(pattern: RegExp): Promise<void>;
  /** Resolves when the server ends the stream; fails after 5 s. */
  ended(): Promise<void>;
  close(): void;
}

async function openStream(base: string, token: string): Promise<OpenStream> {
  const abort = new AbortController();
  const response = await fetch(`${base}/v1/stream`, {
    headers: { authorization: `Bearer ${token}` },
    signal: abort.signal,
  });
  let text = '';
  let done = false;
  const reader: ReadableStreamDefaultReader<Uint8Array> | undefined = response.body?.getReader();
  const decoder = new TextDecoder();
  const pump = (async () => {
    if (!reader) return;
    try {
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        text += decoder.decode(chunk.value, { stream: true });
      }
    } catch {
      // aborted by close()
    }
    done = true;
  })();
  const wait = async (what: string, check: () => boolean): Promise<void> => {
    const deadline = performance.now() + 5000;
    while (!check()) {
      assert.ok(performance.now() < deadline, `${what} never happened; read ${JSON.stringify(text)}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };
  return {
    response,
    until: (pattern) => wait(`${String(pattern)}`, () => pattern.test(text)),
    ended: async () => {
      await wait('the end of the stream', () => done);
      await pump;
    },
    close: () => abort.abort(),
  };
}

describe('live streams per token (issue 12, item 5)', () => {
  let w: ControlWorld;
  let server: RunningServer;
  let base = '';
  before(async () => {
    w = await controlWorld({ live: { maxStreamsPerPrincipal: 2 } });
    // Short request timeouts: a stream outlives them, since its request is complete at once. Not
    // shorter: Node times a new connection from its accept, and checks its timers before it reads,
    // so an event loop stalled longer than the timeout (a loaded CI machine) answers 408.
    server = await serveFetch(
      w.app.fetch,
      { host: '127.0.0.1', port: 0 },
      { limits: { headersTimeoutMs: 500, requestTimeoutMs: 500 } },
    );
    const address = server.address;
    assert.ok('port' in address);
    base = `http://127.0.0.1:${address.port}`;
  });
  after(async () => {
    w.live.close();
    await server.close();
    await w.close();
  });

  it('answers 429 past the cap, counts each token apart, and accepts again once a stream closes', async () => {
    const token = await w.tokens.issue({ role: 'tenant', name: 'capped', vms: ['solo'] });
    const first = await openStream(base, token);
    const second = await openStream(base, token);
    await first.until(/"type":"hello"/);
    await second.until(/"type":"hello"/);

    const third = await fetch(`${base}/v1/stream`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(third.status, 429);
    const body = (await third.json()) as { error: { code: string; message: string; retryable: boolean } };
    assert.equal(body.error.code, 'TOO_MANY_REQUESTS');
    assert.equal(body.error.retryable, true);
    assert.match(body.error.message, /2 live streams/);

    const operator = await openStream(base, w.operator);
    assert.equal(operator.response.status, 200, 'another token is not affected');
    await operator.until(/"type":"hello"/);

    first.close();
    await waitFor(() => w.live.streamsOf('capped') === 1);
    const again = await openStream(base, token);
    assert.equal(again.response.status, 200);
    await again.until(/"type":"hello"/);
    for (const s of [second, operator, again]) s.close();
    await waitFor(() => w.live.size === 0);
  });

  it("closes one principal's streams and leaves the others open", async () => {
    const token = await w.tokens.issue({ role: 'tenant', name: 'revoked', vms: ['solo'] });
    const a = await openStream(base, token);
    const b = await openStream(base, token);
    const operator = await openStream(base, w.operator);
    for (const s of [a, b, operator]) {
      assert.equal(s.response.status, 200);
      await s.until(/"type":"hello"/);
    }

    assert.equal(w.live.closeStreams('revoked'), 2);
    await a.ended();
    await b.ended();
    assert.equal(w.live.streamsOf('revoked'), 0);

    // The operator's stream goes on, past the listener's request timeout.
    await new Promise((resolve) => setTimeout(resolve, 700));
    const res = await fetch(`${base}/v1/events`, {
      method: 'POST',
      headers: { ...w.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'Freeze', vms: ['solo'] }),
    });
    assert.equal(res.status, 201);
    await operator.until(/"type":"event:scheduled"/);
    operator.close();
    await waitFor(() => w.live.size === 0);
  });
});

async function waitFor(check: () => boolean): Promise<void> {
  const deadline = performance.now() + 5000;
  while (!check()) {
    assert.ok(performance.now() < deadline, 'the condition never held');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
