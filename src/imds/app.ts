import { Hono } from 'hono';
import { HOUR, IntermissionError, coerceError, scopeOf, type ScopeDocument, type Vm } from '../domain/index.js';
import { servesAttested } from './attested/document.js';
import { attestedResponse } from './attested/respond.js';
import type { AttestationSigner } from './attested/signer.js';
import type { MetadataBackend } from './backend.js';
import { MetadataRequestError } from './errors.js';
import type { MetadataEventListener, MetadataEventMap } from './events.js';
import { instanceDocument, selectInstanceNode, type InstanceDocument } from './instance.js';
import { rawTargetVerdict, type RawRequestLine } from './raw-target.js';
import { parseStartRequests } from './scheduled-events.js';
import {
  INSTANCE_API_VERSIONS,
  SCHEDULED_EVENTS_API_VERSIONS,
  isInstanceApiVersion,
  isScheduledEventsApiVersion,
  newestVersions,
  type InstanceApiVersion,
  type ScheduledEventsApiVersion,
} from './versions.js';
import { checkDeclaredLength, readBodyText } from './internal/body.js';
import { ifNoneMatchMatches } from './internal/etag.js';
import { parseQuery, type Query } from './internal/query.js';
import { TokenBuckets } from './internal/rate-limit.js';
import { ScopeDocuments, type ScopeState } from './internal/scope-documents.js';

/** The per-VM rate limit: a token bucket refilled from the backend's clock. */
export interface MetadataRateLimit {
  /** Sustained rate per VM. Default 5 (IMDS: "about 5 requests per second"). */
  readonly requestsPerSecond?: number;
  /**
   * Requests a VM may send at once. Default 10: a guest agent reading instance metadata and a 1 Hz
   * scheduled-events poller doing GET + POST stay far below it and are never throttled.
   */
  readonly burst?: number;
}

/** Options of {@link createMetadataApp}. */
export interface MetadataAppOptions {
  /** Where events, instance facts, approvals and polls go. */
  readonly backend: MetadataBackend;
  /** Per-VM rate limit, or `false` for none. Default: 5 req/s with a burst of 10. */
  readonly rateLimit?: MetadataRateLimit | false;
  /**
   * How long the first scheduled-events request of a scope waits, as Azure's enablement does (up to
   * 120 s there). Default 0: real clients time out after 2 to 15 s.
   */
  readonly enablementDelayMs?: number;
  /**
   * A scope that makes no scheduled-events request for this long is disabled; its next GET enables
   * it again and the incarnation it shows restarts at 1, as Azure does after 24 h. Default
   * `Infinity` (never): our invariant is that a DocumentIncarnation never goes down, and clients
   * cope with an incarnation that did not reset (azure-events-az only compares for change). Set
   * 24 h to reproduce Azure exactly.
   */
  readonly disableAfterIdleMs?: number;
  /** Largest request body accepted, in bytes; bigger ones get 413. Default 64 KiB. */
  readonly maxBodyBytes?: number;
  /**
   * Signs `/metadata/attested/document` (see {@link openAttestationKey}). Without it that path is
   * answered 404, as any path the service does not serve.
   */
  readonly attestation?: AttestationSigner;
  /** Receives what the service reports (approvals, unknown ids, refusals, failures). */
  readonly onEvent?: MetadataEventListener;
}

/** Hono's environment: the name of the VM the request came from, set by the listener. */
export interface MetadataEnv {
  Bindings: {
    /** The calling VM, known from the channel the request arrived on, never from the request. */
    readonly vm: string;
  };
}

/** The Azure-compatible metadata service as a fetch handler. */
export interface MetadataApp {
  /**
   * Answers `request` on behalf of `vm`. The caller's identity is this argument (the listener knows
   * which socket the request came through); nothing in the request can change it.
   */
  fetch(request: Request, vm: string): Response | Promise<Response>;
  /**
   * Judges the raw request line (see {@link rawTargetVerdict}) before `fetch`: the listener calls it
   * with what only the socket still knows. Returns the answer to send instead, or undefined.
   */
  preflight(line: RawRequestLine, vm: string): PreflightAnswer | undefined;
  /** The underlying Hono app (env `{ vm }`), e.g. for `hono.request(path, init, { vm })` in tests. */
  readonly hono: Hono<MetadataEnv>;
}

/** A refusal made before the app: written to the socket as it is. */
export interface PreflightAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** Default per-VM rate: IMDS throttles at "about 5 requests per second". */
export const DEFAULT_RATE_LIMIT = Object.freeze({ requestsPerSecond: 5, burst: 10 });
/** Default body bound: an approval of hundreds of events fits; a runaway upload does not. */
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
/** Azure disables scheduled events for a service after 24 hours without a request. */
export const DEFAULT_DISABLE_AFTER_IDLE_MS = Number.POSITIVE_INFINITY;
/** Azure's idle time before Scheduled Events is disabled for a service. */
export const AZURE_DISABLE_AFTER_IDLE_MS = 24 * HOUR;

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
const TEXT_CONTENT_TYPE = 'text/plain; charset=utf-8';
const SCHEDULED_EVENTS_METHODS = 'GET, POST';
const GET_ONLY = 'GET';
const INSTANCE_PREFIX = '/metadata/instance';
const SCHEDULED_EVENTS_NEWEST = newestVersions(SCHEDULED_EVENTS_API_VERSIONS);
const INSTANCE_NEWEST = newestVersions(INSTANCE_API_VERSIONS);
const VERSIONS_BODY = JSON.stringify({ apiVersions: INSTANCE_API_VERSIONS });
const EMPTY_OK_HEADERS: Readonly<Record<string, string>> = Object.freeze({ 'content-length': '0' });

/** Reason texts of errors raised by the backend, by status: internals are not shown to guests. */
const STATUS_TEXT: Readonly<Record<number, string>> = {
  400: 'Bad request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not found',
  409: 'Conflict',
  500: 'Internal server error',
  503: 'Service unavailable',
  504: 'Gateway timeout',
};

/**
 * Builds the metadata service: `/metadata/scheduledevents` (GET, POST), `/metadata/instance` with
 * route filtering, `/metadata/versions`, and Azure's error answers (spec sections 1, 2 and 5).
 * Every request is checked in this order: rate limit (429), `X-Forwarded-For` (400), `Metadata:
 * true` (400), declared body size (413), repeated query names (400), path (404), method (405 with
 * `Allow`), `api-version` (400 with `newest-versions`).
 *
 * @throws IntermissionError `INVALID_INPUT` for options out of range
 */
export function createMetadataApp(options: MetadataAppOptions): MetadataApp {
  const service = new MetadataService(options);
  const hono = new Hono<MetadataEnv>({ strict: false });
  // One handler per route: Hono then calls it directly, and a cached GET answers synchronously.
  hono.all('/metadata/scheduledevents', (c) => service.scheduledEvents(c.req.raw, c.env.vm));
  // `/metadata/instance/*` matches `/metadata/instance` itself too.
  hono.all('/metadata/instance/*', (c) => service.instance(c.req.raw, c.env.vm, c.req.path));
  hono.all('/metadata/attested/document', (c) => service.attested(c.req.raw, c.env.vm));
  hono.all('/metadata/versions', (c) => service.versions(c.req.raw, c.env.vm));
  hono.all('/metadata', (c) => service.root(c.req.raw, c.env.vm));
  hono.notFound((c) => service.notFound(c.req.raw, c.env.vm));
  hono.onError((error, c) => service.errorResponse(error, c.req.raw, c.env.vm));
  return {
    hono,
    preflight: (line, vm) => service.preflight(line, vm),
    fetch: (request, vm) => {
      const answer = hono.fetch(request, { vm });
      // The hot path stays synchronous when the answer is (a cached GET).
      return answer instanceof Promise
        ? answer.then((r) => service.answered(request, vm, r))
        : service.answered(request, vm, answer);
    },
  };
}

class MetadataService {
  readonly #backend: MetadataBackend;
  readonly #limiter: TokenBuckets | undefined;
  readonly #maxBodyBytes: number;
  readonly #onEvent: MetadataEventListener | undefined;
  readonly #attestation: AttestationSigner | undefined;
  readonly #scopes: ScopeDocuments;
  /** Instance documents by VM (a fleet reload brings new Vm objects) and version. */
  readonly #instances = new WeakMap<Vm, Map<InstanceApiVersion, InstanceDocument>>();

  constructor(options: MetadataAppOptions) {
    this.#backend = options.backend;
    const rate = options.rateLimit;
    this.#limiter =
      rate === false
        ? undefined
        : new TokenBuckets({
            requestsPerSecond: rate?.requestsPerSecond ?? DEFAULT_RATE_LIMIT.requestsPerSecond,
            burst: rate?.burst ?? DEFAULT_RATE_LIMIT.burst,
          });
    this.#maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    if (!Number.isSafeInteger(this.#maxBodyBytes) || this.#maxBodyBytes < 1) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `maxBodyBytes must be a positive integer, got ${this.#maxBodyBytes}`,
      );
    }
    const enablementDelayMs = options.enablementDelayMs ?? 0;
    if (!Number.isFinite(enablementDelayMs) || enablementDelayMs < 0) {
      throw new IntermissionError('INVALID_INPUT', `enablementDelayMs must be 0 or more, got ${enablementDelayMs}`);
    }
    const disableAfterIdleMs = options.disableAfterIdleMs ?? DEFAULT_DISABLE_AFTER_IDLE_MS;
    if (Number.isNaN(disableAfterIdleMs) || disableAfterIdleMs <= 0) {
      throw new IntermissionError('INVALID_INPUT', `disableAfterIdleMs must be above 0, got ${disableAfterIdleMs}`);
    }
    this.#onEvent = options.onEvent;
    this.#attestation = options.attestation;
    this.#scopes = new ScopeDocuments({
      enablementDelayMs,
      disableAfterIdleMs,
      onEnabled: (vm, scope, reset) => this.#emit('imds:enabled', { vm, scope, reset, delayMs: enablementDelayMs }),
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    });
  }

  /** `/metadata/scheduledevents`: the hot path. A cached GET answers without a promise. */
  scheduledEvents(request: Request, vm: string): Response | Promise<Response> {
    const now = this.#backend.now();
    const query = this.#checkRequest(request, vm, now);
    const method = request.method;
    if (method !== 'GET' && method !== 'POST') throw methodNotAllowed(SCHEDULED_EVENTS_METHODS, method);
    const version = query.get('api-version');
    if (!isScheduledEventsApiVersion(version)) throw invalidVersion(SCHEDULED_EVENTS_NEWEST, version);
    if (method === 'POST') return this.#approve(request, vm, now);
    const doc = this.#backend.document(vm);
    const state = this.#scopes.touch(vm, doc, now);
    if (state.ready !== undefined) {
      // The scope is being enabled: answer once that is over, with the document as it is then.
      return state.ready.then(() => this.#serveEvents(request, vm, version, this.#backend.document(vm), state));
    }
    return this.#serveEvents(request, vm, version, doc, state);
  }

  /** `/metadata/instance` and everything under it (route filtering, `format=text`). */
  instance(request: Request, vm: string, path: string): Response {
    const now = this.#backend.now();
    const query = this.#checkRequest(request, vm, now);
    if (request.method !== 'GET') throw methodNotAllowed(GET_ONLY, request.method);
    const version = query.get('api-version');
    if (!isInstanceApiVersion(version)) throw invalidVersion(INSTANCE_NEWEST, version);
    const format = query.get('format');
    if (format !== undefined && format !== 'json' && format !== 'text') {
      throw new MetadataRequestError('INVALID_FORMAT', { detail: `format=${format}` });
    }
    const info = this.#backend.vm(vm);
    if (info === undefined) throw new MetadataRequestError('NOT_FOUND', { detail: `VM ${vm} is not in the fleet` });
    const segments = path
      .slice(INSTANCE_PREFIX.length)
      .split('/')
      .filter((s) => s.length > 0);
    const node = selectInstanceNode(this.#instanceDocument(info, version), segments);
    if (node === undefined) throw new MetadataRequestError('NOT_FOUND', { detail: `no ${path}` });
    if (typeof node === 'string') {
      if (format !== 'text') throw new MetadataRequestError('LEAF_REQUIRES_TEXT', { detail: path });
      return new Response(node, { status: 200, headers: { 'content-type': TEXT_CONTENT_TYPE } });
    }
    if (format === 'text') throw new MetadataRequestError('TEXT_REQUIRES_LEAF', { detail: path });
    return jsonResponse(200, JSON.stringify(node));
  }

  /** `/metadata/attested/document`: the VM's facts signed as PKCS#7 (spec 2, IMDS-doc "Attested data"). */
  async attested(request: Request, vm: string): Promise<Response> {
    const now = this.#backend.now();
    const query = this.#checkRequest(request, vm, now);
    const signer = this.#attestation;
    if (signer === undefined) throw new MetadataRequestError('NOT_FOUND', { detail: 'no attestation key configured' });
    if (request.method !== 'GET') throw methodNotAllowed(GET_ONLY, request.method);
    const version = query.get('api-version');
    if (!isInstanceApiVersion(version) || !servesAttested(version)) throw invalidVersion(INSTANCE_NEWEST, version);
    const info = this.#backend.vm(vm);
    if (info === undefined) throw new MetadataRequestError('NOT_FOUND', { detail: `VM ${vm} is not in the fleet` });
    const body = await attestedResponse({ signer, vm: info, version, nonce: query.get('nonce'), now });
    return jsonResponse(200, JSON.stringify(body));
  }

  /** `/metadata/versions`: unversioned, lists the instance api-versions. */
  versions(request: Request, vm: string): Response {
    this.#checkRequest(request, vm, this.#backend.now());
    if (request.method !== 'GET') throw methodNotAllowed(GET_ONLY, request.method);
    return jsonResponse(200, VERSIONS_BODY);
  }

  /** `/metadata` itself: 400 with `newest-versions` without a valid api-version, else 404. */
  root(request: Request, vm: string): Response {
    const query = this.#checkRequest(request, vm, this.#backend.now());
    if (request.method !== 'GET') throw methodNotAllowed(GET_ONLY, request.method);
    const version = query.get('api-version');
    if (!isInstanceApiVersion(version)) throw invalidVersion(INSTANCE_NEWEST, version);
    throw new MetadataRequestError('NOT_FOUND', { detail: '/metadata has no document of its own' });
  }

  /** Any other path: the same checks as everywhere, then 404. */
  notFound(request: Request, vm: string): Response {
    this.#checkRequest(request, vm, this.#backend.now());
    throw new MetadataRequestError('NOT_FOUND', { detail: `no route for ${pathOf(request.url)}` });
  }

  /** The raw request line's verdict, reported as any refusal is. */
  preflight(line: RawRequestLine, vm: string): PreflightAnswer | undefined {
    const refusal = rawTargetVerdict(line);
    if (refusal === undefined) return undefined;
    const { method } = line;
    const path = pathOf(line.target);
    this.#emit('imds:rejected', {
      vm,
      method,
      path,
      status: refusal.status,
      code: refusal.code,
      detail: refusal.detail,
    });
    this.#emit('imds:response', { vm, method, path, status: refusal.status });
    const body = JSON.stringify(refusal.toJSON());
    const length = String(new TextEncoder().encode(body).length);
    return {
      status: refusal.status,
      headers: { 'content-type': JSON_CONTENT_TYPE, 'content-length': length, ...refusal.headers },
      body,
    };
  }

  /** The one place where failures become responses. */
  errorResponse(error: Error, request: Request, vm: string): Response {
    const method = request.method;
    const path = pathOf(request.url);
    if (error instanceof MetadataRequestError) {
      this.#emit('imds:rejected', { vm, method, path, status: error.status, code: error.code, detail: error.detail });
      return jsonResponse(error.status, JSON.stringify(error.toJSON()), error.headers);
    }
    const failure = coerceError(error);
    this.#emit('imds:error', { vm, method, path, error: failure });
    const status = failure.status;
    const headers: Record<string, string> = failure.retryable ? { 'retry-after': '1' } : {};
    const text = STATUS_TEXT[status] ?? (status >= 500 ? 'Internal server error' : 'Bad request');
    return jsonResponse(status, JSON.stringify({ error: text }), headers);
  }

  #serveEvents(
    request: Request,
    vm: string,
    version: ScheduledEventsApiVersion,
    doc: ScopeDocument,
    state: ScopeState,
  ): Response {
    const rendered = this.#scopes.render(state, doc, version);
    this.#backend.recordPoll(vm, this.#backend.now());
    const ifNoneMatch = request.headers.get('if-none-match');
    if (ifNoneMatch !== null && ifNoneMatchMatches(ifNoneMatch, rendered.etag)) {
      return new Response(null, { status: 304, headers: rendered.notModifiedHeaders });
    }
    return new Response(rendered.body, { status: 200, headers: rendered.headers });
  }

  async #approve(request: Request, vm: string, now: number): Promise<Response> {
    const ids = parseStartRequests(await readBodyText(request, this.#maxBodyBytes));
    const info = this.#backend.vm(vm);
    if (info !== undefined) this.#scopes.keepAlive(scopeOf(info), now);
    if (ids.length > 0) {
      const result = await this.#backend.approve(vm, ids);
      if (result.approved.length > 0 || result.alreadyApproved.length > 0) {
        this.#emit('imds:approve', { vm, approved: result.approved, alreadyApproved: result.alreadyApproved });
      }
      if (result.unknown.length > 0) this.#emit('imds:approve:unknown', { vm, eventIds: result.unknown });
    }
    return new Response(null, { status: 200, headers: EMPTY_OK_HEADERS });
  }

  /** The checks every request passes, in order; returns its query. */
  #checkRequest(request: Request, vm: string, now: number): Query {
    if (this.#limiter !== undefined) {
      const waitMs = this.#limiter.take(vm, now);
      if (waitMs > 0) {
        throw new MetadataRequestError('TOO_MANY_REQUESTS', {
          headers: { 'retry-after': String(Math.max(1, Math.ceil(waitMs / 1000))) },
          detail: `VM ${vm} is over its rate`,
        });
      }
    }
    const headers = request.headers;
    if (headers.get('x-forwarded-for') !== null) throw new MetadataRequestError('FORWARDED_REQUEST');
    const metadata = headers.get('metadata');
    if (metadata === null || !isTrue(metadata)) {
      throw new MetadataRequestError('METADATA_HEADER_REQUIRED', {
        detail: metadata === null ? 'no Metadata header' : `Metadata: ${metadata}`,
      });
    }
    checkDeclaredLength(headers.get('content-length'), this.#maxBodyBytes);
    return parseQuery(request.url);
  }

  #instanceDocument(vm: Vm, version: InstanceApiVersion): InstanceDocument {
    let byVersion = this.#instances.get(vm);
    if (byVersion === undefined) {
      byVersion = new Map();
      this.#instances.set(vm, byVersion);
    }
    let doc = byVersion.get(version);
    if (doc === undefined) {
      doc = instanceDocument(vm, version);
      byVersion.set(version, doc);
    }
    return doc;
  }

  /** Reports an answered request (when anyone listens) and hands the response back. */
  answered(request: Request, vm: string, response: Response): Response {
    if (this.#onEvent !== undefined)
      this.#emit('imds:response', { vm, method: request.method, path: pathOf(request.url), status: response.status });
    return response;
  }

  #emit<K extends keyof MetadataEventMap>(name: K, payload: MetadataEventMap[K]): void {
    if (this.#onEvent === undefined) return;
    try {
      this.#onEvent(name, payload);
    } catch {
      // A failing subscriber must not change what the guest receives.
    }
  }
}

/** `true` in any letter case, e.g. WALinuxAgent's `Metadata: True`. */
function isTrue(value: string): boolean {
  return value.length >= 4 && value.trim().toLowerCase() === 'true';
}

function methodNotAllowed(allow: string, method: string): MetadataRequestError {
  return new MetadataRequestError('METHOD_NOT_ALLOWED', { headers: { allow }, detail: `${method} is not served here` });
}

function invalidVersion(newest: readonly string[], given: string | undefined): MetadataRequestError {
  return new MetadataRequestError('INVALID_API_VERSION', {
    body: { 'newest-versions': newest },
    detail: given === undefined ? 'no api-version' : `api-version=${given}`,
  });
}

function jsonResponse(status: number, body: string, extra?: Readonly<Record<string, string>>): Response {
  return new Response(body, { status, headers: { 'content-type': JSON_CONTENT_TYPE, ...extra } });
}

function pathOf(url: string): string {
  const scheme = url.indexOf('://');
  const start = scheme === -1 ? url.indexOf('/') : url.indexOf('/', scheme + 3);
  if (start === -1) return '/';
  const end = url.indexOf('?', start);
  return end === -1 ? url.slice(start) : url.slice(start, end);
}
