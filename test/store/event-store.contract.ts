import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  isIntermissionError,
  type ErrorCode,
  type IntermissionError,
  type MaintenanceEvent,
  type Mutation,
} from '../../src/domain/index.js';
import type { EventStore } from '../../src/store/store.js';
import { arbitraryEvent, byId, eventId, fullEvent, scheduledEvent } from './event-fixtures.js';

/** How the contract reaches one implementation of the {@link EventStore} port. */
export interface EventStoreContractOptions<S extends EventStore = EventStore> {
  /** Shown in the test names, e.g. `sqlite (file)`. */
  readonly name: string;
  /** A fresh, empty store. The suite closes every store it gets. */
  readonly newStore: () => Promise<S>;
  /**
   * Opens again the data of a store that the suite has just closed. Absent when nothing outlives
   * `close()` (an in-memory database): the restart tests are then skipped, with that reason.
   */
  readonly reopen?: (closed: S) => Promise<S>;
  /** Why `reopen` is absent, shown on the skipped restart tests. */
  readonly noReopenReason?: string;
  /** For stores with a versioned schema: how to read the version and forge a newer one. */
  readonly schema?: {
    /** The version this build writes. */
    readonly latest: number;
    readonly version: (store: S) => number;
    /** Makes the data of a closed store look written by a newer release. */
    readonly forgeNewerVersion: (closed: S) => Promise<void>;
  };
  /** A reason to skip the whole suite (store not selected or not available). */
  readonly skip?: string | undefined;
}

/**
 * The behaviour every {@link EventStore} must show, run once per implementation (SQLite file and
 * memory now, PostgreSQL later): faithful round trips, atomic commits, incarnations that never go
 * down, history, and restarts that lose nothing.
 */
export function runEventStoreContract<S extends EventStore>(options: EventStoreContractOptions<S>): void {
  const { newStore, reopen, schema } = options;

  /** Reopens a closed store; only called by tests that are skipped when `reopen` is absent. */
  function reopened(closed: S): Promise<S> {
    if (!reopen) throw new Error('this test needs reopen() and should have been skipped');
    return reopen(closed);
  }

  /** The schema hooks; only called by tests that are skipped when `schema` is absent. */
  function schemaHooks(): NonNullable<typeof schema> {
    if (!schema) throw new Error('this test needs the schema hooks and should have been skipped');
    return schema;
  }

  /** Runs `body` on a fresh store and closes whichever store is current at the end. */
  async function withStore(body: (store: S, swap: (next: S) => void) => Promise<void>): Promise<void> {
    let store = await newStore();
    try {
      await body(store, (next) => {
        store = next;
      });
    } finally {
      await store.close();
    }
  }

  void describe(`EventStore contract: ${options.name}`, { skip: options.skip ?? false }, () => {
    void it('starts empty', async () => {
      await withStore(async (store) => {
        assert.deepEqual(await store.loadEvents(), { events: [], scopes: [] });
        assert.deepEqual(await store.queryEvents({ includeRemoved: true }), []);
      });
    });

    void it('round-trips every field of live events, undefined staying undefined', async () => {
      await withStore(async (store) => {
        const bare = scheduledEvent(1);
        const full = fullEvent(2, 'Ended');
        await store.commit({ events: [bare, full], scopes: [{ scope: 'set:web', incarnation: 2 }] });
        const loaded = await store.loadEvents();
        assert.deepStrictEqual(loaded.events, [bare, full]);
        assert.deepStrictEqual(loaded.scopes, [{ scope: 'set:web', incarnation: 2 }]);
        assert.equal(Object.keys(loaded.events[0] ?? {}).length, Object.keys(bare).length);
        assert.equal(loaded.events[0]?.approvedAt, undefined);
        assert.deepStrictEqual(byId(await store.queryEvents()), [bare, full]);
      });
    });

    void it('round-trips a removed event, with every field set, through the history', async () => {
      await withStore(async (store) => {
        const removed = fullEvent(3, 'Removed');
        await store.commit({ events: [removed], scopes: [] });
        assert.deepStrictEqual((await store.loadEvents()).events, []);
        assert.deepStrictEqual(await store.queryEvents({ includeRemoved: true }), [removed]);
      });
    });

    void it('round-trips arbitrary events: any Unicode text, any renderable time', async () => {
      await withStore(async (store) => {
        await fc.assert(
          fc.asyncProperty(
            fc.uniqueArray(arbitraryEvent, { minLength: 1, maxLength: 5, selector: (e) => e.eventId }),
            async (events) => {
              await store.commit({ events, scopes: [] });
              const wanted = new Set(events.map((e) => e.eventId));
              const stored = (await store.queryEvents({ includeRemoved: true })).filter((e) => wanted.has(e.eventId));
              assert.deepStrictEqual(byId(stored), byId(events));
            },
          ),
          { numRuns: 40 },
        );
      });
    });

    void it('replaces an event written again, keeping one row', async () => {
      await withStore(async (store) => {
        const scheduled = scheduledEvent(1);
        const started = { ...scheduled, phase: 'Started' as const, startedAt: scheduled.notBefore };
        await store.commit({ events: [scheduled], scopes: [] });
        await store.commit({ events: [started], scopes: [] });
        assert.deepStrictEqual(await store.queryEvents({ includeRemoved: true }), [started]);
      });
    });

    void it('keeps removed events as history and leaves them out of loadEvents, scopes included', async () => {
      await withStore(async (store) => {
        const live = scheduledEvent(1);
        const gone = scheduledEvent(2, { phase: 'Removed', removedAt: 5, removalReason: 'cancelled' });
        await store.commit({ events: [live, gone], scopes: [{ scope: 'set:web', incarnation: 4 }] });
        assert.deepStrictEqual(await store.loadEvents(), {
          events: [live],
          scopes: [{ scope: 'set:web', incarnation: 4 }],
        });
        assert.deepStrictEqual(byId(await store.queryEvents({ includeRemoved: true })), [live, gone]);
      });
    });

    void it('raises incarnations and accepts an equal one again (a replayed mutation)', async () => {
      await withStore(async (store) => {
        await store.commit({ events: [], scopes: [{ scope: 'set:web', incarnation: 2 }] });
        await store.commit({
          events: [],
          scopes: [
            { scope: 'set:web', incarnation: 3 },
            { scope: 'vm:solo', incarnation: 2 },
          ],
        });
        await store.commit({ events: [], scopes: [{ scope: 'set:web', incarnation: 3 }] });
        assert.deepStrictEqual(sortScopes((await store.loadEvents()).scopes), [
          { scope: 'set:web', incarnation: 3 },
          { scope: 'vm:solo', incarnation: 2 },
        ]);
      });
    });

    void it('refuses to lower an incarnation with CONFLICT and writes nothing of that mutation', async () => {
      await withStore(async (store) => {
        const first = scheduledEvent(1);
        await store.commit({
          events: [first],
          scopes: [
            { scope: 'set:web', incarnation: 5 },
            { scope: 'vm:solo', incarnation: 3 },
          ],
        });
        const before = await store.loadEvents();
        const lowering: Mutation = {
          events: [{ ...first, phase: 'Started', startedAt: 9 }, scheduledEvent(2, { scope: 'vm:solo' })],
          scopes: [
            { scope: 'set:web', incarnation: 6 },
            { scope: 'vm:solo', incarnation: 2 },
          ],
        };
        const error = await rejectsWith(store.commit(lowering), 'CONFLICT');
        assert.equal(error.retryable, false);
        assert.deepEqual(error.details, { scope: 'vm:solo', storedIncarnation: 3, attemptedIncarnation: 2 });
        assert.deepStrictEqual(await store.loadEvents(), before);
        assert.deepStrictEqual(await store.queryEvents({ includeRemoved: true }), [first]);
      });
    });

    void it('stays usable after a refused commit', async () => {
      await withStore(async (store) => {
        await store.commit({ events: [], scopes: [{ scope: 'set:web', incarnation: 4 }] });
        await rejectsWith(store.commit({ events: [], scopes: [{ scope: 'set:web', incarnation: 3 }] }), 'CONFLICT');
        await store.commit({ events: [scheduledEvent(1)], scopes: [{ scope: 'set:web', incarnation: 5 }] });
        assert.deepStrictEqual(await store.loadEvents(), {
          events: [scheduledEvent(1)],
          scopes: [{ scope: 'set:web', incarnation: 5 }],
        });
      });
    });

    void it('refuses what it cannot store (a fractional time, a bad incarnation) with STORE_FAILURE, writing nothing', async () => {
      await withStore(async (store) => {
        const fractional = scheduledEvent(1, { createdAt: 1.5 });
        const error = await rejectsWith(
          store.commit({ events: [scheduledEvent(2), fractional], scopes: [{ scope: 'set:web', incarnation: 2 }] }),
          'STORE_FAILURE',
        );
        assert.equal(error.retryable, false);
        await rejectsWith(
          store.commit({ events: [], scopes: [{ scope: 'set:web', incarnation: 0 }] }),
          'STORE_FAILURE',
        );
        assert.deepStrictEqual(await store.loadEvents(), { events: [], scopes: [] });
      });
    });

    void it('refuses, with STORE_FAILURE, an event it could not read back: a time no client can render', async () => {
      await withStore(async (store) => {
        // Issue 12: NotBefore 8.7e15 ms (year 275760) is a safe integer, but `new Date(t)` is Invalid
        // Date; once stored, every listing failed. 2^53-1 is past what any engine keeps exactly.
        for (const notBefore of [8_700_000_000_000_000, Number.MAX_SAFE_INTEGER, 253_402_300_800_000, -1]) {
          const error = await rejectsWith(
            store.commit({
              events: [scheduledEvent(2), scheduledEvent(1, { notBefore })],
              scopes: [{ scope: 'set:web', incarnation: 2 }],
            }),
            'STORE_FAILURE',
          );
          assert.equal(error.retryable, false);
          assert.match(error.message, /not_before/);
        }
        assert.deepStrictEqual(await store.loadEvents(), { events: [], scopes: [] });
        assert.deepStrictEqual(await store.queryEvents({ includeRemoved: true }), []);
      });
    });

    void it('finds one event by id, live or removed, and nothing for an unknown id', async () => {
      await withStore(async (store) => {
        const live = fullEvent(1, 'Started');
        const removed = fullEvent(2, 'Removed');
        await store.commit({ events: [live, removed, scheduledEvent(3)], scopes: [] });
        assert.deepStrictEqual(await store.getEvent(live.eventId), live);
        assert.deepStrictEqual(await store.getEvent(removed.eventId), removed);
        assert.equal(await store.getEvent(eventId(99)), undefined);
        assert.equal(await store.getEvent(''), undefined);
        assert.equal(await store.getEvent("x' OR '1'='1"), undefined);
      });
    });

    void it('writes nothing for an empty mutation', async () => {
      await withStore(async (store) => {
        await store.commit({ events: [], scopes: [] });
        assert.deepStrictEqual(await store.loadEvents(), { events: [], scopes: [] });
      });
    });

    void it('commits concurrent mutations one after another, each whole', async () => {
      await withStore(async (store) => {
        const mutations = Array.from({ length: 20 }, (_, i): Mutation => ({
          events: [scheduledEvent(i, { scope: `vm:v${i}`, resources: [`v${i}`] })],
          scopes: [
            { scope: `vm:v${i}`, incarnation: 2 },
            { scope: 'set:shared', incarnation: 2 + i },
          ],
        }));
        await Promise.all(mutations.map((m) => store.commit(m)));
        const loaded = await store.loadEvents();
        assert.equal(loaded.events.length, 20);
        assert.equal(loaded.scopes.length, 21);
        assert.equal(loaded.scopes.find((s) => s.scope === 'set:shared')?.incarnation, 21);
      });
    });

    void it('queries events newest first, filtered by scope, removal, creation time and limit', async () => {
      await withStore(async (store) => {
        const events = [
          scheduledEvent(1, { createdAt: 100 }),
          scheduledEvent(2, { createdAt: 200, scope: 'vm:solo' }),
          scheduledEvent(3, { createdAt: 300, phase: 'Removed', removedAt: 350, removalReason: 'cancelled' }),
          scheduledEvent(4, { createdAt: 300 }),
          scheduledEvent(5, { createdAt: 400 }),
        ];
        await store.commit({ events, scopes: [] });
        const ids = (list: readonly MaintenanceEvent[]): number[] =>
          list.map((e) => parseInt(e.eventId.slice(-12), 16));
        assert.deepEqual(ids(await store.queryEvents()), [5, 4, 2, 1]);
        assert.deepEqual(ids(await store.queryEvents({ includeRemoved: true })), [5, 4, 3, 2, 1]);
        assert.deepEqual(ids(await store.queryEvents({ includeRemoved: true, scope: 'set:web' })), [5, 4, 3, 1]);
        assert.deepEqual(ids(await store.queryEvents({ includeRemoved: true, since: 300 })), [5, 4, 3]);
        assert.deepEqual(ids(await store.queryEvents({ includeRemoved: true, limit: 2 })), [5, 4]);
        assert.deepEqual(ids(await store.queryEvents({ scope: 'vm:solo', since: 201 })), []);
      });
    });

    void it('rejects a query limit that is not a positive integer with INVALID_INPUT', async () => {
      await withStore(async (store) => {
        for (const limit of [0, -1, 1.5, Number.NaN]) {
          await rejectsWith(store.queryEvents({ limit }), 'INVALID_INPUT');
        }
      });
    });

    void it('closes idempotently; calls after close fail with STORE_FAILURE', async () => {
      const store = await newStore();
      await store.close();
      await store.close();
      await rejectsWith(store.loadEvents(), 'STORE_FAILURE');
      await rejectsWith(store.commit({ events: [scheduledEvent(1)], scopes: [] }), 'STORE_FAILURE');
      await rejectsWith(store.queryEvents(), 'STORE_FAILURE');
      await rejectsWith(store.getEvent(eventId(1)), 'STORE_FAILURE');
    });

    const noReopen = reopen ? false : (options.noReopenReason ?? 'this store cannot reopen its data');

    void it('keeps events, history and incarnations across a restart', { skip: noReopen }, async () => {
      await withStore(async (store, swap) => {
        const live = fullEvent(1, 'Started');
        const removed = fullEvent(2, 'Removed');
        await store.commit({ events: [live, removed], scopes: [{ scope: 'vm:solo-ü', incarnation: 7 }] });
        const before = await store.loadEvents();
        await store.close();
        const again = await reopened(store);
        swap(again);
        assert.deepStrictEqual(await again.loadEvents(), before);
        assert.deepStrictEqual(before.events, [live]);
        assert.deepStrictEqual(byId(await again.queryEvents({ includeRemoved: true })), [live, removed]);
      });
    });

    void it('still refuses to lower an incarnation after a restart', { skip: noReopen }, async () => {
      await withStore(async (store, swap) => {
        await store.commit({ events: [], scopes: [{ scope: 'set:web', incarnation: 9 }] });
        await store.close();
        const again = await reopened(store);
        swap(again);
        await rejectsWith(
          again.commit({ events: [scheduledEvent(1)], scopes: [{ scope: 'set:web', incarnation: 8 }] }),
          'CONFLICT',
        );
        assert.deepStrictEqual(await again.loadEvents(), {
          events: [],
          scopes: [{ scope: 'set:web', incarnation: 9 }],
        });
      });
    });

    void it('migrates nothing twice when reopened again and again', { skip: noReopen }, async () => {
      await withStore(async (store, swap) => {
        await store.commit({ events: [scheduledEvent(1)], scopes: [{ scope: 'set:web', incarnation: 2 }] });
        const before = await store.loadEvents();
        let current = store;
        for (let i = 0; i < 3; i++) {
          await current.close();
          current = await reopened(current);
          swap(current);
          if (schema) assert.equal(schema.version(current), schema.latest);
          assert.deepStrictEqual(await current.loadEvents(), before);
        }
      });
    });

    const noForge = !reopen ? noReopen : schema ? false : 'the store has no versioned schema';

    void it('refuses to open data written with a newer schema, with STORE_FAILURE', { skip: noForge }, async () => {
      const store = await newStore();
      assert.equal(schemaHooks().version(store), schemaHooks().latest);
      await store.close();
      await schemaHooks().forgeNewerVersion(store);
      const error = await rejectsWith(reopened(store), 'STORE_FAILURE');
      assert.equal(error.retryable, false);
      assert.match(error.message, /newer/);
    });
  });
}

/** Awaits a rejection with an IntermissionError of `code` and returns it. */
export async function rejectsWith(promise: Promise<unknown>, code: ErrorCode): Promise<IntermissionError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isIntermissionError(error, code), `expected ${code}, got ${String(error)}`);
    return error;
  }
  assert.fail(`expected a rejection with ${code}, but the call succeeded`);
}

function sortScopes<T extends { scope: string }>(scopes: readonly T[]): T[] {
  return [...scopes].sort((a, b) => (a.scope < b.scope ? -1 : 1));
}
