/** Fleet builders and the plan invariant checker shared by the rollout tests. */
import assert from 'node:assert/strict';
import { INSTANCE_DEFAULTS, derivedGuid } from '../../../src/domain/fleet.js';
import { minimumNotice, type EventTiming } from '../../../src/domain/events/notice.js';
import { HOUR, MINUTE } from '../../../src/domain/time.js';
import type { AvailabilitySet, Fleet, Host, Vm, VmInstanceInfo } from '../../../src/domain/vocabulary.js';
import {
  UPDATE_IMPACTS,
  WEEKDAYS,
  type MaintenanceWindow,
  type Plan,
  type PlannedVm,
  type RolloutPolicy,
  type Update,
} from '../../../src/domain/rollout/index.js';

export const NOW = Date.UTC(2026, 0, 1);

const INSTANCE: VmInstanceInfo = Object.freeze({ ...INSTANCE_DEFAULTS, resourceGroupName: 'test' });

/** A VM as the tests describe it: name, host, and optionally set and update domain. */
export interface VmSpec {
  readonly name: string;
  readonly host: string;
  readonly set?: string;
  readonly ud?: number;
}

/** Builds a Fleet directly (no file parsing), for speed and for arbitrary placements. */
export function fleetOf(spec: {
  hosts: readonly (string | Host)[];
  sets?: readonly (string | AvailabilitySet)[];
  vms: readonly VmSpec[];
}): Fleet {
  const hosts = spec.hosts.map((h) => (typeof h === 'string' ? { name: h, labels: {} } : h));
  const sets = (spec.sets ?? []).map((s) =>
    typeof s === 'string' ? { name: s, updateDomains: 5, faultDomains: 2 } : s,
  );
  const vms: Vm[] = spec.vms.map((v) => ({
    name: v.name,
    vmId: derivedGuid(v.name),
    host: v.host,
    availabilitySet: v.set,
    updateDomain: v.ud ?? 0,
    faultDomain: 0,
    instance: INSTANCE,
  }));
  return { hosts, availabilitySets: sets, vms };
}

/** All VMs of a plan's steps, with their host and wave. */
export function plannedVms(plan: Plan): { vm: PlannedVm; host: string; wave: number }[] {
  const out: { vm: PlannedVm; host: string; wave: number }[] = [];
  for (const w of plan.waves) {
    for (const b of w.batches)
      for (const s of b.steps) for (const vm of s.vms) out.push({ vm, host: s.host, wave: w.index });
  }
  return out;
}

/** Independent check of "inside a window" (brute force over the neighbouring days). */
export function insideWindows(windows: readonly MaintenanceWindow[], t: number): boolean {
  if (windows.length === 0) return true;
  return windows.some((w) => {
    if (w.kind === 'interval') return w.start <= t && t < w.end;
    const [hh, mm] = w.start.split(':').map(Number);
    const day = 24 * HOUR;
    for (let d = Math.floor(t / day) - 1; d <= Math.floor(t / day); d++) {
      const weekday = WEEKDAYS[new Date(d * day).getUTCDay()] as (typeof WEEKDAYS)[number];
      if (w.days && !w.days.includes(weekday)) continue;
      const open = d * day + (hh ?? 0) * HOUR + (mm ?? 0) * MINUTE;
      if (open <= t && t < open + w.durationMs) return true;
    }
    return false;
  });
}

/** Hosts whose VMs of one set span more than one update domain. */
export function splitHosts(fleet: Fleet): Set<string> {
  const seen = new Map<string, number>();
  const split = new Set<string>();
  for (const vm of fleet.vms) {
    if (vm.availabilitySet === undefined) continue;
    const key = `${vm.host}\u0000${vm.availabilitySet}`;
    const ud = seen.get(key);
    if (ud === undefined) seen.set(key, vm.updateDomain);
    else if (ud !== vm.updateDomain) split.add(vm.host);
  }
  return split;
}

/**
 * Asserts every invariant a plan promises, independently of the planner's code paths: one update
 * domain per set per wave, every selected VM exactly once, notice, limits, windows, times, budgets.
 */
export function assertPlanInvariants(
  plan: Plan,
  input: { fleet: Fleet; update: Update; policy?: RolloutPolicy; timing: EventTiming; selected: readonly string[] },
): void {
  const policy = plan.policy;
  const impact = UPDATE_IMPACTS[plan.update.kind];

  // Every selected host exactly once, in a step or blocked; blocked exactly when split.
  const hostSeen = new Map<string, number>();
  for (const w of plan.waves)
    for (const b of w.batches) for (const s of b.steps) hostSeen.set(s.host, (hostSeen.get(s.host) ?? 0) + 1);
  for (const b of plan.blocked) hostSeen.set(b.host, (hostSeen.get(b.host) ?? 0) + 1);
  assert.deepEqual(
    [...hostSeen.keys()].sort(),
    [...input.selected].sort(),
    'hosts planned or blocked = hosts selected',
  );
  for (const [host, n] of hostSeen) assert.equal(n, 1, `host ${host} appears once`);
  const split = splitHosts(input.fleet);
  const expectBlocked = impact.inMaintenance ? input.selected.filter((h) => split.has(h)) : [];
  assert.deepEqual(
    plan.blocked.map((b) => b.host),
    [...expectBlocked].sort(),
    'blocked hosts are exactly the hosts holding two update domains of a set',
  );

  // Every VM of the selected hosts exactly once; on the step of its own host.
  const selected = new Set(input.selected);
  const expectedVms = input.fleet.vms.filter((v) => selected.has(v.host));
  const vmSeen = new Map<string, number>();
  const planned = plannedVms(plan);
  for (const { vm, host } of planned) {
    vmSeen.set(vm.name, (vmSeen.get(vm.name) ?? 0) + 1);
    assert.equal(input.fleet.vms.find((v) => v.name === vm.name)?.host, host, `${vm.name} is planned on its host`);
  }
  for (const b of plan.blocked) for (const name of b.vms) vmSeen.set(name, (vmSeen.get(name) ?? 0) + 1);
  assert.deepEqual([...vmSeen.keys()].sort(), expectedVms.map((v) => v.name).sort(), 'VMs planned = VMs selected');
  for (const [name, n] of vmSeen) assert.equal(n, 1, `VM ${name} appears once`);
  assert.equal(plan.stats.vms, expectedVms.length);
  assert.equal(plan.stats.plannedVms, planned.length);

  // Invariant 2: one update domain per set per wave, matching the wave's record.
  const vmByName = new Map(input.fleet.vms.map((v) => [v.name, v]));
  for (const w of plan.waves) {
    const udOf = new Map<string, number>();
    for (const b of w.batches) {
      for (const s of b.steps) {
        for (const pv of s.vms) {
          const vm = vmByName.get(pv.name) as Vm;
          if (vm.availabilitySet === undefined || !impact.inMaintenance) continue;
          const ud = udOf.get(vm.availabilitySet);
          assert.ok(
            ud === undefined || ud === vm.updateDomain,
            `wave ${w.index}: set ${vm.availabilitySet} has one UD`,
          );
          udOf.set(vm.availabilitySet, vm.updateDomain);
        }
      }
    }
    assert.deepEqual({ ...w.updateDomains }, Object.fromEntries(udOf), `wave ${w.index} records its update domains`);
  }

  // Events: notice, scope, membership.
  const eventById = new Map<string, { scope: string; type: string; resources: readonly string[]; notBefore: number }>();
  for (const w of plan.waves) {
    for (const e of w.events) {
      assert.ok(!eventById.has(e.eventId), 'event ids are unique');
      eventById.set(e.eventId, e);
      assert.match(e.eventId, /^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/);
      assert.ok(
        e.notBefore - e.createdAt >= minimumNotice(e.type, input.timing),
        `invariant 3: notice of ${e.eventId}`,
      );
      assert.ok(e.notBefore - e.createdAt >= policy.noticeMs, 'the operator notice is given');
      assert.equal(e.notBefore, w.startAt);
      assert.equal(e.createdAt, w.publishAt);
      assert.ok(e.resources.length > 0);
      for (const r of e.resources) assert.equal(e.scope, scopeOfName(vmByName.get(r) as Vm), `${r} is in ${e.scope}`);
      assert.equal(e.durationInSeconds === -1, e.type !== 'Freeze', 'DurationInSeconds is -1 unless Freeze');
    }
  }
  const inEvents = new Map<string, string>();
  for (const [id, e] of eventById) {
    for (const r of e.resources) {
      assert.ok(!inEvents.has(r), `${r} is in one event`);
      inEvents.set(r, id);
    }
  }
  for (const { vm } of planned) {
    const c = vm.classification;
    if (c.eventType === null) {
      assert.equal(vm.eventId, null);
      assert.equal(inEvents.has(vm.name), false);
      continue;
    }
    assert.equal(inEvents.get(vm.name), vm.eventId, `${vm.name} is in its event`);
    const e = eventById.get(vm.eventId as string);
    assert.equal(e?.type, c.eventType);
    assert.equal(e?.notBefore, vm.notBefore);
    // Invariant 1 in the plan: no preserving VM is expected to pause longer than its budget.
    if (c.preserving) {
      assert.ok(c.expectedPauseMs > 0 && c.expectedPauseMs <= c.pauseBudgetMs, `${vm.name}: pause within budget`);
      assert.ok(vm.durationInSeconds >= Math.ceil(c.expectedPauseMs / 1000));
    }
    const vmBudget = input.policy?.pauseBudgets?.vms?.[vm.name];
    const setName = vmByName.get(vm.name)?.availabilitySet;
    const setBudget = setName === undefined ? undefined : input.policy?.pauseBudgets?.sets?.[setName];
    assert.equal(c.pauseBudgetMs, Math.min(policy.pauseBudgetMs, vmBudget ?? Infinity, setBudget ?? Infinity));
  }

  // Limits, times, windows.
  let cursor = plan.plannedAt;
  let lower = 0;
  for (const w of plan.waves) {
    assert.ok(w.publishAt >= cursor, `wave ${w.index} is published after the previous one settled`);
    assert.equal(w.startAt - w.publishAt, w.noticeMs);
    assert.ok(insideWindows(policy.windows, w.startAt), `wave ${w.index} starts inside a window`);
    let t = w.startAt;
    let longest = 0;
    for (const b of w.batches) {
      assert.equal(b.expectedStartAt, t);
      assert.ok(b.steps.length > 0);
      if (policy.maxHostsInParallel !== null)
        assert.ok(b.steps.length <= policy.maxHostsInParallel, 'max hosts in parallel');
      const paused = b.steps.reduce((n, s) => n + s.pausedVms, 0);
      assert.equal(b.pausedVms, paused);
      if (policy.maxVmsPausedAtOnce !== null) assert.ok(paused <= policy.maxVmsPausedAtOnce, 'max VMs paused at once');
      for (const s of b.steps) {
        assert.equal(s.kind, impact.stepKind);
        assert.equal(s.pausedVms, s.vms.filter((v) => v.classification.preserving).length);
        assert.ok(s.expectedDurationMs <= b.expectedDurationMs);
        assert.equal(s.expectedStartAt, b.expectedStartAt);
        longest = Math.max(longest, s.expectedDurationMs);
      }
      t += b.expectedDurationMs;
    }
    assert.equal(w.expectedEndAt, t);
    assert.equal(w.longestStepMs, longest);
    lower += w.noticeMs + longest;
    cursor = w.expectedEndAt + policy.settleMs;
  }
  assert.equal(plan.stats.lowerBoundMs, lower);
  assert.ok(plan.stats.lowerBoundMs <= plan.stats.expectedMakespanMs, 'the lower bound is a lower bound');
}

function scopeOfName(vm: Vm): string {
  return vm.availabilitySet === undefined ? `vm:${vm.name}` : `set:${vm.availabilitySet}`;
}
