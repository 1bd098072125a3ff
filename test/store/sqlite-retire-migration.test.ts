import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { FleetIndex, ManualClock, eventTiming, parseFleet } from '../../src/domain/index.js';
import { eventView } from '../../src/control/app.js';
import { EventService } from '../../src/service/event-service.js';
import type { StoreDatabase } from '../../src/store/sql/index.js';
import { SQLITE_MIGRATIONS, migrateSqlite, openSqliteStore } from '../../src/store/sqlite/index.js';
import { eventId, scheduledEvent } from './event-fixtures.js';
import { sqliteSkip, tempDir } from './sqlite-harness.js';

// Issue 12, item 1: a database written before times were bounded holds an event whose NotBefore no
// client can render (the year 275760). Migration 000004 retires it, so that the database answers.

const dir = await tempDir();
after(() => dir.cleanup());

const RETIRE_VERSION = 4;
const POISONED = 8_700_000_000_000_000 + 1_767_225_600_000; // a notice of 8.7e15 ms from 2026
const BEYOND_SAFE = '9007199254740993'; // 2^53 + 1: SQLite keeps it, JavaScript cannot

const fleet = new FleetIndex(
  parseFleet({
    hosts: [{ name: 'h1' }],
    availabilitySets: [{ name: 'web', updateDomains: 2 }],
    vms: [
      { name: 'web-0', host: 'h1', availabilitySet: 'web' },
      { name: 'web-1', host: 'h1', availabilitySet: 'web' },
      { name: 'solo', host: 'h1' },
    ],
  }),
);

/** Writes an event row as raw SQL, the way an older build did: no check of any value. */
function insertRaw(
  raw: Database.Database,
  e: ReturnType<typeof scheduledEvent>,
  overrides: Record<string, unknown>,
): void {
  const row: Record<string, unknown> = {
    event_id: e.eventId,
    scope: e.scope,
    type: e.type,
    phase: e.phase,
    resources: JSON.stringify(e.resources),
    description: e.description,
    source: e.source,
    duration_in_seconds: e.durationInSeconds,
    created_at: e.createdAt,
    not_before: e.notBefore,
    approved_at: e.approvedAt ?? null,
    approved_by: e.approvedBy ?? null,
    started_at: e.startedAt ?? null,
    ended_at: e.endedAt ?? null,
    linger_ms: e.lingerMs,
    removed_at: e.removedAt ?? null,
    removal_reason: e.removalReason ?? null,
    owner: e.owner,
    ...overrides,
  };
  const columns = Object.keys(row);
  // Big integers go in as SQL literals: better-sqlite3 would round a JavaScript number.
  const values = columns.map((c) => (typeof row[c] === 'bigint' ? `${String(row[c])}` : '?'));
  raw
    .prepare(`INSERT INTO events (${columns.join(', ')}) VALUES (${values.join(', ')})`)
    .run(...columns.filter((c) => typeof row[c] !== 'bigint').map((c) => row[c]));
}

void describe('SQLite migration 000004: retire events with unreadable times', { skip: sqliteSkip ?? false }, () => {
  void it('retires a poisoned row of a version-3 database, raises its scope once, reports it, and the service answers', async () => {
    const path = dir.file('poisoned.db');
    const good = scheduledEvent(1, { scope: 'set:web', resources: ['web-0'] });
    const poisoned = scheduledEvent(2, { scope: 'set:web', resources: ['web-0'] });
    const poisonedToo = scheduledEvent(3, { scope: 'set:web', resources: ['web-1'], phase: 'Started' });
    const oldHistory = scheduledEvent(4, {
      scope: 'vm:solo',
      resources: ['solo'],
      phase: 'Removed',
      removedAt: 1_767_226_000_000,
      removalReason: 'cancelled',
    });
    {
      const raw = new Database(path);
      const db = new Kysely<StoreDatabase>({ dialect: new SqliteDialect({ database: raw }) });
      await migrateSqlite(db, SQLITE_MIGRATIONS.slice(0, RETIRE_VERSION - 1));
      insertRaw(raw, good, {});
      insertRaw(raw, poisoned, { not_before: POISONED });
      insertRaw(raw, poisonedToo, { started_at: BigInt(BEYOND_SAFE) });
      insertRaw(raw, oldHistory, { created_at: -5 });
      raw.prepare(`INSERT INTO scopes (scope, incarnation) VALUES ('set:web', 7), ('vm:solo', 3)`).run();
      await db.destroy();
    }

    const store = await openSqliteStore({ path });
    try {
      assert.equal(store.migration.from, RETIRE_VERSION - 1);
      assert.ok(store.migration.applied.includes(RETIRE_VERSION));
      const [report] = store.migration.reports;
      assert.equal(report?.version, RETIRE_VERSION);
      assert.match(report?.summary ?? '', /retired/);
      assert.deepEqual(
        report?.rows.map((r) => r.event_id),
        [poisoned.eventId, poisonedToo.eventId, oldHistory.eventId],
        'every unreadable row is reported',
      );
      assert.equal(report?.rows[0]?.not_before, POISONED, 'the report shows the row as it was');

      const loaded = await store.loadEvents();
      assert.deepEqual(
        loaded.events.map((e) => e.eventId),
        [good.eventId],
      );
      assert.deepEqual(
        [...loaded.scopes].sort((a, b) => (a.scope < b.scope ? -1 : 1)),
        [
          { scope: 'set:web', incarnation: 8 },
          { scope: 'vm:solo', incarnation: 3 },
        ],
        'the scope whose document lost events goes up exactly once; a scope with only history is untouched',
      );
      const retired = await store.getEvent(poisoned.eventId);
      assert.equal(retired?.phase, 'Removed');
      assert.equal(retired?.removalReason, 'retired');
      const history = await store.queryEvents({ includeRemoved: true });
      assert.equal(history.length, 4, 'the history reads whole again');
      assert.equal((await store.getEvent(oldHistory.eventId))?.removalReason, 'cancelled');
      for (const e of history) eventView(e); // renders: no "Invalid time value"

      const service = await EventService.open({
        fleet,
        store,
        clock: new ManualClock(Date.UTC(2026, 0, 2)),
        timing: eventTiming(),
      });
      try {
        const doc = service.document('web-0');
        assert.equal(doc.incarnation, 8);
        assert.deepEqual(
          doc.events.map((e) => e.eventId),
          [good.eventId],
        );
        const next = await service.schedule({ type: 'Freeze', resources: ['web-1'] });
        assert.equal(service.document('web-1').incarnation, 9, 'incarnations go on from the raised value');
        assert.deepEqual(eventView(next).eventId, next.eventId);
      } finally {
        await service.stop();
      }
    } finally {
      await store.close();
    }

    const again = await openSqliteStore({ path });
    try {
      assert.deepEqual(again.migration.applied, [], 'nothing migrates twice');
      assert.deepEqual(again.migration.reports, []);
      assert.equal((await again.loadEvents()).scopes.find((s) => s.scope === 'set:web')?.incarnation, 9);
    } finally {
      await again.close();
    }
  });

  void it('reports nothing and changes nothing in a healthy database', async () => {
    const path = dir.file('healthy.db');
    const e = scheduledEvent(5, { resources: ['web-0'] });
    {
      const raw = new Database(path);
      const db = new Kysely<StoreDatabase>({ dialect: new SqliteDialect({ database: raw }) });
      await migrateSqlite(db, SQLITE_MIGRATIONS.slice(0, RETIRE_VERSION - 1));
      insertRaw(raw, e, {});
      raw.prepare(`INSERT INTO scopes (scope, incarnation) VALUES ('set:web', 2)`).run();
      await db.destroy();
    }
    const store = await openSqliteStore({ path });
    try {
      assert.ok(store.migration.applied.includes(RETIRE_VERSION));
      assert.deepEqual(store.migration.reports, []);
      assert.deepEqual(await store.loadEvents(), { events: [e], scopes: [{ scope: 'set:web', incarnation: 2 }] });
      assert.equal(await store.getEvent(eventId(6)), undefined);
    } finally {
      await store.close();
    }
  });
});
