/**
 * The host's wall clock to a few microseconds, for measuring and setting guest clocks.
 *
 * `Date.now()` has whole milliseconds. A guest-agent round trip takes about one millisecond, so
 * with it an offset's midpoint is up to 1 ms off and a clock set from it lands up to 1 ms late:
 * as much as everything else the measurement has to account for. `performance.now()` has
 * microseconds but follows the monotonic clock, which drifts from the wall clock as NTP slews it
 * and does not follow a step at all.
 *
 * So the wall clock is read as an anchor plus the monotonic time since: the anchor is taken at the
 * instant `Date.now()` ticks over to its next millisecond (bracketed to a few microseconds), and
 * taken again once it is older than {@link ANCHOR_MAX_AGE_MS}, or as soon as a reading disagrees
 * with `Date.now()` by more than its millisecond (the system clock was stepped).
 */

/**
 * How long an anchor is trusted. NTP slews the wall clock against the monotonic one by at most
 * 500 ppm (0.125 ms in this time, usually a few microseconds); taking an anchor spins for up to 1 ms.
 */
export const ANCHOR_MAX_AGE_MS = 250;

/** A bracket around the tick wider than this (the thread was preempted) is measured again. */
const ANCHOR_MAX_BRACKET_MS = 0.02;

interface Anchor {
  /** Wall clock at the anchor, ms since the epoch (a whole millisecond: the tick). */
  readonly wallMs: number;
  /** `performance.now()` at the same instant. */
  readonly monotonicMs: number;
}

let anchor: Anchor | undefined;

function takeAnchor(): Anchor {
  for (let attempt = 0; ; attempt++) {
    // Each read of Date.now() is bracketed by monotonic readings: the tick to a new value fell
    // after the monotonic reading taken just before the previous read, and before the one taken
    // just after this read.
    let beforePrevious = performance.now();
    let previous = Date.now();
    for (;;) {
      const before = performance.now();
      const wallMs = Date.now();
      const after = performance.now();
      if (wallMs !== previous) {
        if (after - beforePrevious <= ANCHOR_MAX_BRACKET_MS || attempt === 4) {
          return { wallMs, monotonicMs: (beforePrevious + after) / 2 };
        }
        break;
      }
      beforePrevious = before;
      previous = wallMs;
    }
  }
}

/** Milliseconds since the epoch, with a fractional part good to a few microseconds. */
export function preciseNow(): number {
  let monotonicMs = performance.now();
  if (anchor === undefined || monotonicMs - anchor.monotonicMs > ANCHOR_MAX_AGE_MS) {
    anchor = takeAnchor();
    monotonicMs = performance.now();
  }
  const reading = anchor.wallMs + (monotonicMs - anchor.monotonicMs);
  const coarse = Date.now();
  // Date.now() is the reading's floor give or take a tick; anything else is a step of the clock.
  if (reading < coarse - 1 || reading >= coarse + 2) {
    anchor = takeAnchor();
    return anchor.wallMs + (performance.now() - anchor.monotonicMs);
  }
  return reading;
}

/** {@link preciseNow} as a clock (the shape of the domain's `Clock`). */
export const preciseWallClock = Object.freeze({ now: preciseNow });
