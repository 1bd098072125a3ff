import net from 'node:net';
import { abortFailure, errnoOf, qmpFailure } from './errors.js';
import { AsyncQueue } from './internal/async-queue.js';
import { LineSplitter, LineTooLongError } from './internal/line-splitter.js';

/**
 * The narrow slice of a connection that the QMP and guest-agent clients use: bytes out, text lines
 * in. Anything that can carry newline-delimited JSON can implement it (a unix socket here, an
 * in-memory pair in tests, a vsock or a TCP socket later); the clients never see a socket.
 */
export interface QmpTransport {
  /**
   * Writes bytes as they are: the caller adds the `\n` that ends a message. Resolves when the data
   * has been handed to the OS; rejects with an `UNREACHABLE` IntermissionError once the
   * connection is gone.
   */
  write(data: string | Uint8Array): Promise<void>;
  /**
   * Received lines in order, without their line terminator; blank lines are skipped. Ends when the
   * peer closes the connection or `close()` is called, and throws an `UNREACHABLE`
   * IntermissionError if the connection breaks. One consumer only.
   */
  readonly lines: AsyncIterable<string>;
  /** Closes the connection and ends `lines`. Idempotent; never rejects. */
  close(): Promise<void>;
}

/** What every way of opening a {@link QmpTransport} is given. */
export interface ConnectTransportOptions {
  /** Path of the unix socket (QEMU `-qmp unix:PATH,server=on` or a guest-agent chardev). */
  readonly path: string;
  /** Bound on opening the connection. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Who is at the other end, for error details. Default `qmp`. */
  readonly peer?: 'qmp' | 'guest-agent';
}

/** Opens a transport; the injection point for other transports and for tests. */
export type ConnectTransport = (options: ConnectTransportOptions) => Promise<QmpTransport>;

/** Options of {@link connectUnixSocket}. */
export interface UnixSocketTransportOptions extends ConnectTransportOptions {
  /** Longest line accepted. Default {@link DEFAULT_MAX_LINE_BYTES}. */
  readonly maxLineBytes?: number;
  /** Lines buffered unread before the socket is paused. Default {@link DEFAULT_HIGH_WATER_LINES}. */
  readonly highWaterLines?: number;
}

/**
 * Bounds the memory one connection can take when the peer sends bytes without a newline (a
 * corrupted stream, a wrong socket). Large enough for the largest replies QEMU sends
 * (`query-qmp-schema` is a few hundred kB; `human-monitor-command` output is smaller).
 */
export const DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024;

/**
 * Lines buffered before we stop reading the socket, so a consumer that stalls makes QEMU block on
 * its monitor output instead of making us buffer without limit.
 */
export const DEFAULT_HIGH_WATER_LINES = 1024;

/**
 * Opens a unix-socket {@link QmpTransport}. Rejects with `UNREACHABLE` (reason `CONNECT_FAILED`,
 * `details.errno` ENOENT when nothing is at the path, ECONNREFUSED when nothing listens on it),
 * `TIMEOUT`, or the abort error.
 */
export function connectUnixSocket(options: UnixSocketTransportOptions): Promise<QmpTransport> {
  const { path, timeoutMs, signal } = options;
  const peer = options.peer ?? 'qmp';
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortFailure(signal, { peer, path, phase: 'connect' }));
      return;
    }
    const socket = net.createConnection({ path });
    let settled = false;
    const finish = (error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('connect', onConnect);
      socket.off('error', onError);
      if (error) {
        socket.destroy();
        reject(error);
      } else {
        resolve(new UnixSocketTransport(socket, options));
      }
    };
    const onConnect = (): void => finish();
    const onError = (error: Error): void =>
      finish(
        qmpFailure(
          'UNREACHABLE',
          `cannot connect to ${peer === 'qmp' ? 'QMP' : 'guest agent'} socket ${path}: ${error.message}`,
          { reason: 'CONNECT_FAILED', peer, path, phase: 'connect', errno: errnoOf(error) },
          { cause: error },
        ),
      );
    const onAbort = (): void => finish(abortFailure(signal as AbortSignal, { peer, path, phase: 'connect' }));
    const timer = setTimeout(
      () =>
        finish(
          qmpFailure('TIMEOUT', `connecting to ${path} took longer than ${timeoutMs} ms`, {
            reason: 'TIMEOUT',
            peer,
            path,
            phase: 'connect',
            timeoutMs,
          }),
        ),
      timeoutMs,
    );
    socket.once('connect', onConnect);
    socket.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

class UnixSocketTransport implements QmpTransport {
  readonly #socket: net.Socket;
  readonly #queue: AsyncQueue<string>;
  readonly #path: string;
  readonly #peer: 'qmp' | 'guest-agent';
  #closing: Promise<void> | undefined;

  constructor(socket: net.Socket, options: UnixSocketTransportOptions) {
    this.#socket = socket;
    this.#path = options.path;
    this.#peer = options.peer ?? 'qmp';
    const highWater = options.highWaterLines ?? DEFAULT_HIGH_WATER_LINES;
    const splitter = new LineSplitter(options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES);
    this.#queue = new AsyncQueue<string>({
      lowWaterMark: Math.floor(highWater / 2),
      onDrain: () => {
        if (socket.isPaused() && !socket.destroyed) socket.resume();
      },
      onReturn: () => void this.close(),
    });
    socket.on('data', (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = splitter.push(chunk);
      } catch (error) {
        const max = error instanceof LineTooLongError ? error.maxLineBytes : undefined;
        this.#queue.end(
          qmpFailure(
            'UNREACHABLE',
            `${this.#path} sent a line longer than ${max ?? '?'} bytes; closing the connection`,
            { reason: 'PROTOCOL', peer: this.#peer, path: this.#path },
            { cause: error, retryable: false },
          ),
        );
        socket.destroy();
        return;
      }
      for (const line of lines) this.#queue.push(line);
      if (this.#queue.size >= highWater) socket.pause();
    });
    socket.on('end', () => this.#queue.end());
    socket.on('error', (error: Error) => this.#queue.end(this.#lost(error)));
    socket.on('close', () => this.#queue.end());
  }

  get lines(): AsyncIterable<string> {
    return this.#queue;
  }

  write(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#closing !== undefined || this.#socket.destroyed || !this.#socket.writable) {
        reject(this.#lost());
        return;
      }
      this.#socket.write(data, (error) => {
        if (error) reject(this.#lost(error));
        else resolve();
      });
    });
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#queue.end();
      if (this.#socket.closed) {
        resolve();
        return;
      }
      this.#socket.once('close', () => resolve());
      this.#socket.destroy();
    });
    return this.#closing;
  }

  #lost(error?: Error): Error {
    const message = error
      ? `connection to ${this.#path} broke: ${error.message}`
      : `connection to ${this.#path} is closed`;
    return qmpFailure(
      'UNREACHABLE',
      message,
      { reason: 'CONNECTION_LOST', peer: this.#peer, path: this.#path, errno: errnoOf(error) },
      { cause: error },
    );
  }
}
