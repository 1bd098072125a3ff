import type { ManualClock, Timer, Timers } from '../../src/domain/index.js';

interface Pending {
  readonly at: number;
  readonly seq: number;
  readonly callback: () => void;
  cancelled: boolean;
}

/**
 * {@link Timers} in virtual time over a {@link ManualClock}: nothing fires until the test runs time
 * forward with {@link runUntil}, which fires every timer in order of its due time, moving the clock
 * to exactly that time first, and lets the work each one starts settle before the next.
 */
export class VirtualTimers implements Timers {
  readonly #clock: ManualClock;
  #pending: Pending[] = [];
  #seq = 0;
  /** How many timers fired so far. */
  fired = 0;

  constructor(clock: ManualClock) {
    this.#clock = clock;
  }

  after(ms: number, callback: () => void): Timer {
    const timer: Pending = { at: this.#clock.now() + Math.max(0, ms), seq: this.#seq++, callback, cancelled: false };
    this.#pending.push(timer);
    return {
      cancel: () => {
        timer.cancelled = true;
      },
    };
  }

  /** Live timers, soonest first. */
  pending(): readonly { at: number }[] {
    return this.#live();
  }

  /**
   * Fires, in order, every timer due at or before `until` (including those that fired timers set),
   * awaiting `settle` after each; then moves the clock to `until`.
   */
  async runUntil(until: number, settle: () => Promise<void>): Promise<void> {
    for (let guard = 0; ; guard++) {
      if (guard > 1_000_000) throw new Error('timers keep firing without virtual time moving on');
      const next = this.#live()[0];
      if (next === undefined || next.at > until) break;
      next.cancelled = true;
      if (next.at > this.#clock.now()) this.#clock.set(next.at);
      this.fired++;
      next.callback();
      await settle();
    }
    if (until > this.#clock.now()) this.#clock.set(until);
  }

  #live(): Pending[] {
    this.#pending = this.#pending.filter((t) => !t.cancelled);
    return [...this.#pending].sort((a, b) => a.at - b.at || a.seq - b.seq);
  }
}
