import type { EventSource, EventType, MaintenanceEvent, ScopeDocument, VisibleEventStatus } from '../domain/index.js';
import { MetadataRequestError } from './errors.js';
import { SCHEDULED_EVENTS_PROFILES, type ScheduledEventsApiVersion } from './versions.js';

/**
 * One event as a guest reads it. Keys are declared in Azure's order (EventId … DurationInSeconds);
 * the optional ones exist only in the versions that define them.
 */
export interface ScheduledEventView {
  readonly EventId: string;
  readonly EventStatus: VisibleEventStatus;
  readonly EventType: EventType;
  readonly ResourceType: 'VirtualMachine';
  readonly Resources: readonly string[];
  /** RFC 1123 (`Sat, 11 Apr 2026 22:26:58 GMT`) while Scheduled, `""` once Started. */
  readonly NotBefore: string;
  readonly Description?: string;
  readonly EventSource?: EventSource;
  readonly DurationInSeconds?: number;
}

/** The scheduled-events document a guest reads: `{"DocumentIncarnation":n,"Events":[…]}`. */
export interface ScheduledEventsView {
  readonly DocumentIncarnation: number;
  readonly Events: readonly ScheduledEventView[];
}

export interface ScheduledEventsViewOptions {
  /**
   * The incarnation to show; default the document's own. The service shows a smaller number after
   * re-enabling a scope that was idle (see the app's `disableAfterIdleMs`).
   */
  readonly incarnation?: number;
}

/**
 * What a guest sees of one event, or undefined when the version does not show it: removed events
 * never, and events of a type the version predates (Preempt before 2017-11-01, Terminate before
 * 2019-01-01) are left out.
 */
export function scheduledEventView(
  event: MaintenanceEvent,
  version: ScheduledEventsApiVersion,
): ScheduledEventView | undefined {
  const profile = SCHEDULED_EVENTS_PROFILES[version];
  if (event.phase === 'Removed' || !profile.eventTypes.has(event.type)) return undefined;
  // Ended events stay listed as Started until their linger runs out; Azure has no other status.
  const status: VisibleEventStatus = event.phase === 'Scheduled' ? 'Scheduled' : 'Started';
  const view: {
    -readonly [K in keyof ScheduledEventView]: ScheduledEventView[K];
  } = {
    EventId: event.eventId,
    EventStatus: status,
    EventType: event.type,
    ResourceType: 'VirtualMachine',
    Resources: profile.underscoreResources ? event.resources.map((name) => `_${name}`) : [...event.resources],
    NotBefore: status === 'Scheduled' ? rfc1123(event.notBefore) : '',
  };
  if (profile.description) view.Description = event.description;
  if (profile.eventSource) view.EventSource = event.source;
  if (profile.durationInSeconds) view.DurationInSeconds = event.durationInSeconds;
  return view;
}

/** The document a scope's guests see at `version`, events oldest first. */
export function scheduledEventsView(
  doc: ScopeDocument,
  version: ScheduledEventsApiVersion,
  options: ScheduledEventsViewOptions = {},
): ScheduledEventsView {
  const events: ScheduledEventView[] = [];
  for (const event of doc.events) {
    const view = scheduledEventView(event, version);
    if (view) events.push(view);
  }
  return { DocumentIncarnation: options.incarnation ?? doc.incarnation, Events: events };
}

/**
 * The exact body of `GET /metadata/scheduledevents`: compact JSON (as real IMDS sends it), keys in
 * Azure's order, `DocumentIncarnation` and `DurationInSeconds` as numbers.
 */
export function renderScheduledEvents(
  doc: ScopeDocument,
  version: ScheduledEventsApiVersion,
  options: ScheduledEventsViewOptions = {},
): string {
  return JSON.stringify(scheduledEventsView(doc, version, options));
}

/** RFC 1123 / HTTP-date, e.g. `Sat, 11 Apr 2026 22:26:58 GMT`; the weekday is computed, never copied. */
export function rfc1123(ms: number): string {
  return new Date(ms).toUTCString();
}

/**
 * Reads the body of `POST /metadata/scheduledevents`: `{"StartRequests":[{"EventId":"…"}, …]}`.
 * The body is JSON whatever the Content-Type says (Python's urllib sends form-encoded), and other
 * keys, such as the `DocumentIncarnation` of the 2017-03-01 sample, are ignored.
 *
 * @returns the event ids, in order, possibly none
 * @throws MetadataRequestError `MALFORMED_BODY` when the body is not of that shape
 */
export function parseStartRequests(body: string): string[] {
  const text = body.charCodeAt(0) === 0xfeff ? body.slice(1) : body;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new MetadataRequestError('MALFORMED_BODY', { cause, detail: 'the body is not JSON' });
  }
  if (!isRecord(parsed)) {
    throw new MetadataRequestError('MALFORMED_BODY', { detail: 'the body is not a JSON object' });
  }
  const requests = parsed['StartRequests'];
  if (!Array.isArray(requests)) {
    throw new MetadataRequestError('MALFORMED_BODY', { detail: 'StartRequests is missing or not an array' });
  }
  return requests.map((request: unknown, index) => {
    const id = isRecord(request) ? request['EventId'] : undefined;
    if (typeof id !== 'string' || id.length === 0) {
      throw new MetadataRequestError('MALFORMED_BODY', {
        detail: `StartRequests[${index}].EventId is missing or not a non-empty string`,
      });
    }
    return id;
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
