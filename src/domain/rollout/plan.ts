import { IntermissionError } from '../errors.js';
import { eventTiming, minimumNotice, type EventTiming } from '../events/notice.js';
import { FleetIndex } from '../fleet.js';
import { HOUR, isRenderableTime } from '../time.js';
import type { EventType, Fleet, ScopeId, Vm } from '../vocabulary.js';
import { classifyVm, targetLoadProblem } from './classify.js';
import { ROLLOUT_LIMITS, planTimeProblem } from './limits.js';
import { guidsAfter } from './internal/ids.js';
import { assignWaves, packBatches, type WaveHost } from './internal/waves.js';
import {
  ADVISORY_CODES,
  PLAN_FORMAT_VERSION,
  REASON_CODES,
  UPDATE_IMPACTS,
  VM_PATHS,
  type AdvisoryCode,
  type Batch,
  type BlockedHost,
  type HostSelector,
  type HostStep,
  type Plan,
  type PlannedEvent,
  type PlannedVm,
  type ReasonCode,
  type ResolvedPolicy,
  type ResolvedUpdate,
  type RolloutPolicy,
  type Update,
  type VmCapabilities,
  type VmClassification,
  type VmPath,
  type Wave,
} from './model.js';
import { parseRolloutPolicy, resolveFailureBudget, resolvePolicy, resolveUpdate } from './schema.js';
import { createHostStep, stepDurationMs } from './steps.js';
import { nextWindowStart } from './windows.js';

/** Everything the planner reads. Nothing else: no clock, no store, no network. */
export interface PlanRolloutInput {
  /** The fleet, or an index of it already built. */
  readonly fleet: Fleet | FleetIndex;
  readonly update: Update;
  readonly policy?: RolloutPolicy;
  /** The time the plan is made for (ms since the epoch): the first events are published then. */
  readonly now: number;
  /**
   * Capability facts by VM name, from the hypervisor drivers. A VM without an entry falls back with
   * `CAPABILITIES_UNKNOWN` when the update has a memory-preserving path.
   */
  readonly capabilities?: ReadonlyMap<string, VmCapabilities>;
  /** Notice and time scale; default: production timing. */
  readonly timing?: EventTiming;
}

/** What tenants are told, in every event the plan publishes (Azure's platform wording). */
export const PLANNED_EVENT_DESCRIPTION = 'Host server is undergoing maintenance.';

/** A host on its way into the plan. */
interface HostDraft extends WaveHost {
  readonly name: string;
  readonly vms: readonly Vm[];
  readonly scopes: readonly ScopeId[];
  /** Set id of each VM, -1 for a standalone VM. */
  readonly sets: Int32Array;
  readonly classes: readonly VmClassification[];
  readonly pausedVms: number;
  readonly durationMs: number;
  /** The event types its VMs see. */
  readonly eventTypes: ReadonlySet<EventType>;
}

interface EventGroup {
  readonly scope: ScopeId;
  readonly type: EventType;
  readonly eventId: string;
  maxPauseMs: number;
  /**
   * Members counted while the wave is built; `resources` is then allocated at this exact size and
   * filled from the end, counting back down to 0.
   */
  count: number;
  resources: string[];
}

/**
 * Plans a rollout: pure, synchronous and deterministic (hosts, VMs, sets and events are taken in
 * name order, so the order of the fleet's lists does not matter).
 *
 * - **Hosts**: those the update selects, by name. A host holding VMs of one availability set in
 *   several update domains is left out as {@link BlockedHost} (`UPDATE_DOMAINS_SHARE_HOST`): its step
 *   touches every VM at once and would break invariant 2. A hot patch touches no VM and blocks none.
 * - **VMs**: each classified by {@link classifyVm}. A host step keeps running for the VMs that
 *   cannot take the preserving path: they take the policy's fallback (restarted on the host, or moved
 *   off it before the step), so one VM never turns its neighbours' pause into a reboot.
 * - **Waves**: no availability set has two update domains in one wave (see `assignWaves`). A wave's
 *   steps run in batches within `maxHostsInParallel` and `maxVmsPausedAtOnce`; every VM a step pauses
 *   counts as paused for the whole batch.
 * - **Times**: a wave's events are published at `publishAt` and all carry `NotBefore = startAt`, at
 *   least the minimum notice of each type later (or the policy's notice), with `startAt` inside a
 *   maintenance window. Batches then follow one another; the next wave is published once the last
 *   batch is expected to end plus the settle time. Events are not published ahead of the previous
 *   wave: an early approval would otherwise start a second update domain.
 * - **Events**: one per scope, wave and event type; `Resources` are the scope's VMs in the wave with
 *   that type; ids are derived from the update id, so a replan yields the same ids.
 *
 * Throws INVALID_INPUT for an invalid update or policy, a pause budget naming an unknown set or VM,
 * a host that must pause more VMs at once than `maxVmsPausedAtOnce`, or a wave no window can take;
 * NOT_FOUND for a selected host name that is not in the fleet.
 */
export function planRollout(input: PlanRolloutInput): Plan {
  // Virtual clocks may stand between two milliseconds; every time of a plan is a whole one.
  const now = Math.floor(input.now);
  if (!isRenderableTime(now)) {
    throw new IntermissionError('INVALID_INPUT', `\`now\` must be a time from 1970 to 9999 in ms, got ${input.now}`);
  }
  const timing = input.timing ?? eventTiming();
  const update = resolveUpdate(input.update);
  const rawPolicy = parseRolloutPolicy(input.policy ?? {});
  const policy = resolvePolicy(rawPolicy, timing.scale);
  const fleet = input.fleet instanceof FleetIndex ? input.fleet.fleet : input.fleet;
  checkBudgetNames(policy, fleet);
  const hostNames = selectHosts(fleet, update.hosts);

  const { drafts, blocked, sets, selectedVms } = draftHosts({
    fleet,
    hostNames,
    update,
    policy,
    classify: classifier(update, policy, input.capabilities),
  });
  const assignment = assignWaves(drafts, sets.names.length);
  const byWave: HostDraft[][] = Array.from({ length: assignment.waveCount }, () => []);
  drafts.forEach((d, i) => (byWave[assignment.waveOf[i] as number] as HostDraft[]).push(d));

  const context: WaveContext = {
    update,
    policy,
    timing,
    sets,
    waveCount: byWave.length,
    // Event ids: GUIDs of `<update id>/<wave>/<scope>/<type>`, the same on every replan.
    guidOf: guidsAfter(`${update.id}/`),
  };
  const tally = newTally();
  const waves: Wave[] = [];
  let cursor = now;
  byWave.forEach((hosts, w) => {
    const wave = planWave(context, w, hosts, assignment.domains[w] as Int32Array, cursor, tally);
    waves.push(wave);
    cursor = wave.expectedEndAt + policy.settleMs;
  });

  const expectedEndAt = waves.length === 0 ? now : (waves[waves.length - 1] as Wave).expectedEndAt;
  const blockedVms = blocked.reduce((sum, b) => sum + b.vms.length, 0);
  const plan: Plan = Object.freeze({
    formatVersion: PLAN_FORMAT_VERSION,
    id: update.id,
    plannedAt: now,
    update,
    policy,
    timeScale: timing.scale.factor,
    failureBudget: resolveFailureBudget(rawPolicy.failureBudget, drafts.length),
    waves: Object.freeze(waves),
    blocked: Object.freeze(blocked),
    expectedEndAt,
    stats: Object.freeze({
      hosts: hostNames.length,
      plannedHosts: drafts.length,
      blockedHosts: blocked.length,
      vms: selectedVms,
      plannedVms: selectedVms - blockedVms,
      blockedVms,
      waves: waves.length,
      batches: tally.batches,
      events: tally.events,
      byPath: Object.freeze(tally.byPath),
      byReason: Object.freeze(tally.byReason),
      byAdvisory: Object.freeze(tally.byAdvisory),
      peakPausedVms: tally.peakPaused,
      expectedMakespanMs: expectedEndAt - now,
      lowerBoundMs: tally.lowerBound,
    }),
  });
  // The schema's bounds keep real plans far inside the renderable range; this refuses the rest (a
  // window in the year 9999) before anything is published or stored.
  const problem = planTimeProblem(plan);
  if (problem !== null) {
    throw new IntermissionError('INVALID_INPUT', `the plan cannot be carried out: ${problem}`, {
      details: { problem },
    });
  }
  return plan;
}

/** Availability sets of the selected hosts, with integer ids in name order. */
interface SetIndex {
  readonly names: readonly string[];
  readonly ids: ReadonlyMap<string, number>;
  /** `set:<name>` by id, made once. */
  readonly scopes: readonly ScopeId[];
}

/**
 * Gathers, sorts and classifies the VMs of each selected host, and leaves out the hosts that hold
 * two update domains of a set (when the update puts VMs in maintenance).
 */
function draftHosts(input: {
  fleet: Fleet;
  hostNames: readonly string[];
  update: ResolvedUpdate;
  policy: ResolvedPolicy;
  classify: (vm: Vm) => VmClassification;
}): { drafts: HostDraft[]; blocked: BlockedHost[]; sets: SetIndex; selectedVms: number } {
  const { hostNames, update, policy } = input;
  const impact = UPDATE_IMPACTS[update.kind];
  const slot = new Map<string, number>();
  hostNames.forEach((h, i) => slot.set(h, i));
  const vmsOf: Vm[][] = hostNames.map(() => []);
  const setNames = new Set<string>();
  for (const vm of input.fleet.vms) {
    const i = slot.get(vm.host);
    if (i === undefined) continue;
    (vmsOf[i] as Vm[]).push(vm);
    if (vm.availabilitySet !== undefined) setNames.add(vm.availabilitySet);
  }
  const names = [...setNames].sort(byText);
  const ids = new Map<string, number>();
  const scopes: ScopeId[] = [];
  names.forEach((name, id) => {
    ids.set(name, id);
    scopes.push(`set:${name}`);
  });

  const drafts: HostDraft[] = [];
  const blocked: BlockedHost[] = [];
  let selectedVms = 0;
  // Which host last saw each set, and in which update domain: conflict checks in O(VMs).
  const seenOn = new Int32Array(names.length).fill(-1);
  const seenUd = new Int32Array(names.length);
  hostNames.forEach((name, h) => {
    const vms = (vmsOf[h] as Vm[]).sort(byName);
    selectedVms += vms.length;
    const vmScopes = new Array<ScopeId>(vms.length);
    const vmSets = new Int32Array(vms.length).fill(-1);
    const constraints: number[] = [];
    let split = false;
    vms.forEach((vm, k) => {
      if (vm.availabilitySet === undefined) {
        vmScopes[k] = `vm:${vm.name}`;
        return;
      }
      const ud = vm.updateDomain;
      if (!Number.isSafeInteger(ud) || ud < 0) {
        throw new IntermissionError('INVALID_INPUT', `VM ${vm.name} has update domain ${ud}`);
      }
      const id = ids.get(vm.availabilitySet) as number;
      vmScopes[k] = scopes[id] as ScopeId;
      vmSets[k] = id;
      if (!impact.inMaintenance) return;
      if (seenOn[id] !== h) {
        seenOn[id] = h;
        seenUd[id] = ud;
        constraints.push(id, ud);
      } else if (seenUd[id] !== ud) {
        split = true;
      }
    });
    if (split) {
      blocked.push(blockedHost(name, vms));
      return;
    }
    const classes = vms.map(input.classify);
    const counts: Record<VmPath, number> = { none: 0, 'in-place-migration': 0, pause: 0, reboot: 0, redeploy: 0 };
    const eventTypes = new Set<EventType>();
    for (const c of classes) {
      counts[c.path]++;
      if (c.eventType !== null) eventTypes.add(c.eventType);
    }
    const pausedVms = counts['in-place-migration'] + counts.pause;
    if (policy.maxVmsPausedAtOnce !== null && pausedVms > policy.maxVmsPausedAtOnce) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `host ${name} pauses ${pausedVms} VMs at once, more than maxVmsPausedAtOnce (${policy.maxVmsPausedAtOnce}): raise the limit to at least ${pausedVms}`,
        { details: { host: name, pausedVms, maxVmsPausedAtOnce: policy.maxVmsPausedAtOnce } },
      );
    }
    drafts.push({
      name,
      vms,
      scopes: vmScopes,
      sets: vmSets,
      classes,
      constraints,
      pausedVms,
      durationMs: stepDurationMs(impact.stepKind, update, counts),
      eventTypes,
    });
  });
  return { drafts, blocked, sets: { names, ids, scopes }, selectedVms };
}

/** What every wave needs to know. */
interface WaveContext {
  readonly update: ResolvedUpdate;
  readonly policy: ResolvedPolicy;
  readonly timing: EventTiming;
  readonly sets: SetIndex;
  readonly waveCount: number;
  readonly guidOf: (suffix: string) => string;
}

/** Running totals over the waves, for the plan's stats. */
interface Tally {
  readonly byPath: Record<VmPath, number>;
  readonly byReason: Record<ReasonCode, number>;
  readonly byAdvisory: Record<AdvisoryCode, number>;
  batches: number;
  events: number;
  peakPaused: number;
  lowerBound: number;
}

function newTally(): Tally {
  return {
    byPath: zeroCounts(VM_PATHS),
    byReason: zeroCounts(Object.keys(REASON_CODES) as ReasonCode[]),
    byAdvisory: zeroCounts(Object.keys(ADVISORY_CODES) as AdvisoryCode[]),
    batches: 0,
    events: 0,
    peakPaused: 0,
    lowerBound: 0,
  };
}

/**
 * One wave: its hosts in batches, its notice and start (inside a window, no earlier than `cursor`
 * plus the notice), its steps and its events.
 */
function planWave(
  context: WaveContext,
  w: number,
  waveHosts: HostDraft[],
  domains: Int32Array,
  cursor: number,
  tally: Tally,
): Wave {
  const { update, policy, timing, sets } = context;
  // Longest steps first, so that steps of similar length share a batch (the sort is stable).
  const hosts = waveHosts.sort((a, b) => b.durationMs - a.durationMs);
  const batchOf = packBatches(hosts, policy.maxHostsInParallel, policy.maxVmsPausedAtOnce);

  let notice = policy.noticeMs;
  const types = new Set<EventType>();
  for (const h of hosts) for (const type of h.eventTypes) types.add(type);
  for (const type of types) notice = Math.max(notice, minimumNotice(type, timing));
  const startAt = nextWindowStart(policy.windows, cursor + notice);
  if (startAt === undefined) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `no maintenance window opens at or after ${timeText(cursor + notice)} for wave ${w + 1} of ${context.waveCount}`,
      { details: { wave: w, earliestStart: cursor + notice } },
    );
  }
  if (startAt - (cursor + notice) > ROLLOUT_LIMITS.maxWindowWaitMs) {
    const days = ROLLOUT_LIMITS.maxWindowWaitMs / (24 * HOUR);
    throw new IntermissionError(
      'INVALID_INPUT',
      `wave ${w + 1} of ${context.waveCount} would wait until ${timeText(startAt)} for a maintenance window, more than ${days} days after it could start (${timeText(cursor + notice)}); give a window that opens sooner`,
      {
        details: {
          wave: w,
          earliestStart: cursor + notice,
          windowStart: startAt,
          maxWaitMs: ROLLOUT_LIMITS.maxWindowWaitMs,
        },
      },
    );
  }
  const publishAt = startAt - notice;

  // Batch durations and start times.
  const batchCount = hosts.length === 0 ? 0 : (batchOf[hosts.length - 1] as number) + 1;
  const batchDuration = new Array<number>(batchCount).fill(0);
  const batchPaused = new Array<number>(batchCount).fill(0);
  hosts.forEach((h, i) => {
    const b = batchOf[i] as number;
    batchDuration[b] = Math.max(batchDuration[b] as number, h.durationMs);
    batchPaused[b] = (batchPaused[b] as number) + h.pausedVms;
  });
  const batchStart: number[] = [];
  let t = startAt;
  for (const d of batchDuration) {
    batchStart.push(t);
    t += d;
  }
  const longest = batchDuration.reduce((a, b) => Math.max(a, b), 0);

  // Steps, and the event group of each VM with an event: one group per scope and type. Groups of
  // set scopes are kept by set id (ids follow names), of standalone VMs by scope; members go to one
  // flat list and are handed out to exact-size arrays afterwards.
  const setGroups = new Array<EventGroup[] | undefined>(sets.names.length);
  const soloGroups = new Map<ScopeId, EventGroup[]>();
  const memberNames: string[] = [];
  const memberGroups: EventGroup[] = [];
  const stepsByBatch: HostStep[][] = batchDuration.map(() => []);
  let waveVms = 0;
  hosts.forEach((h, i) => {
    const b = batchOf[i] as number;
    const vms = h.vms.map((vm, k): PlannedVm => {
      const c = h.classes[k] as VmClassification;
      const scope = h.scopes[k] as ScopeId;
      const type = c.eventType;
      let eventId: string | null = null;
      if (type !== null) {
        const set = h.sets[k] as number;
        const list = set >= 0 ? setGroups[set] : soloGroups.get(scope);
        let group: EventGroup | undefined;
        if (list) for (const g of list) if (g.type === type) group = g;
        if (!group) {
          group = {
            scope,
            type,
            eventId: context.guidOf(`${w}/${scope}/${type}`),
            maxPauseMs: 0,
            count: 0,
            resources: [],
          };
          if (list) list.push(group);
          else if (set >= 0) setGroups[set] = [group];
          else soloGroups.set(scope, [group]);
        }
        group.count++;
        memberNames.push(vm.name);
        memberGroups.push(group);
        if (c.expectedPauseMs > group.maxPauseMs) group.maxPauseMs = c.expectedPauseMs;
        eventId = group.eventId;
      }
      return Object.freeze({
        name: vm.name,
        scope,
        updateDomain: vm.updateDomain,
        eventType: type,
        eventId,
        notBefore: type === null ? null : startAt,
        durationInSeconds: type === null ? -1 : durationInSeconds(type, c.expectedPauseMs),
        classification: c,
      });
    });
    waveVms += vms.length;
    (stepsByBatch[b] as HostStep[]).push(
      hostStep(update, {
        host: h.name,
        wave: w,
        batch: b,
        expectedStartAt: batchStart[b] as number,
        expectedDurationMs: h.durationMs,
        applyMs: update.expectedApplyMs,
        pausedVms: h.pausedVms,
        vms: Object.freeze(vms),
      }),
    );
    for (const c of h.classes) {
      tally.byPath[c.path]++;
      if (c.reasons.length > 0) for (const r of c.reasons) tally.byReason[r]++;
      if (c.advisories.length > 0) for (const a of c.advisories) tally.byAdvisory[a]++;
    }
  });
  memberGroups.forEach((g, m) => {
    if (g.resources.length === 0) g.resources = new Array<string>(g.count);
    g.resources[--g.count] = memberNames[m] as string;
  });

  // Events sorted by scope ("set:…" before "vm:…", then by name), then type; resources by name.
  const owner = `rollout:${update.id}/wave:${w}`;
  const events: PlannedEvent[] = [];
  const addEvents = (list: EventGroup[]): void => {
    if (list.length > 1) list.sort((a, b) => byText(a.type, b.type));
    for (const g of list) {
      events.push(
        Object.freeze({
          eventId: g.eventId,
          scope: g.scope,
          type: g.type,
          resources: Object.freeze(g.resources.length > 1 ? g.resources.sort(byText) : g.resources),
          createdAt: publishAt,
          notBefore: startAt,
          durationInSeconds: durationInSeconds(g.type, g.maxPauseMs),
          description: PLANNED_EVENT_DESCRIPTION,
          source: 'Platform' as const,
          owner,
          wave: w,
        }),
      );
    }
  };
  for (const list of setGroups) if (list) addEvents(list);
  for (const scope of [...soloGroups.keys()].sort(byText)) addEvents(soloGroups.get(scope) as EventGroup[]);

  const batches: Batch[] = stepsByBatch.map((steps, b) =>
    Object.freeze({
      index: b,
      expectedStartAt: batchStart[b] as number,
      expectedDurationMs: batchDuration[b] as number,
      pausedVms: batchPaused[b] as number,
      steps: Object.freeze(steps.sort((x, y) => byText(x.host, y.host))),
    }),
  );
  const updateDomains: Record<string, number> = {};
  for (let s = 0; s < sets.names.length; s++) {
    if ((domains[s] as number) >= 0) updateDomains[sets.names[s] as string] = domains[s] as number;
  }

  tally.batches += batches.length;
  tally.events += events.length;
  tally.peakPaused = batchPaused.reduce((a, b) => Math.max(a, b), tally.peakPaused);
  tally.lowerBound += notice + longest;
  return Object.freeze({
    index: w,
    publishAt,
    startAt,
    expectedEndAt: t,
    noticeMs: notice,
    longestStepMs: longest,
    hosts: hosts.length,
    vms: waveVms,
    updateDomains: Object.freeze(updateDomains),
    batches: Object.freeze(batches),
    events: Object.freeze(events),
  });
}

/**
 * The makespan lower bound of a plan: the sum over waves of the notice plus the longest host step.
 * However the batches of a wave are arranged, it cannot end sooner than that after its events
 * appear, and waves do not overlap.
 */
export function planLowerBound(plan: Plan): number {
  let sum = 0;
  for (const w of plan.waves) sum += w.noticeMs + w.longestStepMs;
  return sum;
}

/** DurationInSeconds of an event: the pause rounded up to whole seconds for Freeze, else -1. */
export function durationInSeconds(type: EventType, pauseMs: number): number {
  return type === 'Freeze' ? Math.max(1, Math.ceil(pauseMs / 1000)) : -1;
}

type StepFields = Omit<HostStep, 'kind'>;

function hostStep(update: ResolvedUpdate, f: StepFields): HostStep {
  switch (UPDATE_IMPACTS[update.kind].stepKind) {
    case 'hot-patch':
      return createHostStep({ kind: 'hot-patch', ...f });
    case 'migrate-in-place':
      return createHostStep({
        kind: 'migrate-in-place',
        ...f,
        migrationPauseMs: update.durations.inPlaceMigrationPauseMs,
        vmm: update.vmm,
      });
    case 'freeze-apply-resume':
      return createHostStep({
        kind: 'freeze-apply-resume',
        ...f,
        pauseMs: update.expectedApplyMs + update.durations.resumeOverheadMs,
      });
    case 'reboot':
      return createHostStep({ kind: 'reboot', ...f, hostRebootMs: update.durations.hostRebootMs });
    case 'redeploy':
      return createHostStep({ kind: 'redeploy', ...f });
  }
}

/** Classifies VMs, sharing one frozen classification between VMs with the same facts. */
function classifier(
  update: ResolvedUpdate,
  policy: ResolvedPolicy,
  capabilities: ReadonlyMap<string, VmCapabilities> | undefined,
): (vm: Vm) => VmClassification {
  const cache = new Map<number | string, VmClassification>();
  const setBudgets = budgetMap(policy.pauseBudgets.sets);
  const vmBudgets = budgetMap(policy.pauseBudgets.vms);
  const devicesMatter = (UPDATE_IMPACTS[update.kind].requires as readonly string[]).includes('migratableDevices');
  return (vm) => {
    let budget = policy.pauseBudgetMs;
    if (setBudgets && vm.availabilitySet !== undefined)
      budget = Math.min(budget, setBudgets.get(vm.availabilitySet) ?? budget);
    if (vmBudgets) budget = Math.min(budget, vmBudgets.get(vm.name) ?? budget);
    const caps = capabilities?.get(vm.name);
    // Numeric keys for the common case, text only when blocking devices show in the explanation.
    let key: number | string;
    if (caps === undefined) key = budget * 16 + 8;
    else {
      key =
        budget * 16 +
        (caps.sharedMemory === true ? 1 : 0) +
        (caps.migratableDevices === true ? 2 : 0) +
        (caps.guestAgent === true ? 4 : 0);
      if (devicesMatter && caps.migratableDevices !== true && caps.blockingDevices && caps.blockingDevices.length > 0) {
        key = `${key}/${caps.blockingDevices.join('\u0000')}`;
      }
      // A target build that cannot load the VM shows its reason in the explanation.
      const load = targetLoadProblem(update, caps);
      if (load !== null) key = `${key}/load/${load}`;
    }
    let c = cache.get(key);
    if (!c) {
      c = classifyVm({
        update,
        capabilities: caps,
        pauseBudgetMs: budget,
        fallback: policy.fallback,
        requireGuestAgent: policy.requireGuestAgent,
      });
      cache.set(key, c);
    }
    return c;
  };
}

function budgetMap(record: Readonly<Record<string, number>>): Map<string, number> | null {
  const entries = Object.entries(record);
  return entries.length === 0 ? null : new Map(entries);
}

function checkBudgetNames(policy: ResolvedPolicy, fleet: Fleet): void {
  // Look the few named sets and VMs up in one pass; no index of the whole fleet is built.
  const sets = new Set(Object.keys(policy.pauseBudgets.sets));
  const vms = new Set(Object.keys(policy.pauseBudgets.vms));
  if (sets.size === 0 && vms.size === 0) return;
  for (const s of fleet.availabilitySets) sets.delete(s.name);
  for (const vm of fleet.vms) {
    if (sets.size === 0 && vms.size === 0) return;
    vms.delete(vm.name);
    if (vm.availabilitySet !== undefined) sets.delete(vm.availabilitySet);
  }
  const unknown = [...[...sets].map((s) => `set ${s}`), ...[...vms].map((v) => `VM ${v}`)];
  if (unknown.length > 0) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `pause budgets name what the fleet does not have: ${unknown.join(', ')}`,
      {
        details: { unknown },
      },
    );
  }
}

/** The names of the hosts an update selects, sorted. Throws NOT_FOUND for a name not in the fleet. */
export function selectHosts(fleet: Fleet | FleetIndex, selector: HostSelector): string[] {
  const hosts = fleet instanceof FleetIndex ? fleet.fleet.hosts : fleet.hosts;
  if (selector.kind === 'names') {
    const known = new Set(hosts.map((h) => h.name));
    const missing = selector.names.filter((n) => !known.has(n));
    if (missing.length > 0) {
      throw new IntermissionError(
        'NOT_FOUND',
        `the update names hosts that are not in the fleet: ${missing.join(', ')}`,
        {
          details: { missing },
        },
      );
    }
    return [...new Set(selector.names)].sort(byText);
  }
  const chosen =
    selector.kind === 'all'
      ? hosts
      : hosts.filter((h) =>
          Object.entries(selector.labels).every(
            ([k, v]) => Object.prototype.hasOwnProperty.call(h.labels, k) && h.labels[k] === v,
          ),
        );
  return chosen.map((h) => h.name).sort(byText);
}

/** A host left out because its VMs of one set span several update domains. */
function blockedHost(host: string, vms: readonly Vm[]): BlockedHost {
  const seen = new Map<string, number[]>();
  for (const vm of vms) {
    if (vm.availabilitySet === undefined) continue;
    const uds = seen.get(vm.availabilitySet);
    if (!uds) seen.set(vm.availabilitySet, [vm.updateDomain]);
    else if (!uds.includes(vm.updateDomain)) uds.push(vm.updateDomain);
  }
  const conflicts = [...seen]
    .filter(([, uds]) => uds.length > 1)
    .map(([set, uds]) => ({ set, updateDomains: uds.sort((a, b) => a - b) }))
    .sort((a, b) => byText(a.set, b.set));
  const which = conflicts.map((c) => `set ${c.set} in update domains ${c.updateDomains.join(', ')}`).join('; ');
  return Object.freeze({
    host,
    reason: 'UPDATE_DOMAINS_SHARE_HOST' as const,
    conflicts: Object.freeze(
      conflicts.map((c) => Object.freeze({ set: c.set, updateDomains: Object.freeze(c.updateDomains) })),
    ),
    vms: Object.freeze(vms.map((v) => v.name)),
    explanation: `Left out: it holds VMs of ${which}, and one host step would put those update domains in maintenance together. Place each update domain of a set on hosts of its own.`,
  });
}

function zeroCounts<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
}

/** A time for a message: ISO 8601 when it renders, else the number (never "Invalid time value"). */
function timeText(t: number): string {
  return isRenderableTime(t) ? new Date(t).toISOString() : `${t} ms since 1970`;
}

/** Code-unit order: the same on every machine and locale. */
function byText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function byName(a: { readonly name: string }, b: { readonly name: string }): number {
  return byText(a.name, b.name);
}
