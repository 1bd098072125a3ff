/**
 * Durable state: the {@link EventStore} port and its implementations, one folder each (`sqlite/`,
 * `postgres/`), with the SQL they share in `sql/`.
 */
export * from './store.js';
export * from './rollout-store.js';
export * from './lease-store.js';
export * from './sqlite/index.js';
export * from './postgres/index.js';
