/**
 * A tenant's peer holding one TCP stream to a guest's stream server (scripts/guest/stream.sh, port
 * 7000) from the test's network namespace, through the guest's NIC: it checks every byte against the
 * deterministic stream (line n is n as nine decimal digits and a newline), sees the connection end
 * (EOF or reset), and measures the gaps between data arrivals (stalls), in host time.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/** The stream's byte at `offset`: line n = offset / 10 is `n` in nine digits and `\n`. */
export function expectedStreamByte(offset: number): number {
  const line = Math.floor(offset / 10);
  const column = offset % 10;
  if (column === 9) return 0x0a;
  return String(line).padStart(9, '0').charCodeAt(column);
}

/** The first byte that differs from the stream. */
export interface StreamMismatch {
  readonly offset: number;
  readonly expected: number;
  readonly got: number;
  readonly atMs: number;
}

/** A gap between two data arrivals. */
export interface Stall {
  /** When the data that ended the gap arrived (ms since the epoch). */
  readonly atMs: number;
  readonly ms: number;
}

/** Checks a stream chunk by chunk and measures the gaps between chunks (pure: the caller gives times). */
export class StreamVerifier {
  #bytes = 0;
  #mismatch: StreamMismatch | null = null;
  #firstAtMs: number | null = null;
  #lastAtMs: number | null = null;
  #longest: Stall = { atMs: 0, ms: 0 };
  readonly #stalls: Stall[] = [];
  readonly #thresholdMs: number;

  constructor(stallThresholdMs: number) {
    this.#thresholdMs = stallThresholdMs;
  }

  /** Takes the next chunk, arrived at `atMs`. */
  push(chunk: Uint8Array, atMs: number): void {
    if (chunk.length === 0) return;
    if (this.#lastAtMs !== null) {
      const gap = atMs - this.#lastAtMs;
      if (gap > this.#longest.ms) this.#longest = { atMs, ms: gap };
      if (gap > this.#thresholdMs) this.#stalls.push({ atMs, ms: gap });
    } else {
      this.#firstAtMs = atMs;
    }
    this.#lastAtMs = atMs;
    if (this.#mismatch === null) {
      for (let i = 0; i < chunk.length; i++) {
        const expected = expectedStreamByte(this.#bytes + i);
        const got = chunk[i] ?? -1;
        if (got !== expected) {
          this.#mismatch = { offset: this.#bytes + i, expected, got, atMs };
          break;
        }
      }
    }
    this.#bytes += chunk.length;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get mismatch(): StreamMismatch | null {
    return this.#mismatch;
  }

  get firstAtMs(): number | null {
    return this.#firstAtMs;
  }

  get lastAtMs(): number | null {
    return this.#lastAtMs;
  }

  /** The longest gap so far (0 ms before two chunks arrived). */
  get longestStall(): Stall {
    return this.#longest;
  }

  /** The gaps over the threshold, in order. */
  get stalls(): readonly Stall[] {
    return [...this.#stalls];
  }
}

/** How the connection ended, when it ended before {@link TcpProbe.stop}. */
export interface StreamEnd {
  readonly atMs: number;
  readonly reason: 'eof' | 'reset' | 'error';
  readonly detail: string;
}

/** What a probe saw. */
export interface TcpProbeReport {
  readonly bytes: number;
  /** Whole lines received (bytes / 10). */
  readonly lines: number;
  readonly mismatch: StreamMismatch | null;
  /** null when the stream was still open when the probe stopped. */
  readonly ended: StreamEnd | null;
  readonly firstByteAtMs: number | null;
  readonly lastByteAtMs: number | null;
  readonly longestStallMs: number;
  readonly longestStallAtMs: number | null;
  /** The gaps between arrivals over the threshold, with when each ended. */
  readonly stalls: readonly Stall[];
  /** Bytes per second between the first and the last byte. */
  readonly bytesPerSecond: number;
}

/** Options of {@link startTcpProbe}. */
export interface TcpProbeOptions {
  /** The network namespace the client runs in (`ip netns exec`). */
  readonly namespace: string;
  readonly host: string;
  readonly port?: number;
  /** Gaps between arrivals longer than this are listed as stalls (default 200 ms). */
  readonly stallThresholdMs?: number;
}

/** A running probe. */
export interface TcpProbe {
  /** What it saw so far. */
  report(): TcpProbeReport;
  /** Resolves once `bytes` bytes arrived; rejects when the stream ends first or after `timeoutMs`. */
  waitForBytes(bytes: number, timeoutMs: number): Promise<void>;
  /** Closes the connection and returns the report. */
  stop(): Promise<TcpProbeReport>;
}

/**
 * Connects from `namespace` to host:port with socat (retrying the connection for up to 10 s) and
 * checks the stream as it arrives.
 */
export function startTcpProbe(options: TcpProbeOptions): TcpProbe {
  const port = options.port ?? 7000;
  const verifier = new StreamVerifier(options.stallThresholdMs ?? 200);
  const child: ChildProcess = spawn(
    'ip',
    ['netns', 'exec', options.namespace, 'socat', '-u', `TCP:${options.host}:${port},retry=20,interval=0.5`, '-'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  let ended: StreamEnd | null = null;
  let stopping = false;
  const exited = new Promise<void>((resolve) => {
    child.on('close', (code, signal) => {
      if (!stopping) {
        const reset = /reset by peer/i.test(stderr);
        ended = {
          atMs: Date.now(),
          reason: reset ? 'reset' : code === 0 ? 'eof' : 'error',
          detail: `socat exited (${code ?? signal ?? '?'}): ${stderr.trim()}`,
        };
      }
      resolve();
    });
  });
  child.stdout?.on('data', (chunk: Buffer) => verifier.push(chunk, Date.now()));
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });

  const report = (): TcpProbeReport => {
    const first = verifier.firstAtMs;
    const last = verifier.lastAtMs;
    const seconds = first !== null && last !== null && last > first ? (last - first) / 1000 : 0;
    return {
      bytes: verifier.bytes,
      lines: Math.floor(verifier.bytes / 10),
      mismatch: verifier.mismatch,
      ended,
      firstByteAtMs: first,
      lastByteAtMs: last,
      longestStallMs: verifier.longestStall.ms,
      longestStallAtMs: verifier.longestStall.ms > 0 ? verifier.longestStall.atMs : null,
      stalls: verifier.stalls,
      bytesPerSecond: seconds > 0 ? Math.round(verifier.bytes / seconds) : 0,
    };
  };

  return {
    report,
    async waitForBytes(bytes, timeoutMs) {
      const end = Date.now() + timeoutMs;
      while (verifier.bytes < bytes) {
        if (ended !== null) throw new Error(`stream ended after ${verifier.bytes} bytes: ${ended.detail}`);
        if (Date.now() > end)
          throw new Error(`only ${verifier.bytes} of ${bytes} bytes within ${timeoutMs} ms: ${stderr.trim()}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
    async stop() {
      const result = report();
      if (ended === null) {
        stopping = true;
        child.kill('SIGTERM');
      }
      await exited;
      return result;
    },
  };
}
