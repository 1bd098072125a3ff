import { SIM_HOST_EVENT_KINDS, type SimHostEvent, type SimHostEventKind } from '../sim-types.js';

/** The fields of a {@link SimHostEvent} that few entries carry, kept aside by entry index. */
type RareFields = Pick<SimHostEvent, 'fromVersion' | 'toVersion' | 'updateId' | 'byLease'>;

const KIND_INDEX: ReadonlyMap<SimHostEventKind, number> = new Map(SIM_HOST_EVENT_KINDS.map((k, i) => [k, i]));

/**
 * A simulated host's history in columns: a region-sized simulation records about four entries per VM
 * per rollout, and an object per entry (with its boxed timestamps) costs several times what a few
 * numbers in packed arrays do. Entries are rebuilt as frozen objects only when read.
 */
export class HistoryLog {
  /** Host time of each entry. */
  readonly #at: number[] = [];
  /** Index of its kind in {@link SIM_HOST_EVENT_KINDS}. */
  readonly #kind: number[] = [];
  readonly #vm: (string | undefined)[] = [];
  /** `pausedMs`, NaN when the entry has none. */
  readonly #pausedMs: number[] = [];
  readonly #rare = new Map<number, RareFields>();

  get length(): number {
    return this.#at.length;
  }

  push(at: number, event: Omit<SimHostEvent, 'at'>): void {
    const index = this.#at.length;
    this.#at.push(at);
    this.#kind.push(KIND_INDEX.get(event.kind) ?? 0);
    this.#vm.push(event.vm);
    this.#pausedMs.push(event.pausedMs ?? Number.NaN);
    const { fromVersion, toVersion, updateId, byLease } = event;
    if (fromVersion !== undefined || toVersion !== undefined || updateId !== undefined || byLease !== undefined) {
      this.#rare.set(index, {
        ...(fromVersion === undefined ? {} : { fromVersion }),
        ...(toVersion === undefined ? {} : { toVersion }),
        ...(updateId === undefined ? {} : { updateId }),
        ...(byLease === undefined ? {} : { byLease }),
      });
    }
  }

  /** Every entry, oldest first, each a new frozen object (fields in the order they are recorded). */
  entries(): SimHostEvent[] {
    const out: SimHostEvent[] = [];
    for (let i = 0; i < this.#at.length; i++) {
      const vm = this.#vm[i];
      const pausedMs = this.#pausedMs[i] ?? Number.NaN;
      out.push(
        Object.freeze({
          at: this.#at[i] ?? 0,
          kind: SIM_HOST_EVENT_KINDS[this.#kind[i] ?? 0] ?? 'paused',
          ...(vm === undefined ? {} : { vm }),
          ...(Number.isNaN(pausedMs) ? {} : { pausedMs }),
          ...this.#rare.get(i),
        }),
      );
    }
    return out;
  }
}
