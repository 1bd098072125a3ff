// Rollouts: the list, and the selected rollout as a timeline wave by wave with the status of each
// host step, its measured pauses, and the operator's actions (pause, resume, cancel).
import { useState } from 'preact/hooks';
import { Badge, Card, Empty, Meter, html } from '../components.js';
import { clock, duration, ms, relative } from '../format.js';
import { rolloutsNewestFirst, stepsOf } from '../store.js';

/** @typedef {import('../types.js').State} State */
/** @typedef {import('../types.js').RolloutSummary} RolloutSummary */

/**
 * @typedef {object} RolloutsProps
 * @property {State} state
 * @property {number} now server time
 * @property {string | null} selected
 * @property {(id: string) => void} select
 * @property {(id: string, action: 'pause' | 'resume' | 'cancel') => Promise<void>} act
 */

/**
 * Where a wave is: done, current (with the rollout's phase) or to come.
 * @param {RolloutSummary} r
 * @param {number} index
 */
function waveStatus(r, index) {
  if (index < r.wave || r.status === 'completed') return 'succeeded';
  if (index > r.wave) return 'pending';
  if (r.status === 'running') return r.wavePhase;
  return r.status;
}

/**
 * The actions of a rollout, with a second click to confirm a cancel.
 * @param {{ rollout: RolloutSummary, act: RolloutsProps['act'] }} props
 */
function Actions({ rollout, act }) {
  const [busy, setBusy] = useState(/** @type {string | null} */ (null));
  const [confirming, setConfirming] = useState(false);
  const [error, setError] = useState(/** @type {string | null} */ (null));
  /** @param {'pause' | 'resume' | 'cancel'} action */
  const run = (action) => {
    setBusy(action);
    setError(null);
    act(rollout.id, action)
      .catch((/** @type {unknown} */ e) => setError(e instanceof Error ? e.message : String(e)))
      .finally(() => {
        setBusy(null);
        setConfirming(false);
      });
  };
  const live = rollout.status === 'running' || rollout.status === 'paused' || rollout.status === 'halted';
  return html`<div class="actions">
    ${
      rollout.status === 'running'
        ? html`<button class="btn" data-testid="pause" disabled=${busy !== null} onClick=${() => run('pause')}>
            Pause
          </button>`
        : null
    }
    ${
      rollout.status === 'paused'
        ? html`<button
            class="btn btn-primary"
            data-testid="resume"
            disabled=${busy !== null}
            onClick=${() => run('resume')}
          >
            Resume
          </button>`
        : null
    }
    ${
      live
        ? confirming
          ? html`<button
                class="btn btn-danger"
                data-testid="confirm-cancel"
                disabled=${busy !== null}
                onClick=${() => run('cancel')}
              >
                Confirm cancel
              </button>
              <button class="btn btn-ghost" onClick=${() => setConfirming(false)}>Keep going</button>`
          : html`<button class="btn btn-ghost-danger" data-testid="cancel" onClick=${() => setConfirming(true)}>
              Cancel…
            </button>`
        : null
    }
    ${error ? html`<span class="error-text" role="alert">${error}</span>` : null}
  </div>`;
}

/**
 * The timeline of one rollout.
 * @param {{ state: State, rollout: RolloutSummary, now: number, act: RolloutsProps['act'] }} props
 */
function RolloutDetail({ state, rollout, now, act }) {
  const detail = state.details[rollout.id];
  const plan = detail?.plan ?? null;
  const steps = stepsOf(state, rollout.id);
  const done = rollout.status === 'completed' ? rollout.waves : rollout.wave;
  const ops = Object.values(state.operations).filter((o) => o.rolloutId === rollout.id);
  return html`<div class="page" data-testid="rollout-detail" data-rollout=${rollout.id} data-status=${rollout.status}>
    <${Card}
      title=${`Rollout ${rollout.id}`}
      subtitle=${`${rollout.updateKind} — ${rollout.description}`}
      actions=${html`<${Actions} rollout=${rollout} act=${act} />`}
    >
      <div class="rollout-summary">
        <div>
          <${Badge} state=${rollout.status} />
          ${rollout.status === 'running' ? html` <${Badge} state=${rollout.wavePhase} />` : null}
        </div>
        <div class="progress" data-testid="wave-progress" data-done=${done} data-total=${rollout.waves}>
          <div class="progress-label">
            Wave <strong>${Math.min(rollout.wave + 1, rollout.waves)}</strong> of
            ${rollout.waves}${` · ${done}/${rollout.waves} done`}
          </div>
          <div class="progress-track">
            ${Array.from(
              { length: rollout.waves },
              (_, i) => html`<div class=${`progress-seg tone-${waveStatus(rollout, i)}`}></div>`,
            )}
          </div>
        </div>
        <dl class="facts">
          <div>
            <dt>Hosts</dt>
            <dd>${rollout.hosts}</dd>
          </div>
          <div>
            <dt>VMs</dt>
            <dd>${rollout.vms}</dd>
          </div>
          <div>
            <dt>Failed hosts</dt>
            <dd class=${rollout.failedHosts > 0 ? 'bad-text' : ''}>
              ${rollout.failedHosts} / budget ${rollout.failureBudget}
            </dd>
          </div>
          <div>
            <dt>Started</dt>
            <dd>${clock(rollout.createdAt)} UTC</dd>
          </div>
          <div>
            <dt>Updated</dt>
            <dd>${relative(rollout.updatedAt, now)}</dd>
          </div>
        </dl>
      </div>
      ${rollout.reason ? html`<p class="notice" data-testid="rollout-reason">${rollout.reason}</p>` : null}
    <//>
    <${Card}
      title="Timeline"
      subtitle="Each wave takes at most one update domain of every availability set."
      testid="timeline"
    >
      ${
        !plan
          ? html`<${Empty} title="Loading the plan…" />`
          : html`<ol class="timeline">
              ${plan.waves.map((wave) => {
                const status = waveStatus(rollout, wave.index);
                const uds = Object.entries(wave.updateDomains);
                return html`<li
                  class=${`wave wave-${status}`}
                  data-testid="wave"
                  data-wave=${wave.index}
                  data-status=${status}
                >
                  <div class="wave-rail"><span class=${`wave-dot tone-${status}`}></span></div>
                  <div class="wave-body">
                    <div class="wave-head">
                      <h3>Wave ${wave.index + 1}</h3>
                      <${Badge} state=${status} />
                      <span class="muted small">
                        ${[
                          uds.length > 0
                            ? uds.map(([set, ud]) => `${set} UD ${ud}`).join(' · ')
                            : 'standalone VMs only',
                          `${wave.hosts} hosts`,
                          `${wave.vms} VMs`,
                          `${wave.events.length} events`,
                          `notice ${duration(wave.noticeMs)}`,
                        ].join(' · ')}
                      </span>
                    </div>
                    ${wave.batches.map(
                      (batch) =>
                        html`<div class="batch">
                          <div class="batch-label">Batch ${batch.index + 1}</div>
                          <div class="steps">
                            ${batch.steps.map((planned) => {
                              const step = steps.find((s) => s.wave === wave.index && s.host === planned.host);
                              const st = step?.status ?? 'pending';
                              const took =
                                step?.dispatchedAt && step.finishedAt
                                  ? duration(step.finishedAt - step.dispatchedAt)
                                  : null;
                              return html`<div
                                class=${`step tone-${st}`}
                                data-testid="step"
                                data-host=${planned.host}
                                data-status=${st}
                              >
                                <div class="step-head">
                                  <strong>${planned.host}</strong>
                                  <${Badge} state=${st} />
                                </div>
                                <div class="muted small">
                                  ${planned.kind} · ${planned.vms.length} VMs${took ? ` · took ${took}` : ''}
                                </div>
                                <div class="step-vms">
                                  ${planned.vms.map((vm) => {
                                    const op = ops.find((o) => o.vm === vm.name && o.stepId === step?.id);
                                    return html`<span class="tag" title=${vm.classification.explanation}>
                                      ${vm.name} ·
                                      ${vm.classification.path}${op?.pauseMs != null ? ` · ${ms(op.pauseMs)}` : ''}
                                    </span>`;
                                  })}
                                </div>
                                ${step?.error ? html`<div class="error-text small">${step.error}</div>` : null}
                                ${
                                  step?.cancellation
                                    ? html`<div class="muted small" data-testid="step-cancellation">
                                        ${step.cancellation.reason}
                                      </div>`
                                    : null
                                }
                              </div>`;
                            })}
                          </div>
                        </div>`,
                    )}
                  </div>
                </li>`;
              })}
            </ol>`
      }
    <//>
    <${Card} title="Measured pauses" subtitle="Per VM, against its pause budget" testid="rollout-pauses">
      ${
        ops.length === 0
          ? html`<${Empty} title="Nothing measured yet">Each host step reports its VMs' pauses when it finishes.<//>`
          : html`<table class="table">
              <thead>
                <tr>
                  <th>VM</th>
                  <th>Host</th>
                  <th>Path</th>
                  <th>Outcome</th>
                  <th>Pause</th>
                  <th class="w-meter">Against budget</th>
                  <th>Clock residual</th>
                </tr>
              </thead>
              <tbody>
                ${ops.map(
                  (o) =>
                    html`<tr>
                      <td>${o.vm}</td>
                      <td>${o.host}</td>
                      <td>${o.path}</td>
                      <td><${Badge} state=${o.outcome === 'ok' ? 'succeeded' : 'failed'} label=${o.outcome} /></td>
                      <td class="num">${ms(o.pauseMs)}</td>
                      <td>
                        ${o.pauseMs === null ? '—' : html`<${Meter} value=${o.pauseMs} max=${o.pauseBudgetMs} label=${`${ms(o.pauseMs)} of ${duration(o.pauseBudgetMs)}`} />`}
                      </td>
                      <td class="num">${ms(o.clockResidualMs)}</td>
                    </tr>`,
                )}
              </tbody>
            </table>`
      }
    <//>
  </div>`;
}

/**
 * The rollouts page.
 * @param {RolloutsProps} props
 */
export function RolloutsView({ state, now, selected, select, act }) {
  const rollouts = rolloutsNewestFirst(state);
  if (rollouts.length === 0) {
    return html`<div class="page" data-testid="rollouts-view">
      <${Empty} title="No rollouts yet">Preview a plan, then start it from the Plan page.<//>
    </div>`;
  }
  const current = rollouts.find((r) => r.id === selected) ?? rollouts[0];
  return html`<div class="split" data-testid="rollouts-view">
    <nav class="list" aria-label="Rollouts">
      ${rollouts.map(
        (r) =>
          html`<button
            class=${`list-item ${r.id === current?.id ? 'selected' : ''}`}
            data-testid="rollout-item"
            data-rollout=${r.id}
            onClick=${() => select(r.id)}
          >
            <div class="list-title"><strong>${r.id}</strong><${Badge} state=${r.status} /></div>
            <div class="muted small">${r.updateKind} · ${r.hosts} hosts · ${r.waves} waves · ${clock(r.createdAt)}</div>
          </button>`,
      )}
    </nav>
    ${current ? html`<${RolloutDetail} state=${state} rollout=${current} now=${now} act=${act} />` : null}
  </div>`;
}
