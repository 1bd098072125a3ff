/**
 * The clients against the real programs: qemu-system-x86_64 (no guest: `-machine none -S`, so it
 * starts in milliseconds) with two QMP monitors, and the host's qemu-ga listening on a unix
 * socket (a real guest-agent peer without a guest; every RPC that could change the host is
 * blocked, and guest-set-time is never called). Tests against a booted guest come with the driver.
 *
 * Missing binaries skip with a reason, except under CI (env CI set), where they fail.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GuestAgentClient, QMP_DIAGNOSTICS_CHANNELS, QmpClient, type QmpEvent } from '../../src/qmp/index.js';
import { asRecord, recordChannel, rejectsWith, within } from './helpers.js';
import { listGuestAgentRpcs, requireExecutable, skipUnlessInstalled, startPeer, type RealPeer } from './real-peers.js';

/** Takes the next event of an iterator, failing the test if none comes in time. */
async function nextEvent(events: AsyncIterator<QmpEvent>, what: string): Promise<QmpEvent> {
  const next = await within(events.next(), 5000, what);
  assert.ok(next.done !== true, `${what}: the event stream ended`);
  return next.value;
}

void describe(
  'QMP against a real QEMU with two monitors',
  { skip: skipUnlessInstalled('qemu-system-x86_64', 'qemu-system-x86') },
  () => {
    let dir: string;
    let qemu: RealPeer;
    let a: QmpClient;
    let b: QmpClient;

    before(async () => {
      const binary = requireExecutable('qemu-system-x86_64', 'qemu-system-x86');
      dir = mkdtempSync(join(tmpdir(), 'qmp-real-'));
      const sockets = [join(dir, 'a.sock'), join(dir, 'b.sock')];
      qemu = await startPeer(
        binary,
        [
          ['-machine', 'none'],
          ['-nodefaults', '-display', 'none', '-S'],
          ['-name', 'intermission-qmp-test'],
          ...sockets.map((socket) => ['-qmp', `unix:${socket},server=on,wait=off`]),
        ].flat(),
        sockets,
      );
      a = await QmpClient.connect({ path: join(dir, 'a.sock'), timeoutMs: 5000 });
      b = await QmpClient.connect({ path: join(dir, 'b.sock'), timeoutMs: 5000 });
    });

    after(async () => {
      await a?.close();
      await b?.close();
      await qemu?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    void it('negotiates on both monitors; query-version agrees with the greeting', async () => {
      const version = await a.execute('query-version');
      assert.deepEqual(version.qemu, a.greeting.version.qemu);
      assert.deepEqual(b.greeting.version, a.greeting.version);
      assert.ok(version.qemu.major >= 7, JSON.stringify(version));
    });

    void it('reads status, name, vCPUs and HMP output', async () => {
      const status = await a.execute('query-status');
      assert.equal(status.status, 'prelaunch');
      assert.equal(status.running, false);
      assert.deepEqual(await b.execute('query-name'), { name: 'intermission-qmp-test' });
      assert.deepEqual(await a.execute('query-cpus-fast'), [], '-machine none has no vCPUs');
      assert.match(await a.execute('human-monitor-command', { 'command-line': 'info status' }), /VM status: paused/);
      assert.deepEqual(await a.execute('query-migrate'), {});
    });

    void it('cont and stop emit RESUME and STOP on both monitors, with the same timestamps', async () => {
      const onA = a.events({ names: ['STOP', 'RESUME'] });
      const onB = b.events({ names: ['STOP', 'RESUME'] });
      const emitted: string[] = [];
      b.on('RESUME', (event) => emitted.push(`${event.name}@${event.timestampMs}`));
      b.on('STOP', (event) => emitted.push(`${event.name}@${event.timestampMs}`));

      await a.execute('cont');
      const resumedA = await nextEvent(onA, 'RESUME on a');
      const resumedB = await nextEvent(onB, 'RESUME on b');
      assert.equal((await b.execute('query-status')).status, 'running');

      await b.execute('stop');
      const stoppedA = await nextEvent(onA, 'STOP on a');
      const stoppedB = await nextEvent(onB, 'STOP on b');
      assert.equal((await a.execute('query-status')).status, 'paused');

      assert.deepEqual(
        [resumedA.name, resumedB.name, stoppedA.name, stoppedB.name],
        ['RESUME', 'RESUME', 'STOP', 'STOP'],
      );
      assert.deepEqual(resumedA.timestamp, resumedB.timestamp);
      assert.deepEqual(stoppedA.timestamp, stoppedB.timestamp);
      const pausedAfterMs = stoppedA.timestampMs - resumedA.timestampMs;
      assert.ok(pausedAfterMs > 0 && pausedAfterMs < 5000, `RESUME→STOP ${pausedAfterMs} ms`);
      assert.ok(Math.abs(resumedA.timestampMs - Date.now()) < 60_000, 'timestamps are wall-clock ms');
      assert.deepEqual(emitted, [`RESUME@${resumedB.timestampMs}`, `STOP@${stoppedB.timestampMs}`]);
      await onA.return();
      await onB.return();
    });

    void it('maps real QEMU errors by class', async () => {
      await rejectsWith(a.executeRaw('no-such-command'), 'NOT_FOUND', { qmpClass: 'CommandNotFound' });
      await rejectsWith(a.execute('migrate-incoming', { uri: `unix:${join(dir, 'mig.sock')}` }), 'CONFLICT', {
        qmpClass: 'GenericError',
        reason: 'COMMAND_ERROR',
        command: 'migrate-incoming',
      });
      await rejectsWith(a.execute('migrate', { uri: 'bogus:nowhere' }), 'CONFLICT', { qmpClass: 'GenericError' });
      assert.equal((await a.execute('query-status')).status, 'paused', 'errors leave the connection usable');
    });

    void it('matches 20 pipelined commands to their replies', async () => {
      const results = await Promise.all(
        Array.from({ length: 20 }, (_unused, index) =>
          index % 2 === 0 ? a.execute('query-status') : a.execute('query-name'),
        ),
      );
      results.forEach((result, index) => {
        if (index % 2 === 0) assert.ok('status' in result, JSON.stringify(result));
        else assert.deepEqual(result, { name: 'intermission-qmp-test' });
      });
    });

    void it('gets no greeting on a socket another client holds (QEMU serves one client per socket)', async () => {
      await rejectsWith(QmpClient.connect({ path: join(dir, 'a.sock'), timeoutMs: 300 }), 'TIMEOUT', {
        phase: 'greeting',
      });
      assert.equal((await a.execute('query-status')).status, 'paused', 'the holder is unaffected');
    });

    void it('quit answers, emits SHUTDOWN on both monitors, closes both as expected, and QEMU exits 0', async () => {
      const onB = b.events();
      const closes = recordChannel(QMP_DIAGNOSTICS_CHANNELS.close);
      try {
        await a.execute('quit');
        const shutdown = await nextEvent(onB, 'SHUTDOWN on b');
        assert.ok(shutdown.known && shutdown.name === 'SHUTDOWN');
        assert.deepEqual(shutdown.data, { guest: false, reason: 'host-qmp-quit' });
        assert.deepEqual(await within(onB.next(), 5000, 'end of b events'), { done: true, value: undefined });
        assert.equal(await within(qemu.exited, 5000, 'QEMU exit'), 0);
        await within(
          (async () => {
            while (!a.closed || !b.closed) await new Promise((resolve) => setTimeout(resolve, 5));
          })(),
          5000,
          'both clients closed',
        );
        assert.deepEqual(a.closeInfo, { expected: true });
        assert.deepEqual(b.closeInfo, { expected: true }, 'b saw SHUTDOWN before the hang-up');
        const mine = closes.messages
          .map(asRecord)
          .filter((m) => m.connectionId === a.connectionId || m.connectionId === b.connectionId);
        assert.deepEqual(
          mine.map((message) => message.expected),
          [true, true],
        );
      } finally {
        closes.stop();
      }
    });
  },
);

void describe(
  'guest agent against the host qemu-ga on a unix socket',
  { skip: skipUnlessInstalled('qemu-ga', 'qemu-guest-agent') },
  () => {
    const allowed = new Set(['guest-sync', 'guest-sync-delimited', 'guest-ping', 'guest-get-time', 'guest-info']);
    let dir: string;
    let agent: RealPeer;
    let client: GuestAgentClient;

    before(async () => {
      const binary = requireExecutable('qemu-ga', 'qemu-guest-agent');
      const blocked = listGuestAgentRpcs(binary).filter((rpc) => !allowed.has(rpc));
      assert.ok(blocked.includes('guest-set-time') && blocked.includes('guest-exec'), `RPC list: ${blocked.join(',')}`);
      dir = mkdtempSync(join(tmpdir(), 'qga-real-'));
      const socket = join(dir, 'qga.sock');
      agent = await startPeer(
        binary,
        ['-m', 'unix-listen', '-p', socket, '-f', join(dir, 'qga.pid'), '-t', dir, '-b', blocked.join(',')],
        [socket],
      );
      client = new GuestAgentClient({ path: socket, timeoutMs: 5000 });
    });

    after(async () => {
      await client?.close();
      await agent?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    void it('syncs past the parse error that its 0xFF flush provokes, then pings', async () => {
      const stale = recordChannel(QMP_DIAGNOSTICS_CHANNELS.agentStale);
      try {
        const { roundTripMs } = await client.ping();
        assert.ok(roundTripMs >= 0 && roundTripMs < 1000);
        const lines = stale.messages.map(asRecord).map((message) => String(message.line));
        assert.equal(lines.length, 1, lines.join('\n'));
        assert.match(lines[0] ?? '', /GenericError/);
      } finally {
        stale.stop();
      }
    });

    void it('reads the (host) clock in ms, with a small offset', async () => {
      const reading = await client.getTime();
      assert.ok(Math.abs(reading.offsetMs) < reading.roundTripMs / 2 + 5, JSON.stringify(reading));
    });

    void it('reports its commands; the blocked guest-set-time is disabled', async () => {
      const { info } = await client.info();
      assert.match(info.version, /^\d+\.\d+/);
      const setTime = info.supported_commands.find((command) => command.name === 'guest-set-time');
      assert.equal(setTime?.enabled, false);
      assert.equal(info.supported_commands.find((command) => command.name === 'guest-get-time')?.enabled, true);
    });
  },
);
