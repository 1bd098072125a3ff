import type { Context } from 'hono';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import { IntermissionError } from '../domain/index.js';
import type { VmStepResult } from '../agent/index.js';
import type { StepRecord } from '../store/rollout-store.js';
import type { EventView } from './app.js';
import type { RolloutSummary } from './rollouts.js';
import type { Principal } from './tokens.js';

/**
 * The live feed of the control API: what the event service (`event:*`) and the rollout executor
 * (`rollout:*`) announce, as JSON, for the dashboard and anything else that reads Server-Sent
 * Events. The hub knows nothing of the emitters; `feedLiveHub` (live-feed.ts) connects them, so the
 * core imports neither the hub nor the dashboard.
 */

/** Path of the stream on the control API. */
export const LIVE_STREAM_PATH = '/v1/stream';

/**
 * Every message type and its payload. Event payloads are the control API's {@link EventView};
 * rollout payloads are {@link RolloutSummary} or the executor's records.
 */
export interface LiveMessageMap {
  /** First message of every connection: who is listening, the server's clock and time scale. */
  hello: {
    readonly principal: string;
    readonly role: Principal['role'];
    readonly now: string;
    /** Sequence number of the last message published before this connection. */
    readonly lastSeq: number;
  };
  /** An event appeared in its scope's document. */
  'event:scheduled': EventView;
  /** A VM of the scope approved an event. */
  'event:approved': EventView;
  /** An event went Scheduled → Started. */
  'event:started': EventView;
  /** An event's impact ended; it stays listed for its linger. */
  'event:ended': EventView;
  /** An event left the documents, completed or cancelled. */
  'event:removed': EventView;
  /** A rollout was created (its plan: GET /v1/rollouts/{id}?plan=true). */
  'rollout:created': RolloutSummary;
  /** A rollout's status, wave or phase changed. */
  'rollout:status': RolloutSummary;
  /** A wave's events were published. */
  'rollout:wave:published': { readonly rollout: string; readonly wave: number; readonly events: number };
  /** A host step was sent to its agent. */
  'rollout:step:dispatched': { readonly step: StepRecord };
  /** A host step finished, with what the agent measured per VM (pause, clock offset and residual). */
  'rollout:step:finished': { readonly step: StepRecord; readonly vms: readonly VmStepResult[] };
  /**
   * A host step will not run: an operator cancelled an event of its VMs. Its host is left out of the
   * wave (not a failure); `step.cancellation` says who, when and which events.
   */
  'rollout:step:cancelled': { readonly step: StepRecord };
  /** A wave passed its settle time and health gate. */
  'rollout:wave:settled': { readonly rollout: string; readonly wave: number; readonly failedHosts: number };
  /** A reconcile pass failed; it is retried. */
  'rollout:error': { readonly rollout: string; readonly code: string; readonly message: string };
}

/** The type of a live message. */
export type LiveMessageType = keyof LiveMessageMap;

/** One message of the feed, as it is sent (the `data` of one SSE message, JSON). */
export type LiveMessage = {
  [K in LiveMessageType]: {
    /** Increases by one per published message of this process; the SSE `id`. */
    readonly seq: number;
    /** When it was published (ISO 8601). */
    readonly at: string;
    readonly type: K;
    readonly data: LiveMessageMap[K];
  };
}[LiveMessageType];

/** A subscriber of the hub. */
export interface LiveSubscriber {
  /** Called synchronously for every published message; must not throw. */
  message(message: LiveMessage): void;
  /** Called once when the hub closes. */
  close?(): void;
}

/** Options of {@link LiveHub}. */
export interface LiveHubOptions {
  /**
   * Messages kept for clients that reconnect with `Last-Event-ID`. Default 500: enough for a
   * reconnecting dashboard to miss nothing of a wave, bounded so that memory stays flat.
   */
  readonly historySize?: number;
  /** The clock of `at`; default `Date.now`. */
  readonly now?: () => number;
  /**
   * Live streams one token (principal) may hold open at once; one more is answered 429. Default
   * {@link DEFAULT_MAX_STREAMS_PER_PRINCIPAL}.
   */
  readonly maxStreamsPerPrincipal?: number;
}

/**
 * Default cap of live streams per token: a dashboard holds one per open tab, so 8 leaves room for
 * a few tabs and a `--follow` or two, while one leaked token cannot hold the control API's
 * connections (256 by default) or the hub's fan-out hostage.
 */
export const DEFAULT_MAX_STREAMS_PER_PRINCIPAL = 8;

/** Options of {@link LiveHub.subscribe}. */
export interface SubscribeOptions {
  /** Whose stream this is (the principal's name, unique per token); counted against its cap. */
  readonly principal?: string;
}

/**
 * Fan-out of live messages to any number of subscribers, with a short history for reconnects.
 * Publishing never waits for a subscriber: each connection queues its own writes.
 */
export class LiveHub {
  readonly #subscribers = new Set<LiveSubscriber>();
  /** The subscribers of each principal that has any. */
  readonly #byPrincipal = new Map<string, Set<LiveSubscriber>>();
  readonly #history: LiveMessage[] = [];
  readonly #historySize: number;
  readonly #now: () => number;
  /** Live streams one principal may hold at once. */
  readonly maxStreamsPerPrincipal: number;
  #seq = 0;
  #closed = false;

  constructor(options: LiveHubOptions = {}) {
    this.#historySize = options.historySize ?? 500;
    this.#now = options.now ?? Date.now;
    this.maxStreamsPerPrincipal = options.maxStreamsPerPrincipal ?? DEFAULT_MAX_STREAMS_PER_PRINCIPAL;
    if (!Number.isSafeInteger(this.maxStreamsPerPrincipal) || this.maxStreamsPerPrincipal < 1) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `maxStreamsPerPrincipal must be a positive integer, got ${this.maxStreamsPerPrincipal}`,
      );
    }
  }

  /** Sequence number of the last published message (0 before the first). */
  get lastSeq(): number {
    return this.#seq;
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** How many subscribers are connected. */
  get size(): number {
    return this.#subscribers.size;
  }

  /** Publishes a message to every subscriber and keeps it in the history. Ignored once closed. */
  publish<K extends LiveMessageType>(type: K, data: LiveMessageMap[K]): LiveMessage | undefined {
    if (this.#closed) return undefined;
    const message = { seq: ++this.#seq, at: new Date(this.#now()).toISOString(), type, data } as LiveMessage;
    this.#history.push(message);
    if (this.#history.length > this.#historySize) this.#history.shift();
    for (const s of this.#subscribers) s.message(message);
    return message;
  }

  /** Messages after `seq` still in the history, oldest first. */
  since(seq: number): LiveMessage[] {
    return this.#history.filter((m) => m.seq > seq);
  }

  /** How many subscribers `principal` holds. */
  streamsOf(principal: string): number {
    return this.#byPrincipal.get(principal)?.size ?? 0;
  }

  /**
   * Adds a subscriber; returns its unsubscribe function. A closed hub closes it at once. The cap
   * per principal is checked by {@link liveStream}, which answers 429; the hub only counts.
   */
  subscribe(subscriber: LiveSubscriber, options: SubscribeOptions = {}): () => void {
    if (this.#closed) {
      subscriber.close?.();
      return () => undefined;
    }
    this.#subscribers.add(subscriber);
    const { principal } = options;
    if (principal !== undefined) {
      const own = this.#byPrincipal.get(principal) ?? new Set<LiveSubscriber>();
      own.add(subscriber);
      this.#byPrincipal.set(principal, own);
    }
    return () => this.#remove(subscriber, principal);
  }

  /**
   * Closes every stream of `principal` (its token was revoked or expired): each subscriber is
   * removed and closed, which ends its SSE response. Returns how many were closed.
   */
  closeStreams(principal: string): number {
    const own = [...(this.#byPrincipal.get(principal) ?? [])];
    for (const s of own) this.#remove(s, principal);
    for (const s of own) s.close?.();
    return own.length;
  }

  #remove(subscriber: LiveSubscriber, principal: string | undefined): void {
    this.#subscribers.delete(subscriber);
    if (principal === undefined) return;
    const own = this.#byPrincipal.get(principal);
    own?.delete(subscriber);
    if (own?.size === 0) this.#byPrincipal.delete(principal);
  }

  /** Closes every subscriber (ending their streams, so that the server can stop). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const subscribers = [...this.#subscribers];
    this.#subscribers.clear();
    this.#byPrincipal.clear();
    for (const s of subscribers) s.close?.();
  }
}

/** Whether a principal may see a message: operators see everything, tenants events of their VMs. */
export function mayReceive(principal: Principal, message: LiveMessage): boolean {
  if (principal.role === 'operator') return true;
  if (message.type === 'hello') return true;
  if (!message.type.startsWith('event:')) return false;
  const resources = (message.data as EventView).resources;
  return resources.some((vm) => principal.vms.includes(vm));
}

/** Options of {@link liveStream}. */
export interface LiveStreamOptions {
  readonly hub: LiveHub;
  readonly principal: Principal;
  /** Server clock, for the hello message. */
  readonly now: () => number;
  /**
   * Interval of the `: keep-alive` comments. Default 15 s: below the idle timeouts of common
   * proxies (often 30-60 s), so that a quiet stream is not cut.
   */
  readonly keepAliveMs?: number;
  /**
   * Writes queued for a connection that does not read; past it the connection is dropped (the
   * client reconnects with Last-Event-ID), so that a stuck client cannot grow the server's memory.
   */
  readonly maxQueued?: number;
  /** How long a reconnecting EventSource waits, sent as the SSE `retry` field. Default 2 s. */
  readonly retryMs?: number;
}

/**
 * Serves the live feed as Server-Sent Events: a `hello` message, then the messages after the
 * client's `Last-Event-ID` still in the history, then every new message the principal may see,
 * each as one SSE message with `id: <seq>` and JSON `data` ({@link LiveMessage}), and a
 * `: keep-alive` comment every {@link LiveStreamOptions.keepAliveMs}.
 *
 * @throws IntermissionError `TOO_MANY_REQUESTS` (429) when the principal already holds the hub's
 *   {@link LiveHub.maxStreamsPerPrincipal} streams
 */
export function liveStream(c: Context, options: LiveStreamOptions): Response {
  const keepAliveMs = options.keepAliveMs ?? 15_000;
  const maxQueued = options.maxQueued ?? 1000;
  const lastEventId = Number(c.req.header('last-event-id') ?? Number.NaN);
  const { hub, principal } = options;
  const max = hub.maxStreamsPerPrincipal;
  if (hub.streamsOf(principal.name) >= max) {
    throw new IntermissionError(
      'TOO_MANY_REQUESTS',
      `${principal.name} already holds ${max} live streams, the most one token may hold: close one first`,
      { details: { maxStreams: max } },
    );
  }
  // The check above and the subscribe below run in the same turn (streamSSE calls back at once, and
  // nothing is awaited before subscribing), so that two requests cannot both pass the cap.
  return streamSSE(c, async (stream: SSEStreamingApi) => {
    let queued = 0;
    let chain: Promise<unknown> = Promise.resolve();
    let end: () => void = () => undefined;
    const ended = new Promise<void>((resolve) => (end = resolve));
    const enqueue = (write: () => Promise<unknown>): void => {
      if (++queued > maxQueued) return end();
      chain = chain
        .then(write)
        .catch(() => end())
        .finally(() => queued--);
    };
    const send = (message: LiveMessage, retry?: number): void => {
      if (!mayReceive(options.principal, message)) return;
      enqueue(() =>
        stream.writeSSE({
          id: String(message.seq),
          data: JSON.stringify(message),
          ...(retry === undefined ? {} : { retry }),
        }),
      );
    };
    stream.onAbort(end);
    const hello: LiveMessage = {
      seq: options.hub.lastSeq,
      at: new Date(options.now()).toISOString(),
      type: 'hello',
      data: {
        principal: options.principal.name,
        role: options.principal.role,
        now: new Date(options.now()).toISOString(),
        lastSeq: options.hub.lastSeq,
      },
    };
    send(hello, options.retryMs ?? 2000);
    if (Number.isInteger(lastEventId)) for (const m of options.hub.since(lastEventId)) send(m);
    const unsubscribe = hub.subscribe({ message: (m) => send(m), close: end }, { principal: principal.name });
    const timer = setInterval(() => enqueue(() => stream.write(': keep-alive\n\n')), keepAliveMs);
    try {
      await ended;
    } finally {
      clearInterval(timer);
      unsubscribe();
      await chain.catch(() => undefined);
    }
  });
}
