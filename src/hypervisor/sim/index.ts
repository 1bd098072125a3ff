/**
 * The simulated hypervisor: hosts whose VMs pause, resume, move to a new VMM in place and restart
 * with realistic, seeded timings, guest clocks that stop while paused, and faults declared as data.
 * It backs the embedded default and the large-scale tests, in real or virtual time.
 */
export * from './sim-config.js';
export * from './sim-types.js';
export {
  realTime,
  VirtualTime,
  type RealTimeOptions,
  type RunOptions,
  type SimTime,
  type SleepOptions,
  type VirtualTimeOptions,
} from './sim-time.js';
export { SimDriver } from './sim-driver.js';
export { SimHost } from './sim-host.js';
export { createSimFleet, type CreateSimFleetOptions } from './sim-fleet.js';
export { Prng } from './internal/prng.js';
