/**
 * What one big authenticated POST costs the control API's process: its resident memory before the
 * request, right after it, and its peak, for this tree and for a baseline revision (issue 12,
 * item 4: one 200 MB POST left the server at 680 MB RSS for good).
 *
 * Run: `node --import tsx bench/body-limits.ts [--baseline <git rev>] [--mb 200]`. The baseline's
 * `src/` is taken with `git archive` into `tmp/` (default `main`). Each measurement runs the real
 * control API (`startMetadataRuntime`) in a fresh child process, which receives one POST /v1/events
 * whose JSON body is `--mb` megabytes, sent with a declared Content-Length, then once chunked.
 * Memory is read from /proc/<pid>/status (Linux): VmRSS before and one second after the answer,
 * and VmHWM (the peak).
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** What the child needs of `startMetadataRuntime`, in both the baseline and this tree. */
interface RuntimeModule {
  startMetadataRuntime(
    this: void,
    options: {
      fleet: unknown;
      stateDir: string;
      bindings: readonly never[];
      control: { host: string; port: number };
    },
  ): Promise<{ control: { port?: number }; controlFile: string; close(): Promise<void> }>;
}
interface DomainModule {
  parseFleet(this: void, input: unknown): unknown;
}

interface Ready {
  readonly port: number;
  readonly token: string;
}

/** Child: serves the control API of `srcRoot` on an ephemeral port until stdin closes. */
async function child(srcRoot: string): Promise<void> {
  const runtimeUrl = pathToFileURL(join(srcRoot, 'service', 'metadata-runtime.ts')).href;
  const domainUrl = pathToFileURL(join(srcRoot, 'domain', 'index.ts')).href;
  const { startMetadataRuntime } = (await import(runtimeUrl)) as RuntimeModule;
  const { parseFleet } = (await import(domainUrl)) as DomainModule;
  const stateDir = await mkdtemp(join(tmpdir(), 'bench-body-limits-'));
  const runtime = await startMetadataRuntime({
    fleet: parseFleet({ hosts: [{ name: 'h0' }], vms: [{ name: 'vm0', host: 'h0' }] }),
    stateDir,
    bindings: [],
    control: { host: '127.0.0.1', port: 0 },
  });
  const { token } = JSON.parse(await readFile(runtime.controlFile, 'utf8')) as { token: string };
  process.stdout.write(JSON.stringify({ port: runtime.control.port, token } satisfies Partial<Ready>) + '\n');
  process.stdin.resume();
  await new Promise((done) => process.stdin.once('end', done));
  await runtime.close();
  await rm(stateDir, { recursive: true, force: true });
}

/** VmRSS and VmHWM of `pid`, in MB. */
async function memory(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: Math.round(kb('VmRSS') / 1024), peak: Math.round(kb('VmHWM') / 1024) };
}

/** Sends one POST /v1/events of `bytes` bytes; resolves with the status (0 when the connection broke first). */
function post(ready: Ready, bytes: number, chunked: boolean): Promise<{ status: number; sentMb: number }> {
  const head = Buffer.from('{"type":"Freeze","vms":["vm0"],"description":"');
  const tail = Buffer.from('"}');
  const block = Buffer.alloc(1024 * 1024, 'x');
  return new Promise((resolvePost) => {
    let sent = 0;
    let status = 0;
    const req = request({
      host: '127.0.0.1',
      port: ready.port,
      method: 'POST',
      path: '/v1/events',
      headers: {
        authorization: `Bearer ${ready.token}`,
        'content-type': 'application/json',
        ...(chunked ? {} : { 'content-length': bytes }),
      },
    });
    const finish = (): void => resolvePost({ status, sentMb: Math.round(sent / 1e6) });
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      res.resume();
      res.on('end', finish);
      res.on('error', finish);
    });
    req.on('error', finish);
    const pump = (): void => {
      while (sent < bytes && status === 0 && !req.destroyed) {
        const left = bytes - sent;
        const piece =
          sent === 0
            ? head
            : left <= tail.length
              ? tail
              : block.subarray(0, Math.min(block.length, left - tail.length));
        sent += piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
      if (sent >= bytes) req.end();
    };
    pump();
  });
}

async function measure(srcRoot: string, bytes: number, chunked: boolean) {
  const proc = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--child', srcRoot], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((done, fail) => {
    const rl = createInterface({ input: proc.stdout });
    rl.once('line', done);
    proc.once('exit', (code) => fail(new Error(`the server exited (${code}) before it was ready`)));
  });
  const ready = JSON.parse(line) as Ready;
  const pid = proc.pid ?? 0;
  await new Promise((done) => setTimeout(done, 500)); // let start-up allocations settle
  const before = await memory(pid);
  const started = performance.now();
  const { status, sentMb } = await post(ready, bytes, chunked);
  const ms = Math.round(performance.now() - started);
  await new Promise((done) => setTimeout(done, 1000));
  const after = await memory(pid);
  proc.stdin.end();
  await new Promise((done) => proc.once('exit', done));
  return { status, ms, sentMb, before: before.rss, after: after.rss, peak: after.peak };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const arg = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  if (args[0] === '--child') return child(args[1] ?? join(ROOT, 'src'));
  const baseline = arg('--baseline') ?? 'main';
  const bytes = Number(arg('--mb') ?? 200) * 1e6;
  const sha = execFileSync('git', ['rev-parse', '--short', baseline], { cwd: ROOT, encoding: 'utf8' }).trim();
  const baseDir = join(ROOT, 'tmp', `bench-body-limits-${sha}`);
  rmSync(baseDir, { recursive: true, force: true });
  mkdirSync(baseDir, { recursive: true });
  execFileSync('sh', ['-c', `git archive ${sha} src | tar -x -C ${JSON.stringify(baseDir)}`], { cwd: ROOT });

  const rows: string[][] = [['code', 'body', 'status', 'sent MB', 'ms', 'RSS before', 'RSS after', 'peak RSS']];
  for (const [label, srcRoot] of [
    [`baseline ${sha}`, join(baseDir, 'src')],
    ['this tree', join(ROOT, 'src')],
  ] as const) {
    for (const chunked of [false, true]) {
      const r = await measure(srcRoot, bytes, chunked);
      rows.push([
        label,
        chunked ? 'chunked' : 'Content-Length',
        String(r.status || 'reset'),
        String(r.sentMb),
        String(r.ms),
        `${r.before} MB`,
        `${r.after} MB`,
        `${r.peak} MB`,
      ]);
    }
  }
  rmSync(baseDir, { recursive: true, force: true });
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log(`One POST /v1/events of ${bytes / 1e6} MB to the control API:`);
  for (const r of rows) console.log(r.map((cell, i) => cell.padEnd(widths[i]!)).join('  '));
}

await main();
