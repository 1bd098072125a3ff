import { Hono } from 'hono';
import { timingSafeEqual } from 'node:crypto';
import { IntermissionError, coerceError } from '../domain/index.js';
import type { HostAgent } from './host-agent.js';
import {
  AGENT_PROTOCOL_VERSION,
  EPOCH_HEADER,
  EPOCH_HEADER_RE,
  hostStepRequestSchema,
  type AgentHealth,
} from './protocol.js';

export interface AgentAppOptions {
  readonly agent: HostAgent;
  /** Shared secret the controller presents as `Authorization: Bearer <token>`. */
  readonly token: string;
}

/** The agent API of one host agent as a fetch handler. */
export interface AgentApp {
  fetch(request: Request): Response | Promise<Response>;
}

/** What each request carries to the shared routes: the agent it is for and that agent's token. */
interface AgentBindings {
  readonly agent: HostAgent;
  readonly token: string;
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * The routes, built once per process and shared by every agent app: a Hono app with its compiled
 * router costs about 10 KB, and a simulated region runs 10,000 agents in one process. Each request
 * names its agent through the bindings, so the table itself holds no state.
 */
const routes = buildAgentRoutes();

function buildAgentRoutes(): Hono<{ Bindings: AgentBindings }> {
  const app = new Hono<{ Bindings: AgentBindings }>();
  app.onError((error, c) => {
    const e =
      error instanceof SyntaxError
        ? new IntermissionError('INVALID_INPUT', `body is not JSON: ${error.message}`)
        : coerceError(error);
    return c.json({ error: { code: e.code, message: e.message, retryable: e.retryable } }, e.status as 400);
  });
  app.notFound((c) => c.json({ error: { code: 'NOT_FOUND', message: `no route ${c.req.method} ${c.req.path}` } }, 404));
  app.use('*', async (c, next) => {
    const presented = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '')?.[1]?.trim() ?? '';
    if (!sameToken(presented, c.env.token))
      throw new IntermissionError('UNAUTHORIZED', 'agent API needs the controller token');
    await next();
  });

  app.get('/v1/health', (c) =>
    c.json({
      host: c.env.agent.host,
      protocol: AGENT_PROTOCOL_VERSION,
      now: Date.now(),
      stepsRunning: c.env.agent.stepsRunning,
    } satisfies AgentHealth),
  );
  app.get('/v1/vms', async (c) => c.json({ vms: await c.env.agent.vms() }));
  app.put('/v1/steps/:id', async (c) => {
    const parsed = hostStepRequestSchema.safeParse(await c.req.json());
    if (!parsed.success) {
      throw new IntermissionError(
        'INVALID_INPUT',
        parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
      );
    }
    if (parsed.data.stepId !== c.req.param('id'))
      throw new IntermissionError('INVALID_INPUT', 'step id in path and body differ');
    const header = c.req.header(EPOCH_HEADER);
    if (header !== undefined && !EPOCH_HEADER_RE.test(header.trim()))
      throw new IntermissionError('INVALID_INPUT', `${EPOCH_HEADER} is a whole number, got ${JSON.stringify(header)}`);
    const status = await c.env.agent.submit(parsed.data, { epoch: header === undefined ? 0 : Number(header.trim()) });
    return c.json(status, status.status === 'running' ? 202 : 200);
  });
  app.get('/v1/steps/:id', (c) => {
    const { agent } = c.env;
    const status = agent.status(c.req.param('id'));
    if (!status) throw new IntermissionError('NOT_FOUND', `agent of ${agent.host} has no step ${c.req.param('id')}`);
    return c.json(status);
  });
  return app;
}

/** The host agent's HTTP API (protocol version 1) as a fetch handler. */
export function createAgentApp({ agent, token }: AgentAppOptions): AgentApp {
  const bindings: AgentBindings = Object.freeze({ agent, token });
  return Object.freeze({ fetch: (request: Request) => routes.fetch(request, bindings) });
}
