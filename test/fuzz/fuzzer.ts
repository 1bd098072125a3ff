/**
 * The fuzz loop: one `intermission up` child process and seeded hostile inputs to its metadata
 * listeners and its control API, sent one after the other in batches. After every input: is the
 * process alive, was the answer a 5xx, was the document served for an odd spelling. Before and
 * after every batch: the state (every event, every scope's document and incarnation, read as the
 * operator through the control API, which is not rate-limited), a checkpoint of the state
 * directory, and in turn one scope's document read through its metadata listener as a
 * cross-check of the two views. The changes of a batch are laid at the inputs by their time
 * stamps (see attribution.ts); when one is not explained by an accepted input within its rights,
 * or the state is unreadable, or the server died, the batch is replayed one input at a time on a
 * fresh server started from the checkpoint, with the same bytes, looking at the state after each.
 * Findings:
 * - `5xx`: an input answered with a server error;
 * - `crash`: the server process died (it is restarted on a fresh state directory);
 * - `rejected-changed-state`: an input answered 4xx/5xx (or not at all) changed an event or an
 *   incarnation;
 * - `out-of-authority`: an accepted input changed what its sender may not change (another scope's
 *   event, a platform event cancelled by a tenant);
 * - `odd-spelling-served`: the Scheduled Events document served for a path or request line IMDS
 *   would refuse;
 * - `unreadable-state`: after an input the state cannot be read back (the server is restarted on
 *   a fresh state directory so the run goes on);
 * - `unattributed-change`: a batch changed something unexplained that its replay did not
 *   reproduce (named by the batch's first input, its detail lists the batch);
 * - `views-disagree`: a metadata listener served another DocumentIncarnation than the control API.
 * Reproduce a finding with the same seed (inputs are generated from it alone) or from its bytes.
 */
import { cp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep, Random } from '../crash/harness.js';
import { changeKey, changeKind, describeChanges, explainBatch, judgeInput, stampOf, type Sent } from './attribution.js';
import { controlInput, metadataInput, type FuzzInput } from './generators.js';
import type { Finding, FindingKind, FuzzOptions, FuzzReport } from './report.js';
import { UnreadableState, diffState, takeSnapshot, type Change, type Snapshot } from './state.js';
import {
  SCOPES,
  checkpointState,
  fuzzDir,
  removeDir,
  rssOf,
  startTarget,
  type Principal,
  type Target,
} from './target.js';
import { Pacer, burst, type BurstResult } from './rate-limit.js';
import { knowledge, seedState } from './seed-state.js';
import { TrickleProbe, sendRaw, type WireResult } from './wire.js';

export type { Finding, FindingKind, FuzzOptions, FuzzReport } from './report.js';
export { formatReport } from './report.js';

/** INTERMISSION_FUZZ_TRACE=1: one line per input on stderr (index, time, status, label). */
const TRACE = process.env.INTERMISSION_FUZZ_TRACE === '1';

/**
 * How long an input waits for its answer. A request that declares more body than it sends is
 * answered only when the server gives up on it; the fuzzer does not wait that long (the slow probes
 * measure it).
 */
const ANSWER_TIMEOUT_MS = 2_000;

/**
 * After how long without an answer an input is parked: the next inputs go while it waits (up to
 * {@link ANSWER_TIMEOUT_MS}) in the background. Its window stays open until its answer came, and a
 * change stamped in it is never laid at another input (see attribution.ts).
 */
const PARK_AFTER_MS = 300;

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

/** Inputs between two looks at the state, unless the options say otherwise. */
export const DEFAULT_BATCH = 50;

/** Runs `inputs` seeded inputs against a fresh `intermission up` and reports what it saw. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const started = Date.now();
  const random = new Random(options.seed);
  // Ports come from a generator of their own, so that the inputs depend on the seed alone.
  const portRandom = new Random(options.seed ^ 0x5bd1e995);
  const batchSize = Math.max(1, options.batch ?? DEFAULT_BATCH);
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
  let replays = 0;
  let batches = 0;
  let replayed = 0;
  let crossChecks = 0;
  let replayMs = 0;
  let target: Target | undefined;
  let probes: TrickleProbe[] = [];
  let rssStart = 0;
  let peak = 0;
  const vms = [...SCOPES.values()].flat();
  const reps = [...SCOPES.values()].map((v) => v[v.length - 1] ?? '');
  const checkpoint = join(dir, 'checkpoint');
  const count = (kinds: Record<string, number>, changes: readonly Change[]): void => {
    for (const c of changes) kinds[changeKind(c)] = (kinds[changeKind(c)] ?? 0) + 1;
  };

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

  /** Sends one input to `t` (paced per VM on the metadata side) and returns what came back. */
  const send = async (
    t: Target,
    p: Pacer,
    input: FuzzInput,
  ): Promise<{ status: number | undefined; shown: number | string; head: string }> => {
    if (input.surface === 'metadata') await p.take(input.vm ?? '');
    const port = input.surface === 'metadata' ? (t.metadataPorts.get(input.vm ?? '') ?? 0) : t.controlPort;
    const result = await sendRaw({ port, bytes: input.bytes, delivery: input.delivery, timeoutMs: ANSWER_TIMEOUT_MS });
    return { status: result.status, shown: result.status ?? result.outcome, head: result.head };
  };
  /** Whether `t` died (a moment's grace after an input that got no answer). */
  const died = async (t: Target, status: number | undefined): Promise<boolean> =>
    !t.proc.alive || (status === undefined && (await sleep(50), !t.proc.alive));

  /**
   * Replays `batch` one input at a time on a fresh server started from the checkpoint taken before
   * it, looking at the state after each input as a run with batches of 1 does. Findings name the
   * input. Returns whether it found anything, and the changes it saw (by {@link changeKey});
   * accepted changes are counted from the replay.
   */
  const replay = async (
    batch: readonly Sent[],
    tenants: readonly Principal[],
    why: string,
  ): Promise<{ found: boolean; seen: Set<string>; diedAt?: Sent }> => {
    replayed++;
    const replayStarted = Date.now();
    const name = `replay-${replays++}`;
    await cp(checkpoint, join(dir, name), { recursive: true });
    const t = await startTarget(dir, name, portRandom, { tenants: tenants });
    if (TRACE) process.stderr.write(`replay server up in ${Date.now() - replayStarted} ms\n`);
    const p = new Pacer();
    const note = ` (found replaying inputs #${batch[0]?.index}..#${batch[batch.length - 1]?.index} one at a time: ${why})`;
    let found = false;
    const seen = new Set<string>();
    try {
      let before = await takeSnapshot({ controlPort: t.controlPort, operator: t.operator });
      for (const s of batch) {
        const { status, shown } = await send(t, p, s.input);
        if (TRACE) process.stderr.write(`replay #${s.index} ${shown} ${s.input.label.slice(0, 100)}\n`);
        const rejected = status === undefined || status >= 400;
        await options.afterInput?.({
          index: s.index,
          status: shown,
          rejected,
          replay: true,
          controlPort: t.controlPort,
          operatorToken: t.operator.token,
        });
        if (await died(t, status)) return { found: true, seen, diedAt: s };
        let after: Snapshot;
        try {
          after = await takeSnapshot({ controlPort: t.controlPort, operator: t.operator });
        } catch (error) {
          const text = error instanceof UnreadableState ? error.message : String(error);
          record('unreadable-state', s.index, s.input, shown, `${text}${note}`);
          if (rejected)
            record('rejected-changed-state', s.index, s.input, shown, `state unreadable afterwards: ${text}${note}`);
          return { found: true, seen };
        }
        for (const c of diffState(before, after)) seen.add(changeKey(c));
        const j = judgeInput(before, after, s.input, rejected);
        if (j.rejectedChanges.length > 0) {
          record('rejected-changed-state', s.index, s.input, shown, `${describeChanges(j.rejectedChanges)}${note}`);
          found = true;
        }
        if (j.outOfAuthority.length > 0) {
          record('out-of-authority', s.index, s.input, shown, `${describeChanges(j.outOfAuthority)}${note}`);
          found = true;
        }
        count(legitimate, j.legitimate);
        before = after;
      }
      return { found, seen };
    } finally {
      await t.proc.kill('SIGKILL');
      await rm(join(dir, name), { recursive: true, force: true });
      replayMs += Date.now() - replayStarted;
    }
  };

  /** Records a batch whose replay did not reproduce what it showed, naming all its inputs. */
  const unattributed = (batch: readonly Sent[], kind: FindingKind, detail: string): void => {
    const first = batch[0];
    if (!first) return;
    const list = batch.map((s) => `#${s.index} ${s.status} ${s.input.label.slice(0, 80)}`).join(' | ');
    record(
      kind,
      first.index,
      first.input,
      first.status,
      `${detail}; not reproduced one input at a time; the batch: ${list}`,
    );
  };

  try {
    let { t, snap: before } = await start();
    target = t;
    let done = 0;
    let nextProgress = options.progressEvery ?? 0;
    while (done < options.inputs) {
      batches++;
      await checkpointState(t.stateDir, checkpoint);
      const k = knowledge(t, before);
      const batch: Sent[] = [];
      let crashed = false;
      const parked: Promise<void>[] = [];
      const giveUp = new AbortController();
      const end = Math.min(options.inputs, done + batchSize);
      for (let i = done; i < end; i++) {
        const useMetadata = random.next() < 0.55;
        const input = useMetadata
          ? metadataInput(random, k, random.pick(vms), { slow: options.slow ?? false, huge: options.huge ?? false })
          : controlInput(random, k, { slow: options.slow ?? false, huge: options.huge ?? false });
        if (input.surface === 'metadata') await pacer.take(input.vm ?? '');
        const sentAt = Date.now();
        const port = input.surface === 'metadata' ? (t.metadataPorts.get(input.vm ?? '') ?? 0) : t.controlPort;
        const pending = sendRaw({
          port,
          bytes: input.bytes,
          delivery: input.delivery,
          timeoutMs: ANSWER_TIMEOUT_MS,
          signal: giveUp.signal,
        });
        // An input still unanswered after PARK_AFTER_MS is parked: its answer is awaited in the
        // background (up to ANSWER_TIMEOUT_MS) while the next inputs go.
        const quick = await Promise.race([pending, sleep(PARK_AFTER_MS).then(() => undefined)]);
        const settle = (result: WireResult, parked: boolean): Sent => {
          const status = result.status ?? result.outcome;
          if (TRACE)
            process.stderr.write(
              `#${i} ${result.ms} ms ${status}${parked ? ' parked' : ''} ${input.label.slice(0, 100)}\n`,
            );
          statuses[String(status)] = (statuses[String(status)] ?? 0) + 1;
          if (result.status !== undefined && result.status >= 500) {
            serverErrors++;
            record('5xx', i, input, status, result.head.split('\r\n\r\n')[1]?.slice(0, 300) ?? '');
          }
          if (input.oddSpelling !== undefined && result.status === 200 && /"DocumentIncarnation"/.test(result.head)) {
            record('odd-spelling-served', i, input, status, `served the document for ${input.oddSpelling}`);
          }
          const rejected = result.status === undefined || result.status >= 400;
          // Given up at the batch's end: its window stays open until the state is read.
          const doneAt = giveUp.signal.aborted && result.status === undefined ? Number.POSITIVE_INFINITY : Date.now();
          return { index: i, input, status, rejected, sentAt, doneAt, ...(parked ? { parked } : {}) };
        };
        done = i + 1;
        if (quick === undefined) {
          const slot = batch.length;
          batch.push({ index: i, input, status: 'parked', rejected: true, sentAt, doneAt: Infinity, parked: true });
          parked.push(pending.then((result) => void (batch[slot] = settle(result, true))));
          continue;
        }
        const sent = settle(quick, false);
        await options.afterInput?.({
          index: i,
          status: sent.status,
          rejected: sent.rejected,
          replay: false,
          controlPort: t.controlPort,
          operatorToken: t.operator.token,
        });
        batch.push(sent);
        // A crash: the process is gone (seen at once, or by the next input, or at the batch's end;
        // the replay of the batch names the input it died of).
        if (!t.proc.alive) {
          crashed = true;
          break;
        }
      }
      // Parked inputs still unanswered are given up (closed) rather than waited for: their windows
      // stay open, so whatever they could have made is replayed (the replay waits the full 2 s).
      // (A last grace of 250 ms lets a trickled input finish sending.)
      if (parked.length > 0) await Promise.race([Promise.all(parked), sleep(250)]);
      giveUp.abort();
      await Promise.all(parked);
      // A moment's grace after an input that got no answer, for a fatal write to be seen.
      if (!crashed && batch[batch.length - 1]?.rejected === true) await sleep(50);
      const last = batch[batch.length - 1];
      if (last && (crashed || !t.proc.alive)) {
        // The inputs before the crash were not looked at, and the crash may come from an earlier
        // input than the one it was seen after: replay them on the checkpoint, one at a time, then
        // go on with a fresh server.
        crashes++;
        const tail = t.proc.tail(15);
        const r = await replay(batch, t.tenants, 'the server died in this batch');
        const at = r.diedAt ?? last;
        record(
          'crash',
          at.index,
          at.input,
          at.status,
          `${r.diedAt ? 'reproduced one input at a time' : `died during inputs #${batch[0]?.index}..#${last.index}, not reproduced one input at a time`}: ${tail}`,
        );
        restarts++;
        ({ t, snap: before } = await start());
        target = t;
        continue;
      }

      let after: Snapshot;
      const rep = reps[batches % reps.length] ?? '';
      try {
        await pacer.take(rep);
        crossChecks++;
        after = await takeSnapshot({
          controlPort: t.controlPort,
          operator: t.operator,
          metadataPort: t.metadataPorts.get(rep) ?? 0,
          metadataVm: rep,
        });
        if (after.metadata && after.scopes.get(after.metadata.scope)?.incarnation !== after.metadata.incarnation) {
          // An event may have started between the two reads: read both again before judging.
          await pacer.take(rep);
          crossChecks++;
          after = await takeSnapshot({
            controlPort: t.controlPort,
            operator: t.operator,
            metadataPort: t.metadataPorts.get(rep) ?? 0,
            metadataVm: rep,
          });
          const m = after.metadata;
          const control = m ? after.scopes.get(m.scope)?.incarnation : undefined;
          const last = batch[batch.length - 1];
          if (m && last && control !== m.incarnation)
            record(
              'views-disagree',
              last.index,
              last.input,
              last.status,
              `${m.vm}: metadata DocumentIncarnation ${m.incarnation}, control API ${control}`,
            );
        }
      } catch (error) {
        const why = error instanceof UnreadableState ? error.message : String(error);
        if (!(await replay(batch, t.tenants, `state unreadable after the batch: ${why}`)).found) {
          // Not laid at one input: it may have been a refused one, so it counts as unattributed too.
          unattributed(batch, 'unreadable-state', `state unreadable after the batch: ${why}`);
          unattributed(batch, 'unattributed-change', `state unreadable after the batch: ${why}`);
        }
        await t.proc.kill('SIGKILL');
        restarts++;
        ({ t, snap: before } = await start());
        target = t;
        continue;
      }
      const { explained, unexplained } = explainBatch(batch, diffState(before, after), after);
      const only = batch.length === 1 ? batch[0] : undefined;
      if (unexplained.length === 0) {
        count(legitimate, explained);
      } else if (only) {
        // A batch of one input: the look after it is the per-input look; no replay needed.
        const j = judgeInput(before, after, only.input, only.rejected);
        if (j.rejectedChanges.length > 0)
          record('rejected-changed-state', only.index, only.input, only.status, describeChanges(j.rejectedChanges));
        if (j.outOfAuthority.length > 0)
          record('out-of-authority', only.index, only.input, only.status, describeChanges(j.outOfAuthority));
        count(legitimate, j.legitimate);
      } else {
        // Replayed one input at a time, each change the batch could not explain is either laid at
        // an input (a finding, or an accepted change within its rights) or it was not reproduced.
        // Only the inputs up to the window of the latest unexplained change can have made them.
        // (a change without a stamp: the whole batch).
        const latest = Math.max(
          ...unexplained.map((c) => stampOf(c, after.events.get(c.eventId ?? '')) ?? Number.POSITIVE_INFINITY),
        );
        const upTo = Number.isFinite(latest) ? batch.filter((x) => x.sentAt <= latest) : batch;
        const { seen } = await replay(upTo, t.tenants, `unexplained: ${describeChanges(unexplained)}`);
        const lost = unexplained.filter((c) => !seen.has(changeKey(c)));
        if (lost.length > 0) unattributed(batch, 'unattributed-change', `unexplained: ${describeChanges(lost)}`);
      }

      if (await seedState(t, after)) after = await takeSnapshot({ controlPort: t.controlPort, operator: t.operator });
      before = after;
      peak = Math.max(peak, (await rssOf(t.proc.pid))?.hwm ?? 0);
      if (options.progress && nextProgress > 0 && done >= nextProgress) {
        nextProgress += options.progressEvery ?? 0;
        const m = await rssOf(t.proc.pid);
        options.progress(
          `${done} inputs, ${serverErrors} 5xx, ${crashes} crashes, ${findings.length} findings, ${replayed} batches replayed, RSS ${((m?.rss ?? 0) / 2 ** 20).toFixed(0)} MB, ${(done / ((Date.now() - started) / 1000)).toFixed(0)} inputs/s`,
        );
      }
    }
    // The rate-limit path, apart: a burst at one listener, faster than a guest may send.
    let rateLimit: (BurstResult & { readonly changes: number }) | undefined;
    if (t.proc.alive) {
      const vm = 'solo_d';
      const b0 = await takeSnapshot({ controlPort: t.controlPort, operator: t.operator });
      const others = [...b0.events.values()].filter((e) => e.scope !== 'vm:solo_d' && e.phase === 'Scheduled');
      const r = await burst({
        vm,
        port: t.metadataPorts.get(vm) ?? 0,
        count: 40,
        otherScopeIds: others.map((e) => e.eventId),
      });
      const b1 = await takeSnapshot({ controlPort: t.controlPort, operator: t.operator });
      const changes = diffState(b0, b1).filter(
        (c) => c.scope === 'vm:solo_d' || c.what.startsWith('approved by solo_d'),
      );
      const burstInput: FuzzInput = {
        surface: 'metadata',
        vm,
        actor: { kind: 'metadata', vm, scope: 'vm:solo_d' },
        label: `${vm}: burst of 40 requests (GETs, approvals of other scopes' events)`,
        bytes: Buffer.from(''),
        delivery: { kind: 'whole' },
      };
      for (const [status, n] of Object.entries(r.statuses)) {
        if (Number(status) >= 500) {
          serverErrors += n;
          record('5xx', options.inputs, burstInput, status, `${n} of the burst answered ${status}`);
        }
      }
      if (changes.length > 0) record('out-of-authority', options.inputs, burstInput, 'burst', describeChanges(changes));
      rateLimit = { ...r, changes: changes.length };
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
    const countOf = (kind: FindingKind): number => findings.filter((f) => f.kind === kind).length;
    return {
      seed: options.seed,
      inputs: options.inputs,
      statuses,
      serverErrors,
      crashes,
      restarts,
      rss: { start: rssStart, peak, end },
      rejectedChangedState: countOf('rejected-changed-state'),
      acceptedChanges: legitimate,
      outOfAuthority: countOf('out-of-authority'),
      oddSpellingServed: countOf('odd-spelling-served'),
      unreadableState: countOf('unreadable-state'),
      unattributedChanges: countOf('unattributed-change'),
      viewsDisagree: countOf('views-disagree'),
      rateLimit,
      batches: { size: batchSize, count: batches, replayed, replayMs, crossChecks },
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
