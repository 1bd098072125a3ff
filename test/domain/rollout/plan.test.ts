import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { isIntermissionError } from '../../../src/domain/errors.js';
import { eventTiming, minimumNotice } from '../../../src/domain/events/notice.js';
import { FleetIndex, parseFleet } from '../../../src/domain/fleet.js';
import { HOUR, MINUTE, SECOND, timeScale } from '../../../src/domain/time.js';
import type { Fleet } from '../../../src/domain/vocabulary.js';
import {
  cloneHostStepWith,
  createHostStep,
  describePlan,
  isHostStep,
  isStepKind,
  parseRolloutPolicy,
  parseUpdate,
  planLowerBound,
  planRollout,
  tenantTimeline,
  type Plan,
  type PlanRolloutInput,
  type Update,
  type VmCapabilities,
} from '../../../src/domain/rollout/index.js';
import { assertPlanInvariants, fleetOf, NOW, plannedVms } from './helpers.js';

const demo: Fleet = parseFleet(
  parse(readFileSync(new URL('../../../examples/demo-fleet.yaml', import.meta.url), 'utf8')),
);
const FULL: VmCapabilities = { sharedMemory: true, migratableDevices: true, guestAgent: true };
const allCapable = (fleet: Fleet) => new Map(fleet.vms.map((v) => [v.name, FULL]));
const hostPatch: Update = { id: 'kpatch-1', kind: 'host-patch', expectedApplyMs: 8 * SECOND };

function plan(over: Partial<PlanRolloutInput> = {}): Plan {
  return planRollout({ fleet: demo, update: hostPatch, now: NOW, capabilities: allCapable(demo), ...over });
}

function check(p: Plan, over: Partial<PlanRolloutInput> = {}): void {
  const fleet = (over.fleet ?? demo) as Fleet;
  assertPlanInvariants(p, {
    fleet,
    update: over.update ?? hostPatch,
    policy: over.policy,
    timing: over.timing ?? eventTiming(),
    selected: fleet.hosts.map((h) => h.name),
  });
}

const rejects = (fn: () => unknown, code: string, pattern?: RegExp) =>
  assert.throws(fn, (e: unknown) => isIntermissionError(e) && e.code === code && (!pattern || pattern.test(e.message)));

void describe('planRollout on the demo fleet', () => {
  void it('makes one wave per update domain clash: web has 3 UDs over 3 hosts', () => {
    const p = plan();
    check(p);
    assert.equal(p.waves.length, 3);
    assert.deepEqual(
      p.waves.map((w) => w.batches.flatMap((b) => b.steps.map((s) => s.host))),
      [['host-a'], ['host-b'], ['host-c']],
    );
    assert.deepEqual({ ...p.waves[1]?.updateDomains }, { db: 0, web: 1 });
    assert.equal(p.stats.byPath.pause, 8);
    assert.equal(p.waves[0]?.batches[0]?.steps[0]?.kind, 'freeze-apply-resume');
  });

  void it('publishes each wave with the minimum notice and one Freeze per scope, DurationInSeconds rounded up', () => {
    const p = plan();
    const w0 = p.waves[0];
    assert.ok(w0);
    assert.equal(w0.publishAt, NOW);
    assert.equal(w0.startAt, NOW + 15 * MINUTE);
    assert.deepEqual(
      w0.events.map((e) => [e.scope, e.type, e.resources, e.durationInSeconds]),
      [
        ['set:web', 'Freeze', ['web_0', 'web_3'], 9],
        ['vm:batch-1', 'Freeze', ['batch-1'], 9],
      ],
    );
    assert.equal(w0.events[0]?.owner, 'rollout:kpatch-1/wave:0');
    assert.equal(w0.events[0]?.description, 'Host server is undergoing maintenance.');
    // The next wave is published after the previous one ends plus the settle time (5 min).
    const w1 = p.waves[1];
    assert.equal(w1?.publishAt, w0.expectedEndAt + 5 * MINUTE);
  });

  void it('is deterministic, frozen, JSON-serialisable, and independent of the order of the fleet lists', () => {
    const a = plan();
    const shuffled: Fleet = {
      hosts: [...demo.hosts].reverse(),
      availabilitySets: [...demo.availabilitySets].reverse(),
      vms: [...demo.vms].reverse(),
    };
    const b = plan({ fleet: shuffled });
    assert.deepEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)));
    assert.deepEqual(JSON.parse(JSON.stringify(a)), a);
    const step = a.waves[0]?.batches[0]?.steps[0];
    for (const o of [
      a,
      a.waves,
      a.waves[0],
      a.stats,
      a.policy,
      a.update,
      step,
      step?.vms,
      step?.vms[0],
      a.waves[0]?.events[0],
    ]) {
      assert.ok(Object.isFrozen(o));
    }
    // The same update id gives the same event ids on a replan; another id gives others.
    const c = plan({ update: { ...hostPatch, id: 'kpatch-2' } });
    assert.notEqual(c.waves[0]?.events[0]?.eventId, a.waves[0]?.events[0]?.eventId);
  });

  void it('accepts a FleetIndex already built', () => {
    assert.deepEqual(plan({ fleet: new FleetIndex(demo) }), plan());
  });

  void it('lets a VM fall back alone: its host step keeps pausing the others', () => {
    const caps = allCapable(demo);
    const p = plan({
      update: { ...hostPatch },
      policy: { pauseBudgets: { vms: { web_3: 5 * SECOND } } },
      capabilities: caps,
    });
    check(p, { policy: { pauseBudgets: { vms: { web_3: 5 * SECOND } } } });
    const step = p.waves[0]?.batches[0]?.steps[0];
    assert.ok(step && isStepKind(step, 'freeze-apply-resume'));
    assert.equal(step.pauseMs, 8500);
    assert.deepEqual(
      step.vms.map((v) => [v.name, v.classification.path, v.eventType]),
      [
        ['batch-1', 'pause', 'Freeze'],
        ['web_0', 'pause', 'Freeze'],
        ['web_3', 'reboot', 'Reboot'],
      ],
    );
    assert.deepEqual(step.vms[2]?.classification.reasons, ['APPLY_EXCEEDS_PAUSE_BUDGET']);
    assert.equal(step.pausedVms, 2);
    // Two events for set:web in wave 1: a Freeze for web_0 and a Reboot for web_3.
    assert.deepEqual(
      p.waves[0]?.events.map((e) => [e.scope, e.type, e.resources]),
      [
        ['set:web', 'Freeze', ['web_0']],
        ['set:web', 'Reboot', ['web_3']],
        ['vm:batch-1', 'Freeze', ['batch-1']],
      ],
    );
    // The step lasts the apply, the resume overhead and the restart of the fallback.
    assert.equal(step.expectedDurationMs, 8 * SECOND + 500 + 2 * MINUTE);
  });

  void it('uses the lowest budget of policy, set and VM', () => {
    const p = plan({
      policy: { pauseBudgetMs: 20 * SECOND, pauseBudgets: { sets: { web: 10 * SECOND }, vms: { web_0: 25 * SECOND } } },
    });
    const budgets = Object.fromEntries(plannedVms(p).map(({ vm }) => [vm.name, vm.classification.pauseBudgetMs]));
    assert.equal(budgets.web_0, 10 * SECOND);
    assert.equal(budgets.db_0, 20 * SECOND);
  });

  void it('gives a longer notice when Reboot or a policy asks, and the shorter Redeploy notice alone', () => {
    const redeploy = plan({ update: { id: 'evac', kind: 'redeploy', expectedApplyMs: MINUTE } });
    check(redeploy, { update: { id: 'evac', kind: 'redeploy', expectedApplyMs: MINUTE } });
    assert.equal(redeploy.waves[0]?.noticeMs, 10 * MINUTE);
    const longer = plan({ policy: { noticeMs: HOUR } });
    assert.equal(longer.waves[0]?.noticeMs, HOUR);
    const mixed = plan({
      update: { id: 'u', kind: 'vmm-update', expectedApplyMs: 0 },
      policy: { fallback: 'redeploy' },
      capabilities: new Map(),
    });
    assert.equal(mixed.waves[0]?.events[0]?.type, 'Redeploy');
    assert.equal(mixed.waves[0]?.noticeMs, 10 * MINUTE);
  });

  void it('scales notice and settle with the time scale, never below the scaled minimum', () => {
    const timing = eventTiming({ scale: timeScale(60) });
    const p = plan({ timing });
    check(p, { timing });
    assert.equal(p.timeScale, 60);
    assert.equal(p.waves[0]?.noticeMs, minimumNotice('Freeze', timing));
    assert.equal(p.policy.settleMs, 5 * SECOND);
  });

  void it('starts waves only inside maintenance windows and publishes ahead of them', () => {
    const windows = [{ kind: 'daily' as const, start: '02:00', durationMs: HOUR }];
    const p = plan({ policy: { windows } });
    check(p, { policy: { windows } });
    assert.equal(p.waves[0]?.startAt, NOW + 2 * HOUR);
    assert.equal(p.waves[0]?.publishAt, NOW + 2 * HOUR - 15 * MINUTE);
    for (const w of p.waves) assert.ok(w.startAt >= NOW + 2 * HOUR && w.startAt < NOW + 3 * HOUR);
    const tight = [{ kind: 'interval' as const, start: NOW, end: NOW + 20 * MINUTE }];
    rejects(
      () => plan({ policy: { windows: tight } }),
      'INVALID_INPUT',
      /no maintenance window opens .* for wave 2 of 3/,
    );
  });

  void it('batches within the parallelism limits', () => {
    const fleet = fleetOf({
      hosts: ['h1', 'h2', 'h3', 'h4', 'h5'],
      vms: ['h1', 'h1', 'h2', 'h3', 'h3', 'h3', 'h4', 'h5'].map((host, i) => ({ name: `v${i}`, host })),
    });
    const policy = { maxHostsInParallel: 2, maxVmsPausedAtOnce: 4 };
    const p = plan({ fleet, capabilities: allCapable(fleet), policy });
    check(p, { fleet, policy });
    assert.equal(p.waves.length, 1, 'standalone VMs only: one wave');
    assert.deepEqual(
      p.waves[0]?.batches.map((b) => [b.steps.map((s) => s.host), b.pausedVms]),
      [
        [['h1', 'h2'], 3],
        [['h3', 'h4'], 4],
        [['h5'], 1],
      ],
    );
    rejects(
      () => plan({ fleet, capabilities: allCapable(fleet), policy: { maxVmsPausedAtOnce: 2 } }),
      'INVALID_INPUT',
      /host h3 pauses 3 VMs/,
    );
  });

  void it('leaves out a host that holds two update domains of a set, and says why', () => {
    const fleet = fleetOf({
      hosts: ['h1', 'h2'],
      sets: ['app'],
      vms: [
        { name: 'a0', host: 'h1', set: 'app', ud: 0 },
        { name: 'a1', host: 'h1', set: 'app', ud: 1 },
        { name: 'a2', host: 'h2', set: 'app', ud: 2 },
      ],
    });
    const p = plan({ fleet, capabilities: allCapable(fleet) });
    check(p, { fleet });
    assert.deepEqual(
      p.blocked.map((b) => [b.host, b.reason, b.conflicts, b.vms]),
      [['h1', 'UPDATE_DOMAINS_SHARE_HOST', [{ set: 'app', updateDomains: [0, 1] }], ['a0', 'a1']]],
    );
    assert.match(p.blocked[0]?.explanation ?? '', /set app in update domains 0, 1/);
    assert.equal(p.stats.blockedVms, 2);
    assert.match(describePlan(p), /Blocked hosts \(not updated\):\n  h1 \[UPDATE_DOMAINS_SHARE_HOST\]: Left out/);
    // A hot patch touches no VM: nothing is blocked and one wave carries every host, without events.
    const hot = plan({ fleet, update: { id: 'hp', kind: 'hot-patch', expectedApplyMs: 3 * SECOND } });
    check(hot, { fleet, update: { id: 'hp', kind: 'hot-patch', expectedApplyMs: 3 * SECOND } });
    assert.deepEqual([hot.blocked.length, hot.waves.length, hot.stats.events, hot.waves[0]?.noticeMs], [0, 1, 0, 0]);
  });

  void it('selects hosts by name or label, and rejects unknown names', () => {
    const byName = plan({ update: { ...hostPatch, hosts: { kind: 'names', names: ['host-c', 'host-a'] } } });
    assert.equal(byName.stats.hosts, 2);
    assert.deepEqual(byName.waves.flatMap((w) => w.batches.flatMap((b) => b.steps.map((s) => s.host))).sort(), [
      'host-a',
      'host-c',
    ]);
    const byLabel = plan({ update: { ...hostPatch, hosts: { kind: 'labels', labels: { rack: 'r1' } } } });
    assert.equal(byLabel.stats.hosts, 2);
    rejects(() => plan({ update: { ...hostPatch, hosts: { kind: 'names', names: ['nope'] } } }), 'NOT_FOUND', /nope/);
  });

  void it('resolves the failure budget, rounding a fraction down', () => {
    assert.deepEqual({ ...plan().failureBudget }, { maxFailedHosts: 0, maxFailedFraction: null });
    assert.deepEqual(
      { ...plan({ policy: { failureBudget: { maxFailedFraction: 0.5 } } }).failureBudget },
      {
        maxFailedHosts: 1,
        maxFailedFraction: 0.5,
      },
    );
    assert.equal(plan({ policy: { failureBudget: { maxFailedHosts: 2 } } }).failureBudget.maxFailedHosts, 2);
  });

  void it('rejects bad input with every issue', () => {
    rejects(() => plan({ policy: { pauseBudgetMs: 31 * SECOND } }), 'INVALID_INPUT', /pause budget/);
    rejects(() => plan({ policy: { pauseBudgets: { vms: { ghost: SECOND } } } }), 'INVALID_INPUT', /VM ghost/);
    rejects(() => plan({ policy: { maxHostsInParallel: 0 } }), 'INVALID_INPUT', /maxHostsInParallel/);
    rejects(() => plan({ update: { ...hostPatch, id: '' } }), 'INVALID_INPUT', /id/);
    rejects(() => plan({ now: Number.NaN }), 'INVALID_INPUT');
  });

  void it('computes the makespan lower bound: notice plus longest step, per wave', () => {
    const p = plan({ policy: { settleMs: 0 } });
    assert.equal(planLowerBound(p), 3 * (15 * MINUTE + 8500));
    assert.equal(p.stats.lowerBoundMs, planLowerBound(p));
    assert.equal(p.stats.expectedMakespanMs, planLowerBound(p), 'no settle, one batch per wave: the bound is met');
  });

  void it('plans nothing for no hosts', () => {
    const p = plan({ fleet: fleetOf({ hosts: [], vms: [] }) });
    assert.deepEqual([p.waves.length, p.expectedEndAt, p.stats.lowerBoundMs], [0, NOW, 0]);
    assert.match(describePlan(p), /Nothing to do/);
  });
});

void describe('parsing updates and policies', () => {
  void it('reads durations as text and window bounds as ISO date-times', () => {
    const u = parseUpdate({ id: 'k', kind: 'host-patch', expectedApplyMs: '12s', durations: { vmRestartMs: '3m' } });
    assert.equal(u.expectedApplyMs, 12 * SECOND);
    assert.equal(u.durations?.vmRestartMs, 3 * MINUTE);
    const p = parseRolloutPolicy({
      pauseBudgetMs: '20s',
      settleMs: 'PT10M',
      windows: [
        { kind: 'interval', start: '2026-01-01T00:00:00Z', end: '2026-01-01T06:00:00Z' },
        { kind: 'daily', start: '03:00', durationMs: '2h', days: ['sat'] },
      ],
    });
    assert.equal(p.pauseBudgetMs, 20 * SECOND);
    assert.equal(p.settleMs, 10 * MINUTE);
    assert.deepEqual(p.windows?.[0], { kind: 'interval', start: NOW, end: NOW + 6 * HOUR });
  });

  void it('rejects unknown keys, kinds and reversed windows', () => {
    rejects(() => parseUpdate({ id: 'k', kind: 'firmware', expectedApplyMs: 1 }), 'INVALID_INPUT', /kind/);
    rejects(() => parseUpdate({ id: 'k', kind: 'host-patch', expectedApplyMs: 1, typo: 1 }), 'INVALID_INPUT');
    rejects(
      () => parseRolloutPolicy({ windows: [{ kind: 'interval', start: 2, end: 1 }] }),
      'INVALID_INPUT',
      /ends after/,
    );
    rejects(() => parseRolloutPolicy({ windows: [{ kind: 'daily', start: '25:00', durationMs: 1 }] }), 'INVALID_INPUT');
    rejects(() => parseRolloutPolicy({ failureBudget: { maxFailedFraction: 2 } }), 'INVALID_INPUT');
  });
});

void describe('host steps', () => {
  void it('are frozen discriminated unions with guards and clone helpers', () => {
    const step = createHostStep({
      kind: 'reboot',
      host: 'h1',
      wave: 0,
      batch: 0,
      expectedStartAt: NOW,
      expectedDurationMs: 10 * MINUTE,
      applyMs: MINUTE,
      pausedVms: 0,
      vms: [],
      hostRebootMs: 9 * MINUTE,
    });
    assert.ok(Object.isFrozen(step) && Object.isFrozen(step.vms));
    assert.ok(isHostStep(step));
    assert.equal(isHostStep({ kind: 'drain', host: 'h1' }), false);
    assert.ok(isStepKind(step, 'reboot') && step.hostRebootMs === 9 * MINUTE);
    assert.equal(isStepKind(step, 'redeploy'), false);
    const later = cloneHostStepWith(step, { expectedStartAt: NOW + HOUR });
    assert.deepEqual([later.kind, later.expectedStartAt, step.expectedStartAt], ['reboot', NOW + HOUR, NOW]);
    assert.ok(Object.isFrozen(later));
    rejects(() => cloneHostStepWith(step, { expectedDurationMs: -1 }), 'INVALID_INPUT');
  });
});

void describe('dry run', () => {
  void it('says in words what each tenant sees and when, and why VMs fall back', () => {
    const caps = allCapable(demo);
    caps.set('db_0', { sharedMemory: false, migratableDevices: false, blockingDevices: ['vfio-pci 3b:00.0'] });
    const p = plan({
      update: {
        id: 'qemu-9.2',
        kind: 'vmm-update',
        expectedApplyMs: 20 * SECOND,
        vmm: { fromVersion: '9.1', toVersion: '9.2' },
      },
      capabilities: caps,
    });
    const text = describePlan(p);
    assert.match(text, /Rollout qemu-9.2: vmm-update, in-place VMM update/);
    assert.match(text, /VMM 9.1 → 9.2/);
    assert.match(text, /Reasons: RAM_NOT_SHAREABLE 1, DEVICE_NOT_MIGRATABLE 1\./);
    assert.match(text, /Wave 2 of 3: events appear 2026-01-01T00:\d\d:\d\dZ, start .* \(notice 15m\)/);
    assert.match(
      text,
      /db_0 \(set:db UD 0\): reboot \[RAM_NOT_SHAREABLE, DEVICE_NOT_MIGRATABLE\]\. Restarts on the same host/,
    );
    assert.match(text, /device vfio-pci 3b:00.0 cannot be migrated/);
    assert.match(
      text,
      /set:web: Freeze for web_0, web_3; appears 2026-01-01T00:00:00Z, NotBefore 2026-01-01T00:15:00Z, DurationInSeconds 1/,
    );
    const short = describePlan(p, { maxItems: 1 });
    assert.match(short, /… and 1 more/);
  });

  void it('gives each tenant its timeline', () => {
    const timeline = tenantTimeline(plan());
    assert.deepEqual(
      timeline.map((t) => [t.scope, t.events.map((e) => [e.type, e.wave, e.resources.join(',')])]),
      [
        [
          'set:db',
          [
            ['Freeze', 1, 'db_0'],
            ['Freeze', 2, 'db_1'],
          ],
        ],
        [
          'set:web',
          [
            ['Freeze', 0, 'web_0,web_3'],
            ['Freeze', 1, 'web_1'],
            ['Freeze', 2, 'web_2'],
          ],
        ],
        ['vm:batch-1', [['Freeze', 0, 'batch-1']]],
        ['vm:batch-2', [['Freeze', 2, 'batch-2']]],
      ],
    );
  });
});
