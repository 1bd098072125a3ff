/**
 * What every SQL store shares: the logical schema, the row codec, the statements, the migrator and
 * the store itself (`SqlStore`). Engine folders (`../sqlite/`, `../postgres/`) add their connection,
 * migrations, transactions and error mapping.
 */
export * from './schema.js';
export * from './event-rows.js';
export * from './event-queries.js';
export * from './rollout-rows.js';
export * from './rollout-queries.js';
export * from './lease-queries.js';
export * from './migration.js';
export * from './migrator.js';
export * from './sql-store.js';
