import type { Clock } from '../domain/index.js';
import {
  DEFAULT_RESYNC_TOLERANCE_MS,
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

/**
 * Resynchronises a guest clock with two primitives every driver has: measure the offset; when it is
 * beyond the tolerance, set the guest clock to the host's, sent half a round trip ahead because the
 * value reaches the guest about then; measure again and report the residual. The residual cannot be
 * made smaller than the asymmetry of one round trip, and its measurement is exact to within half of
 * the round trip it reports. Drivers implement {@link HypervisorDriver.resyncClock} with it.
 */
export async function resyncGuestClock(options: ResyncGuestClockOptions): Promise<ResyncClockResult> {
  const { driver, clock, vm, deadline, signal } = options;
  const tolerance = options.toleranceMs ?? DEFAULT_RESYNC_TOLERANCE_MS;
  const before = await driver.guestTime({ vm, deadline, signal });
  if (Math.abs(before.offsetMs) <= tolerance) {
    return Object.freeze({
      offsetBeforeMs: before.offsetMs,
      stepped: false,
      residualMs: before.offsetMs,
      roundTripMs: before.roundTripMs,
      measuredAt: before.hostMs,
    });
  }
  await driver.setGuestTime({ vm, deadline, signal, timeMs: clock.now() + before.roundTripMs / 2 });
  const after = await driver.guestTime({ vm, deadline, signal });
  return Object.freeze({
    offsetBeforeMs: before.offsetMs,
    stepped: true,
    residualMs: after.offsetMs,
    roundTripMs: after.roundTripMs,
    measuredAt: after.hostMs,
  });
}
