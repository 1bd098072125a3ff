/**
 * A multi-process cluster for crash tests: one `intermission agent` process per host (each over a
 * simulated host, or this machine's QEMU guests) and one `intermission controller` process, all
 * spawned from the compiled CLI (`node bin/intermission.js`, see build.ts), each in its own process
 * group (see proc.ts); and the tenants' view of a rollout, read while it runs.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Prng } from '../../src/hypervisor/sim/index.js';
import { sleep } from './build.js';
import { KEEP, Proc, parseLogLines, runCli, trackDir, untrackDir } from './proc.js';

export { ROOT, ensureBuilt, sleep } from './build.js';
export { Proc, parseLogLines, runCli } from './proc.js';

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/** The simulator's seeded PRNG (mulberry32): the same seed gives the same kill moments. */
export class Random extends Prng {
  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(0, items.length - 1)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }
}

/** The seed of a crash test: `INTERMISSION_CRASH_SEED` to replay or vary, else a fixed default. */
export function crashSeed(fallback: number): number {
  const text = process.env.INTERMISSION_CRASH_SEED;
  if (text === undefined || text === '') return fallback;
  const seed = Number(text);
  if (!Number.isSafeInteger(seed)) throw new Error(`INTERMISSION_CRASH_SEED must be an integer, got ${text}`);
  return seed;
}

// ---------------------------------------------------------------------------------------------
// The cluster

/** A fleet as written to the fleet file. */
export interface FleetSpec {
  readonly hosts: readonly { readonly name: string }[];
  readonly availabilitySets: readonly { readonly name: string; readonly updateDomains: number }[];
  readonly vms: readonly {
    readonly name: string;
    readonly host: string;
    readonly availabilitySet?: string;
    readonly updateDomain?: number;
  }[];
}

/**
 * The crash tests' fleet: 4 hosts, availability sets `web` (3 UDs) and `db` (2 UDs), and two
 * standalone VMs. Every host holds at most one UD of each set, so each host has one host step and
 * the plan has 3 waves: h0 | h1 + h3 | h2.
 */
export const CRASH_FLEET: FleetSpec = {
  hosts: [{ name: 'h0' }, { name: 'h1' }, { name: 'h2' }, { name: 'h3' }],
  availabilitySets: [
    { name: 'web', updateDomains: 3 },
    { name: 'db', updateDomains: 2 },
  ],
  vms: [
    { name: 'web_0', host: 'h0', availabilitySet: 'web', updateDomain: 0 },
    { name: 'web_3', host: 'h0', availabilitySet: 'web', updateDomain: 0 },
    { name: 'db_0', host: 'h0', availabilitySet: 'db', updateDomain: 0 },
    { name: 'web_1', host: 'h1', availabilitySet: 'web', updateDomain: 1 },
    { name: 'web_4', host: 'h1', availabilitySet: 'web', updateDomain: 1 },
    { name: 'db_1', host: 'h1', availabilitySet: 'db', updateDomain: 1 },
    { name: 'web_2', host: 'h2', availabilitySet: 'web', updateDomain: 2 },
    { name: 'web_5', host: 'h2', availabilitySet: 'web', updateDomain: 2 },
    { name: 'solo_a', host: 'h2' },
    { name: 'db_2', host: 'h3', availabilitySet: 'db', updateDomain: 1 },
    { name: 'db_3', host: 'h3', availabilitySet: 'db', updateDomain: 1 },
    { name: 'solo_b', host: 'h3' },
  ],
};

interface AgentSlot {
  readonly host: string;
  readonly stateDir: string;
  readonly seed: number;
  port: number;
  proc: Proc;
  /** Processes this slot has run, oldest first (each restart adds one). */
  readonly generations: Proc[];
}

interface ControllerSlot {
  proc: Proc;
  control: string;
  metadata: Map<string, string>;
  readonly generations: Proc[];
}

/** Bound on one request of a test to the control or agent API (generous: CI machines are loaded). */
const REQUEST_TIMEOUT_MS = 10_000;

/** What `control.json` holds. */
interface ControlFile {
  address: string;
  token: string;
}

/** Options of {@link Cluster.start}. */
export interface ClusterOptions {
  readonly name: string;
  readonly fleet: FleetSpec;
  /** Divides notices, linger and settle times. */
  readonly timeScale: number;
  /** Seeds the simulated hosts (each host gets seed + its index). */
  readonly seed: number;
  /** More arguments of a host's agent, e.g. `--driver qemu --qemu-config <file>`. */
  readonly agentArgs?: (host: string) => readonly string[];
  /** More arguments of the controller, e.g. `--metadata-dir <dir>`. */
  readonly controllerArgs?: readonly string[];
  /** A TCP metadata listener per VM (`--bind vm=127.0.0.1:0`). Default true. */
  readonly bindMetadata?: boolean;
  /** How long an agent may take to listen (a QEMU agent boots its VMs first). Default 30 s. */
  readonly agentStartTimeoutMs?: number;
}

/**
 * Agents and a controller as real processes over a temporary directory: `<dir>/fleet.json`,
 * `<dir>/agent.token`, `<dir>/controller/` (store, control.json), `<dir>/agent-<host>/` (journal),
 * `<dir>/logs/`. {@link close} kills every process group and removes the directory.
 */
export class Cluster {
  readonly dir: string;
  readonly options: ClusterOptions;
  readonly agents = new Map<string, AgentSlot>();
  /** Every process this cluster spawned, registered before it is waited for, so that none escapes {@link close}. */
  readonly #procs: Proc[] = [];
  #controller: ControllerSlot | undefined;
  #closed = false;

  private constructor(dir: string, options: ClusterOptions) {
    this.dir = dir;
    this.options = options;
  }

  /** Starts one agent per host (side by side), then the controller. */
  static async start(options: ClusterOptions): Promise<Cluster> {
    const dir = await mkdtemp(join(tmpdir(), `intermission-crash-${options.name}-`));
    trackDir(dir);
    const cluster = new Cluster(dir, options);
    try {
      await mkdir(join(dir, 'logs'));
      await writeFile(cluster.fleetFile, JSON.stringify(options.fleet, null, 2));
      await Promise.all(options.fleet.hosts.map((h, i) => cluster.#startAgent(h.name, 0, options.seed + i)));
      await cluster.startController();
      return cluster;
    } catch (error) {
      await cluster.close();
      throw error;
    }
  }

  get fleetFile(): string {
    return join(this.dir, 'fleet.json');
  }
  get tokenFile(): string {
    return join(this.dir, 'agent.token');
  }
  get controllerState(): string {
    return join(this.dir, 'controller');
  }
  get controller(): ControllerSlot {
    if (!this.#controller) throw new Error('no controller started');
    return this.#controller;
  }

  async #startAgent(host: string, port: number, seed: number): Promise<void> {
    const existing = this.agents.get(host);
    const stateDir = existing?.stateDir ?? join(this.dir, `agent-${host}`);
    const generation = (existing?.generations.length ?? 0) + 1;
    const proc = new Proc(
      `agent ${host}#${generation}`,
      [
        'agent',
        ...['--host', host, '--fleet', this.fleetFile, '--listen', `127.0.0.1:${port}`, '--state', stateDir],
        ...['--token-file', this.tokenFile, '--seed', String(seed)],
        ...(this.options.agentArgs?.(host) ?? []),
      ],
      join(this.dir, 'logs', `agent-${host}.log`),
    );
    this.#procs.push(proc);
    const m = await proc.waitForLine(
      /^agent listening host=(\S+) address=127\.0\.0\.1:(\d+)$/,
      this.options.agentStartTimeoutMs,
    );
    const bound = Number(m[2]);
    if (existing) {
      existing.proc = proc;
      existing.port = bound;
      existing.generations.push(proc);
    } else {
      this.agents.set(host, { host, stateDir, seed, port: bound, proc, generations: [proc] });
    }
  }

  /** The agent slot of a host. */
  agent(host: string): AgentSlot {
    const slot = this.agents.get(host);
    if (!slot) throw new Error(`no agent for ${host}`);
    return slot;
  }

  /** `kill -9` the agent of a host (its process group). */
  async killAgent(host: string): Promise<void> {
    await this.agent(host).proc.kill('SIGKILL');
  }

  /** Starts the agent of a host again, on the same port and state directory. */
  async restartAgent(host: string): Promise<void> {
    const slot = this.agent(host);
    if (slot.proc.alive) throw new Error(`agent of ${host} is still running`);
    await this.#startAgent(host, slot.port, slot.seed);
  }

  /** Starts the controller (again) on its state directory; control API and metadata listeners on free ports. */
  async startController(): Promise<void> {
    if (this.#controller?.proc.alive) throw new Error('the controller is still running');
    const generations = this.#controller?.generations ?? [];
    const proc = new Proc(
      `controller#${generations.length + 1}`,
      [
        'controller',
        ...['--fleet', this.fleetFile, '--state', this.controllerState, '--token-file', this.tokenFile],
        ...['--control', '127.0.0.1:0', '--time-scale', String(this.options.timeScale)],
        ...[...this.agents.values()].flatMap((a) => ['--agent', `${a.host}=127.0.0.1:${a.port}`]),
        ...(this.options.bindMetadata === false
          ? []
          : this.options.fleet.vms.flatMap((vm) => ['--bind', `${vm.name}=127.0.0.1:0`])),
        ...(this.options.controllerArgs ?? []),
      ],
      join(this.dir, 'logs', 'controller.log'),
    );
    this.#procs.push(proc);
    generations.push(proc);
    const control = (await proc.waitForLine(/^control listening address=(\S+)$/))[1] ?? '';
    const metadata = new Map<string, string>();
    for (const line of proc.lines()) {
      const m = /^out: metadata listening vm=(\S+) address=(\S+)$/.exec(line);
      if (m?.[1] && m[2]) metadata.set(m[1], m[2]);
    }
    this.#controller = { proc, control, metadata, generations };
  }

  /** `kill -9` the controller (its process group). */
  async killController(): Promise<void> {
    await this.controller.proc.kill('SIGKILL');
  }

  /** The CLI against this cluster's controller (`--state` finds control.json). */
  cli(args: readonly string[]): Promise<string> {
    return runCli([...args, '--state', this.controllerState]);
  }

  async #controlFile(): Promise<ControlFile> {
    return JSON.parse(await readFile(join(this.controllerState, 'control.json'), 'utf8')) as ControlFile;
  }

  /** GET on the control API with the operator token of control.json; throws on any failure. */
  async control<T>(path: string): Promise<T> {
    const { token } = await this.#controlFile();
    const res = await fetch(`http://${this.controller.control}${path}`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  /** GET on an agent's API with the controller ↔ agent token; throws on any failure. */
  async agentGet<T>(host: string, path: string): Promise<T> {
    const token = (await readFile(this.tokenFile, 'utf8')).trim();
    const res = await fetch(`http://127.0.0.1:${this.agent(host).port}${path}`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    if (!res.ok) throw new Error(`GET ${host}${path}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  /** The journal file of a host's agent, as on disk. */
  async journal(host: string): Promise<JournalFile> {
    return JSON.parse(await readFile(join(this.agent(host).stateDir, 'agents', `${host}.json`), 'utf8')) as JournalFile;
  }

  /** Every log line of every controller process, parsed where it is JSON. */
  controllerLogs(): Record<string, unknown>[] {
    return this.controller.generations.flatMap((p) => parseLogLines(p.lines()));
  }

  /** Every JSON log line of every process of a host's agent, oldest process first. */
  agentLogs(host: string): Record<string, unknown>[] {
    return this.agent(host).generations.flatMap((p, generation) =>
      parseLogLines(p.lines()).map((line) => ({ ...line, generation })),
    );
  }

  /** The last lines of every process, for a failure report. */
  tails(n = 25): string {
    return this.#procs.map((p) => p.tail(n)).join('\n');
  }

  /**
   * Kills every process group this cluster started and removes its directory (kept with
   * INTERMISSION_CRASH_KEEP=1). Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all(this.#procs.map((p) => p.kill('SIGKILL')));
    untrackDir(this.dir);
    // INTERMISSION_CRASH_KEEP=1 keeps the directory (logs, journals, store) to look into a failure.
    if (KEEP) process.stderr.write(`crash test state kept in ${this.dir}\n`);
    else await rm(this.dir, { recursive: true, force: true });
  }
}

/** An agent journal file (see src/agent/journal.ts), the fields the tests read. */
export interface JournalFile {
  readonly entries: readonly {
    readonly request: { readonly stepId: string; readonly rolloutId: string; readonly host: string };
    readonly status: {
      readonly status: 'running' | 'succeeded' | 'failed';
      readonly error: { readonly code: string; readonly message: string } | null;
    };
  }[];
}

/** What `GET /v1/sim/host` answers (see src/agent/sim-app.ts), the fields the tests read. */
export interface SimHostBody {
  readonly host: string;
  readonly appliedUpdates: readonly string[];
  readonly vms: readonly {
    readonly name: string;
    readonly state: string;
    readonly pauseCount: number;
    readonly longestPauseMs: number;
  }[];
  readonly history: readonly { readonly at: number; readonly kind: string; readonly vm?: string }[];
}

/** What `GET /v1/rollouts/:id` answers, the fields the tests read. */
export interface RolloutBody {
  readonly rollout: {
    readonly id: string;
    readonly status: string;
    readonly wave: number;
    readonly wavePhase: string;
    readonly failedHosts: number;
    readonly reason: string | null;
  };
  readonly plan?: {
    readonly waves: readonly {
      readonly index: number;
      readonly events: readonly { readonly eventId: string; readonly resources: readonly string[] }[];
      readonly batches: readonly { readonly steps: readonly { readonly host: string }[] }[];
    }[];
  };
  readonly steps: readonly {
    readonly id: string;
    readonly host: string;
    readonly wave: number;
    readonly status: string;
    readonly error: string | null;
  }[];
  readonly operations: readonly {
    readonly vm: string;
    readonly host: string;
    readonly stepId: string;
    readonly outcome: string;
    readonly pauseMs: number | null;
    readonly pauseBudgetMs: number;
  }[];
}

/** What `GET /v1/events?all=true` answers, the fields the tests read. */
export interface EventsBody {
  readonly events: readonly {
    readonly eventId: string;
    readonly owner: string;
    readonly phase: string;
    readonly startedAt: string | null;
    readonly removalReason: string | null;
    readonly resources: readonly string[];
  }[];
}

// ---------------------------------------------------------------------------------------------
// The tenants' view, watched while the rollout runs

/** One read of a VM's scheduled events through its metadata listener. */
export interface TenantRead {
  readonly at: number;
  readonly incarnation: number;
  readonly events: readonly { readonly id: string; readonly status: string }[];
}

interface ScheduledEventsDocument {
  DocumentIncarnation: number;
  Events: { EventId: string; EventStatus: string }[];
}

/**
 * Reads every VM's Scheduled Events through its own metadata listener every 250 ms (under IMDS's
 * 5 requests per second per VM), as a tenant application would, and keeps the latest rollout
 * detail. Reads that fail (the controller is down) are counted and skipped; the listeners of a
 * restarted controller are picked up from the cluster.
 */
export class Watcher {
  readonly reads = new Map<string, TenantRead[]>();
  failures = 0;
  latest: RolloutBody | undefined;
  readonly #cluster: Cluster;
  readonly #rolloutId: string;
  #stopped = false;
  #round = 0;
  #loop: Promise<void> | undefined;

  readonly #readUnix: boolean;

  /**
   * `readUnixChannels`: also read the VMs whose listener is a unix socket (a QEMU guest's channel,
   * which its own tenant reads from inside). Off by default: such reads count as the VM's polls.
   */
  constructor(cluster: Cluster, rolloutId: string, options: { readonly readUnixChannels?: boolean } = {}) {
    this.#cluster = cluster;
    this.#rolloutId = rolloutId;
    this.#readUnix = options.readUnixChannels ?? false;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const started = Date.now();
      this.#round++;
      await Promise.all([
        this.#readRollout(),
        ...[...this.#cluster.options.fleet.vms].map((vm) => this.#readVm(vm.name)),
      ]);
      await sleep(Math.max(0, 250 - (Date.now() - started)));
    }
  }

  async #readRollout(): Promise<void> {
    try {
      this.latest = await this.#cluster.control<RolloutBody>(`/v1/rollouts/${encodeURIComponent(this.#rolloutId)}`);
    } catch {
      this.failures++;
    }
  }

  async #readVm(vm: string): Promise<void> {
    const address = this.#cluster.controller.metadata.get(vm);
    if (!address || !this.#cluster.controller.proc.alive) return;
    // A unix socket is a QEMU guest's channel, which its own tenant also reads (once a second):
    // read it every other round, to stay well under IMDS's 5 requests per second per VM.
    const unix = address.startsWith('unix:');
    if (unix && (!this.#readUnix || this.#round % 2 === 1)) return;
    try {
      const path = '/metadata/scheduledevents?api-version=2020-07-01';
      const doc = unix
        ? await getJsonOverUnix<ScheduledEventsDocument>(address.slice('unix:'.length), path)
        : await fetch(`http://${address}${path}`, {
            headers: { Metadata: 'true' },
            signal: AbortSignal.timeout(2000),
          }).then((res) => (res.ok ? (res.json() as Promise<ScheduledEventsDocument>) : undefined));
      if (!doc) {
        this.failures++;
        return;
      }
      const list = this.reads.get(vm) ?? [];
      list.push({
        at: Date.now(),
        incarnation: doc.DocumentIncarnation,
        events: doc.Events.map((e) => ({ id: e.EventId, status: e.EventStatus })),
      });
      this.reads.set(vm, list);
    } catch {
      this.failures++;
    }
  }

  /** Resolves once `predicate` holds for the latest rollout detail; rejects after `timeoutMs`. */
  async until(predicate: (r: RolloutBody) => boolean, timeoutMs: number): Promise<RolloutBody> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.latest;
      if (r && predicate(r)) return r;
      if (Date.now() > deadline)
        throw new Error(`condition not reached in ${timeoutMs} ms; last: ${JSON.stringify(r?.rollout)}`);
      await sleep(50);
    }
  }
}

/** A GET over a unix socket (a QEMU guest's metadata channel); undefined unless it answers 200 with JSON. */
function getJsonOverUnix<T>(socketPath: string, path: string): Promise<T | undefined> {
  return new Promise((resolve) => {
    const req = httpRequest({ socketPath, path, headers: { Metadata: 'true' }, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        try {
          resolve(res.statusCode === 200 ? (JSON.parse(body) as T) : undefined);
        } catch {
          resolve(undefined);
        }
      });
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}
