import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { IntermissionError } from '../domain/index.js';

/**
 * What one HTTP listener accepts from its clients. Every listener of the project (control API,
 * agent API, each VM's metadata listener) applies all of them; docs/limits.md gives each figure's
 * reason. Nothing here trusts the client: a body, a slow sender or a crowd of connections costs the
 * server at most what these figures allow.
 */
export interface HttpLimits {
  /**
   * Largest request body, in bytes. A declared `Content-Length` over it is answered 413 before any
   * of the body is read (and never with `100 Continue`); a chunked body is counted as it arrives
   * and answered 413 the moment it passes. Either way the connection is then closed.
   */
  readonly maxBodyBytes: number;
  /** Time for the request line and all headers to arrive; a client that dribbles them gets 408. */
  readonly headersTimeoutMs: number;
  /** Time for the whole request, headers and body, to arrive; a trickled body gets 408. */
  readonly requestTimeoutMs: number;
  /** How long a keep-alive connection may sit idle between two requests before it is closed. */
  readonly keepAliveTimeoutMs: number;
  /** Connections open at once; one more is closed as soon as it is accepted, unanswered. */
  readonly maxConnections: number;
}

/**
 * The control API's limits (also `serveFetch`'s default). 1 MiB bodies: the largest legitimate
 * body, a rollout whose policy sets a pause budget per VM of a 10,000-VM fleet, is about 300 KB.
 */
export const CONTROL_HTTP_LIMITS: HttpLimits = Object.freeze({
  maxBodyBytes: 1024 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 256,
});

/** A host agent's API: only the controller calls it; a host step request is a few KB per VM. */
export const AGENT_HTTP_LIMITS: HttpLimits = Object.freeze({
  maxBodyBytes: 256 * 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 64,
});

/**
 * One VM's metadata listener. 64 KiB bodies (the metadata app's own bound: a StartRequests list of
 * about 1,000 event ids), 16 connections per VM: a guest's pollers (agent, cloud-init, a few
 * application instances) hold one keep-alive connection each.
 */
export const METADATA_HTTP_LIMITS: HttpLimits = Object.freeze({
  maxBodyBytes: 64 * 1024,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 16,
});

/** After a 413 the connection stays half-open this long, discarding input, so that the client reads the answer. */
const LINGER_MS = 1_000;

/** Longest interval between two checks of the header and request timeouts (Node's default is 30 s). */
const MAX_CHECK_INTERVAL_MS = 1_000;

/**
 * `defaults` with `overrides` applied, checked.
 *
 * @throws IntermissionError `INVALID_INPUT` for a figure that is not a positive integer, or a headers
 *   timeout longer than the request timeout (which would never apply)
 */
export function resolveHttpLimits(defaults: HttpLimits, overrides: Partial<HttpLimits> = {}): HttpLimits {
  const limits: HttpLimits = { ...defaults, ...overrides };
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || (value as number) < 1) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `HTTP limit ${name} must be a positive integer, got ${String(value)}`,
      );
    }
  }
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `HTTP limit headersTimeoutMs (${limits.headersTimeoutMs}) must not exceed requestTimeoutMs (${limits.requestTimeoutMs})`,
    );
  }
  return Object.freeze(limits);
}

/** The response a listener sends for a body over its limit. */
export interface TooLargeResponse {
  readonly contentType: string;
  readonly body: string;
}

/** The control and agent APIs' error shape: `{"error":{"code":"PAYLOAD_TOO_LARGE",…}}`. */
export function apiTooLarge(maxBodyBytes: number): TooLargeResponse {
  const error = new IntermissionError(
    'PAYLOAD_TOO_LARGE',
    `the request body is over the limit of ${maxBodyBytes} bytes`,
    { details: { limitBytes: maxBodyBytes } },
  );
  return { contentType: 'application/json', body: JSON.stringify({ error: error.toJSON() }) };
}

/** A Node request handler, as `@hono/node-server`'s `getRequestListener` makes them. */
export type NodeHandler = (incoming: IncomingMessage, outgoing: ServerResponse) => unknown;

/** Options of {@link createLimitedServer}. */
export interface LimitedServerOptions {
  readonly limits: HttpLimits;
  /** The 413 response; default {@link apiTooLarge}. */
  readonly tooLarge?: (maxBodyBytes: number) => TooLargeResponse;
}

/**
 * An HTTP server that serves `handler` within `limits`: timeouts and the connection cap are set on
 * the server, and every request body is read here, counted, before `handler` runs. A body within
 * the limit is handed on as `incoming.rawBody` (which `@hono/node-server` reads instead of the
 * stream), so that no handler can buffer more than the limit, whatever it does with the body.
 */
export function createLimitedServer(handler: NodeHandler, options: LimitedServerOptions): Server {
  const { limits } = options;
  const tooLarge = options.tooLarge ?? apiTooLarge;
  const checkEvery = Math.max(
    10,
    Math.min(MAX_CHECK_INTERVAL_MS, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4)),
  );
  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: checkEvery,
    },
    (incoming, outgoing) => guardBody(incoming, outgoing, handler, limits.maxBodyBytes, tooLarge),
  );
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.maxConnections = limits.maxConnections;
  answerClientErrorsInOrder(server);
  // Node answers `Expect: 100-continue` itself unless told otherwise: refuse an oversized body
  // before the client is invited to send it.
  server.on('checkContinue', (incoming: IncomingMessage, outgoing: ServerResponse) => {
    if (declaredLength(incoming) > limits.maxBodyBytes) {
      refuse(incoming, outgoing, limits.maxBodyBytes, tooLarge);
      return;
    }
    outgoing.writeContinue();
    server.emit('request', incoming, outgoing);
  });
  return server;
}

/** What Node sends for a request it could not parse or that came too slowly (as Node itself words it). */
function clientErrorResponse(code: string | undefined): string {
  const status =
    code === 'HPE_HEADER_OVERFLOW'
      ? '431 Request Header Fields Too Large'
      : code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW'
        ? '413 Payload Too Large'
        : code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? '408 Request Timeout'
          : '400 Bad Request';
  return `HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`;
}

/**
 * Answers a request Node could not parse (or that timed out) after the answer to the request before
 * it on the same connection, never before. Node's own handler writes its 400 at once and closes the
 * connection, so a client that sent a whole request and then garbage read "400" for a request that
 * had been served (a cancel done, reported as refused). Responses go in request order, as HTTP/1.1
 * pipelining requires; a response that never ends (a live stream) is waited for {@link LINGER_MS}.
 */
function answerClientErrorsInOrder(server: Server): void {
  const inFlight = new WeakMap<Socket, { incoming: IncomingMessage; outgoing: ServerResponse }>();
  server.on('request', (incoming: IncomingMessage, outgoing: ServerResponse) => {
    const socket = incoming.socket;
    const entry = { incoming, outgoing };
    inFlight.set(socket, entry);
    outgoing.once('close', () => {
      if (inFlight.get(socket) === entry) inFlight.delete(socket);
    });
  });
  server.on('clientError', (error: NodeJS.ErrnoException, duplex: Duplex) => {
    const socket = duplex as Socket;
    const answer = (): void => {
      if (socket.writable && !socket.destroyed) socket.write(clientErrorResponse(error.code));
      socket.destroy();
    };
    const pending = inFlight.get(socket);
    // The error is in a request that came whole before it and is still being answered: its answer
    // goes first. Otherwise (the request in error is the one in flight, or nothing is), answer as
    // Node does: only where nothing was written yet, since a reply half-sent cannot be followed.
    if (pending !== undefined && pending.incoming.complete && !pending.outgoing.writableFinished) {
      const timer = setTimeout(() => socket.destroy(), LINGER_MS);
      timer.unref();
      pending.outgoing.once('close', () => {
        clearTimeout(timer);
        answer();
      });
      return;
    }
    if (socket.bytesWritten === 0 || pending?.outgoing.writableFinished === true) answer();
    else socket.destroy();
  });
}

/** The declared Content-Length, 0 when there is none (Node has already refused malformed ones). */
function declaredLength(incoming: IncomingMessage): number {
  const value = incoming.headers['content-length'];
  return value === undefined ? 0 : Number(value);
}

function guardBody(
  incoming: IncomingMessage,
  outgoing: ServerResponse,
  handler: NodeHandler,
  maxBodyBytes: number,
  tooLarge: (maxBodyBytes: number) => TooLargeResponse,
): void {
  const chunked = incoming.headers['transfer-encoding'] !== undefined;
  const declared = declaredLength(incoming);
  if (!chunked && declared === 0) {
    handler(incoming, outgoing); // no body: the fast path of every GET
    return;
  }
  if (declared > maxBodyBytes) {
    refuse(incoming, outgoing, maxBodyBytes, tooLarge);
    return;
  }
  const chunks: Buffer[] = [];
  let total = 0;
  const onData = (chunk: Buffer): void => {
    total += chunk.byteLength;
    if (total > maxBodyBytes) {
      cleanup();
      chunks.length = 0;
      refuse(incoming, outgoing, maxBodyBytes, tooLarge);
      return;
    }
    chunks.push(chunk);
  };
  const onEnd = (): void => {
    cleanup();
    (incoming as IncomingMessage & { rawBody?: Buffer }).rawBody = Buffer.concat(chunks, total);
    handler(incoming, outgoing);
  };
  // An aborted or timed-out request: Node has answered or closed the socket; nothing to serve.
  const onGone = (): void => cleanup();
  const cleanup = (): void => {
    incoming.off('data', onData);
    incoming.off('end', onEnd);
    incoming.off('error', onGone);
    incoming.off('close', onGone);
  };
  incoming.on('data', onData);
  incoming.on('end', onEnd);
  incoming.on('error', onGone);
  incoming.on('close', onGone);
}

/**
 * Answers 413 with `Connection: close`, then closes the connection gently: the write side first,
 * while input is discarded for {@link LINGER_MS} (at most one more limit's worth), so that a client
 * still sending reads the answer instead of a reset.
 */
function refuse(
  incoming: IncomingMessage,
  outgoing: ServerResponse,
  maxBodyBytes: number,
  tooLarge: (maxBodyBytes: number) => TooLargeResponse,
): void {
  const socket = incoming.socket;
  let discarded = 0;
  incoming.on('data', (chunk: Buffer) => {
    discarded += chunk.byteLength;
    if (discarded > maxBodyBytes) socket.destroy();
  });
  incoming.on('error', () => undefined);
  // Node ends a `Connection: close` response with destroySoon(), which would reset the connection
  // with the unread body still arriving: half-close instead, and destroy after the linger.
  socket.destroySoon = () => {
    socket.end();
    const timer = setTimeout(() => socket.destroy(), LINGER_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  };
  const { contentType, body } = tooLarge(maxBodyBytes);
  outgoing.shouldKeepAlive = false;
  outgoing.writeHead(413, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    connection: 'close',
  });
  outgoing.end(body);
}
