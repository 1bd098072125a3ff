/**
 * A client of the QEMU guest agent (qemu-ga) over the host end of its virtio-serial channel, a
 * unix socket (`-chardev socket,path=...,server=on,wait=off,id=qga0 -device
 * virtserialport,chardev=qga0,name=org.qemu.guest_agent.0`).
 *
 * The channel is a byte pipe with a memory: whatever an earlier client left behind (a reply it
 * stopped waiting for, half a request) is still in it. So each call opens a fresh connection,
 * sends a 0xFF byte (qemu-ga's parser drops any partial request on it) and `guest-sync` with a
 * random id, discards every line until the answer carrying that id, and only then sends the
 * command. Holding no connection between calls also leaves the single-client socket free for
 * other tools. The cost is one extra round trip per call (7-100 ms under TCG).
 */
import { randomInt } from 'node:crypto';
import { z } from 'zod';
import { IntermissionError } from '../domain/errors.js';
import { publishDiagnostics } from './diagnostics.js';
import { abortFailure, mapQmpError, qmpFailure } from './errors.js';
import { encodeQmpCommand, parseQmpLine, type QmpInbound } from './protocol.js';
import { connectUnixSocket, type ConnectTransport, type QmpTransport } from './transport.js';
import { preciseNow } from './wall-clock.js';

/**
 * Default bound on one call (connect, sync and command). A healthy agent answers in under 100 ms
 * even under TCG; a paused VM or a guest without qemu-ga never answers, and five seconds keeps
 * that from stalling a maintenance step for long.
 */
export const DEFAULT_GUEST_AGENT_TIMEOUT_MS = 5_000;

/** One command the agent reports in `guest-info`. */
export interface GuestAgentCommandInfo {
  readonly name: string;
  readonly enabled: boolean;
  /** False for commands that never answer (guest-shutdown, guest-suspend-*). */
  readonly 'success-response': boolean;
}

/** `guest-info`'s answer. */
export interface GuestAgentInfo {
  /** The qemu-ga version, e.g. `7.2.22`. */
  readonly version: string;
  readonly supported_commands: readonly GuestAgentCommandInfo[];
}

/** The guest-agent commands modelled here (qga/qapi-schema.json). */
export interface GuestAgentCommands {
  /** Liveness check. */
  'guest-ping': { args: undefined; returns: void };
  /** The guest's wall clock in nanoseconds since the epoch. */
  'guest-get-time': { args: undefined; returns: number };
  /**
   * Sets the guest clock to `time` (ns since the epoch) and the RTC from it; without `time`, sets
   * the clock from the RTC. Needs `hwclock` in the guest (else GenericError "not supported").
   */
  'guest-set-time': { args: { readonly time?: number } | undefined; returns: void };
  /** Agent version and its commands. */
  'guest-info': { args: undefined; returns: GuestAgentInfo };
}

/** A modelled guest-agent command. */
export type GuestAgentCommandName = keyof GuestAgentCommands;

const emptyReturn: z.ZodType<void> = z
  .object({})
  .loose()
  .transform(() => undefined);

/** Validators of each command's answer. */
export const GUEST_AGENT_RETURN_SCHEMAS: {
  readonly [K in GuestAgentCommandName]: z.ZodType<GuestAgentCommands[K]['returns']>;
} = Object.freeze({
  'guest-ping': emptyReturn,
  // Not z.int(): nanoseconds since the epoch exceed 2^53 and arrive as (integral) doubles.
  'guest-get-time': z.number(),
  'guest-set-time': emptyReturn,
  'guest-info': z
    .object({
      version: z.string(),
      supported_commands: z.array(
        z.object({ name: z.string(), enabled: z.boolean(), 'success-response': z.boolean() }).loose(),
      ),
    })
    .loose(),
});

/** Options of {@link GuestAgentClient}. */
export interface GuestAgentClientOptions {
  /** The host end of the agent's channel. */
  readonly path: string;
  /** Default bound on each call. Default {@link DEFAULT_GUEST_AGENT_TIMEOUT_MS}. */
  readonly timeoutMs?: number;
  /** Host wall clock, ms since the epoch, for `hostSentMs`/`hostReceivedMs`. Default `Date.now`. */
  readonly now?: () => number;
  /** Opens the transport. Default {@link connectUnixSocket}. */
  readonly connectTransport?: ConnectTransport;
}

/** Options of one call. */
export interface GuestAgentCallOptions {
  /** Bound on this call (connect + sync + command). */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Host wall clock for this call's stamps; default the client's. */
  readonly now?: () => number;
}

/** What every call resolves with. */
export interface GuestAgentCallResult<T> {
  readonly value: T;
  /** Write of the command to its answer, on the monotonic clock (the sync is not included). */
  readonly roundTripMs: number;
  /** Host wall clock just before the command was written. */
  readonly hostSentMs: number;
  /** Host wall clock just after its answer arrived. */
  readonly hostReceivedMs: number;
  /** Round trip of the guest-sync before it. */
  readonly syncRoundTripMs: number;
}

/** A reading of the guest clock against the host clock. */
export interface GuestTimeReading {
  /** Guest wall clock, ms since the epoch (from ns; doubles keep it to about 0.25 µs). */
  readonly guestTimeMs: number;
  readonly roundTripMs: number;
  readonly hostSentMs: number;
  readonly hostReceivedMs: number;
  /** The host time the guest most likely read its clock at: the midpoint of the round trip. */
  readonly hostMidpointMs: number;
  /** `guestTimeMs - hostMidpointMs`: negative when the guest is behind. Uncertain by ±roundTripMs/2. */
  readonly offsetMs: number;
}

/** Options of {@link GuestAgentClient.setTime}. */
export interface GuestAgentSetTimeOptions extends GuestAgentCallOptions {
  /**
   * The time to set, ms since the epoch; a function is called right before the command is written
   * (after the sync), so a time computed from the host clock is as fresh as possible. Omitted: the
   * guest sets its clock from its RTC.
   */
  readonly timeMs?: number | (() => number);
}

/** What {@link GuestAgentClient.setTime} resolves with. */
export interface GuestSetTimeResult {
  /** The time sent, ms since the epoch (undefined when set from the RTC). */
  readonly timeMs: number | undefined;
  readonly roundTripMs: number;
  readonly hostSentMs: number;
  readonly hostReceivedMs: number;
}

type Phase = 'connect' | 'sync' | 'command';

/**
 * See the module comment. Every call rejects with an IntermissionError: the mapped error of the
 * agent's reply (`QMP_ERROR_CLASSES`), `TIMEOUT` (`details.phase` says whether the sync or the
 * command went unanswered), `UNREACHABLE` (no socket, connection lost, client closed).
 */
export class GuestAgentClient {
  /** The socket path. */
  readonly path: string;
  readonly #timeoutMs: number;
  readonly #now: () => number;
  readonly #connect: ConnectTransport;
  readonly #closed = new AbortController();

  constructor(options: GuestAgentClientOptions) {
    this.path = options.path;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_GUEST_AGENT_TIMEOUT_MS;
    this.#now = options.now ?? preciseNow;
    this.#connect = options.connectTransport ?? connectUnixSocket;
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#closed.signal.aborted;
  }

  /** Runs a modelled command after a guest-sync; resolves with its answer and timings. */
  execute<K extends GuestAgentCommandName>(
    command: K,
    args?: GuestAgentCommands[K]['args'] | (() => GuestAgentCommands[K]['args']),
    options: GuestAgentCallOptions = {},
  ): Promise<GuestAgentCallResult<GuestAgentCommands[K]['returns']>> {
    const schema = GUEST_AGENT_RETURN_SCHEMAS[command] as z.ZodType<GuestAgentCommands[K]['returns']>;
    return this.#call(command, args, schema, options);
  }

  /** Opens a connection and syncs, without a command: proves the agent answers. */
  async sync(options: GuestAgentCallOptions = {}): Promise<{ readonly roundTripMs: number }> {
    const result = await this.#call('guest-sync', undefined, undefined, options);
    return { roundTripMs: result.syncRoundTripMs };
  }

  /** `guest-ping`. */
  async ping(options: GuestAgentCallOptions = {}): Promise<{ readonly roundTripMs: number }> {
    const result = await this.execute('guest-ping', undefined, options);
    return { roundTripMs: result.roundTripMs };
  }

  /** `guest-get-time`, converted to ms and set against the host clock. */
  async getTime(options: GuestAgentCallOptions = {}): Promise<GuestTimeReading> {
    const result = await this.execute('guest-get-time', undefined, options);
    const guestTimeMs = result.value / 1e6;
    const hostMidpointMs = (result.hostSentMs + result.hostReceivedMs) / 2;
    return {
      guestTimeMs,
      roundTripMs: result.roundTripMs,
      hostSentMs: result.hostSentMs,
      hostReceivedMs: result.hostReceivedMs,
      hostMidpointMs,
      offsetMs: guestTimeMs - hostMidpointMs,
    };
  }

  /** `guest-set-time`; see {@link GuestAgentSetTimeOptions.timeMs}. */
  async setTime(options: GuestAgentSetTimeOptions = {}): Promise<GuestSetTimeResult> {
    const { timeMs } = options;
    let sentMs: number | undefined;
    const args = (): { time: number } | undefined => {
      if (timeMs === undefined) return undefined;
      sentMs = typeof timeMs === 'function' ? timeMs() : timeMs;
      // qemu-ga wants an integer; the double's rounding (±128 ns) is far below a clock's accuracy.
      return { time: Math.round(sentMs * 1e6) };
    };
    const result = await this.execute('guest-set-time', args, options);
    return {
      timeMs: sentMs,
      roundTripMs: result.roundTripMs,
      hostSentMs: result.hostSentMs,
      hostReceivedMs: result.hostReceivedMs,
    };
  }

  /** `guest-info`. */
  async info(
    options: GuestAgentCallOptions = {},
  ): Promise<{ readonly info: GuestAgentInfo; readonly roundTripMs: number }> {
    const result = await this.execute('guest-info', undefined, options);
    return { info: result.value, roundTripMs: result.roundTripMs };
  }

  /** Aborts calls in flight (they reject with reason `CLOSED`) and refuses new ones. Idempotent. */
  close(): Promise<void> {
    this.#closed.abort();
    return Promise.resolve();
  }

  async #call<T>(
    command: string,
    args: unknown,
    schema: z.ZodType<T> | undefined,
    options: GuestAgentCallOptions,
  ): Promise<GuestAgentCallResult<T>> {
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const now = options.now ?? this.#now;
    const startedAt = performance.now();
    // One signal for this call, fired by the deadline, close() or the caller's signal. Wired by
    // hand rather than with AbortSignal.any, which kept dependent signals of a long-lived parent
    // (our close signal) alive in some Node 20 releases.
    const deadline = new AbortController();
    const stop = new AbortController();
    const { signal } = stop;
    const sources = [deadline.signal, this.#closed.signal, ...(options.signal ? [options.signal] : [])];
    const onSourceAbort = (): void => stop.abort();
    for (const source of sources) {
      if (source.aborted) stop.abort();
      else source.addEventListener('abort', onSourceAbort, { once: true });
    }
    const timer = setTimeout(() => deadline.abort(), timeoutMs);
    let transport: QmpTransport | undefined;
    const onAbort = (): void => void transport?.close();
    signal.addEventListener('abort', onAbort, { once: true });
    let phase: Phase = 'connect';
    let syncId: number | undefined;

    try {
      if (signal.aborted) throw new Error('aborted before start');
      transport = await this.#connect({ path: this.path, timeoutMs, signal, peer: 'guest-agent' });
      if (signal.aborted) throw new Error('aborted after connect');
      const lines = transport.lines[Symbol.asyncIterator]();

      phase = 'sync';
      // Below 2^47: exact as a JSON number, and one chance in 1e14 of meeting a stale answer.
      const id = randomInt(1, 2 ** 47);
      syncId = id;
      const syncStartedAt = performance.now();
      const flushAndSync = Buffer.concat([
        Buffer.of(0xff),
        Buffer.from(encodeQmpCommand('guest-sync', { id }, undefined)),
      ]);
      await transport.write(flushAndSync);
      const synced = await readUntil(
        lines,
        (message) => message.kind === 'return' && message.value === id,
        (line) => publishDiagnostics('agentStale', { path: this.path, command, syncId: id, phase: 'sync', line }),
      );
      if (!synced) throw new Error('the connection ended before the guest-sync answer');
      const syncRoundTripMs = performance.now() - syncStartedAt;
      if (command === 'guest-sync') {
        return {
          value: id as T,
          roundTripMs: syncRoundTripMs,
          hostSentMs: now(),
          hostReceivedMs: now(),
          syncRoundTripMs,
        };
      }

      phase = 'command';
      const line = encodeQmpCommand(command, typeof args === 'function' ? (args as () => unknown)() : args, id);
      const hostSentMs = now();
      const sentAt = performance.now();
      await transport.write(line);
      publishDiagnostics('agentCommand', { path: this.path, command, syncId: id, syncRoundTripMs });
      const reply = await readUntil(
        lines,
        (message) =>
          (message.kind === 'return' || message.kind === 'error') && (message.id === undefined || message.id === id),
        (stale) =>
          publishDiagnostics('agentStale', { path: this.path, command, syncId: id, phase: 'reply', line: stale }),
      );
      const roundTripMs = performance.now() - sentAt;
      const hostReceivedMs = now();
      if (!reply) throw new Error(`the connection ended before the answer to ${command}`);
      if (reply.kind === 'error') {
        throw mapQmpError(reply.error, { peer: 'guest-agent', command, path: this.path });
      }
      let value: T;
      if (schema) {
        const parsed = schema.safeParse(reply.kind === 'return' ? reply.value : undefined);
        if (!parsed.success) {
          throw qmpFailure(
            'UNREACHABLE',
            `the guest agent answered ${command} with an unexpected shape: ${parsed.error.message}`,
            { reason: 'PROTOCOL', peer: 'guest-agent', path: this.path, command, outcome: 'executed' },
            { cause: parsed.error, retryable: false },
          );
        }
        value = parsed.data;
      } else {
        value = (reply.kind === 'return' ? reply.value : undefined) as T;
      }
      publishDiagnostics('agentCommandResult', () => ({
        path: this.path,
        command,
        syncId: id,
        roundTripMs,
        durationMs: performance.now() - startedAt,
      }));
      return { value, roundTripMs, hostSentMs, hostReceivedMs, syncRoundTripMs };
    } catch (thrown) {
      const error = this.#failure(thrown, {
        command,
        phase,
        timeoutMs,
        deadline: deadline.signal,
        signal: options.signal,
      });
      publishDiagnostics('agentCommandError', () => ({
        path: this.path,
        command,
        syncId,
        durationMs: performance.now() - startedAt,
        error,
      }));
      throw error;
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      for (const source of sources) source.removeEventListener('abort', onSourceAbort);
      await transport?.close();
    }
  }

  /** The one place a failed call's error is decided, by what stopped it first. */
  #failure(
    thrown: unknown,
    context: {
      readonly command: string;
      readonly phase: Phase;
      readonly timeoutMs: number;
      readonly deadline: AbortSignal;
      readonly signal: AbortSignal | undefined;
    },
  ): IntermissionError {
    const { command, phase, timeoutMs } = context;
    const base = { peer: 'guest-agent', path: this.path, command, phase } as const;
    const outcome = phase === 'command' ? 'unknown' : 'not-sent';
    if (context.deadline.aborted) {
      const message =
        phase === 'connect'
          ? `could not connect to the guest agent socket ${this.path} within ${timeoutMs} ms`
          : phase === 'sync'
            ? `the guest agent at ${this.path} did not answer guest-sync within ${timeoutMs} ms: ` +
              'is qemu-ga running in the guest, and is the VM running (a paused VM cannot answer)?'
            : `the guest agent did not answer ${command} within ${timeoutMs} ms; it may still carry it out`;
      return qmpFailure('TIMEOUT', message, { ...base, reason: 'TIMEOUT', outcome, timeoutMs });
    }
    if (this.#closed.signal.aborted) {
      return qmpFailure(
        'UNREACHABLE',
        `cannot finish ${command}: the guest agent client for ${this.path} is closed`,
        { ...base, reason: 'CLOSED', outcome },
        { retryable: false },
      );
    }
    if (context.signal?.aborted) return abortFailure(context.signal, { ...base, outcome });
    if (thrown instanceof IntermissionError) return thrown;
    return qmpFailure(
      'UNREACHABLE',
      `the guest agent connection at ${this.path} ended during ${phase === 'sync' ? 'guest-sync' : command}`,
      { ...base, reason: 'CONNECTION_LOST', outcome },
      { cause: thrown },
    );
  }
}

/** Reads lines until one is accepted; hands the others to `onStale`. Undefined if the stream ends. */
async function readUntil(
  lines: AsyncIterator<string>,
  accept: (message: QmpInbound) => boolean,
  onStale: (line: string) => void,
): Promise<QmpInbound | undefined> {
  for (;;) {
    const next = await lines.next();
    if (next.done === true) return undefined;
    const message = parseQmpLine(next.value);
    if (accept(message)) return message;
    onStale(next.value);
  }
}
