import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { IntermissionError, formatDuration, parseDuration } from '../domain/index.js';
import { writePrivateFile } from '../service/private-files.js';

/** Who a control-API caller is: an operator (everything) or a tenant (its own VMs only). */
export type Principal =
  | { readonly role: 'operator'; readonly name: string }
  | { readonly role: 'tenant'; readonly name: string; readonly vms: readonly string[] };

/**
 * What a token may do: `operator` and `tenant` call the /v1 API as a {@link Principal};
 * `metrics` may only scrape GET /metrics (when the server requires a token there).
 */
export const TOKEN_ROLES = ['operator', 'tenant', 'metrics'] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];

const DAY = 24 * 60 * 60 * 1000;
/** Lifetime of a tenant token unless `--ttl` says otherwise: a leaked one stops working within a month. */
export const DEFAULT_TENANT_TTL_MS = 30 * DAY;
/** Lifetime of the operator token of control.json; renewed at every start and while the server runs. */
export const DEFAULT_OPERATOR_TTL_MS = 30 * DAY;
/** Lifetime of a metrics (scrape-only) token unless `--ttl` says otherwise. */
export const DEFAULT_METRICS_TTL_MS = 90 * DAY;
/** Shortest lifetime a token may be issued with. */
export const MIN_TOKEN_TTL_MS = 60 * 1000;
/** Longest lifetime a token may be issued with: no token lives for ever. */
export const MAX_TOKEN_TTL_MS = 365 * DAY;

const DEFAULT_TTL: Record<TokenRole, number> = {
  operator: DEFAULT_OPERATOR_TTL_MS,
  tenant: DEFAULT_TENANT_TTL_MS,
  metrics: DEFAULT_METRICS_TTL_MS,
};

const storedTokenSchema = z.object({
  name: z.string().min(1),
  role: z.enum(TOKEN_ROLES),
  vms: z.array(z.string()).optional(),
  /** SHA-256 of the token; the token itself is never stored here. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
  expiresAt: z.string(),
});
type StoredToken = z.infer<typeof storedTokenSchema>;

const tokenFileSchema = z.object({ version: z.literal(2), tokens: z.array(storedTokenSchema) });
type TokenFile = z.infer<typeof tokenFileSchema>;

/** Version 1 had no expiry: its tokens get the default lifetime from the first start that reads them. */
const tokenFileV1Schema = z.object({
  version: z.literal(1),
  tokens: z.array(storedTokenSchema.omit({ expiresAt: true }).extend({ role: z.enum(['operator', 'tenant']) })),
});

/** A token as `token list` shows it: never the token or its hash. */
export interface TokenInfo {
  readonly name: string;
  readonly role: TokenRole;
  readonly vms: readonly string[];
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly expired: boolean;
}

/** Who presented a token that is valid now (any role), and until when. */
export interface TokenHolder {
  readonly name: string;
  readonly role: TokenRole;
  readonly expiresAt: number;
  /** The API principal; undefined for a metrics token. */
  readonly principal: Principal | undefined;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token).digest();
}

/**
 * Writes a file so that a crash leaves either the old or the new content, never a torn one, through
 * a new temporary file that follows no symlink (see {@link writePrivateFile}).
 */
export async function writeFileAtomic(path: string, content: string, mode = 0o600): Promise<void> {
  await writePrivateFile(path, content, mode);
}

/**
 * Reads a token lifetime (`30d`, `12h`, `PT1H`, or seconds) and checks it is between
 * {@link MIN_TOKEN_TTL_MS} and {@link MAX_TOKEN_TTL_MS}.
 *
 * @throws IntermissionError `INVALID_INPUT`
 */
export function parseTokenTtl(text: string): number {
  const ms = parseDuration(text);
  if (!Number.isFinite(ms) || ms < MIN_TOKEN_TTL_MS || ms > MAX_TOKEN_TTL_MS) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `a token's ttl must be between ${formatDuration(MIN_TOKEN_TTL_MS)} and ${formatDuration(MAX_TOKEN_TTL_MS)}, got ${text}`,
    );
  }
  return ms;
}

/** Options of {@link TokenAuthority.open}. */
export interface TokenAuthorityOptions {
  /** The clock that expiry is measured against. Default Date.now. */
  readonly now?: () => number;
}

/**
 * Control-API tokens, kept hashed in `<state>/tokens.json`, each with an expiry. The first start
 * creates an operator token and hands it back once so that it can be written where the CLI finds it.
 * A revoked or expired token is refused from the next request on; listeners of {@link onRevoke}
 * end what it holds open (live streams, dashboard sessions).
 */
export class TokenAuthority {
  readonly #path: string;
  readonly #now: () => number;
  readonly #revokeListeners = new Set<(name: string) => void>();
  #file: TokenFile;
  #writing: Promise<unknown> = Promise.resolve();

  private constructor(path: string, file: TokenFile, now: () => number) {
    this.#path = path;
    this.#file = file;
    this.#now = now;
  }

  static async open(stateDir: string, options: TokenAuthorityOptions = {}): Promise<TokenAuthority> {
    const now = options.now ?? (() => Date.now());
    const path = join(stateDir, 'tokens.json');
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (text === undefined) return new TokenAuthority(path, { version: 2, tokens: [] }, now);
    const unreadable = (cause: unknown): IntermissionError =>
      new IntermissionError('STORE_FAILURE', `${path} is not a token file this version can read`, { cause });
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw unreadable(error);
    }
    const parsed = tokenFileSchema.safeParse(json);
    if (parsed.success) return new TokenAuthority(path, parsed.data, now);
    const v1 = tokenFileV1Schema.safeParse(json);
    if (!v1.success) throw unreadable(parsed.error);
    const file: TokenFile = {
      version: 2,
      tokens: v1.data.tokens.map((t) => ({ ...t, expiresAt: new Date(now() + DEFAULT_TTL[t.role]).toISOString() })),
    };
    const authority = new TokenAuthority(path, file, now);
    await authority.#save(file);
    return authority;
  }

  /** The clock expiry is measured against. */
  now(): number {
    return this.#now();
  }

  get hasOperator(): boolean {
    return this.#file.tokens.some((t) => t.role === 'operator' && !this.#expired(t));
  }

  #expired(t: StoredToken): boolean {
    return Date.parse(t.expiresAt) <= this.#now();
  }

  async #save(next: TokenFile): Promise<void> {
    await writeFileAtomic(this.#path, JSON.stringify(next, null, 2) + '\n');
    this.#file = next;
  }

  /**
   * Runs one change of the file at a time, each computed from the file as the previous one left it:
   * two changes computed from the same state would lose one (a revocation undone by a concurrent
   * issue).
   */
  #update<T>(change: (file: TokenFile) => { next?: TokenFile; result: T }): Promise<T> {
    const run = this.#writing.then(async () => {
      const { next, result } = change(this.#file);
      if (next) await this.#save(next);
      return result;
    });
    this.#writing = run.catch(() => undefined);
    return run;
  }

  /**
   * Issues a new token and stores its hash. The token is returned once and never again. A name in
   * use by a token that has not expired is refused; an expired one is replaced.
   *
   * @throws IntermissionError `CONFLICT` for a name in use, `INVALID_INPUT` for a ttl out of bounds
   */
  async issue(
    holder: Principal | { readonly role: 'metrics'; readonly name: string },
    options: { readonly ttlMs?: number } = {},
  ): Promise<string> {
    const ttlMs = options.ttlMs ?? DEFAULT_TTL[holder.role];
    if (!Number.isFinite(ttlMs) || ttlMs < MIN_TOKEN_TTL_MS || ttlMs > MAX_TOKEN_TTL_MS) {
      throw new IntermissionError('INVALID_INPUT', `ttl ${ttlMs} ms is out of bounds`);
    }
    const prefix = holder.role === 'operator' ? 'op' : holder.role === 'tenant' ? 'tn' : 'mx';
    const token = `im_${prefix}_${randomBytes(24).toString('base64url')}`;
    await this.#update((file) => {
      const existing = file.tokens.find((t) => t.name === holder.name);
      if (existing && !this.#expired(existing)) {
        throw new IntermissionError('CONFLICT', `a token named ${holder.name} exists already (revoke it first)`);
      }
      const now = this.#now();
      const next: TokenFile = {
        version: 2,
        tokens: [
          ...file.tokens.filter((t) => t.name !== holder.name),
          {
            name: holder.name,
            role: holder.role,
            ...(holder.role === 'tenant' ? { vms: [...holder.vms] } : {}),
            sha256: digest(token).toString('hex'),
            createdAt: new Date(now).toISOString(),
            expiresAt: new Date(now + ttlMs).toISOString(),
          },
        ],
      };
      return { next, result: undefined };
    });
    return token;
  }

  /** Moves the expiry of a valid token to `ttlMs` from now. False when it is unknown or expired. */
  renew(name: string, ttlMs: number): Promise<boolean> {
    return this.#update((file) => {
      const t = file.tokens.find((x) => x.name === name);
      if (!t || this.#expired(t)) return { result: false };
      const expiresAt = new Date(this.#now() + ttlMs).toISOString();
      return {
        next: { version: 2, tokens: file.tokens.map((x) => (x === t ? { ...x, expiresAt } : x)) },
        result: true,
      };
    });
  }

  /** Every stored token (expired ones too, marked), without secrets, oldest first. */
  list(): TokenInfo[] {
    return this.#file.tokens.map((t) => ({
      name: t.name,
      role: t.role,
      vms: t.vms ?? [],
      createdAt: t.createdAt,
      expiresAt: t.expiresAt,
      expired: this.#expired(t),
    }));
  }

  /**
   * Revokes a token: it is removed from the file, refused from now on, and every listener of
   * {@link onRevoke} is told, so that streams and sessions it opened end.
   *
   * @throws IntermissionError `NOT_FOUND`
   */
  async revoke(name: string): Promise<TokenInfo> {
    const info = await this.#update((file) => {
      const found = this.list().find((t) => t.name === name);
      if (!found) throw new IntermissionError('NOT_FOUND', `no token named ${name}`);
      return { next: { version: 2, tokens: file.tokens.filter((t) => t.name !== name) }, result: found };
    });
    for (const listener of [...this.#revokeListeners]) listener(name);
    return info;
  }

  /** Calls `listener` with the name of every token revoked from now on; returns the unsubscribe. */
  onRevoke(listener: (name: string) => void): () => void {
    this.#revokeListeners.add(listener);
    return () => this.#revokeListeners.delete(listener);
  }

  /** Who holds a valid (known, unexpired) token of any role, or undefined. Constant-time per stored token. */
  identify(token: string | undefined): TokenHolder | undefined {
    if (!token) return undefined;
    const presented = digest(token);
    let found: StoredToken | undefined;
    for (const t of this.#file.tokens) {
      if (timingSafeEqual(presented, Buffer.from(t.sha256, 'hex'))) found = t;
    }
    if (!found || this.#expired(found)) return undefined;
    return this.#holder(found);
  }

  /** The holder of the valid token named `name` (a dashboard session's), or undefined. */
  holderByName(name: string): TokenHolder | undefined {
    const t = this.#file.tokens.find((x) => x.name === name);
    return t && !this.#expired(t) ? this.#holder(t) : undefined;
  }

  #holder(t: StoredToken): TokenHolder {
    const principal: Principal | undefined =
      t.role === 'operator'
        ? { role: 'operator', name: t.name }
        : t.role === 'tenant'
          ? { role: 'tenant', name: t.name, vms: t.vms ?? [] }
          : undefined;
    return { name: t.name, role: t.role, expiresAt: Date.parse(t.expiresAt), principal };
  }

  /** Whom a valid bearer token of the API (operator or tenant) belongs to, or undefined. */
  authenticate(token: string | undefined): Principal | undefined {
    return this.identify(token)?.principal;
  }
}
