import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { IntermissionError } from '../domain/index.js';
import { writeFileAtomic } from '../control/tokens.js';
import { hostStepRequestSchema, hostStepStatusSchema, type HostStepRequest, type HostStepStatus } from './protocol.js';

/** A host step as the agent remembers it: what was asked and how it went. */
export interface JournalEntry {
  readonly request: HostStepRequest;
  readonly status: HostStepStatus;
}

/**
 * Where an agent remembers its host steps, so that a restarted agent answers a repeated request
 * with the first run's outcome instead of running the step again (invariant 5).
 */
export interface AgentJournal {
  /** Durable: survives a restart of the agent process. */
  readonly durable: boolean;
  get(stepId: string): JournalEntry | undefined;
  /** Every remembered entry, oldest first. */
  entries(): readonly JournalEntry[];
  /** Records an entry; resolves once it is durable. */
  put(entry: JournalEntry): Promise<void>;
}

/** Finished steps kept; older ones are dropped (the controller has their results by then). */
const KEEP_FINISHED = 1000;

const journalFileSchema = z.object({
  version: z.literal(1),
  entries: z.array(z.object({ request: hostStepRequestSchema, status: hostStepStatusSchema })),
});

/** A journal in one JSON file, rewritten atomically on every change. */
export class FileJournal implements AgentJournal {
  readonly durable = true;
  readonly #path: string;
  readonly #entries = new Map<string, JournalEntry>();
  #writing: Promise<void> = Promise.resolve();

  private constructor(path: string) {
    this.#path = path;
  }

  static async open(path: string): Promise<FileJournal> {
    const journal = new FileJournal(path);
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (text !== undefined) {
      const parsed = journalFileSchema.safeParse(JSON.parse(text));
      if (!parsed.success) {
        throw new IntermissionError('STORE_FAILURE', `agent journal ${path} is not readable by this version`, {
          cause: parsed.error,
        });
      }
      for (const e of parsed.data.entries) journal.#entries.set(e.request.stepId, e);
    }
    return journal;
  }

  get(stepId: string): JournalEntry | undefined {
    return this.#entries.get(stepId);
  }

  entries(): readonly JournalEntry[] {
    return [...this.#entries.values()];
  }

  put(entry: JournalEntry): Promise<void> {
    this.#entries.delete(entry.request.stepId);
    this.#entries.set(entry.request.stepId, entry);
    const finished = [...this.#entries.values()].filter((e) => e.status.status !== 'running');
    for (const old of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) {
      this.#entries.delete(old.request.stepId);
    }
    const content = JSON.stringify({ version: 1, entries: [...this.#entries.values()] }) + '\n';
    // Writes are chained so that a later state never lands before an earlier one.
    const write = this.#writing.then(() => writeFileAtomic(this.#path, content));
    this.#writing = write.catch(() => undefined);
    return write;
  }
}

/**
 * A journal in memory only, for simulations whose hosts live in the same process as their agents
 * (the large-scale benchmark): when the process goes, the simulated hosts go with it.
 */
export class MemoryJournal implements AgentJournal {
  readonly durable = false;
  readonly #entries = new Map<string, JournalEntry>();
  get(stepId: string): JournalEntry | undefined {
    return this.#entries.get(stepId);
  }
  entries(): readonly JournalEntry[] {
    return [...this.#entries.values()];
  }
  put(entry: JournalEntry): Promise<void> {
    this.#entries.set(entry.request.stepId, entry);
    return Promise.resolve();
  }
}
