import { IntermissionError } from '../errors.js';
import {
  EVENT_SOURCES,
  EVENT_TYPES,
  type EventSource,
  type EventType,
  type MaintenanceEvent,
  type ScopeId,
  type ScopeState,
} from '../vocabulary.js';
import { MAX_RENDERABLE_TIME, isRenderableTime } from '../time.js';
import { lingerFor, minimumNotice, type EventTiming } from './notice.js';

/**
 * A mutation is everything one operation changes: the full new rows of the events it touched and
 * the new incarnation of every scope whose document changed. Stores persist a mutation atomically;
 * only then is it applied to the in-memory book. An empty mutation changes nothing.
 */
export interface Mutation {
  readonly events: readonly MaintenanceEvent[];
  readonly scopes: readonly ScopeState[];
}

export const EMPTY_MUTATION: Mutation = Object.freeze({ events: [], scopes: [] });

export function isEmptyMutation(m: Mutation): boolean {
  return m.events.length === 0 && m.scopes.length === 0;
}

/** What the book needs to know of the fleet: which scope a VM belongs to. */
export interface ScopeResolver {
  scopeOfVm(vmName: string): ScopeId | undefined;
}

export interface ScheduleInput {
  readonly type: EventType;
  /** VM names; all must belong to one scope. */
  readonly resources: readonly string[];
  /** Either an absolute NotBefore or a notice from now; default: the minimum notice. */
  readonly notBefore?: number;
  readonly noticeMs?: number;
  readonly description?: string;
  readonly source?: EventSource;
  /** Expected interruption in seconds, -1 when unknown. */
  readonly durationInSeconds?: number;
  readonly owner?: string;
  readonly eventId?: string;
}

/** The document a scope's VMs see: only Scheduled and Started (incl. ended-but-lingering) events. */
export interface ScopeDocument {
  readonly scope: ScopeId;
  readonly incarnation: number;
  /** Visible events, oldest first. */
  readonly events: readonly MaintenanceEvent[];
}

export interface ApproveResult {
  readonly mutation: Mutation;
  /** Ids that were approved by this call (first approval). */
  readonly approved: readonly string[];
  /** Ids already approved or already started: a no-op, still a success for the caller. */
  readonly alreadyApproved: readonly string[];
  /** Ids not visible to the caller's scope: unknown, removed, or another scope's. */
  readonly unknown: readonly string[];
}

export interface EventBookOptions {
  readonly timing: EventTiming;
  readonly resolver: ScopeResolver;
  /** Makes an event id; must return an uppercase GUID. */
  readonly newId: () => string;
}

const DESCRIPTIONS: Record<EventType, string> = {
  Freeze: 'Host server is undergoing maintenance.',
  Reboot: 'Virtual machine is going to be restarted as requested by authorized user.',
  Redeploy: 'Virtual machine is going to be redeployed as requested by authorized user.',
  Preempt: 'Virtual machine is being evicted.',
  Terminate: 'Virtual machine is going to be deleted.',
};

const GUID_RE = /^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/;

/**
 * The scheduled-event lifecycle, pure and synchronous: every method takes `now` and returns a
 * {@link Mutation} without applying it; {@link EventBook.apply} applies one. Rules:
 *
 * - Scheduled → Started only when approved by a VM of the scope or once NotBefore has passed.
 * - NotBefore leaves at least the minimum notice of the type at creation.
 * - Started → Ended when the impact is over; Ended events stay listed as Started for the linger time,
 *   then are removed. Scheduled → removed when cancelled. absent → Started for unplanned events.
 * - A scope's incarnation goes up by exactly one with every mutation that changes its document, and
 *   never otherwise.
 */
export class EventBook {
  readonly #timing: EventTiming;
  #resolver: ScopeResolver;
  readonly #newId: () => string;
  /** Live (not removed) events by id. */
  readonly #events = new Map<string, MaintenanceEvent>();
  readonly #incarnations = new Map<ScopeId, number>();

  constructor(options: EventBookOptions) {
    this.#timing = options.timing;
    this.#resolver = options.resolver;
    this.#newId = options.newId;
  }

  get timing(): EventTiming {
    return this.#timing;
  }

  /** Replaces the fleet view (after a fleet reload). Live events keep their scope. */
  setResolver(resolver: ScopeResolver): void {
    this.#resolver = resolver;
  }

  /** Loads persisted state. Removed events are ignored; incarnations are taken as they are. */
  restore(state: { events: readonly MaintenanceEvent[]; scopes: readonly ScopeState[] }): void {
    this.#events.clear();
    this.#incarnations.clear();
    for (const s of state.scopes) this.#incarnations.set(s.scope, s.incarnation);
    for (const e of state.events) if (e.phase !== 'Removed') this.#events.set(e.eventId, e);
  }

  /** Applies a mutation computed by this book (after it was persisted). */
  apply(mutation: Mutation): void {
    for (const s of mutation.scopes) {
      const current = this.#incarnations.get(s.scope) ?? 1;
      if (s.incarnation < current) {
        throw new IntermissionError(
          'INTERNAL',
          `incarnation of ${s.scope} would go down from ${current} to ${s.incarnation}`,
        );
      }
      this.#incarnations.set(s.scope, s.incarnation);
    }
    for (const e of mutation.events) {
      if (e.phase === 'Removed') this.#events.delete(e.eventId);
      else this.#events.set(e.eventId, e);
    }
  }

  /** Computes and applies: for pure use (tests, simulations) where nothing is persisted. */
  commit<T extends { mutation: Mutation }>(result: T): T {
    this.apply(result.mutation);
    return result;
  }

  /** The incarnation of a scope; 1 for a scope that never had an event. */
  incarnation(scope: ScopeId): number {
    return this.#incarnations.get(scope) ?? 1;
  }

  get(eventId: string): MaintenanceEvent | undefined {
    return this.#events.get(eventId);
  }

  /** All live events, oldest first. */
  list(): MaintenanceEvent[] {
    return [...this.#events.values()].sort(byCreation);
  }

  /** Every scope that ever had a document change. */
  scopes(): ScopeState[] {
    return [...this.#incarnations].map(([scope, incarnation]) => ({ scope, incarnation }));
  }

  document(scope: ScopeId): ScopeDocument {
    const events = [...this.#events.values()].filter((e) => e.scope === scope).sort(byCreation);
    return { scope, incarnation: this.incarnation(scope), events };
  }

  /** Schedules a new event with at least the minimum notice of its type. */
  schedule(input: ScheduleInput, now: number): { mutation: Mutation; event: MaintenanceEvent } {
    const scope = this.#scopeOfResources(input.resources);
    const minNotice = minimumNotice(input.type, this.#timing);
    if (input.notBefore !== undefined && input.noticeMs !== undefined) {
      throw new IntermissionError('INVALID_INPUT', 'give either notBefore or a notice, not both');
    }
    const notBefore = input.notBefore ?? now + (input.noticeMs ?? minNotice);
    if (!Number.isFinite(notBefore)) throw new IntermissionError('INVALID_INPUT', 'NotBefore must be a time');
    if (!isRenderableTime(notBefore)) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `NotBefore ${notBefore} is not a time clients can read: a whole millisecond from 1970 to ` +
          `${new Date(MAX_RENDERABLE_TIME).toISOString()}`,
        { details: { notBefore } },
      );
    }
    if (notBefore - now < minNotice) {
      throw new IntermissionError(
        'NOTICE_TOO_SHORT',
        `a ${input.type} event needs at least ${minNotice} ms of notice, got ${notBefore - now} ms`,
        { details: { type: input.type, minNoticeMs: minNotice, noticeMs: notBefore - now } },
      );
    }
    const event = this.#newEvent(input, scope, now, { phase: 'Scheduled', notBefore });
    return { event, mutation: this.#mutation([event]) };
  }

  /**
   * An unplanned event (e.g. a host failure): absent → Started at once, with no notice. Only the
   * platform raises these.
   */
  startUnplanned(
    input: Omit<ScheduleInput, 'notBefore' | 'noticeMs'>,
    now: number,
  ): {
    mutation: Mutation;
    event: MaintenanceEvent;
  } {
    const scope = this.#scopeOfResources(input.resources);
    const event = this.#newEvent({ ...input, source: 'Platform' }, scope, now, {
      phase: 'Started',
      notBefore: now,
      startedAt: now,
    });
    return { event, mutation: this.#mutation([event]) };
  }

  /**
   * Approval from a VM. The caller sees and may approve only its own scope's events; approval of a
   * visible event releases it for all its resources. Never changes a document.
   */
  approve(callerVm: string, eventIds: readonly string[], now: number): ApproveResult {
    const scope = this.#resolver.scopeOfVm(callerVm);
    const approved: MaintenanceEvent[] = [];
    const already: string[] = [];
    const unknown: string[] = [];
    // Ids are GUIDs, compared without regard to case: `abc…` and `ABC…` name one event, approved once.
    const seen = new Set<string>();
    for (const rawId of eventIds) {
      const id = rawId.toUpperCase();
      if (seen.has(id)) continue;
      seen.add(id);
      const event = this.#events.get(id);
      if (!event || scope === undefined || event.scope !== scope) {
        unknown.push(rawId);
      } else if (event.phase !== 'Scheduled' || event.approvedAt !== undefined) {
        already.push(id);
      } else {
        approved.push({ ...event, approvedAt: now, approvedBy: callerVm });
      }
    }
    return {
      mutation: approved.length === 0 ? EMPTY_MUTATION : { events: approved, scopes: [] },
      approved: approved.map((e) => e.eventId),
      alreadyApproved: already,
      unknown,
    };
  }

  /** True when the event may start now: approved, or NotBefore has passed. */
  isDue(event: MaintenanceEvent, now: number): boolean {
    return event.phase === 'Scheduled' && (event.approvedAt !== undefined || now >= event.notBefore);
  }

  /** Scheduled events that may start now. */
  due(now: number): MaintenanceEvent[] {
    return this.list().filter((e) => this.isDue(e, now));
  }

  /** Scheduled → Started. Refuses to start an event before it is due. */
  start(eventIds: readonly string[], now: number): { mutation: Mutation; events: MaintenanceEvent[] } {
    const started = eventIds.map((id) => {
      const event = this.#require(id);
      if (event.phase !== 'Scheduled') {
        throw new IntermissionError('CONFLICT', `event ${id} is ${event.phase}, not Scheduled`);
      }
      if (!this.isDue(event, now)) {
        throw new IntermissionError('CONFLICT', `event ${id} is neither approved nor past its NotBefore`, {
          details: { notBefore: event.notBefore, now },
        });
      }
      return { ...event, phase: 'Started' as const, startedAt: now };
    });
    return { events: started, mutation: this.#mutation(started) };
  }

  /** Started → Ended: the impact is over. The event stays listed until the linger runs out. */
  end(eventIds: readonly string[], now: number): { mutation: Mutation; events: MaintenanceEvent[] } {
    const ended = eventIds.map((id) => {
      const event = this.#require(id);
      if (event.phase !== 'Started')
        throw new IntermissionError('CONFLICT', `event ${id} is ${event.phase}, not Started`);
      return { ...event, phase: 'Ended' as const, endedAt: now, lingerMs: lingerFor(this.#timing) };
    });
    return { events: ended, mutation: this.#mutation(ended) };
  }

  /** Scheduled → removed. A started event cannot be cancelled: its impact may be under way. */
  cancel(eventIds: readonly string[], now: number): { mutation: Mutation; events: MaintenanceEvent[] } {
    const cancelled = eventIds.map((id) => {
      const event = this.#require(id);
      if (event.phase !== 'Scheduled') {
        throw new IntermissionError(
          'CONFLICT',
          `event ${id} is ${event.phase}; only Scheduled events can be cancelled`,
        );
      }
      return { ...event, phase: 'Removed' as const, removedAt: now, removalReason: 'cancelled' as const };
    });
    return { events: cancelled, mutation: this.#mutation(cancelled) };
  }

  /** Removes ended events whose linger ran out. */
  sweep(now: number): { mutation: Mutation; events: MaintenanceEvent[] } {
    const removed: MaintenanceEvent[] = [];
    for (const e of this.#events.values()) {
      if (e.phase === 'Ended' && e.endedAt !== undefined && now >= e.endedAt + e.lingerMs) {
        removed.push({ ...e, phase: 'Removed', removedAt: now, removalReason: 'completed' });
      }
    }
    return { events: removed, mutation: this.#mutation(removed) };
  }

  /**
   * The earliest time at which an event has a transition pending, for schedulers: `now` when one is
   * due already (an approved Scheduled event, a NotBefore that has passed, an ended event whose
   * linger ran out), else the soonest NotBefore or end of linger; undefined when nothing is pending.
   * `starts` narrows the Scheduled events considered to those the caller starts itself (e.g. drills),
   * so that an event another party starts cannot keep the caller awake.
   */
  nextDeadline(
    now: number,
    options: { readonly starts?: (event: MaintenanceEvent) => boolean } = {},
  ): number | undefined {
    let next: number | undefined;
    for (const e of this.#events.values()) {
      let t: number | undefined;
      if (e.phase === 'Scheduled' && (options.starts?.(e) ?? true)) {
        t = e.approvedAt !== undefined ? now : e.notBefore;
      } else if (e.phase === 'Ended' && e.endedAt !== undefined) {
        t = e.endedAt + e.lingerMs;
      }
      if (t === undefined) continue;
      const at = Math.max(t, now);
      if (next === undefined || at < next) next = at;
    }
    return next;
  }

  #require(eventId: string): MaintenanceEvent {
    const event = this.#events.get(eventId.toUpperCase());
    if (!event) throw new IntermissionError('NOT_FOUND', `no live event ${eventId}`);
    return event;
  }

  #scopeOfResources(resources: readonly string[]): ScopeId {
    if (resources.length === 0) throw new IntermissionError('INVALID_INPUT', 'an event needs at least one VM');
    let scope: ScopeId | undefined;
    for (const name of resources) {
      const s = this.#resolver.scopeOfVm(name);
      if (s === undefined) throw new IntermissionError('NOT_FOUND', `no VM named ${JSON.stringify(name)} in the fleet`);
      if (scope !== undefined && s !== scope) {
        throw new IntermissionError(
          'SCOPE_VIOLATION',
          `an event's VMs must share one scope: ${scope} and ${s} differ`,
          {
            details: { resources },
          },
        );
      }
      scope = s;
    }
    return scope as ScopeId;
  }

  #newEvent(
    input: ScheduleInput,
    scope: ScopeId,
    now: number,
    at: { phase: 'Scheduled' | 'Started'; notBefore: number; startedAt?: number },
  ): MaintenanceEvent {
    if (!(EVENT_TYPES as readonly string[]).includes(input.type)) {
      throw new IntermissionError('INVALID_INPUT', `unknown event type ${String(input.type)}`);
    }
    const source = input.source ?? 'Platform';
    if (!(EVENT_SOURCES as readonly string[]).includes(source)) {
      throw new IntermissionError('INVALID_INPUT', `unknown event source ${String(source)}`);
    }
    const duration = input.durationInSeconds ?? -1;
    if (!Number.isSafeInteger(duration) || duration < -1) {
      throw new IntermissionError('INVALID_INPUT', 'DurationInSeconds must be an integer of -1 or more');
    }
    const eventId = (input.eventId ?? this.#newId()).toUpperCase();
    if (!GUID_RE.test(eventId)) throw new IntermissionError('INVALID_INPUT', `event id ${eventId} is not a GUID`);
    if (this.#events.has(eventId)) throw new IntermissionError('CONFLICT', `event ${eventId} exists already`);
    return {
      eventId,
      scope,
      type: input.type,
      phase: at.phase,
      resources: [...new Set(input.resources)],
      description: input.description ?? DESCRIPTIONS[input.type],
      source,
      durationInSeconds: duration,
      createdAt: now,
      notBefore: at.notBefore,
      approvedAt: undefined,
      approvedBy: undefined,
      startedAt: at.startedAt,
      endedAt: undefined,
      lingerMs: lingerFor(this.#timing),
      removedAt: undefined,
      removalReason: undefined,
      owner: input.owner ?? '',
    };
  }

  /**
   * Bumps each touched scope once if any of its events changed what tenants see. Refuses, before
   * anything is persisted, an event with a time that no client could read back (see
   * {@link isRenderableTime}): such a row, once stored, broke every listing of its scope.
   */
  #mutation(events: readonly MaintenanceEvent[]): Mutation {
    if (events.length === 0) return EMPTY_MUTATION;
    for (const e of events) checkRenderable(e);
    const bumped = new Set<ScopeId>();
    for (const e of events) {
      const before = this.#events.get(e.eventId);
      if (visibleForm(before) !== visibleForm(e)) bumped.add(e.scope);
    }
    return {
      events,
      scopes: [...bumped].map((scope) => ({ scope, incarnation: this.incarnation(scope) + 1 })),
    };
  }
}

const TIME_FIELDS = ['createdAt', 'notBefore', 'approvedAt', 'startedAt', 'endedAt', 'removedAt'] as const;

/** Throws INVALID_INPUT when a time of `e` cannot be rendered, or a duration is not a safe integer. */
function checkRenderable(e: MaintenanceEvent): void {
  for (const field of TIME_FIELDS) {
    const t = e[field];
    if (t !== undefined && !isRenderableTime(t)) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `event ${e.eventId}: ${field} ${t} is not a time clients can read (a whole millisecond from 1970 ` +
          `to ${new Date(MAX_RENDERABLE_TIME).toISOString()})`,
        { details: { eventId: e.eventId, field, value: t } },
      );
    }
  }
  for (const field of ['durationInSeconds', 'lingerMs'] as const) {
    if (!Number.isSafeInteger(e[field]) || e[field] < -1) {
      throw new IntermissionError('INVALID_INPUT', `event ${e.eventId}: ${field} ${e[field]} is not a duration`, {
        details: { eventId: e.eventId, field, value: e[field] },
      });
    }
  }
}

/** What a tenant can see of an event; two events with the same form give the same document. */
function visibleForm(e: MaintenanceEvent | undefined): string {
  if (!e || e.phase === 'Removed') return '';
  const status = e.phase === 'Scheduled' ? 'Scheduled' : 'Started';
  return JSON.stringify([
    e.eventId,
    status,
    e.type,
    e.resources,
    status === 'Scheduled' ? e.notBefore : '',
    e.description,
    e.source,
    e.durationInSeconds,
  ]);
}

function byCreation(a: MaintenanceEvent, b: MaintenanceEvent): number {
  return a.createdAt - b.createdAt || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0);
}
