import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import {
  EMPTY_MUTATION,
  EventBook,
  IntermissionError,
  isEmptyMutation,
  scaled,
  type ApproveResult,
  type Clock,
  type EventTiming,
  type FleetIndex,
  type MaintenanceEvent,
  type Mutation,
  type ScheduleInput,
  type ScopeDocument,
  type Timer,
  type Timers,
  type Vm,
} from '../domain/index.js';
import type { MetadataBackend } from '../imds/backend.js';
import type { EventQuery, EventStore } from '../store/store.js';

/**
 * Everything the event service announces. Loggers, metrics and the dashboard subscribe; the service
 * imports none of them.
 */
export interface EventServiceEventMap {
  /** An event appeared in its scope's document (Scheduled, or Started when unplanned). */
  'event:scheduled': [event: MaintenanceEvent];
  /** A VM of the scope approved an event. */
  'event:approved': [event: MaintenanceEvent];
  /** An event went Scheduled → Started. */
  'event:started': [event: MaintenanceEvent];
  /** An event's impact ended; it stays listed for its linger. */
  'event:ended': [event: MaintenanceEvent];
  /** An event left the documents, completed or cancelled. */
  'event:removed': [event: MaintenanceEvent];
  /** A background tick failed; it is retried on the next one. */
  'tick:error': [error: IntermissionError];
}

export interface EventServiceOptions {
  readonly fleet: FleetIndex;
  readonly store: EventStore;
  readonly clock: Clock;
  readonly timing: EventTiming;
  /** Event id factory (uppercase GUID); random by default. */
  readonly newId?: () => string;
  /** Timers of the background ticks; real `setTimeout` (unref'd) by default. Tests inject virtual ones. */
  readonly timers?: Timers;
}

/** The real timers: `setTimeout`, unref'd so that a pending tick never keeps the process alive. */
export const realTimers: Timers = Object.freeze({
  after(ms: number, callback: () => void): Timer {
    const handle = setTimeout(callback, Math.max(0, ms));
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
});

/** Prefix of the owner of events that no executor drives: drills and user events. */
export const DRILL_OWNER_PREFIX = 'drill:';

export interface TickResult {
  readonly started: readonly MaintenanceEvent[];
  readonly ended: readonly MaintenanceEvent[];
  readonly removed: readonly MaintenanceEvent[];
}

/**
 * The event engine with its store: the pure {@link EventBook} in memory for reads, every change
 * persisted before it is applied. Mutations run one at a time, so each is computed on the state the
 * previous one left.
 *
 * Drills (owner `drill:…`) have no executor behind them: {@link tick} starts them when due and ends
 * them once their DurationInSeconds (scaled) has passed. Other events are driven by their owner
 * (the rollout executor) through {@link start} and {@link end}.
 */
export class EventService extends EventEmitter<EventServiceEventMap> implements MetadataBackend {
  readonly #book: EventBook;
  readonly #store: EventStore;
  readonly #clock: Clock;
  #fleet: FleetIndex;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #lastPoll = new Map<string, number>();
  readonly #timers: Timers;
  #timer: Timer | undefined;
  /** When the armed timer fires (virtual or real milliseconds since the epoch). */
  #wakeAt: number | undefined;
  /** No pass before this time: set after a failed pass. */
  #retryAt = 0;
  /** The background pass under way, started by the timer; see {@link idle}. */
  #pass: Promise<void> | undefined;
  #ticking: Promise<TickResult> | undefined;
  #running = false;
  #writeGate: (() => boolean) | undefined;

  private constructor(options: EventServiceOptions) {
    super();
    this.#fleet = options.fleet;
    this.#store = options.store;
    this.#clock = options.clock;
    this.#timers = options.timers ?? realTimers;
    this.#book = new EventBook({
      timing: options.timing,
      resolver: options.fleet,
      newId: options.newId ?? (() => randomUUID().toUpperCase()),
    });
  }

  /** Opens the service on a store, restoring every live event and incarnation. */
  static async open(options: EventServiceOptions): Promise<EventService> {
    const service = new EventService(options);
    service.#book.restore(await options.store.loadEvents());
    return service;
  }

  /**
   * Reads every live event and incarnation from the store again, replacing what this process holds:
   * for a controller replica that takes the lead (another replica wrote meanwhile) and for standbys
   * keeping their reads current. Runs between mutations, never during one. Announces nothing.
   */
  /**
   * Lets changes through only while `gate` says so (a controller replica: while it leads); others
   * are refused with NOT_LEADER before anything is written. A standby's book lags the store, and a
   * mutation computed from it could undo what the leader wrote.
   */
  setWriteGate(gate: (() => boolean) | undefined): void {
    this.#writeGate = gate;
  }

  reload(): Promise<void> {
    return this.#serial(async () => {
      this.#book.restore(await this.#store.loadEvents());
    });
  }

  get fleet(): FleetIndex {
    return this.#fleet;
  }

  get timing(): EventTiming {
    return this.#book.timing;
  }

  /** Whole milliseconds: event times are stored as integers, and simulated clocks may carry fractions. */
  now(): number {
    return Math.floor(this.#clock.now());
  }

  // --- MetadataBackend -------------------------------------------------------------------------

  vm(vmName: string): Vm | undefined {
    return this.#fleet.vm(vmName);
  }

  document(vmName: string): ScopeDocument {
    const scope = this.#fleet.scopeOfVm(vmName);
    if (scope === undefined) throw new IntermissionError('NOT_FOUND', `no VM named ${vmName} in the fleet`);
    return this.#book.document(scope);
  }

  async approve(vmName: string, eventIds: readonly string[]): Promise<ApproveResult> {
    return this.#serial(async () => {
      const result = this.#book.approve(vmName, eventIds, this.now());
      await this.#persist(result.mutation);
      for (const id of result.approved) {
        const event = this.#book.get(id);
        if (event) this.emit('event:approved', event);
      }
      // An approved drill may start now rather than at the next deadline.
      if (result.approved.length > 0) this.#kick();
      return result;
    });
  }

  recordPoll(vmName: string, at: number): void {
    this.#lastPoll.set(vmName, at);
  }

  /** When the VM last read its scheduled events, if it ever did since this process started. */
  lastPoll(vmName: string): number | undefined {
    return this.#lastPoll.get(vmName);
  }

  // --- Operations --------------------------------------------------------------------------------

  /** Live events, oldest first. */
  list(): MaintenanceEvent[] {
    return this.#book.list();
  }

  /** True when the event may start now: approved by a VM of its scope, or past its NotBefore. */
  isDue(event: MaintenanceEvent): boolean {
    return this.#book.isDue(event, this.now());
  }

  get(eventId: string): MaintenanceEvent | undefined {
    return this.#book.get(eventId.toUpperCase());
  }

  /**
   * One event by id, live or removed: from memory when live, else one read of the store. Never
   * loads the history.
   */
  async find(eventId: string): Promise<MaintenanceEvent | undefined> {
    const id = eventId.toUpperCase();
    return this.#book.get(id) ?? (await this.#store.getEvent(id));
  }

  /** History from the store, removed events included when asked. */
  history(query: EventQuery = {}): Promise<MaintenanceEvent[]> {
    return this.#store.queryEvents(query);
  }

  async schedule(input: ScheduleInput): Promise<MaintenanceEvent> {
    const event = await this.#serial(async () => {
      const result = this.#book.schedule(input, this.now());
      await this.#persist(result.mutation);
      return result.event;
    });
    this.emit('event:scheduled', event);
    this.#kick();
    return event;
  }

  async startUnplanned(input: Omit<ScheduleInput, 'notBefore' | 'noticeMs'>): Promise<MaintenanceEvent> {
    const event = await this.#serial(async () => {
      const result = this.#book.startUnplanned(input, this.now());
      await this.#persist(result.mutation);
      return result.event;
    });
    this.emit('event:scheduled', event);
    this.emit('event:started', event);
    this.#kick();
    return event;
  }

  async start(eventIds: readonly string[]): Promise<MaintenanceEvent[]> {
    const events = await this.#apply((now) => this.#book.start(eventIds, now));
    for (const e of events) this.emit('event:started', e);
    this.#kick();
    return events;
  }

  async end(eventIds: readonly string[]): Promise<MaintenanceEvent[]> {
    const events = await this.#apply((now) => this.#book.end(eventIds, now));
    for (const e of events) this.emit('event:ended', e);
    this.#kick();
    return events;
  }

  async cancel(eventIds: readonly string[]): Promise<MaintenanceEvent[]> {
    const events = await this.#apply((now) => this.#book.cancel(eventIds, now));
    for (const e of events) this.emit('event:removed', e);
    this.#kick();
    return events;
  }

  /**
   * One pass of the background work: start due drills, end drills whose impact is over, remove
   * ended events whose linger ran out. Safe to call at any time; concurrent calls share one pass.
   */
  tick(): Promise<TickResult> {
    this.#ticking ??= this.#tickOnce().finally(() => {
      this.#ticking = undefined;
    });
    return this.#ticking;
  }

  async #tickOnce(): Promise<TickResult> {
    // Each step decides on the state it runs against: a drill cancelled meanwhile is simply not due.
    const started = await this.#apply((now) => {
      const due = this.#book.due(now).filter(isDrill);
      return due.length > 0
        ? this.#book.start(
            due.map((e) => e.eventId),
            now,
          )
        : NOTHING;
    });
    for (const e of started) this.emit('event:started', e);
    const ended = await this.#apply((now) => {
      const over = this.#book
        .list()
        .filter((e) => isDrill(e) && e.phase === 'Started' && now >= (e.startedAt ?? now) + this.#impactMs(e));
      return over.length > 0
        ? this.#book.end(
            over.map((e) => e.eventId),
            now,
          )
        : NOTHING;
    });
    for (const e of ended) this.emit('event:ended', e);
    const removed = await this.#apply((now) => this.#book.sweep(now));
    for (const e of removed) this.emit('event:removed', e);
    return { started, ended, removed };
  }

  /**
   * The next time {@link tick} has work, if any: `now` when a drill is due already (approved, or
   * past its NotBefore), when a drill's impact is over or a linger ran out; else the soonest of
   * those times. Events that an executor starts do not count: the tick does not start them.
   */
  nextDeadline(): number | undefined {
    const now = this.now();
    let next = this.#book.nextDeadline(now, { starts: isDrill });
    for (const e of this.#book.list()) {
      if (isDrill(e) && e.phase === 'Started') {
        const t = Math.max(now, (e.startedAt ?? now) + this.#impactMs(e));
        if (next === undefined || t < next) next = t;
      }
    }
    return next;
  }

  /** Runs {@link tick} whenever something is due. Idempotent. */
  startTicking(): void {
    if (this.#running) return;
    this.#running = true;
    this.#kick();
  }

  /** Stops the background ticks and waits for a pass under way. Idempotent. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#wakeAt = undefined;
    await this.#pass;
    await this.#ticking;
    await this.#queue.catch(() => undefined);
  }

  /** Resolves once no background pass started by the timer is under way (for tests in virtual time). */
  async idle(): Promise<void> {
    while (this.#pass) await this.#pass;
  }

  /**
   * Arms the timer for the next deadline after a change or a pass. The rules that keep every
   * scope's transitions on time whatever the others do (issue 12, item 3):
   * - the wake-up is the earliest due transition of any scope, `now` for one due already;
   * - a change never postpones a wake-up that is already armed earlier: it can only bring it
   *   forward (a steady stream of changes used to reset the timer for ever);
   * - the sleep is capped at {@link MAX_IDLE_MS}, so that a jump of the wall clock is noticed;
   * - after a failed pass the next one waits {@link RETRY_AFTER_FAILURE_MS}, so that a store that
   *   keeps failing is not hammered by a loop of passes due "now".
   */
  #kick(): void {
    if (!this.#running) return;
    const now = this.now();
    let at = Math.min(this.nextDeadline() ?? Number.POSITIVE_INFINITY, now + MAX_IDLE_MS);
    at = Math.max(at, this.#retryAt, now);
    if (this.#timer && this.#wakeAt !== undefined && this.#wakeAt <= at) return;
    this.#timer?.cancel();
    this.#wakeAt = at;
    this.#timer = this.#timers.after(at - now, () => this.#wake());
  }

  /** The timer fired: one pass, then the next wake-up. */
  #wake(): void {
    this.#timer = undefined;
    this.#wakeAt = undefined;
    const pass = this.tick()
      .then(
        () => {
          this.#retryAt = 0;
        },
        (error: unknown) => {
          this.#retryAt = this.now() + RETRY_AFTER_FAILURE_MS;
          this.emit(
            'tick:error',
            error instanceof IntermissionError
              ? error
              : new IntermissionError('INTERNAL', String(error), { cause: error }),
          );
        },
      )
      .finally(() => {
        if (this.#pass === pass) this.#pass = undefined;
        this.#kick();
      });
    this.#pass = pass;
  }

  #impactMs(event: MaintenanceEvent): number {
    return event.durationInSeconds > 0 ? scaled(event.durationInSeconds * 1000, this.#book.timing.scale) : 0;
  }

  async #apply(
    compute: (now: number) => { mutation: Mutation; events: MaintenanceEvent[] },
  ): Promise<MaintenanceEvent[]> {
    return this.#serial(async () => {
      const result = compute(this.now());
      await this.#persist(result.mutation);
      return result.events;
    });
  }

  async #persist(mutation: Mutation): Promise<void> {
    if (isEmptyMutation(mutation)) return;
    if (this.#writeGate && !this.#writeGate()) {
      throw new IntermissionError(
        'NOT_LEADER',
        'this controller replica stands by: events change only through the leader (retry there, or later)',
      );
    }
    await this.#store.commit(mutation);
    this.#book.apply(mutation);
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work, work);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}

/** Longest the ticker sleeps without a deadline, so that wall-clock jumps are noticed. */
const MAX_IDLE_MS = 1000;

/**
 * Pause after a failed pass before the next: a drill that is due "now" while the store keeps
 * failing would otherwise spin the ticker in a tight loop of failing passes.
 */
const RETRY_AFTER_FAILURE_MS = 1000;

const NOTHING = { mutation: EMPTY_MUTATION, events: [] as MaintenanceEvent[] };

function isDrill(event: MaintenanceEvent): boolean {
  return event.owner.startsWith(DRILL_OWNER_PREFIX);
}
