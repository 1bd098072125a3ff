import type { IntermissionError } from '../domain/index.js';
import { type ErrorCode } from '../domain/index.js';

/** Exit codes, stable for scripts. */
export const EXIT_CODES = {
  ok: 0,
  failure: 1,
  invalidInput: 2,
  notFound: 3,
  conflict: 4,
  unauthorized: 5,
  unavailable: 6,
  /** A followed rollout halted or was cancelled. */
  rolloutFailed: 7,
} as const;

const BY_CODE: Record<ErrorCode, number> = {
  INVALID_INPUT: EXIT_CODES.invalidInput,
  NOT_FOUND: EXIT_CODES.notFound,
  CONFLICT: EXIT_CODES.conflict,
  NOTICE_TOO_SHORT: EXIT_CODES.conflict,
  SCOPE_VIOLATION: EXIT_CODES.conflict,
  PAUSE_BUDGET_EXCEEDED: EXIT_CODES.conflict,
  UNAUTHORIZED: EXIT_CODES.unauthorized,
  STORE_FAILURE: EXIT_CODES.unavailable,
  TIMEOUT: EXIT_CODES.unavailable,
  UNREACHABLE: EXIT_CODES.unavailable,
  PAYLOAD_TOO_LARGE: EXIT_CODES.invalidInput,
  TOO_MANY_REQUESTS: EXIT_CODES.unavailable,
  STALE_EPOCH: EXIT_CODES.conflict,
  NOT_LEADER: EXIT_CODES.unavailable,
  INTERNAL: EXIT_CODES.failure,
};

export function exitCodeFor(error: IntermissionError): number {
  return BY_CODE[error.code];
}

/** Thrown by a command that wants a particular exit code without an error message. */
export class ExitError extends Error {
  readonly exitCode: number;
  constructor(exitCode: number) {
    super(`exit ${exitCode}`);
    this.exitCode = exitCode;
  }
}

/** Where commands write: stdout for results, stderr for diagnostics. Swappable in tests. */
export interface Output {
  out(text: string): void;
  err(text: string): void;
}

export const processOutput: Output = {
  out: (text) => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => void process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
};

/** A fixed-width table for people. */
export function table(rows: readonly (readonly string[])[], header: readonly string[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
