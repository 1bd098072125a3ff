// Pauses: what each VM went through, measured by its host's agent: the guest-visible pause against
// the VM's pause budget, the clock offset after resume and the residual after resynchronisation.
import { Badge, Card, Empty, Meter, Stat, html } from '../components.js';
import { clock, duration, ms } from '../format.js';
import { Histogram } from '../histogram.js';
import { measuredPauses } from '../store.js';

/** @typedef {import('../types.js').State} State */

/**
 * The `q` quantile of sorted values (nearest rank).
 * @param {readonly number[]} sorted
 * @param {number} q
 */
function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? null;
}

/**
 * The pauses page.
 * @param {{ state: State }} props
 */
export function PausesView({ state }) {
  const ops = measuredPauses(state);
  const values = ops.map((o) => o.pauseMs ?? 0);
  const sorted = [...values].sort((a, b) => a - b);
  const worstRatio = ops.reduce((m, o) => Math.max(m, (o.pauseMs ?? 0) / o.pauseBudgetMs), 0);
  const residuals = ops.filter((o) => o.clockResidualMs !== null).map((o) => Math.abs(o.clockResidualMs ?? 0));
  const over = ops.filter((o) => (o.pauseMs ?? 0) > o.pauseBudgetMs).length;
  return html`<div class="page" data-testid="pauses-view">
    <div class="stats">
      <${Stat}
        label="Pauses measured"
        value=${ops.length}
        testid="stat-pauses"
        hint=${`${new Set(ops.map((o) => o.vm)).size} VMs`}
      />
      <${Stat} label="Median pause" value=${ms(quantile(sorted, 0.5))} />
      <${Stat} label="p95 pause" value=${ms(quantile(sorted, 0.95))} />
      <${Stat}
        label="Longest pause"
        value=${ms(sorted.at(-1))}
        hint=${`${Math.round(worstRatio * 100)} % of its budget`}
        tone=${worstRatio >= 0.9 ? 'bad' : undefined}
      />
      <${Stat}
        label="Over budget"
        value=${over}
        tone=${over > 0 ? 'bad' : 'good'}
        hint=${over > 0 ? 'a resume lease should have prevented this' : 'every VM resumed within its budget'}
      />
      <${Stat}
        label="Max clock residual"
        value=${residuals.length ? ms(Math.max(...residuals)) : '—'}
        hint="after resynchronisation"
      />
    </div>
    <${Card}
      title="Distribution of pauses"
      subtitle="Guest-visible pause of every paused or migrated VM"
      testid="histogram-card"
    >
      ${
        ops.length === 0
          ? html`<${Empty} title="No pauses yet">Pauses appear as host steps finish.<//>`
          : html`<${Histogram} values=${values} testid="histogram" />`
      }
    <//>
    <${Card}
      title="Per VM"
      subtitle="Newest first; pause against the VM's budget, clock offset and residual"
      testid="pause-table-card"
    >
      ${
        ops.length === 0
          ? html`<${Empty} title="Nothing measured yet" />`
          : html`<div class="table-wrap">
              <table class="table" data-testid="pause-table">
                <thead>
                  <tr>
                    <th>VM</th>
                    <th>Host</th>
                    <th>Rollout</th>
                    <th>Path</th>
                    <th>Outcome</th>
                    <th class="num">Pause</th>
                    <th class="w-meter">Against budget</th>
                    <th class="num">Budget</th>
                    <th class="num">Clock offset</th>
                    <th class="num">Residual</th>
                    <th>At (UTC)</th>
                  </tr>
                </thead>
                <tbody>
                  ${ops.map(
                    (o) =>
                      html`<tr
                        key=${`${o.stepId}|${o.vm}`}
                        data-testid="pause-row"
                        data-vm=${o.vm}
                        data-pause=${o.pauseMs}
                      >
                        <td><strong>${o.vm}</strong></td>
                        <td>${o.host}</td>
                        <td class="muted">${o.rolloutId}</td>
                        <td>${o.path}</td>
                        <td><${Badge} state=${o.outcome === 'ok' ? 'succeeded' : 'failed'} label=${o.outcome} /></td>
                        <td class="num">${ms(o.pauseMs)}</td>
                        <td>
                          <${Meter}
                            value=${o.pauseMs ?? 0}
                            max=${o.pauseBudgetMs}
                            label=${`${ms(o.pauseMs)} of ${duration(o.pauseBudgetMs)}`}
                          />
                        </td>
                        <td class="num">${duration(o.pauseBudgetMs)}</td>
                        <td class="num">${ms(o.clockOffsetMs)}</td>
                        <td class="num">${ms(o.clockResidualMs)}</td>
                        <td class="muted">${clock(o.at)}</td>
                      </tr>`,
                  )}
                </tbody>
              </table>
            </div>`
      }
    <//>
  </div>`;
}
