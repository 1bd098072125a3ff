import { openSqliteStore, type SqliteEventStore } from '../../src/store/sqlite/index.js';
import { runRolloutStoreContract } from './rollout-store.contract.js';
import { sqliteFiles, sqliteSkip } from './sqlite-harness.js';

// The RolloutStore contract against SQLite: a database file in a temporary directory (reopens
// included), and an in-memory database.

const files = await sqliteFiles('rollouts');

runRolloutStoreContract<SqliteEventStore>({
  name: 'sqlite (file)',
  skip: sqliteSkip,
  newStore: files.newStore,
  reopen: files.openAgain,
});

runRolloutStoreContract<SqliteEventStore>({
  name: 'sqlite (:memory:)',
  skip: sqliteSkip,
  newStore: () => openSqliteStore({ path: ':memory:' }),
  noReopenReason: 'an in-memory database does not outlive close()',
});
