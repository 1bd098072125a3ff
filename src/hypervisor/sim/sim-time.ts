import { IntermissionError, ManualClock, type Clock } from '../../domain/index.js';

/** Options of {@link SimTime.sleep}. */
export interface SleepOptions {
  /** Aborting rejects the sleep with the signal's reason. */
  readonly signal?: AbortSignal;
}

/**
 * A clock with a sleeper: all the simulator knows of time. Operations that "take" time await
 * `sleep`, so the same simulation runs in real time ({@link realTime}) or in virtual time that tests
 * move by hand or let jump ({@link VirtualTime}).
 */
export interface SimTime extends Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * Resolves once `ms` have passed on this clock. `Infinity` never resolves: only the signal ends it.
   * Rejects with the signal's reason when the signal aborts.
   */
  sleep(ms: number, options?: SleepOptions): Promise<void>;
}

/** Options of {@link realTime}. */
export interface RealTimeOptions {
  /** Default: `Date.now`. */
  readonly clock?: Clock;
}

/** Longest delay `setTimeout` takes; longer sleeps are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Wall-clock time and `setTimeout`: for the embedded default and demos. */
export function realTime(options: RealTimeOptions = {}): SimTime {
  const clock = options.clock ?? { now: () => Date.now() };
  return Object.freeze({
    now: () => clock.now(),
    sleep: (ms: number, sleepOptions: SleepOptions = {}) =>
      new Promise<void>((resolve, reject) => {
        const { signal } = sleepOptions;
        if (signal?.aborted) {
          reject(abortReason(signal));
          return;
        }
        let timer: NodeJS.Timeout | undefined;
        const onAbort = (): void => {
          if (timer !== undefined) clearTimeout(timer);
          reject(abortReason(signal));
        };
        const arm = (left: number): void => {
          if (!Number.isFinite(left)) return;
          timer = setTimeout(
            () => {
              if (left > MAX_TIMER_MS) {
                arm(left - MAX_TIMER_MS);
                return;
              }
              signal?.removeEventListener('abort', onAbort);
              resolve();
            },
            Math.max(0, Math.min(left, MAX_TIMER_MS)),
          );
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        arm(ms);
      }),
  });
}

/** Auto-advance steps taken without a turn of the event loop in between. */
const FAST_STEPS = 200;

/** A pending sleep of a {@link VirtualTime}. */
interface Timer {
  readonly due: number;
  readonly seq: number;
  readonly resolve: () => void;
  cancelled: boolean;
}

/** Options of {@link VirtualTime}. */
export interface VirtualTimeOptions {
  /** The clock to move; default: a new {@link ManualClock} at 2026-01-01. */
  readonly clock?: ManualClock;
  /**
   * Jump to the next timer whenever nothing else is left to run (no pending microtask): operations
   * complete at once in wall time while their virtual durations add up. Real I/O is not waited for,
   * so keep it out of auto-advanced simulations (or drive time by hand). Default false: time moves
   * only through {@link VirtualTime.advance} and {@link VirtualTime.run}.
   */
  readonly autoAdvance?: boolean;
}

/** Options of {@link VirtualTime.run}. */
export interface RunOptions {
  /** Give up (INTERNAL) if the promise is still pending after this much virtual time. Default: 1 day. */
  readonly limitMs?: number;
}

/**
 * Virtual time for tests and large simulations: nothing ever waits in wall time. Sleeps are timers
 * in a queue ordered by due time (then by creation); {@link advance} moves the clock and fires them
 * in order, letting each one's continuations run (and schedule more) before the next; {@link run}
 * drives time until a promise settles. With `autoAdvance`, time jumps on its own whenever the
 * process has nothing else to do.
 */
export class VirtualTime implements SimTime {
  /** The clock this instance moves; share it with components that only need a {@link Clock}. */
  readonly clock: ManualClock;
  readonly #heap: Timer[] = [];
  #seq = 0;
  #live = 0;
  #autoAdvance: boolean;
  #stepScheduled = false;
  #fastSteps = 0;

  constructor(options: VirtualTimeOptions = {}) {
    this.clock = options.clock ?? new ManualClock();
    this.#autoAdvance = options.autoAdvance ?? false;
  }

  /** The virtual time, milliseconds since the epoch. */
  now(): number {
    return this.clock.now();
  }

  /** Sleeps pending (not fired, not aborted). */
  get pending(): number {
    return this.#live;
  }

  /** Due time of the next pending sleep, or undefined. */
  nextDue(): number | undefined {
    this.#dropCancelled();
    return this.#heap[0]?.due;
  }

  /** Turns jumping on or off (see {@link VirtualTimeOptions.autoAdvance}). */
  setAutoAdvance(on: boolean): void {
    this.#autoAdvance = on;
    if (on) this.#scheduleStep();
  }

  /** Resolves when virtual time reaches now + `ms` (see {@link SimTime.sleep}). */
  sleep(ms: number, options: SleepOptions = {}): Promise<void> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (Number.isNaN(ms)) return Promise.reject(new IntermissionError('INVALID_INPUT', 'cannot sleep NaN ms'));
    return new Promise<void>((resolve, reject) => {
      if (!Number.isFinite(ms)) {
        // Never due: only the signal ends it.
        signal?.addEventListener('abort', () => reject(abortReason(signal)), { once: true });
        return;
      }
      const onAbort = (): void => {
        if (timer.cancelled) return;
        timer.cancelled = true;
        this.#live--;
        reject(abortReason(signal));
      };
      const timer: Timer = {
        due: this.clock.now() + Math.max(0, ms),
        seq: this.#seq++,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        cancelled: false,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#push(timer);
      this.#live++;
      this.#scheduleStep();
    });
  }

  /**
   * Moves the clock forward by `ms`, firing every sleep that falls due on the way, in order, each at
   * its own due time and with its continuations run before the next fires.
   */
  async advance(ms: number): Promise<void> {
    if (ms < 0) throw new IntermissionError('INVALID_INPUT', 'virtual time only moves forward');
    await this.advanceTo(this.clock.now() + ms);
  }

  /** Moves the clock forward to `time` (see {@link advance}); a time in the past only fires what is due. */
  async advanceTo(time: number): Promise<void> {
    await flushMicrotasks();
    for (;;) {
      const due = this.nextDue();
      if (due === undefined || due > time) break;
      this.#fireNext();
      await flushMicrotasks();
    }
    if (time > this.clock.now()) this.clock.set(time);
    await flushMicrotasks();
  }

  /**
   * Drives virtual time until `promise` settles, then returns (or throws) its outcome. Throws
   * INTERNAL when the promise waits on nothing this clock can fire (a deadlock), or is still pending
   * after `limitMs`.
   */
  async run<T>(promise: Promise<T>, options: RunOptions = {}): Promise<T> {
    const limit = this.clock.now() + (options.limitMs ?? 24 * 3_600_000);
    let settled = false;
    const watched = promise.then(
      (value) => {
        settled = true;
        return value;
      },
      (error: unknown) => {
        settled = true;
        throw error;
      },
    );
    // Observed here so that a rejection is never reported as unhandled while time is driven.
    watched.catch(() => undefined);
    await flushMicrotasks();
    while (!settled) {
      const due = this.nextDue();
      if (due === undefined) {
        throw new IntermissionError('INTERNAL', 'the promise waits on nothing virtual time can fire (deadlock)');
      }
      if (due > limit) {
        throw new IntermissionError('INTERNAL', `the promise is still pending after ${options.limitMs ?? 'a day'} ms`);
      }
      this.#fireNext();
      await flushMicrotasks();
    }
    return watched;
  }

  #fireNext(): void {
    this.#dropCancelled();
    const timer = this.#pop();
    if (timer === undefined) return;
    this.#live--;
    timer.cancelled = true;
    if (timer.due > this.clock.now()) this.clock.set(timer.due);
    timer.resolve();
  }

  #scheduleStep(): void {
    if (!this.#autoAdvance || this.#stepScheduled) return;
    this.#stepScheduled = true;
    const step = (): void => {
      this.#stepScheduled = false;
      if (!this.#autoAdvance || this.nextDue() === undefined) {
        this.#fastSteps = 0;
        return;
      }
      this.#fireNext();
      this.#scheduleStep();
    };
    if (this.#fastSteps++ < FAST_STEPS) {
      // A tick queued from a microtask runs once the microtask queue is empty: every continuation
      // of the timer just fired has run. Far cheaper than a turn of the event loop.
      queueMicrotask(() => process.nextTick(step));
      return;
    }
    // Now and then a full turn of the event loop, so that I/O and real timers are not starved. It
    // keeps the process alive while sleeps are pending, as real timers would: stop loops that sleep
    // forever (or turn jumping off) before the end of a test.
    this.#fastSteps = 0;
    setImmediate(step);
  }

  #dropCancelled(): void {
    while (this.#heap.length > 0 && this.#heap[0]?.cancelled === true) this.#pop();
  }

  #push(timer: Timer): void {
    const heap = this.#heap;
    heap.push(timer);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  #pop(): Timer | undefined {
    const heap = this.#heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length === 0 || last === undefined) return top;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let min = i;
      if (l < heap.length && before(heap[l]!, heap[min]!)) min = l;
      if (r < heap.length && before(heap[r]!, heap[min]!)) min = r;
      if (min === i) break;
      [heap[i], heap[min]] = [heap[min]!, heap[i]!];
      i = min;
    }
    return top;
  }
}

function before(a: Timer, b: Timer): boolean {
  return a.due < b.due || (a.due === b.due && a.seq < b.seq);
}

/** The reason a signal aborted with, as an Error (an AbortSignal's default reason already is one). */
function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  return reason instanceof Error ? reason : new Error(`aborted: ${String(reason)}`, { cause: reason });
}

/** Resolves after every microtask queued so far (and those they queue) has run. */
function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
