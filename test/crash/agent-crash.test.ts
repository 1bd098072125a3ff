/**
 * Crash test, scenario B: host agents are killed with SIGKILL during a host-patch rollout and
 * restarted on the same port and journal: one while idle (during the first wave's notice, before
 * its step), one in the middle of its host step (its VMs paused, the host update under way). With a
 * failure budget of one host the rollout completes; the interrupted step is recorded failed from the
 * agent's journal and never run again; the idle agent runs its step after its restart; events are
 * each published once and no DocumentIncarnation goes down; no VM of a live host is left paused.
 *
 * What the simulator cannot show: its VMs live in the agent process, so the killed agent's VMs die
 * with it and come back running (never paused) with the new process. That a VM left paused by a
 * dead agent is resumed within its budget needs a hypervisor that outlives the agent (QEMU with its
 * resume watchdog); here only the agent's side is tested (journal, adoption, no re-run).
 *
 * Replay or vary the kill moments with INTERMISSION_CRASH_SEED=<n>. Needs dist/ (built on demand,
 * see harness.ts). Takes about a minute.
 */
import { strict as assert } from 'node:assert';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkEventsOnce, checkTenantView, firstPauses, waveHosts } from './checks.js';
import {
  CRASH_FLEET,
  Cluster,
  Random,
  Watcher,
  crashSeed,
  ensureBuilt,
  sleep,
  type EventsBody,
  type RolloutBody,
  type SimHostBody,
} from './harness.js';

const UPDATE_ID = 'patch-crash-agent';
const PAUSE_BUDGET_MS = 10_000;
/** Long enough that a kill a little after the first pause lands inside the step. */
const APPLY_MS = 3000;
const TERMINAL = new Set(['completed', 'halted', 'cancelled']);

let build: { built: boolean; diagnostics: string } = { built: false, diagnostics: '' };
let cluster: Cluster | undefined;

before(
  async () => {
    build = await ensureBuilt();
  },
  { timeout: 300_000 },
);
after(async () => {
  await cluster?.close();
});

interface AgentVmsBody {
  readonly vms: readonly { readonly name: string; readonly state: string }[];
}

describe('crash: host agents are killed during a rollout (real processes)', () => {
  it(
    'kill -9 an idle agent and an agent mid-step: the rollout completes within a failure budget of one host, the interrupted step is failed and never re-run',
    { timeout: 180_000 },
    async (t) => {
      if (build.built) t.diagnostic('built dist/ first');
      const seed = crashSeed(2291);
      const random = new Random(seed);
      t.diagnostic(`seed ${seed} (INTERMISSION_CRASH_SEED)`);
      const began = Date.now();
      const elapsed = (): string => `+${((Date.now() - began) / 1000).toFixed(1)} s`;

      cluster = await Cluster.start({ name: 'agent', fleet: CRASH_FLEET, timeScale: 60, seed });
      const c = cluster;
      let watcher: Watcher | undefined;
      try {
        const updateFile = join(c.dir, 'update.json');
        const policyFile = join(c.dir, 'policy.json');
        await writeFile(updateFile, JSON.stringify({ id: UPDATE_ID, kind: 'host-patch', expectedApplyMs: APPLY_MS }));
        await writeFile(
          policyFile,
          JSON.stringify({ pauseBudgetMs: PAUSE_BUDGET_MS, settleMs: '60s', failureBudget: { maxFailedHosts: 1 } }),
        );
        const { id } = JSON.parse(await c.cli(['apply', '--update', updateFile, '--policy', policyFile, '--json'])) as {
          id: string;
        };
        const { plan } = await c.control<RolloutBody>(`/v1/rollouts/${encodeURIComponent(id)}?plan=true`);
        assert.ok(plan);
        const waves = waveHosts(plan);
        assert.deepEqual(
          waves.map((h) => [...h].sort()),
          [['h0'], ['h1', 'h3'], ['h2']],
        );
        watcher = new Watcher(c, id);
        watcher.start();
        const w = watcher;

        // The agent killed mid-step is one of the second wave's; the idle one any other.
        const midStep = random.pick(waves[1] ?? []);
        const idle = random.pick(CRASH_FLEET.hosts.map((h) => h.name).filter((h) => h !== midStep));

        // 1: an idle agent, during the first wave's notice (no step of its runs or has run).
        await w.until((r) => r.rollout.wave === 0 && r.rollout.wavePhase === 'published', 30_000);
        await sleep(random.int(500, 6000));
        const health = await c.agentGet<{ stepsRunning: number }>(idle, '/v1/health');
        assert.equal(health.stepsRunning, 0, `${idle} is idle`);
        assert.ok(w.latest?.steps.find((s) => s.host === idle)?.status === 'pending', `${idle}'s step has not started`);
        await c.killAgent(idle);
        const idleDown = random.int(200, 1500);
        t.diagnostic(`${elapsed()} kill -9 agent ${idle} (idle, wave 0 notice); restart in ${idleDown} ms`);
        await sleep(idleDown);
        await c.restartAgent(idle);

        // 2: an agent in the middle of its host step: its VMs paused, the update under way.
        await w.until((r) => r.steps.some((s) => s.host === midStep && s.status === 'dispatched'), 90_000);
        let before: SimHostBody | undefined;
        const deadline = Date.now() + 15_000;
        while (Date.now() < deadline) {
          const view = await c.agentGet<SimHostBody>(midStep, '/v1/sim/host');
          if (view.vms.some((v) => v.state === 'paused')) {
            before = view;
            break;
          }
          await sleep(20);
        }
        assert.ok(before, `${midStep} paused its VMs`);
        assert.deepEqual(before.appliedUpdates, [], `${midStep} had not applied the update yet`);
        await sleep(random.int(0, 1000));
        await c.killAgent(midStep);
        const midDown = random.int(300, 1500);
        t.diagnostic(
          `${elapsed()} kill -9 agent ${midStep} (mid-step, ${before.vms.filter((v) => v.state === 'paused').length} VMs paused); restart in ${midDown} ms`,
        );
        await sleep(midDown);
        await c.restartAgent(midStep);

        const done = await w.until((r) => TERMINAL.has(r.rollout.status), 120_000);
        t.diagnostic(`${elapsed()} rollout ${done.rollout.status}`);
        await sleep(600);
        await w.stop();

        const detail = JSON.parse(await c.cli(['status', id, '--json'])) as RolloutBody;
        assert.equal(detail.rollout.status, 'completed', detail.rollout.reason ?? '');
        assert.equal(detail.rollout.failedHosts, 1, 'one host failed: the one whose agent died mid-step');

        // The interrupted step: failed, from the restarted agent's journal, and never run again.
        const step = detail.steps.find((s) => s.host === midStep);
        assert.equal(step?.status, 'failed');
        assert.match(step.error ?? '', /restarted while the step ran/);
        const journal = (await c.journal(midStep)).entries.filter((e) => e.request.rolloutId === id);
        assert.equal(journal.length, 1, `${midStep}: one host step in the journal`);
        assert.equal(journal[0]?.status.status, 'failed');
        assert.equal(journal[0]?.status.error?.code, 'UNREACHABLE');
        const after = await c.agentGet<SimHostBody>(midStep, '/v1/sim/host');
        assert.deepEqual(after.appliedUpdates, [], `${midStep}'s new process never ran the step again`);
        assert.ok(
          after.history.every((h) => h.kind !== 'paused'),
          `${midStep}'s new process paused no VM`,
        );
        assert.equal(
          detail.operations.filter((o) => o.host === midStep).length,
          0,
          'no measurement from the interrupted step',
        );

        // Every other host: its step succeeded once, the idle one's after its restart.
        const views = new Map<string, SimHostBody>();
        for (const host of c.agents.keys()) views.set(host, await c.agentGet<SimHostBody>(host, '/v1/sim/host'));
        for (const [host, view] of views) {
          assert.equal(c.agent(host).generations.length, host === idle || host === midStep ? 2 : 1);
          // No VM of a live host is left paused: as the agent reports it, and as the host knows it.
          const reported = await c.agentGet<AgentVmsBody>(host, '/v1/vms');
          for (const vm of reported.vms) assert.equal(vm.state, 'running', `${vm.name} on ${host} (agent view)`);
          for (const vm of view.vms) {
            assert.equal(vm.state, 'running', `${vm.name} on ${host} (ground truth)`);
            assert.ok(vm.longestPauseMs <= PAUSE_BUDGET_MS, `${vm.name} paused ${vm.longestPauseMs} ms`);
          }
          if (host === midStep) continue;
          assert.equal(detail.steps.find((s) => s.host === host)?.status, 'succeeded', `${host}'s step`);
          assert.deepEqual(view.appliedUpdates, [UPDATE_ID], `${host} applied the update exactly once`);
          for (const vm of view.vms) assert.equal(vm.pauseCount, 1, `${vm.name} was paused exactly once`);
          const entries = (await c.journal(host)).entries.filter((e) => e.request.rolloutId === id);
          assert.deepEqual(
            entries.map((e) => e.status.status),
            ['succeeded'],
            `${host}: one host step in the journal`,
          );
        }
        const ops = detail.operations;
        assert.deepEqual(
          ops.map((o) => o.vm).sort(),
          CRASH_FLEET.vms
            .filter((v) => v.host !== midStep)
            .map((v) => v.name)
            .sort(),
          'one measured operation per VM of the hosts that succeeded',
        );
        for (const op of ops) {
          assert.equal(op.outcome, 'ok', `${op.vm}: ${op.outcome}`);
          assert.ok(op.pauseMs !== null && op.pauseMs <= op.pauseBudgetMs, `${op.vm} paused ${op.pauseMs} ms`);
        }

        checkEventsOnce({
          plan,
          history: await c.control<EventsBody>('/v1/events?all=true'),
          controllerLogs: c.controllerLogs(),
        });
        checkTenantView({
          plan,
          reads: w.reads,
          // The mid-step host's pauses are known from the view taken just before its agent died.
          pausedAt: firstPauses([...views.values(), before]),
          vms: CRASH_FLEET.vms.map((v) => v.name),
        });
        t.diagnostic(`${elapsed()} checked`);
      } catch (error) {
        t.diagnostic(`seed ${seed}; last lines of every process:\n${c.tails()}`);
        throw error;
      } finally {
        await watcher?.stop();
      }
    },
  );
});
