/**
 * Who changed what, when the state is compared once per batch of inputs instead of after every
 * input. The inputs of a batch go one after the other, each waiting for its answer, so each owns a
 * window of time: from the moment it was sent to the moment the next one was. The service stamps
 * every change it makes to an event (`createdAt`, `approvedAt`, `removedAt`, from the same system
 * clock), so a change of a batch is laid at the input whose window holds its stamp.
 *
 * A change is explained when that input was accepted, names the event (its id is in the bytes;
 * for a creation, a control-API input), and the change is within its sender's rights. Anything
 * else is unexplained (a change in a rejected input's window, one out of authority, one with no
 * stamp, an incarnation that moved on its own) and the batch is replayed one input at a time to
 * name the culprit exactly ({@link judgeInput} is the per-input oracle of that replay).
 */
import type { FuzzInput } from './generators.js';
import { diffState, outOfAuthority, type Change, type EventRow, type Snapshot } from './state.js';

/** One input as it was sent in a batch. */
export interface Sent {
  /** The index of the input in its seed's sequence (0-based). */
  readonly index: number;
  readonly input: FuzzInput;
  /** The status of the answer, or why none came. */
  readonly status: number | string;
  readonly rejected: boolean;
  /** Date.now() just before the first byte went out. */
  readonly sentAt: number;
  /** Date.now() when its answer came, or it was given up (Infinity while parked). */
  readonly doneAt: number;
  /** Answered so late that the next inputs went meanwhile (its window overlaps theirs). */
  readonly parked?: boolean;
}

/** The kind of an explained change, for the report's count of what accepted inputs changed. */
export function changeKind(c: Change): string {
  return /^(approved|cancelled|created)/.exec(c.what)?.[1] ?? 'other';
}

/**
 * The same change as seen on another server started from the same checkpoint (a replay): the
 * event and what happened to it; a created event by its scope, owner and type (its id is new).
 */
export function changeKey(c: Change): string {
  if (c.what.startsWith('created by')) return `created|${c.scope ?? ''}|${c.what.replace(/, \w+\)$/, ')')}`;
  if (c.eventId === undefined) return `${c.scope ?? ''}|${c.what.replace(/\d+/g, 'N')}`;
  return `${c.eventId}|${changeKind(c)}`;
}

/** When the service made the change, from the event's own stamps; undefined when it has none. */
export function stampOf(c: Change, e: EventRow | undefined): number | undefined {
  if (!e) return undefined;
  // diffState joins the parts of one event's change with ", " (a part may hold one itself).
  const parts = c.what.split(/, (?=approved by|cancelled|NotBefore|fields changed)/);
  const stamps = parts.map((part) => {
    if (part.startsWith('created by')) return e.createdAt;
    if (part.startsWith('approved by')) return e.approvedAt;
    if (part.startsWith('cancelled')) return e.removedAt;
    return null; // NotBefore moved, other fields: no stamp says when
  });
  const times = stamps.map((s) => (s === null || s === undefined ? Number.NaN : Date.parse(s)));
  const first = times[0];
  if (first === undefined || times.some((t) => Number.isNaN(t) || t !== first)) return undefined;
  return first;
}

/** The input of `batch` whose window holds `at` (the last one's window is open-ended). */
function inputAt(batch: readonly Sent[], at: number): Sent | undefined {
  let found: Sent | undefined;
  for (const s of batch) {
    if (s.sentAt <= at) found = s;
    else break;
  }
  return found;
}

/**
 * Whether the bytes of `s` mention `text`: in any case (generators also send lower-case ids), and
 * across chunk boundaries (a chunked body splits a word with `\r\n<size>\r\n`).
 */
function mentions(s: Sent, text: string): boolean {
  const bytes = s.input.bytes.toString('latin1').toUpperCase();
  const wanted = text.toUpperCase();
  return bytes.includes(wanted) || bytes.replace(/\r\n[0-9A-F]+(;[^\r]*)?\r\n/g, '').includes(wanted);
}

/** Whether the bytes of `s` name the event `id`. */
function names(s: Sent, id: string): boolean {
  return mentions(s, id);
}

/**
 * Whether `s` could have created `e`: a control-API input of its owner (a tenant's events are
 * owned `drill:tenant:<name>`, an operator's `drill:<token name>`) whose bytes name the event's
 * type and VMs, or one of nobody known.
 */
function mayCreate(s: Sent, e: EventRow | undefined): boolean {
  if (s.input.actor.kind !== 'control') return false;
  const p = s.input.actor.principal;
  if (p === undefined || e === undefined) return true;
  // Its body names the event's type and VMs (an input that does not could not have asked for it).
  if (!mentions(s, e.type) || !e.resources.every((vm) => mentions(s, vm))) return false;
  return p.role === 'tenant' ? e.owner === `drill:tenant:${p.name}` : !e.owner.startsWith('drill:tenant:');
}

/**
 * Splits the changes of a batch (all of {@link diffState}) into those explained by an accepted
 * input within its rights, and the rest. A change to an event of the rollout executor is its own
 * (it publishes, starts and cancels them by itself), unless an accepted input of someone other
 * than the operator named that event in the window the change was made in: then it is unexplained.
 */
export function explainBatch(
  batch: readonly Sent[],
  changes: readonly Change[],
  after: Snapshot,
): { explained: Change[]; unexplained: Change[] } {
  const explained: Change[] = [];
  const unexplained: Change[] = [];
  for (const c of changes) {
    const e = c.eventId === undefined ? undefined : after.events.get(c.eventId);
    const at = stampOf(c, e);
    const s = at === undefined ? undefined : inputAt(batch, at);
    const id = c.eventId;
    // Who could have made it: the input whose window holds the stamp, and any parked input still
    // open then; each only if able to (it names the event, or, for a creation, it is a
    // control-API input of the event's owner or of nobody known).
    const able = (x: Sent): boolean =>
      id !== undefined && (c.what.startsWith('created by') ? mayCreate(x, e) : names(x, id));
    const candidates =
      at === undefined
        ? []
        : batch.filter((x) => (x === s || (x.parked === true && x.sentAt <= at && at <= x.doneAt + 50)) && able(x));
    if (c.controller === true) {
      const byOther = candidates.some(
        (x) => !(x.input.actor.kind === 'control' && x.input.actor.principal?.role === 'operator'),
      );
      if (byOther) unexplained.push(c);
      continue;
    }
    // Explained when someone could have made it and everyone who could was accepted and within
    // its rights; a change no input could have made, or one a refused input could have, is not.
    const ok =
      candidates.length > 0 &&
      candidates.every((x) => !x.rejected && outOfAuthority(x.input.actor, [c], after).length === 0);
    (ok ? explained : unexplained).push(c);
  }
  return { explained, unexplained };
}

/** What one input did, judged from the state before and after it alone (the replay's oracle). */
export interface Judgement {
  /** Changes a rejected input made: each is a finding. */
  readonly rejectedChanges: readonly Change[];
  /** Changes an accepted input made outside its sender's rights: each is a finding. */
  readonly outOfAuthority: readonly Change[];
  /** Changes an accepted input made within its rights. */
  readonly legitimate: readonly Change[];
}

export function judgeInput(before: Snapshot, after: Snapshot, input: FuzzInput, rejected: boolean): Judgement {
  const byInput = diffState(before, after).filter((c) => c.controller !== true);
  if (rejected) return { rejectedChanges: byInput, outOfAuthority: [], legitimate: [] };
  const all = diffState(before, after);
  const wrong = outOfAuthority(input.actor, all, after);
  return {
    rejectedChanges: [],
    outOfAuthority: wrong,
    legitimate: byInput.filter((c) => !wrong.includes(c)),
  };
}

export function describeChanges(changes: readonly Change[]): string {
  return changes.map((c) => `${c.scope ?? ''} ${c.what}`).join('; ');
}
