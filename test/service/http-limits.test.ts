import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Socket } from 'node:net';
import { parseFleet } from '../../src/domain/index.js';
import { listenMetadata } from '../../src/imds/index.js';
import type { ListenAddress } from '../../src/service/address.js';
import { startAgentRuntime } from '../../src/service/agent-runtime.js';
import { startMetadataRuntime } from '../../src/service/metadata-runtime.js';
import { serveFetch, type RunningServer } from '../../src/service/http.js';
import { controlWorld, type ControlWorld } from '../control/helpers.js';
import { fixture, http, SE_LATEST, startRequests } from '../imds/helpers.js';
import { connectRaw, delay, record, write } from './raw-http.js';

/**
 * Item 4 and 5 of issue 12: every listener bounds request bodies before buffering them, and cuts
 * slow requests, idle connections and connections past its cap. Everything here goes through real
 * sockets on loopback, with the listeners' own limits made small so that nothing waits long.
 */

const MiB = 1024 * 1024;

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'intermission-http-limits-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function tcp(server: RunningServer): ListenAddress {
  return server.address;
}

/** The head of a request: request line and headers, ending with the blank line. */
function head(method: string, path: string, headers: Record<string, string | number>): string {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  return [`${method} ${path} HTTP/1.1`, 'Host: localhost', ...lines, '', ''].join('\r\n');
}

/**
 * Sends a chunked body in `chunkBytes` pieces, one flushed write at a time, until the server
 * answers (or closes) or `maxBytes` were sent; returns how many body bytes went out.
 */
async function trickleChunks(socket: Socket, answered: () => boolean, chunkBytes: number, maxBytes: number) {
  const piece = `${chunkBytes.toString(16)}\r\n${' '.repeat(chunkBytes)}\r\n`;
  let sent = 0;
  while (sent < maxBytes && !answered()) {
    if (!(await write(socket, piece))) break;
    sent += chunkBytes;
    await delay(1); // lets the server's answer arrive between two pieces
  }
  return sent;
}

describe('request bodies are bounded before they are buffered (issue 12, item 4)', () => {
  let world: ControlWorld;
  let server: RunningServer;
  before(async () => {
    world = await controlWorld();
    // The control API as `up` serves it: its default limits (1 MiB bodies).
    server = await serveFetch(world.app.fetch, { host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await server.close();
    await world.close();
  });

  it('control API: an authenticated POST declaring 200 MB gets 413 at once, without its body being read', async () => {
    const socket = await connectRaw(tcp(server));
    const t = record(socket, 2000);
    const started = performance.now();
    await write(
      socket,
      head('POST', '/v1/events', {
        ...world.auth,
        'Content-Type': 'application/json',
        'Content-Length': 200 * 1000 * 1000,
      }),
    );
    const res = await t.response;
    assert.equal(res.status, 413);
    assert.ok(performance.now() - started < 1000, 'answered without waiting for a body');
    assert.equal(res.headers.connection, 'close');
    const body = JSON.parse(res.body) as { error: { code: string; message: string; details: { limitBytes: number } } };
    assert.equal(body.error.code, 'PAYLOAD_TOO_LARGE');
    assert.equal(body.error.details.limitBytes, MiB);
    assert.match(body.error.message, /1048576 bytes/);
    await t.closed; // and the connection is closed
  });

  it('control API: a chunked body is counted as it streams in and cut with 413 once past the limit', async () => {
    const small = await serveFetch(
      world.app.fetch,
      { host: '127.0.0.1', port: 0 },
      { limits: { maxBodyBytes: 64 * 1024 } },
    );
    try {
      const socket = await connectRaw(tcp(small));
      const t = record(socket, 5000);
      await write(
        socket,
        head('POST', '/v1/events', {
          ...world.auth,
          'Content-Type': 'application/json',
          'Transfer-Encoding': 'chunked',
        }),
      );
      const sent = await trickleChunks(socket, () => t.text().length > 0, 8 * 1024, 8 * MiB);
      const res = await t.response;
      assert.equal(res.status, 413);
      assert.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, 'PAYLOAD_TOO_LARGE');
      assert.ok(sent < 512 * 1024, `the answer came as the limit was passed, not at the end (${sent} bytes sent)`);
      await t.closed;
    } finally {
      await small.close();
    }
  });

  it('control API: a body within the limit is served whole, declared or chunked', async () => {
    const small = await serveFetch(
      world.app.fetch,
      { host: '127.0.0.1', port: 0 },
      { limits: { maxBodyBytes: 64 * 1024 } },
    );
    try {
      const json = JSON.stringify({ type: 'Freeze', vms: ['web_0'], description: 'padded' });
      const padded = json + ' '.repeat(64 * 1024 - json.length); // exactly the limit
      for (const chunked of [false, true]) {
        const res = await fetch(`http://127.0.0.1:${(tcp(small) as { port: number }).port}/v1/events`, {
          method: 'POST',
          headers: { ...world.auth, 'content-type': 'application/json' },
          body: chunked ? new Blob([padded]).stream() : padded,
          ...(chunked ? { duplex: 'half' } : {}),
        });
        assert.equal(res.status, 201, await res.clone().text());
        const event = (await res.json()) as { eventId: string; description: string };
        assert.equal(event.description, 'padded');
        await world.service.cancel([event.eventId]);
      }
    } finally {
      await small.close();
    }
  });

  it('agent API: a PUT declaring 10 MB gets 413 at once', async () => {
    const fleet = parseFleet({ hosts: [{ name: 'h0' }], vms: [{ name: 'vm0', host: 'h0' }] });
    const agent = await startAgentRuntime({
      fleet,
      host: 'h0',
      stateDir: join(dir, 'agent'),
      listen: { host: '127.0.0.1', port: 0 },
      token: 'agent-token',
    });
    try {
      const socket = await connectRaw(agent.address);
      const t = record(socket, 2000);
      await write(
        socket,
        head('PUT', '/v1/steps/s1', {
          Authorization: 'Bearer agent-token',
          'Content-Type': 'application/json',
          'Content-Length': 10 * 1000 * 1000,
        }),
      );
      const res = await t.response;
      assert.equal(res.status, 413);
      assert.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, 'PAYLOAD_TOO_LARGE');
      await t.closed;
    } finally {
      await agent.close();
    }
  });

  it('metadata listener: an approval within the limit reaches the app whole, declared or chunked', async () => {
    const f = fixture();
    const listeners = await listenMetadata({
      app: f.app,
      bindings: [{ vm: 'as0_0', address: { host: '127.0.0.1', port: 0 } }],
    });
    try {
      const [binding] = listeners.addresses;
      assert.ok(binding && 'port' in binding.address);
      const a = f.backend.schedule({ type: 'Freeze', resources: ['as0_0'] });
      const b = f.backend.schedule({ type: 'Reboot', resources: ['as0_1'] });
      const port = binding.address.port;
      const declared = await http({ port, method: 'POST', path: SE_LATEST, body: startRequests(a.eventId) });
      assert.equal(declared.status, 200);
      const body = startRequests(b.eventId);
      const chunked = await http({ port, method: 'POST', path: SE_LATEST, body: [body.slice(0, 10), body.slice(10)] });
      assert.equal(chunked.status, 200);
      const approved = f.events.flatMap((e) => (e.name === 'imds:approve' ? e.payload.approved : []));
      assert.deepEqual(approved, [a.eventId, b.eventId]);
    } finally {
      await listeners.close();
    }
  });

  it('metadata listener: a body over 64 KiB gets the IMDS 413 and never a 100 Continue', async () => {
    const f = fixture();
    const listeners = await listenMetadata({
      app: f.app,
      bindings: [{ vm: 'as0_0', address: { host: '127.0.0.1', port: 0 } }],
    });
    try {
      const [binding] = listeners.addresses;
      assert.ok(binding);
      const socket = await connectRaw(binding.address);
      const t = record(socket, 2000);
      await write(socket, head('POST', SE_LATEST, { Metadata: 'true', Expect: '100-continue', 'Content-Length': MiB }));
      const res = await t.response;
      const { text } = await t.closed;
      assert.equal(res.status, 413, text);
      assert.deepEqual(JSON.parse(res.body), { error: 'Request body too large' });
      assert.doesNotMatch(text, /100 Continue/, 'the client is never invited to send the body');
    } finally {
      await listeners.close();
    }
  });
});

describe('the runtime passes its listeners their limits', () => {
  it('control API body limit, metadata connection cap and live streams per token, as configured', async () => {
    const fleet = parseFleet({ hosts: [{ name: 'h0' }], vms: [{ name: 'vm0', host: 'h0' }] });
    const runtime = await startMetadataRuntime({
      fleet,
      stateDir: join(dir, 'runtime'),
      control: { host: '127.0.0.1', port: 0 },
      bindings: [{ vm: 'vm0', address: { host: '127.0.0.1', port: 0 } }],
      httpLimits: { control: { maxBodyBytes: 1000 }, metadata: { maxConnections: 1 } },
      maxLiveStreamsPerToken: 1,
    });
    const open: Socket[] = [];
    try {
      assert.ok('port' in runtime.control);
      const base = `http://127.0.0.1:${runtime.control.port}`;
      const { token } = JSON.parse(await readFile(runtime.controlFile, 'utf8')) as { token: string };
      const auth = { authorization: `Bearer ${token}` };
      const big = await fetch(`${base}/v1/events`, { method: 'POST', headers: auth, body: ' '.repeat(1001) });
      assert.equal(big.status, 413);
      await big.body?.cancel();

      const stream = await fetch(`${base}/v1/stream`, { headers: auth });
      assert.equal(stream.status, 200);
      const second = await fetch(`${base}/v1/stream`, { headers: auth });
      assert.equal(second.status, 429);
      await second.body?.cancel();
      await stream.body?.cancel();

      const [binding] = runtime.metadata;
      assert.ok(binding);
      const first = await connectRaw(binding.address);
      open.push(first);
      const name = head('GET', '/metadata/instance/compute/name?api-version=2021-02-01&format=text', {
        Metadata: 'true',
      });
      assert.equal((await served(first, 2000, name)).body, 'vm0');
      const extra = await connectRaw(binding.address);
      const t = record(extra, 2000);
      await write(extra, name);
      assert.equal((await t.closed).text, '', 'a second connection to vm0 is refused');
    } finally {
      for (const s of open) s.destroy();
      await runtime.close();
    }
  });
});

describe('slow and idle connections are cut, and connections are capped (issue 12, item 5)', () => {
  const hello = (): Response => new Response('hello');

  it('a trickled body is cut within the request timeout', async () => {
    const server = await serveFetch(
      hello,
      { host: '127.0.0.1', port: 0 },
      { limits: { headersTimeoutMs: 100, requestTimeoutMs: 200 } },
    );
    try {
      const socket = await connectRaw(tcp(server));
      const t = record(socket, 3000);
      await write(socket, head('POST', '/', { 'Content-Length': 1000 }));
      void (async () => {
        while (await write(socket, 'x')) await delay(20);
      })();
      const { text, afterMs } = await t.closed;
      assert.match(text, /^HTTP\/1\.1 408 /, 'answered 408 Request Timeout');
      assert.ok(afterMs >= 150 && afterMs < 1000, `cut after ${Math.round(afterMs)} ms`);
    } finally {
      await server.close();
    }
  });

  it('headers that never end are cut within the headers timeout', async () => {
    const server = await serveFetch(
      hello,
      { host: '127.0.0.1', port: 0 },
      { limits: { headersTimeoutMs: 100, requestTimeoutMs: 1000 } },
    );
    try {
      const socket = await connectRaw(tcp(server));
      const t = record(socket, 3000);
      void (async () => {
        if (!(await write(socket, 'GET / HTTP/1.1\r\nHost: x\r\n'))) return;
        for (let i = 0; await write(socket, `X-${i}: y\r\n`); i++) await delay(20);
      })();
      const { text, afterMs } = await t.closed;
      assert.match(text, /^HTTP\/1\.1 408 /);
      assert.ok(afterMs >= 80 && afterMs < 800, `cut after ${Math.round(afterMs)} ms`);
    } finally {
      await server.close();
    }
  });

  it('a connection that never sends a request is cut at the headers timeout', async () => {
    const server = await serveFetch(
      hello,
      { host: '127.0.0.1', port: 0 },
      { limits: { headersTimeoutMs: 100, requestTimeoutMs: 200 } },
    );
    try {
      const t = record(await connectRaw(tcp(server)), 3000);
      const { text, afterMs } = await t.closed;
      assert.match(text, /^HTTP\/1\.1 408 /);
      assert.ok(afterMs >= 80 && afterMs < 800, `cut after ${Math.round(afterMs)} ms`);
    } finally {
      await server.close();
    }
  });

  it('an idle keep-alive connection is closed after the keep-alive timeout', async () => {
    const server = await serveFetch(hello, { host: '127.0.0.1', port: 0 }, { limits: { keepAliveTimeoutMs: 100 } });
    try {
      const socket = await connectRaw(tcp(server));
      const t = record(socket, 3000);
      await write(socket, head('GET', '/', {}));
      assert.equal((await t.response).body, 'hello');
      const answeredAt = performance.now();
      await t.closed;
      const idle = performance.now() - answeredAt;
      // Node closes keepAliveTimeout + 1 s after the response (a fixed buffer, so that a client
      // reusing the connection at the advertised timeout does not race the close).
      assert.ok(idle >= 100 && idle < 1800, `closed after ${Math.round(idle)} ms idle`);
    } finally {
      await server.close();
    }
  });

  it('past its connection cap a listener closes new connections at once, and takes them again when one closes', async () => {
    const server = await serveFetch(hello, { host: '127.0.0.1', port: 0 }, { limits: { maxConnections: 3 } });
    const open: Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const socket = await connectRaw(tcp(server));
        open.push(socket);
        assert.equal((await served(socket)).body, 'hello', `connection ${i + 1} is served`);
      }
      const extra = await connectRaw(tcp(server));
      const t = record(extra, 2000);
      await write(extra, head('GET', '/', {}));
      const { text, afterMs } = await t.closed;
      assert.equal(text, '', 'the fourth connection gets no answer');
      assert.ok(afterMs < 500, `and is closed at once (${Math.round(afterMs)} ms)`);

      const first = open.shift();
      first?.destroy();
      await until(async () => {
        const socket = await connectRaw(tcp(server));
        try {
          return (await served(socket, 500)).body === 'hello';
        } catch {
          return false;
        } finally {
          socket.destroy();
        }
      });
    } finally {
      for (const s of open) s.destroy();
      await server.close();
    }
  });

  it('the metadata cap is per VM: one VM at its cap leaves the others served', async () => {
    const f = fixture();
    const listeners = await listenMetadata({
      app: f.app,
      bindings: [
        { vm: 'as0_0', address: { host: '127.0.0.1', port: 0 } },
        { vm: 'as0_1', address: { host: '127.0.0.1', port: 0 } },
      ],
      limits: { maxConnections: 2 },
    });
    const open: Socket[] = [];
    try {
      const [a, b] = listeners.addresses;
      assert.ok(a && b);
      const name = head('GET', '/metadata/instance/compute/name?api-version=2021-02-01&format=text', {
        Metadata: 'true',
      });
      for (let i = 0; i < 2; i++) {
        const socket = await connectRaw(a.address);
        open.push(socket);
        assert.equal((await served(socket, 2000, name)).body, 'as0_0');
      }
      const extra = await connectRaw(a.address);
      const t = record(extra, 2000);
      await write(extra, name);
      assert.equal((await t.closed).text, '', 'a third connection to as0_0 is refused');
      const other = await connectRaw(b.address);
      try {
        assert.equal((await served(other, 2000, name)).body, 'as0_1', 'as0_1 is still served');
      } finally {
        other.destroy();
      }
    } finally {
      for (const s of open) s.destroy();
      await listeners.close();
    }
  });

  it('refuses limits that cannot work', async () => {
    await assert.rejects(serveFetch(hello, { host: '127.0.0.1', port: 0 }, { limits: { maxBodyBytes: 0 } }), {
      code: 'INVALID_INPUT',
      message: /maxBodyBytes/,
    });
    await assert.rejects(
      serveFetch(hello, { host: '127.0.0.1', port: 0 }, { limits: { headersTimeoutMs: 500, requestTimeoutMs: 100 } }),
      { code: 'INVALID_INPUT', message: /headersTimeoutMs/ },
    );
  });
});

/** Sends one keep-alive GET on `socket` and reads its response, leaving the connection open. */
function served(socket: Socket, timeoutMs = 2000, request = head('GET', '/', {})) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => done(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(text)?.[1];
      if (end >= 0 && length !== undefined && text.length >= end + 4 + Number(length)) {
        done(undefined, { status: Number(text.split(' ')[1]), body: text.slice(end + 4, end + 4 + Number(length)) });
      }
    };
    const onClose = (): void => done(new Error(`closed: ${JSON.stringify(text)}`));
    const done = (error?: Error, value?: { status: number; body: string }): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (error) reject(error);
      else if (value) resolve(value);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(request);
  });
}

/** Retries `check` every 10 ms until it holds; fails after 2 s. */
async function until(check: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + 2000;
  while (!(await check())) {
    assert.ok(performance.now() < deadline, 'the condition never held');
    await delay(10);
  }
}
