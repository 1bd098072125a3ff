import { IntermissionError } from '../errors.js';
import { HOUR, MINUTE, SECOND, scaled, type TimeScale, REAL_TIME } from '../time.js';
import type { EventType } from '../vocabulary.js';

/**
 * Minimum notice per event type: NotBefore minus the time the event first appears. Azure's values
 * (Scheduled Events docs, "Event scheduling"). Terminate's is the scale-set's configured
 * `notBeforeTimeout`, 5 to 15 minutes.
 */
export const MIN_NOTICE_MS = {
  Freeze: 15 * MINUTE,
  Reboot: 15 * MINUTE,
  Redeploy: 10 * MINUTE,
  Preempt: 30 * SECOND,
  Terminate: 5 * MINUTE,
} as const satisfies Record<EventType, number>;

export const TERMINATE_NOTICE_RANGE_MS = { min: 5 * MINUTE, max: 15 * MINUTE } as const;

/**
 * How long an event stays listed as Started after its impact ended, so that pollers see it (Azure:
 * typically 5 to 10 minutes of post-maintenance health checks).
 */
export const DEFAULT_LINGER_MS = 5 * MINUTE;

/** Timing rules for events, each already scaled. */
export interface EventTiming {
  readonly scale: TimeScale;
  readonly terminateNoticeMs: number;
  readonly lingerMs: number;
}

export interface EventTimingOptions {
  readonly scale?: TimeScale;
  /** The scale-set terminate profile's notBeforeTimeout, 5 to 15 minutes (unscaled). */
  readonly terminateNoticeMs?: number;
  /** Linger after the impact (unscaled). */
  readonly lingerMs?: number;
}

export function eventTiming(options: EventTimingOptions = {}): EventTiming {
  const terminate = options.terminateNoticeMs ?? TERMINATE_NOTICE_RANGE_MS.min;
  if (terminate < TERMINATE_NOTICE_RANGE_MS.min || terminate > TERMINATE_NOTICE_RANGE_MS.max) {
    throw new IntermissionError('INVALID_INPUT', 'the Terminate notice must be from 5 to 15 minutes (PT5M to PT15M)', {
      details: { terminateNoticeMs: terminate },
    });
  }
  const linger = options.lingerMs ?? DEFAULT_LINGER_MS;
  if (!Number.isFinite(linger) || linger < 0) {
    throw new IntermissionError('INVALID_INPUT', 'linger must be a duration of 0 or more');
  }
  return Object.freeze({ scale: options.scale ?? REAL_TIME, terminateNoticeMs: terminate, lingerMs: linger });
}

/** The minimum notice for `type` under `timing`, scaled. */
export function minimumNotice(type: EventType, timing: EventTiming): number {
  const base = type === 'Terminate' ? timing.terminateNoticeMs : MIN_NOTICE_MS[type];
  return scaled(base, timing.scale);
}

/** Linger under `timing`, scaled. */
export function lingerFor(timing: EventTiming): number {
  return scaled(timing.lingerMs, timing.scale);
}

/**
 * Bounds of what a caller of the control API may ask of an event's times (docs/limits.md, "Event
 * times"). Each prevents a failure seen in review (issue 12): a tenant's `"notice":"100000000d"` was
 * committed with a NotBefore in the year 275760 and from then on every listing answered 500.
 */
export const EVENT_TIME_LIMITS = Object.freeze({
  /**
   * Longest notice (and latest NotBefore, from now) of a drill or user event: 7 days. Azure's own
   * notices are 30 s to 15 min; a week covers a drill planned ahead for the next maintenance window,
   * and anything longer is far more likely a unit mistake (`"notice": 900000000` meant as seconds)
   * that would sit Scheduled in a scope's document for months.
   */
  maxNoticeMs: 7 * 24 * HOUR,
  /**
   * Longest expected impact of a drill, DurationInSeconds: 1 day. A drill holds its scope Started
   * for that long; a real Freeze lasts at most the 30 s pause budget, and a Reboot or Redeploy
   * minutes. A larger value kept the scope's document Started for ever in effect.
   */
  maxDurationInSeconds: 24 * 60 * 60,
  /** Longest description, in characters: Azure's descriptions are one sentence. */
  maxDescriptionLength: 512,
  /** Most VMs one event may name: an availability set holds at most 200 in Azure. */
  maxVms: 1000,
} as const);
