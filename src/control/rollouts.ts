import { Hono } from 'hono';
import { z } from 'zod';
import { IntermissionError } from '../domain/index.js';
import { describePlan, tenantTimeline } from '../domain/rollout/index.js';
import type { Controller } from '../controller/controller.js';
import type { RolloutRecord } from '../store/rollout-store.js';
import type { Principal } from './tokens.js';

/** Body of POST /v1/plans and /v1/rollouts: an update and an optional policy (see the planner schema). */
const rolloutRequestSchema = z.object({ update: z.unknown(), policy: z.unknown().optional() }).strict();

/** A rollout without its (large) plan: what lists and progress views need. */
export interface RolloutSummary {
  readonly id: string;
  readonly status: string;
  readonly reason: string | null;
  readonly updateKind: string;
  readonly description: string;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly wave: number;
  readonly waves: number;
  readonly wavePhase: string;
  readonly failedHosts: number;
  readonly failureBudget: number;
  readonly hosts: number;
  readonly vms: number;
}

export function rolloutSummary(r: RolloutRecord): RolloutSummary {
  return {
    id: r.id,
    status: r.status,
    reason: r.reason,
    updateKind: r.plan.update.kind,
    description: r.plan.update.description,
    createdAt: new Date(r.createdAt).toISOString(),
    updatedAt: new Date(r.updatedAt).toISOString(),
    wave: r.wave,
    waves: r.plan.waves.length,
    wavePhase: r.wavePhase,
    failedHosts: r.failedHosts,
    failureBudget: r.plan.failureBudget.maxFailedHosts,
    hosts: r.plan.stats.plannedHosts,
    vms: r.plan.stats.plannedVms,
  };
}

type Env = { Variables: { principal: Principal } };

async function body(c: { req: { json(): Promise<unknown> } }): Promise<z.infer<typeof rolloutRequestSchema>> {
  const parsed = rolloutRequestSchema.safeParse(await c.req.json());
  if (!parsed.success) throw new IntermissionError('INVALID_INPUT', 'send {"update": {...}, "policy": {...}}');
  return parsed.data;
}

/** Rollout routes for operators, mounted under /v1 of the control API. */
export function rolloutRoutes(controller: Controller): Hono<Env> {
  const app = new Hono<Env>();
  app.use('*', async (c, next) => {
    if (c.get('principal').role !== 'operator')
      throw new IntermissionError('UNAUTHORIZED', 'rollouts are for operators');
    await next();
  });

  /** A dry run: the plan as JSON, in words, and what each tenant will see and when. */
  app.post('/plans', async (c) => {
    const plan = await controller.plan(await body(c));
    return c.json({ plan, text: describePlan(plan), tenants: tenantTimeline(plan) });
  });

  app.post('/rollouts', async (c) => {
    const rollout = await controller.apply(await body(c));
    return c.json(rolloutSummary(rollout), 201);
  });

  app.get('/rollouts', async (c) => c.json({ rollouts: (await controller.list()).map(rolloutSummary) }));

  app.get('/rollouts/:id', async (c) => {
    const detail = await controller.detail(c.req.param('id'));
    return c.json({
      rollout: rolloutSummary(detail.rollout),
      plan: c.req.query('plan') === 'true' ? detail.rollout.plan : undefined,
      steps: detail.steps,
      operations: detail.operations,
    });
  });

  for (const action of ['pause', 'resume', 'cancel'] as const) {
    app.post(`/rollouts/:id/${action}`, async (c) => {
      const rollout = await controller.executor[action](c.req.param('id'));
      return c.json(rolloutSummary(rollout));
    });
  }
  return app;
}
