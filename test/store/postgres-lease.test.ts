import { strict as assert } from 'node:assert';
import { after, describe, it } from 'node:test';
import { openPostgresStore, type PostgresEventStore } from '../../src/store/postgres/index.js';
import type { LeaseState } from '../../src/store/index.js';
import { isIntermissionError } from '../../src/domain/index.js';
import { runLeaseStoreContract } from './lease-store.contract.js';
import { postgresSkip, startPostgresCluster, type PostgresCluster } from './postgres-harness.js';

// The LeaseStore contract against a real PostgreSQL, and replicas (one pool each) racing for the
// lease: never two leaders for overlapping lease periods, epochs strictly increasing.

const cluster: PostgresCluster | undefined = postgresSkip === undefined ? await startPostgresCluster() : undefined;
after(() => cluster?.stop());

const urls = new WeakMap<PostgresEventStore, string>();

async function openAt(url: string, maxConnections = 4): Promise<PostgresEventStore> {
  const store = await openPostgresStore({ connectionString: url, maxConnections });
  urls.set(store, url);
  return store;
}

function running(): PostgresCluster {
  if (!cluster) throw new Error('PostgreSQL is not running; the suite should have been skipped');
  return cluster;
}

runLeaseStoreContract<PostgresEventStore>({
  name: 'postgres',
  skip: postgresSkip,
  newStore: async () => openAt(await running().createDatabase()),
  sibling: (store) => {
    const url = urls.get(store);
    if (url === undefined) throw new Error('a store that this harness did not open');
    return openAt(url);
  },
});

/** One lease period a replica won. */
interface Won {
  readonly holder: string;
  readonly epoch: number;
  readonly from: number;
  readonly until: number;
}

describe('leader lease on PostgreSQL: replicas racing', { skip: postgresSkip ?? false }, () => {
  it('never two leaders for overlapping periods; the epoch goes up by one at each change of hands', async () => {
    const url = await running().createDatabase();
    const replicas = await Promise.all(Array.from({ length: 5 }, () => openAt(url, 2)));
    try {
      // Injected times on a shared virtual clock: each round, every replica asks at once at the
      // same instant, with a ttl shorter than some rounds' step, so the lease keeps changing hands
      // while several replicas race for it each time. Some replicas "stall" and skip rounds.
      const won: Won[] = [];
      const seen: LeaseState[] = [];
      let now = Date.UTC(2026, 0, 1);
      const ttlMs = 1000;
      let seed = 7;
      const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      for (let round = 0; round < 150; round++) {
        now += random() < 0.5 ? 400 : 1100;
        const at = now;
        const results = await Promise.all(
          replicas.map(async (store, i) => {
            if (random() < 0.3) return undefined; // stalled this round
            const state = await store.acquireOrRenew({ holder: `r${i}`, ttlMs, now: at });
            return { i, state };
          }),
        );
        const leaders = results.filter((r) => r?.state.leader);
        assert.ok(leaders.length <= 1, `round ${round}: ${leaders.length} leaders`);
        for (const r of results) if (r) seen.push(r.state);
        const leader = leaders[0];
        if (leader)
          won.push({ holder: `r${leader.i}`, epoch: leader.state.epoch, from: at, until: leader.state.expiresAt });
      }
      // Never two holders for overlapping periods: a period of another holder starts at or after
      // the previous period's end.
      for (let i = 1; i < won.length; i++) {
        const prev = won[i - 1] as Won;
        const cur = won[i] as Won;
        if (cur.holder === prev.holder) {
          assert.equal(cur.epoch, prev.epoch, `a renewal keeps the epoch (round ${i})`);
        } else {
          assert.ok(
            cur.from >= prev.until,
            `${cur.holder} led from ${cur.from} while ${prev.holder} held until ${prev.until}`,
          );
          assert.equal(cur.epoch, prev.epoch + 1, 'the epoch goes up by exactly one');
        }
      }
      assert.ok(new Set(won.map((w) => w.holder)).size >= 3, 'the lease changed hands among several replicas');
      assert.ok(won.length > 100);
      // Whatever a loser saw, it never saw an epoch above the winner's, nor one going down.
      assert.ok(Math.max(...seen.map((s) => s.epoch)) === (won.at(-1) as Won).epoch);
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
    }
  });

  it('fenced writes: a replica that lost the lease writes nothing, whatever it still believes', async () => {
    const url = await running().createDatabase();
    const [a, b] = [await openAt(url), await openAt(url)];
    try {
      const t0 = Date.UTC(2026, 0, 1);
      await a.acquireOrRenew({ holder: 'a', ttlMs: 1000, now: t0 });
      // A believes it leads at epoch 1 (a stalled process that has not looked at its clock yet).
      a.fenceWrites({ epoch: () => 1 });
      const scope = { scope: 'set:web' as const, incarnation: 2 };
      await a.commit({ events: [], scopes: [scope] });
      await b.acquireOrRenew({ holder: 'b', ttlMs: 1000, now: t0 + 1000 });
      b.fenceWrites({ epoch: () => 2 });
      await assert.rejects(a.commit({ events: [], scopes: [{ scope: 'set:web', incarnation: 3 }] }), (e: unknown) =>
        isIntermissionError(e, 'STALE_EPOCH'),
      );
      assert.deepEqual((await b.loadEvents()).scopes, [scope], 'nothing of the refused write');
      await b.commit({ events: [], scopes: [{ scope: 'set:web', incarnation: 3 }] });
      a.fenceWrites({ epoch: () => undefined });
      await assert.rejects(a.commit({ events: [], scopes: [{ scope: 'set:web', incarnation: 4 }] }), (e: unknown) =>
        isIntermissionError(e, 'STALE_EPOCH'),
      );
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("on the database's clock, many concurrent acquisitions of a free lease make exactly one leader", async () => {
    const url = await running().createDatabase();
    const replicas = await Promise.all(Array.from({ length: 8 }, () => openAt(url, 3)));
    try {
      let lastEpoch = 0;
      for (let round = 0; round < 20; round++) {
        const results = await Promise.all(
          replicas.flatMap((store, i) =>
            // Three calls per replica at once: each pool's connections race among themselves too.
            [0, 1, 2].map(async () => ({ i, state: await store.acquireOrRenew({ holder: `r${i}`, ttlMs: 60_000 }) })),
          ),
        );
        const holders = new Set(results.filter((r) => r.state.leader).map((r) => r.i));
        assert.equal(holders.size, 1, `round ${round}: leaders ${[...holders].join(',')}`);
        const epochs = new Set(results.filter((r) => r.state.leader).map((r) => r.state.epoch));
        assert.deepEqual([...epochs], [lastEpoch + 1]);
        lastEpoch += 1;
        const [holder] = holders;
        assert.equal(await replicas[holder as number]?.release({ holder: `r${holder}` }), true);
      }
    } finally {
      await Promise.all(replicas.map((r) => r.close()));
    }
  });
});
