import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  EventBook,
  FleetIndex,
  MAX_RENDERABLE_TIME,
  eventTiming,
  isIntermissionError,
  isRenderableTime,
  parseDuration,
  parseFleet,
} from '../../src/domain/index.js';

// Issue 12, item 1: the domain refuses to create an event whose times no client can read back, and
// parseDuration refuses amounts that overflow or pass a bound.

const fleet = new FleetIndex(parseFleet({ hosts: [{ name: 'h1' }], vms: [{ name: 'solo', host: 'h1' }] }));
let ids = 0;
const book = (): EventBook =>
  new EventBook({
    timing: eventTiming(),
    resolver: fleet,
    newId: () => `00000000-0000-4000-8000-${(++ids).toString(16).padStart(12, '0').toUpperCase()}`,
  });
const NOW = Date.UTC(2026, 0, 1);

void describe('isRenderableTime', () => {
  void it('holds exactly for whole milliseconds from 1970 to the end of 9999', () => {
    assert.ok(isRenderableTime(0));
    assert.ok(isRenderableTime(MAX_RENDERABLE_TIME));
    assert.equal(new Date(MAX_RENDERABLE_TIME).toISOString(), '9999-12-31T23:59:59.999Z');
    for (const t of [-1, MAX_RENDERABLE_TIME + 1, 8.64e15 + 1, Number.MAX_SAFE_INTEGER, 1.5, Number.NaN, Infinity]) {
      assert.equal(isRenderableTime(t), false, String(t));
    }
  });

  void it('every renderable time renders in ISO 8601 and RFC 1123 and reads back', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: MAX_RENDERABLE_TIME }), (t) => {
        assert.ok(isRenderableTime(t));
        const iso = new Date(t).toISOString();
        assert.match(iso, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.equal(Date.parse(iso), t);
        assert.doesNotMatch(new Date(t).toUTCString(), /Invalid/);
      }),
    );
  });
});

void describe('EventBook refuses times clients cannot read', () => {
  for (const noticeMs of [8_700_000_000_000_000, 8_640_000_000_000_000, Number.MAX_SAFE_INTEGER, Infinity]) {
    void it(`refuses a notice of ${noticeMs} ms with INVALID_INPUT, changing nothing`, () => {
      const b = book();
      assert.throws(
        () => b.schedule({ type: 'Freeze', resources: ['solo'], noticeMs }, NOW),
        (e: unknown) => isIntermissionError(e, 'INVALID_INPUT') && /NotBefore/.test(e.message),
      );
      assert.deepEqual(b.list(), []);
      assert.equal(b.incarnation('vm:solo'), 1);
    });
  }

  void it('refuses an absolute NotBefore past 9999 and a fractional one', () => {
    const b = book();
    for (const notBefore of [MAX_RENDERABLE_TIME + 1, NOW + 20 * 60_000 + 0.5]) {
      assert.throws(() => b.schedule({ type: 'Freeze', resources: ['solo'], notBefore }, NOW), {
        code: 'INVALID_INPUT',
      });
    }
  });

  void it('refuses a clock that reads outside the renderable range for any new event', () => {
    const b = book();
    assert.throws(() => b.startUnplanned({ type: 'Reboot', resources: ['solo'] }, 8.7e15), {
      code: 'INVALID_INPUT',
    });
    assert.throws(() => b.schedule({ type: 'Preempt', resources: ['solo'] }, -86_400_000), { code: 'INVALID_INPUT' });
  });

  void it('refuses a DurationInSeconds that is not a safe integer', () => {
    const b = book();
    assert.throws(() => b.schedule({ type: 'Freeze', resources: ['solo'], durationInSeconds: 2 ** 60 }, NOW), {
      code: 'INVALID_INPUT',
    });
  });

  void it('still accepts the latest renderable NotBefore', () => {
    const b = book();
    const { event } = b.commit(
      b.schedule({ type: 'Freeze', resources: ['solo'], notBefore: MAX_RENDERABLE_TIME }, NOW),
    );
    assert.equal(new Date(event.notBefore).toISOString(), '9999-12-31T23:59:59.999Z');
  });
});

void describe('parseDuration bounds', () => {
  void it('refuses amounts that overflow, with INVALID_INPUT naming the value', () => {
    for (const text of [`${'9'.repeat(400)}s`, '100000000000d', 'P999999999999999D', `PT${'9'.repeat(30)}S`]) {
      assert.throws(
        () => parseDuration(text, { name: 'notice' }),
        (e: unknown) => isIntermissionError(e, 'INVALID_INPUT') && e.message.startsWith('notice '),
        text,
      );
    }
  });

  void it('refuses what passes max, saying the bound, and accepts the bound itself', () => {
    const max = 7 * 86_400_000;
    assert.equal(parseDuration('7d', { max }), max);
    assert.equal(parseDuration('P7D', { max }), max);
    assert.throws(
      () => parseDuration('7d', { max: max - 1, name: 'notice' }),
      (e: unknown) => isIntermissionError(e, 'INVALID_INPUT') && /at most/.test(e.message),
    );
    assert.throws(() => parseDuration('100000000d', { max }), { code: 'INVALID_INPUT' });
  });

  void it('every result is a safe integer within max, or an INVALID_INPUT', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc
            .tuple(fc.stringMatching(/^\d{1,30}(\.\d{1,5})?$/), fc.constantFrom('', 'ms', 's', 'm', 'h', 'd'))
            .map(([n, u]) => `${n}${u}`),
          fc.stringMatching(/^P(\d{1,20}D)?(T(\d{1,20}H)?(\d{1,20}M)?(\d{1,20}S)?)?$/),
        ),
        fc.nat(),
        (text, max) => {
          try {
            const ms = parseDuration(text, { max });
            assert.ok(Number.isSafeInteger(ms) && ms >= 0 && ms <= max, `${text} → ${ms}`);
          } catch (error) {
            assert.ok(isIntermissionError(error, 'INVALID_INPUT'), String(error));
          }
        },
      ),
    );
  });
});
