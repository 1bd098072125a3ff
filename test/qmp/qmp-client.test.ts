import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { IntermissionError } from '../../src/domain/index.js';
import {
  QMP_DIAGNOSTICS_CHANNELS,
  QmpClient,
  type QmpCloseInfo,
  type QmpConnectOptions,
  type QmpEvent,
} from '../../src/qmp/index.js';
import { FakeQmpError, FakeQmpServer, NO_REPLY, type FakeQmpServerOptions } from './fake-qmp-server.js';
import { asRecord, deferred, recordChannel, rejectsWith, within } from './helpers.js';

/** A fake server and a connected client, both torn down after the test. */
async function setup(
  t: TestContext,
  serverOptions: FakeQmpServerOptions = {},
  clientOptions: Partial<QmpConnectOptions> = {},
): Promise<{ server: FakeQmpServer; client: QmpClient }> {
  const server = await FakeQmpServer.start(serverOptions);
  t.after(() => server.close());
  const client = await QmpClient.connect({ path: server.path, timeoutMs: 2000, ...clientOptions });
  t.after(() => client.close());
  return { server, client };
}

void describe('QmpClient handshake', () => {
  void it('reads the greeting, negotiates capabilities first, then runs commands', async (t) => {
    const { server, client } = await setup(t);
    assert.deepEqual(client.greeting.version.qemu, { major: 7, minor: 2, micro: 0 });
    assert.deepEqual(client.greeting.capabilities, ['oob']);
    assert.equal(server.calls[0]?.command, 'qmp_capabilities');
    assert.equal(server.calls[0]?.args, undefined, 'no capability (oob) is enabled');
    const version = await client.execute('query-version');
    assert.equal(version.package, 'fake-qmp');
    const status = await client.execute('query-status');
    assert.deepEqual({ running: status.running, status: status.status }, { running: true, status: 'running' });
  });

  void it('times out with advice when another client holds the socket, and connects once it is free', async (t) => {
    const { server, client } = await setup(t);
    const started = performance.now();
    const error = await rejectsWith(QmpClient.connect({ path: server.path, timeoutMs: 150 }), 'TIMEOUT', {
      reason: 'TIMEOUT',
      phase: 'greeting',
    });
    assert.ok(performance.now() - started < 1000);
    assert.match(error.message, /one client per QMP socket/);
    await client.close();
    const second = await QmpClient.connect({ path: server.path, timeoutMs: 2000 });
    t.after(() => second.close());
    assert.equal((await second.execute('query-status')).status, 'running');
  });

  void it('reports a missing socket as UNREACHABLE with the errno', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qmp-missing-'));
    try {
      await rejectsWith(QmpClient.connect({ path: join(dir, 'nothing.sock'), timeoutMs: 500 }), 'UNREACHABLE', {
        reason: 'CONNECT_FAILED',
        errno: 'ENOENT',
        phase: 'connect',
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  void it('rejects a peer that does not greet with QMP', async (t) => {
    const server = await FakeQmpServer.start({ greeting: { hello: 'not qmp' } });
    t.after(() => server.close());
    const error = await rejectsWith(QmpClient.connect({ path: server.path, timeoutMs: 1000 }), 'UNREACHABLE', {
      reason: 'PROTOCOL',
    });
    assert.equal(error.retryable, false);
  });

  void it('honours an abort signal during the handshake', async (t) => {
    const server = await FakeQmpServer.start({ greeting: null });
    t.after(() => server.close());
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    await rejectsWith(QmpClient.connect({ path: server.path, timeoutMs: 5000, signal: controller.signal }), 'TIMEOUT', {
      reason: 'ABORTED',
    });
  });
});

void describe('QmpClient commands', () => {
  void it('matches replies to commands by id when they arrive out of order', async (t) => {
    const { server, client } = await setup(t);
    const answers = new Map(['a', 'b', 'c'].map((key) => [key, deferred<string>()]));
    server.handle('human-monitor-command', (call) => answers.get(String(call.args?.['command-line']))?.promise);
    const pending = ['a', 'b', 'c'].map((key) => client.execute('human-monitor-command', { 'command-line': key }));
    // Let all three reach the server, then answer them in the order c, a, b.
    while (server.calls.filter((call) => call.command === 'human-monitor-command').length < 3) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    for (const key of ['c', 'a', 'b']) answers.get(key)?.resolve(`output of ${key}`);
    assert.deepEqual(await Promise.all(pending), ['output of a', 'output of b', 'output of c']);
    const ids = server.calls.map((call) => call.id);
    assert.equal(new Set(ids).size, ids.length, 'every command carries its own id');
  });

  void it('maps every QMP error class in one place, keeping class and desc in details', async (t) => {
    const { server, client } = await setup(t);
    const table = [
      ['GenericError', 'CONFLICT'],
      ['CommandNotFound', 'NOT_FOUND'],
      ['DeviceNotActive', 'CONFLICT'],
      ['DeviceNotFound', 'NOT_FOUND'],
      ['KVMMissingCap', 'CONFLICT'],
      ['SomeFutureClass', 'CONFLICT'],
    ] as const;
    for (const [qmpClass, code] of table) {
      server.handle('migrate', () => {
        throw new FakeQmpError(qmpClass, `desc of ${qmpClass}`);
      });
      const error = await rejectsWith(client.execute('migrate', { uri: 'unix:/nowhere' }), code, {
        reason: 'COMMAND_ERROR',
        peer: 'qmp',
        command: 'migrate',
        outcome: 'rejected',
        qmpClass,
        qmpDesc: `desc of ${qmpClass}`,
      });
      assert.equal(error.retryable, false);
      assert.ok(error instanceof IntermissionError);
    }
    await rejectsWith(client.executeRaw('no-such-command'), 'NOT_FOUND', { qmpClass: 'CommandNotFound' });
  });

  void it('rejects an answer of the wrong shape as PROTOCOL, with outcome executed', async (t) => {
    const { server, client } = await setup(t);
    server.handle('query-status', () => ({ running: 'yes' }));
    await rejectsWith(client.execute('query-status'), 'UNREACHABLE', { reason: 'PROTOCOL', outcome: 'executed' });
    assert.equal((await client.execute('query-name')).name, 'fake-vm', 'the connection is still usable');
  });

  void it('times out one command, drops its late reply, and keeps working', async (t) => {
    const { server, client } = await setup(t);
    const slow = deferred<Record<string, never>>();
    server.handle('system_reset', () => slow.promise);
    const strays = recordChannel(QMP_DIAGNOSTICS_CHANNELS.stray);
    t.after(() => strays.stop());
    const started = performance.now();
    await rejectsWith(client.execute('system_reset', undefined, { timeoutMs: 60 }), 'TIMEOUT', {
      reason: 'TIMEOUT',
      outcome: 'unknown',
      timeoutMs: 60,
      command: 'system_reset',
    });
    assert.ok(performance.now() - started < 1000);
    slow.resolve({});
    assert.equal((await client.execute('query-status')).status, 'running');
    assert.deepEqual(
      strays.messages.map((message) => asRecord(message).kind),
      ['late'],
      'the late reply is reported, not matched to another command',
    );
  });

  void it('stops waiting when the command signal aborts, passing an IntermissionError reason through', async (t) => {
    const { server, client } = await setup(t);
    server.handle('migrate_cancel', () => NO_REPLY);
    const plain = new AbortController();
    const first = rejectsWith(client.execute('migrate_cancel', undefined, { signal: plain.signal }), 'TIMEOUT', {
      reason: 'ABORTED',
      outcome: 'unknown',
    });
    plain.abort();
    await first;
    const own = new AbortController();
    const second = rejectsWith(
      client.execute('migrate_cancel', undefined, { signal: own.signal }),
      'PAUSE_BUDGET_EXCEEDED',
    );
    own.abort(new IntermissionError('PAUSE_BUDGET_EXCEEDED', 'budget spent'));
    await second;
    await rejectsWith(client.execute('query-status', undefined, { signal: own.signal }), 'PAUSE_BUDGET_EXCEEDED');
  });

  void it('survives an id-less error (QEMU parse error), garbage, and lines split mid-character', async (t) => {
    const { server, client } = await setup(t);
    server.handle('human-monitor-command', () => NO_REPLY);
    const strays = recordChannel(QMP_DIAGNOSTICS_CHANNELS.stray);
    t.after(() => strays.stop());
    const call = server.waitForCall('human-monitor-command');
    const result = client.execute('human-monitor-command', { 'command-line': 'info name' });
    const { id } = await call;
    server.sendRaw('{"error": {"class": "GenericError", "desc": "JSON parse error"}}\r\nnot json at all\r\n');
    const reply = Buffer.from(`{"return": "h\u00e9llo \u2713", "id": ${JSON.stringify(id)}}\r\n`);
    const cut = reply.indexOf(0xc3) + 1; // inside the two-byte é
    server.sendRaw(reply.subarray(0, cut));
    await new Promise((resolve) => setTimeout(resolve, 20));
    server.sendRaw(reply.subarray(cut, cut + 9));
    await new Promise((resolve) => setTimeout(resolve, 20));
    server.sendRaw(reply.subarray(cut + 9));
    assert.equal(await result, 'h\u00e9llo \u2713');
    assert.deepEqual(
      strays.messages.map((message) => asRecord(message).kind),
      ['unmatched', 'invalid'],
    );
  });
});

void describe('QmpClient events', () => {
  void it('delivers events interleaved with replies, in order, to the emitter and to iterators', async (t) => {
    const { server, client } = await setup(t);
    const all = client.events();
    const stops = client.events({ names: ['STOP'] });
    const emitted: string[] = [];
    client.on('event', (event) => emitted.push(event.name));
    const typedStops: number[] = [];
    client.on('STOP', (event) => typedStops.push(event.timestampMs));
    const migrating = deferred<Record<string, never>>();
    server.handle('migrate', (_call, fake) => {
      fake.emitEvent('MIGRATION', { status: 'setup' });
      return migrating.promise;
    });
    const migrate = client.execute('migrate', { uri: 'unix:/tmp/x' });
    await client.execute('stop'); // STOP is emitted before stop's reply; migrate is still pending
    server.emitEvent('MIGRATION', { status: 'completed' }, { seconds: 1795316487, microseconds: 19285 });
    server.emitEvent('VSERPORT_CHANGE', { id: 'qga0', open: true });
    server.emitEvent('MIGRATION', { state: 'renamed-member' });
    migrating.resolve({});
    await migrate;

    const names: string[] = [];
    const seen: QmpEvent[] = [];
    for (let index = 0; index < 5; index += 1) {
      const next = await within(all.next(), 1000, `event ${index}`);
      assert.ok(next.done !== true, `event ${index}: the stream ended`);
      names.push(next.value.name);
      seen.push(next.value);
    }
    assert.deepEqual(names, ['MIGRATION', 'STOP', 'MIGRATION', 'VSERPORT_CHANGE', 'MIGRATION']);
    assert.deepEqual(emitted, names);
    const completed = seen[2];
    assert.ok(completed?.known === true && completed.name === 'MIGRATION');
    assert.equal(completed.data.status, 'completed');
    assert.deepEqual(completed.timestamp, { seconds: 1795316487, microseconds: 19285 });
    assert.equal(completed.timestampMs, 1795316487 * 1000 + 19285 / 1000);
    assert.equal(Math.round((completed.timestampMs - 1795316487019) * 1000), 285, 'microseconds survive');
    assert.equal(seen[3]?.known, false, 'unmodelled events are delivered as unknown');
    assert.equal(seen[4]?.known, false, 'a modelled event with unexpected data is delivered as unknown');

    const stop = await within(stops.next(), 1000, 'STOP on the filtered iterator');
    assert.equal(stop.done !== true && stop.value.name, 'STOP');
    assert.equal(typedStops.length, 1);
    await all.return();
    await stops.return();
  });

  void it('ends iterators with an error when the connection drops mid-command', async (t) => {
    const { server, client } = await setup(t);
    server.handle('cont', () => NO_REPLY);
    const events = client.events();
    const closes: QmpCloseInfo[] = [];
    client.on('close', (info) => closes.push(info));
    const call = server.waitForCall('cont');
    const pending = rejectsWith(client.execute('cont'), 'UNREACHABLE', {
      reason: 'CONNECTION_LOST',
      outcome: 'unknown',
      command: 'cont',
    });
    await call;
    const nextEvent = rejectsWith(events.next(), 'UNREACHABLE', { reason: 'CONNECTION_LOST' });
    server.dropConnections();
    await pending;
    await nextEvent;
    assert.equal(client.closed, true);
    assert.equal(closes.length, 1);
    assert.equal(closes[0]?.expected, false);
    await rejectsWith(client.execute('query-status'), 'UNREACHABLE', {
      reason: 'CONNECTION_LOST',
      outcome: 'not-sent',
    });
  });

  void it('ends iterators quietly after quit, when QEMU hangs up as announced', async (t) => {
    const { client } = await setup(t);
    const events = client.events();
    await client.execute('quit');
    const shutdown = await within(events.next(), 1000, 'SHUTDOWN');
    assert.ok(shutdown.done !== true && shutdown.value.known && shutdown.value.name === 'SHUTDOWN');
    assert.equal(shutdown.value.data.reason, 'host-qmp-quit');
    assert.deepEqual(await within(events.next(), 1000, 'end of events'), { done: true, value: undefined });
    assert.deepEqual(client.closeInfo, { expected: true });
  });

  void it('ends a subscriber that stops reading once its buffer is full', async (t) => {
    const { server, client } = await setup(t, {}, { maxBufferedEvents: 3 });
    const lagging = client.events();
    const reader = client.events();
    for (let index = 0; index < 5; index += 1) server.emitEvent('RTC_CHANGE', { offset: index });
    for (let index = 0; index < 5; index += 1) await within(reader.next(), 1000, `event ${index}`);
    for (let index = 0; index < 3; index += 1) {
      const next = await lagging.next();
      assert.ok(next.done !== true && next.value.known && next.value.name === 'RTC_CHANGE');
      assert.equal(next.value.data.offset, index);
    }
    await rejectsWith(lagging.next(), 'INTERNAL', { reason: 'OVERFLOW' });
    await reader.return();
  });

  void it('throws the abort error from an iterator whose signal fires', async (t) => {
    const { client } = await setup(t);
    const controller = new AbortController();
    const events = client.events({ signal: controller.signal });
    const next = rejectsWith(events.next(), 'TIMEOUT', { reason: 'ABORTED' });
    controller.abort();
    await next;
  });
});

void describe('QmpClient close', () => {
  void it('is idempotent, rejects commands in flight and after, and ends iterators quietly', async (t) => {
    const { server, client } = await setup(t);
    server.handle('stop', () => NO_REPLY);
    const closes: QmpCloseInfo[] = [];
    client.on('close', (info) => closes.push(info));
    const events = client.events();
    const call = server.waitForCall('stop');
    const inFlight = rejectsWith(client.execute('stop'), 'UNREACHABLE', { reason: 'CLOSED', outcome: 'unknown' });
    await call;
    const first = client.close();
    assert.equal(client.close(), first, 'the same promise');
    await first;
    await client.close();
    assert.equal((await inFlight).retryable, false);
    await rejectsWith(client.execute('cont'), 'UNREACHABLE', { reason: 'CLOSED', outcome: 'not-sent' });
    assert.deepEqual(await events.next(), { done: true, value: undefined });
    assert.deepEqual(closes, [{ expected: true }]);
  });
});

void describe('QmpClient diagnostics', () => {
  void it('publishes connection, command and event messages with timings', async (t) => {
    const channels = Object.fromEntries(
      (['connected', 'command', 'commandResult', 'commandError', 'event', 'close'] as const).map((key) => [
        key,
        recordChannel(QMP_DIAGNOSTICS_CHANNELS[key]),
      ]),
    );
    t.after(() => Object.values(channels).forEach((channel) => channel.stop()));
    const { client } = await setup(t);
    await client.execute('stop');
    await rejectsWith(client.executeRaw('nope'), 'NOT_FOUND');
    await client.close();

    const mine = (key: string): Record<string, unknown>[] =>
      (channels[key]?.messages ?? []).map(asRecord).filter((message) => message.connectionId === client.connectionId);
    const [connected] = mine('connected');
    assert.ok(connected && typeof connected.durationMs === 'number' && connected.durationMs >= 0);
    assert.deepEqual(
      mine('command').map((message) => message.command),
      ['qmp_capabilities', 'stop', 'nope'],
    );
    const results = mine('commandResult');
    assert.deepEqual(
      results.map((message) => message.command),
      ['qmp_capabilities', 'stop'],
    );
    assert.ok(results.every((message) => typeof message.durationMs === 'number' && message.durationMs >= 0));
    const [failed] = mine('commandError');
    assert.equal(failed?.command, 'nope');
    assert.ok(failed?.error instanceof IntermissionError && failed.error.code === 'NOT_FOUND');
    assert.deepEqual(
      mine('event').map((message) => asRecord(message.event).name),
      ['STOP'],
    );
    assert.deepEqual(
      mine('close').map((message) => message.expected),
      [true],
    );
  });
});
