// Plan: declare an update, preview the plan (POST /v1/plans, a dry run) with each VM's path and the
// reasons it does not take the memory-preserving one, then start exactly that (POST /v1/rollouts).
import { useMemo, useState } from 'preact/hooks';
import { api } from '../api.js';
import { Badge, Card, Empty, Stat, html } from '../components.js';
import { clock, duration } from '../format.js';

/** @typedef {import('../types.js').State} State */
/** @typedef {import('../types.js').PlanPreview} PlanPreview */
/** @typedef {import('../types.js').UpdateKind} UpdateKind */

/** @type {readonly { kind: UpdateKind, label: string }[]} */
const KINDS = [
  { kind: 'host-patch', label: 'Host patch under pause (Freeze)' },
  { kind: 'vmm-update', label: 'In-place VMM update (Freeze)' },
  { kind: 'hot-patch', label: 'Hot patch (no VM impact)' },
  { kind: 'host-reboot', label: 'Host reboot (Reboot)' },
  { kind: 'redeploy', label: 'Redeploy (VMs move)' },
];

/** @typedef {{ id: string, kind: UpdateKind, applyTime: string, hosts: string[], toVersion: string, pauseBudget: string, settle: string, maxParallel: string, failureBudget: string }} Form */

/**
 * The request body for a form: an update and a policy, as the CLI would send them.
 * @param {Form} f
 * @param {number} hostCount hosts in the fleet
 */
function bodyOf(f, hostCount) {
  /** @type {Record<string, unknown>} */
  const update = { id: f.id.trim(), kind: f.kind, expectedApplyMs: f.applyTime.trim() || '0s' };
  if (f.hosts.length !== hostCount) update.hosts = { kind: 'names', names: f.hosts };
  if (f.kind === 'vmm-update' && f.toVersion.trim()) {
    update.vmm = { fromVersion: 'current', toVersion: f.toVersion.trim() };
  }
  /** @type {Record<string, unknown>} */
  const policy = {};
  if (f.pauseBudget.trim()) policy.pauseBudgetMs = f.pauseBudget.trim();
  if (f.settle.trim()) policy.settleMs = f.settle.trim();
  if (f.maxParallel.trim()) policy.maxHostsInParallel = Number(f.maxParallel);
  if (f.failureBudget.trim()) policy.failureBudget = { maxFailedHosts: Number(f.failureBudget) };
  return { update, policy };
}

/** A fresh update id: the kind's word and the time, unique enough for a console. */
function freshId() {
  return `patch-${new Date().toISOString().slice(11, 19).replaceAll(':', '')}`;
}

/**
 * The preview of a plan: figures, blocked hosts, waves, and every VM with its path and reasons.
 * @param {{ preview: PlanPreview }} props
 */
function Preview({ preview }) {
  const { plan } = preview;
  const s = plan.stats;
  const rows = plan.waves.flatMap((w) =>
    w.batches.flatMap((b) => b.steps.flatMap((step) => step.vms.map((vm) => ({ wave: w.index, host: step.host, vm })))),
  );
  const paths = Object.entries(s.byPath).filter(([, n]) => n > 0);
  return html`<div class="page" data-testid="plan-preview" data-waves=${plan.waves.length}>
    <div class="stats">
      <${Stat} label="Waves" value=${plan.waves.length} testid="preview-waves" />
      <${Stat}
        label="Hosts"
        value=${s.plannedHosts}
        hint=${s.blockedHosts ? `${s.blockedHosts} blocked` : 'none blocked'}
      />
      <${Stat} label="VMs" value=${s.plannedVms} hint=${paths.map(([p, n]) => `${n} ${p}`).join(' · ')} />
      <${Stat} label="Events" value=${s.events} hint=${`peak ${s.peakPausedVms} VMs paused at once`} />
      <${Stat}
        label="Expected duration"
        value=${duration(s.expectedMakespanMs)}
        hint=${`ends ~${clock(plan.expectedEndAt)} UTC`}
      />
    </div>
    ${
      plan.blocked.length > 0
        ? html`<${Card} title="Blocked hosts" subtitle="Left out of this rollout; their VMs are not touched.">
            <ul class="reasons">
              ${plan.blocked.map((b) => html`<li><strong>${b.host}</strong> <code>${b.reason}</code> — ${b.explanation}</li>`)}
            </ul>
          <//>`
        : null
    }
    <${Card} title="Waves" subtitle="One update domain of each availability set per wave, each after its notice.">
      <table class="table">
        <thead>
          <tr>
            <th>Wave</th>
            <th>Update domains</th>
            <th>Hosts</th>
            <th>VMs</th>
            <th>Events</th>
            <th>Notice</th>
            <th>Starts (UTC)</th>
            <th>Ends (UTC)</th>
          </tr>
        </thead>
        <tbody>
          ${plan.waves.map(
            (w) =>
              html`<tr data-testid="preview-wave">
                <td><strong>${w.index + 1}</strong></td>
                <td>
                  ${
                    Object.entries(w.updateDomains)
                      .map(([set, ud]) => `${set} UD ${ud}`)
                      .join(' · ') || 'standalone'
                  }
                </td>
                <td>${w.batches.flatMap((b) => b.steps.map((st) => st.host)).join(', ')}</td>
                <td class="num">${w.vms}</td>
                <td class="num">${w.events.length}</td>
                <td class="num">${duration(w.noticeMs)}</td>
                <td>${clock(w.startAt)}</td>
                <td>${clock(w.expectedEndAt)}</td>
              </tr>`,
          )}
        </tbody>
      </table>
    <//>
    <${Card}
      title="Per VM"
      subtitle="What each VM goes through, and why when it is not memory-preserving."
      testid="preview-vms"
    >
      <div class="table-wrap">
        <table class="table">
          <thead>
            <tr>
              <th>VM</th>
              <th>Host</th>
              <th>Wave</th>
              <th>Path</th>
              <th>Event</th>
              <th class="num">Expected pause</th>
              <th class="num">Budget</th>
              <th>Reasons</th>
            </tr>
          </thead>
          <tbody>
            ${rows.map(({ wave, host, vm }) => {
              const c = vm.classification;
              return html`<tr data-testid="preview-vm" data-vm=${vm.name} data-path=${c.path}>
                <td><strong>${vm.name}</strong></td>
                <td>${host}</td>
                <td class="num">${wave + 1}</td>
                <td>
                  <${Badge}
                    state=${c.preserving ? 'succeeded' : c.path === 'none' ? 'idle' : 'scheduled'}
                    label=${c.path}
                  />
                </td>
                <td>${vm.eventType ?? '—'}</td>
                <td class="num">${c.preserving ? duration(c.expectedPauseMs) : '—'}</td>
                <td class="num">${duration(c.pauseBudgetMs)}</td>
                <td class="reason-cell">
                  ${[...c.reasons, ...c.advisories].map((r) => html`<code class="code">${r}</code> `)}
                  <div class="muted small" data-testid="reason">${c.explanation}</div>
                </td>
              </tr>`;
            })}
          </tbody>
        </table>
      </div>
    <//>
    <details class="card plain">
      <summary>The plan in words (as <code>intermission plan</code> prints it)</summary>
      <pre class="plan-text">${preview.text}</pre>
    </details>
  </div>`;
}

/**
 * The plan page.
 * @param {{ state: State, started: (id: string) => void }} props
 */
export function PlanView({ state, started }) {
  const hosts = useMemo(() => (state.fleet?.hosts ?? []).map((h) => h.name), [state.fleet]);
  const [form, setForm] = useState(
    /** @type {Form} */ ({
      id: freshId(),
      kind: 'host-patch',
      applyTime: '2s',
      hosts,
      toVersion: '',
      pauseBudget: '',
      settle: '',
      maxParallel: '',
      failureBudget: '',
    }),
  );
  const [preview, setPreview] = useState(/** @type {{ body: string, result: PlanPreview } | null} */ (null));
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(/** @type {string | null} */ (null));
  const body = bodyOf(form, hosts.length);
  const bodyText = JSON.stringify(body);
  const fresh = preview !== null && preview.body === bodyText;

  /**
   * @template {keyof Form} K
   * @param {K} key
   * @param {Form[K]} value
   */
  const set = (key, value) => setForm({ ...form, [key]: value });
  /** @param {Event} e */
  const value = (e) => /** @type {HTMLInputElement} */ (e.currentTarget).value;

  /** @param {Event} e */
  const onPreview = (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    api('/v1/plans', { body })
      .then((/** @type {PlanPreview} */ result) => setPreview({ body: bodyText, result }))
      .catch((/** @type {unknown} */ err) => {
        setPreview(null);
        setError(err instanceof Error ? err.message : String(err));
      })
      .finally(() => setBusy(false));
  };
  const onStart = () => {
    setBusy(true);
    setError(null);
    api('/v1/rollouts', { body })
      .then((/** @type {import('../types.js').RolloutSummary} */ rollout) => {
        setPreview(null);
        setForm({ ...form, id: freshId() });
        started(rollout.id);
      })
      .catch((/** @type {unknown} */ err) => setError(err instanceof Error ? err.message : String(err)))
      .finally(() => setBusy(false));
  };

  return html`<div class="split split-form" data-testid="plan-view">
    <form class="card form" onSubmit=${onPreview} data-testid="plan-form">
      <header class="card-head">
        <div>
          <h2>Declare an update</h2>
          <p class="muted">A preview changes nothing.</p>
        </div>
      </header>
      <label
        >Update id<input
          class="input"
          name="id"
          value=${form.id}
          onInput=${(/** @type {Event} */ e) => set('id', value(e))}
          required
      /></label>
      <label
        >Kind
        <select
          class="input"
          name="kind"
          value=${form.kind}
          onChange=${(/** @type {Event} */ e) => set('kind', /** @type {UpdateKind} */ (value(e)))}
        >
          ${KINDS.map((k) => html`<option value=${k.kind}>${k.label}</option>`)}
        </select>
      </label>
      <label
        >Host apply time<input
          class="input"
          name="applyTime"
          value=${form.applyTime}
          placeholder="e.g. 2s"
          onInput=${(/** @type {Event} */ e) => set('applyTime', value(e))}
      /></label>
      ${
        form.kind === 'vmm-update'
          ? html`<label
              >Target VMM build<input
                class="input"
                name="toVersion"
                value=${form.toVersion}
                placeholder="e.g. 9.2.1"
                onInput=${(/** @type {Event} */ e) => set('toVersion', value(e))}
            /></label>`
          : null
      }
      <fieldset>
        <legend>Hosts</legend>
        <div class="host-picks">
          ${hosts.map(
            (h) =>
              html`<label class="check">
                <input
                  type="checkbox"
                  name="host"
                  value=${h}
                  checked=${form.hosts.includes(h)}
                  onChange=${(/** @type {Event} */ e) =>
                    set(
                      'hosts',
                      /** @type {HTMLInputElement} */ (e.currentTarget).checked
                        ? hosts.filter((x) => x === h || form.hosts.includes(x))
                        : form.hosts.filter((x) => x !== h),
                    )}
                />
                ${h}
              </label>`,
          )}
        </div>
      </fieldset>
      <fieldset>
        <legend>Policy <span class="muted small">(empty: defaults)</span></legend>
        <div class="form-grid">
          <label
            >Pause budget<input
              class="input"
              name="pauseBudget"
              value=${form.pauseBudget}
              placeholder="30s"
              onInput=${(/** @type {Event} */ e) => set('pauseBudget', value(e))}
          /></label>
          <label
            >Settle time<input
              class="input"
              name="settle"
              value=${form.settle}
              placeholder="5m (scaled)"
              onInput=${(/** @type {Event} */ e) => set('settle', value(e))}
          /></label>
          <label
            >Hosts in parallel<input
              class="input"
              name="maxParallel"
              type="number"
              min="1"
              value=${form.maxParallel}
              placeholder="no limit"
              onInput=${(/** @type {Event} */ e) => set('maxParallel', value(e))}
          /></label>
          <label
            >Failed hosts allowed<input
              class="input"
              name="failureBudget"
              type="number"
              min="0"
              value=${form.failureBudget}
              placeholder="0"
              onInput=${(/** @type {Event} */ e) => set('failureBudget', value(e))}
          /></label>
        </div>
      </fieldset>
      ${error ? html`<p class="error-text" role="alert" data-testid="plan-error">${error}</p>` : null}
      <div class="actions">
        <button class="btn" type="submit" data-testid="preview" disabled=${busy || form.hosts.length === 0}>
          Preview plan
        </button>
        <button
          class="btn btn-primary"
          type="button"
          data-testid="start"
          disabled=${busy || !fresh}
          onClick=${onStart}
          title=${fresh ? 'Start exactly the plan previewed' : 'Preview first'}
        >
          Start rollout
        </button>
      </div>
      ${preview && !fresh ? html`<p class="muted small">The form changed since the preview: preview again.</p>` : null}
    </form>
    <div>
      ${
        preview
          ? html`<${Preview} preview=${preview.result} />`
          : html`<${Empty} title="No preview yet"
              >Declare an update and preview its plan: waves, events and what each VM goes through.<//
            >`
      }
    </div>
  </div>`;
}
