import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  EVENT_PHASES,
  EVENT_SOURCES,
  EVENT_TYPES,
  type MaintenanceEvent,
  type ScopeDocument,
} from '../../src/domain/index.js';
import {
  MetadataRequestError,
  SCHEDULED_EVENTS_API_VERSIONS,
  parseStartRequests,
  renderScheduledEvents,
  rfc1123,
  type ScheduledEventsApiVersion,
} from '../../src/imds/index.js';

/** The spec 1.1 table, written out again independently of the implementation's profiles. */
const SPEC_TABLE: Record<ScheduledEventsApiVersion, { since: number; types: string[]; underscore: boolean }> = {
  '2017-03-01': { since: 0, types: ['Freeze', 'Reboot', 'Redeploy'], underscore: true },
  '2017-08-01': { since: 0, types: ['Freeze', 'Reboot', 'Redeploy'], underscore: false },
  '2017-11-01': { since: 0, types: ['Freeze', 'Reboot', 'Redeploy', 'Preempt'], underscore: false },
  '2019-01-01': { since: 0, types: [...EVENT_TYPES], underscore: false },
  '2019-04-01': { since: 1, types: [...EVENT_TYPES], underscore: false },
  '2019-08-01': { since: 2, types: [...EVENT_TYPES], underscore: false },
  '2020-07-01': { since: 3, types: [...EVENT_TYPES], underscore: false },
};

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** An RFC 1123 date built by hand, to check the implementation against. */
function httpDate(ms: number): string {
  const d = new Date(ms);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} GMT`;
}

const eventArb: fc.Arbitrary<MaintenanceEvent> = fc.record({
  eventId: fc.uuid().map((u) => u.toUpperCase()),
  scope: fc.constant('set:s' as const),
  type: fc.constantFrom(...EVENT_TYPES),
  phase: fc.constantFrom(...EVENT_PHASES),
  resources: fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,20}$/), { minLength: 1, maxLength: 4 }),
  description: fc.string({ unit: 'grapheme', maxLength: 40 }),
  source: fc.constantFrom(...EVENT_SOURCES),
  durationInSeconds: fc.integer({ min: -1, max: 3600 }),
  createdAt: fc.constant(0),
  notBefore: fc.integer({ min: Date.UTC(2000, 0, 1), max: Date.UTC(2099, 11, 31) }),
  approvedAt: fc.constant(undefined),
  approvedBy: fc.constant(undefined),
  startedAt: fc.constant(undefined),
  endedAt: fc.constant(undefined),
  lingerMs: fc.constant(0),
  removedAt: fc.constant(undefined),
  removalReason: fc.constant(undefined),
  owner: fc.constant(''),
});

void describe('renderScheduledEvents', () => {
  void test('matches the spec table for any events at any version (property)', () => {
    fc.assert(
      fc.property(
        fc.array(eventArb, { maxLength: 6 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.constantFrom(...SCHEDULED_EVENTS_API_VERSIONS),
        (events, incarnation, version) => {
          const doc: ScopeDocument = { scope: 'set:s', incarnation, events };
          const spec = SPEC_TABLE[version];
          const expected = {
            DocumentIncarnation: incarnation,
            Events: events
              .filter((e) => e.phase !== 'Removed' && spec.types.includes(e.type))
              .map((e) => {
                const started = e.phase !== 'Scheduled';
                const out: Record<string, unknown> = {
                  EventId: e.eventId,
                  EventStatus: started ? 'Started' : 'Scheduled',
                  EventType: e.type,
                  ResourceType: 'VirtualMachine',
                  Resources: e.resources.map((r) => (spec.underscore ? `_${r}` : r)),
                  NotBefore: started ? '' : httpDate(e.notBefore),
                };
                if (spec.since >= 1) out['Description'] = e.description;
                if (spec.since >= 2) out['EventSource'] = e.source;
                if (spec.since >= 3) out['DurationInSeconds'] = e.durationInSeconds;
                return out;
              }),
          };
          const body = renderScheduledEvents(doc, version);
          assert.equal(body, JSON.stringify(expected));
          assert.doesNotMatch(body, /\n|": /, 'compact');
        },
      ),
      { numRuns: 500 },
    );
  });

  void test('shows the incarnation it is given (after a re-enable)', () => {
    const doc: ScopeDocument = { scope: 'vm:x', incarnation: 9, events: [] };
    assert.equal(renderScheduledEvents(doc, '2020-07-01', { incarnation: 1 }), '{"DocumentIncarnation":1,"Events":[]}');
  });
});

void describe('rfc1123', () => {
  void test('weekday from the date, two-digit day, GMT', () => {
    assert.equal(rfc1123(Date.UTC(2026, 3, 11, 22, 26, 58)), 'Sat, 11 Apr 2026 22:26:58 GMT');
    assert.equal(rfc1123(Date.UTC(2016, 8, 19, 18, 29, 47)), 'Mon, 19 Sep 2016 18:29:47 GMT');
    assert.equal(rfc1123(Date.UTC(2028, 1, 29, 0, 0, 0, 999)), 'Tue, 29 Feb 2028 00:00:00 GMT');
    assert.equal(rfc1123(Date.UTC(2018, 0, 24, 21, 20, 44)), 'Wed, 24 Jan 2018 21:20:44 GMT');
  });
});

void describe('parseStartRequests', () => {
  void test('returns the ids in order and ignores other keys and a BOM', () => {
    assert.deepEqual(
      parseStartRequests('\uFEFF{"DocumentIncarnation":"5","StartRequests":[{"EventId":"a"},{"EventId":"B","x":1}]}'),
      ['a', 'B'],
    );
    assert.deepEqual(parseStartRequests('{"StartRequests":[]}'), []);
  });

  void test('throws MALFORMED_BODY for anything else', () => {
    for (const body of [
      '',
      '{',
      '1',
      '"x"',
      '[]',
      '{"startrequests":[]}',
      '{"StartRequests":null}',
      '{"StartRequests":[null]}',
    ]) {
      assert.throws(
        () => parseStartRequests(body),
        (e: unknown) => e instanceof MetadataRequestError && e.code === 'MALFORMED_BODY' && e.status === 400,
        body,
      );
    }
  });
});
