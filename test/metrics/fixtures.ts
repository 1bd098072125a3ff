import { FleetIndex, ManualClock, MINUTE, eventTiming, parseFleet } from '../../src/domain/index.js';
import { EventService } from '../../src/service/event-service.js';
import { openSqliteStore, type SqliteEventStore } from '../../src/store/index.js';

/** Two hosts: the set `web` (one VM per host, two update domains) and the standalone `solo`. */
export function smallFleet(): FleetIndex {
  return new FleetIndex(
    parseFleet({
      hosts: [{ name: 'h1' }, { name: 'h2' }],
      availabilitySets: [{ name: 'web', updateDomains: 2 }],
      vms: [
        { name: 'web_0', host: 'h1', availabilitySet: 'web', updateDomain: 0 },
        { name: 'web_1', host: 'h2', availabilitySet: 'web', updateDomain: 1 },
        { name: 'solo', host: 'h1' },
      ],
    }),
  );
}

/** Linger of ended events in these tests. */
export const LINGER_MS = 2 * MINUTE;

export interface ServiceWorld {
  readonly clock: ManualClock;
  readonly fleet: FleetIndex;
  readonly store: SqliteEventStore;
  readonly service: EventService;
  close(): Promise<void>;
}

/** A real event service over an in-memory SQLite store, on a manual clock. */
export async function openServiceWorld(): Promise<ServiceWorld> {
  const clock = new ManualClock();
  const fleet = smallFleet();
  const store = await openSqliteStore({ path: ':memory:' });
  const service = await EventService.open({ fleet, store, clock, timing: eventTiming({ lingerMs: LINGER_MS }) });
  return {
    clock,
    fleet,
    store,
    service,
    close: async () => {
      await service.stop();
      await store.close();
    },
  };
}
