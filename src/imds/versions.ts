import type { EventType } from '../domain/index.js';

/**
 * The `api-version` values of `/metadata/scheduledevents`, oldest first (spec 1.1). This list is not
 * the instance-metadata list: the two endpoints were versioned separately.
 */
export const SCHEDULED_EVENTS_API_VERSIONS = [
  '2017-03-01',
  '2017-08-01',
  '2017-11-01',
  '2019-01-01',
  '2019-04-01',
  '2019-08-01',
  '2020-07-01',
] as const;
/** A valid `api-version` of `/metadata/scheduledevents`. */
export type ScheduledEventsApiVersion = (typeof SCHEDULED_EVENTS_API_VERSIONS)[number];

/**
 * What one scheduled-events version shows. Every flag defaults to false: a field or quirk exists
 * only in the versions that declare it, so an old client never meets a key it cannot parse.
 */
export interface ScheduledEventsProfile {
  readonly version: ScheduledEventsApiVersion;
  /** 2017-03-01 (preview) prefixed every resource name with `_`; clients strip it. */
  readonly underscoreResources: boolean;
  /** `Description`, since 2019-04-01. */
  readonly description: boolean;
  /** `EventSource`, since 2019-08-01. */
  readonly eventSource: boolean;
  /** `DurationInSeconds`, since 2020-07-01. */
  readonly durationInSeconds: boolean;
  /**
   * Event types the version knows. Events of newer types are left out of its document, so a client
   * never meets an `EventType` it cannot parse (Preempt since 2017-11-01, Terminate since 2019-01-01).
   */
  readonly eventTypes: ReadonlySet<EventType>;
}

const BASE_TYPES: readonly EventType[] = ['Freeze', 'Reboot', 'Redeploy'];
const WITH_PREEMPT: readonly EventType[] = [...BASE_TYPES, 'Preempt'];
const WITH_TERMINATE: readonly EventType[] = [...WITH_PREEMPT, 'Terminate'];

function profile(
  version: ScheduledEventsApiVersion,
  types: readonly EventType[],
  flags: Partial<Omit<ScheduledEventsProfile, 'version' | 'eventTypes'>> = {},
): ScheduledEventsProfile {
  return Object.freeze({
    version,
    underscoreResources: flags.underscoreResources ?? false,
    description: flags.description ?? false,
    eventSource: flags.eventSource ?? false,
    durationInSeconds: flags.durationInSeconds ?? false,
    eventTypes: new Set(types),
  });
}

/** The field set and event types of every scheduled-events version (spec 1.1 table). */
export const SCHEDULED_EVENTS_PROFILES: Readonly<Record<ScheduledEventsApiVersion, ScheduledEventsProfile>> =
  Object.freeze({
    '2017-03-01': profile('2017-03-01', BASE_TYPES, { underscoreResources: true }),
    '2017-08-01': profile('2017-08-01', BASE_TYPES),
    '2017-11-01': profile('2017-11-01', WITH_PREEMPT),
    '2019-01-01': profile('2019-01-01', WITH_TERMINATE),
    '2019-04-01': profile('2019-04-01', WITH_TERMINATE, { description: true }),
    '2019-08-01': profile('2019-08-01', WITH_TERMINATE, { description: true, eventSource: true }),
    '2020-07-01': profile('2020-07-01', WITH_TERMINATE, {
      description: true,
      eventSource: true,
      durationInSeconds: true,
    }),
  });

/**
 * The `api-version` values of `/metadata/instance`, oldest first (IMDS-doc, spec 2). Listed in
 * `/metadata/versions` and in the `newest-versions` of a 400.
 */
export const INSTANCE_API_VERSIONS = [
  '2017-03-01',
  '2017-04-02',
  '2017-08-01',
  '2017-10-01',
  '2017-12-01',
  '2018-02-01',
  '2018-04-02',
  '2018-10-01',
  '2019-02-01',
  '2019-03-11',
  '2019-04-30',
  '2019-06-01',
  '2019-06-04',
  '2019-08-01',
  '2019-08-15',
  '2019-11-01',
  '2020-06-01',
  '2020-07-15',
  '2020-09-01',
  '2020-10-01',
  '2020-12-01',
  '2021-01-01',
  '2021-02-01',
  '2021-03-01',
  '2021-05-01',
  '2021-08-01',
  '2021-10-01',
  '2021-11-01',
  '2021-11-15',
  '2021-12-13',
  '2023-07-01',
  '2023-11-15',
  '2024-03-15',
  '2024-07-17',
  '2025-04-07',
] as const;
/** A valid `api-version` of `/metadata/instance`. */
export type InstanceApiVersion = (typeof INSTANCE_API_VERSIONS)[number];

const SCHEDULED_EVENTS_SET: ReadonlySet<string> = new Set(SCHEDULED_EVENTS_API_VERSIONS);
const INSTANCE_SET: ReadonlySet<string> = new Set(INSTANCE_API_VERSIONS);

/** True for an `api-version` that `/metadata/scheduledevents` accepts (GET and POST alike). */
export function isScheduledEventsApiVersion(value: string | undefined): value is ScheduledEventsApiVersion {
  return value !== undefined && SCHEDULED_EVENTS_SET.has(value);
}

/** True for an `api-version` that `/metadata/instance` accepts. */
export function isInstanceApiVersion(value: string | undefined): value is InstanceApiVersion {
  return value !== undefined && INSTANCE_SET.has(value);
}

/**
 * The `newest-versions` list of a 400 for a missing or invalid `api-version`: the three newest,
 * newest first. SUSE azuremetadata reads it to pick a version it can use.
 */
export function newestVersions(versions: readonly string[], count = 3): string[] {
  return versions.slice(-count).reverse();
}
