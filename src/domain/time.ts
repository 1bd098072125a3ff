import { IntermissionError } from './errors.js';

/** Source of the current time, injected everywhere so that tests never sleep. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;

/**
 * A time scale divides every protocol duration (notice, linger, settle) by `factor`, for demos and
 * tests. Production runs with factor 1; nothing defaults to anything else.
 */
export interface TimeScale {
  readonly factor: number;
}

export const REAL_TIME: TimeScale = Object.freeze({ factor: 1 });

export function timeScale(factor: number): TimeScale {
  if (!Number.isFinite(factor) || factor < 1 || factor > 100_000) {
    throw new IntermissionError('INVALID_INPUT', `time scale must be a number from 1 to 100000, got ${factor}`);
  }
  return Object.freeze({ factor });
}

/** Scales a protocol duration. Never rounds a positive duration to zero. */
export function scaled(ms: number, scale: TimeScale): number {
  if (scale.factor === 1 || ms <= 0) return ms;
  return Math.max(1, Math.round(ms / scale.factor));
}

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/;
const UNIT_MS = { ms: 1, s: SECOND, m: MINUTE, h: HOUR, d: 24 * HOUR } as const;

/** Options of {@link parseDuration}. */
export interface ParseDurationOptions {
  /** Largest duration accepted, in milliseconds; INVALID_INPUT above it. Default: any safe integer. */
  readonly max?: number;
  /** Names the value in errors, e.g. `notice`. Default: `duration`. */
  readonly name?: string;
}

/**
 * Parses `250ms`, `30s`, `15m`, `2h`, `1d`, an ISO-8601 duration such as `PT5M`, or a bare number of
 * seconds, to whole milliseconds. Refuses, with INVALID_INPUT, text that is not a duration, an amount
 * too large to be a safe integer of milliseconds (`${'9'.repeat(400)}s` would otherwise read as
 * Infinity, and `100000000d` as a time no date can hold), and anything above `options.max`.
 */
export function parseDuration(text: string, options: ParseDurationOptions = {}): number {
  const name = options.name ?? 'duration';
  const ms = readDuration(text);
  if (!Number.isSafeInteger(ms)) {
    throw new IntermissionError('INVALID_INPUT', `${name} ${JSON.stringify(text)} is too large to be a duration`, {
      details: { [name]: text },
    });
  }
  if (options.max !== undefined && ms > options.max) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `${name} ${JSON.stringify(text)} is too long: at most ${formatDuration(options.max)} (${options.max} ms)`,
      { details: { [name]: text, maxMs: options.max } },
    );
  }
  return ms;
}

function readDuration(text: string): number {
  const trimmed = text.trim();
  const iso = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/i.exec(trimmed);
  if (iso && trimmed.length > 1 && !/T$/i.test(trimmed)) {
    const [, d, h, m, s] = iso;
    return Math.round(
      Number(d ?? 0) * UNIT_MS.d + Number(h ?? 0) * HOUR + Number(m ?? 0) * MINUTE + Number(s ?? 0) * SECOND,
    );
  }
  const match = DURATION_RE.exec(trimmed);
  if (!match) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `cannot read duration ${JSON.stringify(text)}: use e.g. 500ms, 30s, 15m, 2h or PT15M`,
    );
  }
  const unit = (match[2] ?? 's') as keyof typeof UNIT_MS;
  return Math.round(Number(match[1]) * UNIT_MS[unit]);
}

/**
 * The latest time an event may carry: 9999-12-31T23:59:59.999Z. Past it `toISOString()` writes a
 * six-digit year (`+010000-…`) that ISO 8601 date-time parsers refuse, and past 8.64e15 ms
 * (year 275760) `new Date(t)` is Invalid Date and `toISOString()` throws "Invalid time value": one
 * such event made every listing of the control API answer 500 (issue 12).
 */
export const MAX_RENDERABLE_TIME = 253_402_300_799_999;

/** The earliest time an event may carry: the epoch. No clock of ours reads earlier. */
export const MIN_RENDERABLE_TIME = 0;

/**
 * True when `t` is a time every client can read back: a whole number of milliseconds from
 * {@link MIN_RENDERABLE_TIME} to {@link MAX_RENDERABLE_TIME}, so that ISO 8601 (control API) and
 * RFC 1123 (Scheduled Events) both render it with a four-digit year.
 */
export function isRenderableTime(t: number): boolean {
  return Number.isSafeInteger(t) && t >= MIN_RENDERABLE_TIME && t <= MAX_RENDERABLE_TIME;
}

/** Human form of a duration for operator output: 900000 → "15m", 1500 → "1.5s". */
export function formatDuration(ms: number): string {
  if (ms < 0) return `-${formatDuration(-ms)}`;
  // Round first, then pick the unit: rounding must carry, never print "1000ms", "60s", "59m60s" or "1h60m".
  if (Math.round(ms) < SECOND) return `${Math.round(ms)}ms`;
  const seconds = +(ms / SECOND).toFixed(2);
  if (seconds < 60) return `${seconds}s`;
  const totalSeconds = Math.round(ms / SECOND);
  if (totalSeconds < 3600) {
    const m = Math.floor(totalSeconds / 60);
    const s = totalSeconds % 60;
    return s === 0 ? `${m}m` : `${m}m${s}s`;
  }
  const totalMinutes = Math.round(ms / MINUTE);
  const h = Math.floor(totalMinutes / 60);
  const m = totalMinutes % 60;
  return m === 0 ? `${h}h` : `${h}h${m}m`;
}

/** A pending one-shot timer of {@link Timers}. */
export interface Timer {
  /** Stops the timer if it has not fired yet; idempotent. */
  cancel(): void;
}

/**
 * One-shot timers, injected beside the {@link Clock} so that background loops can be driven in
 * virtual time by tests instead of sleeping. The real implementation wraps `setTimeout`.
 */
export interface Timers {
  /** Calls `callback` once, `ms` milliseconds from now (0 or less: as soon as possible). */
  after(ms: number, callback: () => void): Timer;
}

/** A settable clock for tests and simulations. */
export class ManualClock implements Clock {
  #now: number;
  constructor(start: number = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  advance(ms: number): number {
    if (ms < 0) throw new IntermissionError('INVALID_INPUT', 'a ManualClock only moves forward; use set() to jump');
    this.#now += ms;
    return this.#now;
  }
  /** Jumps to any time, backwards too (for clock-jump tests). */
  set(ms: number): void {
    this.#now = ms;
  }
}
