/**
 * Rollout benchmark: plans and applies an update over the benchmark region (10,000 hosts, 250,000
 * VMs, 5,000 availability sets of 20 update domains) with the simulated driver, in-process agents
 * and the embedded SQLite store, on virtual time (nothing waits in wall time).
 *
 *   node --expose-gc --import tsx bench/rollout.ts [--hosts-scale=1] [--kind=host-patch] [--store=file|memory]
 *
 * The process runs with the product's heap growth setting (src/service/heap-growth.ts, 50 % by
 * default, `INTERMISSION_HEAP_GROWTH_PERCENT` as for the CLI; `--heap-growth=0` leaves V8's own
 * policy, under which a busy heap grows to 2-4x its live data before a full collection: about
 * 2 GiB here, against some 420 MiB live). `BENCH_PHASES=1` (with --expose-gc) prints the live heap
 * at each phase; `BENCH_SNAPSHOT=<file>` writes a heap snapshot when the apply ends.
 *
 * The store is a SQLite file in a temporary directory, as the product runs it (`<state>/intermission.db`,
 * WAL, synchronous=FULL); `--store=memory` keeps the whole database in this process's memory
 * instead, which adds its size (hundreds of MiB at full scale) to the peak.
 *
 * Reports plan time, apply wall time, peak memory, and the simulated makespan against its lower
 * bound (the sum over waves of notice plus the longest host step). Targets: plan ≤ 2 s, peak
 * memory ≤ 1 GiB, makespan within 5 % of the bound. The policy has no settle time between waves,
 * so the bound is reachable; the executor's own overhead is what the ratio measures.
 */
import { FleetIndex, MINUTE, SECOND, eventTiming, formatDuration, type Fleet } from '../src/domain/index.js';
import {
  parseRolloutPolicy,
  parseUpdate,
  planLowerBound,
  planRollout,
  type Plan,
  type RolloutPolicy,
  type UpdateKind,
} from '../src/domain/rollout/index.js';
import { AgentClient, HostAgent, MemoryJournal, createAgentApp } from '../src/agent/index.js';
import { Controller } from '../src/controller/controller.js';
import { VirtualTime, createSimFleet } from '../src/hypervisor/sim/index.js';
import { EventService } from '../src/service/event-service.js';
import { openSqliteStore } from '../src/store/index.js';
import { HEAP_GROWTH_ENV, applyHeapGrowth, heapGrowthPercent } from '../src/service/heap-growth.js';
import { buildRegion } from './region.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { join } from 'node:path';

const TARGET_PLAN_MS = 2_000;
const TARGET_BYTES = 1024 ** 3;
const TARGET_RATIO = 1.05;

function arg(name: string, fallback: string): string {
  const hit = process.argv.find((a) => a.startsWith(`--${name}=`));
  return hit === undefined ? fallback : hit.slice(name.length + 3);
}

/** Keeps every n-th host (and its VMs) for quick runs; 1 is the whole region. */
function shrink(fleet: Fleet, every: number): Fleet {
  if (every <= 1) return fleet;
  const hosts = fleet.hosts.filter((_, i) => i % every === 0);
  const keep = new Set(hosts.map((h) => h.name));
  const vms = fleet.vms.filter((v) => keep.has(v.host));
  const sets = new Set(vms.map((v) => v.availabilitySet));
  return { hosts, vms, availabilitySets: fleet.availabilitySets.filter((s) => sets.has(s.name)) };
}

const heapGrowth = applyHeapGrowth(
  heapGrowthPercent({ [HEAP_GROWTH_ENV]: arg('heap-growth', process.env[HEAP_GROWTH_ENV] ?? '') }),
);

let peakRss = 0;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 50);
sampler.unref();

// BENCH_PHASES=1 (with --expose-gc): live heap after a full collection at each phase, to see what
// the peak is made of.
const phases = process.env['BENCH_PHASES'] !== undefined;
function phase(name: string): void {
  if (!phases) return;
  const collect = (globalThis as { gc?: () => void }).gc;
  collect?.();
  const m = process.memoryUsage();
  const mib = (n: number): string => `${(n / 1024 ** 2).toFixed(0)} MiB`;
  console.log(
    `phase ${name}: heap used ${mib(m.heapUsed)}, external ${mib(m.external)}, rss ${mib(m.rss)}, peak rss so far ${mib(Math.max(peakRss, m.rss))}`,
  );
}

const kind = arg('kind', 'host-patch') as UpdateKind;
// Only the fleet is kept: the region's capability table is the planner benchmark's input, while
// this one asks the agents for their facts.
const fleetData = shrink(buildRegion('aligned').fleet, Number(arg('hosts-scale', '1')));
const fleet = new FleetIndex(fleetData);
const time = new VirtualTime();
const storeKind = arg('store', 'file');
if (storeKind !== 'file' && storeKind !== 'memory') throw new Error(`--store wants file or memory, got ${storeKind}`);
const storeDir = storeKind === 'file' ? await mkdtemp(join(tmpdir(), 'bench-rollout-')) : undefined;
const store = await openSqliteStore({ path: storeDir === undefined ? ':memory:' : join(storeDir, 'intermission.db') });
const events = await EventService.open({ fleet, store, clock: time.clock, timing: eventTiming() });
phase('fleet');
const sim = createSimFleet({ fleet: fleetData, time, seed: 11 });
phase('simulated hosts');
const clients = new Map<string, AgentClient>();
const agents: HostAgent[] = [];
for (const [host, simHost] of sim) {
  const agent = await HostAgent.start({ driver: simHost.connect(), journal: new MemoryJournal(), time });
  agents.push(agent);
  const app = createAgentApp({ agent, token: 'bench' });
  clients.set(
    host,
    new AgentClient({ host, baseUrl: 'http://agent.invalid', token: 'bench', fetch: (r) => app.fetch(r) }),
  );
}
const controller = new Controller({ events, store, agents: clients, time });
phase('agents');
const policy: RolloutPolicy = { settleMs: 0, failureBudget: { maxFailedFraction: 0.01 } };
const update = {
  id: `bench-${kind}`,
  kind,
  expectedApplyMs: 10 * SECOND,
  ...(kind === 'vmm-update' ? { vmm: { fromVersion: 'sim-1.0', toVersion: 'sim-2.0' } } : {}),
};

// Capability facts come from every agent (I/O), then the plan is made (pure): timed apart. In a
// function, so that the facts are dropped once planned, as the controller drops them.
async function makePlan(): Promise<{ plan: Plan; factsMs: number; planMs: number }> {
  const factsStarted = performance.now();
  const capabilities = await controller.capabilities();
  const factsMs = performance.now() - factsStarted;
  const planStarted = performance.now();
  const plan = planRollout({
    fleet,
    update: parseUpdate(update),
    policy: parseRolloutPolicy(policy),
    now: time.now(),
    capabilities,
    timing: events.timing,
  });
  return { plan, factsMs, planMs: performance.now() - planStarted };
}
const { plan, factsMs, planMs } = await makePlan();
const bound = planLowerBound(plan);
phase('planned');

// Apply, driving virtual time: jump to the next deadline while nothing runs, 1 s passes while
// host steps run (the reconcile granularity a real controller has with its 250 ms loop, rounded up).
if (process.argv.includes('--plan-only')) {
  console.log(
    `plan only: ${planMs.toFixed(0)} ms (facts ${factsMs.toFixed(0)} ms), peak RSS ${(Math.max(peakRss, process.memoryUsage().rss) / 1024 ** 2).toFixed(0)} MiB, heap growth ${heapGrowth} %`,
  );
  await Promise.all(agents.map((a) => a.close()));
  await events.stop();
  await store.close();
  if (storeDir !== undefined) await rm(storeDir, { recursive: true, force: true });
  process.exit(0);
}
const applyStarted = performance.now();
const startAt = time.now();
const rollout = await controller.executor.create(plan);
phase('rollout created');
if (process.env.BENCH_TRACE) {
  const t = (): string => formatDuration(time.now() - startAt);
  controller.executor.on('rollout:wave:published', (i) => console.log(`${t()} wave ${i.wave} published`));
  controller.executor.on('rollout:wave:settled', (i) => console.log(`${t()} wave ${i.wave} settled`));
  let lastWave = -1;
  controller.executor.on('rollout:step:dispatched', (st) => {
    if (st.wave !== lastWave) console.log(`${t()} wave ${st.wave} first step`);
    lastWave = st.wave;
  });
}
let passes = 0;
let status = rollout.status;
while (status === 'running' || status === 'paused') {
  passes++;
  if (passes % 500 === 0) phase(`apply pass ${passes}`);
  await controller.executor.reconcileOnce();
  await events.tick();
  const current = await store.getRollout(rollout.id);
  status = current?.status ?? 'completed';
  if (status !== 'running') break;
  const now = time.now();
  const busy = time.pending > 0 || current?.wavePhase !== 'published';
  const deadlines = [events.nextDeadline(), current?.settleUntil ?? undefined].filter(
    (t): t is number => t !== undefined && t > now,
  );
  const next = busy ? now + SECOND : Math.min(now + 10 * MINUTE, ...deadlines);
  await time.advanceTo(next);
}
const makespan = time.now() - startAt;
if (process.env['BENCH_SNAPSHOT']) (await import('node:v8')).writeHeapSnapshot(process.env['BENCH_SNAPSHOT']);
const applyMs = performance.now() - applyStarted;
clearInterval(sampler);
peakRss = Math.max(peakRss, process.memoryUsage().rss);

const ops = await store.listOperations({ rolloutId: rollout.id });
const pauses = ops.flatMap((o) => (o.pauseMs === null ? [] : [o.pauseMs])).sort((a, b) => a - b);
const q = (p: number): number => pauses[Math.min(pauses.length - 1, Math.floor(p * pauses.length))] ?? 0;
const overBudget = ops.filter((o) => o.pauseMs !== null && o.pauseMs > o.pauseBudgetMs).length;
const ratio = makespan / bound;

console.log(
  `region: ${fleet.fleet.hosts.length} hosts, ${fleet.fleet.vms.length} VMs, ${fleet.fleet.availabilitySets.length} sets; update ${kind}; store ${storeKind === 'file' ? 'SQLite file' : 'SQLite in memory'}`,
);
console.log(
  `plan:   ${planMs.toFixed(0)} ms  (${plan.waves.length} waves, ${plan.stats.events} events, ${plan.stats.plannedHosts} hosts)  target ≤ ${TARGET_PLAN_MS} ms  ${planMs <= TARGET_PLAN_MS ? 'PASS' : 'FAIL'}; capability facts from the agents ${factsMs.toFixed(0)} ms`,
);
console.log(`apply:  ${(applyMs / 1000).toFixed(1)} s wall, ${passes} reconcile passes, status ${status}`);
console.log(
  `memory: peak RSS ${(peakRss / 1024 ** 2).toFixed(0)} MiB  target ≤ 1024 MiB  ${peakRss <= TARGET_BYTES ? 'PASS' : 'FAIL'} (heap growth ${heapGrowth === 0 ? "V8's own policy" : `${heapGrowth} %`}, V8 heap limit ${(getHeapStatistics().heap_size_limit / 1024 ** 2).toFixed(0)} MiB)`,
);
console.log(
  `makespan: ${formatDuration(makespan)} simulated vs lower bound ${formatDuration(bound)}: ratio ${ratio.toFixed(4)}  target ≤ ${TARGET_RATIO}  ${ratio <= TARGET_RATIO ? 'PASS' : 'FAIL'}`,
);
console.log(
  `pauses: ${pauses.length} VMs paused, p50 ${q(0.5).toFixed(0)} ms, p99 ${q(0.99).toFixed(0)} ms, max ${(pauses.at(-1) ?? 0).toFixed(0)} ms; over budget: ${overBudget}`,
);
await Promise.all(agents.map((a) => a.close()));
await events.stop();
await store.close();
if (storeDir !== undefined) await rm(storeDir, { recursive: true, force: true });
