/**
 * One numbered, forward-only schema change of an SQL store. Migrations are data: reviewable SQL, run
 * in version order, each in its own transaction, and recorded in `intermission_migrations`. A
 * released migration is never edited; a change is a new migration. Every engine numbers its
 * migrations alike: version N means the same change on SQLite and on PostgreSQL, each in its own SQL.
 */
export interface SqlMigration {
  /** 1, 2, 3…: consecutive, and the number in the file name. */
  readonly version: number;
  /** Short kebab-case name, the rest of the file name; checked against the database on open. */
  readonly name: string;
  /**
   * One SQL statement each (drivers compile one at a time), run in order. Empty only for a
   * migration that has nothing to do on its engine, which then says why in {@link noop}.
   */
  readonly statements: readonly string[];
  /**
   * Why this engine has nothing to do at this version (e.g. a repair of rows that only an older
   * SQLite build could have written). The version is still recorded, so that the numbers of every
   * engine keep the same meaning.
   */
  readonly noop?: string;
  /**
   * For a migration that repairs data: a SELECT run in the same transaction before the statements,
   * whose rows (what is about to be repaired, as it was) are handed back to the caller in
   * `MigrationResult.reports`, so that the repair is reported, not silent.
   */
  readonly report?: {
    readonly sql: string;
    /** One line for operators: what the rows are. */
    readonly summary: string;
  };
}

/** `000001-events-and-scopes`: a migration as its file is named. */
export function migrationLabel(m: Pick<SqlMigration, 'version' | 'name'>): string {
  return `${String(m.version).padStart(6, '0')}-${m.name}`;
}
