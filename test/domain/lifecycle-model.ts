import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  EVENT_TYPES,
  EventBook,
  FleetIndex,
  eventTiming,
  isIntermissionError,
  minimumNotice,
  parseFleet,
  timeScale,
  type ErrorCode,
  type EventTiming,
  type EventType,
  type MaintenanceEvent,
  type Mutation,
  type ScopeId,
  type ScopeState,
} from '../../src/domain/index.js';

/**
 * A random world for the event lifecycle (a fleet, timing rules, a clock) and random operations on
 * it, with the invariants of design.md checked after every step. Shared by the pure property test
 * and the one that persists every mutation in a real store.
 */

/** A random fleet: availability sets of 1-5 VMs and 0-3 standalone VMs, over 2 hosts. */
export const arbitraryFleet: fc.Arbitrary<FleetIndex> = fc
  .record({
    sets: fc.array(fc.record({ size: fc.integer({ min: 1, max: 5 }), uds: fc.integer({ min: 1, max: 5 }) }), {
      maxLength: 3,
    }),
    standalone: fc.integer({ min: 0, max: 3 }),
  })
  .filter((f) => f.sets.length + f.standalone > 0)
  .map((f) => {
    const vms: { name: string; host: string; availabilitySet?: string }[] = [];
    f.sets.forEach((s, i) => {
      for (let j = 0; j < s.size; j++)
        vms.push({ name: `s${i}-vm${j}`, host: `h${vms.length % 2}`, availabilitySet: `s${i}` });
    });
    for (let k = 0; k < f.standalone; k++) vms.push({ name: `solo${k}`, host: `h${vms.length % 2}` });
    return new FleetIndex(
      parseFleet({
        hosts: [{ name: 'h0' }, { name: 'h1' }],
        availabilitySets: f.sets.map((s, i) => ({ name: `s${i}`, updateDomains: s.uds })),
        vms,
      }),
    );
  });

/** Timing rules: real time or scaled 60×, and a linger of 0, 1 minute or the default 5 minutes. */
export const arbitraryTiming: fc.Arbitrary<EventTiming> = fc
  .record({ factor: fc.constantFrom(1, 60), lingerMs: fc.constantFrom(0, 60_000, 300_000) })
  .map(({ factor, lingerMs }) => eventTiming({ scale: timeScale(factor), lingerMs }));

/** How a schedule chooses NotBefore, relative to the type's minimum notice. */
export type NoticeKind = 'default' | 'exact' | 'justShort' | 'short' | 'long' | 'absoluteShort' | 'absoluteLong';

/** One operation on the book, or on the world around it. Indices pick modulo what exists. */
export type Op =
  | {
      kind: 'schedule';
      vm: number;
      width: number;
      type: EventType;
      notice: NoticeKind;
      amount: number;
      crossScope: boolean;
    }
  | { kind: 'unplanned'; vm: number }
  | { kind: 'approve'; vm: number; picks: number[]; lowercase: boolean; unknownId: boolean }
  | { kind: 'start'; pick: number }
  | { kind: 'startDue' }
  | { kind: 'end'; pick: number }
  | { kind: 'cancel'; pick: number }
  | { kind: 'sweep' }
  | { kind: 'clock'; deltaMs: number }
  | { kind: 'jump'; pick: number; to: 'notBefore' | 'lingerEnd'; offsetMs: -1 | 0 | 1 }
  | { kind: 'restart' };

const pick = fc.nat({ max: 1000 });

/** Random operations, weighted towards the lifecycle; the clock moves both ways. */
export const arbitraryOp: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('schedule' as const),
      vm: pick,
      width: fc.integer({ min: 1, max: 3 }),
      type: fc.constantFrom(...EVENT_TYPES),
      notice: fc.constantFrom<NoticeKind>(
        'default',
        'exact',
        'justShort',
        'short',
        'long',
        'absoluteShort',
        'absoluteLong',
      ),
      amount: fc.integer({ min: 1, max: 3_600_000 }),
      crossScope: fc.integer({ min: 0, max: 4 }).map((n) => n === 0),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('unplanned' as const), vm: pick }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('approve' as const),
      vm: pick,
      picks: fc.array(pick, { minLength: 1, maxLength: 3 }),
      lowercase: fc.boolean(),
      unknownId: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('start' as const), pick }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('startDue' as const) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('end' as const), pick }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('cancel' as const), pick }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sweep' as const) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('clock' as const),
      deltaMs: fc.oneof(fc.integer({ min: -3_600_000, max: 3_600_000 }), fc.integer({ min: -60_000, max: 60_000 })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('jump' as const),
      pick,
      to: fc.constantFrom('notBefore' as const, 'lingerEnd' as const),
      offsetMs: fc.constantFrom(-1 as const, 0 as const, 1 as const),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart' as const) }) },
);

/** A run of `minLength` to `maxLength` operations (fast-check's default size keeps arrays near 10). */
export function arbitraryOps(minLength = 20, maxLength = 80): fc.Arbitrary<Op[]> {
  return fc.array(arbitraryOp, { minLength, maxLength, size: 'max' });
}

/** What tenants see of a scope: Azure's fields of each listed event, and nothing of ours. */
export function tenantView(events: readonly MaintenanceEvent[]): string {
  return JSON.stringify(
    events.map((e) => {
      assert.notEqual(e.phase, 'Removed', `a removed event ${e.eventId} is still listed`);
      const status = e.phase === 'Scheduled' ? 'Scheduled' : 'Started';
      return {
        EventId: e.eventId,
        EventStatus: status,
        EventType: e.type,
        ResourceType: 'VirtualMachine',
        Resources: e.resources,
        NotBefore: status === 'Scheduled' ? e.notBefore : '',
        Description: e.description,
        EventSource: e.source,
        DurationInSeconds: e.durationInSeconds,
      };
    }),
  );
}

/** The uppercase GUID of the n-th event id handed out (with letters, so that case matters). */
export function guid(n: number): string {
  return `ABCDEF00-0000-4000-8000-${n.toString(16).toUpperCase().padStart(12, '0')}`;
}

/**
 * The world and its checks. `step(op)` runs an operation against the book, checks what it returned,
 * and gives the mutation to persist (or undefined); `apply(mutation)` applies it and checks the
 * book-wide invariants. `restart(book)` swaps in a book restored from wherever state was persisted.
 */
export class Simulation {
  readonly fleet: FleetIndex;
  readonly timing: EventTiming;
  book: EventBook;
  now: number = Date.UTC(2026, 0, 1);
  /** Every event ever created, as last written (removed ones included): the expected history. */
  readonly history = new Map<string, MaintenanceEvent>();
  /** The tenant view seen at each (scope, incarnation): equal incarnations must show equal documents. */
  readonly #seen = new Map<string, string>();
  #ids = 0;
  /** Counters, to see that runs exercise every path. */
  readonly stats = { mutations: 0, refused: 0, started: 0, startedEarly: 0, removed: 0, restarts: 0, clockBack: 0 };

  constructor(fleet: FleetIndex, timing: EventTiming) {
    this.fleet = fleet;
    this.timing = timing;
    this.book = this.newBook();
    for (const scope of this.fleet.scopes()) this.#remember(scope);
  }

  /** A fresh book over the same fleet, timing and id sequence. */
  newBook(): EventBook {
    return new EventBook({ timing: this.timing, resolver: this.fleet, newId: () => guid(++this.#ids) });
  }

  /** Every scope to check: the fleet's and any that has an event or an incarnation. */
  scopes(): ScopeId[] {
    const all = new Set<ScopeId>(this.fleet.scopes());
    for (const e of this.book.list()) all.add(e.scope);
    for (const s of this.book.scopes()) all.add(s.scope);
    return [...all].sort();
  }

  /** Every scope's document and incarnation, for comparing two books. */
  snapshot(book: EventBook = this.book): { scope: ScopeId; incarnation: number; events: MaintenanceEvent[] }[] {
    return this.scopes().map((scope) => {
      const doc = book.document(scope);
      return { scope, incarnation: doc.incarnation, events: [...doc.events] };
    });
  }

  /** Replaces the book by one restored elsewhere, which must show exactly the same state. */
  restart(restored: EventBook): void {
    assert.deepStrictEqual(this.snapshot(restored), this.snapshot(), 'a restart changed a document or an incarnation');
    assert.deepStrictEqual(sortScopes(restored.scopes()), sortScopes(this.book.scopes()));
    this.book = restored;
    this.stats.restarts++;
  }

  /** Runs one operation and checks its direct result. Returns the mutation to persist and apply. */
  step(op: Op): Mutation | undefined {
    switch (op.kind) {
      case 'schedule':
        return this.#schedule(op);
      case 'unplanned': {
        const vm = this.#vm(op.vm);
        const { event, mutation } = this.book.startUnplanned({ type: 'Freeze', resources: [vm] }, this.now);
        assert.equal(event.phase, 'Started');
        return mutation;
      }
      case 'approve':
        return this.#approve(op);
      case 'start': {
        const event = this.#pick(op.pick);
        if (!event) return undefined;
        return this.#start(event);
      }
      case 'startDue': {
        const due = this.book.due(this.now);
        for (const e of due) assert.ok(this.#mayStart(e), `due() offers ${e.eventId}, which may not start yet`);
        if (due.length === 0) return undefined;
        const { mutation } = this.book.start(
          due.map((e) => e.eventId),
          this.now,
        );
        this.stats.started += due.length;
        return mutation;
      }
      case 'end': {
        const event = this.#pick(op.pick);
        if (!event) return undefined;
        const live = this.book.get(event.eventId);
        const result = this.#attempt(() => this.book.end([event.eventId], this.now), live?.phase === 'Started', live);
        return result?.mutation;
      }
      case 'cancel': {
        const event = this.#pick(op.pick);
        if (!event) return undefined;
        const live = this.book.get(event.eventId);
        const result = this.#attempt(
          () => this.book.cancel([event.eventId], this.now),
          live?.phase === 'Scheduled',
          live,
        );
        return result?.mutation;
      }
      case 'sweep': {
        const { mutation, events } = this.book.sweep(this.now);
        const expected = this.book
          .list()
          .filter((e) => e.phase === 'Ended' && e.endedAt !== undefined && this.now >= e.endedAt + e.lingerMs)
          .map((e) => e.eventId)
          .sort();
        assert.deepEqual(
          events.map((e) => e.eventId).sort(),
          expected,
          'sweep removes exactly the expired Ended events',
        );
        return mutation;
      }
      case 'clock':
        if (op.deltaMs < 0) this.stats.clockBack++;
        this.now += op.deltaMs;
        return undefined;
      case 'jump': {
        const event = this.#pick(op.pick);
        if (!event) return undefined;
        const target =
          op.to === 'notBefore'
            ? event.notBefore
            : event.endedAt === undefined
              ? undefined
              : event.endedAt + event.lingerMs;
        if (target === undefined) return undefined;
        if (target + op.offsetMs < this.now) this.stats.clockBack++;
        this.now = target + op.offsetMs;
        return undefined;
      }
      case 'restart':
        return undefined; // The caller restarts: the pure test from the book, the store test from the store.
    }
  }

  /** Applies a persisted mutation and checks every invariant that spans the book. */
  apply(mutation: Mutation | undefined): void {
    if (mutation === undefined) return;
    const scopes = this.scopes();
    const before = new Map(
      scopes.map((s) => [s, { view: tenantView(this.book.document(s).events), inc: this.book.incarnation(s) }]),
    );
    const liveBefore = new Map(this.book.list().map((e) => [e.eventId, e]));
    this.book.apply(mutation);
    this.stats.mutations++;
    for (const e of mutation.events) this.history.set(e.eventId, e);

    for (const scope of new Set([...scopes, ...this.scopes()])) {
      const was = before.get(scope) ?? { view: tenantView([]), inc: 1 };
      const view = tenantView(this.book.document(scope).events);
      const inc = this.book.incarnation(scope);
      const changed = view !== was.view;
      assert.equal(
        inc,
        was.inc + (changed ? 1 : 0),
        `${scope}: incarnation went ${was.inc} → ${inc} for a mutation that ${changed ? 'changed' : 'did not change'} its document`,
      );
      this.#remember(scope);
    }

    for (const e of mutation.events) {
      const was = liveBefore.get(e.eventId);
      if (was?.phase !== 'Scheduled' || e.phase !== 'Started') continue;
      // Never Started before NotBefore unless a VM of its scope approved it (earlier).
      const approvedInScope = was.approvedBy !== undefined && this.fleet.scopeOfVm(was.approvedBy) === e.scope;
      assert.ok(this.now >= e.notBefore || approvedInScope, `${e.eventId} started before its NotBefore unapproved`);
    }

    const liveAfter = new Set(this.book.list().map((e) => e.eventId));
    for (const [id, was] of liveBefore) {
      if (liveAfter.has(id)) continue;
      this.stats.removed++;
      const now = this.history.get(id);
      assert.ok(now?.phase === 'Removed', `${id} left the book without being removed`);
      if (was.phase === 'Ended') {
        assert.equal(now.removalReason, 'completed');
        assert.ok(
          was.endedAt !== undefined && this.now >= was.endedAt + was.lingerMs,
          `${id} left before its linger ran out`,
        );
      } else {
        assert.equal(was.phase, 'Scheduled', `${id} left the documents while ${was.phase}`);
        assert.equal(now.removalReason, 'cancelled');
      }
    }

    for (const e of this.book.list()) {
      for (const vm of e.resources)
        assert.equal(this.fleet.scopeOfVm(vm), e.scope, `${e.eventId} lists ${vm} of another scope`);
      if (e.approvedBy !== undefined) {
        assert.equal(
          this.fleet.scopeOfVm(e.approvedBy),
          e.scope,
          `${e.approvedBy} approved ${e.eventId} of another scope`,
        );
      }
    }
  }

  /** Records the view at the scope's incarnation, or checks it against the one recorded before. */
  #remember(scope: ScopeId): void {
    const key = `${scope}#${this.book.incarnation(scope)}`;
    const view = tenantView(this.book.document(scope).events);
    const earlier = this.#seen.get(key);
    if (earlier === undefined) this.#seen.set(key, view);
    else assert.equal(view, earlier, `${key} shows two different documents`);
  }

  #vm(index: number): string {
    const vms = this.fleet.fleet.vms;
    const vm = vms[index % vms.length];
    assert.ok(vm, 'the fleet has VMs');
    return vm.name;
  }

  /** An event of the history (removed ones too, to exercise refusals), or undefined if none yet. */
  #pick(index: number): MaintenanceEvent | undefined {
    const all = [...this.history.values()];
    const e = all[index % Math.max(1, all.length)];
    return e === undefined ? undefined : (this.book.get(e.eventId) ?? e);
  }

  #mayStart(e: MaintenanceEvent): boolean {
    return e.phase === 'Scheduled' && (this.now >= e.notBefore || e.approvedAt !== undefined);
  }

  #schedule(op: Extract<Op, { kind: 'schedule' }>): Mutation | undefined {
    const first = this.#vm(op.vm);
    const scope = this.fleet.scopeOfVm(first);
    assert.ok(scope, `${first} has a scope`);
    const inScope = this.fleet.vmsInScope(scope).map((v) => v.name);
    const start = inScope.indexOf(first);
    const resources = Array.from(
      { length: Math.min(op.width, inScope.length) },
      (_, i) => inScope[(start + i) % inScope.length] ?? first,
    );
    const others = this.fleet.fleet.vms.filter((v) => this.fleet.scopeOfVm(v.name) !== scope);
    const crossing = op.crossScope && others.length > 0;
    if (crossing) resources.push(others[op.vm % others.length]?.name ?? first);
    const min = minimumNotice(op.type, this.timing);
    const short = Math.max(0, min - 1 - (op.amount % Math.max(1, min)));
    const notices: Record<NoticeKind, { noticeMs?: number; notBefore?: number }> = {
      default: {},
      exact: { noticeMs: min },
      justShort: { noticeMs: min - 1 },
      short: { noticeMs: short },
      long: { noticeMs: min + op.amount },
      absoluteShort: { notBefore: this.now + short },
      absoluteLong: { notBefore: this.now + min + op.amount },
    };
    const notice = notices[op.notice];
    const tooShort = op.notice === 'justShort' || op.notice === 'short' || op.notice === 'absoluteShort';
    const expected: ErrorCode | undefined = crossing ? 'SCOPE_VIOLATION' : tooShort ? 'NOTICE_TOO_SHORT' : undefined;
    let result: ReturnType<EventBook['schedule']>;
    try {
      result = this.book.schedule({ type: op.type, resources, ...notice }, this.now);
    } catch (error) {
      assert.ok(
        expected !== undefined && isIntermissionError(error, expected),
        `schedule refused unexpectedly: ${String(error)}`,
      );
      this.stats.refused++;
      return undefined;
    }
    assert.equal(expected, undefined, `schedule accepted what it should refuse (${expected})`);
    const e = result.event;
    assert.equal(e.phase, 'Scheduled');
    assert.equal(e.createdAt, this.now);
    assert.ok(e.notBefore - e.createdAt >= min, `notice ${e.notBefore - e.createdAt} ms is below ${min} ms`);
    return result.mutation;
  }

  #approve(op: Extract<Op, { kind: 'approve' }>): Mutation | undefined {
    const caller = this.#vm(op.vm);
    const scope = this.fleet.scopeOfVm(caller);
    const all = [...this.history.values()];
    const ids = all.length === 0 ? [] : op.picks.map((p) => all[p % all.length]?.eventId ?? '');
    const asked = ids.flatMap((id) => (op.lowercase ? [id.toLowerCase(), id] : [id]));
    if (op.unknownId) asked.push(guid(999_999));
    const result = this.book.approve(caller, asked, this.now);
    assert.equal(new Set(result.approved).size, result.approved.length, 'an event approved twice in one call');
    assert.equal(result.mutation.scopes.length, 0, 'an approval changed a document');
    for (const id of result.approved) {
      const e = this.book.get(id);
      assert.ok(
        e && e.scope === scope && e.phase === 'Scheduled' && e.approvedAt === undefined,
        `${caller} approved ${id}, which is not a pending event of its scope`,
      );
    }
    for (const e of result.mutation.events) {
      assert.equal(e.scope, scope, `${caller} approved ${e.eventId} of ${e.scope}`);
      assert.equal(e.approvedBy, caller);
    }
    for (const raw of result.unknown) {
      const e = this.book.get(raw.toUpperCase());
      assert.ok(e === undefined || e.scope !== scope, `${raw} of the caller's scope reported unknown`);
    }
    for (const id of new Set(asked.map((a) => a.toUpperCase()))) {
      const e = this.book.get(id);
      if (e && e.scope !== scope) assert.ok(!result.approved.includes(id), `${caller} approved another scope's ${id}`);
    }
    return result.mutation;
  }

  #start(event: MaintenanceEvent): Mutation | undefined {
    const live = this.book.get(event.eventId);
    const allowed = live !== undefined && this.#mayStart(live);
    const result = this.#attempt(() => this.book.start([event.eventId], this.now), allowed, live);
    if (!result || !live) return undefined;
    // The invariant itself: never Started before NotBefore unless a VM of its scope approved it.
    const early = this.now < live.notBefore;
    if (early) {
      assert.ok(
        live.approvedBy !== undefined && this.fleet.scopeOfVm(live.approvedBy) === live.scope,
        `${live.eventId} started before its NotBefore without an approval from its scope`,
      );
      this.stats.startedEarly++;
    }
    this.stats.started++;
    assert.equal(result.events[0]?.startedAt, this.now);
    return result.mutation;
  }

  /** Runs a transition that should succeed iff `allowed`; a refusal must be CONFLICT or NOT_FOUND. */
  #attempt<T>(run: () => T, allowed: boolean, live: MaintenanceEvent | undefined): T | undefined {
    try {
      const result = run();
      assert.ok(allowed, `a transition went through that should have been refused (${live?.phase ?? 'not live'})`);
      return result;
    } catch (error) {
      if (error instanceof assert.AssertionError) throw error;
      assert.ok(!allowed, `a transition was refused that should have gone through: ${String(error)}`);
      assert.ok(isIntermissionError(error, live ? 'CONFLICT' : 'NOT_FOUND'), String(error));
      this.stats.refused++;
      return undefined;
    }
  }
}

function sortScopes(scopes: readonly ScopeState[]): ScopeState[] {
  return [...scopes].sort((a, b) => (a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : 0));
}
