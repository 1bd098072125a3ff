import type { Kysely, RawBuilder } from 'kysely';
import {
  IntermissionError,
  isEmptyMutation,
  type MaintenanceEvent,
  type Mutation,
  type ScopeState,
} from '../../domain/index.js';
import type { Plan } from '../../domain/rollout/index.js';
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
import { decodeEvent, decodeScope, encodeReadableEvent, type EventRow } from './event-rows.js';
import {
  MAX_ROWS_PER_INSERT,
  raiseIncarnationQuery,
  selectEventByIdQuery,
  selectEventsQuery,
  selectLiveEventsQuery,
  selectScopeQuery,
  selectScopesQuery,
  upsertEventsQuery,
} from './event-queries.js';
import type { MigrationResult } from './migrator.js';
import { CONTROLLER_LEASE, type AcquireLeaseOptions, type LeaseState, type LeaseStore } from '../lease-store.js';
import {
  acquireLeaseQuery,
  releaseLeaseQuery,
  selectLeaseEpochQuery,
  selectLeaseQuery,
  type LeaseRow,
} from './lease-queries.js';
import {
  insertPlanQuery,
  insertRolloutQuery,
  selectBusyHostsQuery,
  selectOperationsQuery,
  selectPlanQuery,
  selectRolloutHeadsQuery,
  selectStepsQuery,
  updateRolloutQuery,
  upsertOperationsQuery,
  upsertStepsQuery,
} from './rollout-queries.js';
import {
  decodeOperation,
  decodePlan,
  decodeRollout,
  decodeStep,
  encodeOperation,
  encodeRollout,
  encodeRolloutHead,
  encodeStep,
} from './rollout-rows.js';
import type { StoreDatabase } from './schema.js';

/**
 * What a store needs of its engine: how to run a transaction, how to read its errors. The rest
 * (statements, codec, checks, the rules of the ports) is the same on every engine and lives in
 * {@link SqlStore}.
 */
export interface SqlEngine {
  /** `SQLite`, `PostgreSQL`: named in messages. */
  readonly name: string;
  readonly capabilities: StoreCapabilities;
  /**
   * Runs `work` in one transaction that reads one consistent snapshot and writes nothing, and
   * commits it (or rolls it back and rethrows).
   */
  readTransaction<T>(db: Kysely<StoreDatabase>, work: (trx: Kysely<StoreDatabase>) => Promise<T>): Promise<T>;
  /**
   * Runs `work` in one write transaction that is serializable against every other writer of the
   * database, in this process and in others: what it read still holds when it commits. An engine
   * may run `work` more than once (PostgreSQL retries a serialization failure), so `work` must do
   * nothing but database calls.
   */
  writeTransaction<T>(db: Kysely<StoreDatabase>, work: (trx: Kysely<StoreDatabase>) => Promise<T>): Promise<T>;
  /**
   * The one place that turns what the driver throws into STORE_FAILURE, with retryability from the
   * engine's error code; our own errors pass through unchanged.
   */
  toStoreError(error: unknown, action: string): IntermissionError;
  /**
   * "Now" in integer milliseconds since the epoch as an SQL expression: the database's own clock,
   * or `now` when given (tests). The lease measures every expiry against it (see `lease-store.ts`).
   */
  clockMs(now?: number): RawBuilder<number>;
}

const SCOPE_RE = /^(?:set|vm):./;

/**
 * The event and rollout store over any SQL engine, through Kysely: the engine-neutral half of
 * `SqliteEventStore` and `PostgresEventStore`, which add how they are opened and what only their
 * engine can tell (a schema dump).
 *
 * Writes of one store apply in the order they were called, one at a time (what the event service
 * relies on: its mutations build on each other); reads run beside them. Each write is one
 * transaction that the engine makes serializable against the writers of other processes, so the
 * rules below hold however many stores share a database:
 * - a commit that would lower a stored DocumentIncarnation is refused with CONFLICT (not retryable)
 *   and writes nothing: the caller's view is older than the store's (a second writer, or a bug), and
 *   retrying the same mutation cannot help; the caller reloads instead;
 * - of two creations of rollouts over one host, or with one id, exactly one is stored; the other
 *   gets CONFLICT.
 * Driver failures surface as STORE_FAILURE, with `retryable` from the engine's error code.
 */
export class SqlStore implements EventStore, RolloutStore, LeaseStore {
  readonly capabilities: StoreCapabilities;
  /** What the migrations did on open; `migration.to` is the schema version. */
  readonly migration: MigrationResult;
  protected readonly db: Kysely<StoreDatabase>;
  readonly #engine: SqlEngine;
  readonly #inFlight = new Set<Promise<unknown>>();
  /** Decoded plans by rollout id: a plan never changes once stored, and decoding a big one is dear. */
  readonly #plans = new Map<string, Plan>();
  /** The last write of this store: the next one starts after it (see the class comment). */
  #writes: Promise<unknown> = Promise.resolve();
  #closing: Promise<void> | undefined;
  #fence: WriteFence | undefined;

  constructor(db: Kysely<StoreDatabase>, engine: SqlEngine, migration: MigrationResult) {
    this.db = db;
    this.#engine = engine;
    this.capabilities = engine.capabilities;
    this.migration = migration;
  }

  /** The schema version of the open database. */
  get schemaVersion(): number {
    return this.migration.to;
  }

  /** See {@link EventStore.loadEvents}: one read transaction, so events and scopes match. */
  async loadEvents(): Promise<{ events: MaintenanceEvent[]; scopes: ScopeState[] }> {
    return this.run('load events', (db) =>
      this.#engine.readTransaction(db, async (trx) => {
        const events = await trx.executeQuery(selectLiveEventsQuery(trx));
        const scopes = await trx.executeQuery(selectScopesQuery(trx));
        return { events: events.rows.map(decodeEvent), scopes: scopes.rows.map(decodeScope) };
      }),
    );
  }

  /**
   * See {@link EventStore.commit}: one write transaction that upserts the event rows, then raises
   * each scope with a guarded upsert; a guard that matches no row rolls everything back and throws
   * CONFLICT.
   */
  async commit(mutation: Mutation): Promise<void> {
    this.#assertOpen();
    if (isEmptyMutation(mutation)) return;
    // Encode and check everything before the transaction: what cannot be stored, or would not read
    // back, fails without I/O.
    const rows = lastPerId(mutation.events.map(encodeReadableEvent));
    for (const s of mutation.scopes) checkScope(s);
    await this.#write('commit a mutation', async (trx) => {
      for (let i = 0; i < rows.length; i += MAX_ROWS_PER_INSERT) {
        await trx.executeQuery(upsertEventsQuery(trx, rows.slice(i, i + MAX_ROWS_PER_INSERT)));
      }
      for (const s of mutation.scopes) {
        const result = await trx.executeQuery(raiseIncarnationQuery(trx, s));
        if (result.numAffectedRows === undefined || result.numAffectedRows === 0n) {
          const row = (await trx.executeQuery(selectScopeQuery(trx, s.scope))).rows[0];
          const stored = row === undefined ? undefined : decodeScope(row).incarnation;
          throw new IntermissionError(
            'CONFLICT',
            `refused to lower the DocumentIncarnation of ${s.scope} from ${stored} to ${s.incarnation}; ` +
              'nothing of this mutation was written. The caller holds an older view than the store ' +
              '(another writer?) and must reload it.',
            { details: { scope: s.scope, storedIncarnation: stored, attemptedIncarnation: s.incarnation } },
          );
        }
      }
    });
  }

  /** See {@link EventStore.getEvent}: a primary-key read. */
  async getEvent(eventId: string): Promise<MaintenanceEvent | undefined> {
    if (typeof eventId !== 'string') throw new IntermissionError('INVALID_INPUT', 'an event id is text');
    return this.run('read an event', async (db) => {
      const row = (await db.executeQuery(selectEventByIdQuery(db, eventId))).rows[0];
      return row === undefined ? undefined : decodeEvent(row);
    });
  }

  /** See {@link EventStore.queryEvents}. */
  async queryEvents(query: EventQuery = {}): Promise<MaintenanceEvent[]> {
    checkQuery(query);
    return this.run('query events', async (db) => {
      const result = await db.executeQuery(selectEventsQuery(db, query));
      return result.rows.map(decodeEvent);
    });
  }

  // --- RolloutStore ---------------------------------------------------------------------------

  /** See {@link RolloutStore.createRollout}: the id check, the overlap check and the insert are one write. */
  async createRollout(rollout: RolloutRecord, steps: readonly StepRecord[]): Promise<void> {
    this.#assertOpen();
    const row = encodeRollout(rollout);
    const stepRows = steps.map(encodeStep);
    await this.#write('create a rollout', async (trx) => {
      const existing = await trx.executeQuery(selectRolloutHeadsQuery(trx, { id: rollout.id }));
      if (existing.rows.length > 0) {
        throw new IntermissionError(
          'CONFLICT',
          `a rollout with id ${rollout.id} exists already; give the update a new id`,
        );
      }
      // In the same serializable write as the insert: of two creations over one host, one sees the other.
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
    });
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
    return this.run('list host steps', async (db) =>
      (await db.executeQuery(selectStepsQuery(db, rolloutId, options.wave))).rows.map(decodeStep),
    );
  }

  /** See {@link RolloutStore.saveProgress}: one write; NOT_FOUND for a rollout that does not exist. */
  async saveProgress(progress: {
    readonly rollout?: RolloutRecord;
    readonly steps?: readonly StepRecord[];
    readonly operations?: readonly VmOperationRecord[];
  }): Promise<void> {
    this.#assertOpen();
    const head = progress.rollout === undefined ? undefined : encodeRolloutHead(progress.rollout);
    const steps = (progress.steps ?? []).map(encodeStep);
    const operations = (progress.operations ?? []).map(encodeOperation);
    await this.#write('save rollout progress', async (trx) => {
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
    });
  }

  async listOperations(
    options: { readonly rolloutId?: string; readonly vm?: string; readonly limit?: number } = {},
  ): Promise<VmOperationRecord[]> {
    return this.run('list VM operations', async (db) =>
      (await db.executeQuery(selectOperationsQuery(db, options))).rows.map(decodeOperation),
    );
  }

  async #rollouts(options: { id?: string; active?: boolean }): Promise<RolloutRecord[]> {
    return this.run('read rollouts', async (db) => {
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

  // --- LeaseStore -----------------------------------------------------------------------------

  /**
   * See {@link LeaseStore.acquireOrRenew}: one statement outside the write queue, so that a renewal
   * never waits behind a long rollout write of this store (its lease could run out meanwhile).
   */
  async acquireOrRenew(options: AcquireLeaseOptions): Promise<LeaseState> {
    const name = options.name ?? CONTROLLER_LEASE;
    checkLeaseOptions(options);
    return this.run('take the leader lease', async (db) => {
      const clock = this.#engine.clockMs(options.now);
      const won = (
        await db.executeQuery(acquireLeaseQuery(db, clock, { name, holder: options.holder, ttlMs: options.ttlMs }))
      ).rows[0];
      if (won) return leaseState(won, options.holder);
      const row = (await db.executeQuery(selectLeaseQuery(db, clock, name))).rows[0];
      if (!row) throw new IntermissionError('INTERNAL', 'the lease query returned no row');
      return leaseState(row, options.holder);
    });
  }

  /** See {@link LeaseStore.release}. */
  async release(options: { readonly holder: string; readonly name?: string; readonly now?: number }): Promise<boolean> {
    const name = options.name ?? CONTROLLER_LEASE;
    return this.run('release the leader lease', async (db) => {
      const clock = this.#engine.clockMs(options.now);
      const result = await db.executeQuery(releaseLeaseQuery(db, clock, { name, holder: options.holder }));
      return result.rows.length > 0;
    });
  }

  /** See {@link LeaseStore.readLease}. */
  async readLease(options: { readonly name?: string; readonly now?: number } = {}): Promise<LeaseState | undefined> {
    const name = options.name ?? CONTROLLER_LEASE;
    return this.run('read the leader lease', async (db) => {
      const row = (await db.executeQuery(selectLeaseQuery(db, this.#engine.clockMs(options.now), name))).rows[0];
      return row === undefined || row.name === null ? undefined : leaseState(row, undefined);
    });
  }

  /**
   * Fences every later write of this store with the leader lease: each write transaction first reads
   * the lease (PostgreSQL: `FOR SHARE`) and goes on only when its epoch is `fence.epoch()`; else it
   * fails with STALE_EPOCH and writes nothing. A leader that stalled mid-pass and wakes up after
   * another took over then cannot overwrite what the new leader wrote, and, on PostgreSQL, a
   * takeover waits for a write under way, so the new leader reads after it.
   */
  fenceWrites(fence: WriteFence | undefined): void {
    this.#fence = fence;
  }

  /** Waits for calls under way, then closes the database (or the pool). Idempotent. */
  async close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#inFlight]);
      try {
        await this.db.destroy();
      } catch (error) {
        throw this.#engine.toStoreError(error, 'close the database');
      }
    })();
    return this.#closing;
  }

  #assertOpen(): void {
    if (this.#closing !== undefined) {
      throw new IntermissionError('STORE_FAILURE', `the ${this.#engine.name} store is closed`, { retryable: false });
    }
  }

  /**
   * Runs one write transaction after the writes called before it (see the class comment); a
   * failed write does not hold up the next one.
   */
  #write(action: string, work: (trx: Kysely<StoreDatabase>) => Promise<void>): Promise<void> {
    const previous = this.#writes;
    const fence = this.#fence;
    const fenced = fence
      ? async (trx: Kysely<StoreDatabase>): Promise<void> => {
          await this.#checkFence(trx, fence, action);
          await work(trx);
        }
      : work;
    const next = this.run(action, async (db) => {
      await previous.catch(() => undefined);
      return this.#engine.writeTransaction(db, fenced);
    });
    this.#writes = next.catch(() => undefined);
    return next;
  }

  async #checkFence(trx: Kysely<StoreDatabase>, fence: WriteFence, action: string): Promise<void> {
    const epoch = fence.epoch();
    const name = fence.name ?? CONTROLLER_LEASE;
    const row =
      epoch === undefined
        ? undefined
        : (await trx.executeQuery(selectLeaseEpochQuery(trx, name, this.capabilities.rowLocks === true))).rows[0];
    if (epoch === undefined || row === undefined || Number(row.epoch) !== epoch) {
      throw new IntermissionError(
        'STALE_EPOCH',
        `refused to ${action}: ` +
          (epoch === undefined
            ? 'this controller does not hold the leader lease'
            : `the lease is at epoch ${row === undefined ? 'none' : Number(row.epoch)}, this controller led at ${epoch}`),
        { details: { epoch, stored: row === undefined ? undefined : Number(row.epoch) } },
      );
    }
  }

  /** Runs one call: refused once closed, tracked so that close() waits for it, errors wrapped. */
  protected async run<T>(action: string, work: (db: Kysely<StoreDatabase>) => Promise<T>): Promise<T> {
    this.#assertOpen();
    const call = work(this.db);
    this.#inFlight.add(call);
    try {
      return await call;
    } catch (error) {
      throw this.#engine.toStoreError(error, action);
    } finally {
      this.#inFlight.delete(call);
    }
  }
}

/** What {@link SqlStore.fenceWrites} checks each write against. */
export interface WriteFence {
  /** Which lease; default `controller`. */
  readonly name?: string;
  /** The epoch this process leads with now, or undefined when it does not lead. */
  readonly epoch: () => number | undefined;
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

function checkLeaseOptions(options: AcquireLeaseOptions): void {
  if (typeof options.holder !== 'string' || options.holder === '' || options.holder.length > 300) {
    throw new IntermissionError('INVALID_INPUT', 'a lease holder is a name of 1 to 300 characters');
  }
  if (!Number.isSafeInteger(options.ttlMs) || options.ttlMs < 1) {
    throw new IntermissionError('INVALID_INPUT', `a lease ttl is an integer of 1 ms or more, got ${options.ttlMs}`);
  }
  if (options.now !== undefined && !Number.isSafeInteger(options.now)) {
    throw new IntermissionError('INVALID_INPUT', `an injected lease time is integer milliseconds, got ${options.now}`);
  }
}

/** A lease row (or the empty row of a lease never taken) as the caller sees it. */
function leaseState(row: LeaseRow, caller: string | undefined): LeaseState {
  const now = Number(row.now);
  const holder = row.holder ?? undefined;
  const expiresAt = row.expires_at === null ? now : Number(row.expires_at);
  return {
    leader: caller !== undefined && holder === caller && expiresAt > now,
    epoch: row.epoch === null ? 0 : Number(row.epoch),
    holder,
    expiresAt,
    now,
  };
}

function checkQuery(query: EventQuery): void {
  if (query.limit !== undefined && (!Number.isSafeInteger(query.limit) || query.limit < 1)) {
    throw new IntermissionError('INVALID_INPUT', `limit must be an integer of 1 or more, got ${query.limit}`);
  }
  if (query.since !== undefined && !Number.isFinite(query.since)) {
    throw new IntermissionError('INVALID_INPUT', `since must be a time in milliseconds, got ${query.since}`);
  }
}
