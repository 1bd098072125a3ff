import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { IntermissionError } from '../domain/index.js';
import { writePrivateFile } from '../service/private-files.js';

/** Who a control-API caller is: an operator (everything) or a tenant (its own VMs only). */
export type Principal =
  | { readonly role: 'operator'; readonly name: string }
  | { readonly role: 'tenant'; readonly name: string; readonly vms: readonly string[] };

const tokenFileSchema = z.object({
  version: z.literal(1),
  tokens: z.array(
    z.object({
      name: z.string().min(1),
      role: z.enum(['operator', 'tenant']),
      vms: z.array(z.string()).optional(),
      /** SHA-256 of the token; the token itself is never stored here. */
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      createdAt: z.string(),
    }),
  ),
});
type TokenFile = z.infer<typeof tokenFileSchema>;

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
 * Control-API tokens, kept hashed in `<state>/tokens.json`. The first start creates an operator
 * token and hands it back once so that it can be written where the CLI finds it.
 */
export class TokenAuthority {
  readonly #path: string;
  #file: TokenFile;

  private constructor(path: string, file: TokenFile) {
    this.#path = path;
    this.#file = file;
  }

  static async open(stateDir: string): Promise<TokenAuthority> {
    const path = join(stateDir, 'tokens.json');
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (text === undefined) return new TokenAuthority(path, { version: 1, tokens: [] });
    const parsed = tokenFileSchema.safeParse(JSON.parse(text));
    if (!parsed.success) {
      throw new IntermissionError('STORE_FAILURE', `${path} is not a token file this version can read`, {
        cause: parsed.error,
      });
    }
    return new TokenAuthority(path, parsed.data);
  }

  get hasOperator(): boolean {
    return this.#file.tokens.some((t) => t.role === 'operator');
  }

  /** Issues a new token and stores its hash. The token is returned once and never again. */
  async issue(principal: Principal): Promise<string> {
    if (this.#file.tokens.some((t) => t.name === principal.name)) {
      throw new IntermissionError('CONFLICT', `a token named ${principal.name} exists already`);
    }
    const token = `im_${principal.role === 'operator' ? 'op' : 'tn'}_${randomBytes(24).toString('base64url')}`;
    const next: TokenFile = {
      version: 1,
      tokens: [
        ...this.#file.tokens,
        {
          name: principal.name,
          role: principal.role,
          ...(principal.role === 'tenant' ? { vms: [...principal.vms] } : {}),
          sha256: digest(token).toString('hex'),
          createdAt: new Date().toISOString(),
        },
      ],
    };
    await writeFileAtomic(this.#path, JSON.stringify(next, null, 2) + '\n');
    this.#file = next;
    return token;
  }

  /** Whom a bearer token belongs to, or undefined. Constant-time per stored token. */
  authenticate(token: string | undefined): Principal | undefined {
    if (!token) return undefined;
    const presented = digest(token);
    for (const t of this.#file.tokens) {
      if (timingSafeEqual(presented, Buffer.from(t.sha256, 'hex'))) {
        return t.role === 'operator'
          ? { role: 'operator', name: t.name }
          : { role: 'tenant', name: t.name, vms: t.vms ?? [] };
      }
    }
    return undefined;
  }
}
