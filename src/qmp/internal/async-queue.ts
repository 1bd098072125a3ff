/**
 * A push-fed async iterator with one consumer: the producer pushes items and ends the queue (with
 * or without an error); the consumer pulls with `next()` or `for await`. Items pushed before
 * `end(error)` are still delivered before the error is thrown, so nothing the peer sent is lost.
 */
export interface AsyncQueueOptions {
  /** Called after the consumer took an item and at most `lowWaterMark` items remain buffered. */
  readonly onDrain?: () => void;
  /** See `onDrain`. Default 0. */
  readonly lowWaterMark?: number;
  /** Called once when the consumer stops early (`return()`, e.g. `break` in `for await`). */
  readonly onReturn?: () => void;
}

interface Waiter<T> {
  readonly resolve: (result: IteratorResult<T, undefined>) => void;
  readonly reject: (error: unknown) => void;
}

/** See the module comment. */
export class AsyncQueue<T> implements AsyncIterableIterator<T, undefined> {
  readonly #items: T[] = [];
  readonly #waiters: Waiter<T>[] = [];
  readonly #options: AsyncQueueOptions;
  #ended = false;
  #failure: { readonly error: unknown } | undefined;
  #returned = false;

  constructor(options: AsyncQueueOptions = {}) {
    this.#options = options;
  }

  /** Items buffered and not yet taken. */
  get size(): number {
    return this.#items.length;
  }

  /** Whether `end()` or `return()` was called. */
  get ended(): boolean {
    return this.#ended;
  }

  /** Adds an item; returns false (and drops it) once the queue has ended. */
  push(item: T): boolean {
    if (this.#ended) return false;
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve({ done: false, value: item });
    else this.#items.push(item);
    return true;
  }

  /** Ends the queue. Buffered items are still delivered; then `next()` throws `error` if given. */
  end(error?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    if (error !== undefined) this.#failure = { error };
    // Waiters only exist while the buffer is empty, so they get the end right away.
    for (const waiter of this.#waiters.splice(0)) {
      if (this.#failure) waiter.reject(this.#failure.error);
      else waiter.resolve({ done: true, value: undefined });
    }
  }

  next(): Promise<IteratorResult<T, undefined>> {
    if (this.#items.length > 0) {
      const value = this.#items.shift() as T;
      if (this.#items.length <= (this.#options.lowWaterMark ?? 0)) this.#options.onDrain?.();
      return Promise.resolve({ done: false, value });
    }
    if (this.#ended) {
      if (this.#failure) {
        // The error is thrown once; afterwards the iterator is simply done.
        const { error } = this.#failure;
        this.#failure = undefined;
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      return Promise.resolve({ done: true, value: undefined });
    }
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  return(): Promise<IteratorResult<T, undefined>> {
    this.#items.length = 0;
    this.#failure = undefined;
    this.end();
    if (!this.#returned) {
      this.#returned = true;
      this.#options.onReturn?.();
    }
    return Promise.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
