import {
  EventBook,
  FleetIndex,
  IntermissionError,
  ManualClock,
  coerceError,
  derivedGuid,
  eventTiming,
  parseFleet,
  type ApproveResult,
  type Clock,
  type EventTiming,
  type Fleet,
  type FleetFile,
  type MaintenanceEvent,
  type ScheduleInput,
  type ScopeDocument,
  type Vm,
} from '../domain/index.js';
import type { MetadataBackend } from '../imds/index.js';

/** Options of {@link MemoryMetadataBackend}. */
export interface MemoryMetadataBackendOptions {
  /** The fleet, parsed or indexed. */
  readonly fleet: Fleet | FleetIndex;
  /** The clock of events, polls and rate limits. Default: a {@link ManualClock} at 2026-01-01. */
  readonly clock?: Clock;
  /** Event timing (notice, linger). Default: Azure's, unscaled. */
  readonly timing?: EventTiming;
  /** Makes event ids. Default: a deterministic sequence of uppercase GUIDs. */
  readonly newId?: () => string;
}

/**
 * A {@link MetadataBackend} held in memory over the real domain: an {@link EventBook} for the
 * lifecycle, a {@link FleetIndex} for scopes and instance facts, and an injected clock. Nothing is
 * persisted: every mutation is applied at once. It also plays the controller's part for tests and
 * simulations (`schedule`, `tick`, `end`, `cancel`).
 */
export class MemoryMetadataBackend implements MetadataBackend {
  readonly fleet: FleetIndex;
  readonly book: EventBook;
  readonly clock: Clock;
  readonly #polls = new Map<string, number>();

  constructor(options: MemoryMetadataBackendOptions) {
    this.fleet = options.fleet instanceof FleetIndex ? options.fleet : new FleetIndex(options.fleet);
    this.clock = options.clock ?? new ManualClock();
    let next = 0;
    this.book = new EventBook({
      timing: options.timing ?? eventTiming(),
      resolver: this.fleet,
      newId: options.newId ?? (() => derivedGuid(`event:${next++}`).toUpperCase()),
    });
  }

  /** The VM's facts from the fleet. */
  vm(vmName: string): Vm | undefined {
    return this.fleet.vm(vmName);
  }

  /**
   * The document of the VM's scope, straight from the book.
   *
   * @throws IntermissionError `NOT_FOUND` for a VM outside the fleet
   */
  document(vmName: string): ScopeDocument {
    const scope = this.fleet.scopeOfVm(vmName);
    if (scope === undefined)
      throw new IntermissionError('NOT_FOUND', `no VM named ${JSON.stringify(vmName)} in the fleet`);
    return this.book.document(scope);
  }

  /** Approves through the book and applies the result at once (nothing to persist). */
  approve(vmName: string, eventIds: readonly string[]): Promise<ApproveResult> {
    try {
      return Promise.resolve(this.book.commit(this.book.approve(vmName, eventIds, this.clock.now())));
    } catch (error) {
      return Promise.reject(coerceError(error));
    }
  }

  /** Remembers the poll; read it back with {@link MemoryMetadataBackend.lastPoll}. */
  recordPoll(vmName: string, at: number): void {
    this.#polls.set(vmName, at);
  }

  /** The injected clock's time. */
  now(): number {
    return this.clock.now();
  }

  /** When the VM last read its scheduled events, or undefined if it never did. */
  lastPoll(vmName: string): number | undefined {
    return this.#polls.get(vmName);
  }

  /** Schedules an event now (minimum notice unless given). */
  schedule(input: ScheduleInput): MaintenanceEvent {
    return this.book.commit(this.book.schedule(input, this.clock.now())).event;
  }

  /** An unplanned event: absent → Started at once. */
  startUnplanned(input: Omit<ScheduleInput, 'notBefore' | 'noticeMs'>): MaintenanceEvent {
    return this.book.commit(this.book.startUnplanned(input, this.clock.now())).event;
  }

  /** Scheduled → Started for events that are due (approved or past NotBefore). */
  start(eventIds: readonly string[]): MaintenanceEvent[] {
    return this.book.commit(this.book.start(eventIds, this.clock.now())).events;
  }

  /** Started → Ended: the impact is over; the events linger as Started. */
  end(eventIds: readonly string[]): MaintenanceEvent[] {
    return this.book.commit(this.book.end(eventIds, this.clock.now())).events;
  }

  /** Scheduled → removed. */
  cancel(eventIds: readonly string[]): MaintenanceEvent[] {
    return this.book.commit(this.book.cancel(eventIds, this.clock.now())).events;
  }

  /**
   * One controller tick: starts every due event and removes every ended event whose linger ran out.
   */
  tick(): { started: MaintenanceEvent[]; removed: MaintenanceEvent[] } {
    const now = this.clock.now();
    const due = this.book.due(now).map((e) => e.eventId);
    const started = due.length === 0 ? [] : this.book.commit(this.book.start(due, now)).events;
    const removed = this.book.commit(this.book.sweep(now)).events;
    return { started, removed };
  }
}

/** Shape of {@link buildTestFleet}'s fleet. */
export interface TestFleetOptions {
  /** Availability sets, named `as<i>`. Default 2. */
  readonly availabilitySets?: number;
  /** VMs per set, named `as<i>_<n>` (scale-set style, which seoperator2 requires). Default 3. */
  readonly vmsPerSet?: number;
  /** Standalone VMs, named `solo<i>_0`. Default 1. */
  readonly standaloneVms?: number;
  /** Hosts, named `host<i>`; VMs are dealt round-robin. Default 3. */
  readonly hosts?: number;
  /** Instance facts for every VM. */
  readonly defaults?: FleetFile['defaults'];
}

/** A fleet for tests and benchmarks, through the real parser (so defaults are derived as usual). */
export function buildTestFleet(options: TestFleetOptions = {}): Fleet {
  const sets = options.availabilitySets ?? 2;
  const perSet = options.vmsPerSet ?? 3;
  const solos = options.standaloneVms ?? 1;
  const hostCount = Math.max(1, options.hosts ?? 3);
  const hosts = Array.from({ length: hostCount }, (_, i) => ({ name: `host${i}` }));
  const vms: FleetFile['vms'] = [];
  for (let s = 0; s < sets; s++) {
    for (let n = 0; n < perSet; n++) {
      vms.push({ name: `as${s}_${n}`, host: `host${vms.length % hostCount}`, availabilitySet: `as${s}` });
    }
  }
  for (let i = 0; i < solos; i++) vms.push({ name: `solo${i}_0`, host: `host${vms.length % hostCount}` });
  return parseFleet({
    ...(options.defaults === undefined ? {} : { defaults: options.defaults }),
    hosts,
    availabilitySets: Array.from({ length: sets }, (_, s) => ({ name: `as${s}` })),
    vms,
  });
}
