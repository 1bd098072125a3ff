import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { GuestAgentClient, QMP_DIAGNOSTICS_CHANNELS, type GuestAgentClientOptions } from '../../src/qmp/index.js';
import { FakeGuestAgent, type FakeGuestAgentOptions } from './fake-guest-agent.js';
import { asRecord, recordChannel, rejectsWith } from './helpers.js';

async function setup(
  t: TestContext,
  agentOptions: FakeGuestAgentOptions = {},
  clientOptions: Partial<GuestAgentClientOptions> = {},
): Promise<{ agent: FakeGuestAgent; client: GuestAgentClient }> {
  const agent = await FakeGuestAgent.start(agentOptions);
  t.after(() => agent.close());
  const client = new GuestAgentClient({ path: agent.path, timeoutMs: 2000, ...clientOptions });
  t.after(() => client.close());
  return { agent, client };
}

/** Writes half a request and hangs up, as a client killed mid-write would. */
async function leaveHalfARequest(path: string): Promise<void> {
  const socket = net.createConnection({ path });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => socket.end('{"execute": "guest-pi', () => resolve()));
  });
  await new Promise((resolve) => socket.once('close', resolve));
}

void describe('GuestAgentClient sync', () => {
  void it('discards stale lines and half a request left by earlier clients, up to its own sync answer', async (t) => {
    const { agent, client } = await setup(t);
    await leaveHalfARequest(agent.path);
    // Answers to commands of a client that gave up, plus a partial line, wait in the channel.
    agent.leaveStale('{"return": 12345}\n', '{"return": {}, "id": 7}\n', 'garbage\n', '{"return": 1795316');
    const stale = recordChannel(QMP_DIAGNOSTICS_CHANNELS.agentStale);
    t.after(() => stale.stop());

    const { roundTripMs } = await client.ping();
    assert.ok(roundTripMs >= 0);

    const calls = agent.calls.filter((call) => call.command !== 'guest-pi');
    assert.equal(calls[0]?.command, 'guest-sync');
    const syncId = calls[0]?.args?.id;
    assert.ok(typeof syncId === 'number' && Number.isSafeInteger(syncId) && syncId > 0);
    assert.deepEqual(
      calls.map((call) => [call.command, call.id]),
      [
        ['guest-sync', undefined],
        ['guest-ping', syncId],
      ],
    );
    const discarded = stale.messages.map((message) => asRecord(message));
    assert.ok(discarded.every((message) => message.phase === 'sync' && message.syncId === syncId));
    // 3 whole stale lines, then the partial one glued to the agent's parse error for our 0xFF.
    assert.equal(discarded.length, 4, JSON.stringify(discarded));
  });

  void it('uses a fresh random sync id per call', async (t) => {
    const { agent, client } = await setup(t);
    await client.ping();
    await client.ping();
    const ids = agent.calls.filter((call) => call.command === 'guest-sync').map((call) => call.args?.id);
    assert.equal(ids.length, 2);
    assert.notEqual(ids[0], ids[1]);
  });

  void it('times out with advice when the agent never answers guest-sync', async (t) => {
    const { agent, client } = await setup(t);
    agent.answerSync = false;
    const error = await rejectsWith(client.ping({ timeoutMs: 150 }), 'TIMEOUT', {
      reason: 'TIMEOUT',
      phase: 'sync',
      outcome: 'not-sent',
      peer: 'guest-agent',
    });
    assert.match(error.message, /is qemu-ga running/);
    assert.ok(!agent.calls.some((call) => call.command === 'guest-ping'), 'the command is never sent');
  });

  void it('reports a missing socket as UNREACHABLE', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qga-missing-'));
    try {
      const client = new GuestAgentClient({ path: join(dir, 'none.sock'), timeoutMs: 500 });
      await rejectsWith(client.ping(), 'UNREACHABLE', { reason: 'CONNECT_FAILED', errno: 'ENOENT' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  void it('rejects calls in flight and after close()', async (t) => {
    const { agent, client } = await setup(t);
    agent.answerSync = false;
    const inFlight = rejectsWith(client.ping(), 'UNREACHABLE', { reason: 'CLOSED' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    await client.close();
    await client.close();
    assert.equal((await inFlight).retryable, false);
    await rejectsWith(client.getTime(), 'UNREACHABLE', { reason: 'CLOSED', outcome: 'not-sent' });
  });
});

void describe('GuestAgentClient commands', () => {
  void it('reads the guest clock in ms, with the round trip and the offset against the host', async (t) => {
    const { client } = await setup(t, { clockOffsetMs: -5000, oneWayDelayMs: 10 });
    const reading = await client.getTime();
    assert.ok(reading.roundTripMs >= 19, `round trip ${reading.roundTripMs}`);
    // A reading is only as exact as the round trip is symmetric: the error is bounded by half of it.
    assert.ok(Math.abs(reading.offsetMs + 5000) <= Math.max(10, reading.roundTripMs / 2), `offset ${reading.offsetMs}`);
    assert.ok(reading.hostSentMs <= reading.hostMidpointMs && reading.hostMidpointMs <= reading.hostReceivedMs);
    assert.equal(reading.offsetMs, reading.guestTimeMs - reading.hostMidpointMs);
  });

  void it('sets the guest clock with an integer of nanoseconds computed after the sync', async (t) => {
    const { agent, client } = await setup(t);
    let computedAfterSync = false;
    const result = await client.setTime({
      timeMs: () => {
        computedAfterSync = agent.calls.some((call) => call.command === 'guest-sync');
        return 1_795_316_525_202.394;
      },
    });
    assert.ok(computedAfterSync);
    assert.equal(result.timeMs, 1_795_316_525_202.394);
    const sent = agent.calls.find((call) => call.command === 'guest-set-time')?.args?.time;
    assert.ok(typeof sent === 'number' && Number.isInteger(sent));
    assert.ok(Math.abs(sent - 1_795_316_525_202_394_000) <= 256);
  });

  void it('maps a refused guest-set-time (no hwclock in the guest) to CONFLICT', async (t) => {
    const { client } = await setup(t, { setTimeSupported: false });
    await rejectsWith(client.setTime({ timeMs: Date.now() }), 'CONFLICT', {
      reason: 'COMMAND_ERROR',
      peer: 'guest-agent',
      command: 'guest-set-time',
      qmpClass: 'GenericError',
    });
  });

  void it('returns guest-info', async (t) => {
    const { client } = await setup(t);
    const { info } = await client.info();
    assert.equal(info.version, '7.2.0-fake');
    assert.ok(info.supported_commands.some((command) => command.name === 'guest-get-time' && command.enabled));
  });
});
