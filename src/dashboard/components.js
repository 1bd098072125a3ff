// Small shared pieces of the views: the html tag, badges, cards, meters and empty states.
import { h } from 'preact';
import htm from 'htm';

/** Tagged templates that build preact vnodes. */
export const html = htm.bind(h);

/** Labels of states, as operators read them. */
export const STATE_LABELS = /** @type {const} */ ({
  running: 'running',
  scheduled: 'event scheduled',
  started: 'event started',
  paused: 'paused',
  migrating: 'migrating',
  restarting: 'restarting',
  failed: 'failed',
  idle: 'idle',
  updating: 'updating',
  updated: 'updated',
  pending: 'pending',
  dispatched: 'running',
  succeeded: 'succeeded',
  completed: 'completed',
  halted: 'halted',
  cancelled: 'cancelled',
  published: 'published',
  settling: 'settling',
  Scheduled: 'Scheduled',
  Started: 'Started',
  removed: 'removed',
});

/**
 * A colored badge for a state; its tone is the CSS class `tone-<state>`.
 * @param {{ state: string, label?: string, title?: string }} props
 */
export function Badge({ state, label, title }) {
  const text = label ?? /** @type {Record<string, string>} */ (STATE_LABELS)[state] ?? state;
  return html`<span class=${`badge tone-${state}`} title=${title ?? text} data-state=${state}>${text}</span>`;
}

/**
 * A panel with a title and optional actions.
 * @param {{ title: string, subtitle?: string, actions?: unknown, children?: unknown, class?: string, testid?: string }} props
 */
export function Card(props) {
  return html`<section class=${`card ${props.class ?? ''}`} data-testid=${props.testid}>
    <header class="card-head">
      <div>
        <h2>${props.title}</h2>
        ${props.subtitle ? html`<p class="muted">${props.subtitle}</p>` : null}
      </div>
      ${props.actions ? html`<div class="card-actions">${props.actions}</div>` : null}
    </header>
    ${props.children}
  </section>`;
}

/**
 * A key figure.
 * @param {{ label: string, value: unknown, hint?: string, tone?: string, testid?: string }} props
 */
export function Stat({ label, value, hint, tone, testid }) {
  return html`<div class=${`stat ${tone ? `stat-${tone}` : ''}`} data-testid=${testid}>
    <div class="stat-label">${label}</div>
    <div class="stat-value">${value}</div>
    ${hint ? html`<div class="stat-hint">${hint}</div>` : null}
  </div>`;
}

/**
 * A horizontal meter of `value` against `max`: green to half, amber to 90 %, red beyond.
 * @param {{ value: number, max: number, label?: string }} props
 */
export function Meter({ value, max, label }) {
  const ratio = max > 0 ? value / max : 0;
  const tone = ratio >= 0.9 ? 'bad' : ratio >= 0.5 ? 'warn' : 'good';
  return html`<div class="meter" title=${label ?? `${Math.round(ratio * 100)} %`}>
    <div class=${`meter-fill meter-${tone}`} style=${{ width: `${Math.min(100, Math.max(1, ratio * 100))}%` }}></div>
  </div>`;
}

/**
 * A placeholder when there is nothing to show.
 * @param {{ title: string, children?: unknown }} props
 */
export function Empty({ title, children }) {
  return html`<div class="empty">
    <strong>${title}</strong>
    <div class="muted">${children}</div>
  </div>`;
}
