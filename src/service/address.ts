import { IntermissionError } from '../domain/index.js';

/** Where a server listens or a client connects: TCP host and port, or a unix socket path. */
export type ListenAddress = { readonly host: string; readonly port: number } | { readonly path: string };

/**
 * Reads `127.0.0.1:8080`, `[::1]:8080`, `169.254.169.254:80`, `:8080` (loopback) or
 * `unix:/run/intermission/vm1.sock`.
 */
export function parseAddress(text: string): ListenAddress {
  const value = text.trim();
  if (value.startsWith('unix:')) {
    const path = value.slice('unix:'.length);
    if (path.length === 0)
      throw new IntermissionError('INVALID_INPUT', `address ${JSON.stringify(text)} has no socket path`);
    return { path };
  }
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || port > 65535) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `cannot read address ${JSON.stringify(text)}: use host:port, [v6]:port or unix:/path/to.sock`,
    );
  }
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port };
}

export function formatAddress(address: ListenAddress): string {
  if ('path' in address) return `unix:${address.path}`;
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

/** The http:// base URL of a TCP address (unix sockets have none). */
export function httpUrl(address: ListenAddress): string {
  if ('path' in address) return `http://localhost`;
  return `http://${formatAddress(address)}`;
}
