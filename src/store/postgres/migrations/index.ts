import { migration000001 } from './000001-events-and-scopes.js';
import { migration000002 } from './000002-rollouts.js';
import { migration000003 } from './000003-rollout-plans.js';
import { migration000004 } from './000004-retire-unreadable-event-times.js';
import { migration000005 } from './000005-retire-unrenderable-rollouts.js';
import { migration000006 } from './000006-leases.js';
import type { PostgresMigration } from './migration.js';

export type { PostgresMigration } from './migration.js';

/** Every migration of the PostgreSQL store, in version order. Append only; numbered as SQLite's. */
export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = Object.freeze([
  migration000001,
  migration000002,
  migration000003,
  migration000004,
  migration000005,
  migration000006,
]);

/** The schema version this build writes: the version of its last migration. */
export const POSTGRES_SCHEMA_VERSION: number = POSTGRES_MIGRATIONS.at(-1)?.version ?? 0;
