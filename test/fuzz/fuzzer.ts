/**
 * The fuzz loop: one `intermission up` child process, seeded hostile inputs to its metadata
 * listeners and its control API, and after every input a look at the process (alive? RSS?) and at
 * the state (every event, every scope's document and incarnation). It counts inputs, statuses,
 * 5xx, crashes and RSS, and collects findings:
 * - `5xx`: an input answered with a server error;
 * - `crash`: the server process died (it is restarted on a fresh state directory);
 * - `rejected-changed-state`: an input answered 4xx/5xx (or not at all) changed an event or an
 *   incarnation;
 * - `out-of-authority`: an accepted input changed what its sender may not change (another scope's
 *   event, a platform event cancelled by a tenant);
 * - `odd-spelling-served`: the Scheduled Events document served for a path or request line IMDS
 *   would refuse;
 * - `unreadable-state`: after an input the state cannot be read back (the server is restarted on
 *   a fresh state directory so the run goes on).
 * Reproduce a finding with the same seed (inputs are generated from it alone) or from its bytes.
 */
import { sleep, Random } from '../crash/harness.js';
import { controlInput, metadataInput, type FuzzInput, type Knowledge } from './generators.js';
import { UnreadableState, diffState, outOfAuthority, takeSnapshot, type Snapshot } from './state.js';
import { SCOPES, controlJson, fuzzDir, removeDir, rssOf, startTarget, type Target } from './target.js';
import { TrickleProbe, sendRaw } from './wire.js';

export type FindingKind =
  '5xx' | 'crash' | 'rejected-changed-state' | 'out-of-authority' | 'odd-spelling-served' | 'unreadable-state';

export interface Finding {
  readonly kind: FindingKind;
  readonly seed: number;
  /** The index of the input in its seed's sequence (0-based). */
  readonly index: number;
  readonly label: string;
  readonly status: number | string;
  readonly detail: string;
  /** The first 600 bytes sent, JSON-escaped (latin1), to replay with a raw socket. */
  readonly bytes: string;
  readonly length: number;
}

export interface FuzzOptions {
  readonly seed: number;
  readonly inputs: number;
  /** Trickle some inputs slowly (up to 400 ms between pieces). Default false. */
  readonly slow?: boolean;
  /** Send some huge inputs (1 MB headers, 8-32 MB bodies, 200 KB garbage). Default false. */
  readonly huge?: boolean;
  /** Progress lines (every `progressEvery` inputs). */
  readonly progress?: (line: string) => void;
  readonly progressEvery?: number;
}

export interface FuzzReport {
  readonly seed: number;
  readonly inputs: number;
  readonly statuses: Record<string, number>;
  readonly serverErrors: number;
  readonly crashes: number;
  /** Restarts on a fresh state directory (after a crash or unreadable state). */
  readonly restarts: number;
  /** Server RSS in bytes: after setup, peak (VmHWM, last server process), at the end. */
  readonly rss: { readonly start: number; readonly peak: number; readonly end: number };
  readonly rejectedChangedState: number;
  /** What accepted inputs changed, by kind (approved, cancelled, created, other): allowed, and counted. */
  readonly acceptedChanges: Record<string, number>;
  readonly outOfAuthority: number;
  readonly oddSpellingServed: number;
  readonly unreadableState: number;
  /**
   * The slow probes, per listener: the longest a trickling request was held (ms) and whether the
   * server cut it or it was still open when the probe ended (end of run or server restart).
   */
  readonly slowProbes: Record<string, { readonly heldMs: number; readonly cut: boolean }>;
  readonly findings: readonly Finding[];
  /** Distinct findings: one example per kind and shape, with how often that shape occurred. */
  readonly distinct: readonly (Finding & { readonly count: number })[];
  readonly durationMs: number;
  readonly inputsPerSecond: number;
}

/** INTERMISSION_FUZZ_TRACE=1: one line per input on stderr (index, time, status, label). */
const TRACE = process.env.INTERMISSION_FUZZ_TRACE === '1';

/**
 * How long an input waits for its answer. A request that declares more body than it sends is
 * answered only when the server gives up on it; the fuzzer does not wait that long (the slow probes
 * measure it).
 */
const ANSWER_TIMEOUT_MS = 2_000;

/** The guests' rate the fuzzer keeps to per VM (the listeners allow 5/s, burst 10). */
const VM_RATE_PER_S = 4;
const VM_BURST = 8;

class Pacer {
  readonly #tokens = new Map<string, { tokens: number; at: number }>();
  /** Waits until `vm` may send one more request, then takes it. */
  async take(vm: string): Promise<void> {
    for (;;) {
      const now = Date.now();
      const b = this.#tokens.get(vm) ?? { tokens: VM_BURST, at: now };
      b.tokens = Math.min(VM_BURST, b.tokens + ((now - b.at) / 1000) * VM_RATE_PER_S);
      b.at = now;
      this.#tokens.set(vm, b);
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return;
      }
      await sleep(Math.ceil(((1 - b.tokens) / VM_RATE_PER_S) * 1000));
    }
  }
  reset(): void {
    this.#tokens.clear();
  }
}

/** The shape of a finding, to count repeats of one fault as one: ids, numbers and sizes blurred. */
function shapeOf(f: Finding): string {
  const label = f.label
    .replace(/[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}/gi, ':id')
    .replace(/^(web|db|solo)_\w+:/, '$1:')
    .replace(/\d+/g, 'N')
    .replace(/"vms":\[[^\]]*\]/g, '"vms":[…]');
  return `${f.kind}|${f.status}|${label}`;
}

function escapeBytes(bytes: Buffer): string {
  return JSON.stringify(bytes.subarray(0, 600).toString('latin1'));
}

/** How many live events a tenant keeps before the housekeeping cancels its oldest (keeps documents small). */
const TENANT_LIVE_CAP = 6;

/**
 * Events the generators and the oracles start from: per scope, an operator drill (source User)
 * and a platform event, and per tenant one event of its own. Also the housekeeping that keeps a
 * long run's documents small: a tenant's live events beyond {@link TENANT_LIVE_CAP} are cancelled
 * by the operator. Returns whether it changed anything (then the caller reads the state again).
 */
async function seedState(t: Target, snap: Snapshot | undefined): Promise<boolean> {
  const events = [...(snap?.events.values() ?? [])];
  const scheduled = events.filter((e) => e.phase === 'Scheduled');
  const has = (pred: (e: (typeof scheduled)[number]) => boolean): boolean => scheduled.some(pred);
  let changed = false;
  const schedule = async (token: string, body: unknown): Promise<void> => {
    const res = await controlJson(t.controlPort, token, 'POST', '/v1/events', body);
    changed ||= res.status === 201;
  };
  for (const [scope, vms] of SCOPES) {
    const vm = vms[0] ?? '';
    if (!has((e) => e.scope === scope && e.source === 'User' && e.description === SEED_DESCRIPTION))
      await schedule(t.operator.token, { type: 'Freeze', vms: [vm], notice: '1h', description: SEED_DESCRIPTION });
    if (!has((e) => e.scope === scope && e.source === 'Platform'))
      await schedule(t.operator.token, {
        type: 'Reboot',
        vms: [vm],
        notice: '2h',
        source: 'Platform',
        description: SEED_DESCRIPTION,
      });
  }
  for (const tenant of t.tenants) {
    const own = events.filter((e) => e.owner === `drill:tenant:${tenant.name}` && e.phase !== 'Removed');
    if (!own.some((e) => e.phase === 'Scheduled'))
      await schedule(tenant.token, { type: 'Freeze', vms: [tenant.vms[0]], notice: '1h' });
    for (const e of own.slice(0, Math.max(0, own.length - TENANT_LIVE_CAP))) {
      await controlJson(t.controlPort, t.operator.token, 'POST', `/v1/events/${e.eventId}/cancel`);
      changed = true;
    }
  }
  return changed;
}

const SEED_DESCRIPTION = 'fuzz seed event';

function knowledge(t: Target, snap: Snapshot): Knowledge {
  return {
    events: [...snap.events.values()].map((e) => ({
      eventId: e.eventId,
      scope: e.scope,
      owner: e.owner,
      source: e.source,
      phase: e.phase,
    })),
    operator: t.operator,
    tenants: t.tenants,
  };
}

/** Runs `inputs` seeded inputs against a fresh `intermission up` and reports what it saw. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const random = new Random(options.seed);
  // Ports come from a generator of their own, so that the inputs depend on the seed alone.
  const portRandom = new Random(options.seed ^ 0x5bd1e995);
  const dir = await fuzzDir();
  const pacer = new Pacer();
  const statuses: Record<string, number> = {};
  const legitimate: Record<string, number> = {};
  const findings: Finding[] = [];
  const slowProbes: Record<string, { heldMs: number; cut: boolean }> = {};
  let crashes = 0;
  let restarts = 0;
  let serverErrors = 0;
  let generation = 0;
  let target: Target | undefined;
  let probes: TrickleProbe[] = [];
  let rssStart = 0;
  let peak = 0;
  const vms = [...SCOPES.values()].flat();
  const reps = [...SCOPES.values()].map((v) => v[v.length - 1] ?? '');

  const closeProbes = (): void => {
    for (const [i, p] of probes.entries()) {
      const name = i === 0 ? 'metadata' : 'control';
      const held = { heldMs: p.openForMs, cut: p.closedAfterMs !== undefined };
      const seen = slowProbes[name];
      if (!seen || held.heldMs > seen.heldMs) slowProbes[name] = held;
      p.stop();
    }
    probes = [];
  };
  const start = async (): Promise<{ t: Target; snap: Snapshot }> => {
    closeProbes();
    const t = await startTarget(dir, `state-${generation++}`, portRandom);
    pacer.reset();
    await seedState(t, undefined);
    const snap = await takeSnapshot({ controlPort: t.controlPort, operator: t.operator });
    const m = await rssOf(t.proc.pid);
    if (generation === 1) rssStart = m?.rss ?? 0;
    const slowPort = t.metadataPorts.get('solo_c') ?? 0;
    probes = [
      new TrickleProbe({
        port: slowPort,
        head: 'POST /metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nContent-Length: 1000\r\n\r\n',
        gapMs: 1000,
      }),
      new TrickleProbe({
        port: t.controlPort,
        head: `POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${t.tenants[0]?.token ?? ''}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n`,
        gapMs: 1000,
      }),
    ];
    return { t, snap };
  };

  const record = (
    kind: FindingKind,
    index: number,
    input: FuzzInput,
    status: number | string,
    detail: string,
  ): void => {
    findings.push({
      kind,
      seed: options.seed,
      index,
      label: input.label,
      status,
      detail,
      bytes: escapeBytes(input.bytes),
      length: input.bytes.length,
    });
  };

  try {
    let { t, snap: before } = await start();
    target = t;
    let snapRound = 0;
    for (let i = 0; i < options.inputs; i++) {
      const k = knowledge(t, before);
      const useMetadata = random.next() < 0.55;
      let input: FuzzInput;
      if (useMetadata) {
        const vm = random.pick(vms);
        input = metadataInput(random, k, vm, { slow: options.slow ?? false, huge: options.huge ?? false });
        await pacer.take(vm);
      } else {
        input = controlInput(random, k, { slow: options.slow ?? false, huge: options.huge ?? false });
      }
      const port = input.surface === 'metadata' ? (t.metadataPorts.get(input.vm ?? '') ?? 0) : t.controlPort;
      const result = await sendRaw({
        port,
        bytes: input.bytes,
        delivery: input.delivery,
        timeoutMs: ANSWER_TIMEOUT_MS,
      });
      const status = result.status ?? result.outcome;
      if (TRACE) process.stderr.write(`#${i} ${result.ms} ms ${status} ${input.label.slice(0, 100)}\n`);
      statuses[String(status)] = (statuses[String(status)] ?? 0) + 1;
      if (result.status !== undefined && result.status >= 500) {
        serverErrors++;
        record('5xx', i, input, status, result.head.split('\r\n\r\n')[1]?.slice(0, 300) ?? '');
      }

      // A crash: the process is gone. Give it a moment to be seen as gone after a fatal write.
      if (!t.proc.alive || (result.status === undefined && (await sleep(50), !t.proc.alive))) {
        crashes++;
        record('crash', i, input, status, t.proc.tail(15));
        restarts++;
        ({ t, snap: before } = await start());
        target = t;
        continue;
      }

      let after: Snapshot;
      const rep = reps[snapRound++ % reps.length] ?? '';
      try {
        await pacer.take(rep);
        after = await takeSnapshot({
          controlPort: t.controlPort,
          operator: t.operator,
          metadataPort: t.metadataPorts.get(rep) ?? 0,
          metadataVm: rep,
        });
      } catch (error) {
        const why = error instanceof UnreadableState ? error.message : String(error);
        record('unreadable-state', i, input, status, why);
        // Unreadable after a rejected input: the input committed something that cannot be read back.
        if (result.status === undefined || result.status >= 400)
          record('rejected-changed-state', i, input, status, `state unreadable afterwards: ${why}`);
        await t.proc.kill('SIGKILL');
        restarts++;
        ({ t, snap: before } = await start());
        target = t;
        continue;
      }
      const changes = diffState(before, after);
      const rejected = result.status === undefined || result.status >= 400;
      const byInput = changes.filter((c) => c.controller !== true);
      if (rejected && byInput.length > 0) {
        record('rejected-changed-state', i, input, status, byInput.map((c) => `${c.scope ?? ''} ${c.what}`).join('; '));
      } else if (!rejected) {
        for (const c of byInput) {
          const kind = /^(approved|cancelled|created)/.exec(c.what)?.[1] ?? 'other';
          legitimate[kind] = (legitimate[kind] ?? 0) + 1;
        }
        const wrong = outOfAuthority(input.actor, changes, after);
        if (wrong.length > 0)
          record('out-of-authority', i, input, status, wrong.map((c) => `${c.scope ?? ''} ${c.what}`).join('; '));
      }
      if (input.oddSpelling !== undefined && result.status === 200 && /"DocumentIncarnation"/.test(result.head)) {
        record('odd-spelling-served', i, input, status, `served the document for ${input.oddSpelling}`);
      }

      if (await seedState(t, after)) after = await takeSnapshot({ controlPort: t.controlPort, operator: t.operator });
      before = after;
      if (i % 25 === 0) peak = Math.max(peak, (await rssOf(t.proc.pid))?.hwm ?? 0);
      if (options.progress && options.progressEvery && (i + 1) % options.progressEvery === 0) {
        const m = await rssOf(t.proc.pid);
        options.progress(
          `${i + 1} inputs, ${serverErrors} 5xx, ${crashes} crashes, ${findings.length} findings, RSS ${((m?.rss ?? 0) / 2 ** 20).toFixed(0)} MB, ${((i + 1) / ((Date.now() - started) / 1000)).toFixed(0)} inputs/s`,
        );
      }
    }
    closeProbes();
    const m = await rssOf(t.proc.pid);
    peak = Math.max(peak, m?.hwm ?? 0);
    const end = m?.rss ?? 0;
    const durationMs = Date.now() - started;
    const distinct = new Map<string, Finding & { count: number }>();
    for (const f of findings) {
      const key = shapeOf(f);
      const seen = distinct.get(key);
      if (seen) seen.count++;
      else distinct.set(key, { ...f, count: 1 });
    }
    const count = (kind: FindingKind): number => findings.filter((f) => f.kind === kind).length;
    return {
      seed: options.seed,
      inputs: options.inputs,
      statuses,
      serverErrors,
      crashes,
      restarts,
      rss: { start: rssStart, peak, end },
      rejectedChangedState: count('rejected-changed-state'),
      acceptedChanges: legitimate,
      outOfAuthority: count('out-of-authority'),
      oddSpellingServed: count('odd-spelling-served'),
      unreadableState: count('unreadable-state'),
      slowProbes,
      findings,
      distinct: [...distinct.values()],
      durationMs,
      inputsPerSecond: options.inputs / (durationMs / 1000),
    };
  } finally {
    closeProbes();
    await target?.proc.kill('SIGKILL');
    await removeDir(dir);
  }
}

/** A report as text: the figures, then each distinct finding with an example input. */
export function formatReport(r: FuzzReport): string {
  const mb = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MB`;
  const lines = [
    `seed ${r.seed}: ${r.inputs} inputs in ${(r.durationMs / 1000).toFixed(1)} s (${r.inputsPerSecond.toFixed(1)} inputs/s)`,
    `statuses     ${Object.entries(r.statuses)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([s, n]) => `${s}:${n}`)
      .join(' ')}`,
    `5xx          ${r.serverErrors}`,
    `crashes      ${r.crashes} (restarts on a fresh state: ${r.restarts})`,
    `RSS          start ${mb(r.rss.start)}, peak ${mb(r.rss.peak)}, end ${mb(r.rss.end)}${r.restarts ? ' (last server process)' : ''}`,
    `state changes from rejected input  ${r.rejectedChangedState}`,
    `changes by accepted input          ${
      Object.entries(r.acceptedChanges)
        .map(([k, n]) => `${k}:${n}`)
        .join(' ') || 'none'
    }`,
    `out-of-authority changes           ${r.outOfAuthority}`,
    `odd spellings served               ${r.oddSpellingServed}`,
    `unreadable state                   ${r.unreadableState}`,
    `slow request (1 byte/s) held       ${Object.entries(r.slowProbes)
      .map(([k, v]) => `${k}: ${(v.heldMs / 1000).toFixed(0)} s${v.cut ? ' then cut' : ', still open'}`)
      .join(', ')}`,
  ];
  if (r.distinct.length > 0) lines.push('', `distinct findings (${r.distinct.length}):`);
  for (const f of r.distinct) {
    lines.push(
      `- [${f.kind}] x${f.count} status ${f.status}: ${f.label}`,
      `    ${f.detail.split('\n')[0]?.slice(0, 300) ?? ''}`,
      `    replay: seed ${f.seed} input #${f.index}; bytes (${f.length}) ${f.bytes.slice(0, 400)}`,
    );
  }
  return lines.join('\n');
}

export { sendRaw };
