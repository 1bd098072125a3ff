/**
 * Regenerates the committed schema dumps of the stores from their migrations:
 * src/store/sqlite/schema.sql always (from an in-memory database), and
 * src/store/postgres/schema.sql with `--postgres <url>` (from an empty database there, which this
 * migrates). `--check` writes nothing and exits 1 when a committed dump is stale.
 *
 *   node --import tsx scripts/dump-schema.ts [--check] [--postgres postgresql:///scratch?host=/run/postgresql]
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { openPostgresStore, POSTGRES_SCHEMA_DUMP_PATH } from '../src/store/postgres/index.js';
import { openSqliteStore, SQLITE_SCHEMA_DUMP_PATH } from '../src/store/sqlite/index.js';

const check = process.argv.includes('--check');
const at = process.argv.indexOf('--postgres');
const postgres = at === -1 ? undefined : process.argv[at + 1];
if (at !== -1 && (postgres === undefined || postgres.startsWith('--'))) {
  console.error('--postgres wants the connection string of an empty database');
  process.exit(2);
}

async function handle(path: string, dump: string): Promise<void> {
  const target = fileURLToPath(new URL(`../${path}`, import.meta.url));
  if (check) {
    const committed = await readFile(target, 'utf8').catch(() => '');
    if (committed !== dump) {
      console.error(
        `${path} is stale; run: node --import tsx scripts/dump-schema.ts${postgres ? ' --postgres <url>' : ''}`,
      );
      process.exitCode = 1;
    } else {
      console.log(`${path} is up to date`);
    }
  } else {
    await writeFile(target, dump);
    console.log(`wrote ${path}`);
  }
}

const sqlite = await openSqliteStore({ path: ':memory:' });
try {
  await handle(SQLITE_SCHEMA_DUMP_PATH, await sqlite.dumpSchema());
} finally {
  await sqlite.close();
}

if (postgres !== undefined) {
  const store = await openPostgresStore({ connectionString: postgres, maxConnections: 1 });
  try {
    await handle(POSTGRES_SCHEMA_DUMP_PATH, await store.dumpSchema());
  } finally {
    await store.close();
  }
}
