/**
 * Raw HTTP/1 over node:net, for inputs that no HTTP client would send: odd request lines, absolute-
 * form targets, duplicated or huge headers, lying Content-Length, broken chunked bodies, bytes
 * trickled over time and garbage that is not HTTP at all. Only the status line of the answer is
 * read; the rest is drained and dropped.
 */
import { connect } from 'node:net';

/** How one input is put on the wire. */
export type Delivery =
  /** Everything in one write. */
  | { readonly kind: 'whole' }
  /** In `chunks` pieces, `gapMs` apart (a slow client). */
  | { readonly kind: 'trickle'; readonly chunks: number; readonly gapMs: number }
  /** The first `bytes` bytes, then the connection is closed without waiting for an answer. */
  | { readonly kind: 'cut'; readonly bytes: number };

/** What came back for one input. */
export interface WireResult {
  /** The status of the first response, or undefined when none came. */
  readonly status: number | undefined;
  /** Why no status came: the server closed, reset, or said nothing in time. */
  readonly outcome: 'answered' | 'closed' | 'reset' | 'timeout' | 'cut';
  /** The first bytes of the answer (at most 2 KB), for findings. */
  readonly head: string;
  readonly ms: number;
}

export interface SendOptions {
  readonly port: number;
  readonly host?: string;
  readonly bytes: Buffer;
  readonly delivery?: Delivery;
  /** How long to wait for the status line. Default 10 s. */
  readonly timeoutMs?: number;
  /** How long to keep draining after the status line when the server does not close. Default 300 ms. */
  readonly drainMs?: number;
  /** Gives up waiting when aborted (as a timeout; the connection is closed). */
  readonly signal?: AbortSignal;
}

const HEAD_LIMIT = 2048;

/** Sends `bytes` to `host:port` and reads the status line of the answer. Never rejects. */
export function sendRaw(options: SendOptions): Promise<WireResult> {
  const started = Date.now();
  const delivery = options.delivery ?? { kind: 'whole' };
  return new Promise((resolve) => {
    const socket = connect({ port: options.port, host: options.host ?? '127.0.0.1' });
    let head = '';
    let status: number | undefined;
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const onAbort = (): void => finish('timeout');
    const finish = (outcome: WireResult['outcome']): void => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      options.signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve({ status, outcome: status === undefined ? outcome : 'answered', head, ms: Date.now() - started });
    };
    timers.push(setTimeout(() => finish('timeout'), options.timeoutMs ?? 10_000));
    if (options.signal?.aborted) finish('timeout');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('data', (chunk: Buffer) => {
      if (head.length < HEAD_LIMIT) head += chunk.toString('latin1').slice(0, HEAD_LIMIT - head.length);
      if (status === undefined) {
        const m = /^HTTP\/\d(?:\.\d)? (\d{3})/.exec(head);
        if (m?.[1]) {
          status = Number(m[1]);
          timers.push(setTimeout(() => finish('answered'), options.drainMs ?? 300));
        } else if (head.includes('\n')) {
          // Not an HTTP status line: the server answered with something else; count it as closed.
          finish('closed');
        }
      }
    });
    socket.on('end', () => finish('closed'));
    socket.on('close', () => finish('closed'));
    socket.on('error', (error: NodeJS.ErrnoException) => finish(error.code === 'ECONNRESET' ? 'reset' : 'closed'));
    socket.once('connect', () => {
      const { bytes } = options;
      if (delivery.kind === 'whole') {
        socket.write(bytes);
      } else if (delivery.kind === 'cut') {
        socket.end(bytes.subarray(0, Math.min(bytes.length, delivery.bytes)), () => finish('cut'));
      } else {
        const size = Math.max(1, Math.ceil(bytes.length / delivery.chunks));
        for (let i = 0; i * size < bytes.length; i++) {
          timers.push(
            setTimeout(() => {
              if (!socket.destroyed) socket.write(bytes.subarray(i * size, (i + 1) * size));
            }, i * delivery.gapMs),
          );
        }
      }
    });
  });
}

/**
 * Opens a connection that sends the head of a POST and then one byte of its body every `gapMs`,
 * and reports when the server cut it (or undefined while it is still open). For the slow-client
 * probe: a listener must not hold a trickling client forever.
 */
export class TrickleProbe {
  readonly #socket;
  readonly #opened = Date.now();
  #closedAfterMs: number | undefined;
  readonly #timer: NodeJS.Timeout;

  constructor(options: { port: number; head: string; gapMs: number }) {
    this.#socket = connect({ port: options.port, host: '127.0.0.1' });
    this.#socket.on('error', () => undefined);
    this.#socket.on('close', () => {
      this.#closedAfterMs ??= Date.now() - this.#opened;
      clearInterval(this.#timer);
    });
    this.#socket.once('connect', () => this.#socket.write(options.head));
    this.#timer = setInterval(() => {
      if (!this.#socket.destroyed) this.#socket.write('x');
    }, options.gapMs);
  }

  /** How long the connection stayed open before the server cut it; undefined while open. */
  get closedAfterMs(): number | undefined {
    return this.#closedAfterMs;
  }

  get openForMs(): number {
    return (this.#closedAfterMs ?? Date.now() - this.#opened) | 0;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#socket.destroy();
  }
}
