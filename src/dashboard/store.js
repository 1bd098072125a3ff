// The dashboard's state and how live messages change it. Every merge is monotonic (a newer phase,
// status or update time wins), so a snapshot fetched while messages arrive converges whatever the
// order in which the two land.

/** @typedef {import('./types.js').State} State */
/** @typedef {import('./types.js').Action} Action */
/** @typedef {import('./types.js').EventView} EventView */
/** @typedef {import('./types.js').RolloutSummary} RolloutSummary */
/** @typedef {import('./types.js').StepRecord} StepRecord */
/** @typedef {import('./types.js').Operation} Operation */
/** @typedef {import('./types.js').VmState} VmState */
/** @typedef {import('./types.js').HostState} HostState */

/** Activity lines kept: enough for a few waves, bounded. */
const MAX_ACTIVITY = 200;

/** @type {State} */
export const initialState = Object.freeze({
  principal: null,
  connection: 'connecting',
  clockSkewMs: 0,
  timeScale: 1,
  fleet: null,
  events: {},
  rollouts: {},
  details: {},
  operations: {},
  activity: [],
  liveCount: 0,
});

/** @type {Readonly<Record<string, number>>} */
const PHASE_RANK = { Scheduled: 0, Started: 1, Ended: 2, Removed: 3 };
const STEP_RANK = { pending: 0, dispatched: 1, succeeded: 2, failed: 2, cancelled: 2 };

/**
 * @param {EventView | undefined} old
 * @param {EventView} next
 * @returns {EventView}
 */
function mergeEvent(old, next) {
  if (!old) return next;
  if ((PHASE_RANK[next.phase] ?? 0) < (PHASE_RANK[old.phase] ?? 0)) return old;
  return {
    ...next,
    approvedAt: next.approvedAt ?? old.approvedAt,
    approvedBy: next.approvedBy ?? old.approvedBy,
  };
}

/**
 * @param {RolloutSummary | undefined} old
 * @param {RolloutSummary} next
 */
function mergeRollout(old, next) {
  return old && old.updatedAt > next.updatedAt ? old : next;
}

/**
 * @param {StepRecord | undefined} old
 * @param {StepRecord} next
 */
function mergeStep(old, next) {
  return old && STEP_RANK[old.status] > STEP_RANK[next.status] ? old : next;
}

/**
 * @param {State} state
 * @param {readonly EventView[]} events
 */
function withEvents(state, events) {
  const all = { ...state.events };
  for (const e of events) all[e.eventId] = mergeEvent(all[e.eventId], e);
  return { ...state, events: all };
}

/**
 * @param {State} state
 * @param {string} rolloutId
 * @param {readonly StepRecord[]} steps
 */
function withSteps(state, rolloutId, steps) {
  const detail = state.details[rolloutId] ?? { plan: null, steps: {} };
  const merged = { ...detail.steps };
  for (const s of steps) merged[s.id] = mergeStep(merged[s.id], s);
  return { ...state, details: { ...state.details, [rolloutId]: { ...detail, steps: merged } } };
}

/**
 * @param {State} state
 * @param {readonly Operation[]} operations
 */
function withOperations(state, operations) {
  if (operations.length === 0) return state;
  const all = { ...state.operations };
  for (const o of operations) all[`${o.stepId}|${o.vm}`] = o;
  return { ...state, operations: all };
}

/**
 * @param {State} state
 * @param {Omit<import('./types.js').Activity, 'seq' | 'at'>} line
 * @param {import('./types.js').LiveMessage} message
 */
function withActivity(state, line, message) {
  const activity = [{ seq: message.seq, at: message.at, ...line }, ...state.activity].slice(0, MAX_ACTIVITY);
  return { ...state, activity };
}

/**
 * @param {State} state
 * @param {import('./types.js').LiveMessage} message
 * @returns {State}
 */
function applyLive(state, message) {
  const s = { ...state, liveCount: state.liveCount + 1 };
  switch (message.type) {
    case 'hello':
      return s;
    case 'event:scheduled':
    case 'event:approved':
    case 'event:started':
    case 'event:ended':
    case 'event:removed': {
      const e = message.data;
      const verb = message.type.slice('event:'.length);
      const tone = verb === 'removed' && e.removalReason === 'cancelled' ? 'warn' : 'info';
      const by = verb === 'approved' && e.approvedBy ? ` by ${e.approvedBy}` : '';
      return withActivity(
        withEvents(s, [e]),
        { tone, text: `${e.type} event ${verb}${by} for ${e.resources.join(', ')}` },
        message,
      );
    }
    case 'rollout:created':
    case 'rollout:status': {
      const r = message.data;
      const rollouts = { ...s.rollouts, [r.id]: mergeRollout(s.rollouts[r.id], r) };
      /** @type {import('./types.js').Activity['tone']} */
      const tone =
        r.status === 'halted' || r.status === 'cancelled' ? 'bad' : r.status === 'completed' ? 'good' : 'info';
      const text =
        message.type === 'rollout:created'
          ? `Rollout ${r.id} created: ${r.waves} waves, ${r.hosts} hosts`
          : `Rollout ${r.id} ${r.status}${r.status === 'running' ? `, wave ${Math.min(r.wave + 1, r.waves)}/${r.waves} ${r.wavePhase}` : ''}${r.reason ? ` (${r.reason})` : ''}`;
      return withActivity({ ...s, rollouts }, { tone, text }, message);
    }
    case 'rollout:wave:published':
      return withActivity(
        s,
        {
          tone: 'info',
          text: `Rollout ${message.data.rollout}: wave ${message.data.wave + 1} published (${message.data.events} events)`,
        },
        message,
      );
    case 'rollout:wave:settled':
      return withActivity(
        s,
        {
          tone: message.data.failedHosts > 0 ? 'bad' : 'good',
          text: `Rollout ${message.data.rollout}: wave ${message.data.wave + 1} settled, ${message.data.failedHosts} failed hosts`,
        },
        message,
      );
    case 'rollout:step:dispatched': {
      const step = message.data.step;
      return withActivity(
        withSteps(s, step.rolloutId, [step]),
        { tone: 'info', text: `${step.host}: host step dispatched (wave ${step.wave + 1})` },
        message,
      );
    }
    case 'rollout:step:cancelled': {
      const step = message.data.step;
      return withActivity(
        withSteps(s, step.rolloutId, [step]),
        { tone: 'info', text: `${step.host}: ${step.cancellation?.reason ?? 'host step cancelled by an operator'}` },
        message,
      );
    }
    case 'rollout:step:finished': {
      const { step, vms } = message.data;
      /** @type {Operation[]} */
      const operations = vms.map((vm) => ({
        rolloutId: step.rolloutId,
        stepId: step.id,
        vm: vm.name,
        host: step.host,
        path: vm.path,
        outcome: vm.outcome,
        pauseMs: vm.pauseMs,
        pauseBudgetMs: vm.pauseBudgetMs,
        clockOffsetMs: vm.clockOffsetMs,
        clockResidualMs: vm.clockResidualMs,
        at: step.finishedAt ?? Date.parse(message.at),
      }));
      const paused = vms.filter((v) => v.pauseMs !== null);
      const longest = paused.reduce((m, v) => Math.max(m, v.pauseMs ?? 0), 0);
      return withActivity(
        withOperations(withSteps(s, step.rolloutId, [step]), operations),
        {
          tone: step.status === 'succeeded' ? 'good' : 'bad',
          text: `${step.host}: host step ${step.status}${paused.length ? `, ${paused.length} VMs paused, longest ${Math.round(longest)} ms` : ''}`,
        },
        message,
      );
    }
    case 'rollout:error':
      return withActivity(
        s,
        { tone: 'warn', text: `Rollout ${message.data.rollout}: ${message.data.code}: ${message.data.message}` },
        message,
      );
    default:
      return s;
  }
}

/**
 * The reducer of the dashboard.
 * @param {State} state
 * @param {Action} action
 * @returns {State}
 */
export function reduce(state, action) {
  switch (action.type) {
    case 'reset':
      return initialState;
    case 'principal':
      return { ...state, principal: action.principal };
    case 'connection':
      return { ...state, connection: action.connection };
    case 'health':
      return { ...state, clockSkewMs: Date.parse(action.now) - Date.now(), timeScale: action.timeScale };
    case 'fleet':
      return { ...state, fleet: action.fleet };
    case 'events':
      return withEvents(state, action.events);
    case 'rollouts': {
      const rollouts = { ...state.rollouts };
      for (const r of action.rollouts) rollouts[r.id] = mergeRollout(rollouts[r.id], r);
      return { ...state, rollouts };
    }
    case 'detail': {
      const id = action.rollout.id;
      const rollouts = { ...state.rollouts, [id]: mergeRollout(state.rollouts[id], action.rollout) };
      const withPlan = {
        ...state,
        rollouts,
        details: {
          ...state.details,
          [id]: { plan: action.plan ?? state.details[id]?.plan ?? null, steps: state.details[id]?.steps ?? {} },
        },
      };
      return withOperations(withSteps(withPlan, id, action.steps), action.operations);
    }
    case 'live':
      return applyLive(state, action.message);
    default:
      return state;
  }
}

// --- Derived views -----------------------------------------------------------------------------

const ACTIVE = new Set(['running', 'paused', 'halted']);

/**
 * Rollouts, newest first.
 * @param {State} state
 * @returns {RolloutSummary[]}
 */
export function rolloutsNewestFirst(state) {
  return Object.values(state.rollouts).sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
}

/**
 * The rollout the operator most likely watches: the newest active one, else the newest.
 * @param {State} state
 * @returns {RolloutSummary | undefined}
 */
export function currentRollout(state) {
  const all = rolloutsNewestFirst(state);
  return all.find((r) => ACTIVE.has(r.status)) ?? all[0];
}

/**
 * The planned VM of a rollout's plan, with its host step's wave.
 * @param {import('./types.js').Plan | null | undefined} plan
 * @param {string} vm
 * @returns {{ vm: import('./types.js').PlannedVm, host: string, wave: number } | undefined}
 */
export function plannedVm(plan, vm) {
  for (const wave of plan?.waves ?? []) {
    for (const batch of wave.batches) {
      for (const step of batch.steps) {
        const found = step.vms.find((v) => v.name === vm);
        if (found) return { vm: found, host: step.host, wave: wave.index };
      }
    }
  }
  return undefined;
}

/**
 * The steps of a rollout, by host, latest wave last.
 * @param {State} state
 * @param {string} rolloutId
 * @returns {StepRecord[]}
 */
export function stepsOf(state, rolloutId) {
  return Object.values(state.details[rolloutId]?.steps ?? {}).sort(
    (a, b) => a.wave - b.wave || a.batch - b.batch || (a.host < b.host ? -1 : 1),
  );
}

/**
 * Live (not removed) events that name a VM.
 * @param {State} state
 * @param {string} vm
 * @returns {EventView[]}
 */
export function liveEventsOf(state, vm) {
  return Object.values(state.events).filter((e) => e.status !== null && e.resources.includes(vm));
}

/**
 * The latest measured operation of each VM.
 * @param {State} state
 * @returns {Map<string, Operation>}
 */
export function latestOperations(state) {
  /** @type {Map<string, Operation>} */
  const latest = new Map();
  for (const o of Object.values(state.operations)) {
    const seen = latest.get(o.vm);
    if (!seen || seen.at <= o.at) latest.set(o.vm, o);
  }
  return latest;
}

/** @type {Record<string, VmState>} */
const PATH_STATES = {
  pause: 'paused',
  'in-place-migration': 'migrating',
  redeploy: 'migrating',
  reboot: 'restarting',
};

/**
 * What a VM is going through, derived from the events its scope sees and the status of the host
 * step of its host: a dispatched step puts it in the state of its planned path (paused, migrating,
 * restarting); a failed measurement or step makes it failed until a later one succeeds; otherwise
 * a Started or Scheduled event of its scope shows.
 * @param {State} state
 * @param {import('./types.js').FleetVm} vm
 * @returns {{ state: VmState, detail: string }}
 */
export function vmState(state, vm) {
  const rollout = currentRollout(state);
  if (rollout) {
    const detail = state.details[rollout.id];
    const planned = plannedVm(detail?.plan, vm.name);
    if (planned) {
      const step = Object.values(detail?.steps ?? {}).find((s) => s.host === planned.host && s.wave === planned.wave);
      const path = planned.vm.classification.path;
      if (step?.status === 'dispatched' && PATH_STATES[path]) {
        return { state: PATH_STATES[path], detail: `${path} on ${step.host} (rollout ${rollout.id})` };
      }
      if (step?.status === 'failed') return { state: 'failed', detail: step.error ?? 'host step failed' };
    }
  }
  const op = latestOperations(state).get(vm.name);
  if (op && op.outcome === 'failed') return { state: 'failed', detail: `${op.path} failed in ${op.rolloutId}` };
  const events = liveEventsOf(state, vm.name);
  const started = events.find((e) => e.status === 'Started');
  if (started) return { state: 'started', detail: `${started.type} event started` };
  const scheduled = events.find((e) => e.status === 'Scheduled');
  if (scheduled) {
    return {
      state: 'scheduled',
      detail: `${scheduled.type} not before ${scheduled.notBefore}${scheduled.approvedBy ? `, approved by ${scheduled.approvedBy}` : ''}`,
    };
  }
  return { state: 'running', detail: 'running' };
}

/**
 * What a host is going through: its step in the current rollout, or the events of its VMs.
 * @param {State} state
 * @param {string} host
 * @returns {{ state: HostState, detail: string }}
 */
export function hostState(state, host) {
  const rollout = currentRollout(state);
  if (rollout) {
    const steps = stepsOf(state, rollout.id).filter((s) => s.host === host);
    if (steps.some((s) => s.status === 'dispatched')) return { state: 'updating', detail: `step of ${rollout.id}` };
    const last = steps.filter((s) => s.status !== 'pending').at(-1);
    if (last?.status === 'failed') return { state: 'failed', detail: last.error ?? 'step failed' };
    if (last?.status === 'succeeded') return { state: 'updated', detail: `updated by ${rollout.id}` };
  }
  const vms = (state.fleet?.vms ?? []).filter((v) => v.host === host);
  if (vms.some((v) => liveEventsOf(state, v.name).length > 0)) return { state: 'scheduled', detail: 'events out' };
  return { state: 'idle', detail: 'no maintenance' };
}

/**
 * Operations with a measured pause, newest first.
 * @param {State} state
 * @returns {Operation[]}
 */
export function measuredPauses(state) {
  return Object.values(state.operations)
    .filter((o) => o.pauseMs !== null)
    .sort((a, b) => b.at - a.at || (a.vm < b.vm ? -1 : 1));
}

/**
 * A histogram of values: about `bins` equal bins of a round width, from the bin of the smallest
 * value to that of the largest, so that a tight cluster (pauses near the apply time) shows its shape.
 * @param {readonly number[]} values
 * @param {number} [bins]
 * @returns {{ edges: number[], counts: number[], width: number }}
 */
export function histogram(values, bins = 12) {
  if (values.length === 0) return { edges: [0], counts: [0], width: 1 };
  const min = Math.min(...values);
  const max = Math.max(...values);
  const width = niceStep(Math.max(max - min, max * 0.1, 1) / bins);
  const low = Math.floor(min / width) * width;
  const n = Math.floor((max - low) / width) + 1;
  const counts = new Array(n).fill(0);
  for (const v of values) counts[Math.min(n - 1, Math.floor((v - low) / width))]++;
  return { edges: counts.map((_, i) => low + i * width), counts, width };
}

/**
 * A round bin width (1, 2 or 5 times a power of ten) at least `raw`.
 * @param {number} raw
 */
function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}
