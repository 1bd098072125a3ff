/**
 * Seeded generators of hostile input for the metadata listeners and the control API. Every choice
 * comes from one {@link Random}, so a seed replays the same sequence of choices (the event ids it
 * picks come from the server's state at that moment).
 */
import type { Random } from '../crash/harness.js';
import type { Actor } from './state.js';
import { SCOPES, scopeOfVm, type Principal } from './target.js';
import type { Delivery } from './wire.js';

/** One input: bytes for one connection, where they go, and what the sender may do. */
export interface FuzzInput {
  readonly surface: 'metadata' | 'control';
  /** The VM whose listener receives it (metadata inputs). */
  readonly vm?: string;
  readonly actor: Actor;
  /** A short human description: method, path, the notable choices. */
  readonly label: string;
  readonly bytes: Buffer;
  readonly delivery: Delivery;
  /**
   * A metadata request that IMDS would not serve as the Scheduled Events document (a path or
   * request line spelled otherwise than `/metadata/scheduledevents` over HTTP/1.x, or a query in a
   * fragment): a 200 for it is a finding.
   */
  readonly oddSpelling?: string;
}

/** What the generators know of the server: event ids by scope, owners and sources. */
export interface Knowledge {
  readonly events: readonly { eventId: string; scope: string; owner: string; source: string; phase: string }[];
  readonly operator: Principal;
  readonly tenants: readonly Principal[];
}

const VMS = [...SCOPES.values()].flat();
const API_VERSIONS = ['2020-07-01', '2019-08-01', '2019-01-01', '2017-11-01', '2017-08-01'];
const BAD_VERSIONS = ['', '2020-07-02', 'latest', '2020-07-01%00', '9999-99-99', 'x'.repeat(300), '2020-07-01 '];
const EVENT_TYPES = ['Freeze', 'Reboot', 'Redeploy', 'Preempt', 'Terminate', 'freeze', 'Live', ''];

/** Notices and times at and past every bound: what issue 12 item 1 found and its neighbours. */
const HOSTILE_NUMBERS: readonly unknown[] = [
  8.7e15,
  8_640_000_000_000_001,
  2 ** 53 - 1,
  2 ** 53,
  -1,
  0,
  1e308,
  -0,
  1.5,
  Number.MAX_SAFE_INTEGER,
  99_999_999_999_999,
  3_600_000,
];
const HOSTILE_DURATIONS: readonly unknown[] = [
  '100000000d',
  '1e9d',
  '9999999999999999h',
  '1h',
  '15m',
  '0s',
  '-5m',
  '5',
  'PT15M',
  '',
  '1h1h',
  '\u0000',
  'NaN',
  'Infinity',
];
const HOSTILE_DATES = [
  '+275760-09-13T00:00:00.000Z',
  '+275760-09-14T00:00:00.000Z',
  '9999-12-31T23:59:59Z',
  '1970-01-01T00:00:00Z',
  '2000-02-30T00:00:00Z',
  'not a date',
];

/** A GUID from the seeded generator (upper case, as the service writes event ids). */
export function uuid(random: Random): string {
  const hex = Array.from({ length: 32 }, () => random.int(0, 15).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`.toUpperCase();
}

function pickWeighted<T>(random: Random, items: readonly (readonly [number, T])[]): T {
  const total = items.reduce((s, [w]) => s + w, 0);
  let r = random.next() * total;
  for (const [w, item] of items) {
    r -= w;
    if (r < 0) return item;
  }
  const last = items[items.length - 1];
  if (!last) throw new Error('no items');
  return last[1];
}

function deep(depth: number, open: string, close: string, inner = '1'): string {
  return open.repeat(depth) + inner + close.repeat(depth);
}

/** A hostile JSON-ish body: malformed, wrong types, deep, huge. */
function junkBody(random: Random, huge: boolean): { text: string; label: string } {
  return pickWeighted<() => { text: string; label: string }>(random, [
    [3, () => ({ text: '{"type":', label: 'truncated JSON' })],
    [2, () => ({ text: '{type: Freeze}', label: 'unquoted JSON' })],
    [2, () => ({ text: 'null', label: 'null' })],
    [2, () => ({ text: '[]', label: 'array' })],
    [2, () => ({ text: '"x"', label: 'string' })],
    [1, () => ({ text: '\uFEFF{}', label: 'BOM' })],
    [1, () => ({ text: '{"__proto__":{"polluted":1}}', label: '__proto__' })],
    [1, () => ({ text: '{"a":1,"a":2}', label: 'duplicate key' })],
    [2, () => ({ text: deep(random.pick([64, 1000, 20_000]), '[', ']'), label: 'deep array' })],
    [2, () => ({ text: deep(random.pick([64, 1000, 20_000]), '{"a":', '}'), label: 'deep object' })],
    [
      huge ? 2 : 1,
      () => {
        const n = huge ? random.pick([100_000, 1_000_000]) : random.pick([1000, 20_000]);
        return { text: `[${'1,'.repeat(n)}1]`, label: `array of ${n}` };
      },
    ],
    [1, () => ({ text: '1'.repeat(random.pick([400, 5000])), label: 'huge number literal' })],
    [1, () => ({ text: Buffer.from([0xff, 0xfe, 0x00, 0x7b]).toString('latin1'), label: 'binary' })],
  ])();
}

// ---------------------------------------------------------------------------------------------
// Request assembly

interface RequestParts {
  method: string;
  target: string;
  version: string;
  headers: [string, string][];
  body: Buffer;
  /** How the body's length is declared. */
  framing: 'length' | 'chunked' | 'none' | 'lying-length' | 'bad-length' | 'bad-chunked' | 'both';
}

function assemble(random: Random, p: RequestParts): { bytes: Buffer; label: string } {
  const headers = [...p.headers];
  let body = p.body;
  let label = '';
  switch (p.framing) {
    case 'length':
      if (body.length > 0 || p.method === 'POST') headers.push(['Content-Length', String(body.length)]);
      break;
    case 'none':
      break;
    case 'lying-length': {
      const declared = random.pick([body.length + 10, Math.max(0, body.length - 3), 0]);
      headers.push(['Content-Length', String(declared)]);
      label = ` CL=${declared}/${body.length}`;
      break;
    }
    case 'bad-length': {
      const v = random.pick([
        '-1',
        'abc',
        '1e3',
        '99999999999999999999',
        ' 5',
        '0x10',
        `${body.length}, ${body.length}`,
      ]);
      headers.push(['Content-Length', v]);
      if (random.next() < 0.3) headers.push(['Content-Length', String(body.length + 1)]);
      label = ` CL=${JSON.stringify(v)}`;
      break;
    }
    case 'chunked': {
      headers.push(['Transfer-Encoding', 'chunked']);
      const parts: Buffer[] = [];
      for (let i = 0; i < body.length; i += 7)
        parts.push(
          Buffer.from(`${Math.min(7, body.length - i).toString(16)}\r\n`),
          body.subarray(i, i + 7),
          Buffer.from('\r\n'),
        );
      parts.push(Buffer.from('0\r\n\r\n'));
      body = Buffer.concat(parts);
      label = ' chunked';
      break;
    }
    case 'bad-chunked': {
      headers.push(['Transfer-Encoding', random.pick(['chunked', 'chunked, identity', 'gzip', ' chunked'])]);
      body = Buffer.concat([
        Buffer.from(random.pick(['zz\r\n', 'ffffffffffffffff\r\n', '5\r\nab\r\n0\r\n\r\n', '3;x=y\r\nabc\r\n'])),
        body,
      ]);
      label = ' bad chunked';
      break;
    }
    case 'both':
      headers.push(['Content-Length', String(body.length)], ['Transfer-Encoding', 'chunked']);
      label = ' CL+TE';
      break;
  }
  const requestLine = p.version === '' ? `${p.method} ${p.target}` : `${p.method} ${p.target} ${p.version}`;
  const head = `${requestLine}\r\n${headers.map(([k, v]) => `${k}: ${v}`).join('\r\n')}${headers.length ? '\r\n' : ''}\r\n`;
  return { bytes: Buffer.concat([Buffer.from(head, 'latin1'), body]), label };
}

function framing(random: Random): RequestParts['framing'] {
  return pickWeighted(random, [
    [14, 'length' as const],
    [2, 'chunked' as const],
    [1, 'lying-length' as const],
    [1, 'bad-length' as const],
    [1, 'bad-chunked' as const],
    [1, 'both' as const],
  ]);
}

function httpVersion(random: Random): string {
  return pickWeighted(random, [
    [20, 'HTTP/1.1'],
    [3, 'HTTP/1.0'],
    [1, 'HTTP/2.0'],
    [1, 'HTTP/1.2'],
    [1, 'HTTP/0.9'],
    [1, 'HTTP/9.9'],
    [1, ''],
    [1, 'http/1.1'],
  ]);
}

function delivery(random: Random, options: { slow: boolean }): Delivery {
  return pickWeighted<Delivery>(random, [
    [40, { kind: 'whole' }],
    [
      options.slow ? 2 : 0.5,
      { kind: 'trickle', chunks: random.int(2, 6), gapMs: random.int(20, options.slow ? 400 : 80) },
    ],
    [2, { kind: 'cut', bytes: random.int(1, 60) }],
  ]);
}

function hugeHeader(random: Random, big: boolean): [string, string] {
  const size = big ? random.pick([16_000, 70_000, 1_000_000]) : random.pick([8_000, 16_000, 70_000]);
  return [random.pick(['X-Pad', 'Cookie', 'Metadata']), 'a'.repeat(size)];
}

// ---------------------------------------------------------------------------------------------
// Metadata listeners

/** The Scheduled Events path, spelled as IMDS serves it or otherwise. */
function metadataPath(random: Random): { path: string; odd?: string; unjudged?: string } {
  return pickWeighted<() => { path: string; odd?: string; unjudged?: string }>(random, [
    [30, () => ({ path: '/metadata/scheduledevents' })],
    [4, () => ({ path: '/metadata/instance' })],
    [1, () => ({ path: '/metadata/instance/compute/vmId' })],
    [2, () => ({ path: '/metadata/versions' })],
    [1, () => ({ path: '/metadata' })],
    [1, () => ({ path: '/' })],
    [1, () => ({ path: '/metadata/attested/document' })],
    [1, () => ({ path: '/metadata/sch%65duledevents', odd: '%65' })],
    [1, () => ({ path: '/metadata/scheduledevent%73', odd: '%73' })],
    [1, () => ({ path: '/metadata/%73cheduledevents', odd: '%73' })],
    [1, () => ({ path: '/metadata/x/../scheduledevents', odd: '../' })],
    [1, () => ({ path: '/metadata/./scheduledevents', odd: './' })],
    [1, () => ({ path: '/metadata/%2e%2e/metadata/scheduledevents', odd: '%2e%2e' })],
    [1, () => ({ path: '/metadata/x/%2e%2e/scheduledevents', odd: '%2e%2e' })],
    [1, () => ({ path: '/x/../metadata/scheduledevents', odd: '../' })],
    [1, () => ({ path: '//metadata/scheduledevents', unjudged: '//' })],
    [1, () => ({ path: '/metadata//scheduledevents', unjudged: '//' })],
    [1, () => ({ path: '/METADATA/SCHEDULEDEVENTS', unjudged: 'upper case' })],
    [1, () => ({ path: '/metadata/scheduledevents/', unjudged: 'trailing /' })],
    [1, () => ({ path: '/metadata\\scheduledevents', unjudged: 'backslash' })],
    [1, () => ({ path: '/metadata/scheduledevents%00', odd: '%00' })],
    [1, () => ({ path: '/metadata/scheduledevents;x=1', unjudged: ';' })],
    [1, () => ({ path: `/metadata/${'a/'.repeat(random.pick([100, 4000]))}`, odd: 'long path' })],
    [1, () => ({ path: '/metadata/scheduledevents\u00e9', unjudged: 'non-ASCII' })],
  ])();
}

function metadataQuery(random: Random): { query: string; odd?: string } {
  const v = random.pick(API_VERSIONS);
  return pickWeighted<() => { query: string; odd?: string }>(random, [
    [30, () => ({ query: `?api-version=${v}` })],
    [2, () => ({ query: '' })],
    [2, () => ({ query: `?api-version=${random.pick(BAD_VERSIONS)}` })],
    [1, () => ({ query: `?api-version=${v}&api-version=${v}` })],
    [1, () => ({ query: `#?api-version=${v}`, odd: 'query in #fragment' })],
    [1, () => ({ query: `?x=1#&api-version=${v}`, odd: 'query in #fragment' })],
    [1, () => ({ query: `?api%2Dversion=${v}` })],
    [1, () => ({ query: `?api-version=${v}&format=text` })],
    [1, () => ({ query: `?api-version=${v}&${'a=b&'.repeat(random.pick([50, 3000]))}` })],
    [1, () => ({ query: `?api-version=${encodeURIComponent(v)}%` })],
  ])();
}

function startRequestsBody(random: Random, vm: string, k: Knowledge): { text: string; label: string } {
  const scope = scopeOfVm(vm);
  const own = k.events.filter((e) => e.scope === scope && e.phase === 'Scheduled');
  const other = k.events.filter((e) => e.scope !== scope && e.phase !== 'Removed');
  const anyId = (list: typeof k.events): string => (list.length ? random.pick(list).eventId : uuid(random));
  const ids = (id: string): string => JSON.stringify({ StartRequests: [{ EventId: id }] });
  return pickWeighted<() => { text: string; label: string }>(random, [
    [6, () => ({ text: ids(anyId(own)), label: 'approve own scope' })],
    [6, () => ({ text: ids(anyId(other)), label: 'approve OTHER scope' })],
    [2, () => ({ text: ids(anyId(other).toLowerCase()), label: 'approve OTHER scope (lower case id)' })],
    [
      2,
      () => ({
        text: JSON.stringify({ StartRequests: [{ EventId: anyId(own) }, { EventId: anyId(other) }] }),
        label: 'approve own + OTHER scope',
      }),
    ],
    [1, () => ({ text: ids(uuid(random).toUpperCase()), label: 'approve unknown id' })],
    [1, () => ({ text: ids(` ${anyId(other)} `), label: 'approve OTHER scope (padded id)' })],
    [1, () => ({ text: JSON.stringify({ StartRequests: 'x' }), label: 'StartRequests string' })],
    [1, () => ({ text: JSON.stringify({ StartRequests: [{ EventId: 5 }] }), label: 'EventId number' })],
    [1, () => ({ text: JSON.stringify({ StartRequests: [{ EventId: null }] }), label: 'EventId null' })],
    [1, () => ({ text: JSON.stringify({ StartRequests: [] }), label: 'no StartRequests' })],
    [1, () => ({ text: '', label: 'empty body' })],
    [
      1,
      () => ({
        text: JSON.stringify({
          StartRequests: Array.from({ length: random.pick([1000, 50_000]) }, () => ({ EventId: anyId(other) })),
        }),
        label: 'many StartRequests (OTHER scope)',
      }),
    ],
    [3, () => junkBody(random, false)],
  ])();
}

/** One input for a metadata listener. */
export function metadataInput(
  random: Random,
  k: Knowledge,
  vm: string,
  options: { slow: boolean; huge: boolean },
): FuzzInput {
  const actor: Actor = { kind: 'metadata', vm, scope: scopeOfVm(vm) };
  const d = delivery(random, options);
  if (random.next() < 0.03) {
    const n = random.int(1, options.huge ? 200_000 : 4096);
    const bytes = Buffer.alloc(n);
    for (let i = 0; i < n; i++) bytes[i] = random.int(0, 255);
    return { surface: 'metadata', vm, actor, label: `garbage ${n} bytes`, bytes, delivery: d };
  }
  const method = pickWeighted(random, [
    [20, 'GET'],
    [12, 'POST'],
    [1, 'PUT'],
    [1, 'DELETE'],
    [1, 'HEAD'],
    [1, 'OPTIONS'],
    [1, 'PATCH'],
    [1, 'get'],
    [0.5, 'TRACE'],
    [0.5, 'CONNECT'],
    [0.5, 'G\u0000T'],
    [0.5, 'X'.repeat(200)],
  ]);
  const { path, odd: oddPath } = metadataPath(random);
  const { query, odd: oddQuery } = metadataQuery(random);
  const version = httpVersion(random);
  const absolute = random.next() < 0.05;
  const target = absolute ? `http://169.254.169.254${path}${query}` : `${path}${query}`;
  const headers: [string, string][] = [];
  if (random.next() < 0.95)
    headers.push(['Host', random.pick(['169.254.169.254', '169.254.169.254', 'evil.example', ''])]);
  const meta = pickWeighted(random, [
    [20, ['true']],
    [2, ['True']],
    [1, []],
    [1, ['false']],
    [1, ['true', 'false']],
    [1, ['true', 'true']],
    [1, ['']],
    [0.5, [' true ']],
  ]);
  for (const v of meta) headers.push(['Metadata', v]);
  if (random.next() < 0.03) headers.push(['X-Forwarded-For', '10.0.0.1']);
  if (random.next() < 0.04) headers.push(hugeHeader(random, options.huge));
  if (random.next() < 0.02) for (let i = 0; i < random.pick([100, 2000]); i++) headers.push([`X-H${i}`, 'v']);
  if (random.next() < 0.05) headers.push(['If-None-Match', random.pick(['*', '"x"', 'W/"1"'])]);
  headers.push(['Connection', 'close']);
  let body = { text: '', label: '' };
  if (method === 'POST' || random.next() < 0.03) body = startRequestsBody(random, vm, k);
  if (method === 'POST' && random.next() < 0.8) headers.push(['Content-Type', 'application/json']);
  const { bytes, label: framingLabel } = assemble(random, {
    method,
    target,
    version,
    headers,
    body: Buffer.from(body.text, 'utf8'),
    framing: framing(random),
  });
  const odd = [
    oddPath,
    oddQuery,
    absolute ? 'absolute-form target' : undefined,
    /^HTTP\/1\.[01]$/.test(version) ? undefined : `request line ${JSON.stringify(version)}`,
  ].filter((x): x is string => x !== undefined);
  const shortTarget = target.length > 90 ? `${target.slice(0, 90)}…(${target.length})` : target;
  return {
    surface: 'metadata',
    vm,
    actor,
    label: `${vm}: ${method.slice(0, 12)} ${shortTarget} ${version}${meta.length === 1 && meta[0] === 'true' ? '' : ` Metadata=${JSON.stringify(meta)}`}${framingLabel}${body.label ? ` [${body.label}]` : ''}${d.kind === 'whole' ? '' : ` (${d.kind})`}`,
    bytes,
    delivery: d,
    // Only a GET of the document is judged: the spelling oracle looks for the document served.
    ...(odd.length > 0 && method === 'GET' && path.toLowerCase().includes('scheduledevent')
      ? { oddSpelling: odd.join(', ') }
      : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Control API

function scheduleBody(random: Random, k: Knowledge, principal: Principal | undefined): { text: string; label: string } {
  const ownVms = principal && principal.role === 'tenant' ? principal.vms : VMS;
  const otherVms = VMS.filter((vm) => !ownVms.includes(vm));
  const vmsOf = (): { vms: unknown; label: string } =>
    pickWeighted<() => { vms: unknown; label: string }>(random, [
      [10, () => ({ vms: [random.pick(ownVms)], label: 'own vm' })],
      [3, () => ({ vms: [random.pick(otherVms.length ? otherVms : VMS)], label: 'OTHER vm' })],
      [
        1,
        () => ({ vms: [random.pick(ownVms), random.pick(otherVms.length ? otherVms : VMS)], label: 'own+OTHER vms' }),
      ],
      [1, () => ({ vms: ['web_0', 'db_0'], label: 'two scopes' })],
      [1, () => ({ vms: ['nope'], label: 'unknown vm' })],
      [1, () => ({ vms: [], label: 'no vms' })],
      [1, () => ({ vms: 'web_0', label: 'vms string' })],
      [1, () => ({ vms: [1], label: 'vms number' })],
      [1, () => ({ vms: Array.from({ length: 5000 }, () => random.pick(ownVms)), label: '5000 vms' })],
    ])();
  return pickWeighted<() => { text: string; label: string }>(random, [
    [
      12,
      () => {
        const { vms, label } = vmsOf();
        const type = random.next() < 0.9 ? random.pick(['Freeze', 'Reboot', 'Redeploy']) : random.pick(EVENT_TYPES);
        const body: Record<string, unknown> = { type, vms };
        const notice = pickWeighted<() => [unknown, string]>(random, [
          [6, () => ['1h', 'notice 1h']],
          [2, () => [random.pick(HOSTILE_DURATIONS), '']],
          [2, () => [random.pick(HOSTILE_NUMBERS), '']],
          [1, () => [undefined, 'no notice']],
        ])();
        if (notice[0] !== undefined) body.notice = notice[0];
        if (random.next() < 0.1) body.notBefore = random.pick(HOSTILE_DATES);
        if (random.next() < 0.1) body.durationInSeconds = random.pick([...HOSTILE_NUMBERS, 'x', 5, -1]);
        if (random.next() < 0.1) body.source = random.pick(['Platform', 'User', 'platform']);
        if (random.next() < 0.05) body.description = 'd'.repeat(random.pick([10, 513, 100_000]));
        if (random.next() < 0.03) body.extra = true;
        const text = JSON.stringify(body);
        // The label keeps every field readable: long arrays and strings are shown by their size.
        const shown = JSON.stringify(body, (_key, value: unknown) =>
          Array.isArray(value) && value.length > 8
            ? `[${value.length} items]`
            : typeof value === 'string' && value.length > 40
              ? `<${value.length} chars>`
              : value,
        );
        return { text, label: `${label} ${shown}` };
      },
    ],
    [1, () => ({ text: '{"type":"Freeze","vms":["web_0"],"notice":1e400}', label: 'notice 1e400' })],
    [1, () => ({ text: `{"type":"Freeze","vms":["web_0"],"notice":${'9'.repeat(40)}}`, label: 'notice 40 digits' })],
    [2, () => junkBody(random, false)],
  ])();
}

/** One input for the control API, as `principal` (undefined: no or a bad token). */
export function controlInput(random: Random, k: Knowledge, options: { slow: boolean; huge: boolean }): FuzzInput {
  const principal = pickWeighted<Principal | undefined>(random, [
    [3, k.operator],
    ...k.tenants.map((t) => [3, t] as const),
    [1, undefined],
  ]);
  const actor: Actor = { kind: 'control', principal };
  const d = delivery(random, options);
  const who = principal?.name ?? 'anonymous';
  if (random.next() < 0.02) {
    const n = random.int(1, 4096);
    const bytes = Buffer.alloc(n);
    for (let i = 0; i < n; i++) bytes[i] = random.int(0, 255);
    return { surface: 'control', actor, label: `control garbage ${n} bytes`, bytes, delivery: d };
  }
  const live = k.events.filter((e) => e.phase !== 'Removed');
  const eventId = (): string =>
    pickWeighted<() => string>(random, [
      [8, () => (live.length ? random.pick(live).eventId : uuid(random))],
      [1, () => uuid(random)],
      [1, () => (live.length ? random.pick(live).eventId.toLowerCase() : 'x')],
      [1, () => random.pick(['%2e%2e', '..', 'x'.repeat(3000), '%00', '%E0%A4%A'])],
    ])();
  let label = '';
  let body: { text: string; label: string } | undefined;
  const route = pickWeighted<() => [string, string]>(random, [
    [3, () => ['GET', '/v1/events']],
    [1, () => ['GET', '/v1/events?all=true']],
    [2, () => ['GET', `/v1/events/${eventId()}`]],
    [12, () => ['POST', '/v1/events']],
    [8, () => ['POST', `/v1/events/${eventId()}/cancel`]],
    [1, () => ['GET', '/v1/health']],
    [1, () => ['GET', '/v1/whoami']],
    [1, () => ['GET', '/v1/fleet']],
    [2, () => ['GET', `/v1/vms/${random.pick([...VMS, 'nope', '..%2f', '%2e%2e'])}/scheduled-events`]],
    [1, () => ['POST', '/v1/tokens']],
    [1, () => ['POST', '/v1/plans']],
    [1, () => ['POST', '/v1/rollouts']],
    [1, () => ['GET', '/v1/rollouts']],
    [0.5, () => ['GET', '/openapi.json']],
    [0.5, () => ['GET', '/metrics']],
    [0.5, () => ['GET', '/']],
    [0.5, () => [random.pick(['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']), '/v1/events']],
    [0.5, () => ['POST', '/v1/events/../events']],
    [0.5, () => ['POST', '/v1/%65vents']],
  ])();
  const [method, path] = route;
  if (method === 'POST') {
    if (path === '/v1/events') body = scheduleBody(random, k, principal);
    else if (path === '/v1/tokens')
      body =
        random.next() < 0.5
          ? { text: JSON.stringify({ tenant: 'x', vms: [random.pick(VMS)] }), label: 'token' }
          : junkBody(random, false);
    else if (path === '/v1/plans' || path === '/v1/rollouts')
      body = random.pick([
        {
          text: JSON.stringify({ update: { id: 'u', kind: 'host-patch', expectedApplyMs: 1e300 } }),
          label: 'apply 1e300',
        },
        { text: JSON.stringify({ update: {} }), label: 'empty update' },
        {
          text: JSON.stringify({ update: { id: 'u', kind: 'nope' }, policy: { pauseBudgetMs: -1 } }),
          label: 'bad kind',
        },
        junkBody(random, false),
      ]);
    else body = random.next() < 0.8 ? { text: '', label: '' } : junkBody(random, false);
  }
  if (body && options.huge && random.next() < 0.01) {
    const size = random.pick([8 << 20, 32 << 20]);
    body = {
      text: `{"type":"Freeze","vms":["web_0"],"description":"${'a'.repeat(size)}"}`,
      label: `${size >> 20} MB body`,
    };
  }
  const headers: [string, string][] = [['Host', '127.0.0.1']];
  const auth = principal?.token ?? random.pick(['nope', '', 'x'.repeat(5000)]);
  const authStyle = pickWeighted(random, [
    [20, 'bearer'],
    [1, 'lower'],
    [1, 'twice'],
    [1, 'query'],
    [1, 'none'],
  ]);
  let target = path;
  if (authStyle === 'bearer') headers.push(['Authorization', `Bearer ${auth}`]);
  else if (authStyle === 'lower') headers.push(['authorization', `bearer   ${auth}`]);
  else if (authStyle === 'twice') headers.push(['Authorization', `Bearer ${auth}`], ['Authorization', 'Bearer nope']);
  else if (authStyle === 'query') target += `${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(auth)}`;
  if (body) headers.push(['Content-Type', random.next() < 0.9 ? 'application/json' : 'text/plain']);
  if (random.next() < 0.03) headers.push(hugeHeader(random, options.huge));
  headers.push(['Connection', 'close']);
  const version = random.next() < 0.9 ? 'HTTP/1.1' : httpVersion(random);
  const { bytes, label: framingLabel } = assemble(random, {
    method,
    target,
    version,
    headers,
    body: Buffer.from(body?.text ?? '', 'utf8'),
    framing: body ? framing(random) : 'none',
  });
  label = `${who}: ${method} ${target.length > 90 ? `${target.slice(0, 90)}…` : target}${version === 'HTTP/1.1' ? '' : ` ${version}`}${authStyle === 'bearer' ? '' : ` auth=${authStyle}`}${framingLabel}${body?.label ? ` [${body.label}]` : ''}${d.kind === 'whole' ? '' : ` (${d.kind})`}`;
  return { surface: 'control', actor, label, bytes, delivery: d };
}
