import type { PostgresMigration } from './migration.js';

/**
 * Nothing to do on PostgreSQL. SQLite's migration 000004 retires events whose times no client can
 * render (issue 12: a NotBefore in the year 275760), which SQLite builds from before that fix could
 * store. The PostgreSQL store came later, and every build that has it refuses such an event before
 * any SQL runs (`encodeReadableEvent`), so no PostgreSQL database ever held one. The version is
 * recorded all the same, so that 000004 means the same step on every engine.
 */
export const migration000004: PostgresMigration = {
  version: 4,
  name: 'retire-unreadable-event-times',
  statements: [],
  noop: 'PostgreSQL stores never held events with unreadable times: every build with this store refuses them',
};
