import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { isEmptyMutation } from '../../src/domain/index.js';
import { openPostgresStore } from '../../src/store/postgres/index.js';
import type { SqlStore } from '../../src/store/sql/index.js';
import { openSqliteStore } from '../../src/store/sqlite/index.js';
import { arbitraryFleet, arbitraryOps, arbitraryTiming, Simulation } from '../domain/lifecycle-model.js';
import { rejectsWith } from './event-store.contract.js';
import { byId } from './event-fixtures.js';
import { postgresSkip, startPostgresCluster } from './postgres-harness.js';
import { sqliteSkip, tempDir } from './sqlite-harness.js';

// Invariant 5 end to end: the random lifecycle of lifecycle.property.test.ts, with every mutation
// committed to a real store (an SQLite file, a PostgreSQL database) before it is applied, and
// restarts that rebuild the book from the store alone. A restart must show the same documents and incarnations, keep the whole history, and
// the store must refuse to go back to an older incarnation.

/** Closes `store`, opens its data again, and swaps a book restored from it into `sim`. */
async function restart(sim: Simulation, store: SqlStore, open: () => Promise<SqlStore>): Promise<SqlStore> {
  await store.close();
  const reopened = await open();
  const restored = sim.newBook();
  restored.restore(await reopened.loadEvents());
  sim.restart(restored);
  assert.deepStrictEqual(
    byId(await reopened.queryEvents({ includeRemoved: true })),
    byId([...sim.history.values()]),
    'the history lost or changed an event',
  );
  const raised = sim.book.scopes().find((s) => s.incarnation > 1);
  if (raised) {
    const stale = { events: [], scopes: [{ scope: raised.scope, incarnation: raised.incarnation - 1 }] };
    await rejectsWith(reopened.commit(stale), 'CONFLICT');
  }
  return reopened;
}

/** One engine: where each run's data lives (a fresh place per run), and how to open it. */
interface Engine {
  readonly name: string;
  readonly skip: string | undefined;
  /** A fresh place for one run's data, and how to open it (again). */
  readonly place: () => Promise<() => Promise<SqlStore>>;
}

const dir = await tempDir();
after(() => dir.cleanup());
const cluster = postgresSkip === undefined ? await startPostgresCluster() : undefined;
let places = 0;
const engines: Engine[] = [
  {
    name: 'SQLite',
    skip: sqliteSkip,
    place: () => {
      const path = dir.file(`run-${++places}.db`);
      return Promise.resolve(() => openSqliteStore({ path }));
    },
  },
  {
    name: 'PostgreSQL',
    skip: postgresSkip,
    place: async () => {
      if (!cluster) throw new Error('PostgreSQL is not running');
      const url = await cluster.createDatabase();
      return () => openPostgresStore({ connectionString: url, maxConnections: 2 });
    },
  },
];

for (const engine of engines) {
  void describe(`event lifecycle persisted in ${engine.name}`, { skip: engine.skip ?? false }, () => {
    void it('loses nothing across restarts and never lowers an incarnation', async () => {
      let restarts = 0;
      await fc.assert(
        fc.asyncProperty(arbitraryFleet, arbitraryTiming, arbitraryOps(10, 40), async (fleet, timing, ops) => {
          const open = await engine.place();
          const sim = new Simulation(fleet, timing);
          let store = await open();
          try {
            for (const op of ops) {
              if (op.kind === 'restart') {
                store = await restart(sim, store, open);
                continue;
              }
              const mutation = sim.step(op);
              // Persist first, then apply: what the book shows is always durable.
              if (mutation !== undefined && !isEmptyMutation(mutation)) await store.commit(mutation);
              sim.apply(mutation);
            }
            store = await restart(sim, store, open);
            restarts += sim.stats.restarts;
          } finally {
            await store.close();
          }
        }),
        { numRuns: 30 },
      );
      assert.ok(restarts > 30, `only ${restarts} restarts were exercised`);
    });
  });
}
