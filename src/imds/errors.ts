/**
 * Why the metadata service refused a request. Each code carries the HTTP status and the exact
 * `{"error": …}` text a guest receives (spec 1.5); code matches on `code`, never on the text. Texts
 * marked [rec] in the spec are our choice where Azure's wording is undocumented.
 */
export const METADATA_ERRORS = {
  /** No `Metadata: true` header: the guard against SSRF through the guest (Azure's exact text). */
  METADATA_HEADER_REQUIRED: {
    status: 400,
    retryable: false,
    text: 'Bad request: . Required metadata header not specified',
  },
  /** The request went through a proxy: IMDS refuses anything carrying `X-Forwarded-For`. [rec] */
  FORWARDED_REQUEST: {
    status: 400,
    retryable: false,
    text: 'Bad request. Requests with an X-Forwarded-For header are not accepted',
  },
  /** The same query parameter twice (IMDS-doc: such requests are rejected). [rec] */
  DUPLICATE_QUERY_PARAMETER: {
    status: 400,
    retryable: false,
    text: 'Bad request. A query parameter is given more than once',
  },
  /** A query string that cannot be percent-decoded. [rec] */
  MALFORMED_QUERY: { status: 400, retryable: false, text: 'Bad request. The query string is malformed' },
  /** Missing or unknown `api-version`; the body adds `newest-versions` (Azure's text). */
  INVALID_API_VERSION: {
    status: 400,
    retryable: false,
    text: 'Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds',
  },
  /** `format` other than `json` or `text`. [rec] */
  INVALID_FORMAT: { status: 400, retryable: false, text: 'Bad request. format must be json or text' },
  /** A leaf read without `format=text` (IMDS-doc: leaves need text). [rec] */
  LEAF_REQUIRES_TEXT: {
    status: 400,
    retryable: false,
    text: 'Bad request. A leaf value can only be read with format=text',
  },
  /** `format=text` on an object or array. [rec] */
  TEXT_REQUIRES_LEAF: {
    status: 400,
    retryable: false,
    text: 'Bad request. format=text is only supported for a leaf value',
  },
  /**
   * A `nonce` on `/metadata/attested/document` over 32 characters or with characters other than
   * letters, digits and `-` (SWAGGER: "up to 32 random alphanumeric characters"). [rec]
   */
  INVALID_NONCE: {
    status: 400,
    retryable: false,
    text: 'Bad request. nonce must be up to 32 letters or digits',
  },
  /** A POST body that is not `{"StartRequests":[{"EventId":"…"}]}`. [rec] */
  MALFORMED_BODY: {
    status: 400,
    retryable: false,
    text: 'Bad request. The body must be JSON of the form {"StartRequests":[{"EventId":"<id>"}]}',
  },
  /**
   * A request line no HTTP/1 metadata client sends: a version other than 1.0/1.1, a target that is
   * not origin-form (absolute-form is for proxies), or a `#` fragment. IMDS-doc: 400 for a malformed
   * request. [rec]
   */
  MALFORMED_REQUEST: { status: 400, retryable: false, text: 'Bad request. The request line is malformed' },
  /** No such path, or no such key or index under `/metadata/instance`. [rec] */
  NOT_FOUND: { status: 404, retryable: false, text: 'Not found' },
  /** A method the endpoint does not serve; the response lists the allowed ones in `Allow`. [rec] */
  METHOD_NOT_ALLOWED: { status: 405, retryable: false, text: 'Method not allowed' },
  /** A body over the bound; keeps a guest from making the service buffer without limit. [rec] */
  PAYLOAD_TOO_LARGE: { status: 413, retryable: false, text: 'Request body too large' },
  /** Over the per-VM rate (about 5 req/s); WALinuxAgent matches on the status only. [rec] */
  TOO_MANY_REQUESTS: { status: 429, retryable: true, text: 'Too many requests' },
} as const satisfies Record<string, { status: number; retryable: boolean; text: string }>;

/** The stable code of a refused request. */
export type MetadataErrorCode = keyof typeof METADATA_ERRORS;

/** Everything but the code of a {@link MetadataRequestError}. */
export interface MetadataRequestErrorOptions {
  readonly cause?: unknown;
  /** Extra response headers, e.g. `Allow` for a 405 or `Retry-After` for a 429. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Extra keys of the JSON body after `error`, e.g. `newest-versions`. */
  readonly body?: Readonly<Record<string, unknown>>;
  /** What went wrong, for logs only: never sent to the guest. */
  readonly detail?: string;
}

/**
 * A request the metadata service refuses. Thrown by the request checks and turned into a response
 * by the app's one error handler. The message is the text the guest sees.
 */
export class MetadataRequestError extends Error {
  override readonly name = 'MetadataRequestError';
  readonly code: MetadataErrorCode;
  readonly status: number;
  readonly retryable: boolean;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Readonly<Record<string, unknown>>;
  readonly detail: string | undefined;

  constructor(code: MetadataErrorCode, options: MetadataRequestErrorOptions = {}) {
    const spec = METADATA_ERRORS[code];
    super(spec.text, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = spec.status;
    this.retryable = spec.retryable;
    this.headers = options.headers ?? {};
    this.body = options.body ?? {};
    this.detail = options.detail;
  }

  /** The compact JSON body: `{"error":"…"}` followed by any extra keys. */
  toJSON(): Record<string, unknown> {
    return { error: this.message, ...this.body };
  }
}

/** True when `value` is a refused request, optionally with the given code. */
export function isMetadataRequestError(value: unknown, code?: MetadataErrorCode): value is MetadataRequestError {
  return value instanceof MetadataRequestError && (code === undefined || value.code === code);
}
