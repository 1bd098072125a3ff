/** The pure domain: vocabulary, fleet, event lifecycle, time. No I/O lives here. */
export * from './vocabulary.js';
export * from './errors.js';
export * from './time.js';
export * from './fleet.js';
export * from './events/notice.js';
export * from './events/lifecycle.js';
export * from './rollout/index.js';
