import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FleetIndex, isIntermissionError, parseFleet, type MaintenanceEvent } from '../../src/domain/index.js';
import { planRollout } from '../../src/domain/rollout/index.js';
import { pendingStepsOf, type RolloutRecord } from '../../src/store/index.js';
import { openPostgresStore, POSTGRES_MIGRATIONS, type PostgresEventStore } from '../../src/store/postgres/index.js';
import { eventId, scheduledEvent } from './event-fixtures.js';
import { postgresSkip, startPostgresCluster, type PostgresCluster } from './postgres-harness.js';

// What SQLite gets from its single writer must hold between processes on one PostgreSQL: two stores
// (two pools, as two controller replicas would hold) race on one database, and the invariants hold.

const cluster: PostgresCluster | undefined = postgresSkip === undefined ? await startPostgresCluster() : undefined;

function running(): PostgresCluster {
  if (!cluster) throw new Error('PostgreSQL is not running; the suite should have been skipped');
  return cluster;
}

/** Two stores (two pools) on one new database, its connection string, and how to close both. */
async function twoStores(): Promise<[PostgresEventStore, PostgresEventStore, string, () => Promise<void>]> {
  const url = await running().createDatabase();
  const a = await openPostgresStore({ connectionString: url, maxConnections: 3 });
  const b = await openPostgresStore({ connectionString: url, maxConnections: 3 });
  return [a, b, url, async () => void (await Promise.all([a.close(), b.close()]))];
}

const fleet = new FleetIndex(
  parseFleet({
    hosts: [{ name: 'h1' }, { name: 'h2' }, { name: 'h3' }],
    availabilitySets: [{ name: 'web', updateDomains: 3 }],
    vms: [
      { name: 'web_0', host: 'h1', availabilitySet: 'web' },
      { name: 'web_1', host: 'h2', availabilitySet: 'web' },
      { name: 'web_2', host: 'h3', availabilitySet: 'web' },
    ],
  }),
);
const capable = { sharedMemory: true, migratableDevices: true, guestAgent: true };

function rolloutOver(id: string, hosts: string[]): { record: RolloutRecord; steps: ReturnType<typeof pendingStepsOf> } {
  const plan = planRollout({
    fleet,
    update: { id, kind: 'host-patch', expectedApplyMs: 2000, hosts: { kind: 'names', names: hosts } },
    now: Date.UTC(2026, 0, 1),
    capabilities: new Map(fleet.fleet.vms.map((vm) => [vm.name, capable])),
  });
  const record: RolloutRecord = {
    id,
    plan,
    status: 'running',
    reason: null,
    createdAt: 1,
    updatedAt: 1,
    wave: 0,
    wavePhase: 'pending',
    wavePublishedAt: null,
    settleUntil: null,
    failedHosts: 0,
  };
  return { record, steps: pendingStepsOf(plan) };
}

/** The incarnation a commit of writer `w`, round `r` raised the scope to, as its event records it. */
function incarnationOf(e: MaintenanceEvent): number {
  return Number(/^k=(\d+)$/.exec(e.description)?.[1] ?? Number.NaN);
}

void describe('PostgreSQL store: two stores racing on one database', { skip: postgresSkip ?? false }, () => {
  void it('publishes and approvals from two stores never lower an incarnation, and every commit is whole', async () => {
    const [a, b, url, close] = await twoStores();
    const monitor = await openPostgresStore({ connectionString: url, maxConnections: 1 });
    try {
      const shared = scheduledEvent(0, { description: 'k=0' });
      type Outcome = { id: string; k: number; writer: string; ok: boolean };
      const outcomes: Outcome[] = [];
      let stop = false;
      const seen: number[] = [];
      // A reader that checks every snapshot: the incarnation never goes down, and it is the k of the
      // newest commit, whose event is there (a commit is seen whole or not at all).
      const watching = (async () => {
        while (!stop) {
          const { events, scopes } = await monitor.loadEvents();
          const inc = scopes.find((s) => s.scope === 'set:web')?.incarnation ?? 0;
          const newest = Math.max(0, ...events.filter((e) => e.eventId !== shared.eventId).map(incarnationOf));
          assert.equal(inc, newest, 'the snapshot holds the event of the commit that set its incarnation');
          if (seen.length > 0) assert.ok(inc >= (seen.at(-1) ?? 0), `incarnation went down: ${seen.at(-1)} -> ${inc}`);
          seen.push(inc);
        }
      })();
      const writer = async (store: PostgresEventStore, name: string, offset: number): Promise<void> => {
        for (let round = 0; round < 40; round++) {
          const current = (await store.loadEvents()).scopes.find((s) => s.scope === 'set:web')?.incarnation ?? 1;
          // Mostly the next incarnation or one further (the other writer often gets there first, and
          // then this commit would lower it); every fifth round one below what was read, a stale view
          // for sure. A commit that would lower the incarnation must be refused whole.
          const k = round % 5 === 4 ? Math.max(1, current - 1) : current + 1 + (round % 2);
          const id = eventId(offset + round);
          const mutation = {
            events: [
              scheduledEvent(offset + round, { description: `k=${k}` }),
              // Both writers approve the one shared event: the last committed approval wins.
              { ...shared, phase: 'Started' as const, approvedAt: k, approvedBy: name, startedAt: k },
            ],
            scopes: [{ scope: 'set:web' as const, incarnation: k }],
          };
          try {
            await store.commit(mutation);
            outcomes.push({ id, k, writer: name, ok: true });
          } catch (error) {
            assert.ok(isIntermissionError(error, 'CONFLICT'), `expected CONFLICT, got ${String(error)}`);
            outcomes.push({ id, k, writer: name, ok: false });
          }
        }
      };
      await Promise.all([writer(a, 'a', 1000), writer(b, 'b', 2000)]);
      stop = true;
      await watching;

      const stored = await a.queryEvents({ includeRemoved: true });
      const ids = new Set(stored.map((e) => e.eventId));
      const won = outcomes.filter((o) => o.ok);
      const refused = outcomes.filter((o) => !o.ok);
      for (const o of won) assert.ok(ids.has(o.id), `committed event ${o.id} is stored`);
      for (const o of refused) assert.ok(!ids.has(o.id), `refused event ${o.id} left nothing`);
      const final = (await b.loadEvents()).scopes.find((s) => s.scope === 'set:web')?.incarnation;
      assert.equal(final, Math.max(...won.map((o) => o.k)));
      const approval = stored.find((e) => e.eventId === shared.eventId);
      assert.ok(
        won.some((o) => o.k === final && o.writer === approval?.approvedBy),
        'the shared event holds the approval of a commit that set the final incarnation',
      );
      assert.ok(
        refused.length > 0 && won.length > 0,
        `both kinds happened: ${won.length} won, ${refused.length} refused`,
      );
      assert.ok(seen.length > 1, 'the reader saw the race');
    } finally {
      await monitor.close();
      await close();
    }
  });

  void it('of two stores creating overlapping rollouts at once, exactly one wins each time (409 for the other)', async () => {
    const [a, b, , close] = await twoStores();
    try {
      for (let round = 0; round < 12; round++) {
        const first = rolloutOver(`a-${round}`, ['h1', 'h2']);
        const second = rolloutOver(`b-${round}`, round % 2 === 0 ? ['h2', 'h3'] : ['h1', 'h2', 'h3']);
        const results = await Promise.allSettled([
          a.createRollout(first.record, first.steps),
          b.createRollout(second.record, second.steps),
        ]);
        const fulfilled = results.filter((r) => r.status === 'fulfilled');
        const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        assert.equal(fulfilled.length, 1, `round ${round}: ${JSON.stringify(results.map((r) => r.status))}`);
        assert.ok(isIntermissionError(rejected[0]?.reason, 'CONFLICT'), String(rejected[0]?.reason));
        const active = await a.listRollouts({ active: true });
        assert.equal(active.length, 1, `round ${round}: one rollout holds the hosts`);
        const winner = active[0];
        assert.ok(winner);
        // The winner completes, and frees its hosts for the next round.
        await b.saveProgress({ rollout: { ...winner, status: 'completed', wave: winner.plan.waves.length } });
      }
      // The same id from both stores at once: one rollout, one CONFLICT.
      const same = rolloutOver('same', ['h3']);
      const results = await Promise.allSettled([
        a.createRollout(same.record, same.steps),
        b.createRollout(same.record, same.steps),
      ]);
      assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
      const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.ok(isIntermissionError(rejected?.reason, 'CONFLICT'), String(rejected?.reason));
      assert.equal((await a.listSteps('same')).length, same.steps.length);
    } finally {
      await close();
    }
  });

  void it('several stores opening one new database at once apply each migration exactly once', async () => {
    const url = await running().createDatabase();
    const stores = await Promise.all(
      Array.from({ length: 4 }, () => openPostgresStore({ connectionString: url, maxConnections: 1 })),
    );
    try {
      const applied = stores.flatMap((s) => s.migration.applied).sort((x, y) => x - y);
      assert.deepEqual(
        applied,
        POSTGRES_MIGRATIONS.map((m) => m.version),
      );
      const rows = await running().query<{ version: number }>(
        'SELECT version FROM intermission_migrations ORDER BY version',
        [],
        new URL(url).pathname.slice(1),
      );
      assert.deepEqual(
        rows.map((r) => r.version),
        POSTGRES_MIGRATIONS.map((m) => m.version),
      );
    } finally {
      await Promise.all(stores.map((s) => s.close()));
    }
  });
});
