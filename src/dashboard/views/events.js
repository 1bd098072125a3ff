// The event log as tenants saw it: what each scope's Scheduled Events document showed (type,
// status, NotBefore, approvals), newest first, with what happened to it afterwards.
import { useState } from 'preact/hooks';
import { Badge, Card, Empty, html } from '../components.js';
import { clock, relative, shortId } from '../format.js';

/** @typedef {import('../types.js').State} State */
/** @typedef {import('../types.js').EventView} EventView */

/**
 * The tenant-visible status of an event: Scheduled, Started, or removed (with why).
 * @param {EventView} e
 */
function statusOf(e) {
  if (e.status !== null) return html`<${Badge} state=${e.status} />`;
  return html`<${Badge} state="removed" label=${e.removalReason ? `removed (${e.removalReason})` : 'removed'} />`;
}

/**
 * The events page.
 * @param {{ state: State, now: number }} props
 */
export function EventsView({ state, now }) {
  const [filter, setFilter] = useState('');
  const [liveOnly, setLiveOnly] = useState(false);
  const all = Object.values(state.events).sort((a, b) =>
    a.createdAt === b.createdAt ? (a.eventId < b.eventId ? 1 : -1) : a.createdAt < b.createdAt ? 1 : -1,
  );
  const needle = filter.trim().toLowerCase();
  const shown = all.filter(
    (e) =>
      (!liveOnly || e.status !== null) &&
      (needle === '' ||
        e.resources.some((r) => r.toLowerCase().includes(needle)) ||
        e.scope.toLowerCase().includes(needle) ||
        e.eventId.toLowerCase().includes(needle) ||
        e.type.toLowerCase().includes(needle)),
  );
  return html`<div class="page" data-testid="events-view">
    <${Card}
      title="Event log"
      subtitle="What each scope's Scheduled Events document showed, as tenants read it from the metadata service."
      actions=${html`<div class="filters">
        <input
          class="input"
          type="search"
          placeholder="Filter by VM, scope, type or id"
          value=${filter}
          onInput=${(/** @type {Event} */ e) => setFilter(/** @type {HTMLInputElement} */ (e.currentTarget).value)}
        />
        <label class="check">
          <input
            type="checkbox"
            checked=${liveOnly}
            onChange=${(/** @type {Event} */ e) => setLiveOnly(/** @type {HTMLInputElement} */ (e.currentTarget).checked)}
          />
          Live only
        </label>
      </div>`}
    >
      ${
        shown.length === 0
          ? html`<${Empty} title="No events">Drills and rollouts publish events here as tenants see them.<//>`
          : html`<div class="table-wrap">
              <table class="table" data-testid="events-table">
                <thead>
                  <tr>
                    <th>Event</th>
                    <th>Type</th>
                    <th>Status</th>
                    <th>Resources</th>
                    <th>Scope</th>
                    <th>NotBefore (UTC)</th>
                    <th>Approval</th>
                    <th>Started</th>
                    <th>Ended / removed</th>
                    <th>Source</th>
                  </tr>
                </thead>
                <tbody>
                  ${shown.map(
                    (e) =>
                      html`<tr
                        key=${e.eventId}
                        data-testid="event-row"
                        data-event=${e.eventId}
                        data-status=${e.status ?? 'removed'}
                      >
                        <td><code title=${e.eventId}>${shortId(e.eventId)}</code></td>
                        <td><span class=${`type type-${e.type}`}>${e.type}</span></td>
                        <td>${statusOf(e)}</td>
                        <td>${e.resources.join(', ')}</td>
                        <td class="muted">${e.scope}</td>
                        <td>
                          ${clock(e.notBefore)}
                          ${e.status === 'Scheduled' ? html`<div class="muted small">${relative(e.notBefore, now)}</div>` : null}
                        </td>
                        <td>
                          ${
                            e.approvedBy
                              ? html`<span class="ok-text">by ${e.approvedBy}</span>
                                  <div class="muted small">${clock(e.approvedAt)}</div>`
                              : html`<span class="muted">—</span>`
                          }
                        </td>
                        <td>${clock(e.startedAt)}</td>
                        <td>${e.removedAt ? clock(e.removedAt) : clock(e.endedAt)}</td>
                        <td class="muted" title=${e.owner}>${e.source}</td>
                      </tr>`,
                  )}
                </tbody>
              </table>
            </div>`
      }
    <//>
  </div>`;
}
