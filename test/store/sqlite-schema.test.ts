import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  SQLITE_DDL,
  SQLITE_MIGRATIONS,
  SQLITE_SCHEMA_DUMP_PATH,
  formatSqliteSchema,
  openSqliteStore,
} from '../../src/store/sqlite/index.js';
import { sqliteSkip } from './sqlite-harness.js';

const committedPath = fileURLToPath(new URL(`../../${SQLITE_SCHEMA_DUMP_PATH}`, import.meta.url));

void describe('SQLite schema dump', { skip: sqliteSkip ?? false }, () => {
  void it('matches the committed src/store/sqlite/schema.sql (regenerate after changing a migration)', async () => {
    const store = await openSqliteStore({ path: ':memory:' });
    let dump: string;
    try {
      dump = await store.dumpSchema();
    } finally {
      await store.close();
    }
    const committed = await readFile(committedPath, 'utf8');
    assert.equal(
      dump,
      committed,
      `${SQLITE_SCHEMA_DUMP_PATH} is stale: the migrations changed. Run \`node --import tsx scripts/dump-schema.ts\` and commit the result.`,
    );
  });

  void it('names every migration and holds every table the migrations create', async () => {
    const committed = await readFile(committedPath, 'utf8');
    for (const m of SQLITE_MIGRATIONS) assert.ok(committed.includes(`${String(m.version).padStart(6, '0')}-${m.name}`));
    for (const table of ['events', 'scopes', 'intermission_migrations']) {
      assert.match(committed, new RegExp(`^CREATE TABLE ${table} \\(`, 'm'));
      assert.match(SQLITE_DDL, new RegExp(`CREATE TABLE (IF NOT EXISTS )?${table} \\(`));
    }
  });

  void it('normalizes: tables before indexes, sorted by name, without trailing blanks or CRLF', () => {
    const text = formatSqliteSchema(
      [
        { type: 'index', name: 'b_idx', tableName: 'b', sql: 'CREATE INDEX b_idx ON b (x)   ' },
        { type: 'table', name: 'b', tableName: 'b', sql: 'CREATE TABLE b (\r\n  x INTEGER  \r\n)' },
        { type: 'table', name: 'a', tableName: 'a', sql: 'CREATE TABLE a (x INTEGER)' },
      ],
      [{ version: 1, name: 'first' }],
    );
    assert.equal(
      text.split('\n').slice(3).join('\n'),
      '\nCREATE TABLE a (x INTEGER);\n\nCREATE TABLE b (\n  x INTEGER\n);\n\nCREATE INDEX b_idx ON b (x);\n',
    );
    assert.match(text, /^-- Migrations: 000001-first$/m);
  });
});
