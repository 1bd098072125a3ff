/**
 * Crash test, scenario A: the controller process is killed with SIGKILL three times during a
 * host-patch rollout (at seeded random moments: during a notice, around a host step, around the
 * end of a wave) and restarted on the same state directory each time. Agents are separate
 * processes that keep running. The rollout completes; every host is patched exactly once; every
 * event is published once and none is lost; no VM's DocumentIncarnation goes down; no VM is
 * paused past its budget (invariants 1, 3 and 5 across real process deaths).
 *
 * Replay or vary the kill moments with INTERMISSION_CRASH_SEED=<n>. Needs dist/ (built on demand,
 * see harness.ts). Takes about a minute: three waves with a 15 s Freeze notice (time scale 60).
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

const UPDATE_ID = 'patch-crash-controller';
const PAUSE_BUDGET_MS = 10_000;
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

describe('crash: the controller is killed during a rollout (real processes)', () => {
  it(
    'kill -9 the controller three times: the rollout completes, one update per host, events once, incarnations up, pauses within budget',
    { timeout: 180_000 },
    async (t) => {
      if (build.built)
        t.diagnostic(
          `built dist/ first${build.diagnostics ? ` (type errors elsewhere: ${build.diagnostics.split('\n').length} lines)` : ''}`,
        );
      const seed = crashSeed(1207);
      const random = new Random(seed);
      t.diagnostic(`seed ${seed} (INTERMISSION_CRASH_SEED)`);
      const began = Date.now();
      const elapsed = (): string => `+${((Date.now() - began) / 1000).toFixed(1)} s`;

      cluster = await Cluster.start({ name: 'controller', fleet: CRASH_FLEET, timeScale: 60, seed });
      const c = cluster;
      let watcher: Watcher | undefined;
      try {
        const updateFile = join(c.dir, 'update.json');
        const policyFile = join(c.dir, 'policy.json');
        await writeFile(updateFile, JSON.stringify({ id: UPDATE_ID, kind: 'host-patch', expectedApplyMs: '2s' }));
        await writeFile(
          policyFile,
          // settleMs is scaled like notices: 60 s at time scale 60 is 1 s between waves.
          JSON.stringify({ pauseBudgetMs: PAUSE_BUDGET_MS, settleMs: '60s', failureBudget: { maxFailedHosts: 0 } }),
        );
        const applied = JSON.parse(
          await c.cli(['apply', '--update', updateFile, '--policy', policyFile, '--json']),
        ) as {
          id: string;
        };
        const id = applied.id;
        const { plan } = await c.control<RolloutBody>(`/v1/rollouts/${encodeURIComponent(id)}?plan=true`);
        assert.ok(plan);
        assert.deepEqual(
          waveHosts(plan).map((h) => h.sort()),
          [['h0'], ['h1', 'h3'], ['h2']],
        );
        watcher = new Watcher(c, id);
        watcher.start();
        const w = watcher;

        const crash = async (label: string): Promise<void> => {
          const seen = w.latest;
          const where = seen
            ? `wave ${seen.rollout.wave} ${seen.rollout.wavePhase}; steps ${seen.steps.map((s) => `${s.host}:${s.status}`).join(' ')}`
            : 'no rollout seen yet';
          await c.killController();
          const down = random.int(200, 1500);
          t.diagnostic(`${elapsed()} kill -9 controller (${label}): last seen ${where}; restart in ${down} ms`);
          await sleep(down);
          await c.startController();
        };

        // 1: during the first wave's notice.
        await sleep(random.int(1000, 9000));
        await crash('during a notice');
        // 2: around a host step of wave 0 or 1 (dispatched, or just finished).
        const stepWave = random.int(0, 1);
        await w.until((r) => r.steps.some((s) => s.wave === stepWave && s.status !== 'pending'), 90_000);
        await sleep(random.int(0, 1500));
        await crash(`around a host step of wave ${stepWave}`);
        // 3: around the end of that wave (settling, health gate, next wave's publication).
        await w.until((r) => r.rollout.wave > stepWave || r.rollout.wavePhase === 'settling', 90_000);
        await sleep(random.int(0, 1200));
        await crash(`around the end of wave ${stepWave}`);

        const done = await w.until((r) => TERMINAL.has(r.rollout.status), 120_000);
        t.diagnostic(`${elapsed()} rollout ${done.rollout.status}`);
        await sleep(600); // a few more tenant reads after the end
        await w.stop();

        // The rollout, through the CLI.
        const detail = JSON.parse(await c.cli(['status', id, '--json'])) as RolloutBody;
        assert.equal(detail.rollout.status, 'completed', detail.rollout.reason ?? '');
        assert.equal(detail.rollout.failedHosts, 0);
        assert.equal(c.controller.generations.length, 4, 'three kills, three restarts');
        assert.deepEqual(detail.steps.map((s) => `${s.host}:${s.status}`).sort(), [
          'h0:succeeded',
          'h1:succeeded',
          'h2:succeeded',
          'h3:succeeded',
        ]);

        // Every host patched exactly once (the agents never restarted: their simulated hosts saw it all).
        const views = new Map<string, SimHostBody>();
        for (const host of c.agents.keys()) views.set(host, await c.agentGet<SimHostBody>(host, '/v1/sim/host'));
        for (const [host, view] of views) {
          assert.equal(c.agent(host).generations.length, 1);
          assert.deepEqual(view.appliedUpdates, [UPDATE_ID], `${host} applied the update exactly once`);
          const journal = (await c.journal(host)).entries.filter((e) => e.request.rolloutId === id);
          assert.deepEqual(
            journal.map((e) => e.status.status),
            ['succeeded'],
            `${host}: one host step in the agent's journal`,
          );
          for (const vm of view.vms) {
            assert.equal(vm.state, 'running', `${vm.name} runs`);
            assert.equal(vm.pauseCount, 1, `${vm.name} was paused exactly once (no host step repeated)`);
            assert.ok(vm.longestPauseMs <= PAUSE_BUDGET_MS, `${vm.name} paused ${vm.longestPauseMs} ms (ground truth)`);
          }
        }

        // Measured pauses, as the controller recorded them: one per VM, each within its budget.
        const ops = detail.operations;
        assert.deepEqual(
          ops.map((o) => o.vm).sort(),
          CRASH_FLEET.vms.map((v) => v.name).sort(),
          'one measured operation per VM',
        );
        for (const op of ops) {
          assert.equal(op.outcome, 'ok', `${op.vm}: ${op.outcome}`);
          assert.ok(op.pauseBudgetMs <= PAUSE_BUDGET_MS);
          assert.ok(op.pauseMs !== null && op.pauseMs <= op.pauseBudgetMs, `${op.vm} paused ${op.pauseMs} ms`);
        }

        // Events: each once, none lost; tenants' documents never went back.
        checkEventsOnce({
          plan,
          history: await c.control<EventsBody>('/v1/events?all=true'),
          controllerLogs: c.controllerLogs(),
        });
        checkTenantView({
          plan,
          reads: w.reads,
          pausedAt: firstPauses([...views.values()]),
          vms: CRASH_FLEET.vms.map((v) => v.name),
        });
        t.diagnostic(`${elapsed()} checked; ${w.failures} reads failed while the controller was down`);
      } catch (error) {
        t.diagnostic(`seed ${seed}; last lines of every process:\n${c.tails()}`);
        throw error;
      } finally {
        await watcher?.stop();
      }
    },
  );
});
