/**
 * resyncGuestClock's arithmetic against a modelled guest agent: readings symmetric in time, and
 * a set that the guest applies a fixed delay after it was sent (a busy or emulated guest runs its
 * agent late). The real agent is exercised in test/qemu.
 */
import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { resyncGuestClock } from '../../src/hypervisor/index.js';
import type { GuestTimeResult, SetGuestTimeResult } from '../../src/hypervisor/index.js';

const RTT = 1;

/** A guest `offset` ms off the host whose agent applies a set `setDelayMs` after it was sent. */
function modelGuest(offset: number, setDelayMs: number) {
  let now = 1_000_000;
  let guestOffset = offset;
  const sets: number[] = [];
  return {
    clock: { now: () => now },
    sets,
    driver: {
      guestTime(): Promise<GuestTimeResult> {
        now += RTT;
        return Promise.resolve({
          guestMs: now - RTT / 2 + guestOffset,
          hostMs: now - RTT / 2,
          offsetMs: guestOffset,
          roundTripMs: RTT,
        });
      },
      setGuestTime({ timeMs }: { timeMs: number }): Promise<SetGuestTimeResult> {
        const sentAt = now;
        now += setDelayMs + RTT / 2;
        // The guest reads `timeMs` at sentAt + setDelayMs: it is behind by however late that was.
        guestOffset = timeMs - (sentAt + setDelayMs);
        sets.push(timeMs - sentAt);
        return Promise.resolve({ completedAt: now, roundTripMs: setDelayMs + RTT });
      },
    },
  };
}

void describe('resyncGuestClock', () => {
  void it('leaves an offset within half a round trip alone', async () => {
    const g = modelGuest(0.4, 0);
    const result = await resyncGuestClock({ vm: 'v', driver: g.driver, clock: g.clock });
    assert.equal(result.stepped, false);
    assert.equal(g.sets.length, 0);
    assert.equal(result.residualMs, 0.4);
  });

  void it('steps an offset beyond half a round trip, sending the value half a round trip ahead', async () => {
    const g = modelGuest(-3, RTT / 2);
    const result = await resyncGuestClock({ vm: 'v', driver: g.driver, clock: g.clock });
    assert.equal(result.stepped, true);
    assert.deepEqual(g.sets, [RTT / 2]);
    assert.ok(Math.abs(result.residualMs) <= RTT, `residual ${result.residualMs}`);
  });

  void it('with one step, reports a guest that took the value late as it is', async () => {
    const g = modelGuest(-5000, 6);
    const result = await resyncGuestClock({ vm: 'v', driver: g.driver, clock: g.clock });
    assert.equal(g.sets.length, 1);
    assert.ok(Math.abs(result.residualMs + 5.5) < 1e-9, `residual ${result.residualMs}`);
  });

  void it('with more steps, sends the next value ahead by what the last missed by, and ends within a round trip', async () => {
    const g = modelGuest(-5000, 6);
    const result = await resyncGuestClock({ vm: 'v', driver: g.driver, clock: g.clock, steps: 3 });
    assert.equal(result.offsetBeforeMs, -5000);
    assert.equal(g.sets.length, 2, 'the second step was enough');
    assert.ok(Math.abs((g.sets[1] ?? 0) - 6) < 1e-9, `second lead ${g.sets[1]} ms`);
    assert.ok(Math.abs(result.residualMs) <= result.roundTripMs, `residual ${result.residualMs}`);
  });
});
