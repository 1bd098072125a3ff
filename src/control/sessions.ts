import { createHash, randomBytes } from 'node:crypto';
import { IntermissionError } from '../domain/index.js';
import type { TokenAuthority, TokenHolder } from './tokens.js';

/**
 * Dashboard sign-in without a long-lived token in a URL, a shell history or a log: an operator
 * asks for a one-time sign-in code (`intermission dashboard`, or the link `up` prints), the page
 * exchanges it (POST /v1/sessions) for a session held in an HttpOnly, SameSite=Strict cookie. The
 * code works once and for {@link SIGN_IN_CODE_TTL_MS}; the session lasts {@link SESSION_TTL_MS} at
 * most, never past its operator token, and ends when that token is revoked. Kept in memory: a
 * restart signs everyone out.
 */

/** How long a sign-in code may wait to be used: long enough to click a link, short enough to die in a log. */
export const SIGN_IN_CODE_TTL_MS = 5 * 60 * 1000;
/** How long a dashboard session lasts (capped by its token's expiry). */
export const SESSION_TTL_MS = 12 * 60 * 60 * 1000;
/** The cookie that carries the session. */
export const SESSION_COOKIE = 'im_session';
/** Codes and sessions kept at most: a caller cannot grow the server's memory by asking again and again. */
export const MAX_PENDING = 1000;

interface Pending {
  readonly name: string;
  readonly expiresAt: number;
}

const hash = (secret: string): string => createHash('sha256').update(secret).digest('hex');

/** A session as {@link DashboardSessions.start} returns it: the cookie value is shown once. */
export interface StartedSession {
  readonly id: string;
  readonly holder: TokenHolder;
  readonly expiresAt: number;
}

/** One-time sign-in codes and the sessions they open, tied to the tokens that created them. */
export class DashboardSessions {
  readonly #tokens: TokenAuthority;
  readonly #now: () => number;
  readonly #codes = new Map<string, Pending>();
  readonly #sessions = new Map<string, Pending>();
  readonly #endListeners = new Set<(sessionHash: string) => void>();

  constructor(options: { tokens: TokenAuthority; now?: () => number }) {
    this.#tokens = options.tokens;
    this.#now = options.now ?? (() => Date.now());
    options.tokens.onRevoke((name) => {
      for (const [key, s] of this.#sessions) if (s.name === name) this.#end(key);
      for (const [key, c] of this.#codes) if (c.name === name) this.#codes.delete(key);
    });
  }

  #sweep(): void {
    const now = this.#now();
    for (const [key, c] of this.#codes) if (c.expiresAt <= now) this.#codes.delete(key);
    for (const [key, s] of this.#sessions) if (s.expiresAt <= now) this.#end(key);
  }

  #end(key: string): void {
    if (!this.#sessions.delete(key)) return;
    for (const listener of [...this.#endListeners]) listener(key);
  }

  /**
   * A new one-time sign-in code for the operator token `name`.
   *
   * @throws IntermissionError `UNAUTHORIZED` when that token is not a valid operator token
   */
  issueCode(name: string): { code: string; expiresAt: number } {
    const holder = this.#tokens.holderByName(name);
    if (holder?.role !== 'operator')
      throw new IntermissionError('UNAUTHORIZED', 'only operators sign in to the dashboard');
    this.#sweep();
    if (this.#codes.size >= MAX_PENDING) {
      throw new IntermissionError('CONFLICT', `${MAX_PENDING} sign-in codes are waiting already; use one or wait`, {
        retryable: true,
      });
    }
    const code = randomBytes(24).toString('base64url');
    const expiresAt = Math.min(this.#now() + SIGN_IN_CODE_TTL_MS, holder.expiresAt);
    this.#codes.set(hash(code), { name, expiresAt });
    return { code, expiresAt };
  }

  /**
   * Opens a session for a sign-in code (used up here, valid or not) or for an operator token pasted
   * into the page.
   *
   * @throws IntermissionError `UNAUTHORIZED` for an unknown, used or expired code, or a token that
   *   is not a valid operator token
   */
  start(proof: { code: string } | { token: string }): StartedSession {
    this.#sweep();
    let holder: TokenHolder | undefined;
    if ('code' in proof) {
      const key = hash(proof.code);
      const pending = this.#codes.get(key);
      this.#codes.delete(key);
      if (!pending || pending.expiresAt <= this.#now()) {
        throw new IntermissionError('UNAUTHORIZED', 'this sign-in link is not valid: it was used already or expired');
      }
      holder = this.#tokens.holderByName(pending.name);
    } else {
      holder = this.#tokens.identify(proof.token);
    }
    if (!holder) throw new IntermissionError('UNAUTHORIZED', 'this token is not valid here');
    if (holder.role !== 'operator') {
      throw new IntermissionError('UNAUTHORIZED', 'the console needs an operator token, not a tenant token');
    }
    if (this.#sessions.size >= MAX_PENDING) {
      throw new IntermissionError('CONFLICT', `${MAX_PENDING} dashboard sessions are open already`, {
        retryable: true,
      });
    }
    const id = randomBytes(32).toString('base64url');
    const expiresAt = Math.min(this.#now() + SESSION_TTL_MS, holder.expiresAt);
    this.#sessions.set(hash(id), { name: holder.name, expiresAt });
    return { id, holder, expiresAt };
  }

  /** The holder of a live session (its token still valid), with the session's key and expiry. */
  authenticate(id: string | undefined): { holder: TokenHolder; key: string; expiresAt: number } | undefined {
    if (!id) return undefined;
    const key = hash(id);
    const s = this.#sessions.get(key);
    if (!s) return undefined;
    if (s.expiresAt <= this.#now()) {
      this.#end(key);
      return undefined;
    }
    const holder = this.#tokens.holderByName(s.name);
    if (!holder) {
      this.#end(key);
      return undefined;
    }
    return { holder, key, expiresAt: s.expiresAt };
  }

  /** Ends a session (sign out). */
  end(id: string): void {
    this.#end(hash(id));
  }

  /** Calls `listener` with the key of every session ended from now on (sign-out, revocation). */
  onEnd(listener: (key: string) => void): () => void {
    this.#endListeners.add(listener);
    return () => this.#endListeners.delete(listener);
  }
}
