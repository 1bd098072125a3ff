/**
 * The fuzzer's target: `intermission up` as a child process (compiled CLI, own process group, see
 * test/crash/harness.ts) over a fleet of its own, so that a crash is a process that died and RSS
 * is the server's own. The control API takes port 0; the metadata listeners take a run of
 * consecutive free ports found just before the start (`up` gives VM n the port base+n).
 */
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Proc, type Random } from '../crash/harness.js';

/**
 * The fuzz fleet: a 10-VM set over 3 UDs, an 8-VM set over 2 UDs, six standalone VMs. 24 VMs, so
 * that metadata inputs spread over 24 listeners: each allows a guest 5 requests/s (burst 10), and
 * the fuzzer keeps to 4/s per VM, so the metadata side can take about 96 inputs/s unthrottled.
 */
const SOLOS = ['a', 'b', 'c', 'd', 'e', 'f'] as const;
const HOSTS = ['h0', 'h1', 'h2'] as const;
const hostOf = (i: number): string => HOSTS[i % HOSTS.length] ?? 'h0';
export const FUZZ_FLEET = {
  hosts: HOSTS.map((name) => ({ name })),
  availabilitySets: [
    { name: 'web', updateDomains: 3, faultDomains: 2 },
    { name: 'db', updateDomains: 2, faultDomains: 2 },
  ],
  vms: [
    ...Array.from({ length: 10 }, (_, i) => ({ name: `web_${i}`, host: hostOf(i), availabilitySet: 'web' })),
    ...Array.from({ length: 8 }, (_, i) => ({ name: `db_${i}`, host: hostOf(i), availabilitySet: 'db' })),
    ...SOLOS.map((x, i) => ({ name: `solo_${x}`, host: hostOf(i) })),
  ] as readonly { readonly name: string; readonly host: string; readonly availabilitySet?: string }[],
};

/** The scope of a VM as the service names it (`set:<name>` or `vm:<name>`). */
export function scopeOfVm(vm: string): string {
  const found = FUZZ_FLEET.vms.find((v) => v.name === vm);
  if (!found) return `vm:${vm}`;
  return found.availabilitySet !== undefined ? `set:${found.availabilitySet}` : `vm:${found.name}`;
}

/** Every scope and the VMs in it. */
export const SCOPES: ReadonlyMap<string, readonly string[]> = (() => {
  const map = new Map<string, string[]>();
  for (const vm of FUZZ_FLEET.vms) {
    const scope = scopeOfVm(vm.name);
    map.set(scope, [...(map.get(scope) ?? []), vm.name]);
  }
  return map;
})();

/** The tenants the fuzzer speaks for: one owns a whole set, one a mix, one a single VM. */
export const TENANTS: readonly { readonly name: string; readonly vms: readonly string[] }[] = [
  { name: 'tenant-web', vms: FUZZ_FLEET.vms.filter((v) => v.availabilitySet === 'web').map((v) => v.name) },
  { name: 'tenant-mix', vms: ['db_0', 'db_1', 'solo_a'] },
  { name: 'tenant-solo', vms: ['solo_b'] },
];

/** Who sends a control-API input. */
export interface Principal {
  readonly role: 'operator' | 'tenant';
  readonly name: string;
  readonly vms: readonly string[];
  readonly token: string;
}

/** A running `intermission up`. */
export interface Target {
  readonly proc: Proc;
  readonly controlPort: number;
  readonly metadataPorts: ReadonlyMap<string, number>;
  readonly operator: Principal;
  readonly tenants: readonly Principal[];
  readonly stateDir: string;
}

async function portsFree(base: number, count: number): Promise<boolean> {
  const servers = [];
  try {
    for (let i = 0; i < count; i++) {
      const server = createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(base + i, '127.0.0.1', resolve);
      });
      servers.push(server);
    }
    return true;
  } catch {
    return false;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** Operator or tenant request to the control API with fetch (setup and state reads only). */
export async function controlJson<T>(
  port: number,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed as T };
}

/** A directory of its own for one fuzz run: fleet file, state directory, logs. */
export async function fuzzDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'intermission-fuzz-'));
  await writeFile(join(dir, 'fleet.json'), JSON.stringify(FUZZ_FLEET));
  return dir;
}

/**
 * Starts `intermission up` over the fuzz fleet in `dir` (state in `<dir>/<stateName>`), issues a
 * token per tenant (unless `tenants` says whose tokens the state already holds: a replay on a
 * checkpoint), and returns when every listener answers. Retries with other ports when the
 * chosen run was taken in between.
 */
export async function startTarget(
  dir: string,
  stateName: string,
  random: Random,
  options: { tenants?: readonly Principal[] } = {},
): Promise<Target> {
  const count = FUZZ_FLEET.vms.length;
  const stateDir = join(dir, stateName);
  for (let attempt = 0; ; attempt++) {
    const base = random.int(20_000, 60_000);
    if (!(await portsFree(base, count))) continue;
    const proc = new Proc(
      `up#${stateName}`,
      [
        'up',
        ...['--fleet', join(dir, 'fleet.json'), '--state', stateDir],
        ...['--control-port', '0', '--metadata-port', String(base), '--log-level', 'fatal'],
      ],
      join(dir, 'server.log'),
    );
    try {
      const control = await proc.waitForLine(/^control API\s+http:\/\/127\.0\.0\.1:(\d+)/, 60_000);
      await proc.waitForLine(/^Stop with Ctrl-C/, 30_000);
      const metadataPorts = new Map<string, number>();
      for (const line of proc.lines()) {
        const m = /^out: metadata\s+(\S+)\s+http:\/\/127\.0\.0\.1:(\d+)\//.exec(line);
        if (m?.[1] && m[2]) metadataPorts.set(m[1], Number(m[2]));
      }
      const controlPort = Number(control[1]);
      const { token } = JSON.parse(await readFile(join(stateDir, 'control.json'), 'utf8')) as { token: string };
      const operator: Principal = { role: 'operator', name: 'operator', vms: [], token };
      const tenants: Principal[] = [...(options.tenants ?? [])];
      for (const t of options.tenants ? [] : TENANTS) {
        const res = await controlJson<{ token: string }>(controlPort, token, 'POST', '/v1/tokens', {
          tenant: t.name,
          vms: t.vms,
        });
        if (res.status !== 201) throw new Error(`cannot issue a token for ${t.name}: ${res.status}`);
        tenants.push({ role: 'tenant', name: t.name, vms: t.vms, token: res.body.token });
      }
      return { proc, controlPort, metadataPorts, operator, tenants, stateDir };
    } catch (error) {
      await proc.kill('SIGKILL');
      if (attempt >= 4) throw error;
    }
  }
}

/** Resident memory of a process from /proc/<pid>/status, in bytes: now (VmRSS) and peak (VmHWM). */
export async function rssOf(pid: number): Promise<{ rss: number; hwm: number } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

export async function removeDir(dir: string): Promise<void> {
  if (process.env.INTERMISSION_FUZZ_KEEP === '1') {
    process.stderr.write(`fuzz state kept in ${dir}\n`);
    return;
  }
  await rm(dir, { recursive: true, force: true });
}

/**
 * Copies the state of a running server to `dest`, for a replay on a fresh server: the database
 * through SQLite's online backup (consistent while the server writes), the other files (tokens,
 * control.json with the operator token, attestation key, agent journals) as they are. A server
 * started on the copy has the same events, ids, incarnations and tokens, so the same bytes mean
 * the same to it.
 */
export async function checkpointState(stateDir: string, dest: string): Promise<void> {
  await rm(dest, { recursive: true, force: true });
  await mkdir(dest, { recursive: true, mode: 0o700 });
  for (const name of await readdir(stateDir)) {
    if (name.startsWith('intermission.db')) continue;
    await cp(join(stateDir, name), join(dest, name), { recursive: true });
  }
  const db = new Database(join(stateDir, 'intermission.db'), { readonly: true, fileMustExist: true });
  try {
    await db.backup(join(dest, 'intermission.db'));
  } finally {
    db.close();
  }
}
