import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IntermissionError } from '../../../src/domain/errors.js';
import { HOUR, MINUTE } from '../../../src/domain/time.js';
import { isInsideWindow, nextWindowStart, parseTimeOfDay } from '../../../src/domain/rollout/index.js';

const THU = Date.UTC(2026, 0, 1); // 2026-01-01 is a Thursday.

void describe('maintenance windows', () => {
  void it('is always open without windows', () => {
    assert.equal(nextWindowStart([], THU + 123), THU + 123);
    assert.equal(isInsideWindow([], THU), true);
  });

  void it('takes intervals as [start, end)', () => {
    const w = [{ kind: 'interval' as const, start: THU + HOUR, end: THU + 2 * HOUR }];
    assert.equal(nextWindowStart(w, THU), THU + HOUR);
    assert.equal(nextWindowStart(w, THU + 90 * MINUTE), THU + 90 * MINUTE);
    assert.equal(nextWindowStart(w, THU + 2 * HOUR), undefined, 'the end is outside');
    assert.equal(isInsideWindow(w, THU + HOUR), true);
    assert.equal(isInsideWindow(w, THU + 2 * HOUR), false);
  });

  void it('picks the earliest of several windows', () => {
    const w = [
      { kind: 'interval' as const, start: THU + 5 * HOUR, end: THU + 6 * HOUR },
      { kind: 'interval' as const, start: THU + 3 * HOUR, end: THU + 4 * HOUR },
    ];
    assert.equal(nextWindowStart(w, THU), THU + 3 * HOUR);
    assert.equal(nextWindowStart(w, THU + 4 * HOUR), THU + 5 * HOUR);
  });

  void it('opens daily windows every day, UTC, including past midnight', () => {
    const w = [{ kind: 'daily' as const, start: '22:00', durationMs: 4 * HOUR }];
    assert.equal(nextWindowStart(w, THU + HOUR), THU + HOUR, "inside yesterday's window at 01:00");
    assert.equal(nextWindowStart(w, THU + 2 * HOUR), THU + 22 * HOUR, 'closed at 02:00 until 22:00');
    assert.equal(isInsideWindow(w, THU + 23 * HOUR), true);
  });

  void it('keeps to the given weekdays', () => {
    const w = [{ kind: 'daily' as const, start: '01:30', durationMs: HOUR, days: ['sat' as const, 'sun' as const] }];
    // From Thursday, the next Saturday 01:30 is two days later.
    assert.equal(nextWindowStart(w, THU), THU + 2 * 24 * HOUR + 90 * MINUTE);
    assert.equal(new Date(nextWindowStart(w, THU) as number).getUTCDay(), 6);
  });

  void it('reads HH:MM and rejects anything else', () => {
    assert.equal(parseTimeOfDay('00:00'), 0);
    assert.equal(parseTimeOfDay('23:59'), 23 * 60 + 59);
    for (const bad of ['24:00', '7:00', '12:60', 'noon']) {
      assert.throws(
        () => parseTimeOfDay(bad),
        (e: unknown) => e instanceof IntermissionError && e.code === 'INVALID_INPUT',
      );
    }
  });
});
