/**
 * Starting real QEMU programs for the QMP tests: finding the binary (with the skip policy),
 * spawning it, waiting for its sockets, and stopping it. Only processes started here are stopped
 * here, by their own handle.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** The absolute path of an executable on PATH (or in /usr/sbin, where Debian puts qemu-ga). */
export function findExecutable(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * The `skip` option for tests that need `name`: a reason when it is missing and CI is not set;
 * false otherwise (under CI a missing binary must fail the run, see {@link requireExecutable}).
 */
export function skipUnlessInstalled(name: string, aptPackage: string): string | false {
  if (findExecutable(name) || process.env.CI) return false;
  return `${name} is not installed (apt-get install -y ${aptPackage}); under CI this is a failure, not a skip`;
}

/** The binary's path; throws (failing the suite) when missing, which only happens under CI. */
export function requireExecutable(name: string, aptPackage: string): string {
  const path = findExecutable(name);
  if (!path) throw new Error(`${name} is not installed but CI is set: install ${aptPackage} in the CI image`);
  return path;
}

/** A spawned program with its captured stderr. */
export interface RealPeer {
  readonly child: ChildProcess;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** Resolves with the exit code (null if killed by a signal). */
  readonly exited: Promise<number | null>;
  /** Kills it if still running and waits for it to exit. */
  stop(): Promise<void>;
}

/** Spawns `path args` and waits until every socket in `sockets` exists. */
export async function startPeer(
  path: string,
  args: readonly string[],
  sockets: readonly string[],
  timeoutMs = 10_000,
): Promise<RealPeer> {
  const child = spawn(path, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(null));
  });
  let running = true;
  void exited.then(() => {
    running = false;
  });
  const peer: RealPeer = {
    child,
    stderr: () => stderr,
    exited,
    stop: async () => {
      if (running) child.kill('SIGKILL');
      await exited;
    },
  };
  const deadline = performance.now() + timeoutMs;
  while (!sockets.every((socket) => existsSync(socket))) {
    if (!running) throw new Error(`${path} exited before creating its sockets: ${stderr}`);
    if (performance.now() > deadline) {
      await peer.stop();
      throw new Error(`${path} did not create ${sockets.join(', ')} within ${timeoutMs} ms: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return peer;
}

/** The RPCs of a qemu-ga binary (`qemu-ga -b help`). */
export function listGuestAgentRpcs(qemuGa: string): string[] {
  const result = spawnSync(qemuGa, ['-b', 'help'], { encoding: 'utf8' });
  return `${result.stdout}${result.stderr}`
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => /^guest-[a-z-]+$/.test(line));
}
