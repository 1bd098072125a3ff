import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { FleetIndex, SECOND, eventTiming, parseFleet, timeScale } from '../../src/domain/index.js';
import { AgentClient, HostAgent, MemoryJournal, createAgentApp } from '../../src/agent/index.js';
import { Controller } from '../../src/controller/controller.js';
import { VirtualTime, createSimFleet, type SimFault } from '../../src/hypervisor/sim/index.js';
import { EventService } from '../../src/service/event-service.js';
import { openSqliteStore } from '../../src/store/index.js';

const RUNS = Number(process.env.FC_RUNS ?? 12);

interface Scenario {
  hosts: number;
  sets: { uds: number; vms: number }[];
  standalone: number;
  budgetS: number;
  applyS: number;
  maxHosts: number | null;
  maxPaused: number | null;
  approveChance: number;
  faults: { host: number; kind: 'hang' | 'fail' | 'slow' | 'resume-fail' }[];
  restartAt: number | null;
  seed: number;
}

const scenario: fc.Arbitrary<Scenario> = fc.record({
  hosts: fc.integer({ min: 2, max: 6 }),
  sets: fc.array(fc.record({ uds: fc.integer({ min: 1, max: 3 }), vms: fc.integer({ min: 1, max: 6 }) }), {
    minLength: 1,
    maxLength: 3,
  }),
  standalone: fc.integer({ min: 0, max: 3 }),
  budgetS: fc.integer({ min: 3, max: 30 }),
  applyS: fc.integer({ min: 1, max: 8 }),
  maxHosts: fc.option(fc.integer({ min: 1, max: 3 }), { nil: null }),
  maxPaused: fc.option(fc.integer({ min: 4, max: 12 }), { nil: null }),
  approveChance: fc.double({ min: 0, max: 1, noNaN: true }),
  faults: fc.array(
    fc.record({
      host: fc.nat({ max: 5 }),
      kind: fc.constantFrom('hang' as const, 'fail' as const, 'slow' as const, 'resume-fail' as const),
    }),
    { maxLength: 2 },
  ),
  restartAt: fc.option(fc.integer({ min: 1, max: 200 }), { nil: null }),
  seed: fc.integer({ min: 1, max: 1_000_000 }),
});

/**
 * VMs are placed so that a host holds one update domain per set (hosts hold UD = host index mod the
 * set's UDs); the planner leaves any other host out, which the properties accept too.
 */
function fleetFor(s: Scenario): FleetIndex {
  const hosts = Array.from({ length: s.hosts }, (_, i) => ({ name: `h${i}` }));
  const vms: { name: string; host: string; availabilitySet?: string; updateDomain?: number }[] = [];
  s.sets.forEach((set, si) => {
    for (let i = 0; i < set.vms; i++) {
      const ud = i % set.uds;
      const candidates = hosts.filter((_, hi) => hi % set.uds === ud);
      const host = candidates[i % candidates.length] ?? hosts[0];
      vms.push({ name: `s${si}_${i}`, host: host?.name ?? 'h0', availabilitySet: `s${si}`, updateDomain: ud });
    }
  });
  for (let i = 0; i < s.standalone; i++) vms.push({ name: `solo${i}`, host: `h${i % s.hosts}` });
  return new FleetIndex(
    parseFleet({ hosts, availabilitySets: s.sets.map((set, si) => ({ name: `s${si}`, updateDomains: set.uds })), vms }),
  );
}

function faultsFor(s: Scenario, host: string): SimFault[] {
  return s.faults
    .filter((f) => `h${f.host % s.hosts}` === host)
    .map((f): SimFault =>
      f.kind === 'slow'
        ? { kind: 'slow', factor: 10, operation: 'applyHostUpdate' }
        : f.kind === 'resume-fail'
          ? { kind: 'fail', operation: 'resume', times: 3 }
          : { kind: f.kind, operation: 'applyHostUpdate' },
    );
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'intermission-exec-prop-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('executor invariants over random fleets, policies, approvals, faults and restarts', () => {
  it('1: no pause over budget; 2: one update domain per set at a time; 3: no action before its event is due; 5: no step repeated, no event lost or repeated', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const time = new VirtualTime();
        const fleet = fleetFor(s);
        const store = await openSqliteStore({ path: join(dir, `run-${run++}.db`) });
        const events = await EventService.open({
          fleet,
          store,
          clock: time.clock,
          timing: eventTiming({ scale: timeScale(60) }),
        });
        const sim = createSimFleet({
          fleet: fleet.fleet,
          time,
          seed: s.seed,
          host: (h) => ({ faults: faultsFor(s, h) }),
        });
        const agents: HostAgent[] = [];
        const clients = new Map<string, AgentClient>();
        for (const [host, simHost] of sim) {
          const agent = await HostAgent.start({
            driver: simHost.connect(),
            journal: new MemoryJournal(),
            time,
            applyTimeoutMs: 60 * SECOND,
          });
          agents.push(agent);
          const app = createAgentApp({ agent, token: 't' });
          clients.set(
            host,
            new AgentClient({ host, baseUrl: 'http://agent.invalid', token: 't', fetch: (r) => app.fetch(r) }),
          );
        }
        const failures: string[] = [];
        const watch = (controller: Controller): void => {
          const inFlight = new Map<string, string[]>();
          controller.executor.on('rollout:step:dispatched', (step) => {
            const now = time.now();
            // Invariant 3: every VM of the step has a Started event that was approved or past NotBefore.
            for (const vm of fleet.vmsOnHost(step.host)) {
              const live = events.list().find((e) => e.resources.includes(vm.name));
              if (live && live.phase === 'Scheduled')
                failures.push(`${vm.name}: step dispatched while its event was only Scheduled`);
              if (live && live.approvedAt === undefined && now < live.notBefore)
                failures.push(`${vm.name}: step before NotBefore`);
            }
            inFlight.set(
              step.host,
              fleet
                .vmsOnHost(step.host)
                .filter((v) => v.availabilitySet)
                .map((v) => `${v.availabilitySet}:${v.updateDomain}`),
            );
            const uds = new Map<string, Set<string>>();
            for (const pair of [...inFlight.values()].flat()) {
              const [set, ud] = pair.split(':') as [string, string];
              uds.set(set, (uds.get(set) ?? new Set()).add(ud));
            }
            for (const [set, u] of uds)
              if (u.size > 1) failures.push(`set ${set} had update domains ${[...u].join(',')} at once`);
          });
          controller.executor.on('rollout:step:finished', (step) => inFlight.delete(step.host));
        };
        let controller = new Controller({ events, store, agents: clients, time, pollGraceMs: 5 * SECOND });
        watch(controller);
        try {
          const rollout = await controller.apply({
            update: { id: 'u', kind: 'host-patch', expectedApplyMs: s.applyS * SECOND },
            policy: {
              pauseBudgetMs: s.budgetS * SECOND,
              maxHostsInParallel: s.maxHosts,
              maxVmsPausedAtOnce: s.maxPaused,
              failureBudget: { maxFailedHosts: s.hosts },
            },
          });
          const published = new Set<string>();
          events.on('event:scheduled', (e) => {
            if (published.has(e.eventId)) failures.push(`event ${e.eventId} published twice`);
            published.add(e.eventId);
          });
          let done = false;
          for (let pass = 0; pass < 5000 && !done; pass++) {
            if (pass === s.restartAt) {
              // The controller process is gone; a new one continues from the store.
              controller = new Controller({ events, store, agents: clients, time, pollGraceMs: 5 * SECOND });
              watch(controller);
            }
            await controller.executor.reconcileOnce();
            await events.tick();
            for (const e of events.list()) {
              if (
                e.phase === 'Scheduled' &&
                e.approvedAt === undefined &&
                ((s.seed + pass) % 100) / 100 < s.approveChance
              ) {
                const vm = e.resources[0];
                if (vm) await events.approve(vm, [e.eventId]);
              }
            }
            const r = await store.getRollout(rollout.id);
            done = r !== undefined && ['completed', 'halted', 'cancelled'].includes(r.status);
            await time.advance(250);
          }
          // Let every step and lease finish.
          for (let i = 0; i < 400; i++) {
            await controller.executor.reconcileOnce();
            await time.advance(250);
          }
          assert.ok(done, 'the rollout ended');
          const ops = await store.listOperations({ rolloutId: rollout.id });
          for (const op of ops) {
            if (op.pauseMs !== null && op.pauseMs > op.pauseBudgetMs)
              failures.push(`${op.vm} paused ${op.pauseMs} ms > ${op.pauseBudgetMs}`);
          }
          for (const [name, host] of sim) {
            if (host.appliedUpdates().length > 1)
              failures.push(`${name} patched ${host.appliedUpdates().length} times`);
            for (const vm of host.vms()) if (vm.state === 'paused') failures.push(`${vm.name} left paused`);
          }
          const history = await events.history({ includeRemoved: true });
          const planned = rollout.plan.waves
            .slice(0, (await store.getRollout(rollout.id))?.wave ?? 0)
            .flatMap((w) => w.events.map((e) => e.eventId));
          for (const id of planned)
            if (!history.some((e) => e.eventId === id)) failures.push(`event ${id} of a finished wave is missing`);
          assert.deepEqual(failures, []);
        } finally {
          // Steps still under way (a hung update) end at their deadlines: let virtual time run out.
          time.setAutoAdvance(true);
          await Promise.all(agents.map((a) => a.close()));
          await events.stop();
          await store.close();
        }
      }),
      { numRuns: RUNS, seed: Number(process.env.FC_SEED ?? 20261122) },
    );
  });
});
