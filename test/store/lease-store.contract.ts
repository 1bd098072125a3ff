import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { isIntermissionError } from '../../src/domain/index.js';
import type { LeaseStore } from '../../src/store/index.js';

/** A lease store the contract can close. */
export type ClosableLeaseStore = LeaseStore & { close(): Promise<void> };

/** How the contract reaches one implementation of the {@link LeaseStore} port. */
export interface LeaseStoreContractOptions<S extends ClosableLeaseStore> {
  /** Shown in the test names. */
  readonly name: string;
  /** A fresh, empty store. The suite closes every store it gets. */
  readonly newStore: () => Promise<S>;
  /** A second store on the same data as `store` (another process's view); absent for :memory:. */
  readonly sibling?: (store: S) => Promise<S>;
  readonly skip?: string | undefined;
}

const T0 = Date.UTC(2026, 0, 1);

/**
 * The leader lease's rules on every engine. Times are injected (`now`), so that expiry is tested
 * without sleeping; one test checks the database's own clock.
 */
export function runLeaseStoreContract<S extends ClosableLeaseStore>(options: LeaseStoreContractOptions<S>): void {
  const withStore = async (work: (store: S) => Promise<void>): Promise<void> => {
    const store = await options.newStore();
    try {
      await work(store);
    } finally {
      await store.close();
    }
  };

  describe(`LeaseStore contract: ${options.name}`, { skip: options.skip ?? false }, () => {
    it('the first holder gets epoch 1; another is refused while the lease runs, and told who holds it', () =>
      withStore(async (store) => {
        assert.equal(await store.readLease({ now: T0 }), undefined);
        const a = await store.acquireOrRenew({ holder: 'a', ttlMs: 5000, now: T0 });
        assert.deepEqual(a, { leader: true, epoch: 1, holder: 'a', expiresAt: T0 + 5000, now: T0 });
        const b = await store.acquireOrRenew({ holder: 'b', ttlMs: 5000, now: T0 + 4999 });
        assert.deepEqual(b, { leader: false, epoch: 1, holder: 'a', expiresAt: T0 + 5000, now: T0 + 4999 });
        assert.deepEqual(await store.readLease({ now: T0 + 1 }), {
          leader: false,
          epoch: 1,
          holder: 'a',
          expiresAt: T0 + 5000,
          now: T0 + 1,
        });
      }));

    it('a renewal by the holder extends the lease and keeps the epoch, even after it expired unclaimed', () =>
      withStore(async (store) => {
        await store.acquireOrRenew({ holder: 'a', ttlMs: 5000, now: T0 });
        const renewed = await store.acquireOrRenew({ holder: 'a', ttlMs: 5000, now: T0 + 3000 });
        assert.deepEqual(renewed, { leader: true, epoch: 1, holder: 'a', expiresAt: T0 + 8000, now: T0 + 3000 });
        // Nobody took it meanwhile: the same holder goes on with the same epoch (nothing changed hands).
        const late = await store.acquireOrRenew({ holder: 'a', ttlMs: 5000, now: T0 + 20_000 });
        assert.equal(late.leader, true);
        assert.equal(late.epoch, 1);
      }));

    it('an expired lease goes to the next caller with the epoch one higher; the old holder is refused', () =>
      withStore(async (store) => {
        await store.acquireOrRenew({ holder: 'a', ttlMs: 5000, now: T0 });
        const b = await store.acquireOrRenew({ holder: 'b', ttlMs: 5000, now: T0 + 5000 });
        assert.deepEqual(b, { leader: true, epoch: 2, holder: 'b', expiresAt: T0 + 10_000, now: T0 + 5000 });
        const a = await store.acquireOrRenew({ holder: 'a', ttlMs: 5000, now: T0 + 5001 });
        assert.equal(a.leader, false);
        assert.equal(a.holder, 'b');
        assert.equal(a.epoch, 2);
        const back = await store.acquireOrRenew({ holder: 'a', ttlMs: 5000, now: T0 + 10_000 });
        assert.deepEqual([back.leader, back.epoch], [true, 3]);
      }));

    it('release hands the lease over at once, with the next epoch; only the holder can release', () =>
      withStore(async (store) => {
        await store.acquireOrRenew({ holder: 'a', ttlMs: 60_000, now: T0 });
        assert.equal(await store.release({ holder: 'b' }), false);
        assert.equal((await store.acquireOrRenew({ holder: 'b', ttlMs: 5000, now: T0 + 1 })).leader, false);
        assert.equal(await store.release({ holder: 'a' }), true);
        assert.equal(await store.release({ holder: 'a' }), false);
        // Released: no holder, and taken at once by anyone, the releaser too, with a new epoch.
        const b = await store.acquireOrRenew({ holder: 'b', ttlMs: 5000, now: Date.now() + 10 });
        assert.deepEqual([b.leader, b.epoch, b.holder], [true, 2, 'b']);
      }));

    it('leases of different names are independent', () =>
      withStore(async (store) => {
        await store.acquireOrRenew({ holder: 'a', ttlMs: 5000, now: T0 });
        const other = await store.acquireOrRenew({ name: 'other', holder: 'b', ttlMs: 5000, now: T0 });
        assert.deepEqual([other.leader, other.epoch], [true, 1]);
      }));

    it("measures against the database's clock when no time is given", () =>
      withStore(async (store) => {
        const before = Date.now();
        const a = await store.acquireOrRenew({ holder: 'a', ttlMs: 5000 });
        const after = Date.now();
        assert.equal(a.leader, true);
        // The test's database runs on this machine: its clock is this one, within rounding.
        assert.ok(a.now >= before - 1000 && a.now <= after + 1000, `${a.now} within [${before}, ${after}]`);
        assert.equal(a.expiresAt, a.now + 5000);
        assert.equal((await store.acquireOrRenew({ holder: 'b', ttlMs: 5000 })).leader, false);
      }));

    it('refuses a malformed holder or ttl with INVALID_INPUT', () =>
      withStore(async (store) => {
        for (const bad of [
          { holder: '', ttlMs: 5000 },
          { holder: 'a', ttlMs: 0 },
          { holder: 'a', ttlMs: 1.5 },
        ]) {
          await assert.rejects(
            store.acquireOrRenew(bad),
            (e: unknown) => isIntermissionError(e) && e.code === 'INVALID_INPUT',
          );
        }
      }));

    it(
      'another store on the same database sees the same lease',
      { skip: options.sibling ? false : 'no second store on this data' },
      () =>
        withStore(async (store) => {
          const sibling = await (options.sibling as (s: S) => Promise<S>)(store);
          try {
            await store.acquireOrRenew({ holder: 'a', ttlMs: 5000, now: T0 });
            const b = await sibling.acquireOrRenew({ holder: 'b', ttlMs: 5000, now: T0 + 1 });
            assert.deepEqual([b.leader, b.holder, b.epoch], [false, 'a', 1]);
            const later = await sibling.acquireOrRenew({ holder: 'b', ttlMs: 5000, now: T0 + 5000 });
            assert.deepEqual([later.leader, later.epoch], [true, 2]);
          } finally {
            await sibling.close();
          }
        }),
    );
  });
}
