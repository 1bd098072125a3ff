import { after } from 'node:test';
import Database from 'better-sqlite3';
import { openSqliteStore, SQLITE_SCHEMA_VERSION, type SqliteEventStore } from '../../src/store/sqlite/index.js';
import { runEventStoreContract } from './event-store.contract.js';
import { sqliteSkip, tempDir } from './sqlite-harness.js';

// The EventStore contract against SQLite: a database file in a temporary directory (restarts
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

function pathOf(store: SqliteEventStore): string {
  const path = paths.get(store);
  if (path === undefined) throw new Error('a store that this harness did not open');
  return path;
}

runEventStoreContract<SqliteEventStore>({
  name: 'sqlite (file)',
  skip: sqliteSkip,
  newStore: () => openAt(dir.file(`store-${++count}.db`)),
  reopen: (closed) => openAt(pathOf(closed)),
  schema: {
    latest: SQLITE_SCHEMA_VERSION,
    version: (store) => store.schemaVersion,
    forgeNewerVersion: (closed) => {
      // What a later release leaves behind: one more migration than this build knows.
      const db = new Database(pathOf(closed));
      try {
        db.prepare('INSERT INTO intermission_migrations (version, name) VALUES (?, ?)').run(
          SQLITE_SCHEMA_VERSION + 1,
          'from-a-newer-release',
        );
      } finally {
        db.close();
      }
      return Promise.resolve();
    },
  },
});

runEventStoreContract<SqliteEventStore>({
  name: 'sqlite (:memory:)',
  skip: sqliteSkip,
  newStore: () => openSqliteStore({ path: ':memory:' }),
  noReopenReason: 'an in-memory database does not outlive close()',
});
