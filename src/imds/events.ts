import type { IntermissionError, ScopeId } from '../domain/index.js';
import type { MetadataErrorCode } from './errors.js';

/**
 * What the metadata service reports as it serves guests. Loggers and the dashboard subscribe
 * through {@link MetadataEventListener}; the service imports neither.
 */
export interface MetadataEventMap {
  /** A VM approved events it can see. `alreadyApproved` were approved or started before: a no-op. */
  'imds:approve': {
    readonly vm: string;
    readonly approved: readonly string[];
    readonly alreadyApproved: readonly string[];
  };
  /**
   * A VM approved ids it cannot see (unknown, removed, or another scope's). Answered 200 all the
   * same, because clients retry every non-2xx; logged so that an operator can tell.
   */
  'imds:approve:unknown': { readonly vm: string; readonly eventIds: readonly string[] };
  /**
   * Scheduled events were enabled for a scope: on its first request, or again after it was idle for
   * `disableAfterIdleMs` (then `reset` is true and the shown incarnation starts again at 1).
   */
  'imds:enabled': { readonly vm: string; readonly scope: ScopeId; readonly reset: boolean; readonly delayMs: number };
  /** A request was refused with a 4xx (429 included). */
  'imds:rejected': {
    readonly vm: string;
    readonly method: string;
    readonly path: string;
    readonly status: number;
    readonly code: MetadataErrorCode;
    readonly detail: string | undefined;
  };
  /** Every answered request (200, 304, 4xx, 5xx), once, after its response is built. */
  'imds:response': { readonly vm: string; readonly method: string; readonly path: string; readonly status: number };
  /** A request failed on our side (5xx), or the backend refused it with one of our error codes. */
  'imds:error': {
    readonly vm: string;
    readonly method: string;
    readonly path: string;
    readonly error: IntermissionError;
  };
}

/** Receives every {@link MetadataEventMap} event. Exceptions it throws are swallowed. */
export type MetadataEventListener = <K extends keyof MetadataEventMap>(name: K, payload: MetadataEventMap[K]) => void;

/**
 * A listener that passes on only `imds:error` (a failure on our side, answered to the guest with a
 * generic body): the detail the guest never sees, for the process's log.
 */
export function onMetadataError(report: (failure: MetadataEventMap['imds:error']) => void): MetadataEventListener {
  return (name, payload) => {
    if (name === 'imds:error') report(payload as MetadataEventMap['imds:error']);
  };
}
