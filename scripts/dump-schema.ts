/**
 * Regenerates the committed schema dump of the SQLite store (src/store/sqlite/schema.sql) from its
 * migrations. `--check` writes nothing and exits 1 when the committed dump is stale.
 *
 *   node --import tsx scripts/dump-schema.ts [--check]
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { openSqliteStore, SQLITE_SCHEMA_DUMP_PATH } from '../src/store/sqlite/index.js';

const target = fileURLToPath(new URL(`../${SQLITE_SCHEMA_DUMP_PATH}`, import.meta.url));
const check = process.argv.includes('--check');

const store = await openSqliteStore({ path: ':memory:' });
let dump: string;
try {
  dump = await store.dumpSchema();
} finally {
  await store.close();
}

if (check) {
  const committed = await readFile(target, 'utf8').catch(() => '');
  if (committed !== dump) {
    console.error(`${SQLITE_SCHEMA_DUMP_PATH} is stale; run: node --import tsx scripts/dump-schema.ts`);
    process.exitCode = 1;
  } else {
    console.log(`${SQLITE_SCHEMA_DUMP_PATH} is up to date`);
  }
} else {
  await writeFile(target, dump);
  console.log(`wrote ${SQLITE_SCHEMA_DUMP_PATH}`);
}
