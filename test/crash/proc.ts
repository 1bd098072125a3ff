/**
 * The crash tests' processes: each CLI process in a process group of its own (so that `kill -9`
 * takes the whole process, and nothing escapes cleanup even when a test fails), its output kept in
 * memory and in a log file; and the registry that kills every group and removes every cluster
 * directory on the way out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, rmSync, type WriteStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { BIN, ROOT } from './build.js';

/** Every process group still alive, and every cluster directory: cleaned up on the way out, whatever happens. */
const liveGroups = new Set<number>();
const liveDirs = new Set<string>();
/** INTERMISSION_CRASH_KEEP=1 keeps cluster directories (logs, journals, store) to look into a failure. */
export const KEEP = process.env.INTERMISSION_CRASH_KEEP === '1';

/** Registers a cluster directory, removed on the way out unless {@link KEEP}. */
export function trackDir(dir: string): void {
  liveDirs.add(dir);
}

/** Forgets a cluster directory (its owner removed it, or keeps it). */
export function untrackDir(dir: string): void {
  liveDirs.delete(dir);
}

function cleanUpNow(): void {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  liveGroups.clear();
  if (!KEEP) for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
  liveDirs.clear();
}
process.once('exit', cleanUpNow);
// The children are in process groups of their own, out of reach of a Ctrl-C at the terminal:
// take them down with this process, then die of the signal as usual.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    cleanUpNow();
    process.kill(process.pid, signal);
  });
}

/** The environment of a child: ours, without what would point the CLI elsewhere or load a loader. */
function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of ['INTERMISSION_CONTROL', 'INTERMISSION_TOKEN', 'INTERMISSION_STATE', 'NODE_OPTIONS']) {
    delete env[name];
  }
  return env;
}

/** One spawned CLI process, in its own process group, its output in a log file and in memory. */
export class Proc {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #lines: string[] = [];
  readonly #waiters = new Set<() => void>();
  readonly #log: WriteStream;

  constructor(name: string, args: readonly string[], logFile: string) {
    this.name = name;
    this.#log = createWriteStream(logFile, { flags: 'a' });
    this.#log.write(`--- ${new Date().toISOString()} ${name}: intermission ${args.join(' ')}\n`);
    this.child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: childEnv(),
    });
    if (this.child.pid === undefined) throw new Error(`cannot spawn ${name}`);
    this.pid = this.child.pid;
    liveGroups.add(this.pid);
    this.exited = new Promise((resolve) => {
      // 'close': the process has exited and its output has been read to the end.
      this.child.once('close', (code, signal) => {
        liveGroups.delete(this.pid);
        this.#write(`--- ${new Date().toISOString()} ${name} exited code=${code} signal=${signal}\n`);
        resolve({ code, signal });
        this.#wake();
      });
    });
    for (const [stream, tag] of [
      [this.child.stdout, 'out'],
      [this.child.stderr, 'err'],
    ] as const) {
      if (!stream) continue;
      createInterface({ input: stream }).on('line', (line) => {
        this.#lines.push(`${tag}: ${line}`);
        this.#write(`${tag}: ${line}\n`);
        this.#wake();
      });
    }
  }

  get alive(): boolean {
    return liveGroups.has(this.pid);
  }

  /** Everything the process wrote so far, `out: ` or `err: ` first. */
  lines(): readonly string[] {
    return this.#lines;
  }

  /** Waits for a stdout line matching `re`; fails when the process exits first or time runs out. */
  async waitForLine(re: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const line of this.#lines) {
        const m = line.startsWith('out: ') ? re.exec(line.slice(5)) : null;
        if (m) return m;
      }
      if (!this.alive) throw new Error(`${this.name} exited before printing ${re}:\n${this.tail(30)}`);
      if (Date.now() > deadline)
        throw new Error(`${this.name} did not print ${re} in ${timeoutMs} ms:\n${this.tail(30)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        this.#waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** How many lines the process wrote so far (an index for {@link waitFor}'s `from`). */
  get lineCount(): number {
    return this.#lines.length;
  }

  /**
   * Waits for a line (`out: ` or `err: ` first) from index `from` on that `test` accepts; resolves
   * with it, or with undefined when the process exits first or `timeoutMs` runs out. Lines are seen
   * as they arrive (no polling delay): crash trials kill a process on the line that marks a point.
   */
  async waitFor(
    test: (line: string) => boolean,
    options: { readonly from?: number; readonly timeoutMs: number },
  ): Promise<string | undefined> {
    const deadline = Date.now() + options.timeoutMs;
    let next = options.from ?? 0;
    for (;;) {
      for (; next < this.#lines.length; next++) {
        const line = this.#lines[next];
        if (line !== undefined && test(line)) return line;
      }
      if (!this.alive || Date.now() > deadline) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(200, Math.max(1, deadline - Date.now())));
        this.#waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Sends `signal` to the whole process group without waiting (SIGSTOP, SIGCONT). */
  signal(signal: NodeJS.Signals): void {
    if (!this.alive) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      // gone between the check and the signal
    }
  }

  /** Sends `signal` to the whole process group and waits for the process to exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.alive) {
      try {
        process.kill(-this.pid, signal);
      } catch {
        // gone between the check and the kill
      }
    }
    await this.exited;
    if (!this.#log.writableEnded) await new Promise<void>((resolve) => this.#log.end(resolve));
  }

  #write(text: string): void {
    if (!this.#log.writableEnded) this.#log.write(text);
  }

  tail(n: number): string {
    return this.#lines
      .slice(-n)
      .map((l) => `  [${this.name}] ${l}`)
      .join('\n');
  }

  #wake(): void {
    for (const w of this.#waiters) w();
    this.#waiters.clear();
  }
}

/** Runs one short CLI command to its end; rejects on a non-zero exit. */
export function runCli(args: readonly string[], timeoutMs = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: childEnv(),
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', reject);
    // 'close', not 'exit': the output has been read to the end.
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`intermission ${args.join(' ')} exited ${code}:\n${err}${out}`));
    });
  });
}

/** The JSON log lines (pino, on stderr) among a process's lines; a line cut short by kill -9 is skipped. */
export function parseLogLines(lines: readonly string[]): Record<string, unknown>[] {
  return lines.flatMap((line) => {
    if (!line.startsWith('err: {')) return [];
    try {
      return [JSON.parse(line.slice(5)) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}
