import { request as httpRequest } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { readToken } from '../service/agent-token.js';
import { IntermissionError, type ErrorCode, ERROR_CODES } from '../domain/index.js';
import { parseAddress, type ListenAddress } from '../service/address.js';
import { assertTrustedFile } from '../service/private-files.js';

/** What a running service writes to `<state>/control.json` so that the CLI can find it. */
export const controlFileSchema = z.object({ address: z.string(), token: z.string(), pid: z.number().int().optional() });
export type ControlFile = z.infer<typeof controlFileSchema>;

export interface ControlTarget {
  readonly address: ListenAddress;
  readonly token: string;
  /** Where address and token came from, always both from the same one. */
  readonly source: ControlTargetSource;
}

/** The trusted sources of an address and a token: each gives both, or none is used. */
export type ControlTargetSource = 'flags' | 'environment' | 'control.json';

/** How the CLI is told where the control API is and with which token. */
export interface ControlTargetOptions {
  /** `--control <address>`: only with `--token-file`. */
  readonly control?: string | undefined;
  /** `--token-file <file>`: only with `--control`. */
  readonly tokenFile?: string | undefined;
  /** `--token <token>`: refused (a flag's value shows in `ps` and in the shell's history). */
  readonly token?: string | undefined;
  /** `--state <dir>`: take both from `<dir>/control.json`. */
  readonly state?: string | undefined;
  /** The environment (INTERMISSION_CONTROL, INTERMISSION_TOKEN, INTERMISSION_STATE). Default process.env. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

const mixed = (message: string): IntermissionError =>
  new IntermissionError('INVALID_INPUT', message, { details: { reason: 'MIXED_SOURCES' } });

/**
 * Finds the control API and the token to send it. A token is only ever sent to an address from the
 * same trusted source, so that a planted file or variable cannot redirect the operator's token:
 * 1. `--control` with `--token-file` (both flags, or neither);
 * 2. `--state <dir>`: its control.json;
 * 3. INTERMISSION_CONTROL with INTERMISSION_TOKEN (both, or neither);
 * 4. the control.json of INTERMISSION_STATE, else of `./.intermission`.
 * A control.json is used only when it and its directory are owned by this user, are not symlinks and
 * are not writable by group or others. Anything else, mixing sources included, is refused.
 *
 * @throws IntermissionError `INVALID_INPUT` (exit 2) for mixed sources, `--token`, an untrusted
 *   control.json; `UNREACHABLE` when nothing says where a service runs
 */
export async function resolveControlTarget(options: ControlTargetOptions): Promise<ControlTarget> {
  const env = options.env ?? process.env;
  if (options.token !== undefined) {
    throw new IntermissionError(
      'INVALID_INPUT',
      '--token is no longer accepted: a token given as a flag shows in `ps` and in shell history. ' +
        'Use --control <address> --token-file <file>, or INTERMISSION_CONTROL with INTERMISSION_TOKEN, or --state <dir>',
      { details: { reason: 'TOKEN_FLAG' } },
    );
  }
  if (options.control !== undefined || options.tokenFile !== undefined) {
    if (options.control === undefined || options.tokenFile === undefined) {
      throw mixed(
        `${options.control === undefined ? '--token-file' : '--control'} needs ${options.control === undefined ? '--control' : '--token-file'}: ` +
          'a token is only sent to an address given the same way (flags with flags, environment with environment, or one control.json)',
      );
    }
    return { address: parseAddress(options.control), token: await readTokenFile(options.tokenFile), source: 'flags' };
  }
  if (options.state !== undefined) return fromControlFile(options.state);
  const envControl = env.INTERMISSION_CONTROL;
  const envToken = env.INTERMISSION_TOKEN;
  if (envControl !== undefined || envToken !== undefined) {
    if (!envControl || !envToken) {
      throw mixed(
        envToken
          ? 'INTERMISSION_TOKEN is set but INTERMISSION_CONTROL is not: a token from the environment is only sent to an address from the environment (a control.json in this directory could have been planted). Set INTERMISSION_CONTROL too, or unset INTERMISSION_TOKEN and pass --state'
          : 'INTERMISSION_CONTROL is set but INTERMISSION_TOKEN is not: set both, or neither',
      );
    }
    return { address: parseAddress(envControl), token: envToken, source: 'environment' };
  }
  return fromControlFile(env.INTERMISSION_STATE ?? '.intermission');
}

/** Address and token from one control.json, if it can be trusted. */
async function fromControlFile(stateDir: string): Promise<ControlTarget> {
  const path = join(stateDir, 'control.json');
  try {
    await assertTrustedFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new IntermissionError(
        'UNREACHABLE',
        `no running service found (no ${path}): start one (intermission up, or serve-metadata), or pass --state <dir>, ` +
          'or --control with --token-file, or set INTERMISSION_CONTROL and INTERMISSION_TOKEN',
        { details: { stateDir } },
      );
    }
    throw error;
  }
  let file: ControlFile;
  try {
    file = controlFileSchema.parse(JSON.parse(await readFile(path, 'utf8')));
  } catch (error) {
    throw new IntermissionError('INVALID_INPUT', `cannot read ${path}`, { cause: error });
  }
  return { address: parseAddress(file.address), token: file.token, source: 'control.json' };
}

/** The token of a `--token-file`: one line, nothing else. */
async function readTokenFile(path: string): Promise<string> {
  const token = await readToken(path);
  if (token === undefined) throw new IntermissionError('INVALID_INPUT', `cannot read token file ${path}: no such file`);
  return token;
}

/** A small JSON client of the control API, over TCP or a unix socket. */
export class ControlClient {
  readonly #target: ControlTarget;
  readonly #timeoutMs: number;

  constructor(target: ControlTarget, timeoutMs = 10_000) {
    this.#target = target;
    this.#timeoutMs = timeoutMs;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body);
  }

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const where = this.#target.address;
    return new Promise<T>((resolve, reject) => {
      const req = httpRequest(
        {
          ...('path' in where ? { socketPath: where.path } : { host: where.host, port: where.port }),
          method,
          path,
          timeout: this.#timeoutMs,
          headers: {
            authorization: `Bearer ${this.#target.token}`,
            accept: 'application/json',
            ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = text.length > 0 ? JSON.parse(text) : undefined;
            } catch (error) {
              reject(
                new IntermissionError('INTERNAL', `control API sent non-JSON (${res.statusCode})`, { cause: error }),
              );
              return;
            }
            if ((res.statusCode ?? 500) >= 400) reject(remoteError(res.statusCode ?? 500, json));
            else resolve(json as T);
          });
        },
      );
      req.on('timeout', () =>
        req.destroy(new IntermissionError('TIMEOUT', `control API did not answer in ${this.#timeoutMs} ms`)),
      );
      req.on('error', (error) =>
        reject(
          error instanceof IntermissionError
            ? error
            : new IntermissionError('UNREACHABLE', `cannot reach the control API: ${error.message}`, { cause: error }),
        ),
      );
      req.end(payload);
    });
  }
}

const remoteErrorSchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() }),
});

function remoteError(status: number, body: unknown): IntermissionError {
  const parsed = remoteErrorSchema.safeParse(body);
  if (!parsed.success) return new IntermissionError('INTERNAL', `control API answered ${status}`);
  const code = (parsed.data.error.code in ERROR_CODES ? parsed.data.error.code : 'INTERNAL') as ErrorCode;
  return new IntermissionError(code, parsed.data.error.message, { details: parsed.data.error.details ?? {} });
}
