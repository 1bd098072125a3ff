import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { FleetIndex, isIntermissionError, parseFleet } from '../../src/domain/index.js';
import { planRollout, type Plan } from '../../src/domain/rollout/index.js';
import { rolloutSummary } from '../../src/control/rollouts.js';
import { rolloutSummarySchema, stepRecordSchema } from '../../src/control/schemas.js';
import { settledEvents } from '../../src/controller/event-cancellation.js';
import type { StoreDatabase } from '../../src/store/sql/index.js';
import { SQLITE_MIGRATIONS, migrateSqlite, openSqliteStore } from '../../src/store/sqlite/index.js';
import { pendingStepsOf, type RolloutRecord, type StepRecord } from '../../src/store/index.js';
import { sqliteSkip, tempDir } from './sqlite-harness.js';

// Issue 12, item 1: an older build started a rollout with `"expectedApplyMs": 1e300` (201). Its plan
// ends in no renderable year, and the executor's next write of its head was refused on every pass, so
// it never finished and held its hosts for good. Migration 000005 retires such rollouts.

const dir = await tempDir();
after(() => dir.cleanup());

const RETIRE_VERSION = 5;
const NOW = Date.UTC(2026, 0, 1);
const YEAR_11476 = 300_000_000_000_000; // beyond 9999-12-31, still a safe integer
const BY = 'migration 000005-retire-unrenderable-rollouts';

const fleet = new FleetIndex(
  parseFleet({
    hosts: [{ name: 'h1' }, { name: 'h2' }, { name: 'h3' }, { name: 'h4' }, { name: 'h5' }],
    availabilitySets: [{ name: 'web', updateDomains: 2 }],
    vms: [
      { name: 'web_0', host: 'h1', availabilitySet: 'web' },
      { name: 'web_1', host: 'h2', availabilitySet: 'web' },
      { name: 'solo_3', host: 'h3' },
      { name: 'solo_4', host: 'h4' },
      { name: 'solo_5', host: 'h5' },
    ],
  }),
);
const capable = { sharedMemory: true, migratableDevices: true, guestAgent: true };
const capabilities = new Map(['web_0', 'web_1', 'solo_3', 'solo_4', 'solo_5'].map((vm) => [vm, capable]));

function plan(id: string, hosts: string[], kind: 'host-patch' | 'hot-patch' = 'host-patch'): Plan {
  return planRollout({
    fleet,
    update: { id, kind, expectedApplyMs: 2000, hosts: { kind: 'names', names: hosts } },
    now: NOW,
    capabilities,
  });
}

interface OldRollout {
  readonly id: string;
  /** The plan's JSON as the old build wrote it. */
  readonly planJson: string;
  readonly head: Record<string, unknown>;
  readonly steps: StepRecord[];
}

/** A rollout head row of `p` as an old build wrote it, with `overrides`. */
function old(p: Plan, planJson: string, head: Record<string, unknown>, steps?: StepRecord[]): OldRollout {
  return {
    id: p.id,
    planJson,
    head: {
      id: p.id,
      status: 'running',
      reason: null,
      created_at: NOW,
      updated_at: NOW + 1000,
      wave: 0,
      wave_phase: 'pending',
      wave_published_at: null,
      settle_until: null,
      failed_hosts: 0,
      ...head,
    },
    steps: steps ?? pendingStepsOf(p),
  };
}

/** Writes a rollout as raw SQL, the way an older build did: no check of any value. */
function insertRaw(raw: Database.Database, r: OldRollout): void {
  const columns = Object.keys(r.head);
  raw
    .prepare(`INSERT INTO rollouts (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`)
    .run(...columns.map((c) => r.head[c]));
  raw.prepare('INSERT INTO rollout_plans (rollout_id, plan) VALUES (?, ?)').run(r.id, r.planJson);
  const step = raw.prepare(
    `INSERT INTO host_steps (id, rollout_id, wave, batch, host, status, dispatched_at, finished_at, result, error)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  for (const s of r.steps) {
    step.run(s.id, s.rolloutId, s.wave, s.batch, s.host, s.status, s.dispatchedAt, s.finishedAt, null, s.error);
  }
}

/** The plan's JSON with `edit` applied, as JSON.stringify writes it (NaN and Infinity become null). */
function edited(
  p: Plan,
  edit: (json: { expectedEndAt: number; plannedAt: number; waves: { startAt: number }[] }) => void,
): string {
  const json = JSON.parse(JSON.stringify(p)) as {
    expectedEndAt: number;
    plannedAt: number;
    waves: { startAt: number }[];
  };
  edit(json);
  return JSON.stringify(json);
}

// The stuck rollout: 1e300 in its plan (and a NaN written as null), its first wave under way on h1
// (dispatched) and h3 (pending), its second wave (h2) pending.
const stuckPlan = plan('stuck', ['h1', 'h2', 'h3']);
const stuckSteps = pendingStepsOf(stuckPlan).map((s): StepRecord =>
  s.host === 'h1' ? { ...s, status: 'dispatched', dispatchedAt: NOW + 500 } : s,
);
const stuck = old(
  stuckPlan,
  edited(stuckPlan, (j) => {
    j.expectedEndAt = 1e300;
    const last = j.waves.at(-1);
    if (last) last.startAt = Number.NaN;
  }),
  { wave_phase: 'published', wave_published_at: NOW + 100 },
  stuckSteps,
);
// Only the 1e300 (older builds let rollouts overlap: it shares h4 with the next one).
const hugePlan = plan('huge', ['h4']);
const huge = old(
  hugePlan,
  edited(hugePlan, (j) => {
    j.expectedEndAt = 1e300;
  }),
  {},
);
// Paused while settling, with a settle deadline in the year 11476.
const frozenPlan = plan('frozen', ['h4']);
const frozen = old(
  frozenPlan,
  JSON.stringify(frozenPlan),
  { status: 'paused', reason: 'paused by the operator', wave_phase: 'settling', settle_until: YEAR_11476 },
  pendingStepsOf(frozenPlan).map((s) => ({ ...s, status: 'succeeded', dispatchedAt: NOW, finishedAt: NOW + 1 })),
);
// Healthy: a hot patch (its VMs' notBefore is null: no event) planned from a virtual clock between two
// milliseconds, as old builds did. Both render; neither is touched.
const healthyPlan = { ...plan('healthy', ['h5'], 'hot-patch'), plannedAt: NOW + 0.5 };
const healthy = old(healthyPlan, JSON.stringify(healthyPlan), {});
// History: a completed rollout with the same bad plan, and a cancelled one with an updated_at before 1970.
const donePlan = plan('done-long-ago', ['h1', 'h2']);
const done = old(
  donePlan,
  edited(donePlan, (j) => {
    j.expectedEndAt = 1e300;
  }),
  { status: 'completed', wave: 2 },
  pendingStepsOf(donePlan).map((s) => ({ ...s, status: 'succeeded', dispatchedAt: NOW, finishedAt: NOW + 1 })),
);
const gonePlan = plan('gone', ['h3']);
const gone = old(gonePlan, JSON.stringify(gonePlan), {
  status: 'cancelled',
  reason: 'cancelled by the operator',
  updated_at: -5,
});

async function versionFourDatabase(name: string, rollouts: OldRollout[]): Promise<string> {
  const path = dir.file(name);
  const raw = new Database(path);
  const db = new Kysely<StoreDatabase>({ dialect: new SqliteDialect({ database: raw }) });
  await migrateSqlite(db, SQLITE_MIGRATIONS.slice(0, RETIRE_VERSION - 1));
  for (const r of rollouts) insertRaw(raw, r);
  await db.destroy();
  return path;
}

function newRollout(id: string, hosts: string[]): { record: RolloutRecord; steps: StepRecord[] } {
  const p = plan(id, hosts);
  return {
    record: {
      id,
      plan: p,
      status: 'running',
      reason: null,
      createdAt: NOW + 5000,
      updatedAt: NOW + 5000,
      wave: 0,
      wavePhase: 'pending',
      wavePublishedAt: null,
      settleUntil: null,
      failedHosts: 0,
    },
    steps: pendingStepsOf(p),
  };
}

void describe('SQLite migration 000005: retire rollouts with unrenderable times', { skip: sqliteSkip ?? false }, () => {
  void it('halts the stuck rollouts of a version-4 database, reports them, and frees their hosts', async () => {
    const path = await versionFourDatabase('stuck.db', [stuck, huge, frozen, healthy, done, gone]);
    assert.match(healthy.planJson, /"notBefore":null/, 'the healthy plan holds a legitimate null time');
    const before = Date.now();
    const store = await openSqliteStore({ path });
    const afterOpen = Date.now();
    try {
      assert.equal(store.migration.from, RETIRE_VERSION - 1);
      assert.ok(store.migration.applied.includes(RETIRE_VERSION));
      assert.equal(store.migration.reports.length, 1);
      const [report] = store.migration.reports;
      assert.equal(report?.version, RETIRE_VERSION);
      assert.match(report?.summary ?? '', /retired/);
      assert.deepEqual(
        report?.rows.map((r) => [r.id, r.status, r.action]),
        [
          ['frozen', 'paused', 'halted'],
          ['gone', 'cancelled', 'times replaced'],
          ['huge', 'running', 'halted'],
          ['stuck', 'running', 'halted'],
        ],
        'exactly the stuck rollouts are retired; history only has its times replaced',
      );
      const rows = new Map(report?.rows.map((r) => [r.id, r]));
      assert.equal(rows.get('stuck')?.plan_bad_values, 2, 'the 1e300 and the null time');
      assert.match(String(rows.get('stuck')?.problem), /^plan \$\.\S+ = (1\.0e\+300|null) \(and 1 more\)$/);
      assert.equal(rows.get('huge')?.problem, 'plan $.expectedEndAt = 1.0e+300');
      assert.equal(rows.get('frozen')?.settle_until, YEAR_11476, 'the report shows the row as it was');
      assert.equal(rows.get('frozen')?.problem, `settle_until ${YEAR_11476}`);
      assert.equal(rows.get('gone')?.updated_at, -5);

      // The listing and every detail answer, and the control API renders them.
      const listed = await store.listRollouts();
      assert.deepEqual(listed.map((r) => r.id).sort(), ['done-long-ago', 'frozen', 'gone', 'healthy', 'huge', 'stuck']);
      for (const r of listed) {
        rolloutSummarySchema.parse(rolloutSummary(r));
        for (const s of await store.listSteps(r.id)) stepRecordSchema.parse(s);
      }

      const s = await store.getRollout('stuck');
      assert.equal(s?.status, 'halted');
      assert.match(
        s?.reason ?? '',
        new RegExp(`^retired by ${BY} \\(it was running\\): no client can render its plan `),
      );
      assert.equal(s?.plan.expectedEndAt, 1e300, 'the plan is the record of what was asked: never rewritten');
      const steps = await store.listSteps('stuck');
      const byHost = new Map(steps.map((st) => [st.host, st]));
      assert.equal(byHost.get('h1')?.status, 'dispatched', 'a step under way is left to finish');
      for (const host of ['h2', 'h3']) {
        const st = byHost.get(host);
        assert.equal(st?.status, 'cancelled', `${host}: a pending step will never run`);
        assert.equal(st?.cancellation?.by, BY);
        assert.ok((st?.finishedAt ?? 0) >= before - 1 && (st?.finishedAt ?? 0) <= afterOpen + 1);
      }
      // What the executor does on its next pass of the halted rollout: the Scheduled events that only
      // the cancelled steps needed are withdrawn; the dispatched step's stays until it finishes.
      const wave = s?.plan.waves[0];
      assert.ok(wave);
      const settled = settledEvents('stuck', wave, steps, () => 'Scheduled');
      const eventOf = (vm: string): string | undefined =>
        wave.batches.flatMap((b) => b.steps.flatMap((st) => st.vms)).find((v) => v.name === vm)?.eventId ?? undefined;
      assert.ok(eventOf('solo_3') && eventOf('web_0'));
      assert.ok(settled.withdraw.includes(eventOf('solo_3') ?? ''));
      assert.ok(!settled.withdraw.includes(eventOf('web_0') ?? ''));

      assert.equal((await store.getRollout('huge'))?.status, 'halted');
      assert.ok((await store.listSteps('huge')).every((st) => st.status === 'cancelled'));

      const f = await store.getRollout('frozen');
      assert.equal(f?.status, 'halted');
      assert.equal(
        f?.reason,
        `retired by ${BY} (it was paused): no client can render its settle_until ${YEAR_11476}. ` +
          'Nothing more is dispatched; plan the update again for its hosts.',
      );
      assert.equal(f?.settleUntil, null);

      const h = await store.getRollout('healthy');
      assert.deepEqual(h, {
        id: 'healthy',
        plan: healthyPlan,
        status: 'running',
        reason: null,
        createdAt: NOW,
        updatedAt: NOW + 1000,
        wave: 0,
        wavePhase: 'pending',
        wavePublishedAt: null,
        settleUntil: null,
        failedHosts: 0,
      });
      assert.ok((await store.listSteps('healthy')).every((st) => st.status === 'pending'));

      const d = await store.getRollout('done-long-ago');
      assert.equal(d?.status, 'completed', 'history keeps its status');
      assert.equal(d?.reason, null);
      assert.equal(d?.plan.expectedEndAt, 1e300);
      const g = await store.getRollout('gone');
      assert.equal(g?.status, 'cancelled');
      assert.equal(g?.reason, 'cancelled by the operator');
      assert.ok((g?.updatedAt ?? 0) >= before - 1 && (g?.updatedAt ?? 0) <= afterOpen + 1);

      // The retired rollouts' hosts are free, but for the step still under way on h1; the healthy
      // rollout still holds its own.
      const free = newRollout('after-retire', ['h2', 'h3', 'h4']);
      await store.createRollout(free.record, free.steps);
      await assert.rejects(
        () => {
          const busy = newRollout('over-h1', ['h1']);
          return store.createRollout(busy.record, busy.steps);
        },
        (e: unknown) =>
          isIntermissionError(e) && e.code === 'CONFLICT' && /stuck \(halted\) on host h1;/.test(e.message),
      );
      await assert.rejects(
        () => {
          const busy = newRollout('over-h5', ['h5']);
          return store.createRollout(busy.record, busy.steps);
        },
        (e: unknown) => isIntermissionError(e) && e.code === 'CONFLICT' && /healthy \(running\)/.test(e.message),
      );
      // The executor records the dispatched step's end (a halted rollout still polls it): h1 is free.
      const h1 = byHost.get('h1');
      assert.ok(h1 && s);
      await store.saveProgress({
        rollout: { ...s, updatedAt: NOW + 9000 },
        steps: [{ ...h1, status: 'succeeded', finishedAt: NOW + 9000 }],
      });
      const overH1 = newRollout('over-h1', ['h1']);
      await store.createRollout(overH1.record, overH1.steps);
      assert.equal((await store.getRollout('over-h1'))?.status, 'running');
    } finally {
      await store.close();
    }

    const again = await openSqliteStore({ path });
    try {
      assert.deepEqual(again.migration.applied, [], 'nothing migrates twice');
      assert.deepEqual(again.migration.reports, []);
      assert.equal((await again.getRollout('stuck'))?.status, 'halted');
    } finally {
      await again.close();
    }
  });

  void it('reports nothing and changes nothing in a healthy database', async () => {
    const path = await versionFourDatabase('healthy.db', [healthy]);
    const store = await openSqliteStore({ path });
    try {
      assert.ok(store.migration.applied.includes(RETIRE_VERSION));
      assert.deepEqual(store.migration.reports, []);
      assert.equal((await store.getRollout('healthy'))?.status, 'running');
      assert.deepEqual((await store.getRollout('healthy'))?.plan, healthyPlan);
    } finally {
      await store.close();
    }
  });
});
