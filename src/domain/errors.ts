/**
 * One error root for the whole project. Code matches on `code`, never on the message. `retryable`
 * says whether the same call may succeed later without a change of input.
 */
export const ERROR_CODES = {
  /** Input failed validation: a fleet file, a CLI flag, an API body. */
  INVALID_INPUT: { retryable: false, status: 400 },
  /** A named VM, host, set, event or rollout does not exist. */
  NOT_FOUND: { retryable: false, status: 404 },
  /** The request conflicts with current state (e.g. cancelling a started event). */
  CONFLICT: { retryable: false, status: 409 },
  /** NotBefore leaves less than the minimum notice for the event type. */
  NOTICE_TOO_SHORT: { retryable: false, status: 400 },
  /** An event's resources span more than one scope, or the caller is outside the scope. */
  SCOPE_VIOLATION: { retryable: false, status: 403 },
  /** A pause would exceed, or has exceeded, the pause budget. */
  PAUSE_BUDGET_EXCEEDED: { retryable: false, status: 409 },
  /** Missing or wrong operator token. */
  UNAUTHORIZED: { retryable: false, status: 401 },
  /** The store failed or holds data this version cannot read. */
  STORE_FAILURE: { retryable: true, status: 503 },
  /** A peer (agent, controller, hypervisor) did not answer in time. */
  TIMEOUT: { retryable: true, status: 504 },
  /** A peer could not be reached. */
  UNREACHABLE: { retryable: true, status: 503 },
  /** A request body over the listener's limit; refused before it is read. */
  PAYLOAD_TOO_LARGE: { retryable: false, status: 413 },
  /** Over a per-caller cap (e.g. live streams per token); retry once one is released. */
  TOO_MANY_REQUESTS: { retryable: true, status: 429 },
  /**
   * A controller's command carries a fencing epoch lower than one the agent has already seen: another
   * controller leads now, and this one was deposed and must stop acting (see the leader lease).
   */
  STALE_EPOCH: { retryable: false, status: 409 },
  /**
   * This controller replica stands by (another holds the leader lease): it serves reads, and refuses
   * writes, which only the leader makes. Retry against the leader, or here once this one leads.
   */
  NOT_LEADER: { retryable: true, status: 503 },
  /** A bug: an invariant of our own code did not hold. */
  INTERNAL: { retryable: false, status: 500 },
} as const satisfies Record<string, { retryable: boolean; status: number }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface IntermissionErrorOptions {
  readonly cause?: unknown;
  /** Structured facts for logs and API bodies (never secrets). */
  readonly details?: Readonly<Record<string, unknown>>;
  /** Overrides the code's default retryability. */
  readonly retryable?: boolean;
}

export class IntermissionError extends Error {
  override readonly name = 'IntermissionError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: IntermissionErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
    this.details = options.details ?? {};
  }

  /** HTTP status that an API maps this error to. */
  get status(): number {
    return ERROR_CODES[this.code].status;
  }

  toJSON(): { code: ErrorCode; message: string; retryable: boolean; details: Record<string, unknown> } {
    return { code: this.code, message: this.message, retryable: this.retryable, details: { ...this.details } };
  }
}

export function isIntermissionError(value: unknown, code?: ErrorCode): value is IntermissionError {
  return value instanceof IntermissionError && (code === undefined || value.code === code);
}

/** Normalises anything thrown into an IntermissionError, keeping the original as `cause`. */
export function coerceError(value: unknown): IntermissionError {
  if (value instanceof IntermissionError) return value;
  const message = value instanceof Error ? value.message : String(value);
  return new IntermissionError('INTERNAL', message, { cause: value });
}
