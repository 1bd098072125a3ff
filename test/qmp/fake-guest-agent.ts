/**
 * A fake qemu-ga on a unix socket, behaving like qemu-ga 7.2 (checked in qemu-real.test.ts
 * against the real binary) on a virtio-serial channel: one JSON request per line, replies end in `\n`, `id` is echoed, a
 * 0xFF byte drops any partial request and is itself answered with a GenericError "JSON parse
 * error" line. Its guest clock is the host clock plus `clockOffsetMs`.
 *
 * To exercise the client's guest-sync handling it can leave stale lines in the channel (what a
 * previous client's timed-out command would have left): they are written as soon as a client
 * connects, before it sends anything. A symmetric one-way delay makes round trips measurable.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { preciseNow } from '../../src/qmp/index.js';

/** Options of {@link FakeGuestAgent.start}. */
export interface FakeGuestAgentOptions {
  /** Guest clock minus host clock. Default 0. */
  readonly clockOffsetMs?: number;
  /** Delay before a request is processed and again before its reply is written. Default 0. */
  readonly oneWayDelayMs?: number;
  /** Whether `guest-set-time` works (qemu-ga needs hwclock in the guest). Default true. */
  readonly setTimeSupported?: boolean;
}

/** One request as the fake received it. */
export interface FakeGuestAgentCall {
  readonly command: string;
  readonly args: Readonly<Record<string, unknown>> | undefined;
  readonly id: unknown;
}

/** See the module comment. */
export class FakeGuestAgent {
  /** The socket path (in a temporary directory removed on close). */
  readonly path: string;
  /** Every request, in order. */
  readonly calls: FakeGuestAgentCall[] = [];
  /** Guest clock minus host clock; `guest-set-time` changes it. */
  clockOffsetMs: number;
  /** When false, guest-sync is never answered (an agent that is not running). */
  answerSync = true;
  oneWayDelayMs: number;
  readonly #server: net.Server;
  readonly #tmpDir: string;
  readonly #setTimeSupported: boolean;
  readonly #sockets = new Set<net.Socket>();
  #stale: string[] = [];
  /**
   * The agent's partial request, kept across connections: on virtio-serial the agent reads one
   * long-lived device, so half a request from a client that went away is still there for the next.
   */
  #partial = Buffer.alloc(0);

  private constructor(server: net.Server, tmpDir: string, options: FakeGuestAgentOptions) {
    this.#server = server;
    this.#tmpDir = tmpDir;
    this.path = join(tmpDir, 'qga.sock');
    this.clockOffsetMs = options.clockOffsetMs ?? 0;
    this.oneWayDelayMs = options.oneWayDelayMs ?? 0;
    this.#setTimeSupported = options.setTimeSupported ?? true;
    server.on('connection', (socket) => this.#serve(socket));
  }

  /** Starts listening on a fresh socket. */
  static async start(options: FakeGuestAgentOptions = {}): Promise<FakeGuestAgent> {
    const tmpDir = mkdtempSync(join(tmpdir(), 'fake-qga-'));
    const server = net.createServer();
    const agent = new FakeGuestAgent(server, tmpDir, options);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(agent.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return agent;
  }

  /** The guest clock now, ms since the epoch. */
  guestNowMs(): number {
    return preciseNow() + this.clockOffsetMs;
  }

  /** Lines (or partial lines, without `\n`) left in the channel for the next client to find. */
  leaveStale(...chunks: string[]): void {
    this.#stale.push(...chunks);
  }

  /** Stops listening and removes the socket directory. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    rmSync(this.#tmpDir, { recursive: true, force: true });
  }

  #serve(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => this.#sockets.delete(socket));
    for (const chunk of this.#stale.splice(0)) socket.write(chunk);
    socket.on('data', (chunk: Buffer) => {
      let start = 0;
      for (let index = 0; index < chunk.length; index += 1) {
        if (chunk[index] === 0xff) {
          // qemu-ga's lexer rejects the byte, answers a parse error and starts afresh.
          this.#partial = Buffer.alloc(0);
          start = index + 1;
          this.#write(socket, { error: { class: 'GenericError', desc: "JSON parse error, stray '\uFFFD'" } }, 0);
        } else if (chunk[index] === 0x0a) {
          const line = Buffer.concat([this.#partial, chunk.subarray(start, index)]).toString('utf8');
          this.#partial = Buffer.alloc(0);
          start = index + 1;
          if (line.trim() !== '') this.#request(socket, line);
        }
      }
      this.#partial = Buffer.concat([this.#partial, chunk.subarray(start)]);
    });
  }

  #request(socket: net.Socket, line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.#write(socket, { error: { class: 'GenericError', desc: 'JSON parse error' } }, 0);
      return;
    }
    const command = String(message.execute);
    const args = message.arguments as Record<string, unknown> | undefined;
    this.calls.push({ command, args, id: message.id });
    setTimeout(() => {
      const reply = this.#answer(command, args);
      if (reply === undefined) return;
      this.#write(socket, message.id === undefined ? reply : { ...reply, id: message.id }, this.oneWayDelayMs);
    }, this.oneWayDelayMs);
  }

  #answer(command: string, args: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
    switch (command) {
      case 'guest-sync':
        return this.answerSync ? { return: args?.id } : undefined;
      case 'guest-ping':
        return { return: {} };
      case 'guest-get-time':
        return { return: Math.round(this.guestNowMs() * 1e6) };
      case 'guest-set-time': {
        if (!this.#setTimeSupported) {
          return { error: { class: 'GenericError', desc: 'this feature or command is not currently supported' } };
        }
        if (typeof args?.time === 'number') this.clockOffsetMs = args.time / 1e6 - preciseNow();
        return { return: {} };
      }
      case 'guest-info':
        return {
          return: {
            version: '7.2.0-fake',
            supported_commands: ['guest-sync', 'guest-ping', 'guest-get-time', 'guest-set-time', 'guest-info'].map(
              (name) => ({ enabled: true, name, 'success-response': true }),
            ),
          },
        };
      default:
        return { error: { class: 'CommandNotFound', desc: `The command ${command} has not been found` } };
    }
  }

  #write(socket: net.Socket, message: Record<string, unknown>, delayMs: number): void {
    const send = (): void => {
      if (!socket.destroyed) socket.write(`${JSON.stringify(message)}\n`);
    };
    if (delayMs > 0) setTimeout(send, delayMs);
    else send();
  }
}
