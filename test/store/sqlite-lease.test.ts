import { after } from 'node:test';
import { openSqliteStore, type SqliteEventStore } from '../../src/store/sqlite/index.js';
import { runLeaseStoreContract } from './lease-store.contract.js';
import { sqliteSkip, tempDir } from './sqlite-harness.js';

// The LeaseStore contract against SQLite: a file (a second store on the same file plays another
// process), and an in-memory database.

const dir = await tempDir();
after(() => dir.cleanup());

const paths = new WeakMap<SqliteEventStore, string>();
let count = 0;

async function openAt(path: string): Promise<SqliteEventStore> {
  const store = await openSqliteStore({ path });
  paths.set(store, path);
  return store;
}

runLeaseStoreContract<SqliteEventStore>({
  name: 'sqlite (file)',
  skip: sqliteSkip,
  newStore: () => openAt(dir.file(`lease-${++count}.db`)),
  sibling: (store) => {
    const path = paths.get(store);
    if (path === undefined) throw new Error('a store that this harness did not open');
    return openAt(path);
  },
});

runLeaseStoreContract<SqliteEventStore>({
  name: 'sqlite (:memory:)',
  skip: sqliteSkip,
  newStore: () => openSqliteStore({ path: ':memory:' }),
});
