// The control API as the dashboard speaks it: a session held in an HttpOnly cookie (the page never
// stores a token), JSON requests with the CSRF header, and the live stream (EventSource, which sends
// the cookie of its own origin).

/** The header every request carries: a page of another origin cannot send it without a preflight. */
const CSRF = { 'x-intermission-csrf': '1' };

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
 * The one-time sign-in code given in the URL (`#code=…`, as `intermission dashboard` and `up` print
 * it), taken out of the address bar and the history at once: it works only once anyway.
 * @returns {string | null}
 */
export function takeCodeFromUrl() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const code = params.get('code');
  if (!code) return null;
  params.delete('code');
  const rest = params.toString();
  history.replaceState(null, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
  return code;
}

/**
 * Opens a session (an HttpOnly, SameSite=Strict cookie set by the server) with a one-time code or an
 * operator token typed into the page; the token is not kept anywhere by the page.
 * @param {{ code: string } | { token: string }} proof
 * @returns {Promise<import('./types.js').Principal>}
 */
export async function startSession(proof) {
  /** @type {{ principal: import('./types.js').Principal }} */
  const res = await api('/v1/sessions', { method: 'POST', body: proof });
  return res.principal;
}

/** Ends the session (sign out); the server clears the cookie. */
export async function endSession() {
  await api('/v1/sessions', { method: 'DELETE' });
}

/**
 * Calls the API with the session cookie. Throws {@link ApiError} for a non-2xx answer.
 * @template T
 * @param {string} path
 * @param {{ method?: string, body?: unknown }} [options]
 * @returns {Promise<T>}
 */
export async function api(path, options = {}) {
  /** @type {Record<string, string>} */
  const headers = { ...CSRF, accept: 'application/json' };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
      headers,
      credentials: 'same-origin',
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
 * (the server answered without a stream, e.g. 401), this reconnects after a pause unless the session
 * was refused (ended, expired, or its token revoked).
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
    handlers.state('connecting');
    source = new EventSource('/v1/stream');
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
