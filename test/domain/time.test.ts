import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  HOUR,
  MINUTE,
  ManualClock,
  SECOND,
  formatDuration,
  isIntermissionError,
  parseDuration,
  scaled,
  timeScale,
} from '../../src/domain/index.js';

void describe('parseDuration', () => {
  const cases: [string, number][] = [
    ['250ms', 250],
    ['30s', 30 * SECOND],
    ['15m', 15 * MINUTE],
    ['2h', 2 * HOUR],
    ['1d', 24 * HOUR],
    ['1.5h', 90 * MINUTE],
    ['0.5s', 500],
    ['30', 30 * SECOND],
    [' 45s ', 45 * SECOND],
    ['PT15M', 15 * MINUTE],
    ['pt1h30m', 90 * MINUTE],
    ['PT1.5S', 1500],
    ['P1D', 24 * HOUR],
    ['P1DT2H', 26 * HOUR],
    ['PT0S', 0],
  ];
  for (const [text, ms] of cases) {
    void it(`reads ${JSON.stringify(text)} as ${ms} ms`, () => {
      assert.equal(parseDuration(text), ms);
    });
  }

  void it('refuses what is not a duration with INVALID_INPUT, quoting the input and the accepted forms', () => {
    for (const text of ['', '   ', 'PT', 'P', 'P1DT', '-5s', 'abc', '5 minutes', '1e3', '10x', 'P1W']) {
      assert.throws(
        () => parseDuration(text),
        (error: unknown) =>
          isIntermissionError(error, 'INVALID_INPUT') &&
          error.message.includes(JSON.stringify(text)) &&
          error.message.includes('PT15M'),
        `accepted ${JSON.stringify(text)}`,
      );
    }
  });

  void it('reads every whole amount of every unit exactly', () => {
    const units = { ms: 1, s: SECOND, m: MINUTE, h: HOUR, d: 24 * HOUR } as const;
    fc.assert(
      fc.property(
        fc.nat({ max: 100_000 }),
        fc.constantFrom(...(Object.keys(units) as (keyof typeof units)[])),
        (n, unit) => {
          assert.equal(parseDuration(`${n}${unit}`), n * units[unit]);
        },
      ),
    );
  });
});

void describe('formatDuration', () => {
  const cases: [number, string][] = [
    [0, '0ms'],
    [999, '999ms'],
    [1500, '1.5s'],
    [59_000, '59s'],
    [90_000, '1m30s'],
    [15 * MINUTE, '15m'],
    [90 * MINUTE, '1h30m'],
    [2 * HOUR, '2h'],
    [-1500, '-1.5s'],
    // Rounding carries into the next unit.
    [999.6, '1s'],
    [59_999, '1m'],
    [3_599_400, '59m59s'],
    [3_599_999, '1h'],
    [7_199_999, '2h'],
  ];
  for (const [ms, text] of cases) {
    void it(`writes ${ms} ms as ${text}`, () => {
      assert.equal(formatDuration(ms), text);
    });
  }

  void it('always writes a well-formed value, close to the input, with seconds and minutes below 60', () => {
    const form = /^(?:(\d+)ms|(\d+(?:\.\d+)?)s|(\d+)m(?:(\d+)s)?|(\d+)h(?:(\d+)m)?)$/;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 30 * 24 * HOUR }), (ms) => {
        const text = formatDuration(ms);
        const m = form.exec(text);
        assert.ok(m, `${ms} ms was written as ${text}`);
        const [, millis, secs, mins, minSecs, hours, hourMins] = m.map((g) =>
          g === undefined ? undefined : Number(g),
        );
        let value: number;
        let tolerance: number;
        if (millis !== undefined) [value, tolerance] = [millis, 0.5];
        else if (secs !== undefined) [value, tolerance] = [secs * SECOND, 5];
        else if (mins !== undefined) [value, tolerance] = [mins * MINUTE + (minSecs ?? 0) * SECOND, SECOND / 2];
        else [value, tolerance] = [(hours ?? 0) * HOUR + (hourMins ?? 0) * MINUTE, MINUTE / 2];
        assert.ok(Math.abs(value - ms) <= tolerance, `${ms} ms was written as ${text}`);
        assert.ok((secs ?? 0) < 60 && (minSecs ?? 0) < 60 && (hourMins ?? 0) < 60, `${text} has a component of 60`);
      }),
      { numRuns: 2000 },
    );
  });

  void it('writes single-unit values that parseDuration reads back', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 30 * 24 * HOUR }), (ms) => {
        const text = formatDuration(ms);
        if (!/^[\d.]+(?:ms|s|m|h)$/.test(text)) return;
        assert.ok(Math.abs(parseDuration(text) - ms) <= MINUTE / 2, `${text} read back far from ${ms}`);
      }),
    );
  });
});

void describe('time scale and clock', () => {
  void it('scales durations down, never a positive one to zero, and refuses a factor out of range', () => {
    assert.equal(scaled(15 * MINUTE, timeScale(60)), 15 * SECOND);
    assert.equal(scaled(1, timeScale(1000)), 1);
    assert.equal(scaled(0, timeScale(1000)), 0);
    for (const factor of [0, 0.5, 100_001, Number.NaN]) {
      assert.throws(
        () => timeScale(factor),
        (e: unknown) => isIntermissionError(e, 'INVALID_INPUT'),
        String(factor),
      );
    }
  });

  void it('moves a ManualClock forward with advance() and anywhere with set()', () => {
    const clock = new ManualClock(1000);
    assert.equal(clock.advance(500), 1500);
    assert.throws(
      () => clock.advance(-1),
      (e: unknown) => isIntermissionError(e, 'INVALID_INPUT'),
    );
    clock.set(10);
    assert.equal(clock.now(), 10);
  });
});
