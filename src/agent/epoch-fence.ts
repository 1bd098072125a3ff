import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { IntermissionError } from '../domain/index.js';
import { writeFileAtomic } from '../control/tokens.js';

/**
 * Fencing at the agent: every command a controller sends carries the epoch of its leader lease; the
 * agent remembers the highest epoch it has seen and refuses a lower one with STALE_EPOCH. A
 * controller that was deposed (its lease expired while it stalled, and another took over) can then
 * do nothing to this host, whatever it still believes.
 *
 * The highest epoch is written durably (atomically, fsync'd) before the command that raised it is
 * acted on, so a restarted agent refuses what it refused before.
 */

/** Where an agent keeps its highest epoch. */
export interface EpochStore {
  /** The highest epoch saved, 0 when none ever was. */
  load(): Promise<number>;
  /** Saves a higher epoch durably; resolves once it is on disk. */
  save(epoch: number): Promise<void>;
}

/** A process's memory: for agents whose fence need not outlive them (tests). */
export class MemoryEpochStore implements EpochStore {
  #epoch = 0;
  load(): Promise<number> {
    return Promise.resolve(this.#epoch);
  }
  save(epoch: number): Promise<void> {
    this.#epoch = epoch;
    return Promise.resolve();
  }
}

const fileSchema = z.object({ epoch: z.number().int().nonnegative() }).strict();

/** A JSON file in the agent's state directory (`<state>/agents/<host>.epoch`), replaced atomically. */
export class FileEpochStore implements EpochStore {
  readonly path: string;
  constructor(path: string) {
    this.path = path;
  }
  async load(): Promise<number> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw error;
    }
    const parsed = fileSchema.safeParse(safeJson(text));
    if (!parsed.success) {
      // Refusing to start beats forgetting the epoch: a forgotten fence would let a deposed controller act.
      throw new IntermissionError(
        'INTERNAL',
        `the agent's epoch file ${this.path} is unreadable; restore it or remove it deliberately`,
      );
    }
    return parsed.data.epoch;
  }
  save(epoch: number): Promise<void> {
    return writeFileAtomic(this.path, JSON.stringify({ epoch }) + '\n');
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The most an epoch may be: a safe integer (JSON and the database's bigint agree on it). */
export const MAX_EPOCH = Number.MAX_SAFE_INTEGER;

/** An agent's fence: the highest epoch seen, checked and raised one command at a time. */
export class EpochFence {
  readonly #store: EpochStore;
  #highest: number;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(store: EpochStore, highest: number) {
    this.#store = store;
    this.#highest = highest;
  }

  static async open(store: EpochStore = new MemoryEpochStore()): Promise<EpochFence> {
    return new EpochFence(store, await store.load());
  }

  /** The highest epoch seen (0: none). */
  get highest(): number {
    return this.#highest;
  }

  /**
   * Lets a command of `epoch` through, or refuses it with STALE_EPOCH when a higher one was seen. A
   * higher epoch is saved durably before this resolves, so that the command is acted on only once
   * the agent will refuse the older controller across a restart too. Checks run one at a time.
   */
  admit(epoch: number): Promise<void> {
    const run = this.#queue.then(async () => {
      if (!Number.isSafeInteger(epoch) || epoch < 0) {
        throw new IntermissionError('INVALID_INPUT', `a fencing epoch is an integer of 0 or more, got ${epoch}`);
      }
      if (epoch < this.#highest) {
        throw new IntermissionError(
          'STALE_EPOCH',
          `this agent has seen epoch ${this.#highest}; a command of epoch ${epoch} comes from a deposed controller`,
          { details: { epoch, highest: this.#highest } },
        );
      }
      if (epoch > this.#highest) {
        await this.#store.save(epoch);
        this.#highest = epoch;
      }
    });
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
