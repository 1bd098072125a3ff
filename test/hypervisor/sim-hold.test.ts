import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SimHost, VirtualTime, fixed } from '../../src/hypervisor/index.js';
import { expectDriverError } from './driver.contract.js';

// SimHost.holdUpdates(): tests that look at a VM paused during a host update hold the update until
// they have looked, instead of racing its apply time.

function setup(): { time: VirtualTime; host: SimHost; t0: number } {
  const time = new VirtualTime({ autoAdvance: false });
  const host = new SimHost({
    name: 'h1',
    time,
    seed: 1,
    vms: [{ name: 'vm1' }],
    timings: { applyFactor: fixed(1) },
  });
  return { time, host, t0: time.now() };
}

const update = { id: 'p1', kind: 'host-patch', expectedApplyMs: 1_000 } as const;

void describe('sim: held host updates', () => {
  void it('an update waits past its apply time until released, then completes', async () => {
    const { time, host, t0 } = setup();
    const hold = host.holdUpdates();
    let done = false;
    const applying = host
      .connect()
      .applyHostUpdate({ update, deadline: t0 + 60_000 })
      .finally(() => {
        done = true;
      });
    await time.advance(30_000);
    assert.equal(done, false, 'held well past its 1 s apply time');
    assert.deepEqual(host.appliedUpdates(), []);
    hold.release();
    const result = await applying;
    assert.equal(result.completedAt, t0 + 30_000);
    assert.deepEqual(host.appliedUpdates(), ['p1']);
    hold.release(); // harmless
  });

  void it('the deadline still ends a held update (DEADLINE_EXCEEDED, not applied)', async () => {
    const { time, host, t0 } = setup();
    host.holdUpdates();
    const applying = host.connect().applyHostUpdate({ update, deadline: t0 + 5_000 });
    const checked = expectDriverError(applying, 'TIMEOUT', 'DEADLINE_EXCEEDED');
    await time.advance(5_000);
    await checked;
    assert.equal(time.now(), t0 + 5_000);
    assert.deepEqual(host.appliedUpdates(), []);
  });

  void it('with two holds, the update waits for both, whichever is released first', async () => {
    const { time, host, t0 } = setup();
    const a = host.holdUpdates();
    const b = host.holdUpdates();
    let done = false;
    const applying = host
      .connect()
      .applyHostUpdate({ update, deadline: t0 + 60_000 })
      .finally(() => {
        done = true;
      });
    await time.advance(2_000);
    b.release();
    await time.advance(1_000);
    assert.equal(done, false, 'a is still held');
    a.release();
    await applying;
    assert.deepEqual(host.appliedUpdates(), ['p1']);
  });

  void it('an update that starts after the release is not held', async () => {
    const { time, host, t0 } = setup();
    host.holdUpdates().release();
    const applying = host.connect().applyHostUpdate({ update, deadline: t0 + 60_000 });
    await time.advance(1_000);
    assert.equal((await applying).completedAt, t0 + 1_000);
  });
});
