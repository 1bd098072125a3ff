// The fleet: availability sets as update domain × fault domain grids, standalone VMs, hosts, and
// what happened lately. Every VM and host shows the state derived from events and step status.
import { Badge, Card, Empty, Stat, html } from '../components.js';
import { clock, duration } from '../format.js';
import { currentRollout, hostState, measuredPauses, vmState } from '../store.js';

/** @typedef {import('../types.js').State} State */
/** @typedef {import('../types.js').FleetVm} FleetVm */

/**
 * One VM as a chip: its name, and its state as a colored dot and label (its host while it runs,
 * unless the chip is inside its host's card).
 * @param {{ state: State, vm: FleetVm, inHost?: boolean }} props
 */
function VmChip({ state, vm, inHost = false }) {
  const s = vmState(state, vm);
  return html`<div
    class=${`vm tone-${s.state}`}
    data-testid="vm"
    data-vm=${vm.name}
    data-state=${s.state}
    title=${`${vm.name} on ${vm.host} — ${s.detail}`}
  >
    <span class="dot"></span>
    <span class="vm-name">${vm.name}</span>
    <span class="vm-state">${s.state === 'running' ? (inHost ? 'running' : vm.host) : s.state}</span>
  </div>`;
}

/**
 * An availability set: columns are update domains, rows fault domains.
 * @param {{ state: State, set: { name: string, updateDomains: number, faultDomains: number }, inMaintenance: number | undefined }} props
 */
function SetGrid({ state, set, inMaintenance }) {
  const vms = (state.fleet?.vms ?? []).filter((v) => v.availabilitySet === set.name);
  const uds = Array.from({ length: set.updateDomains }, (_, i) => i);
  const fds = Array.from({ length: set.faultDomains }, (_, i) => i);
  return html`<div class="set" data-testid="set" data-set=${set.name}>
    <div class="set-head">
      <h3>${set.name}</h3>
      <span class="muted"
        >${set.updateDomains} update domains · ${set.faultDomains} fault domains · ${vms.length} VMs</span
      >
    </div>
    <div class="set-grid" style=${{ gridTemplateColumns: `5.5rem repeat(${uds.length}, minmax(9rem, 1fr))` }}>
      <div class="grid-corner"></div>
      ${uds.map(
        (ud) =>
          html`<div class=${`grid-col ${inMaintenance === ud ? 'grid-col-active' : ''}`} data-testid="ud">
            UD ${ud} ${inMaintenance === ud ? html`<span class="pill">in maintenance</span>` : null}
          </div>`,
      )}
      ${fds.map(
        (fd) =>
          html`<div class="grid-row">FD ${fd}</div>
            ${uds.map(
              (ud) =>
                html`<div class=${`grid-cell ${inMaintenance === ud ? 'grid-cell-active' : ''}`}>
                  ${vms
                    .filter((v) => v.updateDomain === ud && v.faultDomain === fd)
                    .map((vm) => html`<${VmChip} state=${state} vm=${vm} />`)}
                </div>`,
            )}`,
      )}
    </div>
  </div>`;
}

/**
 * The overview page.
 * @param {{ state: State, now: number }} props
 */
export function FleetView({ state, now }) {
  const fleet = state.fleet;
  if (!fleet) return html`<${Empty} title="Loading the fleet…" />`;
  const rollout = currentRollout(state);
  const plan = rollout ? state.details[rollout.id]?.plan : null;
  const activeWave =
    rollout && (rollout.status === 'running' || rollout.status === 'paused') && rollout.wavePhase !== 'pending'
      ? plan?.waves[rollout.wave]
      : undefined;
  const live = Object.values(state.events).filter((e) => e.status !== null);
  const pauses = measuredPauses(state);
  const worst = pauses.reduce(
    (w, o) => (w === null || (o.pauseMs ?? 0) / o.pauseBudgetMs > (w.pauseMs ?? 0) / w.pauseBudgetMs ? o : w),
    /** @type {import('../types.js').Operation | null} */ (null),
  );
  const standalone = fleet.vms.filter((v) => v.availabilitySet === null);
  return html`<div class="page" data-testid="fleet-view">
    <div class="stats">
      <${Stat} label="Hosts" value=${fleet.hosts.length} hint=${`${fleet.availabilitySets.length} availability sets`} />
      <${Stat} label="VMs" value=${fleet.vms.length} hint=${`${standalone.length} standalone`} />
      <${Stat}
        label="Rollout"
        testid="stat-rollout"
        value=${rollout ? html`<${Badge} state=${rollout.status} />` : '—'}
        hint=${
          rollout
            ? `${rollout.id} · wave ${Math.min(rollout.wave + 1, rollout.waves)}/${rollout.waves}${rollout.status === 'running' ? ` ${rollout.wavePhase}` : ''}`
            : 'none yet'
        }
      />
      <${Stat}
        label="Live events"
        testid="stat-events"
        value=${live.length}
        hint=${`${live.filter((e) => e.status === 'Scheduled').length} scheduled · ${live.filter((e) => e.status === 'Started').length} started`}
      />
      <${Stat}
        label="Worst pause"
        tone=${worst && (worst.pauseMs ?? 0) > 0.9 * worst.pauseBudgetMs ? 'bad' : undefined}
        value=${worst ? duration(worst.pauseMs) : '—'}
        hint=${worst ? `${worst.vm}, budget ${duration(worst.pauseBudgetMs)}` : 'no pauses measured yet'}
      />
    </div>
    <div class="columns">
      <div class="main-col">
        <${Card}
          title="Availability sets"
          subtitle="At most one update domain of a set is in maintenance at a time."
          testid="sets"
        >
          ${fleet.availabilitySets.map(
            (set) =>
              html`<${SetGrid} state=${state} set=${set} inMaintenance=${activeWave?.updateDomains[set.name]} />`,
          )}
          ${
            standalone.length > 0
              ? html`<div class="set" data-testid="standalone">
                  <div class="set-head">
                    <h3>Standalone VMs</h3>
                    <span class="muted">each is its own scope</span>
                  </div>
                  <div class="chips">${standalone.map((vm) => html`<${VmChip} state=${state} vm=${vm} />`)}</div>
                </div>`
              : null
          }
        <//>
        <${Card} title="Hosts" subtitle="Each host step touches every VM of its host at once." testid="hosts">
          <div class="hosts">
            ${fleet.hosts.map((host) => {
              const s = hostState(state, host.name);
              const vms = fleet.vms.filter((v) => v.host === host.name);
              return html`<div class="host" data-testid="host" data-host=${host.name} data-state=${s.state}>
                <div class="host-head">
                  <strong>${host.name}</strong>
                  <${Badge} state=${s.state} title=${s.detail} />
                </div>
                <div class="muted small">
                  ${
                    Object.entries(host.labels)
                      .map(([k, v]) => `${k}=${v}`)
                      .join(' · ') || 'no labels'
                  }
                </div>
                <div class="chips">${vms.map((vm) => html`<${VmChip} state=${state} vm=${vm} inHost=${true} />`)}</div>
              </div>`;
            })}
          </div>
        <//>
      </div>
      <aside class="side-col">
        <${Card} title="Activity" subtitle="Live from the control plane" testid="activity">
          ${
            state.activity.length === 0
              ? html`<${Empty} title="Quiet">Events and rollout progress appear here as they happen.<//>`
              : html`<ol class="activity">
                  ${state.activity
                    .slice(0, 40)
                    .map(
                      (a) =>
                        html`<li key=${a.seq} class=${`act act-${a.tone}`} data-testid="activity-item">
                          <time>${clock(a.at)}</time><span>${a.text}</span>
                        </li>`,
                    )}
                </ol>`
          }
        <//>
        <${Card} title="Legend" class="legend-card">
          <div class="legend">
            ${['running', 'scheduled', 'started', 'paused', 'migrating', 'restarting', 'failed'].map(
              (s) =>
                html`<span class=${`vm tone-${s}`}
                  ><span class="dot"></span
                  >${s === 'scheduled' ? 'event scheduled' : s === 'started' ? 'event started' : s}</span
                >`,
            )}
          </div>
          <p class="muted small">Server time ${clock(now)} UTC</p>
        <//>
      </aside>
    </div>
  </div>`;
}
