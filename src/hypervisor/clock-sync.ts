import type { Clock } from '../domain/index.js';
import {
  DEFAULT_RESYNC_TOLERANCE_MS,
  type GuestTimeResult,
  type HypervisorDriver,
  type ResyncClockOptions,
  type ResyncClockResult,
} from './driver.js';

/** Options of {@link resyncGuestClock}. */
export interface ResyncGuestClockOptions extends ResyncClockOptions {
  /** The two guest-agent calls the resync is built on. */
  readonly driver: Pick<HypervisorDriver, 'guestTime' | 'setGuestTime'>;
  /** The driver clock: the time the guest is set to. */
  readonly clock: Clock;
}

/** Readings of the guest clock per measurement; the one with the shortest round trip counts. */
export const CLOCK_SAMPLES = 3;

/**
 * Resynchronises a guest clock with two primitives every driver has: measure the offset; when it is
 * beyond the tolerance and beyond the measurement's own error, set the guest clock to the host's,
 * sent half a round trip ahead because the value reaches the guest about then; measure again and
 * report the residual. A measurement is the best of {@link CLOCK_SAMPLES} readings (the shortest
 * round trip: on a busy host one reading can wait tens of ms, and its error is half of that). The
 * residual cannot be made smaller than the asymmetry of one round trip, and its measurement is
 * exact to within half of the round trip it reports, so an offset within that half is left alone:
 * stepping on it would as likely add error as remove it. Drivers implement
 * {@link HypervisorDriver.resyncClock} with it.
 */
export async function resyncGuestClock(options: ResyncGuestClockOptions): Promise<ResyncClockResult> {
  const { driver, clock, vm, deadline, signal } = options;
  const tolerance = options.toleranceMs ?? DEFAULT_RESYNC_TOLERANCE_MS;
  const measure = async (): Promise<GuestTimeResult> => {
    let best = await driver.guestTime({ vm, deadline, signal });
    for (let i = 1; i < CLOCK_SAMPLES; i++) {
      const next = await driver.guestTime({ vm, deadline, signal });
      if (next.roundTripMs < best.roundTripMs) best = next;
    }
    return best;
  };
  const before = await measure();
  if (Math.abs(before.offsetMs) <= Math.max(tolerance, before.roundTripMs / 2)) {
    return Object.freeze({
      offsetBeforeMs: before.offsetMs,
      stepped: false,
      residualMs: before.offsetMs,
      roundTripMs: before.roundTripMs,
      measuredAt: before.hostMs,
    });
  }
  await driver.setGuestTime({ vm, deadline, signal, timeMs: clock.now() + before.roundTripMs / 2 });
  const after = await measure();
  return Object.freeze({
    offsetBeforeMs: before.offsetMs,
    stepped: true,
    residualMs: after.offsetMs,
    roundTripMs: after.roundTripMs,
    measuredAt: after.hostMs,
  });
}
