import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { IntermissionError } from '../domain/index.js';

/** Random bytes of a new controller ↔ agent token (256 bits, base64url: 43 characters). */
const TOKEN_BYTES = 32;

/**
 * Reads the controller ↔ agent token from `path`, creating the file (mode 0600, a new random
 * token) when it does not exist. The controller and every agent read the same file (or copies of
 * it). Creation is race-free: the token is written to a private temporary file and hard-linked into
 * place, which fails if another process got there first, so concurrent starts never read a
 * half-written token and all end up with the same one.
 *
 * @throws IntermissionError `INVALID_INPUT` when the file exists but holds no token or cannot be read
 */
export async function loadAgentToken(path: string): Promise<string> {
  const existing = await readToken(path);
  if (existing !== undefined) return existing;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, `${randomBytes(TOKEN_BYTES).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  try {
    await link(tmp, path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    // Another process created it first: use theirs.
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
  const token = await readToken(path);
  if (token === undefined) throw new IntermissionError('INTERNAL', `token file ${path} vanished after creation`);
  return token;
}

/**
 * The token a token file holds (one token on one line, nothing else), or undefined where there is no
 * such file. Shared by the agent's token file and the CLI's `--token-file`.
 *
 * @throws IntermissionError `INVALID_INPUT` for a file that cannot be read or holds anything else
 */
export async function readToken(path: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new IntermissionError('INVALID_INPUT', `cannot read token file ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const token = text.trim();
  if (token.length === 0 || /\s/.test(token)) {
    throw new IntermissionError('INVALID_INPUT', `token file ${path} must hold one token on one line`);
  }
  return token;
}
