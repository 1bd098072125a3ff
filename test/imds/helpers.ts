import { spawnSync } from 'node:child_process';
import { request as httpRequest, type Agent, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { ManualClock, type Fleet } from '../../src/domain/index.js';
import {
  createMetadataApp,
  listenMetadata,
  type MetadataApp,
  type MetadataAppOptions,
  type MetadataEventMap,
  type MetadataListeners,
} from '../../src/imds/index.js';
import { MemoryMetadataBackend, buildTestFleet } from '../../src/testing/metadata-backend.js';

/** 2026-04-11 22:11:58 UTC, a Saturday: the SE-doc example's NotBefore minus 15 minutes. */
export const T0 = Date.UTC(2026, 3, 11, 22, 11, 58);
export const SE = '/metadata/scheduledevents';
export const SE_LATEST = `${SE}?api-version=2020-07-01`;
export const META = { Metadata: 'true' } as const;

export const NEWEST_SE = ['2020-07-01', '2019-08-01', '2019-04-01'];
export const NEWEST_INSTANCE = ['2025-04-07', '2024-07-17', '2024-03-15'];
export const INVALID_VERSION_TEXT =
  'Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds';

export type RecordedEvent = {
  [K in keyof MetadataEventMap]: { name: K; payload: MetadataEventMap[K] };
}[keyof MetadataEventMap];

export interface Fixture {
  readonly clock: ManualClock;
  readonly backend: MemoryMetadataBackend;
  readonly app: MetadataApp;
  /** Everything the service reported, in order. */
  readonly events: RecordedEvent[];
  /** In-process request as `vm` (default `as0_0`). */
  fetch(path: string, init?: RequestInit, vm?: string): Promise<Response>;
}

export interface FixtureOptions extends Omit<MetadataAppOptions, 'backend' | 'onEvent'> {
  readonly fleet?: Fleet;
}

/**
 * The default test fleet: sets `as0` and `as1` of three VMs (`as0_0`…`as1_2`) and the standalone
 * `solo0_0`. The rate limit is off unless given: the manual clock stands still, so a frozen bucket
 * would otherwise refuse the eleventh request of a test.
 */
export function fixture(options: FixtureOptions = {}): Fixture {
  const clock = new ManualClock(T0);
  const { fleet, ...appOptions } = options;
  const backend = new MemoryMetadataBackend({ fleet: fleet ?? buildTestFleet(), clock });
  const events: RecordedEvent[] = [];
  const app = createMetadataApp({
    rateLimit: false,
    ...appOptions,
    backend,
    onEvent: (name, payload) => events.push({ name, payload } as RecordedEvent),
  });
  return {
    clock,
    backend,
    app,
    events,
    fetch: async (path, init = {}, vm = 'as0_0') =>
      app.fetch(new Request(`http://169.254.169.254${path}`, { headers: META, ...init }), vm),
  };
}

export interface Served {
  readonly listeners: MetadataListeners;
  /** The TCP port serving `vm`. */
  port(vm: string): number;
}

/** Serves `app` on 127.0.0.1, one ephemeral port per VM. */
export async function serve(app: MetadataApp, vms: readonly string[]): Promise<Served> {
  const listeners = await listenMetadata({
    app,
    bindings: vms.map((vm) => ({ vm, address: { host: '127.0.0.1', port: 0 } })),
  });
  return {
    listeners,
    port(vm) {
      const found = listeners.addresses.find((b) => b.vm === vm);
      if (found === undefined || !('port' in found.address)) throw new Error(`no TCP listener for ${vm}`);
      return found.address.port;
    },
  };
}

export interface HttpResult {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface HttpOptions {
  readonly port?: number;
  readonly socketPath?: string;
  readonly method?: string;
  readonly path: string;
  /** Sent exactly as given (names keep their letter case). Default: `Metadata: true`. */
  readonly headers?: OutgoingHttpHeaders;
  /** A string is sent with a Content-Length; an array of chunks is sent chunked. */
  readonly body?: string | readonly string[];
  /** Default `false`: a fresh connection that closes after the response. */
  readonly agent?: Agent | false;
}

/** One real HTTP request through node:http. */
export function http(options: HttpOptions): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        ...(options.socketPath === undefined ? { port: options.port } : { socketPath: options.socketPath }),
        method: options.method ?? 'GET',
        path: options.path,
        headers: options.headers ?? META,
        agent: options.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    // A server may answer (413) and close before the whole body is written; the answer is what counts.
    req.on('error', reject);
    const body = options.body;
    if (typeof body === 'string') {
      req.setHeader('content-length', Buffer.byteLength(body));
      req.end(body);
    } else if (body !== undefined) {
      for (const chunk of body) req.write(chunk);
      req.end();
    } else {
      req.end();
    }
  });
}

/** Parses a JSON body as the wire document (for assertions on shape). */
export function json<T = unknown>(body: string): T {
  return JSON.parse(body) as T;
}

/** The `{"StartRequests":[…]}` body for `ids`. */
export function startRequests(...ids: string[]): string {
  return JSON.stringify({ StartRequests: ids.map((EventId) => ({ EventId })) });
}

/** Runs `fn` against a fixture served on real sockets (one per VM), closing them afterwards. */
export async function withServer<T>(
  options: FixtureOptions,
  vms: readonly string[],
  fn: (f: Fixture, s: Served) => Promise<T>,
): Promise<T> {
  const f = fixture(options);
  const s = await serve(f.app, vms);
  try {
    return await fn(f, s);
  } finally {
    await s.listeners.close();
  }
}

const inCi = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';

/**
 * The skip reason of checks whose verifier is Debian's openssl: none where it runs; on a machine
 * without it, the reason; CI installs it (.ci/run), so there a missing openssl fails, never skips.
 */
export const opensslSkip: string | false =
  inCi || spawnSync('openssl', ['version']).status === 0
    ? false
    : 'no openssl on this machine (apt-get install openssl); CI=true makes this a failure';
