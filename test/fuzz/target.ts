/**
 * The fuzzer's target: `intermission up` as a child process (compiled CLI, own process group, see
 * test/crash/harness.ts) over a fleet of its own, so that a crash is a process that died and RSS
 * is the server's own. The control API takes port 0; the metadata listeners take a run of
 * consecutive free ports found just before the start (`up` gives VM n the port base+n).
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Proc, type Random } from '../crash/harness.js';

/** The fuzz fleet: a 6-VM set over 3 UDs, a 4-VM set over 2 UDs, three standalone VMs. */
export const FUZZ_FLEET = {
  hosts: [{ name: 'h0' }, { name: 'h1' }, { name: 'h2' }],
  availabilitySets: [
    { name: 'web', updateDomains: 3, faultDomains: 2 },
    { name: 'db', updateDomains: 2, faultDomains: 2 },
  ],
  vms: [
    { name: 'web_0', host: 'h0', availabilitySet: 'web' },
    { name: 'web_1', host: 'h1', availabilitySet: 'web' },
    { name: 'web_2', host: 'h2', availabilitySet: 'web' },
    { name: 'web_3', host: 'h0', availabilitySet: 'web' },
    { name: 'web_4', host: 'h1', availabilitySet: 'web' },
    { name: 'web_5', host: 'h2', availabilitySet: 'web' },
    { name: 'db_0', host: 'h0', availabilitySet: 'db' },
    { name: 'db_1', host: 'h1', availabilitySet: 'db' },
    { name: 'db_2', host: 'h2', availabilitySet: 'db' },
    { name: 'db_3', host: 'h0', availabilitySet: 'db' },
    { name: 'solo_a', host: 'h0' },
    { name: 'solo_b', host: 'h1' },
    { name: 'solo_c', host: 'h2' },
  ],
} as const;

export type VmName = (typeof FUZZ_FLEET.vms)[number]['name'];

/** The scope of a VM as the service names it (`set:<name>` or `vm:<name>`). */
export function scopeOfVm(vm: string): string {
  const found = FUZZ_FLEET.vms.find((v) => v.name === vm);
  if (!found) return `vm:${vm}`;
  return 'availabilitySet' in found ? `set:${found.availabilitySet}` : `vm:${found.name}`;
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
  { name: 'tenant-web', vms: ['web_0', 'web_1', 'web_2', 'web_3', 'web_4', 'web_5'] },
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
 * token per tenant, and returns when every listener answers. Retries with other ports when the
 * chosen run was taken in between.
 */
export async function startTarget(dir: string, stateName: string, random: Random): Promise<Target> {
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
      const tenants: Principal[] = [];
      for (const t of TENANTS) {
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
