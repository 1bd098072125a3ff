import type { Server } from 'node:http';
import { rm } from 'node:fs/promises';
import { getRequestListener } from '@hono/node-server';
import type { ListenAddress } from './address.js';
import { CONTROL_HTTP_LIMITS, createLimitedServer, resolveHttpLimits, type HttpLimits } from './http-limits.js';

export type FetchHandler = (request: Request) => Response | Promise<Response>;

export interface RunningServer {
  readonly address: ListenAddress;
  readonly server: Server;
  /** The limits the server applies. */
  readonly limits: HttpLimits;
  /** Stops accepting, closes idle keep-alive connections, waits for the rest. Idempotent. */
  close(): Promise<void>;
}

/** Options of {@link serveFetch}. */
export interface ServeFetchOptions {
  /**
   * Body size, timeouts and connection cap (docs/limits.md). Each figure not given is taken from
   * `defaults`, which are the control API's ({@link CONTROL_HTTP_LIMITS}) unless said otherwise.
   */
  readonly limits?: Partial<HttpLimits>;
  readonly defaults?: HttpLimits;
}

/**
 * Serves a fetch handler on a TCP address (port 0 picks one) or a unix socket, within its limits:
 * a body over `maxBodyBytes` is answered 413 before it is buffered, slow requests get 408, idle
 * connections and connections past the cap are closed.
 *
 * @throws IntermissionError `INVALID_INPUT` for limits that cannot work
 */
export async function serveFetch(
  fetch: FetchHandler,
  address: ListenAddress,
  options: ServeFetchOptions = {},
): Promise<RunningServer> {
  const limits = resolveHttpLimits(options.defaults ?? CONTROL_HTTP_LIMITS, options.limits);
  const server = createLimitedServer(getRequestListener(fetch), { limits });
  if ('path' in address) await rm(address.path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if ('path' in address) server.listen(address.path, done);
    else server.listen(address.port, address.host, done);
  });
  const bound = server.address();
  const actual: ListenAddress =
    'path' in address || bound === null || typeof bound === 'string'
      ? address
      : { host: address.host, port: bound.port };
  let closing: Promise<void> | undefined;
  return {
    address: actual,
    server,
    limits,
    close: () =>
      (closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeIdleConnections();
      })),
  };
}
