import { IntermissionError, ERROR_CODES, type ErrorCode } from '../domain/index.js';
import {
  agentHealthSchema,
  agentVmSchema,
  EPOCH_HEADER,
  hostStepStatusSchema,
  type AgentHealth,
  type AgentVm,
  type HostStepRequest,
  type HostStepStatus,
} from './protocol.js';
import { z } from 'zod';

/** Sends one HTTP request: `globalThis.fetch` for a remote agent, the agent app's `fetch` in-process. */
export type AgentFetch = (request: Request) => Promise<Response> | Response;

export interface AgentClientOptions {
  readonly host: string;
  /** Base URL of the agent, e.g. http://10.0.0.7:7490 (any URL for an in-process app). */
  readonly baseUrl: string;
  readonly token: string;
  readonly fetch: AgentFetch;
  readonly timeoutMs?: number;
}

const errorBodySchema = z.object({ error: z.object({ code: z.string(), message: z.string() }) });

/** The controller's side of the agent protocol. Every answer is validated. */
export class AgentClient {
  readonly host: string;
  readonly #options: AgentClientOptions;

  constructor(options: AgentClientOptions) {
    this.host = options.host;
    this.#options = options;
  }

  async health(): Promise<AgentHealth> {
    return agentHealthSchema.parse(await this.#call('GET', '/v1/health'));
  }

  async vms(): Promise<AgentVm[]> {
    return z.object({ vms: z.array(agentVmSchema) }).parse(await this.#call('GET', '/v1/vms')).vms;
  }

  /**
   * Sends a host step: a command, carrying the controller's fencing `epoch` (its leader lease's).
   * STALE_EPOCH back means another controller leads: this one must stop.
   */
  async submit(request: HostStepRequest, options: { readonly epoch?: number } = {}): Promise<HostStepStatus> {
    return hostStepStatusSchema.parse(
      await this.#call('PUT', `/v1/steps/${encodeURIComponent(request.stepId)}`, request, options.epoch),
    );
  }

  /** The step's status, or undefined when the agent never received it. */
  async status(stepId: string): Promise<HostStepStatus | undefined> {
    try {
      return hostStepStatusSchema.parse(await this.#call('GET', `/v1/steps/${encodeURIComponent(stepId)}`));
    } catch (error) {
      if (error instanceof IntermissionError && error.code === 'NOT_FOUND') return undefined;
      throw error;
    }
  }

  async #call(method: string, path: string, body?: unknown, epoch?: number): Promise<unknown> {
    const timeoutMs = this.#options.timeoutMs ?? 10_000;
    // A timer cleared once the answer is read, rather than AbortSignal.timeout(): that one keeps
    // its signal, and the request listening to it, alive until it fires, long after the answer came
    // (10,000 agents polled in one pass pile up that way).
    const abort = new AbortController();
    const timer = setTimeout(
      () => abort.abort(new DOMException('the agent did not answer in time', 'TimeoutError')),
      timeoutMs,
    );
    timer.unref();
    try {
      return await this.#exchange(method, path, body, epoch, abort.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  async #exchange(
    method: string,
    path: string,
    body: unknown,
    epoch: number | undefined,
    signal: AbortSignal,
  ): Promise<unknown> {
    const { baseUrl, token, fetch } = this.#options;
    const request = new Request(new URL(path, baseUrl), {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(epoch === undefined ? {} : { [EPOCH_HEADER]: String(epoch) }),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal,
    });
    let response: Response;
    try {
      response = await fetch(request);
    } catch (error) {
      const timedOut = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
      throw new IntermissionError(
        timedOut ? 'TIMEOUT' : 'UNREACHABLE',
        `agent of ${this.host}: ${(error as Error).message}`,
        {
          cause: error,
          details: { host: this.host },
        },
      );
    }
    const text = await response.text();
    const json: unknown = text.length === 0 ? undefined : JSON.parse(text);
    if (!response.ok) {
      const parsed = errorBodySchema.safeParse(json);
      const code = (
        parsed.success && parsed.data.error.code in ERROR_CODES ? parsed.data.error.code : 'INTERNAL'
      ) as ErrorCode;
      throw new IntermissionError(
        code,
        `agent of ${this.host}: ${parsed.success ? parsed.data.error.message : `HTTP ${response.status}`}`,
        {
          details: { host: this.host, status: response.status },
        },
      );
    }
    return json;
  }
}
