import { IntermissionError } from '../../domain/index.js';

/** A token bucket's settings: the sustained rate and how many requests may come at once. */
export interface TokenBucketSettings {
  readonly requestsPerSecond: number;
  readonly burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * One token bucket per key, refilled from an injected clock (so tests drive time instead of
 * sleeping). A key that sends at or below the rate is never refused; a burst of up to `burst`
 * requests passes at once.
 */
export class TokenBuckets {
  readonly #perMs: number;
  readonly #burst: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(settings: TokenBucketSettings) {
    const { requestsPerSecond, burst } = settings;
    if (!Number.isFinite(requestsPerSecond) || requestsPerSecond <= 0) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `rateLimit.requestsPerSecond must be above 0, got ${requestsPerSecond}`,
      );
    }
    if (!Number.isFinite(burst) || burst < 1) {
      throw new IntermissionError('INVALID_INPUT', `rateLimit.burst must be 1 or more, got ${burst}`);
    }
    this.#perMs = requestsPerSecond / 1000;
    this.#burst = burst;
  }

  /**
   * Takes a token for `key` at time `now`.
   *
   * @returns 0 when the request may pass, else the milliseconds until a token is available
   */
  take(key: string, now: number): number {
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: this.#burst, at: now };
      this.#buckets.set(key, bucket);
    } else if (now > bucket.at) {
      bucket.tokens = Math.min(this.#burst, bucket.tokens + (now - bucket.at) * this.#perMs);
      bucket.at = now;
    } else if (now < bucket.at) {
      // The clock went back: restart the refill from here rather than waiting for it to catch up.
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - bucket.tokens) / this.#perMs);
  }
}
