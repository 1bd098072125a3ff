import { IntermissionError, type ErrorCode } from '../domain/errors.js';

/**
 * The one table from a QMP (or guest agent) `error.class` to our error codes. QEMU has folded
 * almost every error into `GenericError` since 1.2, so the class says little: a `GenericError`
 * may be a bad argument or a command refused in the current state (`migrate-incoming` without
 * `-incoming defer`). Both are answers of a live peer that a retry of the same call will not
 * change, hence `CONFLICT`. Never match on `desc`: it is for humans and changes between releases.
 */
export const QMP_ERROR_CLASSES = Object.freeze({
  /** Anything QEMU did not give a more specific class. */
  GenericError: 'CONFLICT',
  /** The command does not exist in this QEMU (or capabilities negotiation is in the wrong state). */
  CommandNotFound: 'NOT_FOUND',
  /** The named device exists but is not active (e.g. a balloon without a driver in the guest). */
  DeviceNotActive: 'CONFLICT',
  /** The named device does not exist. */
  DeviceNotFound: 'NOT_FOUND',
  /** KVM lacks a capability the command needs: the host, not the call, must change. */
  KVMMissingCap: 'CONFLICT',
} as const satisfies Record<string, ErrorCode>);

/** An `error.class` that QEMU documents; others still map (to {@link UNKNOWN_QMP_ERROR_CLASS_CODE}). */
export type QmpErrorClass = keyof typeof QMP_ERROR_CLASSES;

/** The code of an `error.class` this table does not know (a newer QEMU): treated like GenericError. */
export const UNKNOWN_QMP_ERROR_CLASS_CODE: ErrorCode = 'CONFLICT';

/**
 * Why a QMP or guest-agent call failed, in `error.details.reason`. Stable: match on it (with
 * `code`) when the code alone is not enough, e.g. to tell a closed client from a lost connection.
 */
export const QMP_FAILURE_REASONS = Object.freeze([
  /** The peer answered the command with an error; `details.qmpClass` / `qmpDesc` hold it. */
  'COMMAND_ERROR',
  /** The socket could not be opened (`details.errno`: ENOENT, ECONNREFUSED, EACCES, ...). */
  'CONNECT_FAILED',
  /** No answer in time. For a command, the peer may still carry it out (`details.outcome`). */
  'TIMEOUT',
  /** The connection ended or broke while the call was in flight. */
  'CONNECTION_LOST',
  /** The client was closed by its owner before or while the call ran. */
  'CLOSED',
  /** The caller's AbortSignal fired. */
  'ABORTED',
  /** The peer sent something that is not the protocol we speak (or a reply of the wrong shape). */
  'PROTOCOL',
  /** An event subscriber stopped reading and its buffer filled up. */
  'OVERFLOW',
] as const);

/** See {@link QMP_FAILURE_REASONS}. */
export type QmpFailureReason = (typeof QMP_FAILURE_REASONS)[number];

/**
 * Whether a command that failed may have taken effect in QEMU: `not-sent` (it did not leave this
 * process), `rejected` (the peer refused it), `executed` (the peer carried it out but its answer
 * was not what we expected), `unknown` (no answer: after a timeout, an abort or a lost connection,
 * QEMU may still carry it out).
 */
export type QmpCommandOutcome = 'not-sent' | 'rejected' | 'executed' | 'unknown';

/** The structured facts every QMP/guest-agent failure carries in `IntermissionError.details`. */
export interface QmpFailureDetails {
  readonly reason: QmpFailureReason;
  /** `qmp` for the monitor, `guest-agent` for qemu-ga. */
  readonly peer: 'qmp' | 'guest-agent';
  /** The socket path. */
  readonly path?: string;
  readonly command?: string;
  readonly id?: number;
  /** Whether the command may have run: `unknown` after a timeout or a lost connection. */
  readonly outcome?: QmpCommandOutcome;
  /** The QMP `error.class`, verbatim. */
  readonly qmpClass?: string;
  /** The QMP `error.desc`, verbatim (for humans and logs only). */
  readonly qmpDesc?: string;
  /** Which step of a call failed: `connect`, `greeting`, `capabilities`, `sync`, `command`. */
  readonly phase?: string;
  readonly timeoutMs?: number;
  /** The errno of a socket error (ENOENT, ECONNREFUSED, EPIPE, ...). */
  readonly errno?: string;
}

/** Options of {@link qmpFailure}. */
export interface QmpFailureOptions {
  readonly cause?: unknown;
  readonly retryable?: boolean;
}

/** Builds an IntermissionError for a QMP or guest-agent failure with its stable `details.reason`. */
export function qmpFailure(
  code: ErrorCode,
  message: string,
  details: QmpFailureDetails,
  options: QmpFailureOptions = {},
): IntermissionError {
  const clean = Object.fromEntries(Object.entries(details).filter(([, value]) => value !== undefined));
  return new IntermissionError(code, message, { ...options, details: clean });
}

/** The `error` member of a QMP error reply. */
export interface QmpErrorBody {
  readonly class: string;
  readonly desc: string;
}

/** Where a QMP error reply came from, for the message and the details. */
export interface QmpErrorContext {
  readonly peer: 'qmp' | 'guest-agent';
  readonly command: string;
  readonly path?: string;
  readonly id?: number;
}

/** Maps an error reply (`{"error": {"class", "desc"}}`) to an IntermissionError: the one place. */
export function mapQmpError(error: QmpErrorBody, context: QmpErrorContext): IntermissionError {
  const code: ErrorCode = Object.hasOwn(QMP_ERROR_CLASSES, error.class)
    ? QMP_ERROR_CLASSES[error.class as QmpErrorClass]
    : UNKNOWN_QMP_ERROR_CLASS_CODE;
  const who = context.peer === 'qmp' ? 'QEMU' : 'the guest agent';
  return qmpFailure(code, `${who} refused ${context.command}: ${error.desc} (${error.class})`, {
    reason: 'COMMAND_ERROR',
    peer: context.peer,
    path: context.path,
    command: context.command,
    id: context.id,
    outcome: 'rejected',
    qmpClass: error.class,
    qmpDesc: error.desc,
  });
}

/** The errno code (ENOENT, ECONNREFUSED, ...) of a Node system error, if any. */
export function errnoOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined;
  return typeof error.code === 'string' ? error.code : undefined;
}

/**
 * The error for a call whose AbortSignal fired. An IntermissionError given as the abort reason is
 * passed through, so a caller chooses its own code; anything else becomes `TIMEOUT` (retryable:
 * the caller gave up waiting, nothing says the peer is broken) with reason `ABORTED` and the
 * original reason as `cause`.
 */
export function abortFailure(signal: AbortSignal, details: Omit<QmpFailureDetails, 'reason'>): IntermissionError {
  const reason: unknown = signal.reason;
  if (reason instanceof IntermissionError) return reason;
  const what = details.command ?? details.phase ?? 'the call';
  return qmpFailure(
    'TIMEOUT',
    `${what} was aborted${reason instanceof Error ? `: ${reason.message}` : ''}`,
    {
      ...details,
      reason: 'ABORTED',
    },
    { cause: reason },
  );
}
