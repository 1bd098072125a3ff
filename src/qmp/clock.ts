import type { GuestAgentCallOptions, GuestAgentClient } from './guest-agent.js';

/** Options of {@link resyncGuestClock}. */
export interface ResyncGuestClockOptions {
  /** The agent of the VM whose clock to set (only `getTime` and `setTime` are used). */
  readonly agent: Pick<GuestAgentClient, 'getTime' | 'setTime'>;
  /** Host wall clock, ms since the epoch: the time the guest is brought to. */
  readonly now: () => number;
  /** Bound on each of the three calls; default the agent's. */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** What {@link resyncGuestClock} measured. Negative offsets: the guest is behind the host. */
export interface ResyncGuestClockResult {
  /** Guest minus host before the correction (uncertain by about half a get-time round trip). */
  readonly offsetBeforeMs: number;
  /** Guest minus host after it, from a fresh `guest-get-time`: what the correction left. */
  readonly residualMs: number;
  /** Round trip of the `guest-set-time` exchange. */
  readonly roundTripMs: number;
  /** The lead added to host time when setting: half the round trip of the first get-time. */
  readonly compensationMs: number;
}

/**
 * Sets the guest's wall clock to the host's, for after a pause (a stopped guest's clock falls
 * behind by the length of the pause, and nothing corrects it by itself under TCG).
 *
 * 1. `guest-get-time` measures the offset and the round trip.
 * 2. `guest-set-time` sends host time plus half that round trip, computed right before the write,
 *    so the value is right when the guest applies it (one way later).
 * 3. A fresh `guest-get-time` measures the residual against the midpoint of its round trip.
 *
 * The residual is bounded by the asymmetry of the round trips, a few ms under TCG. The guest must
 * have `hwclock` for `guest-set-time` to work (qemu notes); the rejection otherwise is `CONFLICT`.
 */
export async function resyncGuestClock(options: ResyncGuestClockOptions): Promise<ResyncGuestClockResult> {
  const { agent, now } = options;
  const call: GuestAgentCallOptions = { now, timeoutMs: options.timeoutMs, signal: options.signal };
  const before = await agent.getTime(call);
  const compensationMs = before.roundTripMs / 2;
  const set = await agent.setTime({ ...call, timeMs: () => now() + compensationMs });
  const after = await agent.getTime(call);
  return {
    offsetBeforeMs: before.offsetMs,
    residualMs: after.offsetMs,
    roundTripMs: set.roundTripMs,
    compensationMs,
  };
}
