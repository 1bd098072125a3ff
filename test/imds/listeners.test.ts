import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { IntermissionError } from '../../src/domain/index.js';
import { listenMetadata } from '../../src/imds/index.js';
import { META, SE_LATEST, fixture, http, serve } from './helpers.js';

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'imds-listeners-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const NAME_PATH = '/metadata/instance/compute/name?api-version=2021-02-01&format=text';

void describe('listenMetadata', () => {
  void test('one server per binding, each speaking as its own VM; the Host header changes nothing', async () => {
    const f = fixture();
    const s = await serve(f.app, ['as0_0', 'as1_2', 'solo0_0']);
    try {
      assert.equal(new Set(s.listeners.addresses.map((b) => ('port' in b.address ? b.address.port : 0))).size, 3);
      for (const vm of ['as0_0', 'as1_2', 'solo0_0']) {
        const res = await http({ port: s.port(vm), path: NAME_PATH, headers: { ...META, Host: 'as0_0' } });
        assert.equal(res.body, vm);
      }
    } finally {
      await s.listeners.close();
    }
  });

  void test('unix sockets: served, then removed on close', async () => {
    const f = fixture();
    const path = join(dir, 'vm.sock');
    const listeners = await listenMetadata({ app: f.app, bindings: [{ vm: 'as0_2', address: { path } }] });
    try {
      assert.deepEqual(listeners.addresses, [{ vm: 'as0_2', address: { path } }]);
      const res = await http({ socketPath: path, path: NAME_PATH });
      assert.equal(res.status, 200);
      assert.equal(res.body, 'as0_2');
    } finally {
      await listeners.close();
    }
    assert.equal(existsSync(path), false);
  });

  void test('a stale socket file is replaced; a live socket or a regular file is refused', async () => {
    const f = fixture();
    const stale = join(dir, 'stale.sock');
    // A process that dies without cleaning up leaves its socket file behind.
    const child = spawn(process.execPath, [
      '-e',
      "require('net').createServer().listen(process.argv[1], () => process.stdout.write('up'))",
      stale,
    ]);
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    assert.equal(existsSync(stale), true);
    const listeners = await listenMetadata({ app: f.app, bindings: [{ vm: 'as0_0', address: { path: stale } }] });
    try {
      assert.equal((await http({ socketPath: stale, path: NAME_PATH })).body, 'as0_0');
      await assert.rejects(
        listenMetadata({ app: f.app, bindings: [{ vm: 'as0_1', address: { path: stale } }] }),
        (e: unknown) => e instanceof IntermissionError && e.code === 'CONFLICT',
      );
      assert.equal((await http({ socketPath: stale, path: NAME_PATH })).body, 'as0_0', 'the live server is untouched');
    } finally {
      await listeners.close();
    }

    const file = join(dir, 'not-a-socket');
    await writeFile(file, 'keep me');
    await assert.rejects(
      listenMetadata({ app: f.app, bindings: [{ vm: 'as0_0', address: { path: file } }] }),
      (e: unknown) => e instanceof IntermissionError && e.code === 'INVALID_INPUT',
    );
    assert.equal(await readFile(file, 'utf8'), 'keep me');
  });

  void test('an address in use: CONFLICT, and the servers already started are closed again', async () => {
    const f = fixture();
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const info = blocker.address();
    assert.ok(info !== null && typeof info === 'object');
    const firstPath = join(dir, 'first.sock');
    try {
      await assert.rejects(
        listenMetadata({
          app: f.app,
          bindings: [
            { vm: 'as0_0', address: { path: firstPath } },
            { vm: 'as0_1', address: { host: '127.0.0.1', port: info.port } },
          ],
        }),
        (e: unknown) => e instanceof IntermissionError && e.code === 'CONFLICT' && /as0_1/.test(e.message),
      );
      assert.equal(existsSync(firstPath), false, 'the first listener was closed');
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  void test('bad bindings are refused', async () => {
    const f = fixture();
    for (const bindings of [
      [{ vm: '', address: { host: '127.0.0.1', port: 0 } }],
      [{ vm: 'as0_0', address: { host: '127.0.0.1', port: 70000 } }],
    ]) {
      await assert.rejects(
        listenMetadata({ app: f.app, bindings }),
        (e: unknown) => e instanceof IntermissionError && e.code === 'INVALID_INPUT',
      );
    }
  });

  void test('keep-alive connections are reused, and close() ends idle ones at once', async () => {
    const f = fixture();
    const s = await serve(f.app, ['as0_0']);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const sockets: Socket[] = [];
      agent.on('free', (socket: Socket) => {
        if (!sockets.includes(socket)) sockets.push(socket);
      });
      for (let i = 0; i < 3; i++) {
        const res = await http({ port: s.port('as0_0'), path: SE_LATEST, agent });
        assert.equal(res.status, 200);
        assert.equal(res.headers.connection, 'keep-alive');
      }
      assert.equal(sockets.length, 1, 'one connection carried all three requests');
      const socket = sockets[0];
      assert.ok(socket !== undefined);
      // The agent unrefs pooled sockets; hold the loop open until the server has closed this one.
      socket.ref();
      const closedByServer = new Promise((resolve) => socket.once('close', resolve));
      const started = performance.now();
      await s.listeners.close();
      await closedByServer;
      assert.ok(performance.now() - started < 1000, 'close() did not wait for the keep-alive timeout');
      await s.listeners.close();
    } finally {
      agent.destroy();
    }
  });

  void test('close() lets an in-flight request finish with Connection: close', async () => {
    const f = fixture({ enablementDelayMs: 150 });
    const s = await serve(f.app, ['as0_0']);
    const agent = new Agent({ keepAlive: true });
    try {
      const inFlight = new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        const sent = request(
          { host: '127.0.0.1', port: s.port('as0_0'), path: SE_LATEST, headers: META, agent },
          (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
          },
        );
        sent.on('error', reject);
        sent.end();
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const closing = s.listeners.close();
      const res = await inFlight;
      await closing;
      assert.deepEqual(res, { status: 200, connection: 'close' });
    } finally {
      agent.destroy();
    }
  });

  void test('a declared Content-Length over the bound is refused before any body is sent', async () => {
    const f = fixture({ maxBodyBytes: 1024 });
    const s = await serve(f.app, ['as0_0']);
    try {
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = connect(s.port('as0_0'), '127.0.0.1');
        let data = '';
        socket.setEncoding('utf8');
        socket.setTimeout(2000, () => reject(new Error(`no answer without the body; got ${JSON.stringify(data)}`)));
        socket.on('data', (chunk: string) => (data += chunk));
        socket.on('close', () => resolve(data));
        socket.on('error', reject);
        // Headers only: the 100 kB body never comes, so only the up-front check can answer.
        socket.write(`POST ${SE_LATEST} HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nContent-Length: 100000\r\n\r\n`);
      });
      assert.match(raw, /^HTTP\/1\.1 413 Payload Too Large\r\n/);
      assert.match(raw, /\r\nConnection: close\r\n/i);
      assert.ok(raw.endsWith('{"error":"Request body too large"}'), raw);
    } finally {
      await s.listeners.close();
    }
  });

  void test('an HTTP/1.0 request without a Host header is answered', async () => {
    const f = fixture();
    const s = await serve(f.app, ['as0_0']);
    try {
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = connect(s.port('as0_0'), '127.0.0.1');
        let data = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => (data += chunk));
        socket.on('end', () => resolve(data));
        socket.on('error', reject);
        socket.write(`GET ${SE_LATEST} HTTP/1.0\r\nMetadata: true\r\n\r\n`);
      });
      assert.match(raw, /^HTTP\/1\.1 200 OK\r\n/);
      assert.ok(raw.endsWith('\r\n\r\n{"DocumentIncarnation":1,"Events":[]}'), raw);
    } finally {
      await s.listeners.close();
    }
  });
});
