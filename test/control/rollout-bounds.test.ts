import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { errorBodySchema } from '../../src/control/schemas.js';
import type { RunningServer } from '../../src/service/http.js';
import { controlWorld, serveOnLoopback, type ControlWorld } from './helpers.js';

// Issue 12, item 1, for rollouts: every time, duration and count of an update and a policy is
// checked at the edge. The fuzzer found that `"expectedApplyMs": 1e300` made POST /v1/plans answer
// 500 and POST /v1/rollouts answer 201 and start a rollout whose times no client could render.
// Real HTTP on loopback, with an operator token.

let w: ControlWorld;
let server: RunningServer;
let base: string;

before(async () => {
  w = await controlWorld();
  ({ server, base } = await serveOnLoopback(w));
});
after(async () => {
  await server.close();
  await w.close();
});

async function call(
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...w.auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

function errorOf(body: unknown): { code: string; message: string } {
  return errorBodySchema.parse(body).error;
}

async function rolloutIds(): Promise<string[]> {
  const list = await call('GET', '/v1/rollouts');
  assert.equal(list.status, 200, JSON.stringify(list.body));
  return (list.body.rollouts as { id: string }[]).map((r) => r.id);
}

const patch = (fields: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: 'u',
  kind: 'host-patch',
  expectedApplyMs: '1s',
  ...fields,
});

/** Hostile bodies, each with what the message must name. */
const hostile: [string, unknown, RegExp][] = [
  ['expectedApplyMs 1e300 (the fuzzer’s find)', { update: patch({ expectedApplyMs: 1e300 }) }, /expectedApplyMs/],
  ['expectedApplyMs 2^53-1', { update: patch({ expectedApplyMs: Number.MAX_SAFE_INTEGER }) }, /expectedApplyMs/],
  ['expectedApplyMs of 100000000 days', { update: patch({ expectedApplyMs: '100000000d' }) }, /expectedApplyMs/],
  ['expectedApplyMs of a year', { update: patch({ expectedApplyMs: '365d' }) }, /expectedApplyMs.*at most 6h/],
  [
    'a negative expectedApplyMs',
    { update: patch({ expectedApplyMs: -1 }) },
    /expectedApplyMs: a duration of 0 or more/,
  ],
  ['hostRebootMs of 1e300', { update: patch({ durations: { hostRebootMs: 1e300 } }) }, /durations\.hostRebootMs/],
  // Large bodies stay under the control API's 1 MiB body limit, so that the schema's bound is tested.
  ['a description of half a megabyte', { update: patch({ description: 'x'.repeat(1 << 19) }) }, /description/],
  [
    'a host list of 60,000 names',
    { update: patch({ hosts: { kind: 'names', names: Array.from({ length: 60_000 }, (_, i) => `h${i}`) } }) },
    /hosts\.names: at most 50000 hosts/,
  ],
  ['settleMs of 1e300', { update: patch(), policy: { settleMs: 1e300 } }, /settleMs/],
  ['noticeMs of 100000000 days', { update: patch(), policy: { noticeMs: '100000000d' } }, /noticeMs/],
  ['noticeMs of a year', { update: patch(), policy: { noticeMs: '365d' } }, /noticeMs.*at most 168h/],
  ['pauseBudgetMs of 31s', { update: patch(), policy: { pauseBudgetMs: '31s' } }, /pauseBudgetMs.*30s/],
  ['maxHostsInParallel of 1e300', { update: patch(), policy: { maxHostsInParallel: 1e300 } }, /maxHostsInParallel/],
  ['maxVmsPausedAtOnce of 1e300', { update: patch(), policy: { maxVmsPausedAtOnce: 1e300 } }, /maxVmsPausedAtOnce/],
  [
    'a maxFailedHosts of 1e300',
    { update: patch(), policy: { failureBudget: { maxFailedHosts: 1e300 } } },
    /failureBudget/,
  ],
  [
    'a window in the year 275760',
    { update: patch(), policy: { windows: [{ kind: 'interval', start: 0, end: 8.64e15 }] } },
    /windows\.0\.end/,
  ],
  [
    'a window that opens in the year 9999',
    {
      update: patch(),
      policy: { windows: [{ kind: 'interval', start: 253_402_000_000_000, end: 253_402_300_000_000 }] },
    },
    /wave 1 of 2 would wait until 9999-12-.* for a maintenance window, more than 366 days/,
  ],
  [
    '10,000 windows',
    {
      update: patch(),
      policy: { windows: Array.from({ length: 10_000 }, () => ({ kind: 'daily', start: '01:00', durationMs: '1h' })) },
    },
    /windows/,
  ],
];

describe('POST /v1/plans and /v1/rollouts: times, durations and counts at the edge', () => {
  hostile.forEach(([what, body, names], i) => {
    for (const path of ['/v1/plans', '/v1/rollouts']) {
      it(`${path} answers 400 INVALID_INPUT naming the field and starts nothing for ${what}`, async () => {
        const { update, ...rest } = body as { update: Record<string, unknown> };
        const res = await call('POST', path, { update: { ...update, id: `bad-${i}` }, ...rest });
        assert.equal(res.status, 400, JSON.stringify(res.body).slice(0, 500));
        const error = errorOf(res.body);
        assert.equal(error.code, 'INVALID_INPUT');
        assert.match(error.message, names);
        assert.doesNotMatch(error.message, /Invalid time value|Invalid Date|RangeError|internal error/);
        assert.deepEqual(await rolloutIds(), [], 'no rollout was started');
      });
    }
  });

  it('plans and starts a rollout at the bounds, and every time of it renders', async () => {
    const body = {
      update: patch({ id: 'at-bounds', expectedApplyMs: '6h', durations: { hostRebootMs: '6h' } }),
      policy: { settleMs: '1d', noticeMs: '7d', maxHostsInParallel: 10_000, pauseBudgetMs: '30s' },
    };
    const plan = await call('POST', '/v1/plans', body);
    assert.equal(plan.status, 200, JSON.stringify(plan.body).slice(0, 500));
    assert.equal(typeof plan.body.text, 'string');
    const started = await call('POST', '/v1/rollouts', body);
    assert.equal(started.status, 201, JSON.stringify(started.body).slice(0, 500));
    const detail = await call('GET', '/v1/rollouts/at-bounds?plan=true');
    assert.equal(detail.status, 200);
    const stored = JSON.stringify(detail.body.plan);
    assert.doesNotMatch(stored, /e\+|null,"expectedEndAt"/);
    assert.equal((await call('POST', '/v1/rollouts/at-bounds/cancel')).status, 200);
  });

  it('documents the bounds in the OpenAPI document', async () => {
    const res = await fetch(`${base}/openapi.json`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as {
      components: {
        schemas: { RolloutRequest: { properties: Record<string, { properties: Record<string, unknown> }> } };
      };
    };
    const { update, policy } = doc.components.schemas.RolloutRequest.properties;
    const applyMs = update?.properties.expectedApplyMs as { anyOf: { maximum?: number }[]; description: string };
    assert.equal(applyMs.anyOf[0]?.maximum, 6 * 3_600_000);
    assert.match(applyMs.description, /at most 6h \(21600000 ms\)/);
    const settle = policy?.properties.settleMs as { anyOf: { maximum?: number }[] };
    assert.equal(settle.anyOf[0]?.maximum, 24 * 3_600_000);
  });
});
