import { IntermissionError, coerceError, type ErrorCode } from '../domain/index.js';

/**
 * Why a driver call failed, finer than the project's error code and just as stable: every driver
 * error carries one in `details.reason`, and callers match on `code` and then on this, never on the
 * message. Each reason maps to one code of `ERROR_CODES`, so that no new code is needed.
 */
export const DRIVER_ERROR_REASONS = {
  /** No VM of that name on the host. */
  VM_NOT_FOUND: 'NOT_FOUND',
  /** The driver (capability flag) or the VM (shared RAM, devices) cannot do this. */
  UNSUPPORTED: 'CONFLICT',
  /** The VM's state does not allow the call (resume of a stopped VM, guest agent of a paused one). */
  WRONG_STATE: 'CONFLICT',
  /** Another operation holds the VM or host (a swap under way, an update being applied). */
  BUSY: 'CONFLICT',
  /** The hypervisor refused or failed the operation; the VM is as before (or rolled back). Retryable. */
  OPERATION_FAILED: 'CONFLICT',
  /** The operation did not complete by its deadline (or the driver's default timeout). */
  DEADLINE_EXCEEDED: 'TIMEOUT',
  /** The caller's signal aborted the wait. */
  ABORTED: 'TIMEOUT',
  /** The VM's process died: the VM is `failed` until restarted. Not retryable. */
  VM_FAILED: 'UNREACHABLE',
  /** The guest agent does not answer (none installed, or the guest is stuck). */
  GUEST_AGENT_UNREACHABLE: 'UNREACHABLE',
  /** `close()` was called on the driver. Not retryable. */
  DRIVER_CLOSED: 'UNREACHABLE',
} as const satisfies Record<string, ErrorCode>;
/** A key of {@link DRIVER_ERROR_REASONS}. */
export type DriverErrorReason = keyof typeof DRIVER_ERROR_REASONS;

/** Retryability that differs from the default of the reason's code. */
const RETRYABLE_OVERRIDES: Partial<Record<DriverErrorReason, boolean>> = {
  OPERATION_FAILED: true,
  BUSY: true,
  VM_FAILED: false,
  DRIVER_CLOSED: false,
};

/** Facts attached to a driver error, kept in `details` next to `reason`. */
export interface DriverErrorDetails {
  /** The driver method, e.g. `pause`. */
  readonly operation: string;
  readonly host: string;
  readonly vm?: string;
  /** Anything else worth logging (`rolledBack`, `deadline`, `fault`, `state`…); never secrets. */
  readonly [key: string]: unknown;
}

/** Options of {@link driverError}. */
export interface DriverErrorOptions {
  readonly reason: DriverErrorReason;
  /** Actionable text for the operator. */
  readonly message: string;
  readonly details: DriverErrorDetails;
  readonly cause?: unknown;
  /** Overrides the reason's retryability. */
  readonly retryable?: boolean;
}

/** Builds a driver error: the reason's code, `details.reason`, and the reason's retryability. */
export function driverError(options: DriverErrorOptions): IntermissionError {
  const code = DRIVER_ERROR_REASONS[options.reason];
  const retryable = options.retryable ?? RETRYABLE_OVERRIDES[options.reason];
  return new IntermissionError(code, options.message, {
    cause: options.cause,
    details: { ...options.details, reason: options.reason },
    ...(retryable === undefined ? {} : { retryable }),
  });
}

/** The driver reason of an error, or undefined when it is not a driver error. */
export function driverErrorReason(error: unknown): DriverErrorReason | undefined {
  if (!(error instanceof IntermissionError)) return undefined;
  const reason = error.details.reason;
  return typeof reason === 'string' && Object.hasOwn(DRIVER_ERROR_REASONS, reason)
    ? (reason as DriverErrorReason)
    : undefined;
}

/** Whether `error` is a driver error, optionally of one reason. */
export function isDriverError(error: unknown, reason?: DriverErrorReason): error is IntermissionError {
  const actual = driverErrorReason(error);
  return actual !== undefined && (reason === undefined || actual === reason);
}

/**
 * The same error with more details (e.g. `rolledBack` added on the way out of a swap). Anything that
 * is not an `IntermissionError` is normalised first.
 */
export function withDetails(error: unknown, extra: Readonly<Record<string, unknown>>): IntermissionError {
  const base = coerceError(error);
  const copy = new IntermissionError(base.code, base.message, {
    cause: base === error ? base.cause : error,
    details: { ...base.details, ...extra },
    retryable: base.retryable,
  });
  if (base.stack !== undefined) copy.stack = base.stack;
  return copy;
}

/**
 * A driver error about one call of a driver, with the operation, host and VM in its details: what
 * every driver reports the same way.
 */
export function operationError(options: {
  readonly host: string;
  readonly call: { readonly operation: string; readonly vm: string | undefined };
  readonly reason: DriverErrorReason;
  readonly message: string;
  readonly extra?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
  readonly retryable?: boolean;
}): IntermissionError {
  const { host, call, reason, message, extra = {}, cause, retryable } = options;
  return driverError({
    reason,
    message,
    details: { operation: call.operation, host, ...(call.vm === undefined ? {} : { vm: call.vm }), ...extra },
    cause,
    ...(retryable === undefined ? {} : { retryable }),
  });
}
