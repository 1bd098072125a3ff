import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { IntermissionError } from '../domain/index.js';
import { VM_PATHS } from '../domain/rollout/index.js';
import { writeFileAtomic } from '../control/tokens.js';
import {
  VM_OUTCOMES,
  hostStepRequestSchema,
  hostStepStatusSchema,
  type HostStepRequest,
  type HostStepStatus,
} from './protocol.js';

/** A host step as the agent remembers it: what was asked and how it went. */
export interface JournalEntry {
  readonly request: HostStepRequest;
  readonly status: HostStepStatus;
}

const compactStepSchema = z
  .object({
    stepId: z.string(),
    /** {@link requestDigest} of the request: a resend with other contents is still a CONFLICT. */
    requestDigest: z.string(),
    host: z.string(),
    status: z.enum(['succeeded', 'failed']),
    startedAt: z.number(),
    finishedAt: z.number().nullable(),
    error: z.object({ code: z.string(), message: z.string() }).strict().nullable(),
    vms: z.array(
      z
        .object({ name: z.string(), path: z.enum(VM_PATHS), outcome: z.enum(VM_OUTCOMES), pauseBudgetMs: z.number() })
        .strict(),
    ),
  })
  .strict();

/**
 * What the journal keeps of a finished step once its full entry is dropped: enough to answer a
 * resend of its id with its outcome (and never run it again), and to tell a resend with other
 * contents (CONFLICT). About 150 bytes plus 60 per VM.
 */
export type CompactStep = z.infer<typeof compactStepSchema>;

/**
 * Where an agent remembers its host steps, so that a restarted agent answers a repeated request
 * with the first run's outcome instead of running the step again (invariant 5).
 *
 * A step id, once run, is never run again: a controller may resend a step at any time after it
 * dispatched it (it resends whenever the agent answers that it does not know the id, and a
 * controller that was down for a month resends on its first pass), and no rule bounds how late.
 * So the journal forgets no finished step: past the newest {@link KEEP_FINISHED} it keeps a
 * {@link CompactStep} of each, for good.
 */
export interface AgentJournal {
  /** Durable: survives a restart of the agent process. */
  readonly durable: boolean;
  /** The full entry of a step, while the journal keeps it. */
  get(stepId: string): JournalEntry | undefined;
  /** The compact record of a finished step whose full entry was dropped. */
  compacted(stepId: string): CompactStep | undefined;
  /** Every full entry, oldest first. */
  entries(): readonly JournalEntry[];
  /** Records an entry; resolves once it is durable. */
  put(entry: JournalEntry): Promise<void>;
}

/**
 * Finished steps kept in full (request, per-VM measurements); older ones are compacted to a
 * {@link CompactStep}. The controller has their measurements by then: it polls a step until it
 * finishes, and a host runs at most one step per rollout wave, so 1,000 steps are years of a
 * host's maintenance; what matters past that is only that the id is never run again.
 */
export const KEEP_FINISHED = 1000;

/** Version 1 files (entries only, older finished steps forgotten) are read and rewritten as 2. */
const JOURNAL_FORMAT = 2;

const journalFileSchema = z.discriminatedUnion('version', [
  z.object({
    version: z.literal(1),
    entries: z.array(z.object({ request: hostStepRequestSchema, status: hostStepStatusSchema })),
  }),
  z.object({
    version: z.literal(JOURNAL_FORMAT),
    entries: z.array(z.object({ request: hostStepRequestSchema, status: hostStepStatusSchema })),
    compacted: z.array(compactStepSchema),
  }),
]);

/** A digest of a request that does not depend on the order of its keys. */
export function requestDigest(request: HostStepRequest): string {
  return createHash('sha256').update(canonicalJson(request)).digest('base64url');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort();
    return `{${keys
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/** The compact record of a finished entry. */
export function compactStep(entry: JournalEntry): CompactStep {
  const { request, status } = entry;
  if (status.status === 'running') {
    throw new IntermissionError('INTERNAL', `step ${request.stepId} is running: it cannot be compacted`);
  }
  return {
    stepId: request.stepId,
    requestDigest: requestDigest(request),
    host: status.host,
    status: status.status,
    startedAt: status.startedAt,
    finishedAt: status.finishedAt,
    error: status.error,
    vms: status.vms.map((v) => ({ name: v.name, path: v.path, outcome: v.outcome, pauseBudgetMs: v.pauseBudgetMs })),
  };
}

/** The status a compacted step answers with: its outcome, no measurements, `compacted: true`. */
export function compactedStatus(step: CompactStep): HostStepStatus {
  return {
    stepId: step.stepId,
    host: step.host,
    status: step.status,
    startedAt: step.startedAt,
    finishedAt: step.finishedAt,
    vms: step.vms.map((v) => ({
      ...v,
      pausedAt: null,
      resumedAt: null,
      pauseMs: null,
      clockOffsetMs: null,
      clockResidualMs: null,
      clockRoundTripMs: null,
      error: null,
    })),
    error: step.error,
    compacted: true,
  };
}

/** Options of {@link FileJournal.open}. */
export interface FileJournalOptions {
  /** Finished steps kept in full. Default {@link KEEP_FINISHED}; tests lower it. */
  readonly keepFinished?: number;
}

/**
 * A journal in one JSON file, rewritten atomically on every change. A step's full entry is dropped
 * in the same write that adds its compact record, so no crash can lose both.
 */
export class FileJournal implements AgentJournal {
  readonly durable = true;
  readonly #path: string;
  readonly #keepFinished: number;
  readonly #entries = new Map<string, JournalEntry>();
  readonly #compacted = new Map<string, CompactStep>();
  #writing: Promise<void> = Promise.resolve();

  private constructor(path: string, keepFinished: number) {
    this.#path = path;
    this.#keepFinished = keepFinished;
  }

  static async open(path: string, options: FileJournalOptions = {}): Promise<FileJournal> {
    const keepFinished = options.keepFinished ?? KEEP_FINISHED;
    if (!(Number.isInteger(keepFinished) && keepFinished >= 0)) {
      throw new IntermissionError('INVALID_INPUT', `keepFinished must be an integer >= 0, not ${keepFinished}`);
    }
    const journal = new FileJournal(path, keepFinished);
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (text !== undefined) {
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (error) {
        throw new IntermissionError('STORE_FAILURE', `agent journal ${path} is not JSON`, { cause: error });
      }
      const parsed = journalFileSchema.safeParse(json);
      if (!parsed.success) {
        throw new IntermissionError('STORE_FAILURE', `agent journal ${path} is not readable by this version`, {
          cause: parsed.error,
        });
      }
      if (parsed.data.version === JOURNAL_FORMAT) {
        for (const c of parsed.data.compacted) journal.#compacted.set(c.stepId, c);
      }
      for (const e of parsed.data.entries) {
        journal.#entries.set(e.request.stepId, e);
        journal.#compacted.delete(e.request.stepId);
      }
    }
    return journal;
  }

  get(stepId: string): JournalEntry | undefined {
    return this.#entries.get(stepId);
  }

  compacted(stepId: string): CompactStep | undefined {
    return this.#compacted.get(stepId);
  }

  entries(): readonly JournalEntry[] {
    return [...this.#entries.values()];
  }

  put(entry: JournalEntry): Promise<void> {
    this.#entries.delete(entry.request.stepId);
    this.#entries.set(entry.request.stepId, entry);
    this.#compacted.delete(entry.request.stepId);
    const finished = [...this.#entries.values()].filter((e) => e.status.status !== 'running');
    for (const old of finished.slice(0, Math.max(0, finished.length - this.#keepFinished))) {
      this.#entries.delete(old.request.stepId);
      this.#compacted.set(old.request.stepId, compactStep(old));
    }
    const content =
      JSON.stringify({
        version: JOURNAL_FORMAT,
        entries: [...this.#entries.values()],
        compacted: [...this.#compacted.values()],
      }) + '\n';
    // Writes are chained so that a later state never lands before an earlier one.
    const write = this.#writing.then(() => writeFileAtomic(this.#path, content));
    this.#writing = write.catch(() => undefined);
    return write;
  }
}

/**
 * A journal in memory only, for simulations whose hosts live in the same process as their agents
 * (the large-scale benchmark): when the process goes, the simulated hosts go with it. It keeps
 * every entry in full, so it never needs compact records.
 */
export class MemoryJournal implements AgentJournal {
  readonly durable = false;
  readonly #entries = new Map<string, JournalEntry>();
  get(stepId: string): JournalEntry | undefined {
    return this.#entries.get(stepId);
  }
  compacted(): CompactStep | undefined {
    return undefined;
  }
  entries(): readonly JournalEntry[] {
    return [...this.#entries.values()];
  }
  put(entry: JournalEntry): Promise<void> {
    this.#entries.set(entry.request.stepId, entry);
    return Promise.resolve();
  }
}
