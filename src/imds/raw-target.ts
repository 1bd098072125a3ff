import { MetadataRequestError } from './errors.js';

/**
 * The request line as it arrived on the socket, before any URL parsing: only Node's
 * `IncomingMessage` still has it (`method`, `url`, `httpVersion`). The `Request` the app sees is
 * already normalised (`/a/../b` is `/b`, an absolute-form target is origin-form), so these checks
 * cannot be made there.
 */
export interface RawRequestLine {
  readonly method: string;
  /** The request-target exactly as sent, e.g. `/metadata/scheduledevents?api-version=2020-07-01`. */
  readonly target: string;
  /** `1.1`, `1.0`, or whatever digits the client put after `HTTP/`. */
  readonly httpVersion: string;
}

/** HTTP versions a metadata client speaks over HTTP/1 framing. */
const HTTP_VERSIONS: ReadonlySet<string> = new Set(['1.0', '1.1']);

/**
 * Judges a request line before the app sees it, as IMDS answers (IMDS-doc "Errors and debugging":
 * 400 for a malformed request, 404 when the element does not exist):
 *
 * - 400 `MALFORMED_REQUEST` for anything but HTTP/1.0 or HTTP/1.1 (an `HTTP/2.0` request line over
 *   HTTP/1 framing), for a target that is not origin-form (absolute-form `http://host/…` is what a
 *   client sends to a proxy; `*`, `host:port`), and for a `#` anywhere (a fragment is never sent,
 *   so a query behind it is no query).
 * - 404 `NOT_FOUND` for a path that is not literally a metadata path: percent-encoding (`%65`,
 *   `%2e%2e`), dot segments (`.`, `..`) and backslashes. No IMDS path needs any of them, and
 *   normalising them is how `/metadata/x/../scheduledevents` came to be served.
 *
 * The query keeps its percent-encoding (a nonce may be encoded); {@link parseQuery} decodes it.
 *
 * @returns the refusal, or undefined when the app may answer
 */
export function rawTargetVerdict(line: RawRequestLine): MetadataRequestError | undefined {
  const { target } = line;
  if (!HTTP_VERSIONS.has(line.httpVersion)) {
    return new MetadataRequestError('MALFORMED_REQUEST', { detail: `HTTP/${line.httpVersion} request line` });
  }
  if (!target.startsWith('/')) {
    return new MetadataRequestError('MALFORMED_REQUEST', {
      detail: `${line.method} ${target}: not an origin-form target`,
    });
  }
  if (target.includes('#')) {
    return new MetadataRequestError('MALFORMED_REQUEST', { detail: `${target}: a fragment in the request target` });
  }
  const queryAt = target.indexOf('?');
  const path = queryAt === -1 ? target : target.slice(0, queryAt);
  if (path.includes('%') || path.includes('\\')) {
    return new MetadataRequestError('NOT_FOUND', { detail: `${path}: not a literal metadata path` });
  }
  for (const segment of path.split('/')) {
    if (segment === '.' || segment === '..') {
      return new MetadataRequestError('NOT_FOUND', { detail: `${path}: dot segment` });
    }
  }
  return undefined;
}
