/**
 * The fuzzer's batches must not weaken its oracle: a change made in a batch is laid at one input
 * by its time stamp, and what no accepted input within its rights explains sends the batch to a
 * replay, one input at a time, on a fresh server started from the checkpoint taken before it. The
 * first part checks the attribution on snapshots built by hand; the second plants a state change
 * right after a refused input of a real run (as a faulty server would make it) and checks that the
 * finding names that input, also when the batch held 50 inputs.
 */
import { strict as assert } from 'node:assert';
import { before, describe, it } from 'node:test';
import { ensureBuilt } from '../crash/harness.js';
import { explainBatch, type Sent } from './attribution.js';
import { runFuzz, type FuzzReport } from './fuzzer.js';
import type { FuzzInput } from './generators.js';
import { diffState, type EventRow, type Snapshot } from './state.js';
import { controlJson, type Principal } from './target.js';

const T0 = Date.parse('2026-12-07T12:00:00.000Z');
const iso = (ms: number): string => new Date(ms).toISOString();
const tenant: Principal = { role: 'tenant', name: 'tenant-solo', vms: ['solo_b'], token: 'im_tn_x' };

function event(id: string, fields: Partial<EventRow> = {}): EventRow {
  return {
    eventId: id,
    scope: 'vm:solo_b',
    type: 'Freeze',
    phase: 'Scheduled',
    resources: ['solo_b'],
    source: 'User',
    owner: 'drill:tenant:tenant-solo',
    notBefore: iso(T0 + 3_600_000),
    durationInSeconds: 5,
    description: '',
    createdAt: iso(T0 - 60_000),
    approvedAt: null,
    approvedBy: null,
    removedAt: null,
    removalReason: null,
    ...fields,
  };
}

function snapshot(events: EventRow[]): Snapshot {
  return { events: new Map(events.map((e) => [e.eventId, e])), scopes: new Map() };
}

function sent(index: number, sentAt: number, status: number, input: Partial<FuzzInput>): Sent {
  return {
    index,
    sentAt,
    doneAt: sentAt + 10,
    status,
    rejected: status >= 400,
    input: {
      surface: 'control',
      actor: { kind: 'control', principal: tenant },
      label: `input ${index}`,
      bytes: Buffer.from(''),
      delivery: { kind: 'whole' },
      ...input,
    },
  };
}

const ID = 'A626BEFD-407F-4290-AB42-76B5D37C4CD1';
const cancelled = event(ID, { phase: 'Removed', removedAt: iso(T0 + 150), removalReason: 'cancelled' });
const cancelBytes = Buffer.from(`POST /v1/events/${ID}/cancel HTTP/1.1\r\n\r\n`);

describe('fuzz batches: a change is laid at the input whose window holds its time stamp', () => {
  it('explains a cancel stamped in the window of the accepted input that names the event', () => {
    const batch = [sent(0, T0, 400, {}), sent(1, T0 + 100, 200, { bytes: cancelBytes }), sent(2, T0 + 200, 400, {})];
    const r = explainBatch(batch, diffState(snapshot([event(ID)]), snapshot([cancelled])), snapshot([cancelled]));
    assert.equal(r.explained.length, 1);
    assert.equal(r.unexplained.length, 0);
  });

  it('explains a guest’s approval sent in a chunked body (the id split across chunks)', () => {
    const body = JSON.stringify({ StartRequests: [{ EventId: ID }] });
    const chunks = body.match(/.{1,7}/g)?.map((c) => `${c.length.toString(16)}\r\n${c}\r\n`) ?? [];
    const bytes = Buffer.from(`POST /metadata/scheduledevents HTTP/1.1\r\n\r\n${chunks.join('')}0\r\n\r\n`);
    const approved = event(ID, { approvedAt: iso(T0 + 150), approvedBy: 'solo_b' });
    const guest = {
      surface: 'metadata',
      vm: 'solo_b',
      actor: { kind: 'metadata', vm: 'solo_b', scope: 'vm:solo_b' },
    } as const;
    const batch = [sent(0, T0 + 100, 200, { ...guest, bytes })];
    const r = explainBatch(batch, diffState(snapshot([event(ID)]), snapshot([approved])), snapshot([approved]));
    assert.deepEqual(r.unexplained, []);
    const other = { ...guest, vm: 'solo_a', actor: { kind: 'metadata', vm: 'solo_a', scope: 'vm:solo_a' } } as const;
    const r2 = explainBatch(
      [sent(0, T0 + 100, 200, { ...other, bytes })],
      diffState(snapshot([event(ID)]), snapshot([approved])),
      snapshot([approved]),
    );
    assert.equal(r2.unexplained.length, 1, 'another scope’s guest may not approve it');
  });

  it('does not explain it when the window is a refused input, even if an accepted one names the event', () => {
    const batch = [sent(0, T0, 200, { bytes: cancelBytes }), sent(1, T0 + 100, 403, { bytes: cancelBytes })];
    const r = explainBatch(batch, diffState(snapshot([event(ID)]), snapshot([cancelled])), snapshot([cancelled]));
    assert.equal(r.unexplained.length, 1);
  });

  it('does not explain a change made while a parked input was still open, even in an accepted input’s window', () => {
    const parked = { ...sent(0, T0, 400, { bytes: cancelBytes }), doneAt: T0 + 2000, parked: true };
    const batch = [parked, sent(1, T0 + 100, 200, { bytes: cancelBytes })];
    const r = explainBatch(batch, diffState(snapshot([event(ID)]), snapshot([cancelled])), snapshot([cancelled]));
    assert.equal(r.unexplained.length, 1);
    const closed = { ...parked, doneAt: T0 + 50 };
    const r2 = explainBatch(
      [closed, batch[1] as Sent],
      diffState(snapshot([event(ID)]), snapshot([cancelled])),
      snapshot([cancelled]),
    );
    assert.equal(r2.unexplained.length, 0, 'once its answer came, its window ended');
  });

  it('does not explain an accepted change outside the sender’s rights (a tenant cancelling a platform event)', () => {
    const platform = { source: 'Platform', owner: 'drill:operator-x' } as const;
    const after = event(ID, { ...platform, phase: 'Removed', removedAt: iso(T0 + 150), removalReason: 'cancelled' });
    const batch = [sent(0, T0 + 100, 200, { bytes: cancelBytes })];
    const r = explainBatch(batch, diffState(snapshot([event(ID, platform)]), snapshot([after])), snapshot([after]));
    assert.equal(r.unexplained.length, 1);
  });

  it('does not explain a change of the rollout executor’s event in the window of a tenant that named it', () => {
    const rollout = { owner: 'rollout:r1' } as const;
    const after = event(ID, { ...rollout, phase: 'Removed', removedAt: iso(T0 + 150), removalReason: 'cancelled' });
    const batch = [sent(0, T0 + 100, 200, { bytes: cancelBytes })];
    const r = explainBatch(batch, diffState(snapshot([event(ID, rollout)]), snapshot([after])), snapshot([after]));
    assert.equal(r.unexplained.length, 1);
    const alone = explainBatch(
      [sent(0, T0 + 100, 200, {})],
      diffState(snapshot([event(ID, rollout)]), snapshot([after])),
      snapshot([after]),
    );
    assert.equal(alone.unexplained.length, 0, 'the executor’s own cancellation is not laid at an input');
  });

  it('does not explain a change without a stamp, nor an incarnation that moved on its own', () => {
    const moved = event(ID, { notBefore: iso(T0 + 7_200_000) });
    const batch = [sent(0, T0, 200, { bytes: cancelBytes })];
    assert.equal(
      explainBatch(batch, diffState(snapshot([event(ID)]), snapshot([moved])), snapshot([moved])).unexplained.length,
      1,
    );
    const b: Snapshot = { events: new Map(), scopes: new Map([['vm:solo_b', { incarnation: 3, key: 'x' }]]) };
    const a: Snapshot = { events: new Map(), scopes: new Map([['vm:solo_b', { incarnation: 4, key: 'x' }]]) };
    assert.equal(explainBatch(batch, diffState(b, a), a).unexplained.length, 1);
  });
});

/** Cancels a live platform event as the operator, out of band: a change no refused input may make. */
async function plantCancel(controlPort: number, operatorToken: string): Promise<void> {
  const live = await controlJson<{ events: EventRow[] }>(controlPort, operatorToken, 'GET', '/v1/events');
  const victim = live.body.events.find((e) => e.source === 'Platform' && e.phase === 'Scheduled');
  assert.ok(victim, 'no live platform event to plant a change on');
  const res = await controlJson(controlPort, operatorToken, 'POST', `/v1/events/${victim.eventId}/cancel`);
  assert.equal(res.status, 200, `planting the cancel answered ${res.status}`);
}

before(async () => void (await ensureBuilt()), { timeout: 300_000 });

describe('fuzz batches: a change planted after a refused input of a real run', () => {
  let chosen: number | undefined;
  let report: FuzzReport | undefined;
  let unreproduced: FuzzReport | undefined;
  before(
    async () => {
      // Planted after the first refused input from #60 on, in the run and again in its replay.
      report = await runFuzz({
        seed: 1203,
        inputs: 100,
        batch: 50,
        afterInput: async (at) => {
          if (at.index < 60 || !at.rejected || (chosen !== undefined && at.index !== chosen)) return;
          if (!at.replay) chosen = at.index;
          await plantCancel(at.controlPort, at.operatorToken);
        },
      });
      // Planted in the run only: the replay cannot reproduce it, and the batch is named whole.
      let once: number | undefined;
      unreproduced = await runFuzz({
        seed: 1203,
        inputs: 60,
        batch: 30,
        afterInput: async (at) => {
          if (at.replay || at.index < 40 || !at.rejected || once !== undefined) return;
          once = at.index;
          await plantCancel(at.controlPort, at.operatorToken);
        },
      });
    },
    { timeout: 240_000 },
  );

  it('replays the batch and names the one refused input the change was made after', () => {
    assert.ok(report && chosen !== undefined);
    const found = report.findings.filter((f) => f.kind === 'rejected-changed-state');
    assert.equal(found.length, 1, JSON.stringify(report.findings, null, 2));
    assert.equal(found[0]?.index, chosen);
    assert.match(
      found[0]?.detail ?? '',
      /cancelled \(source Platform.*found replaying inputs #50\.\.#\d+ one at a time/,
    );
    assert.equal(report.batches.replayed, 1);
    assert.equal(report.unattributedChanges, 0);
  });

  it('counts a change the replay does not reproduce as a finding that lists the batch', () => {
    assert.ok(unreproduced);
    assert.equal(unreproduced.rejectedChangedState, 0);
    assert.equal(unreproduced.unattributedChanges, 1, JSON.stringify(unreproduced.findings, null, 2));
    const f = unreproduced.findings.find((x) => x.kind === 'unattributed-change');
    assert.equal(f?.index, 30);
    assert.match(f?.detail ?? '', /not reproduced one input at a time; the batch: #30 /);
  });
});
