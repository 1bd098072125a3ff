import { lstat, unlink } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { IntermissionError } from '../domain/index.js';
import {
  METADATA_HTTP_LIMITS,
  createLimitedServer,
  resolveHttpLimits,
  type HttpLimits,
  type TooLargeResponse,
} from '../service/http-limits.js';
import type { MetadataApp } from './app.js';
import { MetadataRequestError } from './errors.js';

/** Where one VM's metadata endpoint listens: TCP `host:port` (port 0 picks a free one) or a unix socket. */
export type MetadataAddress = { readonly host: string; readonly port: number } | { readonly path: string };

/** One VM and the address its requests arrive on. Whoever connects there speaks as that VM. */
export interface MetadataBinding {
  readonly vm: string;
  readonly address: MetadataAddress;
}

/** Options of {@link listenMetadata}. */
export interface ListenMetadataOptions {
  readonly app: MetadataApp;
  readonly bindings: readonly MetadataBinding[];
  /**
   * Body size, timeouts and connection cap of each VM's listener (docs/limits.md); figures not given
   * are {@link METADATA_HTTP_LIMITS}. The cap is per VM: a guest that opens too many connections
   * is refused on its own listener and takes nothing from the others.
   */
  readonly limits?: Partial<HttpLimits>;
  /** How long an idle keep-alive connection stays open; same as `limits.keepAliveTimeoutMs` (default 5 s, above a 1 Hz poll). */
  readonly keepAliveTimeoutMs?: number;
  /** How long `close()` lets in-flight requests finish before cutting their connections. Default 5 s. */
  readonly closeGraceMs?: number;
}

/** Running listeners, one HTTP server per binding. */
export interface MetadataListeners {
  /** The bindings as bound: a TCP port 0 is replaced by the port actually taken. */
  readonly addresses: readonly MetadataBinding[];
  /**
   * Stops accepting, closes idle keep-alive connections at once, lets in-flight requests finish
   * (answered with `Connection: close`), and cuts what is left after the grace time. Idempotent.
   */
  close(): Promise<void>;
}

/** The Host a guest uses; stands in for HTTP/1.0 requests that send none. */
const METADATA_HOST = '169.254.169.254';
const DEFAULT_CLOSE_GRACE_MS = 5_000;
/** How often a closing server looks for connections that went idle after their last response. */
const IDLE_SWEEP_MS = 20;

/**
 * Serves `app` on one HTTP server per binding; each server passes its binding's VM to the app, so a
 * guest can only ever read and approve as itself. Unix socket paths are cleared of a stale socket
 * file first (never of a live socket or a regular file).
 *
 * Uses @hono/node-server's request listener, which installs its lightweight `Request`/`Response`
 * as the process globals (measured fastest: a cached document is written without copying).
 *
 * @throws IntermissionError `CONFLICT` when an address is in use, `INVALID_INPUT` for a bad binding;
 *   servers already started are closed again
 */
export async function listenMetadata(options: ListenMetadataOptions): Promise<MetadataListeners> {
  const limits = resolveHttpLimits(METADATA_HTTP_LIMITS, {
    ...(options.keepAliveTimeoutMs === undefined ? {} : { keepAliveTimeoutMs: options.keepAliveTimeoutMs }),
    ...options.limits,
  });
  const started: BoundServer[] = [];
  try {
    for (const binding of options.bindings) started.push(await bind(binding, options, limits));
  } catch (error) {
    await Promise.all(started.map((s) => s.close()));
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    addresses: started.map((s) => s.binding),
    close: () => (closing ??= Promise.all(started.map((s) => s.close())).then(() => undefined)),
  };
}

interface BoundServer {
  readonly binding: MetadataBinding;
  close(): Promise<void>;
}

/** The IMDS-shaped 413, as the metadata app answers it: `{"error":"Request body too large"}`. */
function metadataTooLarge(): TooLargeResponse {
  return {
    contentType: 'application/json; charset=utf-8',
    body: JSON.stringify(new MetadataRequestError('PAYLOAD_TOO_LARGE')),
  };
}

async function bind(
  binding: MetadataBinding,
  options: ListenMetadataOptions,
  limits: HttpLimits,
): Promise<BoundServer> {
  const { vm, address } = binding;
  if (typeof vm !== 'string' || vm.length === 0) {
    throw new IntermissionError('INVALID_INPUT', 'a metadata binding needs the name of its VM');
  }
  const { app } = options;
  const listener = getRequestListener((request) => app.fetch(request, vm), { hostname: METADATA_HOST });
  let closing = false;
  /** Responses still being produced (a cached GET is written before the listener returns). */
  const pending = new Set<ServerResponse>();
  const server = createLimitedServer(
    (incoming: IncomingMessage, outgoing: ServerResponse) => {
      if (closing) outgoing.setHeader('connection', 'close');
      // The raw request line, judged before it is parsed into a (normalised) URL.
      const refused = app.preflight(
        { method: incoming.method ?? '', target: incoming.url ?? '', httpVersion: incoming.httpVersion },
        vm,
      );
      if (refused !== undefined) {
        outgoing.writeHead(refused.status, refused.headers).end(refused.body);
        return;
      }
      const done = listener(incoming, outgoing).catch((error: unknown) => {
        outgoing.destroy(error instanceof Error ? error : undefined);
      });
      if (!outgoing.headersSent) {
        pending.add(outgoing);
        void done.finally(() => pending.delete(outgoing));
      }
    },
    { limits, tooLarge: metadataTooLarge },
  );

  if ('path' in address) await clearStaleSocket(address.path);
  else if (!Number.isInteger(address.port) || address.port < 0 || address.port > 65535) {
    throw new IntermissionError('INVALID_INPUT', `port must be an integer from 0 to 65535, got ${address.port}`);
  }
  await listen(server, binding);
  const info = server.address();
  const bound: MetadataAddress =
    'path' in address || info === null || typeof info === 'string' ? address : { host: address.host, port: info.port };

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closed ??= new Promise<void>((resolve, reject) => {
      closing = true;
      for (const outgoing of pending) if (!outgoing.headersSent) outgoing.setHeader('connection', 'close');
      const sweep = setInterval(() => server.closeIdleConnections(), IDLE_SWEEP_MS);
      const force = setTimeout(() => server.closeAllConnections(), options.closeGraceMs ?? DEFAULT_CLOSE_GRACE_MS);
      server.close((error) => {
        clearInterval(sweep);
        clearTimeout(force);
        if (error) reject(error);
        else resolve();
      });
      server.closeIdleConnections();
    }));
  return { binding: { vm, address: bound }, close };
}

function listen(server: Server, binding: MetadataBinding): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      const where = describe(binding.address);
      reject(
        error.code === 'EADDRINUSE'
          ? new IntermissionError('CONFLICT', `cannot serve metadata for ${binding.vm}: ${where} is in use`, {
              cause: error,
            })
          : new IntermissionError(
              'INVALID_INPUT',
              `cannot serve metadata for ${binding.vm} on ${where}: ${error.message}`,
              {
                cause: error,
              },
            ),
      );
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    const { address } = binding;
    if ('path' in address) server.listen(address.path);
    else server.listen(address.port, address.host);
  });
}

/** Removes a socket file left by a server that is gone; refuses a live socket or any other file. */
async function clearStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new IntermissionError('INVALID_INPUT', `cannot inspect ${path}`, { cause: error });
  }
  if (!isSocket) {
    throw new IntermissionError('INVALID_INPUT', `${path} exists and is not a socket: refusing to replace it`);
  }
  if (await acceptsConnections(path)) {
    throw new IntermissionError('CONFLICT', `another process is serving on ${path}`);
  }
  await unlink(path);
}

function acceptsConnections(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function describe(address: MetadataAddress): string {
  return 'path' in address ? address.path : `${address.host}:${address.port}`;
}
