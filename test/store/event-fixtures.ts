import fc from 'fast-check';
import {
  MAX_RENDERABLE_TIME,
  EVENT_PHASES,
  EVENT_SOURCES,
  EVENT_TYPES,
  REMOVAL_REASONS,
  type MaintenanceEvent,
  type ScopeId,
} from '../../src/domain/index.js';

/** A GUID for test event `n`, uppercase as the domain keeps them. */
export function eventId(n: number): string {
  return `00000000-0000-4000-8000-${n.toString(16).toUpperCase().padStart(12, '0')}`;
}

/** A Scheduled event with every optional field undefined; `overrides` replace any field. */
export function scheduledEvent(n: number, overrides: Partial<MaintenanceEvent> = {}): MaintenanceEvent {
  return {
    eventId: eventId(n),
    scope: 'set:web',
    type: 'Freeze',
    phase: 'Scheduled',
    resources: ['web-0', 'web-1'],
    description: 'Host server is undergoing maintenance.',
    source: 'Platform',
    durationInSeconds: -1,
    createdAt: 1_767_225_600_000 + n * 1000,
    notBefore: 1_767_226_500_000 + n * 1000,
    approvedAt: undefined,
    approvedBy: undefined,
    startedAt: undefined,
    endedAt: undefined,
    lingerMs: 300_000,
    removedAt: undefined,
    removalReason: undefined,
    owner: '',
    ...overrides,
  };
}

/** An event with every optional field set, in phase `phase`. */
export function fullEvent(n: number, phase: MaintenanceEvent['phase']): MaintenanceEvent {
  return scheduledEvent(n, {
    scope: 'vm:solo-ü',
    type: 'Redeploy',
    phase,
    resources: ['solo-ü'],
    description: 'quotes \' " and ; -- and emoji 🛠️ and a newline\nhere',
    source: 'User',
    durationInSeconds: 7,
    approvedAt: 1_767_226_000_000 + n,
    approvedBy: 'solo-ü',
    startedAt: 1_767_226_100_000 + n,
    endedAt: 1_767_226_200_000 + n,
    lingerMs: 0,
    removedAt: 1_767_226_500_000 + n,
    removalReason: 'completed',
    owner: 'rollout:R1/step:3',
  });
}

const text = fc.string({ unit: 'grapheme', maxLength: 12 });
/** Any time a client can read back (1970 to 9999): what the domain creates and the store keeps. */
const time = fc.integer({ min: 0, max: MAX_RENDERABLE_TIME });
const optional = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined });

/** Any event a store must keep faithfully: every field, any Unicode text, any renderable time. */
export const arbitraryEvent: fc.Arbitrary<MaintenanceEvent> = fc.record(
  {
    eventId: fc.uuid().map((id) => id.toUpperCase()),
    scope: fc
      .tuple(fc.constantFrom('set:', 'vm:'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }))
      .map(([prefix, name]) => `${prefix}${name}` as ScopeId),
    type: fc.constantFrom(...EVENT_TYPES),
    phase: fc.constantFrom(...EVENT_PHASES),
    resources: fc.array(text, { maxLength: 4 }),
    description: text,
    source: fc.constantFrom(...EVENT_SOURCES),
    durationInSeconds: fc.integer({ min: -1, max: 2 ** 31 }),
    createdAt: time,
    notBefore: time,
    approvedAt: optional(time),
    approvedBy: optional(text),
    startedAt: optional(time),
    endedAt: optional(time),
    lingerMs: fc.nat(),
    removedAt: optional(time),
    removalReason: optional(fc.constantFrom(...REMOVAL_REASONS)),
    owner: text,
  },
  { noNullPrototype: true },
);

/** Sorts events by id, for comparisons that ignore order. */
export function byId(events: readonly MaintenanceEvent[]): MaintenanceEvent[] {
  return [...events].sort((a, b) => (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0));
}
