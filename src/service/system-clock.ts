import type { Clock } from '../domain/index.js';

/** The wall clock: the only place outside tests where the current time comes from. */
export const systemClock: Clock = Object.freeze({ now: () => Date.now() });
