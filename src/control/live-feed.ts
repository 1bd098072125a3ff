import type { ExecutorEventMap, RolloutExecutor } from '../controller/executor.js';
import type { MaintenanceEvent } from '../domain/index.js';
import type { EventService } from '../service/event-service.js';
import { eventView } from './app.js';
import type { LiveHub } from './live.js';
import { rolloutSummary } from './rollouts.js';

/** What {@link feedLiveHub} listens to. */
export interface LiveFeedSources {
  readonly hub: LiveHub;
  /** Its `event:*` announcements become event messages. */
  readonly service: EventService;
  /** Its `rollout:*` announcements become rollout messages; absent without a controller. */
  readonly executor?: RolloutExecutor;
}

/**
 * Subscribes the hub to the typed events of the event service and the rollout executor, converting
 * each payload to what the control API shows (event views, rollout summaries). Returns a function
 * that removes every listener it added.
 */
export function feedLiveHub({ hub, service, executor }: LiveFeedSources): () => void {
  const removers: (() => void)[] = [];
  for (const type of ['event:scheduled', 'event:approved', 'event:started', 'event:ended', 'event:removed'] as const) {
    const listener = (event: MaintenanceEvent): void => void hub.publish(type, eventView(event));
    service.on(type, listener);
    removers.push(() => service.off(type, listener));
  }
  if (!executor) return () => removers.splice(0).forEach((remove) => remove());
  const on = <K extends keyof ExecutorEventMap>(type: K, listener: Parameters<typeof executor.on<K>>[1]): void => {
    executor.on(type, listener);
    removers.push(() => executor.off(type, listener));
  };
  on('rollout:created', (r) => void hub.publish('rollout:created', rolloutSummary(r)));
  on('rollout:status', (r) => void hub.publish('rollout:status', rolloutSummary(r)));
  on('rollout:wave:published', (info) => void hub.publish('rollout:wave:published', info));
  on('rollout:step:dispatched', (step) => void hub.publish('rollout:step:dispatched', { step }));
  on('rollout:step:finished', (step, status) => void hub.publish('rollout:step:finished', { step, vms: status.vms }));
  on('rollout:step:cancelled', (step) => void hub.publish('rollout:step:cancelled', { step }));
  on('rollout:wave:settled', (info) => void hub.publish('rollout:wave:settled', info));
  on('rollout:error', (info) => {
    hub.publish('rollout:error', { rollout: info.rollout, code: info.error.code, message: info.error.message });
  });
  return () => {
    for (const remove of removers.splice(0)) remove();
  };
}
