import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/domain/index.js';
import { VirtualTime, realTime } from '../../src/hypervisor/index.js';

void describe('VirtualTime', () => {
  void it('fires sleeps in due order, ties in creation order, each at its own time', async () => {
    const time = new VirtualTime({ clock: new ManualClock(1_000) });
    const fired: [string, number][] = [];
    const sleeper = (name: string, ms: number): Promise<void> =>
      time.sleep(ms).then(() => {
        fired.push([name, time.now()]);
      });
    const all = Promise.all([sleeper('c', 30), sleeper('a', 10), sleeper('b', 10), sleeper('z', 0)]);
    assert.equal(time.pending, 4);
    assert.equal(time.nextDue(), 1_000);
    await time.advance(20);
    assert.deepEqual(fired, [
      ['z', 1_000],
      ['a', 1_010],
      ['b', 1_010],
    ]);
    assert.equal(time.now(), 1_020);
    await time.advance(10);
    await all;
    assert.deepEqual(fired.at(-1), ['c', 1_030]);
    assert.equal(time.pending, 0);
  });

  void it('fires sleeps scheduled by continuations within the same advance', async () => {
    const time = new VirtualTime();
    const start = time.now();
    const stamps: number[] = [];
    const loop = (async () => {
      for (let i = 0; i < 5; i++) {
        await time.sleep(100);
        stamps.push(time.now() - start);
      }
    })();
    await time.advance(350);
    assert.deepEqual(stamps, [100, 200, 300]);
    await time.advance(200);
    await loop;
    assert.deepEqual(stamps, [100, 200, 300, 400, 500]);
  });

  void it('rejects an aborted sleep with the signal reason and forgets it', async () => {
    const time = new VirtualTime();
    const controller = new AbortController();
    const sleeping = time.sleep(1_000, { signal: controller.signal });
    const forever = time.sleep(Number.POSITIVE_INFINITY, { signal: controller.signal });
    assert.equal(time.pending, 1, 'an endless sleep is no timer');
    const reason = new Error('stop');
    controller.abort(reason);
    await assert.rejects(sleeping, (e) => e === reason);
    await assert.rejects(forever, (e) => e === reason);
    assert.equal(time.pending, 0);
    assert.equal(time.nextDue(), undefined);
    await assert.rejects(time.sleep(1, { signal: controller.signal }), (e) => e === reason);
  });

  void it('run() drives time until a promise settles, and reports a deadlock', async () => {
    const time = new VirtualTime();
    const start = time.now();
    const value = await time.run(time.sleep(5_000).then(() => 'done'));
    assert.equal(value, 'done');
    assert.equal(time.now(), start + 5_000);
    await assert.rejects(time.run(time.sleep(10).then(() => Promise.reject(new Error('boom')))), /boom/);
    await assert.rejects(time.run(new Promise<void>(() => undefined)), { code: 'INTERNAL' });
    await assert.rejects(time.run(time.sleep(10_000), { limitMs: 1_000 }), { code: 'INTERNAL' });
  });

  void it('jumps on its own with autoAdvance, and stops jumping when turned off', async () => {
    const time = new VirtualTime({ autoAdvance: true });
    const start = time.now();
    await time.sleep(3_600_000);
    assert.equal(time.now(), start + 3_600_000);
    await Promise.all([time.sleep(10), time.sleep(5)]);
    assert.equal(time.now(), start + 3_600_010);
    time.setAutoAdvance(false);
    let woke = false;
    void time.sleep(1).then(() => {
      woke = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(woke, false);
    time.setAutoAdvance(true);
    await time.sleep(1);
    assert.equal(woke, true);
  });

  void it('only moves forward', async () => {
    const time = new VirtualTime();
    await assert.rejects(time.advance(-1), { code: 'INVALID_INPUT' });
  });
});

void describe('realTime', () => {
  void it('reads the given clock and honours abort without waiting', async () => {
    const clock = new ManualClock(42);
    const time = realTime({ clock });
    assert.equal(time.now(), 42);
    const controller = new AbortController();
    const sleeping = time.sleep(60_000, { signal: controller.signal });
    controller.abort();
    await assert.rejects(sleeping, { name: 'AbortError' });
    await assert.rejects(time.sleep(1, { signal: controller.signal }), { name: 'AbortError' });
    await time.sleep(0);
  });
});
