import { createServer, type Server } from 'node:http';
import { rm } from 'node:fs/promises';
import { getRequestListener } from '@hono/node-server';
import type { ListenAddress } from './address.js';

export type FetchHandler = (request: Request) => Response | Promise<Response>;

export interface RunningServer {
  readonly address: ListenAddress;
  readonly server: Server;
  /** Stops accepting, closes idle keep-alive connections, waits for the rest. Idempotent. */
  close(): Promise<void>;
}

/** Serves a fetch handler on a TCP address (port 0 picks one) or a unix socket. */
export async function serveFetch(fetch: FetchHandler, address: ListenAddress): Promise<RunningServer> {
  const server = createServer(getRequestListener(fetch));
  server.keepAliveTimeout = 5_000;
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
    close: () =>
      (closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeIdleConnections();
      })),
  };
}
