import { openSqliteStore, type SqliteEventStore } from '../../src/store/sqlite/index.js';
import { runLeaseStoreContract } from './lease-store.contract.js';
import { sqliteFiles, sqliteSkip } from './sqlite-harness.js';

// The LeaseStore contract against SQLite: a file (a second store on the same file plays another
// process), and an in-memory database.

const files = await sqliteFiles('lease');

runLeaseStoreContract<SqliteEventStore>({
  name: 'sqlite (file)',
  skip: sqliteSkip,
  newStore: files.newStore,
  sibling: files.openAgain,
});

runLeaseStoreContract<SqliteEventStore>({
  name: 'sqlite (:memory:)',
  skip: sqliteSkip,
  newStore: () => openSqliteStore({ path: ':memory:' }),
});
