import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isEmptyMutation } from '../../src/domain/index.js';
import { openSqliteStore, type SqliteEventStore } from '../../src/store/sqlite/index.js';
import { arbitraryFleet, arbitraryOps, arbitraryTiming, Simulation } from '../domain/lifecycle-model.js';
import { rejectsWith } from './event-store.contract.js';
import { byId } from './event-fixtures.js';
import { sqliteSkip, tempDir } from './sqlite-harness.js';

// Invariant 5 end to end: the random lifecycle of lifecycle.property.test.ts, with every mutation
// committed to a real SQLite file before it is applied, and restarts that rebuild the book from the
// store alone. A restart must show the same documents and incarnations, keep the whole history, and
// the store must refuse to go back to an older incarnation.

/** Closes `store`, opens its file again, and swaps a book restored from it into `sim`. */
async function restart(sim: Simulation, store: SqliteEventStore, path: string): Promise<SqliteEventStore> {
  await store.close();
  const reopened = await openSqliteStore({ path });
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

void describe('event lifecycle persisted in SQLite', { skip: sqliteSkip ?? false }, () => {
  void it('loses nothing across restarts and never lowers an incarnation', async () => {
    const dir = await tempDir();
    let run = 0;
    let restarts = 0;
    try {
      await fc.assert(
        fc.asyncProperty(arbitraryFleet, arbitraryTiming, arbitraryOps(10, 40), async (fleet, timing, ops) => {
          const path = dir.file(`run-${++run}.db`);
          const sim = new Simulation(fleet, timing);
          let store = await openSqliteStore({ path });
          try {
            for (const op of ops) {
              if (op.kind === 'restart') {
                store = await restart(sim, store, path);
                continue;
              }
              const mutation = sim.step(op);
              // Persist first, then apply: what the book shows is always durable.
              if (mutation !== undefined && !isEmptyMutation(mutation)) await store.commit(mutation);
              sim.apply(mutation);
            }
            store = await restart(sim, store, path);
            restarts += sim.stats.restarts;
          } finally {
            await store.close();
          }
        }),
        { numRuns: 30 },
      );
    } finally {
      await dir.cleanup();
    }
    assert.ok(restarts > 30, `only ${restarts} restarts were exercised`);
  });
});
