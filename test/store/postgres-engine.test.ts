import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { FleetIndex, IntermissionError, parseFleet } from '../../src/domain/index.js';
import { planRollout } from '../../src/domain/rollout/index.js';
import { migrationLabel, type StoreDatabase } from '../../src/store/sql/index.js';
import {
  POSTGRES_MIGRATIONS,
  POSTGRES_SCHEMA_DUMP_PATH,
  POSTGRES_SCHEMA_VERSION,
  MAX_WRITE_ATTEMPTS,
  createPostgresStore,
  describePostgresTarget,
  inSerializableTransaction,
  migratePostgres,
  openPostgresStore,
  parseInt8,
  postgresPoolSettings,
  toPostgresStoreError,
  type PostgresMigration,
} from '../../src/store/postgres/index.js';
import { pendingStepsOf } from '../../src/store/index.js';
import { SQLITE_MIGRATIONS } from '../../src/store/sqlite/index.js';
import { rejectsWith } from './event-store.contract.js';
import { scheduledEvent } from './event-fixtures.js';
import { postgresSkip, startPostgresCluster, type PostgresCluster } from './postgres-harness.js';

// What the contract cannot see on PostgreSQL: the error mapping, timeouts, migrations and the schema
// dump. The pure parts run everywhere; the rest on a throwaway cluster.

/** A node-postgres DatabaseError's shape, as the mapping reads it. */
function serverError(code: string, message = 'boom'): Error {
  return Object.assign(new Error(message), { code, severity: 'ERROR' });
}

void describe('PostgreSQL store: configuration and error mapping', () => {
  void it('maps SQLSTATEs and socket errors to STORE_FAILURE, retryable only when a later call can succeed', () => {
    const cases: [unknown, boolean][] = [
      [serverError('40001'), true],
      [serverError('40P01'), true],
      [serverError('57014'), true],
      [serverError('57P01'), true],
      [serverError('08006'), true],
      [serverError('53300'), true],
      [serverError('25006'), true],
      [serverError('23505'), false],
      [serverError('23503'), false],
      [serverError('22021'), false],
      [serverError('42P01'), false],
      [serverError('28P01'), false],
      [serverError('3D000'), false],
      [Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), true],
      [Object.assign(new Error('connect ENOENT /tmp/x/.s.PGSQL.5432'), { code: 'ENOENT' }), true],
      [new Error('Connection terminated unexpectedly'), true],
      [new Error('timeout exceeded when trying to connect'), true],
      [new TypeError('a bug'), false],
    ];
    for (const [error, retryable] of cases) {
      const mapped = toPostgresStoreError(error, 'do it');
      assert.equal(mapped.code, 'STORE_FAILURE');
      assert.equal(mapped.retryable, retryable, String(error));
      assert.equal(mapped.cause, error);
    }
    assert.deepEqual(toPostgresStoreError(serverError('23505'), 'do it').details, {
      action: 'do it',
      sqlState: '23505',
    });
    const own = new IntermissionError('CONFLICT', 'ours');
    assert.equal(toPostgresStoreError(own, 'do it'), own);
  });

  void it('bounds the pool and the session: defaults, and INVALID_INPUT for a figure out of range', () => {
    const settings = postgresPoolSettings({ connectionString: 'postgres://db.example/x' });
    assert.equal(settings.max, 10);
    assert.equal(settings.statement_timeout, 30_000);
    assert.equal(settings.idle_in_transaction_session_timeout, 60_000);
    assert.equal(settings.connectionTimeoutMillis, 10_000);
    for (const bad of [
      { maxConnections: 0 },
      { statementTimeoutMs: -1 },
      { connectTimeoutMs: 1.5 },
      { connectionString: ' ' },
    ]) {
      assert.throws(() => postgresPoolSettings(bad), { code: 'INVALID_INPUT' }, JSON.stringify(bad));
    }
  });

  void it('reads int8 as a number only when exact, and names a target without its password', () => {
    assert.equal(parseInt8('42'), 42);
    assert.equal(parseInt8('9007199254740993'), '9007199254740993');
    assert.equal(
      describePostgresTarget('postgres://ops:secret@db.example:6543/intermission', {}),
      'ops@db.example:6543/intermission',
    );
    assert.equal(
      describePostgresTarget('postgresql:///ctl?host=/run/postgresql', { PGUSER: 'ctl' }),
      'ctl@/run/postgresql:5432/ctl',
    );
    assert.doesNotMatch(describePostgresTarget('postgres://u:hunter2@h/d', {}), /hunter2/);
  });

  void it('numbers its migrations as SQLite does, each the same step by name', () => {
    assert.deepEqual(
      POSTGRES_MIGRATIONS.map((m) => [m.version, m.name]),
      SQLITE_MIGRATIONS.map((m) => [m.version, m.name]),
    );
    for (const m of POSTGRES_MIGRATIONS) {
      assert.ok(m.statements.length > 0 || (m.noop ?? '').length > 0, `${m.name} does something or says why not`);
    }
  });
});

const cluster: PostgresCluster | undefined = postgresSkip === undefined ? await startPostgresCluster() : undefined;

function running(): PostgresCluster {
  if (!cluster) throw new Error('PostgreSQL is not running; the suite should have been skipped');
  return cluster;
}

function databaseOf(url: string): string {
  return new URL(url).pathname.slice(1);
}

/** A Kysely over a fresh database, for the migrator alone. */
async function freshKysely(): Promise<{ db: Kysely<StoreDatabase>; name: string }> {
  const url = await running().createDatabase();
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  return { db: new Kysely<StoreDatabase>({ dialect: new PostgresDialect({ pool }) }), name: databaseOf(url) };
}

void describe('PostgreSQL store engine', { skip: postgresSkip ?? false }, () => {
  void it('reports a server it cannot reach as retryable STORE_FAILURE, a missing database as lasting', async () => {
    const nowhere = `postgresql:///x?host=${encodeURIComponent(`${running().dir}/nowhere`)}&user=postgres`;
    const unreachable = await rejectsWith(
      openPostgresStore({ connectionString: nowhere, connectTimeoutMs: 2_000 }),
      'STORE_FAILURE',
    );
    assert.equal(unreachable.retryable, true, unreachable.message);
    const missing = await rejectsWith(
      openPostgresStore({ connectionString: running().url('no_such_database') }),
      'STORE_FAILURE',
    );
    assert.equal(missing.retryable, false);
    assert.equal(missing.details.sqlState, '3D000');
  });

  void it('runs a write again after a serialization failure, at most MAX_WRITE_ATTEMPTS times in all', async () => {
    const { db } = await freshKysely();
    try {
      let calls = 0;
      const result = await inSerializableTransaction(db, () => {
        calls++;
        return calls < 3 ? Promise.reject(serverError('40001')) : Promise.resolve('done');
      });
      assert.deepEqual([result, calls], ['done', 3]);
      calls = 0;
      await assert.rejects(
        inSerializableTransaction(db, () => {
          calls++;
          return Promise.reject(serverError('40P01'));
        }),
        { code: '40P01' },
      );
      assert.equal(calls, MAX_WRITE_ATTEMPTS);
      calls = 0;
      await assert.rejects(
        inSerializableTransaction(db, () => {
          calls++;
          return Promise.reject(serverError('23505'));
        }),
        { code: '23505' },
      );
      assert.equal(calls, 1, 'anything but a lost race is not run again');
    } finally {
      await db.destroy();
    }
  });

  void it("reads back whole over a caller's pool with node-postgres's default type parsers", async () => {
    // Defaults hand back bigint as text and json parsed; the codec reads both forms.
    const url = await running().createDatabase();
    const store = await createPostgresStore({ pool: new pg.Pool({ connectionString: url, max: 2 }) });
    try {
      await store.commit({ events: [scheduledEvent(1)], scopes: [{ scope: 'set:web', incarnation: 3 }] });
      assert.deepEqual(await store.loadEvents(), {
        events: [scheduledEvent(1)],
        scopes: [{ scope: 'set:web', incarnation: 3 }],
      });
      const lowered = await rejectsWith(
        store.commit({ events: [], scopes: [{ scope: 'set:web', incarnation: 2 }] }),
        'CONFLICT',
      );
      assert.equal(lowered.details.storedIncarnation, 3);
      const fleet = new FleetIndex(parseFleet({ hosts: [{ name: 'h1' }], vms: [{ name: 'solo', host: 'h1' }] }));
      const plan = planRollout({
        fleet,
        update: { id: 'p', kind: 'host-patch', expectedApplyMs: 1000 },
        now: Date.UTC(2026, 0, 1),
        capabilities: new Map([['solo', { sharedMemory: true, migratableDevices: true, guestAgent: true }]]),
      });
      const record = {
        id: 'p',
        plan,
        status: 'running' as const,
        reason: null,
        createdAt: 1,
        updatedAt: 1,
        wave: 0,
        wavePhase: 'pending' as const,
        wavePublishedAt: null,
        settleUntil: null,
        failedHosts: 0,
      };
      const [step] = pendingStepsOf(plan);
      assert.ok(step);
      await store.createRollout(record, [step]);
      await store.saveProgress({ steps: [{ ...step, status: 'succeeded', finishedAt: 5, result: { ok: true } }] });
      // A second store: the plan is read from the database, not from the first store's cache.
      const other = await createPostgresStore({ pool: new pg.Pool({ connectionString: url, max: 1 }) });
      try {
        assert.deepEqual(await other.getRollout('p'), record);
        assert.deepEqual((await other.listSteps('p'))[0]?.result, { ok: true });
      } finally {
        await other.close();
      }
    } finally {
      await store.close();
    }
  });

  void it('fails a write stuck behind a lock after the statement timeout, retryable, and writes nothing', async () => {
    const url = await running().createDatabase();
    const store = await openPostgresStore({ connectionString: url, statementTimeoutMs: 300 });
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE scopes IN ACCESS EXCLUSIVE MODE');
      const error = await rejectsWith(
        store.commit({ events: [scheduledEvent(1)], scopes: [{ scope: 'set:web', incarnation: 2 }] }),
        'STORE_FAILURE',
      );
      assert.equal(error.retryable, true);
      assert.equal(error.details.sqlState, '57014');
      await holder.query('ROLLBACK');
      assert.deepEqual(await store.loadEvents(), { events: [], scopes: [] });
      await store.commit({ events: [scheduledEvent(1)], scopes: [{ scope: 'set:web', incarnation: 2 }] });
      assert.equal((await store.loadEvents()).events.length, 1);
    } finally {
      await holder.end();
      await store.close();
    }
  });

  void it('refuses text PostgreSQL cannot hold (NUL) with STORE_FAILURE that is not retryable, writing nothing', async () => {
    const store = await openPostgresStore({ connectionString: await running().createDatabase() });
    try {
      const error = await rejectsWith(
        store.commit({
          events: [scheduledEvent(1), scheduledEvent(2, { description: 'a\u0000b' })],
          scopes: [{ scope: 'set:web', incarnation: 2 }],
        }),
        'STORE_FAILURE',
      );
      assert.equal(error.retryable, false);
      assert.deepEqual(await store.loadEvents(), { events: [], scopes: [] });
    } finally {
      await store.close();
    }
  });

  void it('rolls a failing migration back whole, DDL included, leaving the previous version', async () => {
    const { db, name } = await freshKysely();
    const broken: PostgresMigration = {
      version: POSTGRES_MIGRATIONS.length + 1,
      name: 'broken',
      statements: ['CREATE TABLE half_done (x integer)', 'THIS IS NOT SQL'],
    };
    try {
      const error = await rejectsWith(migratePostgres(db, [...POSTGRES_MIGRATIONS, broken]), 'STORE_FAILURE');
      assert.match(String(error.details.action), new RegExp(`${migrationLabel(broken)}$`));
      const tables = await running().query(`SELECT 1 FROM pg_tables WHERE tablename = 'half_done'`, [], name);
      assert.deepEqual(tables, []);
      const versions = await running().query<{ version: number }>(
        'SELECT version FROM intermission_migrations ORDER BY version',
        [],
        name,
      );
      assert.deepEqual(
        versions.map((v) => v.version),
        POSTGRES_MIGRATIONS.map((m) => m.version),
      );
      const fixed = { ...broken, statements: ['CREATE TABLE half_done (x integer)'] };
      assert.deepEqual(await migratePostgres(db, [...POSTGRES_MIGRATIONS, fixed]), {
        from: POSTGRES_SCHEMA_VERSION,
        to: POSTGRES_SCHEMA_VERSION + 1,
        applied: [POSTGRES_SCHEMA_VERSION + 1],
        reports: [],
      });
    } finally {
      await db.destroy();
    }
  });

  void it('refuses a malformed migration list (no statements and no reason) as INTERNAL', async () => {
    const { db } = await freshKysely();
    try {
      const list = POSTGRES_MIGRATIONS.map((m) => (m.version === 4 ? { ...m, noop: undefined } : m));
      await rejectsWith(migratePostgres(db, list), 'INTERNAL');
    } finally {
      await db.destroy();
    }
  });

  void it('moves the plans of a version-2 database into rollout_plans, unchanged', async () => {
    const { db, name } = await freshKysely();
    const plan = { formatVersion: 2, id: 'old-1', waves: [{ index: 0 }] };
    await migratePostgres(db, POSTGRES_MIGRATIONS.slice(0, 2));
    await db.destroy();
    await running().query(
      `INSERT INTO rollouts (id, plan, status, reason, created_at, updated_at, wave, wave_phase,
         wave_published_at, settle_until, failed_hosts) VALUES ($1, $2, 'running', NULL, 1, 2, 0, 'pending', NULL, NULL, 0)`,
      ['old-1', JSON.stringify(plan)],
      name,
    );
    const store = await openPostgresStore({ connectionString: running().url(name) });
    try {
      assert.deepEqual(
        store.migration.applied,
        POSTGRES_MIGRATIONS.filter((m) => m.version > 2).map((m) => m.version),
      );
      const rows = await running().query<{ plan: unknown }>('SELECT plan FROM rollout_plans', [], name);
      assert.deepEqual(rows[0]?.plan, plan);
    } finally {
      await store.close();
    }
  });

  void it('leaves the schema that the committed dump shows', async () => {
    const store = await openPostgresStore({ connectionString: await running().createDatabase() });
    try {
      const committed = await readFile(new URL(`../../${POSTGRES_SCHEMA_DUMP_PATH}`, import.meta.url), 'utf8');
      assert.equal(
        await store.dumpSchema(),
        committed,
        `${POSTGRES_SCHEMA_DUMP_PATH} is stale: run node --import tsx scripts/dump-schema.ts --postgres <an empty database>`,
      );
    } finally {
      await store.close();
    }
  });
});
