/**
 * The state the fuzzer starts from and keeps: per scope an operator drill and a platform event,
 * per tenant an event of its own, and what the generators know of it.
 */
import type { Knowledge } from './generators.js';
import type { Snapshot } from './state.js';
import { SCOPES, controlJson, type Target } from './target.js';

/** How many live events a tenant keeps before the housekeeping cancels its oldest (keeps documents small). */
const TENANT_LIVE_CAP = 6;

/**
 * Events the generators and the oracles start from: per scope, an operator drill (source User)
 * and a platform event, and per tenant one event of its own. Also the housekeeping that keeps a
 * long run's documents small: a tenant's live events beyond {@link TENANT_LIVE_CAP} are cancelled
 * by the operator. Returns whether it changed anything (then the caller reads the state again).
 */
export async function seedState(t: Target, snap: Snapshot | undefined): Promise<boolean> {
  const events = [...(snap?.events.values() ?? [])];
  const scheduled = events.filter((e) => e.phase === 'Scheduled');
  const has = (pred: (e: (typeof scheduled)[number]) => boolean): boolean => scheduled.some(pred);
  let changed = false;
  const schedule = async (token: string, body: unknown): Promise<void> => {
    const res = await controlJson(t.controlPort, token, 'POST', '/v1/events', body);
    changed ||= res.status === 201;
  };
  for (const [scope, vms] of SCOPES) {
    const vm = vms[0] ?? '';
    if (!has((e) => e.scope === scope && e.source === 'User' && e.description === SEED_DESCRIPTION))
      await schedule(t.operator.token, { type: 'Freeze', vms: [vm], notice: '1h', description: SEED_DESCRIPTION });
    if (!has((e) => e.scope === scope && e.source === 'Platform'))
      await schedule(t.operator.token, {
        type: 'Reboot',
        vms: [vm],
        notice: '2h',
        source: 'Platform',
        description: SEED_DESCRIPTION,
      });
  }
  for (const tenant of t.tenants) {
    const own = events.filter((e) => e.owner === `drill:tenant:${tenant.name}` && e.phase !== 'Removed');
    if (!own.some((e) => e.phase === 'Scheduled'))
      await schedule(tenant.token, { type: 'Freeze', vms: [tenant.vms[0]], notice: '1h' });
    for (const e of own.slice(0, Math.max(0, own.length - TENANT_LIVE_CAP))) {
      await controlJson(t.controlPort, t.operator.token, 'POST', `/v1/events/${e.eventId}/cancel`);
      changed = true;
    }
  }
  return changed;
}

const SEED_DESCRIPTION = 'fuzz seed event';

export function knowledge(t: Target, snap: Snapshot): Knowledge {
  return {
    events: [...snap.events.values()].map((e) => ({
      eventId: e.eventId,
      scope: e.scope,
      owner: e.owner,
      source: e.source,
      phase: e.phase,
    })),
    operator: t.operator,
    tenants: t.tenants,
  };
}
