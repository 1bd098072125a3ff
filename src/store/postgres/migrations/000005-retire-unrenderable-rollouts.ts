import type { PostgresMigration } from './migration.js';

/**
 * Nothing to do on PostgreSQL. SQLite's migration 000005 halts running rollouts whose plan or head
 * holds a time no client can render (issue 12: `"expectedApplyMs": 1e300`), which SQLite builds
 * from before that fix could store. Every build with the PostgreSQL store refuses such a plan and
 * such a head before any SQL runs (`encodeRollout`, `encodeRolloutHead`, and the planner's own
 * bounds), so no PostgreSQL database ever held one. The version is recorded all the same, so that
 * 000005 means the same step on every engine.
 */
export const migration000005: PostgresMigration = {
  version: 5,
  name: 'retire-unrenderable-rollouts',
  statements: [],
  noop: 'PostgreSQL stores never held rollouts with unrenderable times: every build with this store refuses them',
};
