import { Hono } from 'hono';
import { timingSafeEqual } from 'node:crypto';
import { IntermissionError, coerceError } from '../domain/index.js';
import type { SimHost, SimHostEvent, SimVmSnapshot } from '../hypervisor/sim/index.js';

/** Options of {@link createSimHostApp}. */
export interface SimHostAppOptions {
  readonly host: SimHost;
  /** The controller ↔ agent token: the ground truth is for operators and tests, not for tenants. */
  readonly token: string;
}

/** Body of `GET /v1/sim/host`: what really happened on a simulated host, beyond any driver's view. */
export interface SimHostView {
  readonly host: string;
  /** Ids of the updates applied since this process started, in order. */
  readonly appliedUpdates: readonly string[];
  /** Every VM with its ground truth (pause count, longest pause, clock offset…). */
  readonly vms: readonly SimVmSnapshot[];
  /** What happened on the host since this process started, oldest first. */
  readonly history: readonly SimHostEvent[];
}

/** Path prefix of the routes of {@link createSimHostApp}; everything else belongs to the agent API. */
export const SIM_HOST_ROUTE_PREFIX = '/v1/sim/';

/**
 * A read-only HTTP view of a simulated host, served beside the agent API by `intermission agent`
 * (simulated hosts only): tests of a multi-process deployment read here how many times each host
 * was updated and each VM paused, which no driver reports. It changes nothing. The simulated host
 * lives in the agent's process, so the view starts afresh when that process restarts.
 */
export function createSimHostApp({ host, token }: SimHostAppOptions): Hono {
  const app = new Hono();
  app.onError((error, c) => {
    const e = coerceError(error);
    return c.json({ error: { code: e.code, message: e.message, retryable: e.retryable } }, e.status as 400);
  });
  app.notFound((c) => c.json({ error: { code: 'NOT_FOUND', message: `no route ${c.req.method} ${c.req.path}` } }, 404));
  app.use('*', async (c, next) => {
    const presented = /^Bearer\s+(.+)$/i.exec(c.req.header('authorization') ?? '')?.[1]?.trim() ?? '';
    const a = Buffer.from(presented);
    const b = Buffer.from(token);
    if (a.length !== b.length || !timingSafeEqual(a, b)) {
      throw new IntermissionError('UNAUTHORIZED', 'the simulated host view needs the controller token');
    }
    await next();
  });
  app.get('/v1/sim/host', (c) =>
    c.json({
      host: host.name,
      appliedUpdates: host.appliedUpdates(),
      vms: host.vms(),
      history: host.history(),
    } satisfies SimHostView),
  );
  return app;
}
