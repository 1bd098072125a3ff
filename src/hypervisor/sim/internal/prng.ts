import type { Distribution } from '../sim-config.js';

/**
 * A small seeded PRNG (mulberry32): the same seed gives the same sequence on every platform, which
 * is all a simulation needs (not cryptographic).
 */
export class Prng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A stream for one name under a seed: independent of the order other streams are drawn in. */
  static derive(seed: number, name: string): Prng {
    return new Prng(hash32(`${seed}\u0000${name}`));
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform in [min, max). */
  uniform(min: number, max: number): number {
    return min + (max - min) * this.next();
  }

  /** A draw from a triangular distribution: bounded, with its mass around `mode`. */
  sample(dist: Distribution): number {
    const { min, mode, max } = dist;
    if (max <= min) return min;
    const u = this.next();
    const split = (mode - min) / (max - min);
    return u < split
      ? min + Math.sqrt(u * (max - min) * (mode - min))
      : max - Math.sqrt((1 - u) * (max - min) * (max - mode));
  }
}

/** FNV-1a, 32 bits: turns a name into a seed. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
