/** Small helpers shared by the QMP tests. */
import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import { isIntermissionError, type ErrorCode, type IntermissionError } from '../../src/domain/index.js';

/** A promise with its resolve/reject exposed. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  readonly resolve: (value: T) => void;
  readonly reject: (error: unknown) => void;
}

/** See {@link Deferred}. */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Rejects if `promise` does not settle within `ms`: keeps a missing event from hanging a test. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Asserts that `promise` rejects with an IntermissionError of `code` whose details include
 * `details`; returns the error for further checks.
 */
export async function rejectsWith(
  promise: Promise<unknown>,
  code: ErrorCode,
  details: Readonly<Record<string, unknown>> = {},
): Promise<IntermissionError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  assert.ok(caught !== undefined, `expected a rejection with ${code}`);
  assert.ok(
    isIntermissionError(caught),
    `expected an IntermissionError, got ${caught instanceof Error ? caught.stack : JSON.stringify(caught)}`,
  );
  assert.equal(caught.code, code, caught.message);
  for (const [key, value] of Object.entries(details)) {
    assert.deepEqual(caught.details[key], value, `details.${key} of "${caught.message}"`);
  }
  return caught;
}

/** Collects the messages published on a diagnostics channel until `stop()`. */
export function recordChannel(name: string): { readonly messages: unknown[]; stop(): void } {
  const messages: unknown[] = [];
  const listener = (message: unknown): void => {
    messages.push(message);
  };
  diagnosticsChannel.subscribe(name, listener);
  return { messages, stop: () => diagnosticsChannel.unsubscribe(name, listener) };
}

/** Narrows an unknown diagnostics message to a record, for property checks. */
export function asRecord(value: unknown): Record<string, unknown> {
  assert.ok(typeof value === 'object' && value !== null, 'expected an object');
  return value as Record<string, unknown>;
}
