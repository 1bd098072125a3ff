import { request as httpRequest } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { IntermissionError, type ErrorCode, ERROR_CODES } from '../domain/index.js';
import { parseAddress, type ListenAddress } from '../service/address.js';

/** What a running service writes to `<state>/control.json` so that the CLI can find it. */
export const controlFileSchema = z.object({ address: z.string(), token: z.string(), pid: z.number().int().optional() });
export type ControlFile = z.infer<typeof controlFileSchema>;

export interface ControlTarget {
  readonly address: ListenAddress;
  readonly token: string;
}

/** Finds the control API from flags, environment, or the state directory's control.json. */
export async function resolveControlTarget(options: {
  control?: string | undefined;
  token?: string | undefined;
  state?: string | undefined;
}): Promise<ControlTarget> {
  let file: ControlFile | undefined;
  const stateDir = options.state ?? process.env.INTERMISSION_STATE ?? '.intermission';
  try {
    file = controlFileSchema.parse(JSON.parse(await readFile(join(stateDir, 'control.json'), 'utf8')));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new IntermissionError('INVALID_INPUT', `cannot read ${join(stateDir, 'control.json')}`, { cause: error });
    }
  }
  const address = options.control ?? process.env.INTERMISSION_CONTROL ?? file?.address;
  const token = options.token ?? process.env.INTERMISSION_TOKEN ?? file?.token;
  if (!address || !token) {
    throw new IntermissionError(
      'UNREACHABLE',
      `no running service found: start one (intermission up, or serve-metadata) or pass --state, --control and --token`,
      { details: { stateDir } },
    );
  }
  return { address: parseAddress(address), token };
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
