/**
 * Hypervisor drivers: the port a host agent uses ({@link HypervisorDriver}), its errors, the clock
 * resynchronisation built on it, and the implementations (`sim/` and `qemu/`).
 */
export * from './driver.js';
export * from './errors.js';
export { resyncGuestClock, type ResyncGuestClockOptions } from './clock-sync.js';
export * from './sim/index.js';
export * from './qemu/index.js';
