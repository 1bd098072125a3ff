import { EventEmitter } from 'node:events';
import type { z } from 'zod';
import { IntermissionError } from '../domain/errors.js';
import { QMP_RETURN_SCHEMAS, type QmpCommandArgs, type QmpCommandName, type QmpCommandReturn } from './commands.js';
import { publishDiagnostics } from './diagnostics.js';
import { abortFailure, mapQmpError, qmpFailure, type QmpCommandOutcome } from './errors.js';
import { toQmpEvent, type QmpEvent, type QmpEventName, type QmpEventOf } from './events.js';
import { AsyncQueue } from './internal/async-queue.js';
import { encodeQmpCommand, parseQmpLine, type QmpGreeting, type QmpInbound } from './protocol.js';
import { connectUnixSocket, type ConnectTransport, type QmpTransport } from './transport.js';

/**
 * Default bound on one command. Every modelled command answers at once (`migrate` returns before
 * the migration runs); ten seconds is far above a healthy QEMU's milliseconds and still short
 * enough that a wedged main loop (a stuck NFS read, a deadlock) surfaces while a pause budget can
 * still be honoured.
 */
export const DEFAULT_QMP_COMMAND_TIMEOUT_MS = 10_000;

/**
 * Events buffered per `events()` subscriber before it is ended with reason `OVERFLOW`: a
 * subscriber that stops reading must not grow memory for the life of the VM.
 */
export const DEFAULT_MAX_BUFFERED_EVENTS = 10_000;

/**
 * Replies of timed-out commands that we still recognise as `late` (and not `unmatched`) in the
 * stray diagnostics; older ids are forgotten so the set stays bounded.
 */
const ABANDONED_IDS_KEPT = 256;

/** Options of {@link QmpClient.connect}. */
export interface QmpConnectOptions {
  /** The QMP unix socket (`-qmp unix:PATH,server=on,wait=off`). */
  readonly path: string;
  /** Bound on the whole handshake: connect, greeting, `qmp_capabilities`. */
  readonly timeoutMs: number;
  /** Aborts the handshake. Not kept afterwards: `close()` ends the client. */
  readonly signal?: AbortSignal;
  /** Default bound on each command. Default {@link DEFAULT_QMP_COMMAND_TIMEOUT_MS}. */
  readonly commandTimeoutMs?: number;
  /** Events buffered per subscriber. Default {@link DEFAULT_MAX_BUFFERED_EVENTS}. */
  readonly maxBufferedEvents?: number;
  /** Opens the transport. Default {@link connectUnixSocket}; tests and other transports inject here. */
  readonly connectTransport?: ConnectTransport;
}

/** Options of one command. */
export interface QmpExecuteOptions {
  /** Bound on this command; default the client's `commandTimeoutMs`. */
  readonly timeoutMs?: number;
  /** Stops waiting for the answer. QEMU may still carry the command out (`details.outcome`). */
  readonly signal?: AbortSignal;
}

/** Options of {@link QmpClient.events}. */
export interface QmpEventsOptions<K extends QmpEventName = QmpEventName> {
  /** Only these (modelled) events; default every event, modelled or not. */
  readonly names?: readonly K[];
  /** Ends the iteration by throwing the abort error. */
  readonly signal?: AbortSignal;
}

/** How a client's connection ended. */
export interface QmpCloseInfo {
  /**
   * True after `close()`, or when QEMU closed the connection after this client sent `quit` or
   * after a `SHUTDOWN` event. False when the connection broke or QEMU went away unannounced.
   */
  readonly expected: boolean;
  /** Why, when not expected (`UNREACHABLE`, reason `CONNECTION_LOST` or `PROTOCOL`). */
  readonly error?: IntermissionError;
}

/**
 * The events a {@link QmpClient} emits as an EventEmitter: each modelled QMP event under its own
 * name (`STOP`, `RESUME`, `MIGRATION`, ...), every event (modelled or not) as `event`, and `close`
 * once when the connection ends. The client never emits `error`: failures reach the callers of
 * `execute`, the `events()` iterators and `close` listeners.
 */
export type QmpClientEventMap = { [K in QmpEventName]: [event: QmpEventOf<K>] } & {
  event: [event: QmpEvent];
  close: [info: QmpCloseInfo];
};

/**
 * An event subscription from {@link QmpClient.events}: an async iterator whose `return()`
 * (called by `break` in `for await`) unsubscribes.
 */
export interface QmpEventSubscription<T = QmpEvent> extends AsyncIterableIterator<T, undefined> {
  next(): Promise<IteratorResult<T, undefined>>;
  /** Unsubscribes and drops buffered events. */
  return(): Promise<IteratorResult<T, undefined>>;
}

/** Arguments of `execute` after the command name: `args` is optional for commands without any. */
export type QmpExecuteRest<K extends QmpCommandName> =
  undefined extends QmpCommandArgs<K>
    ? [args?: QmpCommandArgs<K>, options?: QmpExecuteOptions]
    : [args: QmpCommandArgs<K>, options?: QmpExecuteOptions];

interface PendingCommand {
  readonly command: string;
  readonly id: number;
  readonly receive: (reply: QmpInbound & { kind: 'return' | 'error' }) => void;
  readonly fail: (error: IntermissionError) => void;
}

interface Subscriber {
  readonly queue: AsyncQueue<QmpEvent>;
  readonly names: ReadonlySet<string> | undefined;
  /** Removes the subscriber's abort listener (when the subscription ends for any reason). */
  readonly detach: () => void;
}

let lastConnectionId = 0;

/**
 * A QMP client on one monitor socket: handshake, typed commands with per-command timeouts and
 * id-matched replies, and events both as an EventEmitter and as async iterators.
 *
 * QEMU serves one client per QMP socket; a process that must act while another holds a
 * connection needs its own `-qmp` socket (every monitor receives every event).
 */
export class QmpClient extends EventEmitter<QmpClientEventMap> {
  /** Process-unique number of this client, in diagnostics messages. */
  readonly connectionId: number;
  /** The socket path. */
  readonly path: string;
  readonly #transport: QmpTransport;
  readonly #commandTimeoutMs: number;
  readonly #maxBufferedEvents: number;
  readonly #pending = new Map<number, PendingCommand>();
  readonly #abandoned = new Set<number>();
  readonly #subscribers = new Set<Subscriber>();
  readonly #reading: Promise<void>;
  #greeting: QmpGreeting | undefined;
  #greetingWaiter: { resolve: (greeting: QmpGreeting) => void; reject: (error: IntermissionError) => void } | undefined;
  #lastId = 0;
  #quitSent = false;
  #shutdownSeen = false;
  #closeInfo: QmpCloseInfo | undefined;
  #closing: Promise<void> | undefined;

  private constructor(transport: QmpTransport, options: QmpConnectOptions) {
    super();
    lastConnectionId += 1;
    this.connectionId = lastConnectionId;
    this.path = options.path;
    this.#transport = transport;
    this.#commandTimeoutMs = options.commandTimeoutMs ?? DEFAULT_QMP_COMMAND_TIMEOUT_MS;
    this.#maxBufferedEvents = options.maxBufferedEvents ?? DEFAULT_MAX_BUFFERED_EVENTS;
    this.#reading = this.#readLoop();
  }

  /**
   * Connects, reads the greeting and negotiates capabilities (none enabled: out-of-band execution
   * stays off, so QEMU answers in order). Rejects with `UNREACHABLE` (nothing at the path),
   * `TIMEOUT` (often: another client holds the socket, so no greeting comes) or the abort error.
   */
  static async connect(options: QmpConnectOptions): Promise<QmpClient> {
    const startedAt = performance.now();
    const remaining = (): number => Math.max(1, options.timeoutMs - (performance.now() - startedAt));
    const connectTransport = options.connectTransport ?? connectUnixSocket;
    const transport = await connectTransport({
      path: options.path,
      timeoutMs: options.timeoutMs,
      signal: options.signal,
      peer: 'qmp',
    });
    const client = new QmpClient(transport, options);
    try {
      const greeting = await client.#waitForGreeting(remaining(), options.signal);
      await client.#call('qmp_capabilities', undefined, { timeoutMs: remaining(), signal: options.signal }, undefined);
      publishDiagnostics('connected', () => ({
        connectionId: client.connectionId,
        path: client.path,
        greeting,
        durationMs: performance.now() - startedAt,
      }));
      return client;
    } catch (error) {
      await client.close();
      throw error;
    }
  }

  /** The server's greeting (QEMU version and offered capabilities). */
  get greeting(): QmpGreeting {
    if (!this.#greeting) throw new Error('QmpClient.greeting read before the handshake finished');
    return this.#greeting;
  }

  /** True once the connection has ended, by `close()` or otherwise. */
  get closed(): boolean {
    return this.#closeInfo !== undefined;
  }

  /** How the connection ended; undefined while open. */
  get closeInfo(): QmpCloseInfo | undefined {
    return this.#closeInfo;
  }

  /**
   * Runs a modelled command and resolves with its validated answer. Rejects with the mapped
   * IntermissionError (see `QMP_ERROR_CLASSES`) when QEMU refuses it, `TIMEOUT` when no answer
   * comes in time, `UNREACHABLE` when the connection is lost or the client is closed.
   */
  execute<K extends QmpCommandName>(command: K, ...rest: QmpExecuteRest<K>): Promise<QmpCommandReturn<K>> {
    const [args, options] = rest;
    const schema = QMP_RETURN_SCHEMAS[command] as z.ZodType<QmpCommandReturn<K>>;
    return this.#call(command, args, options ?? {}, schema);
  }

  /**
   * Runs any command, unvalidated: the escape hatch for commands not in `QmpCommands`. Same
   * errors as {@link QmpClient.execute}.
   */
  executeRaw(
    command: string,
    args?: Readonly<Record<string, unknown>>,
    options: QmpExecuteOptions = {},
  ): Promise<unknown> {
    return this.#call(command, args, options, undefined);
  }

  /**
   * Subscribes to events from now on and returns them as an async iterator (subscribed at the
   * call, not at the first `next()`, so subscribe before running the command that causes them).
   * The iterator ends when the client closes as expected, and throws `UNREACHABLE` when the
   * connection is lost, so a watcher cannot mistake a dead monitor for a quiet one. `return()`
   * (or `break`) unsubscribes.
   */
  events<K extends QmpEventName>(
    options: QmpEventsOptions<K> & { readonly names: readonly K[] },
  ): QmpEventSubscription<QmpEventOf<K>>;
  events(options?: QmpEventsOptions): QmpEventSubscription;
  events(options: QmpEventsOptions = {}): QmpEventSubscription {
    const { signal } = options;
    const detach = (): void => signal?.removeEventListener('abort', onAbort);
    const subscriber: Subscriber = {
      queue: new AsyncQueue<QmpEvent>({
        onReturn: () => {
          this.#subscribers.delete(subscriber);
          detach();
        },
      }),
      names: options.names ? new Set(options.names) : undefined,
      detach,
    };
    const onAbort = (): void => {
      this.#subscribers.delete(subscriber);
      subscriber.queue.end(abortFailure(signal as AbortSignal, { peer: 'qmp', path: this.path, phase: 'events' }));
    };
    if (this.#closeInfo) {
      subscriber.queue.end(this.#closeInfo.error);
    } else if (signal?.aborted) {
      onAbort();
    } else {
      this.#subscribers.add(subscriber);
      signal?.addEventListener('abort', onAbort, { once: true });
    }
    return subscriber.queue;
  }

  /**
   * Closes the connection. Commands in flight reject with `UNREACHABLE` (reason `CLOSED`), event
   * iterators end, `close` is emitted. Idempotent: every call returns the same promise, which
   * never rejects.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#finish('local');
      await this.#transport.close();
      await this.#reading;
    })();
    return this.#closing;
  }

  #call<T>(command: string, args: unknown, options: QmpExecuteOptions, schema: z.ZodType<T> | undefined): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.#commandTimeoutMs;
    const { signal } = options;
    const base = { peer: 'qmp', path: this.path, command } as const;
    if (this.#closeInfo) return Promise.reject(this.#closedError(command, 'not-sent'));
    if (signal?.aborted) return Promise.reject(abortFailure(signal, { ...base, outcome: 'not-sent' }));
    this.#lastId += 1;
    const id = this.#lastId;
    const ref = { connectionId: this.connectionId, path: this.path, command, id };

    return new Promise<T>((resolve, reject) => {
      const startedAt = performance.now();
      let settled = false;
      const cleanup = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#pending.delete(id);
        return true;
      };
      const fail = (error: IntermissionError): void => {
        if (!cleanup()) return;
        publishDiagnostics('commandError', () => ({ ...ref, durationMs: performance.now() - startedAt, error }));
        reject(error);
      };
      const succeed = (value: T): void => {
        if (!cleanup()) return;
        publishDiagnostics('commandResult', () => ({ ...ref, durationMs: performance.now() - startedAt }));
        resolve(value);
      };
      const receive = (reply: QmpInbound & { kind: 'return' | 'error' }): void => {
        if (reply.kind === 'error') {
          fail(mapQmpError(reply.error, { ...base, id }));
          return;
        }
        if (!schema) {
          succeed(reply.value as T);
          return;
        }
        const parsed = schema.safeParse(reply.value);
        if (parsed.success) {
          succeed(parsed.data);
          return;
        }
        fail(
          qmpFailure(
            'UNREACHABLE',
            `QEMU answered ${command} with an unexpected shape: ${parsed.error.message}`,
            { ...base, id, reason: 'PROTOCOL', outcome: 'executed' },
            { cause: parsed.error, retryable: false },
          ),
        );
      };
      const onTimeout = (): void => {
        this.#abandon(id);
        fail(
          qmpFailure('TIMEOUT', `QEMU did not answer ${command} within ${timeoutMs} ms; it may still carry it out`, {
            ...base,
            id,
            reason: 'TIMEOUT',
            outcome: 'unknown',
            phase: 'command',
            timeoutMs,
          }),
        );
      };
      const onAbort = (): void => {
        this.#abandon(id);
        fail(abortFailure(signal as AbortSignal, { ...base, id, outcome: 'unknown' }));
      };
      const timer = setTimeout(onTimeout, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, { command, id, receive, fail });
      if (command === 'quit') this.#quitSent = true;
      publishDiagnostics('command', () => ({ ...ref, timeoutMs }));
      this.#transport.write(encodeQmpCommand(command, args, id)).catch((error: unknown) => {
        fail(
          qmpFailure(
            'UNREACHABLE',
            `could not send ${command} to ${this.path}`,
            { ...base, id, reason: 'CONNECTION_LOST', outcome: 'unknown' },
            { cause: error },
          ),
        );
      });
    });
  }

  #waitForGreeting(timeoutMs: number, signal: AbortSignal | undefined): Promise<QmpGreeting> {
    if (this.#greeting) return Promise.resolve(this.#greeting);
    const base = { peer: 'qmp', path: this.path, phase: 'greeting' } as const;
    if (this.#closeInfo) return Promise.reject(this.#closeInfo.error ?? this.#closedError('the greeting', 'not-sent'));
    if (signal?.aborted) return Promise.reject(abortFailure(signal, base));
    return new Promise<QmpGreeting>((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#greetingWaiter = undefined;
      };
      const onAbort = (): void => {
        done();
        reject(abortFailure(signal as AbortSignal, base));
      };
      const timer = setTimeout(() => {
        done();
        reject(
          qmpFailure(
            'TIMEOUT',
            `no QMP greeting from ${this.path} within ${timeoutMs} ms. QEMU serves one client per QMP ` +
              'socket, so another client probably holds this one: give each process its own -qmp socket',
            { ...base, reason: 'TIMEOUT', timeoutMs },
          ),
        );
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#greetingWaiter = {
        resolve: (greeting) => {
          done();
          resolve(greeting);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      };
    });
  }

  async #readLoop(): Promise<void> {
    let failure: unknown;
    try {
      for await (const line of this.#transport.lines) this.#onLine(line);
    } catch (error) {
      failure = error;
    }
    if (this.#closeInfo) return;
    // After `quit` or a SHUTDOWN event the hang-up is announced, even if it comes as a reset.
    const announced = this.#quitSent || this.#shutdownSeen;
    this.#finish(announced ? 'remote' : 'lost', failure);
    await this.#transport.close();
  }

  #onLine(line: string): void {
    const message = parseQmpLine(line);
    if (!this.#greeting) {
      if (message.kind === 'greeting') {
        this.#greeting = message.greeting;
        this.#greetingWaiter?.resolve(message.greeting);
        return;
      }
      // Not a QMP server, or a stream out of step: nothing after this can be trusted.
      const error = qmpFailure(
        'UNREACHABLE',
        `${this.path} did not start with a QMP greeting; is it a QMP socket?`,
        { reason: 'PROTOCOL', peer: 'qmp', path: this.path, phase: 'greeting' },
        { retryable: false },
      );
      this.#greetingWaiter?.reject(error);
      this.#finish('lost', error);
      void this.#transport.close();
      return;
    }
    switch (message.kind) {
      case 'return':
      case 'error': {
        const pending = typeof message.id === 'number' ? this.#pending.get(message.id) : undefined;
        if (pending) {
          pending.receive(message);
          return;
        }
        const late = typeof message.id === 'number' && this.#abandoned.delete(message.id);
        this.#stray(late ? 'late' : 'unmatched', line);
        return;
      }
      case 'event':
        this.#dispatch(toQmpEvent(message.name, message.data, message.timestamp));
        return;
      case 'greeting':
        this.#stray('invalid', line, 'a second greeting');
        return;
      case 'invalid':
        this.#stray('invalid', line, message.problem);
        return;
      default: {
        // Exhaustive: a new kind of inbound message must be handled above before this compiles.
        const unhandled: never = message;
        this.#stray('invalid', line, `unhandled message ${JSON.stringify(unhandled)}`);
      }
    }
  }

  #dispatch(event: QmpEvent): void {
    // With -no-shutdown QEMU outlives SHUTDOWN; a later RESUME means it is back in service.
    if (event.name === 'SHUTDOWN') this.#shutdownSeen = true;
    else if (event.name === 'RESUME') this.#shutdownSeen = false;
    publishDiagnostics('event', () => ({ connectionId: this.connectionId, path: this.path, event }));
    for (const subscriber of this.#subscribers) {
      if (subscriber.names && !(event.known && subscriber.names.has(event.name))) continue;
      if (subscriber.queue.size >= this.#maxBufferedEvents) {
        this.#subscribers.delete(subscriber);
        subscriber.detach();
        subscriber.queue.end(
          qmpFailure(
            'INTERNAL',
            `an event subscriber on ${this.path} fell ${this.#maxBufferedEvents} events behind and was ended`,
            { reason: 'OVERFLOW', peer: 'qmp', path: this.path },
          ),
        );
        continue;
      }
      subscriber.queue.push(event);
    }
    const emit = this.emit.bind(this) as (name: string, payload: unknown) => boolean;
    if (event.known) this.#emitSafely(() => emit(event.name, event));
    this.#emitSafely(() => emit('event', event));
  }

  /**
   * Runs a listener call; a throwing listener is a bug of its owner, surfaced as an uncaught
   * exception as EventEmitter would, but after our own state is consistent.
   */
  #emitSafely(call: () => boolean): void {
    try {
      call();
    } catch (error) {
      queueMicrotask(() => {
        throw error;
      });
    }
  }

  #stray(kind: 'late' | 'unmatched' | 'invalid', line: string, problem?: string): void {
    publishDiagnostics('stray', () => ({ connectionId: this.connectionId, path: this.path, kind, line, problem }));
  }

  #abandon(id: number): void {
    this.#abandoned.add(id);
    if (this.#abandoned.size > ABANDONED_IDS_KEPT) {
      const oldest = this.#abandoned.values().next();
      if (!oldest.done) this.#abandoned.delete(oldest.value);
    }
  }

  #closedError(command: string, outcome: QmpCommandOutcome): IntermissionError {
    const info = this.#closeInfo;
    if (info?.error) {
      return qmpFailure(
        'UNREACHABLE',
        `cannot run ${command}: the QMP connection to ${this.path} was lost`,
        { reason: 'CONNECTION_LOST', peer: 'qmp', path: this.path, command, outcome },
        { cause: info.error },
      );
    }
    return qmpFailure(
      'UNREACHABLE',
      `cannot run ${command}: the QMP client for ${this.path} is closed`,
      { reason: 'CLOSED', peer: 'qmp', path: this.path, command, outcome },
      { retryable: false },
    );
  }

  /**
   * Ends the client once: `local` (close()), `remote` (QEMU closed after quit/SHUTDOWN) or `lost`.
   * Rejects what is pending, ends the iterators, emits `close`.
   */
  #finish(how: 'local' | 'remote' | 'lost', cause?: unknown): void {
    if (this.#closeInfo) return;
    let error: IntermissionError | undefined;
    if (how === 'lost') {
      error =
        cause instanceof IntermissionError
          ? cause
          : qmpFailure(
              'UNREACHABLE',
              `the QMP connection to ${this.path} ended unexpectedly`,
              { reason: 'CONNECTION_LOST', peer: 'qmp', path: this.path },
              { cause },
            );
    }
    const info: QmpCloseInfo = error ? { expected: false, error } : { expected: true };
    this.#closeInfo = info;

    for (const pending of [...this.#pending.values()]) {
      if (how === 'local') {
        pending.fail(this.#closedError(pending.command, 'unknown'));
      } else {
        pending.fail(
          qmpFailure(
            'UNREACHABLE',
            `the QMP connection to ${this.path} ended before QEMU answered ${pending.command}`,
            {
              reason: 'CONNECTION_LOST',
              peer: 'qmp',
              path: this.path,
              command: pending.command,
              id: pending.id,
              outcome: 'unknown',
            },
            { cause: error },
          ),
        );
      }
    }
    this.#greetingWaiter?.reject(
      error ??
        qmpFailure('UNREACHABLE', `${this.path} closed before sending a QMP greeting`, {
          reason: how === 'local' ? 'CLOSED' : 'CONNECTION_LOST',
          peer: 'qmp',
          path: this.path,
          phase: 'greeting',
        }),
    );
    for (const subscriber of this.#subscribers) {
      subscriber.detach();
      subscriber.queue.end(error);
    }
    this.#subscribers.clear();
    publishDiagnostics('close', () => ({ connectionId: this.connectionId, path: this.path, ...info }));
    this.#emitSafely(() => this.emit('close', info));
  }
}
