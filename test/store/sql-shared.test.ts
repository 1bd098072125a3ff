import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
} from 'kysely';
import { isIntermissionError } from '../../src/domain/index.js';
import {
  decodeEvent,
  decodeScope,
  encodeEvent,
  raiseIncarnationQuery,
  selectEventsQuery,
  type StoreDatabase,
} from '../../src/store/sql/index.js';
import { fullEvent, scheduledEvent } from './event-fixtures.js';

// The engine-neutral layer: the row codec and the statements, checked without a database.

/** A Kysely that only compiles, for `engine`'s SQL. */
function compiler(engine: 'sqlite' | 'postgres'): Kysely<StoreDatabase> {
  return new Kysely<StoreDatabase>({
    dialect:
      engine === 'sqlite'
        ? {
            createAdapter: () => new SqliteAdapter(),
            createDriver: () => new DummyDriver(),
            createIntrospector: (db) => new SqliteIntrospector(db),
            createQueryCompiler: () => new SqliteQueryCompiler(),
          }
        : {
            createAdapter: () => new PostgresAdapter(),
            createDriver: () => new DummyDriver(),
            createIntrospector: (db) => new PostgresIntrospector(db),
            createQueryCompiler: () => new PostgresQueryCompiler(),
          },
  });
}

function isUnreadable(error: unknown): boolean {
  return isIntermissionError(error, 'STORE_FAILURE') && !error.retryable;
}

void describe('SQL row codec', () => {
  void it('encodes absent values as NULL and resources as JSON, and decodes them back', () => {
    const bare = scheduledEvent(1);
    const row = encodeEvent(bare);
    assert.equal(row.approved_at, null);
    assert.equal(row.removal_reason, null);
    assert.equal(row.resources, '["web-0","web-1"]');
    assert.deepStrictEqual(decodeEvent(row), bare);
    const full = fullEvent(2, 'Removed');
    assert.deepStrictEqual(decodeEvent(encodeEvent(full)), full);
  });

  void it('decodes the forms PostgreSQL drivers return: bigint as string or bigint, jsonb as an array', () => {
    const event = fullEvent(3, 'Ended');
    const row = encodeEvent(event);
    const pgRow = {
      ...row,
      created_at: String(row.created_at),
      not_before: BigInt(row.not_before),
      approved_at: String(row.approved_at),
      resources: JSON.parse(row.resources) as unknown,
    };
    assert.deepStrictEqual(decodeEvent(pgRow), event);
    assert.deepStrictEqual(decodeScope({ scope: 'vm:a', incarnation: '12' }), { scope: 'vm:a', incarnation: 12 });
  });

  void it('refuses rows this version cannot read, naming the row and the column', () => {
    const row = encodeEvent(scheduledEvent(4));
    const bad: Record<string, unknown>[] = [
      { ...row, type: 'Hibernate' },
      { ...row, phase: null },
      { ...row, resources: '{"not":"a list"}' },
      { ...row, resources: 'not json' },
      { ...row, created_at: 1.5 },
      { ...row, created_at: '12abc' },
      { ...row, scope: 'web' },
      { ...row, removal_reason: 'exploded' },
    ];
    for (const b of bad) assert.throws(() => decodeEvent(b), isUnreadable, JSON.stringify(b));
    assert.throws(() => decodeEvent({ ...row, type: 'Hibernate' }), /event 0+-0000-4000-8000-0+4, column type/);
    assert.throws(() => decodeScope({ scope: 'vm:a', incarnation: 0 }), isUnreadable);
    assert.throws(() => decodeScope({ scope: 'nope', incarnation: 3 }), isUnreadable);
  });

  void it('refuses to encode what no engine keeps faithfully', () => {
    assert.throws(() => encodeEvent(scheduledEvent(5, { notBefore: 0.5 })), isUnreadable);
    assert.throws(() => encodeEvent(scheduledEvent(5, { startedAt: Number.NaN })), isUnreadable);
    assert.throws(() => encodeEvent(scheduledEvent(5, { durationInSeconds: 2 ** 60 })), isUnreadable);
  });
});

void describe('SQL statements', () => {
  for (const engine of ['sqlite', 'postgres'] as const) {
    void it(`guards the incarnation in the upsert itself (${engine})`, () => {
      const q = raiseIncarnationQuery(compiler(engine), { scope: 'set:web', incarnation: 4 });
      assert.match(q.sql, /on conflict \("scope"\) do update set "incarnation" = "excluded"\."incarnation"/);
      assert.match(q.sql, /where "excluded"\."incarnation" >= "scopes"\."incarnation"$/);
      assert.deepEqual(q.parameters, ['set:web', 4]);
    });
  }

  void it('binds every filter of a history query, newest first', () => {
    const q = selectEventsQuery(compiler('postgres'), { scope: 'vm:a', since: 10, limit: 5 });
    assert.equal(
      q.sql,
      `select * from "events" where phase <> 'Removed' and "scope" = $1 and "created_at" >= $2 ` +
        `order by "created_at" desc, "event_id" desc limit $3`,
    );
    assert.deepEqual(q.parameters, ['vm:a', 10, 5]);
    assert.doesNotMatch(selectEventsQuery(compiler('sqlite'), { includeRemoved: true }).sql, /Removed/);
  });
});
