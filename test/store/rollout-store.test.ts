import { after } from 'node:test';
import { openSqliteStore, type SqliteEventStore } from '../../src/store/sqlite/index.js';
import { runRolloutStoreContract } from './rollout-store.contract.js';
import { sqliteSkip, tempDir } from './sqlite-harness.js';

// The RolloutStore contract against SQLite: a database file in a temporary directory (reopens
// included), and an in-memory database.

const dir = await tempDir();
after(() => dir.cleanup());

const paths = new WeakMap<SqliteEventStore, string>();
let count = 0;

async function openAt(path: string): Promise<SqliteEventStore> {
  const store = await openSqliteStore({ path });
  paths.set(store, path);
  return store;
}

runRolloutStoreContract<SqliteEventStore>({
  name: 'sqlite (file)',
  skip: sqliteSkip,
  newStore: () => openAt(dir.file(`rollouts-${++count}.db`)),
  reopen: (closed) => {
    const path = paths.get(closed);
    if (path === undefined) throw new Error('a store that this harness did not open');
    return openAt(path);
  },
});

runRolloutStoreContract<SqliteEventStore>({
  name: 'sqlite (:memory:)',
  skip: sqliteSkip,
  newStore: () => openSqliteStore({ path: ':memory:' }),
  noReopenReason: 'an in-memory database does not outlive close()',
});
