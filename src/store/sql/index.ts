/**
 * What every SQL store shares: the logical schema, the row codec and the statements. Engine folders
 * (`../sqlite/`, later `../postgres/`) add their connection, migrations and transactions.
 */
export * from './schema.js';
export * from './event-rows.js';
export * from './event-queries.js';
export * from './rollout-rows.js';
export * from './rollout-queries.js';
