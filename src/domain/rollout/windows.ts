import { IntermissionError } from '../errors.js';
import { HOUR, MINUTE } from '../time.js';
import { WEEKDAYS, type MaintenanceWindow } from './model.js';

/** One day in milliseconds (UTC days have no leap seconds in epoch time). */
const DAY = 24 * HOUR;
/** 1970-01-01 was a Thursday: day 0 is weekday 4 (Sunday = 0). */
const EPOCH_WEEKDAY = 4;
const HHMM_RE = /^([01]\d|2[0-3]):([0-5]\d)$/;

/** Minutes after midnight UTC of a daily window's `HH:MM` start. Throws INVALID_INPUT on bad text. */
export function parseTimeOfDay(text: string): number {
  const match = HHMM_RE.exec(text);
  if (!match) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `window start ${JSON.stringify(text)} is not HH:MM (UTC, 00:00-23:59)`,
    );
  }
  return Number(match[1]) * 60 + Number(match[2]);
}

/** The UTC weekday (0 = Sunday) of an epoch day number. */
function weekdayOfDay(day: number): number {
  return (((day + EPOCH_WEEKDAY) % 7) + 7) % 7;
}

/** The earliest time at or after `t` inside `window`, or `undefined` when it never opens again. */
function nextInWindow(window: MaintenanceWindow, t: number): number | undefined {
  if (window.kind === 'interval') return t < window.end ? Math.max(t, window.start) : undefined;
  const offset = parseTimeOfDay(window.start) * MINUTE;
  const days = window.days === undefined ? undefined : new Set(window.days.map((d) => WEEKDAYS.indexOf(d)));
  const today = Math.floor(t / DAY);
  // Yesterday's window may still be open past midnight; a week ahead always meets an allowed day.
  for (let day = today - 1; day <= today + 7; day++) {
    if (days !== undefined && !days.has(weekdayOfDay(day))) continue;
    const open = day * DAY + offset;
    if (t < open + window.durationMs) return Math.max(t, open);
  }
  return undefined;
}

/**
 * The earliest time at or after `t` inside one of `windows`; `t` itself when there are no windows
 * (always open); `undefined` when no window opens again.
 */
export function nextWindowStart(windows: readonly MaintenanceWindow[], t: number): number | undefined {
  if (windows.length === 0) return t;
  let best: number | undefined;
  for (const w of windows) {
    const next = nextInWindow(w, t);
    if (next !== undefined && (best === undefined || next < best)) best = next;
  }
  return best;
}

/** True when `t` is inside one of `windows` (always, when there are none). */
export function isInsideWindow(windows: readonly MaintenanceWindow[], t: number): boolean {
  return nextWindowStart(windows, t) === t;
}
