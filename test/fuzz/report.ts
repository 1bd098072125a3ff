/** The fuzzer's findings and report, and the report as text. */
import type { BurstResult } from './rate-limit.js';

export type FindingKind =
  | '5xx'
  | 'crash'
  | 'rejected-changed-state'
  | 'out-of-authority'
  | 'odd-spelling-served'
  | 'unreadable-state'
  | 'unattributed-change'
  | 'views-disagree';

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
  /**
   * Inputs between two looks at the state (default 50). A batch whose changes are not all
   * explained is replayed one input at a time on a fresh server started from its checkpoint.
   * 1 looks after every input (and never replays).
   */
  readonly batch?: number;
  /**
   * For the fuzzer's own tests: called after every input (in a replay too), so that a test can
   * change the state out of band right after one input, as a faulty server would, and check that
   * the change is laid at that input.
   */
  readonly afterInput?: (at: AfterInput) => Promise<void>;
  /** Progress lines (every `progressEvery` inputs). */
  readonly progress?: (line: string) => void;
  readonly progressEvery?: number;
}

export interface AfterInput {
  readonly index: number;
  readonly status: number | string;
  readonly rejected: boolean;
  /** Whether this is the replay of a batch, one input at a time. */
  readonly replay: boolean;
  readonly controlPort: number;
  readonly operatorToken: string;
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
   * Batches whose unexplained change (or unreadable state) the replay one input at a time did not
   * reproduce: counted as findings, with the batch's inputs named.
   */
  readonly unattributedChanges: number;
  /** Times the document read through a metadata listener disagreed with the control API's. */
  readonly viewsDisagree: number;
  /**
   * The rate-limit path, fuzzed apart at the end: a burst of 40 requests at one VM's listener
   * (GETs, approvals of other scopes' events), what it was answered, and what it changed (must be 0).
   */
  readonly rateLimit: (BurstResult & { readonly changes: number }) | undefined;
  /** Batches and replays: how many batches, how many replayed, and the metadata cross-checks. */
  readonly batches: {
    readonly size: number;
    readonly count: number;
    readonly replayed: number;
    /** Time spent replaying, in ms (part of durationMs). */
    readonly replayMs: number;
    readonly crossChecks: number;
  };
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
    `unattributed batch changes         ${r.unattributedChanges}`,
    `metadata view disagrees            ${r.viewsDisagree} (of ${r.batches.crossChecks} cross-checks)`,
    `rate-limit burst                   ${
      r.rateLimit
        ? `${r.rateLimit.sent} at ${r.rateLimit.vm}: ${Object.entries(r.rateLimit.statuses)
            .map(([k, n]) => `${k}:${n}`)
            .join(' ')}, ${r.rateLimit.changes} changes`
        : 'not run (server down)'
    }`,
    `batches                            ${r.batches.count} of ${r.batches.size} inputs, ${r.batches.replayed} replayed one input at a time (${(r.batches.replayMs / 1000).toFixed(1)} s)`,
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
