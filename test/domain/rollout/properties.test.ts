import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isIntermissionError } from '../../../src/domain/errors.js';
import { eventTiming } from '../../../src/domain/events/notice.js';
import { HOUR, MINUTE, SECOND, timeScale } from '../../../src/domain/time.js';
import type { Fleet } from '../../../src/domain/vocabulary.js';
import {
  planRollout,
  selectHosts,
  UPDATE_KINDS,
  WEEKDAYS,
  type HostSelector,
  type MaintenanceWindow,
  type RolloutPolicy,
  type Update,
  type VmCapabilities,
} from '../../../src/domain/rollout/index.js';
import { FleetIndex } from '../../../src/domain/fleet.js';
import { assertPlanInvariants, fleetOf, NOW, type VmSpec } from './helpers.js';

const RUNS = Number(process.env.FC_RUNS ?? 300);

/** A random fleet: most VMs placed by update domain (host i holds UD i mod n), some anywhere. */
const fleetArb = fc
  .record({
    hostCount: fc.integer({ min: 0, max: 12 }),
    setDomains: fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 5 }),
    vms: fc.array(
      fc.record({
        host: fc.nat(),
        set: fc.option(fc.nat(), { nil: undefined, freq: 3 }),
        ud: fc.nat(),
        aligned: fc.boolean(),
        stray: fc.integer({ min: 0, max: 9 }),
      }),
      { maxLength: 60 },
    ),
  })
  .map(({ hostCount, setDomains, vms }): Fleet => {
    const hosts = Array.from({ length: hostCount }, (_, i) => ({ name: `h${i}`, labels: { rack: `r${i % 3}` } }));
    const sets = setDomains.map((updateDomains, i) => ({ name: `s${i}`, updateDomains, faultDomains: 2 }));
    const specs: VmSpec[] = [];
    if (hostCount > 0) {
      vms.forEach((v, i) => {
        const host = v.host % hostCount;
        const set = v.set === undefined || sets.length === 0 ? undefined : sets[v.set % sets.length];
        const ud = !set ? 0 : v.aligned || v.stray > 0 ? host % set.updateDomains : v.ud % set.updateDomains;
        specs.push({ name: `vm${i}`, host: `h${host}`, set: set?.name, ud });
      });
    }
    return fleetOf({ hosts, sets, vms: specs });
  });

const capsArb = fc.option(
  fc.record(
    {
      sharedMemory: fc.boolean(),
      migratableDevices: fc.boolean(),
      guestAgent: fc.boolean(),
      blockingDevices: fc.array(fc.constantFrom('vfio-pci 3b:00.0', 'ivshmem0', 'usb-host'), { maxLength: 2 }),
    },
    { requiredKeys: [] },
  ),
  { nil: undefined, freq: 6 },
);

const updateArb = fc.record({
  kind: fc.constantFrom(...UPDATE_KINDS),
  expectedApplyMs: fc.integer({ min: 0, max: 60 * SECOND }),
  migrationPause: fc.option(fc.integer({ min: 100, max: 5 * SECOND }), { nil: undefined }),
  selector: fc.constantFrom('all', 'names', 'labels'),
});

const windowArb: fc.Arbitrary<MaintenanceWindow> = fc.oneof(
  fc.record({
    kind: fc.constant('daily' as const),
    start: fc
      .tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }))
      .map(([h, m]) => `${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`),
    durationMs: fc.integer({ min: MINUTE, max: 24 * HOUR }),
    days: fc.option(fc.uniqueArray(fc.constantFrom(...WEEKDAYS), { minLength: 1 }), { nil: undefined }),
  }),
  fc
    .record({ from: fc.integer({ min: 0, max: 3 * 24 * HOUR }), length: fc.integer({ min: MINUTE, max: 48 * HOUR }) })
    .map(({ from, length }) => ({ kind: 'interval' as const, start: NOW + from, end: NOW + from + length })),
);

const policyArb = fc.record({
  pauseBudgetMs: fc.option(fc.integer({ min: SECOND, max: 30 * SECOND }), { nil: undefined }),
  setBudget: fc.option(fc.integer({ min: 500, max: 30 * SECOND }), { nil: undefined }),
  vmBudget: fc.option(fc.integer({ min: 500, max: 30 * SECOND }), { nil: undefined }),
  maxHostsInParallel: fc.option(fc.integer({ min: 1, max: 4 }), { nil: null }),
  pausedSlack: fc.option(fc.integer({ min: 0, max: 6 }), { nil: null }),
  settleMs: fc.option(fc.integer({ min: 0, max: 10 * MINUTE }), { nil: undefined }),
  noticeMs: fc.option(fc.integer({ min: 0, max: HOUR }), { nil: undefined }),
  windows: fc.option(fc.array(windowArb, { minLength: 1, maxLength: 3 }), { nil: undefined, freq: 2 }),
  fallback: fc.constantFrom('reboot' as const, 'redeploy' as const),
  requireGuestAgent: fc.boolean(),
  failureFraction: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
});

const caseArb = fc.record({
  fleet: fleetArb,
  caps: fc.array(capsArb, { minLength: 60, maxLength: 60 }),
  update: updateArb,
  policy: policyArb,
  scale: fc.constantFrom(1, 60),
  offset: fc.integer({ min: 0, max: 7 * 24 * HOUR }),
  pick: fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
  shuffleSeed: fc.integer(),
});

type Case =
  fc.Arbitrary<typeof caseArb extends fc.Arbitrary<infer T> ? T : never> extends fc.Arbitrary<infer T> ? T : never;

function inputs(c: Case) {
  const fleet = c.fleet;
  const capabilities = new Map<string, VmCapabilities>();
  fleet.vms.forEach((vm, i) => {
    const caps = c.caps[i];
    if (caps) capabilities.set(vm.name, caps);
  });
  const names = fleet.hosts.filter((_, i) => c.pick[i]).map((h) => h.name);
  const hosts: HostSelector =
    c.update.selector === 'names' && names.length > 0
      ? { kind: 'names', names }
      : c.update.selector === 'labels'
        ? { kind: 'labels', labels: { rack: 'r1' } }
        : { kind: 'all' };
  const update: Update = {
    id: 'prop-1',
    kind: c.update.kind,
    expectedApplyMs: c.update.expectedApplyMs,
    hosts,
    ...(c.update.migrationPause === undefined
      ? {}
      : { durations: { inPlaceMigrationPauseMs: c.update.migrationPause } }),
  };
  const vmsPerHost = new Map<string, number>();
  for (const vm of fleet.vms) vmsPerHost.set(vm.host, (vmsPerHost.get(vm.host) ?? 0) + 1);
  const mostOnAHost = Math.max(1, ...vmsPerHost.values());
  const firstSet = fleet.availabilitySets[0]?.name;
  const firstVm = fleet.vms[0]?.name;
  const p = c.policy;
  const policy: RolloutPolicy = {
    pauseBudgetMs: p.pauseBudgetMs,
    pauseBudgets: {
      sets: p.setBudget !== undefined && firstSet ? { [firstSet]: p.setBudget } : {},
      vms: p.vmBudget !== undefined && firstVm ? { [firstVm]: p.vmBudget } : {},
    },
    maxHostsInParallel: p.maxHostsInParallel,
    maxVmsPausedAtOnce: p.pausedSlack === null ? null : mostOnAHost + p.pausedSlack,
    settleMs: p.settleMs,
    noticeMs: p.noticeMs,
    windows: p.windows,
    fallback: p.fallback,
    requireGuestAgent: p.requireGuestAgent,
    failureBudget: p.failureFraction === undefined ? undefined : { maxFailedFraction: p.failureFraction },
  };
  const timing = eventTiming({ scale: timeScale(c.scale) });
  const selected = selectHosts(new FleetIndex(fleet), update.hosts ?? { kind: 'all' });
  return { fleet, update, policy, timing, capabilities, now: NOW + c.offset, selected };
}

/** Only interval windows can run out; anything else must plan. */
function plansOrRunsOutOfWindows(c: Case, run: (i: ReturnType<typeof inputs>) => void): void {
  const i = inputs(c);
  try {
    run(i);
  } catch (error) {
    const intervalsOnly =
      (i.policy.windows ?? []).length > 0 && (i.policy.windows ?? []).every((w) => w.kind === 'interval');
    if (intervalsOnly && isIntermissionError(error, 'INVALID_INPUT') && /no maintenance window/.test(error.message))
      return;
    throw error;
  }
}

function shuffle<T>(list: readonly T[], seed: number): T[] {
  const out = [...list];
  let s = seed >>> 0;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

void describe('plan properties over random fleets and policies', () => {
  void it('keeps every invariant: one UD per set per wave, each VM once, notice, limits, windows, budgets', () => {
    fc.assert(
      fc.property(caseArb, (c) =>
        plansOrRunsOutOfWindows(c, (i) => {
          const plan = planRollout(i);
          assertPlanInvariants(plan, i);
        }),
      ),
      { numRuns: RUNS },
    );
  });

  void it('is deterministic: the same input, in any list order, gives the same plan', () => {
    fc.assert(
      fc.property(caseArb, (c) =>
        plansOrRunsOutOfWindows(c, (i) => {
          const a = planRollout(i);
          const shuffled: Fleet = {
            hosts: shuffle(i.fleet.hosts, c.shuffleSeed),
            availabilitySets: shuffle(i.fleet.availabilitySets, c.shuffleSeed + 1),
            vms: shuffle(i.fleet.vms, c.shuffleSeed + 2),
          };
          const b = planRollout({
            ...i,
            fleet: shuffled,
            capabilities: new Map(shuffle([...i.capabilities], c.shuffleSeed)),
          });
          assert.deepEqual(JSON.parse(JSON.stringify(b)), JSON.parse(JSON.stringify(a)));
          assert.deepEqual(planRollout(i), a);
        }),
      ),
      { numRuns: Math.ceil(RUNS / 2) },
    );
  });

  void it('never fails for lack of a window when the windows are daily', () => {
    fc.assert(
      fc.property(
        caseArb,
        windowArb.filter((w) => w.kind === 'daily'),
        (c, w) => {
          const i = inputs(c);
          const plan = planRollout({ ...i, policy: { ...i.policy, windows: [w] } });
          assertPlanInvariants(plan, { ...i, policy: { ...i.policy, windows: [w] } });
        },
      ),
      { numRuns: Math.ceil(RUNS / 3) },
    );
  });
});
