// The control API as the dashboard speaks it: the token (sessionStorage), JSON requests with the
// bearer token, and the live stream (EventSource, which cannot send headers: `?token=`).

const TOKEN_KEY = 'intermission.token';

/** An answer of the API that is not 2xx, with its stable error code. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

/**
 * The token given in the URL (`#token=…`, as `intermission up` prints it), moved to
 * sessionStorage and taken out of the address bar and the history.
 * @returns {string | null}
 */
export function takeTokenFromUrl() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const token = params.get('token');
  if (!token) return null;
  params.delete('token');
  const rest = params.toString();
  history.replaceState(null, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
  saveToken(token);
  return token;
}

/** @returns {string | null} */
export function loadToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** @param {string} token */
export function saveToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * Calls the API with the stored token. Throws {@link ApiError} for a non-2xx answer.
 * @template T
 * @param {string} path
 * @param {{ method?: string, body?: unknown, token?: string }} [options]
 * @returns {Promise<T>}
 */
export async function api(path, options = {}) {
  const token = options.token ?? loadToken() ?? '';
  /** @type {Record<string, string>} */
  const headers = { authorization: `Bearer ${token}`, accept: 'application/json' };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
      headers,
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    });
  } catch (error) {
    throw new ApiError(0, 'UNREACHABLE', `the control API does not answer (${String(error)})`);
  }
  const text = await response.text();
  /** @type {unknown} */
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const error = /** @type {{ error?: { code?: string, message?: string } } | null} */ (body)?.error;
    throw new ApiError(response.status, error?.code ?? 'HTTP_' + response.status, error?.message ?? text);
  }
  return /** @type {T} */ (body);
}

/**
 * @typedef {object} StreamHandlers
 * @property {(message: import('./types.js').LiveMessage) => void} message
 * @property {(state: import('./types.js').Connection) => void} state
 * @property {() => void} unauthorized
 */

/**
 * Follows GET /v1/stream. EventSource reconnects by itself (with Last-Event-ID); when it gives up
 * (the server answered without a stream, e.g. 401), this reconnects after a pause unless the token
 * was refused.
 * @param {StreamHandlers} handlers
 * @returns {() => void} closes the stream
 */
export function connectStream(handlers) {
  /** @type {EventSource | null} */
  let source = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let retry;
  let closed = false;
  const open = () => {
    if (closed) return;
    const token = loadToken() ?? '';
    handlers.state('connecting');
    source = new EventSource(`/v1/stream?token=${encodeURIComponent(token)}`);
    source.onopen = () => handlers.state('live');
    source.onmessage = (e) => {
      try {
        handlers.message(/** @type {import('./types.js').LiveMessage} */ (JSON.parse(String(e.data))));
      } catch (error) {
        console.error('bad live message', error);
      }
    };
    source.onerror = () => {
      if (!source || source.readyState !== EventSource.CLOSED) return handlers.state('reconnecting');
      handlers.state('offline');
      api('/v1/whoami').then(
        () => {
          retry = setTimeout(open, 2000);
        },
        (/** @type {unknown} */ error) => {
          if (error instanceof ApiError && error.status === 401) handlers.unauthorized();
          else retry = setTimeout(open, 2000);
        },
      );
    };
  };
  open();
  return () => {
    closed = true;
    clearTimeout(retry);
    source?.close();
  };
}
