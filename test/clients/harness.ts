/**
 * Harness for running REAL metadata clients (Debian's packaged azure-events-az and cloud-init),
 * unmodified, against our metadata service inside a network namespace that owns 169.254.169.254.
 *
 * Prerequisites (checked by {@link preflight}): root, `ip netns`, Debian's /usr/bin/python3, the
 * clients unpacked by `scripts/fetch-test-clients.sh` (default dir tmp/test-clients, or
 * $INTERMISSION_TEST_CLIENTS), and a built CLI (`npm run build`). When one is missing the tests skip
 * with the reason, except when CI is set: then they fail.
 *
 * The service under test is the real CLI, `node bin/intermission.js serve-metadata ...`, driven with
 * `intermission events schedule|list|cancel --state <dir>`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export { sleep };

export const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/**
 * Where scripts/fetch-test-clients.sh unpacked the clients: $INTERMISSION_TEST_CLIENTS, else
 * $INTERMISSION_CLIENTS_DIR, else the first of <repo>/tmp/test-clients (the script's default) and
 * /var/cache/intermission-clients (.ci/run's default) that holds them.
 */
export const CLIENTS_DIR = findClientsDir();

function findClientsDir(): string {
  const explicit = process.env.INTERMISSION_TEST_CLIENTS || process.env.INTERMISSION_CLIENTS_DIR;
  if (explicit) return resolve(explicit);
  const candidates = [join(REPO, 'tmp', 'test-clients'), '/var/cache/intermission-clients'];
  return (
    candidates.find((d) => existsSync(join(d, 'resource-agents')) || existsSync(join(d, 'cloud-init'))) ??
    candidates[0]!
  );
}
export const STANDINS_DIR = join(REPO, 'test', 'clients', 'standins');
export const PYTHON = '/usr/bin/python3';
export const IMDS_ADDRESS = '169.254.169.254';

/** Where each client lives once `scripts/fetch-test-clients.sh` has unpacked it. */
export const CLIENT_PATHS = {
  'resource-agents': {
    ocfRoot: join(CLIENTS_DIR, 'resource-agents', 'usr', 'lib', 'ocf'),
    agent: join(CLIENTS_DIR, 'resource-agents', 'usr', 'lib', 'ocf', 'resource.d', 'heartbeat', 'azure-events-az'),
  },
  'cloud-init': {
    distPackages: join(CLIENTS_DIR, 'cloud-init', 'usr', 'lib', 'python3', 'dist-packages'),
  },
} as const;
export type ClientPackage = keyof typeof CLIENT_PATHS;

const CLI: readonly string[] = [join(REPO, 'bin', 'intermission.js')];

/** A minimal, proxy-free environment for everything run inside the namespace. */
export function cleanEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', ...extra };
}

/** This process's environment, without unset entries. */
function inheritedEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
}

function isCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

function works(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore', env: { ...inheritedEnv(), ...cleanEnv() }, timeout: 30_000 });
  return r.status === 0;
}

export interface Preflight {
  /** For describe(): false, or the reason to skip (never when CI is set). */
  readonly skip: string | false;
  /** Call first in before(): throws the problems when the tests cannot run (only reached in CI). */
  assertReady(): void;
}

/** Checks everything the client tests need; see the module comment. */
export function preflight(packages: readonly ClientPackage[]): Preflight {
  const problems: string[] = [];
  if (process.platform !== 'linux') problems.push('needs Linux network namespaces');
  if (process.getuid?.() !== 0) problems.push('needs root (ip netns)');
  if (!works('ip', ['-V'])) problems.push('needs `ip` (Debian package iproute2)');
  if (!existsSync(PYTHON)) problems.push(`needs Debian's ${PYTHON}`);
  const fetch = `scripts/fetch-test-clients.sh ${CLIENTS_DIR}`;
  for (const pkg of packages) {
    const paths: Record<string, string> = CLIENT_PATHS[pkg];
    for (const path of Object.values(paths)) {
      if (!existsSync(path)) problems.push(`${path} is missing: run ${fetch}`);
    }
  }
  if (
    packages.includes('cloud-init') &&
    existsSync(PYTHON) &&
    !works(PYTHON, ['-c', 'import yaml, requests, configobj'])
  ) {
    problems.push(`cloud-init needs python3-yaml, python3-requests and python3-configobj: run ${fetch}`);
  }
  if (!existsSync(join(REPO, 'dist', 'cli', 'main.js'))) {
    problems.push('the CLI is not built: run npm run build');
  }
  const reason = problems.join('; ');
  return {
    skip: problems.length > 0 && !isCi() ? `real-client tests not runnable here: ${reason}` : false,
    assertReady() {
      if (problems.length > 0) throw new Error(`real-client tests cannot run (CI is set, so this fails): ${reason}`);
    },
  };
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion (with a timeout), collecting its output. */
export function run(
  cmd: string,
  args: readonly string[],
  options: { env?: Record<string, string>; timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, {
      env: options.env ?? inheritedEnv(),
      stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr });
    });
    if (child.stdin) {
      child.stdin.on('error', () => {}); // the child may exit before reading its input
      child.stdin.end(options.input);
    }
  });
}

async function mustRun(cmd: string, args: readonly string[], env?: Record<string, string>): Promise<string> {
  const r = await run(cmd, args, env ? { env } : {});
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code ?? r.signal}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** A network namespace of this test file whose loopback owns 169.254.169.254. */
export class Namespace {
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
  }

  static async create(label: string): Promise<Namespace> {
    const name = `im-${label}-${process.pid}`;
    const env = cleanEnv();
    await run('ip', ['netns', 'del', name], { env }); // a leftover of a killed run with a reused pid
    await mustRun('ip', ['netns', 'add', name], env);
    const ns = new Namespace(name);
    try {
      await mustRun('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up'], env);
      await mustRun('ip', ['netns', 'exec', name, 'ip', 'addr', 'add', `${IMDS_ADDRESS}/32`, 'dev', 'lo'], env);
    } catch (e) {
      await ns.delete();
      throw e;
    }
    return ns;
  }

  /** argv that runs `cmd args` inside the namespace. */
  wrap(cmd: string, args: readonly string[] = []): [string, string[]] {
    return ['ip', ['netns', 'exec', this.name, cmd, ...args]];
  }

  exec(cmd: string, args: readonly string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}) {
    const [c, a] = this.wrap(cmd, args);
    return run(c, a, { env: options.env ?? cleanEnv(), timeoutMs: options.timeoutMs ?? 30_000 });
  }

  async delete(): Promise<void> {
    await run('ip', ['netns', 'del', this.name], { env: cleanEnv() });
  }
}

export interface ScheduledEventsDoc {
  readonly DocumentIncarnation: number;
  readonly Events: readonly {
    readonly EventId: string;
    readonly EventStatus: string;
    readonly EventType: string;
    readonly ResourceType: string;
    readonly Resources: readonly string[];
    readonly NotBefore: string;
    readonly [key: string]: unknown;
  }[];
}

/** One `ip netns exec` of node that GETs our metadata service as a VM would (for observing only). */
export async function imdsGet(ns: Namespace, path: string): Promise<{ status: number; body: string }> {
  const script = `
    const r = await fetch(${JSON.stringify(`http://${IMDS_ADDRESS}`)} + process.argv[1], { headers: { Metadata: 'true' } });
    process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() }));`;
  const r = await ns.exec(process.execPath, ['--input-type=module', '-e', script, path]);
  if (r.code !== 0) throw new Error(`GET ${path} inside ${ns.name} failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as { status: number; body: string };
}

/** The scheduled-events document a VM of the namespace sees right now. */
export async function scheduledEvents(ns: Namespace, apiVersion = '2020-07-01'): Promise<ScheduledEventsDoc> {
  const r = await imdsGet(ns, `/metadata/scheduledevents?api-version=${apiVersion}`);
  if (r.status !== 200) throw new Error(`scheduledevents answered ${r.status}: ${r.body}`);
  return JSON.parse(r.body) as ScheduledEventsDoc;
}

/** An event in the control API's JSON (fields the tests read). */
export interface EventRecord {
  readonly eventId: string;
  readonly status?: string | null;
  readonly notBefore?: string;
  readonly approvedBy?: string | null;
  readonly startedAt?: string | null;
  readonly removalReason?: string | null;
  readonly [key: string]: unknown;
}

export interface ServiceOptions {
  readonly ns: Namespace;
  /** Fleet file content (JSON is YAML). */
  readonly fleet: unknown;
  /** vmName → host:port, all inside the namespace. */
  readonly binds: Readonly<Record<string, string>>;
  readonly timeScale?: number;
}

/** The metadata service (`intermission serve-metadata`) running inside a namespace. */
export class MetadataService {
  /** Scratch directory of this service: fleet file, state, control socket. */
  readonly dir: string;
  readonly stateDir: string;
  readonly controlAddress: string;
  private readonly child: ChildProcess;
  private stdout = '';
  private stderr = '';
  private readonly exited: Promise<void>;

  private constructor(dir: string, stateDir: string, controlAddress: string, child: ChildProcess) {
    this.dir = dir;
    this.stateDir = stateDir;
    this.controlAddress = controlAddress;
    this.child = child;
    this.exited = new Promise((r) => child.once('exit', () => r()));
    child.stdout?.on('data', (c: Buffer) => (this.stdout += c.toString()));
    child.stderr?.on('data', (c: Buffer) => (this.stderr += c.toString()));
  }

  static async start(options: ServiceOptions): Promise<MetadataService> {
    const dir = await mkdtemp(join(tmpdir(), 'intermission-clients-'));
    const stateDir = join(dir, 'state');
    const fleetPath = join(dir, 'fleet.json');
    await writeFile(fleetPath, JSON.stringify(options.fleet, null, 2));
    const controlAddress = `unix:${join(dir, 'control.sock')}`;
    const args = [
      ...CLI,
      'serve-metadata',
      '--fleet',
      fleetPath,
      '--state',
      stateDir,
      ...Object.entries(options.binds).flatMap(([vm, address]) => ['--bind', `${vm}=${address}`]),
      '--control',
      controlAddress,
      ...(options.timeScale === undefined ? [] : ['--time-scale', String(options.timeScale)]),
    ];
    const [cmd, argv] = options.ns.wrap(process.execPath, args);
    const child = spawn(cmd, argv, {
      cwd: REPO,
      env: { ...inheritedEnv(), ...cleanEnv() },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const service = new MetadataService(dir, stateDir, controlAddress, child);
    try {
      await service.waitForOutput(/^control listening address=/m, 20_000);
      for (const vm of Object.keys(options.binds)) {
        await service.waitForOutput(new RegExp(`^metadata listening vm=${vm} address=`, 'm'), 1_000);
      }
    } catch (e) {
      await service.stop();
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
    return service;
  }

  private async waitForOutput(re: RegExp, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.stdout)) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`serve-metadata exited (${this.child.exitCode ?? this.child.signalCode}): ${this.output()}`);
      }
      if (Date.now() > deadline) throw new Error(`serve-metadata did not print ${re} in time: ${this.output()}`);
      await sleep(50);
    }
  }

  /** Everything the service printed, for failure messages. */
  output(): string {
    return `\n--- stdout ---\n${this.stdout}\n--- stderr ---\n${this.stderr}`;
  }

  /** Runs `intermission events ...` against this service (found through --state). */
  async events(args: readonly string[]): Promise<string> {
    const [sub, ...rest] = args;
    const r = await run(process.execPath, [...CLI, 'events', sub ?? '', '--state', this.stateDir, ...rest], {
      env: inheritedEnv(),
    });
    if (r.code !== 0) throw new Error(`intermission events ${args.join(' ')} failed: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** `events <args> --json`, parsed. */
  async eventsJson(args: readonly string[]): Promise<unknown> {
    const out = await this.events([...args, '--json']);
    try {
      return JSON.parse(out) as unknown;
    } catch {
      throw new Error(`intermission events ${args.join(' ')} --json printed no JSON: ${out}`);
    }
  }

  /** `events schedule ... --json`; returns the new event's id. */
  async schedule(vm: string, type: string, notice: string, extra: readonly string[] = []): Promise<string> {
    const args = ['schedule', '--vm', vm, '--type', type, '--notice', notice, ...extra];
    const created = (await this.eventsJson(args)) as { eventId?: unknown } | undefined;
    if (typeof created?.eventId !== 'string')
      throw new Error(`events schedule printed no eventId: ${JSON.stringify(created)}`);
    return created.eventId;
  }

  /** Live events as `events list --json` shows them (an array, or {events: [...]}). */
  async list(): Promise<{ eventId: string; [key: string]: unknown }[]> {
    const out = await this.eventsJson(['list']);
    const list = Array.isArray(out) ? out : (out as { events?: unknown } | undefined)?.events;
    if (!Array.isArray(list)) throw new Error(`events list --json printed no list: ${JSON.stringify(out)}`);
    return list as { eventId: string }[];
  }

  /**
   * One event as the operator sees it in `events list --all --json` (the real CLI's history, which
   * includes completed and cancelled events with approvedBy, startedAt, removalReason...).
   */
  async history(eventId: string): Promise<EventRecord> {
    const out = await this.eventsJson(['list', '--all']);
    const list = (Array.isArray(out) ? out : (out as { events?: unknown } | undefined)?.events) as EventRecord[];
    const found = Array.isArray(list) ? list.find((e) => e.eventId === eventId) : undefined;
    if (!found) throw new Error(`event ${eventId} is not in events list --all --json: ${JSON.stringify(out)}`);
    return found;
  }

  async cancel(eventId: string): Promise<void> {
    await this.events(['cancel', eventId]);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const killed = await Promise.race([this.exited.then(() => true), sleep(5_000).then(() => false)]);
      if (!killed) {
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
  }

  async cleanup(): Promise<void> {
    await this.stop();
    if (!process.env.INTERMISSION_KEEP_TMP) await rm(this.dir, { recursive: true, force: true });
  }
}
