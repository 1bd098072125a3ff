// Formatting of times, durations and ids for the views. Times are shown in UTC, as the planner's
// text and the Scheduled Events documents give them.

/**
 * `HH:MM:SS` UTC of an ISO time or epoch ms, or an em dash.
 * @param {string | number | null | undefined} t
 */
export function clock(t) {
  if (t === null || t === undefined) return '—';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? '—' : d.toISOString().slice(11, 19);
}

/**
 * A duration in words: `850 ms`, `12.5 s`, `3 min 20 s`, `2 h 5 min`.
 * @param {number | null | undefined} ms
 */
export function duration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  const a = Math.abs(ms);
  if (a < 1000) return `${Math.round(ms)} ms`;
  if (a < 60_000) return `${(ms / 1000).toFixed(a < 10_000 ? 2 : 1)} s`;
  if (a < 3_600_000)
    return `${Math.floor(a / 60_000)} min${a % 60_000 >= 1000 ? ` ${Math.round((a % 60_000) / 1000)} s` : ''}`;
  return `${Math.floor(a / 3_600_000)} h ${Math.round((a % 3_600_000) / 60_000)} min`;
}

/**
 * `in 12 s` or `3 min ago`, against the server's clock.
 * @param {string | number | null | undefined} t
 * @param {number} now server time, ms
 */
export function relative(t, now) {
  if (t === null || t === undefined) return '';
  const ms = (typeof t === 'number' ? t : Date.parse(t)) - now;
  if (Math.abs(ms) < 1000) return 'now';
  return ms > 0 ? `in ${duration(ms)}` : `${duration(-ms)} ago`;
}

/**
 * The first block of a GUID, enough to tell events apart on screen.
 * @param {string} id
 */
export function shortId(id) {
  return id.split('-')[0] ?? id;
}

/**
 * Milliseconds with at most one decimal, or an em dash.
 * @param {number | null | undefined} ms
 */
export function ms(ms) {
  if (ms === null || ms === undefined) return '—';
  return `${Math.abs(ms) < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
}
