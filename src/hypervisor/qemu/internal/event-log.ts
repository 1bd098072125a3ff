import type { QmpClient, QmpEvent } from '../../../qmp/index.js';

/** Events kept per connection: far more than one operation sees, bounded for a VM that lives long. */
const KEPT_EVENTS = 256;

interface Entry {
  readonly seq: number;
  readonly event: QmpEvent;
}

/**
 * The recent events of one QMP connection, numbered, so that an operation can take a mark before its
 * command and then find (or wait for) the event the command caused. QEMU sends STOP and RESUME
 * before the answer to `stop` and `cont`, so after the command they are usually already here.
 */
export class EventLog {
  readonly #entries: Entry[] = [];
  readonly #waiters = new Set<() => void>();
  #seq = 0;
  #closed = false;

  constructor(client: QmpClient) {
    client.on('event', (event) => {
      this.#seq += 1;
      this.#entries.push({ seq: this.#seq, event });
      if (this.#entries.length > KEPT_EVENTS) this.#entries.shift();
      this.#wake();
    });
    client.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
  }

  /** The number of the last event received: a mark for {@link find} and {@link waitFor}. */
  get seq(): number {
    return this.#seq;
  }

  /** The first event named `name` received after `mark` (and matching `accept`), if any. */
  find(name: string, mark: number, accept: (event: QmpEvent) => boolean = () => true): QmpEvent | undefined {
    return this.#entries.find((entry) => entry.seq > mark && entry.event.name === name && accept(entry.event))?.event;
  }

  /**
   * Waits for {@link find} to succeed; undefined after `timeoutMs`, when the connection closes, or
   * when `signal` aborts.
   */
  async waitFor(
    name: string,
    mark: number,
    options: {
      readonly timeoutMs: number;
      readonly signal?: AbortSignal;
      readonly accept?: (event: QmpEvent) => boolean;
    },
  ): Promise<QmpEvent | undefined> {
    const found = (): QmpEvent | undefined => this.find(name, mark, options.accept);
    const first = found();
    if (first !== undefined || this.#closed || options.signal?.aborted === true) return first;
    return new Promise<QmpEvent | undefined>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        options.signal?.removeEventListener('abort', finish);
        resolve(found());
      };
      const check = (): void => {
        if (found() !== undefined || this.#closed) finish();
      };
      const timer = setTimeout(finish, Math.max(0, options.timeoutMs));
      options.signal?.addEventListener('abort', finish, { once: true });
      this.#waiters.add(check);
    });
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }
}
