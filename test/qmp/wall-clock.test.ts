/** The sub-millisecond wall clock the guest-clock measurements use. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { preciseNow } from '../../src/qmp/index.js';

void describe('preciseNow', () => {
  void it('reads the wall clock: Date.now() is its floor, give or take the tick between the two reads', () => {
    for (let i = 0; i < 5_000; i++) {
      const before = Date.now();
      const precise = preciseNow();
      const after = Date.now();
      // 20 µs of slack: the anchor is exact to a few µs, plus the slew since it was taken.
      assert.ok(precise > before - 0.02 && precise < after + 1.02, `${before} <= ${precise} < ${after + 1}`);
    }
  });

  void it('resolves below a millisecond and never runs backwards between anchors', () => {
    const readings: number[] = [];
    const end = Date.now() + 5;
    while (Date.now() < end) readings.push(preciseNow());
    const fractions = new Set(readings.map((ms) => Math.round((ms % 1) * 1000)));
    assert.ok(fractions.size > 10, `${fractions.size} distinct sub-ms fractions in ${readings.length} readings`);
    for (let i = 1; i < readings.length; i++) {
      assert.ok((readings[i] ?? 0) >= (readings[i - 1] ?? 0), `reading ${i} went backwards`);
    }
  });

  void it('follows a step of the system clock at once, not at the next anchor', (t) => {
    preciseNow();
    const real = Date.now.bind(Date);
    // The system clock is stepped an hour ahead (what an operator's `date -s` or an NTP step does).
    t.mock.method(Date, 'now', () => real() + 3_600_000);
    const after = preciseNow();
    assert.ok(Math.abs(after - (real() + 3_600_000)) < 2, `${after - real()} ms ahead`);
  });
});
