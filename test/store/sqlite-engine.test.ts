import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { PLAN_FORMAT_VERSION } from '../../src/domain/rollout/index.js';
import { selectLiveEventsQuery, type StoreDatabase } from '../../src/store/sql/index.js';
import {
  SQLITE_DDL,
  SQLITE_MIGRATIONS,
  SQLITE_SCHEMA_VERSION,
  createSqliteStore,
  migrateSqlite,
  openSqliteStore,
  type SqliteDatabase,
  type SqliteMigration,
} from '../../src/store/sqlite/index.js';
import { rejectsWith } from './event-store.contract.js';
import { eventId, scheduledEvent } from './event-fixtures.js';
import { sqliteSkip, tempDir } from './sqlite-harness.js';

// What the contract cannot see: pragmas, driver errors, migrations, indexes, the engine's limits.

const dir = await tempDir();
after(() => dir.cleanup());
let count = 0;
const freshPath = (): string => dir.file(`engine-${++count}.db`);

/** Runs `body` with a second, raw connection to `path`, closed afterwards. */
function withRaw<T>(path: string, body: (raw: Database.Database) => T): T {
  const raw = new Database(path);
  try {
    return body(raw);
  } finally {
    raw.close();
  }
}

void describe('SQLite store engine', { skip: sqliteSkip ?? false }, () => {
  void describe('connection settings', () => {
    void it('sets WAL, synchronous=FULL, foreign keys and the busy timeout on a file database', async () => {
      const raw = new Database(freshPath());
      const store = await createSqliteStore({ database: raw, busyTimeoutMs: 1234 });
      try {
        assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
        assert.equal(raw.pragma('synchronous', { simple: true }), 2);
        assert.equal(raw.pragma('foreign_keys', { simple: true }), 1);
        assert.equal(raw.pragma('busy_timeout', { simple: true }), 1234);
      } finally {
        await store.close();
      }
      assert.equal(raw.open, false, 'close() closes the database it was given');
    });

    void it('accepts the memory journal of an in-memory database', async () => {
      const raw = new Database(':memory:');
      const store = await createSqliteStore({ database: raw, inMemory: true });
      try {
        assert.equal(raw.pragma('journal_mode', { simple: true }), 'memory');
        assert.equal(raw.pragma('synchronous', { simple: true }), 2);
      } finally {
        await store.close();
      }
    });

    void it('refuses, and closes, a database that will not switch to WAL', async () => {
      const raw = new Database(freshPath());
      // Any object with prepare() and close() is a database: here one whose file system "has no WAL".
      const noWal: SqliteDatabase = {
        prepare: (sql) => raw.prepare(sql.replace(/^PRAGMA journal_mode = WAL$/, 'PRAGMA journal_mode = DELETE')),
        close: () => raw.close(),
      };
      const error = await rejectsWith(createSqliteStore({ database: noWal }), 'STORE_FAILURE');
      assert.match(error.message, /journal_mode.*"delete"/);
      assert.equal(error.retryable, false);
      assert.equal(raw.open, false);
    });

    void it('rejects a negative busy timeout and an empty path with INVALID_INPUT', async () => {
      await rejectsWith(openSqliteStore({ path: ':memory:', busyTimeoutMs: -1 }), 'INVALID_INPUT');
      await rejectsWith(openSqliteStore({ path: ' ' }), 'INVALID_INPUT');
    });
  });

  void describe('driver errors', () => {
    void it('wraps a file that is not a database in STORE_FAILURE with the SQLite code and the cause', async () => {
      const path = freshPath();
      await writeFile(path, 'this is not an SQLite database, but it is long enough to look like a header. '.repeat(20));
      const error = await rejectsWith(openSqliteStore({ path }), 'STORE_FAILURE');
      assert.equal(error.details.sqliteCode, 'SQLITE_NOTADB');
      assert.equal(error.retryable, false);
      assert.ok(error.cause instanceof Error, 'the driver error is the cause');
    });

    void it('wraps a path in a missing directory in STORE_FAILURE with the cause', async () => {
      const error = await rejectsWith(openSqliteStore({ path: dir.file('missing/dir/x.db') }), 'STORE_FAILURE');
      assert.ok(error.cause instanceof Error, 'the driver error is the cause');
      assert.match(error.message, /missing\/dir\/x\.db/);
    });

    void it('reports a lock held by another process as retryable SQLITE_BUSY, and writes nothing', async () => {
      const path = freshPath();
      const store = await openSqliteStore({ path, busyTimeoutMs: 20 });
      const other = new Database(path);
      try {
        other.exec('BEGIN IMMEDIATE');
        const error = await rejectsWith(
          store.commit({ events: [scheduledEvent(1)], scopes: [{ scope: 'set:web', incarnation: 2 }] }),
          'STORE_FAILURE',
        );
        assert.equal(error.details.sqliteCode, 'SQLITE_BUSY');
        assert.equal(error.retryable, true);
        other.exec('ROLLBACK');
        assert.deepEqual(await store.loadEvents(), { events: [], scopes: [] });
        await store.commit({ events: [scheduledEvent(1)], scopes: [{ scope: 'set:web', incarnation: 2 }] });
        assert.equal((await store.loadEvents()).events.length, 1);
      } finally {
        other.close();
        await store.close();
      }
    });

    void it('refuses rows it cannot read with STORE_FAILURE that is not retryable', async () => {
      const path = freshPath();
      const store = await openSqliteStore({ path });
      try {
        await store.commit({ events: [scheduledEvent(1)], scopes: [] });
        withRaw(path, (raw) => raw.prepare(`UPDATE events SET phase = 'Exploded'`).run());
        const error = await rejectsWith(store.loadEvents(), 'STORE_FAILURE');
        assert.equal(error.retryable, false);
        assert.match(error.message, /column phase holds "Exploded"/);
      } finally {
        await store.close();
      }
    });
  });

  void describe('migrations', () => {
    /** A Kysely over a fresh in-memory database, as the store builds it, for the migrator alone. */
    function memoryKysely(): { db: Kysely<StoreDatabase>; raw: Database.Database } {
      const raw = new Database(':memory:');
      return { raw, db: new Kysely<StoreDatabase>({ dialect: new SqliteDialect({ database: raw }) }) };
    }

    const broken: SqliteMigration = {
      version: SQLITE_MIGRATIONS.length + 1,
      name: 'broken',
      statements: ['CREATE TABLE half_done (x INTEGER)', 'THIS IS NOT SQL'],
    };

    void it('records each migration once, however often the database is opened', async () => {
      const path = freshPath();
      const first = await openSqliteStore({ path });
      assert.deepEqual(first.migration, {
        from: 0,
        to: SQLITE_SCHEMA_VERSION,
        applied: SQLITE_MIGRATIONS.map((m) => m.version),
        reports: [],
      });
      await first.close();
      for (let i = 0; i < 3; i++) {
        const again = await openSqliteStore({ path });
        assert.deepEqual(again.migration, {
          from: SQLITE_SCHEMA_VERSION,
          to: SQLITE_SCHEMA_VERSION,
          applied: [],
          reports: [],
        });
        await again.close();
      }
      const rows = withRaw(path, (raw) =>
        raw.prepare('SELECT version, name FROM intermission_migrations ORDER BY version').all(),
      );
      assert.deepEqual(
        rows,
        SQLITE_MIGRATIONS.map((m) => ({ version: m.version, name: m.name })),
      );
    });

    void it('moves the plans of a version-2 database into rollout_plans, unchanged', async () => {
      const path = freshPath();
      const plan = { formatVersion: PLAN_FORMAT_VERSION, id: 'old-1', waves: [{ index: 0 }] };
      {
        const raw = new Database(path);
        const db = new Kysely<StoreDatabase>({ dialect: new SqliteDialect({ database: raw }) });
        await migrateSqlite(db, SQLITE_MIGRATIONS.slice(0, 2));
        raw
          .prepare(
            `INSERT INTO rollouts (id, plan, status, reason, created_at, updated_at, wave, wave_phase,
               wave_published_at, settle_until, failed_hosts) VALUES (?, ?, 'running', NULL, 1, 2, 0, 'pending', NULL, NULL, 0)`,
          )
          .run('old-1', JSON.stringify(plan));
        await db.destroy();
      }
      const store = await openSqliteStore({ path });
      try {
        assert.deepEqual(
          store.migration.applied,
          SQLITE_MIGRATIONS.slice(2).map((m) => m.version),
        );
        const rollout = await store.getRollout('old-1');
        assert.deepEqual(rollout?.plan, plan);
        assert.equal(rollout?.status, 'running');
      } finally {
        await store.close();
      }
      const columns = withRaw(path, (raw) => raw.prepare('SELECT name FROM pragma_table_info(?)').all('rollouts'));
      assert.ok(!columns.some((c) => (c as { name: string }).name === 'plan'));
    });

    void it('rolls a failing migration back whole, leaving the previous version', async () => {
      const { db, raw } = memoryKysely();
      try {
        const error = await rejectsWith(migrateSqlite(db, [...SQLITE_MIGRATIONS, broken]), 'STORE_FAILURE');
        const last = SQLITE_MIGRATIONS.length;
        assert.match(String(error.details.action), new RegExp(`${String(broken.version).padStart(6, '0')}-broken`));
        const tables = raw.prepare(`SELECT name FROM sqlite_schema WHERE name = 'half_done'`).all();
        assert.deepEqual(tables, []);
        assert.deepEqual(
          raw.prepare('SELECT version FROM intermission_migrations').all(),
          SQLITE_MIGRATIONS.map((m) => ({ version: m.version })),
          'every earlier migration stays applied; the broken one left nothing',
        );
        const fixed = { ...broken, statements: ['CREATE TABLE half_done (x INTEGER)'] };
        assert.deepEqual(await migrateSqlite(db, [...SQLITE_MIGRATIONS, fixed]), {
          from: last,
          to: last + 1,
          applied: [last + 1],
          reports: [],
        });
      } finally {
        await db.destroy();
      }
    });

    void it('refuses a database whose history names a migration differently', async () => {
      const { db } = memoryKysely();
      try {
        await migrateSqlite(db, SQLITE_MIGRATIONS);
        const renamed = SQLITE_MIGRATIONS.map((m) => ({ ...m, name: `${m.name}-renamed` }));
        const error = await rejectsWith(migrateSqlite(db, renamed), 'STORE_FAILURE');
        assert.match(error.message, /does not match this build/);
      } finally {
        await db.destroy();
      }
    });

    void it('refuses a malformed migration list as INTERNAL before touching the database', async () => {
      const { db, raw } = memoryKysely();
      try {
        await rejectsWith(migrateSqlite(db, [{ ...broken, version: 3 }]), 'INTERNAL');
        assert.deepEqual(raw.prepare('SELECT name FROM sqlite_schema').all(), []);
      } finally {
        await db.destroy();
      }
    });

    void it('closes the database when it refuses a newer schema', async () => {
      const path = freshPath();
      await (await openSqliteStore({ path })).close();
      withRaw(path, (raw) =>
        raw
          .prepare(`INSERT INTO intermission_migrations (version, name) VALUES (?, 'next')`)
          .run(SQLITE_SCHEMA_VERSION + 1),
      );
      const raw = new Database(path);
      const error = await rejectsWith(createSqliteStore({ database: raw }), 'STORE_FAILURE');
      assert.deepEqual(error.details, {
        schemaVersion: SQLITE_SCHEMA_VERSION + 1,
        knownVersion: SQLITE_SCHEMA_VERSION,
      });
      assert.equal(raw.open, false);
    });

    void it('opens a database created from the exported DDL as up to date', async () => {
      const raw = new Database(':memory:');
      raw.exec(SQLITE_DDL);
      const store = await createSqliteStore({ database: raw, inMemory: true });
      try {
        assert.deepEqual(store.migration, {
          from: SQLITE_SCHEMA_VERSION,
          to: SQLITE_SCHEMA_VERSION,
          applied: [],
          reports: [],
        });
        const fresh = await openSqliteStore({ path: ':memory:' });
        assert.equal(await store.dumpSchema(), await fresh.dumpSchema());
        await fresh.close();
      } finally {
        await store.close();
      }
    });
  });

  void describe('queries and limits', () => {
    void it('loads live events through the partial index, not by scanning the history', async () => {
      const path = freshPath();
      await (await openSqliteStore({ path })).close();
      const { db } = {
        db: new Kysely<StoreDatabase>({ dialect: new SqliteDialect({ database: new Database(':memory:') }) }),
      };
      const plan = withRaw(
        path,
        (raw) => raw.prepare(`EXPLAIN QUERY PLAN ${selectLiveEventsQuery(db).sql}`).all() as { detail: string }[],
      );
      await db.destroy();
      assert.ok(
        plan.some((row) => row.detail.includes('events_live')),
        JSON.stringify(plan),
      );
    });

    void it('commits a mutation larger than one INSERT can carry', async () => {
      const store = await openSqliteStore({ path: ':memory:' });
      try {
        const events = Array.from({ length: 1234 }, (_, i) => scheduledEvent(i));
        await store.commit({ events, scopes: [{ scope: 'set:web', incarnation: 2 }] });
        assert.equal((await store.loadEvents()).events.length, 1234);
      } finally {
        await store.close();
      }
    });

    void it('keeps the last row when a mutation names an event twice', async () => {
      const store = await openSqliteStore({ path: ':memory:' });
      try {
        const first = scheduledEvent(1);
        const last = { ...first, approvedAt: 5, approvedBy: 'web-0' };
        await store.commit({ events: [first, last], scopes: [] });
        assert.deepStrictEqual((await store.loadEvents()).events, [last]);
      } finally {
        await store.close();
      }
    });

    void it('lets close() wait for a commit under way', async () => {
      const path = freshPath();
      const store = await openSqliteStore({ path });
      const committing = store.commit({ events: [scheduledEvent(7)], scopes: [{ scope: 'set:web', incarnation: 2 }] });
      await store.close();
      await committing;
      const again = await openSqliteStore({ path });
      try {
        assert.equal((await again.loadEvents()).events[0]?.eventId, eventId(7));
      } finally {
        await again.close();
      }
    });
  });
});
