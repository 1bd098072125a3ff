import type { EventType, MaintenanceEvent, VisibleEventStatus } from '../../domain/index.js';

/** What a live event counts as: its type and the status tenants see. */
export interface LiveEventKey {
  readonly type: EventType;
  readonly status: VisibleEventStatus;
}

/**
 * The live scheduled events by id, kept from the event service's transitions so that the gauge of
 * live events is exact: it is recounted from this map at every scrape instead of being moved up and
 * down, so a missed or repeated announcement cannot make it drift below zero or grow without end.
 * It holds only live events (removed ones are dropped), so its size is bounded by the event book.
 */
export class LiveEvents {
  readonly #events = new Map<string, LiveEventKey>();

  /** Forgets everything and takes the given live events (the service's list at subscription). */
  seed(events: Iterable<MaintenanceEvent>): void {
    this.#events.clear();
    for (const event of events) this.#set(event);
  }

  /**
   * An event appeared. Its announcement may come after a later transition of the same event was
   * announced (the service emits after its queue), so what is already known is not overwritten.
   */
  scheduled(event: MaintenanceEvent): void {
    if (!this.#events.has(event.eventId)) this.#set(event);
  }

  /** An event changed phase: started, ended (still listed as Started) or removed. */
  changed(event: MaintenanceEvent): void {
    this.#set(event);
  }

  /** How many live events there are of each type and visible status (absent keys: none). */
  counts(): Map<string, { readonly key: LiveEventKey; readonly count: number }> {
    const counts = new Map<string, { key: LiveEventKey; count: number }>();
    for (const key of this.#events.values()) {
      const id = `${key.type}\u0000${key.status}`;
      const entry = counts.get(id);
      if (entry) entry.count++;
      else counts.set(id, { key, count: 1 });
    }
    return counts;
  }

  #set(event: MaintenanceEvent): void {
    if (event.phase === 'Removed') {
      this.#events.delete(event.eventId);
      return;
    }
    // Ended events stay listed as Started for their linger: tenants still see them.
    const status: VisibleEventStatus = event.phase === 'Scheduled' ? 'Scheduled' : 'Started';
    this.#events.set(event.eventId, { type: event.type, status });
  }
}
