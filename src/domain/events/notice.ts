import { IntermissionError } from '../errors.js';
import { MINUTE, SECOND, scaled, type TimeScale, REAL_TIME } from '../time.js';
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
