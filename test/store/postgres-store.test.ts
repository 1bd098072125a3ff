import { openPostgresStore, POSTGRES_SCHEMA_VERSION, type PostgresEventStore } from '../../src/store/postgres/index.js';
import { runEventStoreContract } from './event-store.contract.js';
import { postgresSkip, startPostgresCluster, type PostgresCluster } from './postgres-harness.js';
import { runRolloutStoreContract } from './rollout-store.contract.js';

// The EventStore and RolloutStore contracts against a real PostgreSQL: one throwaway cluster for this
// file, one fresh database per store; a reopen is a new pool on the same database.

const cluster: PostgresCluster | undefined = postgresSkip === undefined ? await startPostgresCluster() : undefined;

const urls = new WeakMap<PostgresEventStore, string>();

async function openAt(url: string): Promise<PostgresEventStore> {
  const store = await openPostgresStore({ connectionString: url, maxConnections: 4 });
  urls.set(store, url);
  return store;
}

function urlOf(store: PostgresEventStore): string {
  const url = urls.get(store);
  if (url === undefined) throw new Error('a store that this harness did not open');
  return url;
}

function running(): PostgresCluster {
  if (!cluster) throw new Error('PostgreSQL is not running; the suite should have been skipped');
  return cluster;
}

runEventStoreContract<PostgresEventStore>({
  name: 'postgres',
  skip: postgresSkip,
  newStore: async () => openAt(await running().createDatabase()),
  reopen: (closed) => openAt(urlOf(closed)),
  schema: {
    latest: POSTGRES_SCHEMA_VERSION,
    version: (store) => store.schemaVersion,
    forgeNewerVersion: async (closed) => {
      // What a later release leaves behind: one more migration than this build knows.
      const database = new URL(urlOf(closed)).pathname.slice(1);
      await running().query(
        'INSERT INTO intermission_migrations (version, name) VALUES ($1, $2)',
        [POSTGRES_SCHEMA_VERSION + 1, 'from-a-newer-release'],
        database,
      );
    },
  },
});

runRolloutStoreContract<PostgresEventStore>({
  name: 'postgres',
  skip: postgresSkip,
  newStore: async () => openAt(await running().createDatabase()),
  reopen: (closed) => openAt(urlOf(closed)),
});
