import { connect, type Socket } from 'node:net';
import type { ListenAddress } from '../../src/service/address.js';

/**
 * Raw HTTP/1.1 over a socket, for tests that must send what a well-behaved client never would: a
 * declared length with no body, a body one byte at a time, headers that never end.
 */

/** Opens a TCP or unix connection; resolves once connected. */
export function connectRaw(address: ListenAddress): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = 'path' in address ? connect(address.path) : connect(address.port, address.host);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** A response as read off the wire. */
export interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/**
 * Everything the socket receives until it closes (or `timeoutMs` passes), and when it closed.
 * Start it right after connecting so that nothing is missed.
 */
export interface SocketTranscript {
  /** Resolves with the bytes received and the milliseconds from `start` to the close. */
  readonly closed: Promise<{ readonly text: string; readonly afterMs: number }>;
  /** The first complete response, as soon as it is complete. */
  readonly response: Promise<RawResponse>;
  /** Bytes received so far. */
  text(): string;
}

/** Records what `socket` receives; fails `closed` when it stays open past `timeoutMs`. */
export function record(socket: Socket, timeoutMs: number): SocketTranscript {
  const start = performance.now();
  let text = '';
  let onText: () => void = () => undefined;
  const closed = new Promise<{ text: string; afterMs: number }>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the connection was still open after ${timeoutMs} ms; received ${JSON.stringify(text)}`));
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      onText();
    });
    socket.on('error', () => undefined); // a reset counts as a close
    socket.once('close', () => {
      clearTimeout(timer);
      onText();
      resolve({ text, afterMs: performance.now() - start });
    });
  });
  const response = new Promise<RawResponse>((resolve, reject) => {
    onText = () => {
      const parsed = parseResponse(text);
      if (parsed) resolve(parsed);
      else if (socket.destroyed) reject(new Error(`closed without a complete response: ${JSON.stringify(text)}`));
    };
  });
  response.catch(() => undefined); // callers that only wait for the close need not read it
  return { closed, response, text: () => text };
}

/** The first complete response in `text` (Content-Length bodies only), or undefined. */
export function parseResponse(text: string): RawResponse | undefined {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  const body = text.slice(end + 4, end + 4 + length);
  if (body.length < length) return undefined;
  return { status: Number(statusLine.split(' ')[1]), headers, body };
}

/** Writes and waits for the write to be flushed; resolves false when the socket is gone. */
export function write(socket: Socket, data: string | Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.destroyed || !socket.writable) return resolve(false);
    socket.write(data, (error) => resolve(!error));
  });
}

export const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
