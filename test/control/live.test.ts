import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { Hono } from 'hono';
import { LiveHub, liveStream, mayReceive, type LiveMessage } from '../../src/control/live.js';
import { liveMessageSchema } from '../../src/control/schemas.js';
import type { Principal } from '../../src/control/tokens.js';
import { controlWorld, type ControlWorld } from './helpers.js';

/** One Server-Sent Event as read off the wire: its fields, or a comment. */
interface SseFrame {
  readonly id?: string;
  readonly data?: string;
  readonly retry?: string;
  readonly comment?: string;
}

/** Reads SSE frames from a response body, one at a time. */
class SseReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #buffer = '';

  constructor(response: Response) {
    assert.ok(response.body, 'the stream has a body');
    this.#reader = response.body.getReader();
  }

  /** The next frame, or undefined when the stream ended. Fails after `timeoutMs`. */
  async next(timeoutMs = 5000): Promise<SseFrame | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = this.#buffer.indexOf('\n\n');
      if (end >= 0) {
        const block = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        const frame: Record<string, string> = {};
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) frame.comment = line.slice(1).trim();
          else {
            const colon = line.indexOf(':');
            const key = line.slice(0, colon);
            const value = line.slice(colon + 1).replace(/^ /, '');
            frame[key] = key === 'data' && frame.data !== undefined ? `${frame.data}\n${value}` : value;
          }
        }
        return frame;
      }
      const left = deadline - Date.now();
      assert.ok(left > 0, 'no SSE frame in time');
      let timer: NodeJS.Timeout | undefined;
      const chunk = await Promise.race([
        this.#reader.read(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('no SSE frame in time')), left);
        }),
      ]).finally(() => clearTimeout(timer));
      if (chunk.done) return undefined;
      this.#buffer += this.#decoder.decode(chunk.value, { stream: true });
    }
  }

  /** The next message (skipping comments), checked against the documented schema. */
  async message(timeoutMs?: number): Promise<LiveMessage> {
    for (;;) {
      const frame = await this.next(timeoutMs);
      assert.ok(frame, 'the stream ended');
      if (frame.data === undefined) continue;
      const message = JSON.parse(frame.data) as LiveMessage;
      liveMessageSchema.parse(message);
      assert.equal(frame.id, String(message.seq), 'the SSE id is the sequence number');
      return message;
    }
  }

  /** Messages until one of `type` arrives; returns it. */
  async until<T extends LiveMessage['type']>(type: T, timeoutMs?: number): Promise<Extract<LiveMessage, { type: T }>> {
    for (;;) {
      const m = await this.message(timeoutMs);
      if (m.type === type) return m as Extract<LiveMessage, { type: T }>;
    }
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel();
  }
}

const operator: Principal = { role: 'operator', name: 'op' };
const tenant: Principal = { role: 'tenant', name: 'acme', vms: ['solo'] };

describe('LiveHub', () => {
  it('numbers messages, keeps a bounded history and closes its subscribers', () => {
    const hub = new LiveHub({ historySize: 3, now: () => 0 });
    const seen: number[] = [];
    let closed = 0;
    const unsubscribe = hub.subscribe({ message: (m) => seen.push(m.seq), close: () => closed++ });
    for (let i = 0; i < 5; i++) hub.publish('rollout:wave:published', { rollout: 'r', wave: i, events: 1 });
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
    assert.deepEqual(
      hub.since(0).map((m) => m.seq),
      [3, 4, 5],
      'only the last 3 are kept',
    );
    assert.deepEqual(
      hub.since(4).map((m) => m.seq),
      [5],
    );
    unsubscribe();
    hub.publish('rollout:wave:published', { rollout: 'r', wave: 9, events: 1 });
    assert.equal(seen.length, 5, 'an unsubscribed listener hears nothing');
    hub.subscribe({ message: () => undefined, close: () => closed++ });
    hub.close();
    hub.close();
    assert.equal(closed, 1, 'close is idempotent and reaches current subscribers');
    assert.equal(hub.publish('rollout:wave:published', { rollout: 'r', wave: 0, events: 0 }), undefined);
  });

  it('shows tenants the events of their VMs only, and no rollout', () => {
    const hub = new LiveHub();
    const event = (resources: string[]) =>
      hub.publish('event:scheduled', {
        eventId: 'E',
        scope: 'vm:solo',
        type: 'Freeze',
        phase: 'Scheduled',
        status: 'Scheduled',
        resources,
        description: '',
        source: 'User',
        durationInSeconds: 5,
        createdAt: new Date(0).toISOString(),
        notBefore: new Date(0).toISOString(),
        approvedAt: null,
        approvedBy: null,
        startedAt: null,
        endedAt: null,
        removedAt: null,
        removalReason: null,
        owner: 'drill:op',
      })!;
    const wave = hub.publish('rollout:wave:published', { rollout: 'r', wave: 0, events: 1 })!;
    assert.equal(mayReceive(tenant, event(['solo'])), true);
    assert.equal(mayReceive(tenant, event(['web_0'])), false);
    assert.equal(mayReceive(tenant, wave), false);
    assert.equal(mayReceive(operator, wave), true);
  });

  it('sends keep-alive comments on a quiet stream, and ends streams when the hub closes', async () => {
    const hub = new LiveHub();
    const app = new Hono();
    app.get('/s', (c) => liveStream(c, { hub, principal: operator, now: () => 0, keepAliveMs: 20 }));
    const reader = new SseReader(await app.request('/s'));
    const hello = await reader.next();
    assert.match(hello?.data ?? '', /"type":"hello"/);
    assert.equal(hello?.retry, '2000', 'EventSource is told to reconnect after 2 s');
    assert.deepEqual(await reader.next(), { comment: 'keep-alive' });
    assert.equal(hub.size, 1);
    hub.close();
    for (;;) {
      const frame = await reader.next();
      if (frame === undefined) break; // ended
      assert.equal(frame.comment, 'keep-alive');
    }
    assert.equal(hub.size, 0);
  });
});

describe('GET /v1/stream', () => {
  let w: ControlWorld;
  before(async () => {
    w = await controlWorld();
  });
  after(async () => {
    await w.close();
  });

  it('needs a token in the Authorization header, never in the query', async () => {
    assert.equal((await w.app.request('/v1/stream')).status, 401);
    assert.equal((await w.app.request('/v1/stream?token=wrong')).status, 401);
    assert.equal((await w.app.request(`/v1/fleet?token=${w.operator}`)).status, 401, 'no query tokens elsewhere');
    assert.equal((await w.app.request(`/v1/stream?token=${encodeURIComponent(w.operator)}`)).status, 401);
    const res = await w.app.request('/v1/stream', { headers: w.auth });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    await res.body?.cancel();
  });

  it('pushes event:* and rollout:* messages as they happen, and replays after Last-Event-ID', async () => {
    const reader = new SseReader(await w.app.request('/v1/stream', { headers: w.auth }));
    const hello = await reader.until('hello');
    assert.equal(hello.data.role, 'operator');

    const res = await w.app.request('/v1/events', {
      method: 'POST',
      headers: { ...w.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'Freeze', vms: ['web_0'] }),
    });
    const created = (await res.json()) as { eventId: string };
    const scheduled = await reader.until('event:scheduled');
    assert.equal(scheduled.data.eventId, created.eventId);
    assert.equal(scheduled.data.status, 'Scheduled');

    const rollout = await w.app.request('/v1/rollouts', {
      method: 'POST',
      headers: { ...w.auth, 'content-type': 'application/json' },
      body: JSON.stringify({ update: { id: 'live-1', kind: 'host-patch', expectedApplyMs: '1s' } }),
    });
    assert.equal(rollout.status, 201);
    const announced = await reader.until('rollout:created');
    assert.equal(announced.data.id, 'live-1');
    assert.equal(announced.data.status, 'running');
    await w.app.request('/v1/rollouts/live-1/pause', { method: 'POST', headers: w.auth });
    const paused = await reader.until('rollout:status');
    assert.equal(paused.data.status, 'paused');
    await reader.cancel();

    // A client that reconnects with the last id it saw gets what it missed, then goes on live.
    const again = new SseReader(
      await w.app.request('/v1/stream', { headers: { ...w.auth, 'last-event-id': String(scheduled.seq) } }),
    );
    await again.until('hello');
    const replayed = await again.message();
    assert.equal(replayed.seq, scheduled.seq + 1, 'replay starts right after Last-Event-ID');
    await again.cancel();
    await w.app.request('/v1/rollouts/live-1/cancel', { method: 'POST', headers: w.auth });
  });

  it('gives tenants the events of their own VMs and nothing of rollouts', async () => {
    const token = await w.tokens.issue({ role: 'tenant', name: 'acme', vms: ['solo'] });
    const reader = new SseReader(await w.app.request('/v1/stream', { headers: { authorization: `Bearer ${token}` } }));
    assert.equal((await reader.until('hello')).data.role, 'tenant');
    for (const vms of [['web_1'], ['solo']]) {
      await w.app.request('/v1/events', {
        method: 'POST',
        headers: { ...w.auth, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'Reboot', vms }),
      });
    }
    const seen = await reader.message();
    assert.equal(seen.type, 'event:scheduled');
    assert.deepEqual(seen.type === 'event:scheduled' && seen.data.resources, ['solo'], 'web_1 is not theirs');
    await reader.cancel();
  });
});
