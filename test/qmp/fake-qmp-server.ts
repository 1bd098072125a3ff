/**
 * A fake QMP server on a unix socket: a real protocol peer for tests, written independently of
 * the client (it frames lines with node:readline). It behaves like QEMU 7.2 where our client
 * depends on it (checked against the real one, see qemu-real.test.ts):
 *
 * - greets on connect with `{"QMP": {"version": ..., "capabilities": ["oob"]}}`, lines end in CRLF;
 * - answers everything but `qmp_capabilities` with CommandNotFound until capabilities are
 *   negotiated, and a second `qmp_capabilities` with CommandNotFound too;
 * - echoes `id` (any JSON value), answers unparsable input with an id-less GenericError;
 * - serves one client at a time: a second connection gets no greeting until the first closes;
 * - sends events only to negotiated clients, with `{seconds, microseconds}` timestamps;
 * - keeps a tiny run state: `stop`/`cont` emit STOP/RESUME, `quit` emits SHUTDOWN, answers and
 *   hangs up.
 *
 * Tests script it with `handle(command, handler)`: a handler returns the `return` value, throws
 * {@link FakeQmpError} for an error reply, returns {@link NO_REPLY} to stay silent, or returns a
 * promise to answer later (out-of-order replies).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import readline from 'node:readline';

/** Returned by a handler: send no reply at all (a hung command). */
export const NO_REPLY: unique symbol = Symbol('NO_REPLY');

/** Thrown by a handler: reply `{"error": {"class", "desc"}}`. */
export class FakeQmpError extends Error {
  readonly qmpClass: string;

  constructor(qmpClass: string, desc: string) {
    super(desc);
    this.qmpClass = qmpClass;
  }
}

/** One command as the server received it. */
export interface FakeQmpCall {
  readonly command: string;
  readonly args: Readonly<Record<string, unknown>> | undefined;
  /** The `id` member verbatim (undefined when absent). */
  readonly id: unknown;
  /** Which accepted connection sent it (1, 2, ...). */
  readonly connection: number;
}

/** Answers one command. See the module comment. */
export type FakeQmpHandler = (call: FakeQmpCall, server: FakeQmpServer) => unknown;

/** Options of {@link FakeQmpServer.start}. */
export interface FakeQmpServerOptions {
  /** Socket path; default a fresh temporary directory's `qmp.sock` (removed on close). */
  readonly path?: string;
  /** The greeting line's object; `null` sends none (a server that never greets). */
  readonly greeting?: Readonly<Record<string, unknown>> | null;
  /** Serve one client at a time, like QEMU. Default true. */
  readonly singleClient?: boolean;
  /** Initial run state for `query-status`. Default `running`. */
  readonly status?: string;
}

interface Connection {
  readonly number: number;
  readonly socket: net.Socket;
  negotiated: boolean;
}

const DEFAULT_GREETING = {
  QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: 'fake-qmp' }, capabilities: ['oob'] },
};

/** See the module comment. */
export class FakeQmpServer {
  /** The socket path clients connect to. */
  readonly path: string;
  /** Every command received, in order, `qmp_capabilities` included. */
  readonly calls: FakeQmpCall[] = [];
  /** Run state reported by the default `query-status`. */
  status: string;
  readonly #server: net.Server;
  readonly #tmpDir: string | undefined;
  readonly #greeting: Readonly<Record<string, unknown>> | null;
  readonly #singleClient: boolean;
  readonly #handlers = new Map<string, FakeQmpHandler>();
  readonly #connections = new Set<Connection>();
  readonly #waiting: net.Socket[] = [];
  readonly #callWaiters: { command: string; resolve: (call: FakeQmpCall) => void }[] = [];
  #accepted = 0;

  private constructor(server: net.Server, path: string, tmpDir: string | undefined, options: FakeQmpServerOptions) {
    this.#server = server;
    this.path = path;
    this.#tmpDir = tmpDir;
    this.#greeting = options.greeting === undefined ? DEFAULT_GREETING : options.greeting;
    this.#singleClient = options.singleClient ?? true;
    this.status = options.status ?? 'running';
    this.#installDefaults();
    server.on('connection', (socket) => this.#onSocket(socket));
  }

  /** Starts listening. */
  static async start(options: FakeQmpServerOptions = {}): Promise<FakeQmpServer> {
    const tmpDir = options.path ? undefined : mkdtempSync(join(tmpdir(), 'fake-qmp-'));
    const path = options.path ?? join(tmpDir as string, 'qmp.sock');
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new FakeQmpServer(server, path, tmpDir, options);
  }

  /** Clients currently attached (greeted or waiting). */
  get connectionCount(): number {
    return this.#connections.size + this.#waiting.length;
  }

  /** Installs or replaces the handler of a command. */
  handle(command: string, handler: FakeQmpHandler): this {
    this.#handlers.set(command, handler);
    return this;
  }

  /** Resolves with the next call of `command` received after this call. */
  waitForCall(command: string): Promise<FakeQmpCall> {
    return new Promise((resolve) => this.#callWaiters.push({ command, resolve }));
  }

  /**
   * Sends an event to every negotiated client. The timestamp defaults to now; pass one to test
   * conversions.
   */
  emitEvent(
    name: string,
    data?: Readonly<Record<string, unknown>>,
    timestamp: { seconds: number; microseconds: number } = nowTimestamp(),
  ): void {
    const message: Record<string, unknown> = { timestamp, event: name };
    if (data !== undefined) message.data = data;
    for (const connection of this.#connections) {
      if (connection.negotiated) this.#send(connection, message);
    }
  }

  /** Writes raw bytes to every greeted client (framing tests, garbage). */
  sendRaw(data: string | Uint8Array): void {
    for (const connection of this.#connections) connection.socket.write(data);
  }

  /** Breaks every connection at once, as a crashing QEMU would. */
  dropConnections(): void {
    for (const connection of this.#connections) connection.socket.destroy();
    for (const socket of this.#waiting.splice(0)) socket.destroy();
  }

  /** Stops listening, drops clients, removes the temporary directory. */
  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    if (this.#tmpDir) rmSync(this.#tmpDir, { recursive: true, force: true });
  }

  #installDefaults(): void {
    const empty = (): Record<string, never> => ({});
    this.handle('query-status', (_call, server) => ({
      status: server.status,
      singlestep: false,
      running: server.status === 'running',
    }));
    this.handle('query-version', () => (this.#greeting as typeof DEFAULT_GREETING | null)?.QMP.version ?? {});
    this.handle('query-name', () => ({ name: 'fake-vm' }));
    this.handle('stop', (_call, server) => {
      if (server.status === 'running') {
        server.status = 'paused';
        server.emitEvent('STOP');
      }
      return {};
    });
    this.handle('cont', (_call, server) => {
      if (server.status !== 'running') {
        server.status = 'running';
        server.emitEvent('RESUME');
      }
      return {};
    });
    this.handle('system_reset', (_call, server) => {
      server.emitEvent('RESET', { guest: false, reason: 'host-qmp-system-reset' });
      return {};
    });
    this.handle('system_powerdown', (_call, server) => {
      server.emitEvent('POWERDOWN');
      return {};
    });
    this.handle('query-migrate', empty);
    this.handle('query-cpus-fast', () => []);
  }

  #onSocket(socket: net.Socket): void {
    socket.on('error', () => undefined);
    if (this.#singleClient && this.#connections.size > 0) {
      // QEMU accepts the connection but neither greets nor reads until the current client leaves.
      this.#waiting.push(socket);
      socket.once('close', () => {
        const index = this.#waiting.indexOf(socket);
        if (index >= 0) this.#waiting.splice(index, 1);
      });
      return;
    }
    this.#serve(socket);
  }

  #serve(socket: net.Socket): void {
    this.#accepted += 1;
    const connection: Connection = { number: this.#accepted, socket, negotiated: false };
    this.#connections.add(connection);
    socket.once('close', () => {
      this.#connections.delete(connection);
      const next = this.#waiting.shift();
      if (next) this.#serve(next);
    });
    if (this.#greeting) this.#send(connection, this.#greeting);
    const lines = readline.createInterface({ input: socket, crlfDelay: Infinity });
    // A client that hangs up while an answer is on its way makes the write fail (EPIPE); readline
    // passes its input's errors on, and QEMU shrugs such a client off too.
    lines.on('error', () => undefined);
    lines.on('line', (line) => this.#onLine(connection, line));
  }

  #onLine(connection: Connection, line: string): void {
    if (line.trim() === '') return;
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      this.#send(connection, { error: { class: 'GenericError', desc: 'JSON parse error' } });
      return;
    }
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      this.#send(connection, { error: { class: 'GenericError', desc: 'QMP input must be a JSON object' } });
      return;
    }
    const { execute, arguments: args, id } = message as Record<string, unknown>;
    if (typeof execute !== 'string') {
      this.#send(
        connection,
        withId({ error: { class: 'GenericError', desc: "QMP input lacks member 'execute'" } }, id),
      );
      return;
    }
    const call: FakeQmpCall = {
      command: execute,
      args: typeof args === 'object' && args !== null ? (args as Record<string, unknown>) : undefined,
      id,
      connection: connection.number,
    };
    this.calls.push(call);
    const waiter = this.#callWaiters.findIndex((w) => w.command === execute);
    if (waiter >= 0) this.#callWaiters.splice(waiter, 1)[0]?.resolve(call);

    if (execute === 'qmp_capabilities') {
      if (connection.negotiated) {
        this.#reply(
          connection,
          call,
          new FakeQmpError('CommandNotFound', 'Capabilities negotiation is already complete, command ignored'),
        );
      } else {
        connection.negotiated = true;
        this.#reply(connection, call, {});
      }
      return;
    }
    if (!connection.negotiated) {
      this.#reply(
        connection,
        call,
        new FakeQmpError('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'"),
      );
      return;
    }
    if (execute === 'quit') {
      this.emitEvent('SHUTDOWN', { guest: false, reason: 'host-qmp-quit' });
      this.#reply(connection, call, {});
      for (const other of this.#connections) other.socket.end();
      return;
    }
    const handler = this.#handlers.get(execute);
    if (!handler) {
      this.#reply(connection, call, new FakeQmpError('CommandNotFound', `The command ${execute} has not been found`));
      return;
    }
    let outcome: unknown;
    try {
      outcome = handler(call, this);
    } catch (error) {
      outcome = error;
    }
    if (outcome instanceof Promise) {
      outcome.then(
        (value: unknown) => this.#reply(connection, call, value),
        (error: unknown) => this.#reply(connection, call, error),
      );
    } else {
      this.#reply(connection, call, outcome);
    }
  }

  #reply(connection: Connection, call: FakeQmpCall, outcome: unknown): void {
    if (outcome === NO_REPLY) return;
    if (outcome instanceof FakeQmpError) {
      this.#send(connection, withId({ error: { class: outcome.qmpClass, desc: outcome.message } }, call.id));
    } else if (outcome instanceof Error) {
      this.#send(connection, withId({ error: { class: 'GenericError', desc: outcome.message } }, call.id));
    } else {
      this.#send(connection, withId({ return: outcome }, call.id));
    }
  }

  #send(connection: Connection, message: unknown): void {
    if (!connection.socket.destroyed) connection.socket.write(`${JSON.stringify(message)}\r\n`);
  }
}

function withId(message: Record<string, unknown>, id: unknown): Record<string, unknown> {
  return id === undefined ? message : { ...message, id };
}

function nowTimestamp(): { seconds: number; microseconds: number } {
  const micros = Math.round((performance.timeOrigin + performance.now()) * 1000);
  return { seconds: Math.floor(micros / 1e6), microseconds: micros % 1e6 };
}
