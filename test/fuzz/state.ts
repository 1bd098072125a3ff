/**
 * What the fuzzer watches between inputs: every event as the operator sees it (GET
 * /v1/events?all=true), every scope's document and DocumentIncarnation (GET
 * /v1/vms/<vm>/scheduled-events), and, in turn, one scope's document read through its metadata
 * listener as a guest reads it. {@link diffState} says what changed between two snapshots and
 * whether the change is one that time alone makes (an event starting on its NotBefore, ending,
 * lingering out), or one that only an input can make (an event created, approved, cancelled,
 * rescheduled), which a rejected input must never make.
 */
import { SCOPES, controlJson, type Principal } from './target.js';
import { sendRaw } from './wire.js';

/** The fields of an event (control API view) that the fuzzer reads. */
export interface EventRow {
  readonly eventId: string;
  readonly scope: string;
  readonly type: string;
  readonly phase: string;
  readonly resources: readonly string[];
  readonly source: string;
  readonly owner: string;
  readonly notBefore: string;
  readonly durationInSeconds: number;
  readonly description: string;
  readonly createdAt: string;
  readonly approvedAt: string | null;
  readonly approvedBy: string | null;
  readonly removedAt: string | null;
  readonly removalReason: string | null;
}

export interface ScopeDoc {
  readonly incarnation: number;
  /** Event id and status, in order: the part of the document that time may change. */
  readonly key: string;
}

export interface Snapshot {
  readonly events: ReadonlyMap<string, EventRow>;
  readonly scopes: ReadonlyMap<string, ScopeDoc>;
  /** One scope as read through a metadata listener, when it was read. */
  readonly metadata?: { readonly scope: string; readonly vm: string; readonly incarnation: number };
}

/** Why a snapshot could not be taken: the state is not readable (itself a finding). */
export class UnreadableState extends Error {
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

/** Reads a snapshot; `metadataVm` (optional) is read through its listener as well. */
export async function takeSnapshot(options: {
  controlPort: number;
  operator: Principal;
  metadataPort?: number;
  metadataVm?: string;
}): Promise<Snapshot> {
  const { controlPort, operator } = options;
  const all = await controlJson<{ events: EventRow[] }>(controlPort, operator.token, 'GET', '/v1/events?all=true');
  if (all.status !== 200) throw new UnreadableState(`GET /v1/events?all=true answered ${all.status}`, all.status);
  // The history is a page (newest 1000); the live events are read in full besides.
  const live = await controlJson<{ events: EventRow[] }>(controlPort, operator.token, 'GET', '/v1/events');
  if (live.status !== 200) throw new UnreadableState(`GET /v1/events answered ${live.status}`, live.status);
  const events = new Map(all.body.events.map((e) => [e.eventId, e]));
  for (const e of live.body.events) events.set(e.eventId, e);
  const scopes = new Map<string, ScopeDoc>();
  await Promise.all(
    [...SCOPES].map(async ([scope, vms]) => {
      const vm = vms[0] ?? '';
      const res = await controlJson<{ incarnation: number; events: { eventId: string; status: string }[] }>(
        controlPort,
        operator.token,
        'GET',
        `/v1/vms/${vm}/scheduled-events`,
      );
      if (res.status !== 200)
        throw new UnreadableState(`GET /v1/vms/${vm}/scheduled-events answered ${res.status}`, res.status);
      scopes.set(scope, {
        incarnation: res.body.incarnation,
        key: res.body.events.map((e) => `${e.eventId}:${e.status}`).join(','),
      });
    }),
  );
  let metadata: Snapshot['metadata'];
  if (options.metadataPort !== undefined && options.metadataVm !== undefined) {
    const vm = options.metadataVm;
    const res = await sendRaw({
      port: options.metadataPort,
      bytes: Buffer.from(
        'GET /metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n\r\n',
      ),
      drainMs: 1000,
    });
    const m = /"DocumentIncarnation":(\d+)/.exec(res.head);
    if (res.status === 200 && m?.[1]) {
      metadata = { scope: [...SCOPES].find(([, vms]) => vms.includes(vm))?.[0] ?? '', vm, incarnation: Number(m[1]) };
    } else if (res.status !== 429) {
      throw new UnreadableState(`metadata GET for ${vm} answered ${res.status ?? res.outcome}`, res.status);
    }
  }
  return { events, scopes, ...(metadata ? { metadata } : {}) };
}

/** One change between two snapshots that time alone does not make. */
export interface Change {
  /**
   * The event belongs to the rollout executor (owner `rollout:…`): it publishes, starts and, when a
   * rollout halts, cancels such events by itself, so its changes are not laid at a refused input.
   */
  readonly controller?: boolean;
  readonly eventId?: string;
  readonly scope?: string;
  readonly what: string;
}

const DRILL_PREFIX = 'drill:';

/** The fields of an event that only an input changes. */
function inputFields(e: EventRow): string {
  return JSON.stringify([
    e.scope,
    e.type,
    e.resources,
    e.source,
    e.owner,
    e.notBefore,
    e.durationInSeconds,
    e.description,
    e.approvedAt,
    e.approvedBy,
    e.removalReason === 'cancelled',
  ]);
}

/**
 * The changes from `before` to `after` that only an input can cause. Not counted: a removed event
 * that fell out of the history page, an event published by the rollout executor (not a drill),
 * and a scope whose incarnation moved together with its document (an event started, ended or
 * lingered out); counted: an incarnation that moved while the document stayed as it was, and one
 * that went down.
 */
export function diffState(before: Snapshot, after: Snapshot): Change[] {
  const changes: Change[] = [];
  for (const [id, b] of before.events) {
    const a = after.events.get(id);
    if (!a) {
      // An Ended event leaves only when its linger runs out (time's doing: no request removes it, a
      // cancel takes Scheduled events only), and once Removed it may fall off the history page
      // like any removed event. Anything else that vanishes is a change.
      if (b.phase !== 'Removed' && b.phase !== 'Ended')
        changes.push({
          eventId: id,
          scope: b.scope,
          what: `a live event vanished (${b.phase}; ${after.events.size} events listed)`,
        });
      continue;
    }
    if (inputFields(a) !== inputFields(b)) {
      const what: string[] = [];
      if (a.approvedAt !== b.approvedAt) what.push(`approved by ${a.approvedBy}`);
      if (a.removalReason !== b.removalReason && a.removalReason === 'cancelled')
        what.push(`cancelled (source ${a.source}, owner ${a.owner})`);
      if (a.notBefore !== b.notBefore) what.push(`NotBefore ${b.notBefore} -> ${a.notBefore}`);
      if (what.length === 0) what.push('fields changed');
      changes.push({
        eventId: id,
        scope: a.scope,
        what: what.join(', '),
        ...(a.owner.startsWith(DRILL_PREFIX) ? {} : { controller: true }),
      });
    }
  }
  for (const [id, a] of after.events) {
    if (before.events.has(id) || !a.owner.startsWith(DRILL_PREFIX)) continue;
    changes.push({ eventId: id, scope: a.scope, what: `created by ${a.owner} (${a.type}, ${a.phase})` });
  }
  for (const [scope, a] of after.scopes) {
    const b = before.scopes.get(scope);
    if (!b) continue;
    if (a.incarnation < b.incarnation)
      changes.push({ scope, what: `DocumentIncarnation went down ${b.incarnation} -> ${a.incarnation}` });
    else if (a.incarnation !== b.incarnation && a.key === b.key)
      changes.push({ scope, what: `DocumentIncarnation ${b.incarnation} -> ${a.incarnation} with the same document` });
  }
  return changes;
}

/** Who sent an input, for the authority check of accepted inputs. */
export type Actor =
  | { readonly kind: 'metadata'; readonly vm: string; readonly scope: string }
  | { readonly kind: 'control'; readonly principal: Principal | undefined };

/**
 * Of the changes an accepted input made, those its sender had no right to make: a guest changes
 * only its own scope's events, and only by approving them; a tenant (owner `drill:tenant:<name>`) creates events for its own
 * VMs only and cancels only its own user events (never a platform's or an operator's); an
 * unauthenticated request changes nothing. Operators may change anything.
 */
export function outOfAuthority(actor: Actor, changes: readonly Change[], after: Snapshot): Change[] {
  return changes.filter((c) => {
    if (actor.kind === 'metadata') {
      return !(c.scope === actor.scope && c.what.startsWith('approved by'));
    }
    const p = actor.principal;
    if (!p) return true;
    if (p.role === 'operator') return false;
    if (c.eventId === undefined) return false; // incarnation moves are judged by diffState itself
    const e = after.events.get(c.eventId);
    if (!e) return true;
    const own = e.owner === `${DRILL_PREFIX}tenant:${p.name}` && e.resources.every((vm) => p.vms.includes(vm));
    if (c.what.startsWith('created by')) return !(own && e.source === 'User');
    if (c.what.startsWith('cancelled')) return !(own && e.source === 'User');
    return true;
  });
}
