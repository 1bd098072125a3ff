import { Kysely, SqliteDialect, sql } from 'kysely';
import {
  IntermissionError,
  isEmptyMutation,
  type MaintenanceEvent,
  type Mutation,
  type ScopeState,
} from '../../domain/index.js';
import {
  MAX_ROWS_PER_INSERT,
  decodeEvent,
  decodeOperation,
  decodePlan,
  decodeRollout,
  decodeStep,
  encodeOperation,
  encodeRollout,
  encodeRolloutHead,
  encodeStep,
  insertPlanQuery,
  insertRolloutQuery,
  selectOperationsQuery,
  selectPlanQuery,
  selectBusyHostsQuery,
  selectRolloutHeadsQuery,
  selectStepsQuery,
  updateRolloutQuery,
  upsertOperationsQuery,
  upsertStepsQuery,
  decodeScope,
  encodeReadableEvent,
  raiseIncarnationQuery,
  selectEventByIdQuery,
  selectEventsQuery,
  selectLiveEventsQuery,
  selectScopeQuery,
  selectScopesQuery,
  upsertEventsQuery,
  type EventRow,
  type StoreDatabase,
} from '../sql/index.js';
import type { EventQuery, EventStore, StoreCapabilities } from '../store.js';
import {
  overlapConflict,
  type RolloutRecord,
  type RolloutStatus,
  type RolloutStore,
  type StepRecord,
  type StepStatus,
  type VmOperationRecord,
} from '../rollout-store.js';
import type { Plan } from '../../domain/rollout/index.js';
import { SQLITE_MIGRATIONS } from './migrations/index.js';
import { busyTimeoutOf, sqlitePragmas, type CreateSqliteStoreOptions } from './sqlite-config.js';
import { toStoreError } from './sqlite-errors.js';
import { migrateSqlite, type SqliteMigrationResult } from './sqlite-migrator.js';
import { formatSqliteSchema, type SqliteSchemaObject } from './sqlite-schema.js';
import { inTransaction } from './sqlite-transaction.js';

/** SQLite is one process's store: no flag is set. */
export const SQLITE_STORE_CAPABILITIES: StoreCapabilities = Object.freeze({});

const SCOPE_RE = /^(?:set|vm):./;

/**
 * The embedded event store on SQLite, through Kysely over any {@link SqliteDatabase}. Make one with
 * {@link createSqliteStore} or `openSqliteStore`. Every call runs on the database's single
 * connection, one at a time; `commit` is one `BEGIN IMMEDIATE` transaction.
 *
 * A commit that would lower a stored DocumentIncarnation is refused with CONFLICT (not retryable) and
 * writes nothing: the caller's view is older than the store's (a second writer, or a bug), and
 * retrying the same mutation cannot help; the caller reloads instead. Driver failures surface as
 * STORE_FAILURE.
 */
export class SqliteEventStore implements EventStore, RolloutStore {
  readonly capabilities: StoreCapabilities = SQLITE_STORE_CAPABILITIES;
  /** What the migrations did on open; `migration.to` is the schema version. */
  readonly migration: SqliteMigrationResult;
  readonly #db: Kysely<StoreDatabase>;
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Decoded plans by rollout id: a plan never changes once stored, and decoding a big one is dear. */
  readonly #plans = new Map<string, Plan>();
  #closing: Promise<void> | undefined;

  /** Use {@link createSqliteStore}: it applies the pragmas and migrations first. */
  constructor(db: Kysely<StoreDatabase>, migration: SqliteMigrationResult) {
    this.#db = db;
    this.migration = migration;
  }

  /** The schema version of the open database. */
  get schemaVersion(): number {
    return this.migration.to;
  }

  /** See {@link EventStore.loadEvents}: one deferred (read) transaction. */
  async loadEvents(): Promise<{ events: MaintenanceEvent[]; scopes: ScopeState[] }> {
    return this.#run('load events', (db) =>
      // One read transaction: the events and the scopes come from the same snapshot.
      inTransaction(db, 'deferred', async (trx) => {
        const events = await trx.executeQuery(selectLiveEventsQuery(trx));
        const scopes = await trx.executeQuery(selectScopesQuery(trx));
        return { events: events.rows.map(decodeEvent), scopes: scopes.rows.map(decodeScope) };
      }),
    );
  }

  /**
   * See {@link EventStore.commit}: one `BEGIN IMMEDIATE` transaction that upserts the event rows,
   * then raises each scope with a guarded upsert; a guard that matches no row rolls everything back
   * and throws CONFLICT.
   */
  async commit(mutation: Mutation): Promise<void> {
    this.#assertOpen();
    if (isEmptyMutation(mutation)) return;
    // Encode and check everything before the transaction: what cannot be stored, or would not read
    // back, fails without I/O.
    const rows = lastPerId(mutation.events.map(encodeReadableEvent));
    for (const s of mutation.scopes) checkScope(s);
    await this.#run('commit a mutation', (db) =>
      inTransaction(db, 'immediate', async (trx) => {
        for (let i = 0; i < rows.length; i += MAX_ROWS_PER_INSERT) {
          await trx.executeQuery(upsertEventsQuery(trx, rows.slice(i, i + MAX_ROWS_PER_INSERT)));
        }
        for (const s of mutation.scopes) {
          const result = await trx.executeQuery(raiseIncarnationQuery(trx, s));
          if (result.numAffectedRows === undefined || result.numAffectedRows === 0n) {
            const stored = (await trx.executeQuery(selectScopeQuery(trx, s.scope))).rows[0]?.incarnation;
            throw new IntermissionError(
              'CONFLICT',
              `refused to lower the DocumentIncarnation of ${s.scope} from ${stored} to ${s.incarnation}; ` +
                'nothing of this mutation was written. The caller holds an older view than the store ' +
                '(another writer?) and must reload it.',
              { details: { scope: s.scope, storedIncarnation: stored, attemptedIncarnation: s.incarnation } },
            );
          }
        }
      }),
    );
  }

  /** See {@link EventStore.getEvent}: a primary-key read. */
  async getEvent(eventId: string): Promise<MaintenanceEvent | undefined> {
    if (typeof eventId !== 'string') throw new IntermissionError('INVALID_INPUT', 'an event id is text');
    return this.#run('read an event', async (db) => {
      const row = (await db.executeQuery(selectEventByIdQuery(db, eventId))).rows[0];
      return row === undefined ? undefined : decodeEvent(row);
    });
  }

  /** See {@link EventStore.queryEvents}. */
  async queryEvents(query: EventQuery = {}): Promise<MaintenanceEvent[]> {
    checkQuery(query);
    return this.#run('query events', async (db) => {
      const result = await db.executeQuery(selectEventsQuery(db, query));
      return result.rows.map(decodeEvent);
    });
  }

  // --- RolloutStore ---------------------------------------------------------------------------

  async createRollout(rollout: RolloutRecord, steps: readonly StepRecord[]): Promise<void> {
    this.#assertOpen();
    const row = encodeRollout(rollout);
    const stepRows = steps.map(encodeStep);
    await this.#run('create a rollout', (db) =>
      inTransaction(db, 'immediate', async (trx) => {
        const existing = await trx.executeQuery(selectRolloutHeadsQuery(trx, { id: rollout.id }));
        if (existing.rows.length > 0) {
          throw new IntermissionError(
            'CONFLICT',
            `a rollout with id ${rollout.id} exists already; give the update a new id`,
          );
        }
        // Under the same write lock as the insert: of two creations over one host, one sees the other.
        const busy = await trx.executeQuery(selectBusyHostsQuery(trx, rollout.id));
        const conflict = overlapConflict(
          rollout.id,
          new Set(steps.map((s) => s.host)),
          busy.rows.map((b) => ({
            host: b.host,
            rolloutId: b.rollout_id,
            rolloutStatus: b.rollout_status as RolloutStatus,
            stepStatus: b.step_status as StepStatus,
          })),
        );
        if (conflict) throw conflict;
        await trx.executeQuery(insertRolloutQuery(trx, row.head));
        await trx.executeQuery(insertPlanQuery(trx, row.plan));
        for (let i = 0; i < stepRows.length; i += MAX_ROWS_PER_INSERT) {
          await trx.executeQuery(upsertStepsQuery(trx, stepRows.slice(i, i + MAX_ROWS_PER_INSERT)));
        }
      }),
    );
    this.#plans.set(rollout.id, rollout.plan);
  }

  async getRollout(id: string): Promise<RolloutRecord | undefined> {
    const [rollout] = await this.#rollouts({ id });
    return rollout;
  }

  listRollouts(options: { readonly active?: boolean } = {}): Promise<RolloutRecord[]> {
    return this.#rollouts({ ...(options.active === undefined ? {} : { active: options.active }) });
  }

  async listSteps(rolloutId: string, options: { readonly wave?: number } = {}): Promise<StepRecord[]> {
    return this.#run('list host steps', async (db) =>
      (await db.executeQuery(selectStepsQuery(db, rolloutId, options.wave))).rows.map(decodeStep),
    );
  }

  async saveProgress(progress: {
    readonly rollout?: RolloutRecord;
    readonly steps?: readonly StepRecord[];
    readonly operations?: readonly VmOperationRecord[];
  }): Promise<void> {
    this.#assertOpen();
    const head = progress.rollout === undefined ? undefined : encodeRolloutHead(progress.rollout);
    const steps = (progress.steps ?? []).map(encodeStep);
    const operations = (progress.operations ?? []).map(encodeOperation);
    await this.#run('save rollout progress', (db) =>
      inTransaction(db, 'immediate', async (trx) => {
        if (head) {
          const updated = await trx.executeQuery(updateRolloutQuery(trx, head));
          if (updated.numAffectedRows === 0n) throw new IntermissionError('NOT_FOUND', `no rollout ${head.id}`);
        }
        for (let i = 0; i < steps.length; i += MAX_ROWS_PER_INSERT) {
          await trx.executeQuery(upsertStepsQuery(trx, steps.slice(i, i + MAX_ROWS_PER_INSERT)));
        }
        for (let i = 0; i < operations.length; i += MAX_ROWS_PER_INSERT) {
          await trx.executeQuery(upsertOperationsQuery(trx, operations.slice(i, i + MAX_ROWS_PER_INSERT)));
        }
      }),
    );
  }

  async listOperations(
    options: { readonly rolloutId?: string; readonly vm?: string; readonly limit?: number } = {},
  ): Promise<VmOperationRecord[]> {
    return this.#run('list VM operations', async (db) =>
      (await db.executeQuery(selectOperationsQuery(db, options))).rows.map(decodeOperation),
    );
  }

  async #rollouts(options: { id?: string; active?: boolean }): Promise<RolloutRecord[]> {
    return this.#run('read rollouts', async (db) => {
      const heads = (await db.executeQuery(selectRolloutHeadsQuery(db, options))).rows;
      const out: RolloutRecord[] = [];
      for (const head of heads) {
        let plan = this.#plans.get(head.id);
        if (!plan) {
          const row = (await db.executeQuery(selectPlanQuery(db, head.id))).rows[0];
          if (!row) continue;
          plan = decodePlan(row.plan);
          this.#plans.set(head.id, plan);
        }
        out.push(decodeRollout(head, plan));
      }
      return out;
    });
  }

  /**
   * The normalized dump of the schema (see `formatSqliteSchema`), as committed in
   * `src/store/sqlite/schema.sql`.
   */
  async dumpSchema(): Promise<string> {
    return this.#run('dump the schema', async (db) => {
      const objects = await sql<{ type: string; name: string; tbl_name: string; sql: string }>`
        select type, name, tbl_name, sql from sqlite_schema
        where sql is not null and name not like 'sqlite_%'`.execute(db);
      const applied = await db.selectFrom('intermission_migrations').select(['version', 'name']).execute();
      return formatSqliteSchema(
        objects.rows.map((o): SqliteSchemaObject => ({
          type: o.type,
          name: o.name,
          tableName: o.tbl_name,
          sql: o.sql,
        })),
        applied,
      );
    });
  }

  /** Waits for calls under way, then closes the database. Idempotent. */
  async close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#inFlight]);
      try {
        await this.#db.destroy();
      } catch (error) {
        throw toStoreError(error, 'close the database');
      }
    })();
    return this.#closing;
  }

  #assertOpen(): void {
    if (this.#closing !== undefined) {
      throw new IntermissionError('STORE_FAILURE', 'the SQLite store is closed', { retryable: false });
    }
  }

  /** Runs one call: refused once closed, tracked so that close() waits for it, errors wrapped. */
  async #run<T>(action: string, work: (db: Kysely<StoreDatabase>) => Promise<T>): Promise<T> {
    this.#assertOpen();
    const call = work(this.#db);
    this.#inFlight.add(call);
    try {
      return await call;
    } catch (error) {
      throw toStoreError(error, action);
    } finally {
      this.#inFlight.delete(call);
    }
  }
}

/**
 * Makes a store over a database the caller opened, which the store owns from then on: applies the
 * pragmas (see `sqlitePragmas`), runs the pending migrations, and closes the database again if any
 * of that fails. Throws STORE_FAILURE for a database it cannot use, including one with a newer schema.
 */
export async function createSqliteStore(options: CreateSqliteStoreOptions): Promise<SqliteEventStore> {
  let busyTimeoutMs: number;
  try {
    busyTimeoutMs = busyTimeoutOf(options);
  } catch (error) {
    options.database.close();
    throw error;
  }
  const db = new Kysely<StoreDatabase>({ dialect: new SqliteDialect({ database: options.database }) });
  try {
    for (const pragma of sqlitePragmas({ busyTimeoutMs, inMemory: options.inMemory ?? false })) {
      const set = await sql.raw(`PRAGMA ${pragma.name} = ${pragma.value}`).execute(db);
      const read = set.rows.length > 0 ? set : await sql.raw(`PRAGMA ${pragma.name}`).execute(db);
      const got = firstValue(read.rows[0]);
      if (got !== pragma.expect) {
        throw new IntermissionError(
          'STORE_FAILURE',
          `could not set PRAGMA ${pragma.name} = ${pragma.value}: the database reports ${JSON.stringify(got)}` +
            (pragma.name === 'journal_mode' ? ' (WAL needs a local file system)' : ''),
          { retryable: false, details: { pragma: pragma.name, expected: pragma.expect, got } },
        );
      }
    }
    const migration = await migrateSqlite(db, SQLITE_MIGRATIONS);
    return new SqliteEventStore(db, migration);
  } catch (error) {
    try {
      options.database.close();
    } catch {
      // The open already failed; that failure is the one to report.
    }
    throw toStoreError(error, 'open the database');
  }
}

/** The single value a PRAGMA reports (a number or a name), lowercased for comparison. */
function firstValue(row: unknown): string | undefined {
  if (typeof row !== 'object' || row === null) return undefined;
  const value: unknown = Object.values(row)[0];
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint'
    ? String(value).toLowerCase()
    : undefined;
}

/** A mutation names each event once; if not, the last row wins (PostgreSQL refuses duplicates in one upsert). */
function lastPerId(rows: readonly EventRow[]): EventRow[] {
  return [...new Map(rows.map((r) => [r.event_id, r])).values()];
}

function checkScope(s: ScopeState): void {
  if (
    typeof s.scope !== 'string' ||
    !SCOPE_RE.test(s.scope) ||
    !Number.isSafeInteger(s.incarnation) ||
    s.incarnation < 1
  ) {
    throw new IntermissionError(
      'STORE_FAILURE',
      `cannot store scope ${String(s.scope)} with incarnation ${s.incarnation}: a scope id is set:… or vm:…, ` +
        'an incarnation an integer of 1 or more',
      { retryable: false, details: { scope: s.scope, incarnation: s.incarnation } },
    );
  }
}

function checkQuery(query: EventQuery): void {
  if (query.limit !== undefined && (!Number.isSafeInteger(query.limit) || query.limit < 1)) {
    throw new IntermissionError('INVALID_INPUT', `limit must be an integer of 1 or more, got ${query.limit}`);
  }
  if (query.since !== undefined && !Number.isFinite(query.since)) {
    throw new IntermissionError('INVALID_INPUT', `since must be a time in milliseconds, got ${query.since}`);
  }
}
