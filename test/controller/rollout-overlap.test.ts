import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { apiWorld } from './api-world.js';

/** A host patch of `hosts` (every host when absent). */
function patch(id: string, hosts?: string[]): unknown {
  return {
    update: {
      id,
      kind: 'host-patch',
      expectedApplyMs: '1s',
      ...(hosts ? { hosts: { kind: 'names', names: hosts } } : {}),
    },
  };
}

describe('overlapping rollouts through the control API (HTTP on loopback)', () => {
  it('refuses a rollout on hosts that a running or paused rollout holds, with 409 naming it and the hosts', async () => {
    const w = await apiWorld('overlap');
    try {
      const first = await w.call('POST', '/v1/rollouts', w.operator, patch('fleet-1'));
      assert.equal(first.status, 201, JSON.stringify(first.body));
      await w.controller.executor.reconcileOnce(); // wave 0 published: the rollout is under way

      const second = await w.call('POST', '/v1/rollouts', w.operator, patch('web-fix', ['host-b', 'host-a']));
      assert.equal(second.status, 409, JSON.stringify(second.body));
      assert.equal(second.body.error?.code, 'CONFLICT');
      assert.equal(
        second.body.error?.message,
        'rollout web-fix overlaps rollout fleet-1 (running) on 2 hosts host-a, host-b; wait for fleet-1 to end, ' +
          'or cancel it, or leave these hosts out of web-fix',
      );
      assert.deepEqual((second.body.error?.details as { hosts: string[] }).hosts, ['host-a', 'host-b']);
      const list = await w.call('GET', '/v1/rollouts', w.operator);
      assert.deepEqual(
        (list.body.rollouts as { id: string }[]).map((r) => r.id),
        ['fleet-1'],
        'nothing of the refused rollout was stored',
      );

      // Paused still holds its hosts.
      assert.equal((await w.call('POST', '/v1/rollouts/fleet-1/pause', w.operator)).status, 200);
      const paused = await w.call('POST', '/v1/rollouts', w.operator, patch('web-fix', ['host-c']));
      assert.equal(paused.status, 409);
      assert.match(paused.body.error?.message ?? '', /overlaps rollout fleet-1 \(paused\) on host host-c;/);

      // Once it is cancelled (no step was under way), its hosts are free, and its events withdrawn.
      assert.equal((await w.call('POST', '/v1/rollouts/fleet-1/cancel', w.operator)).status, 200);
      const again = await w.call('POST', '/v1/rollouts', w.operator, patch('web-fix', ['host-b', 'host-a']));
      assert.equal(again.status, 201, JSON.stringify(again.body));
      const done = await w.runToEnd('web-fix');
      assert.equal(done.status, 'completed', done.reason ?? '');
      assert.equal(done.failedHosts, 0);
    } finally {
      await w.close();
    }
  });

  it('of two concurrent POSTs over a shared host, one is created and the other gets 409 naming it', async () => {
    const w = await apiWorld('overlap-race');
    try {
      const [a, b] = await Promise.all([
        w.call('POST', '/v1/rollouts', w.operator, patch('race-a', ['host-a', 'host-b'])),
        w.call('POST', '/v1/rollouts', w.operator, patch('race-b', ['host-b', 'host-c'])),
      ]);
      assert.ok(a && b);
      assert.deepEqual([a.status, b.status].sort(), [201, 409], JSON.stringify([a.body, b.body]));
      const [won, lost] = a.status === 201 ? [a, b] : [b, a];
      assert.equal(lost.body.error?.code, 'CONFLICT');
      assert.match(
        lost.body.error?.message ?? '',
        new RegExp(`overlaps rollout ${String(won.body.id)} \\(running\\) on host host-b;`),
      );
      assert.equal(((await w.call('GET', '/v1/rollouts', w.operator)).body.rollouts as unknown[]).length, 1);

      // A rollout on the host left free starts beside it; one on the winner's hosts is still refused.
      const [c, d] = await Promise.all([
        w.call('POST', '/v1/rollouts', w.operator, patch('solo-c', a.status === 201 ? ['host-c'] : ['host-a'])),
        w.call('POST', '/v1/rollouts', w.operator, patch('again', a.status === 201 ? ['host-a'] : ['host-c'])),
      ]);
      assert.equal(c?.status, 201, JSON.stringify(c?.body));
      assert.equal(d?.status, 409, 'the winner still holds its hosts');
      await w.runUntil(async () => {
        const all = await w.store.listRollouts();
        return all.every((r) => r.status !== 'running');
      }, 'both rollouts end');
      for (const r of await w.store.listRollouts()) assert.equal(r.status, 'completed', `${r.id}: ${r.reason ?? ''}`);
    } finally {
      await w.close();
    }
  });
});
