/**
 * One numbered, forward-only schema change of the SQLite store. Migrations are data: reviewable SQL,
 * run in version order, each in its own transaction, and recorded in `intermission_migrations`. A
 * released migration is never edited; a change is a new migration.
 */
export interface SqliteMigration {
  /** 1, 2, 3…: consecutive, and the number in the file name. */
  readonly version: number;
  /** Short kebab-case name, the rest of the file name; checked against the database on open. */
  readonly name: string;
  /** One SQL statement each (the driver compiles one at a time), run in order. */
  readonly statements: readonly string[];
  /**
   * For a migration that repairs data: a SELECT run in the same transaction before the statements,
   * whose rows (what is about to be repaired, as it was) are handed back to the caller in
   * `SqliteMigrationResult.reports`, so that the repair is reported, not silent.
   */
  readonly report?: {
    readonly sql: string;
    /** One line for operators: what the rows are. */
    readonly summary: string;
  };
}
