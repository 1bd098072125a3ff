import { setFlagsFromString } from 'node:v8';
import { IntermissionError } from '../domain/index.js';

/**
 * How far the JavaScript heap may grow past its live data before V8 runs a full collection, in
 * percent: 50 lets a controller holding 400 MiB of live state (a 10,000-host region) reach about
 * 600 MiB before it collects. Left to itself V8 lets a busy process grow its heap to up to 4x its
 * live data, because collecting less often is cheaper, which puts a region's controller near 2 GiB.
 * A control plane shares its host with other services, so Intermission trades some CPU (about 15 %
 * more time in a region-sized rollout, see bench/rollout.ts) for a footprint close to its data, the
 * way GOGC bounds a Go controller's heap.
 */
export const DEFAULT_HEAP_GROWTH_PERCENT = 50;

/** The environment variable that overrides {@link DEFAULT_HEAP_GROWTH_PERCENT}; 0 leaves V8's own policy. */
export const HEAP_GROWTH_ENV = 'INTERMISSION_HEAP_GROWTH_PERCENT';

/**
 * Reads the heap growth setting: {@link HEAP_GROWTH_ENV} when set, else the default. Throws
 * INVALID_INPUT for anything but a whole number from 0 to 1000.
 */
export function heapGrowthPercent(env: Readonly<Record<string, string | undefined>> = process.env): number {
  const raw = env[HEAP_GROWTH_ENV];
  if (raw === undefined || raw.trim() === '') return DEFAULT_HEAP_GROWTH_PERCENT;
  const text = raw.trim();
  const value = /^\d{1,4}$/.test(text) ? Number(text) : Number.NaN;
  if (!(value >= 0 && value <= 1000)) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `${HEAP_GROWTH_ENV} wants a whole number of percent from 0 (V8's own policy) to 1000, got ${JSON.stringify(raw)}`,
    );
  }
  return value;
}

/**
 * Applies a heap growth setting to this process (V8 reads it at each full collection, so it takes
 * effect from the next one). 0 leaves V8's adaptive policy in place. Returns the value applied.
 */
export function applyHeapGrowth(percent: number): number {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
  return percent;
}
