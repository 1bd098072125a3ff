import { sql, type CompiledQuery, type Kysely, type RawBuilder } from 'kysely';
import type { LeasesTable, StoreDatabase } from './schema.js';

/**
 * The leader lease's SQL as values (see event-queries.ts for the conventions). `clock` is the
 * engine's expression for "now" in integer milliseconds (the database's clock, or an injected time:
 * see `SqlEngine.clockMs`), evaluated once per statement in a CTE.
 */

/** A lease row as read back. */
export interface LeaseRow {
  /** NULL when no lease of that name exists (the left join of {@link selectLeaseQuery}). */
  readonly name: string | null;
  readonly holder: LeasesTable['holder'];
  readonly epoch: LeasesTable['epoch'] | null;
  readonly expires_at: LeasesTable['expires_at'] | null;
  readonly now: number;
}

/**
 * Takes or renews the lease in one statement, atomic on every engine: an insert of the first row, or
 * an update of the existing one guarded by "the caller holds it, or nobody does, or it expired". On
 * PostgreSQL, `INSERT … ON CONFLICT DO UPDATE` locks the row and evaluates the guard on its latest
 * version, so of replicas racing for an expired lease exactly one wins; the others get no row back.
 * SQLite has one writer at a time. The epoch goes up by one when the holder changes (a released
 * lease has no holder, so taking it counts as a change) and stays for a renewal by its holder.
 */
export function acquireLeaseQuery(
  db: Kysely<StoreDatabase>,
  clock: RawBuilder<number>,
  options: { name: string; holder: string; ttlMs: number },
): CompiledQuery<LeaseRow> {
  // `WHERE true` keeps SQLite from reading ON CONFLICT as a join constraint of the SELECT.
  return sql<LeaseRow>`with clock as (select ${clock} as now)
insert into leases (name, holder, epoch, acquired_at, renewed_at, expires_at)
select ${options.name}, ${options.holder}, 1, clock.now, clock.now, clock.now + ${options.ttlMs} from clock where true
on conflict (name) do update set
  holder = excluded.holder,
  epoch = case when leases.holder = excluded.holder then leases.epoch else leases.epoch + 1 end,
  acquired_at = case when leases.holder = excluded.holder then leases.acquired_at else excluded.acquired_at end,
  renewed_at = excluded.renewed_at,
  expires_at = excluded.expires_at
where leases.holder = excluded.holder or leases.holder is null or leases.expires_at <= excluded.renewed_at
returning name, holder, epoch, expires_at, renewed_at as now`.compile(db);
}

/** The lease as stored, with the clock's "now". */
export function selectLeaseQuery(
  db: Kysely<StoreDatabase>,
  clock: RawBuilder<number>,
  name: string,
): CompiledQuery<LeaseRow> {
  return sql<LeaseRow>`with clock as (select ${clock} as now)
select name, holder, epoch, expires_at, clock.now as now from clock left join leases on leases.name = ${name}`.compile(
    db,
  );
}

/**
 * Releases the lease when `holder` holds it: no holder, and expired now, so that the next replica
 * takes it at once. The epoch stays; the next holder's is one more.
 */
export function releaseLeaseQuery(
  db: Kysely<StoreDatabase>,
  clock: RawBuilder<number>,
  options: { name: string; holder: string },
): CompiledQuery<{ name: string }> {
  return sql<{ name: string }>`with clock as (select ${clock} as now)
update leases set holder = null, expires_at = (select now from clock)
where name = ${options.name} and holder = ${options.holder}
returning name`.compile(db);
}

/**
 * The epoch of the lease, read inside a write transaction to fence it (see `SqlStore.fenceWrites`).
 * With `lock` (PostgreSQL), `FOR SHARE` holds the row until the write commits: a replica taking the
 * lease over waits for the write, so the old leader's last write lands before the new leader reads.
 */
export function selectLeaseEpochQuery(
  db: Kysely<StoreDatabase>,
  name: string,
  lock: boolean,
): CompiledQuery<{ epoch: number; holder: string | null }> {
  const q = db.selectFrom('leases').select(['epoch', 'holder']).where('name', '=', name);
  return (lock ? q.forShare() : q).compile();
}
