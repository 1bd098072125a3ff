/** The host agent: runs host steps through a hypervisor driver and holds the resume leases. */
export * from './protocol.js';
export * from './journal.js';
export * from './epoch-fence.js';
export * from './host-agent.js';
export type { AdoptionClockInfo, ClockFields } from './adoption.js';
export * from './app.js';
export * from './client.js';
