import { pino, type Logger } from 'pino';
import type { EventService } from './event-service.js';
import type { Controller } from '../controller/controller.js';

export type { Logger };

/** JSON logs on stderr (stdout is for results and the listening lines). */
export function createLogger(level: string = process.env.INTERMISSION_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: false }));
}

/** Logs what the event service announces; the service itself knows nothing of logging. */
export function logEventService(service: EventService, log: Logger): void {
  const fields = (e: { eventId: string; type: string; scope: string; resources: readonly string[] }) => ({
    eventId: e.eventId,
    type: e.type,
    scope: e.scope,
    resources: e.resources,
  });
  service.on('event:scheduled', (e) =>
    log.info({ ...fields(e), notBefore: new Date(e.notBefore).toISOString() }, 'event scheduled'),
  );
  service.on('event:approved', (e) => log.info({ ...fields(e), by: e.approvedBy }, 'event approved'));
  service.on('event:started', (e) => log.info(fields(e), 'event started'));
  service.on('event:ended', (e) => log.info(fields(e), 'event impact ended'));
  service.on('event:removed', (e) => log.info({ ...fields(e), reason: e.removalReason }, 'event removed'));
  service.on('tick:error', (error) => log.error({ err: error, code: error.code }, 'event tick failed; retrying'));
}

/** Logs what the rollout executor announces. */
export function logExecutor(controller: Controller, log: Logger): void {
  const ex = controller.executor;
  ex.on('rollout:created', (r) =>
    log.info({ rollout: r.id, waves: r.plan.waves.length, hosts: r.plan.stats.plannedHosts }, 'rollout created'),
  );
  ex.on('rollout:wave:published', (i) => log.info(i, 'wave events published'));
  ex.on('rollout:step:dispatched', (s) =>
    log.info({ rollout: s.rolloutId, step: s.id, host: s.host }, 'host step dispatched'),
  );
  ex.on('rollout:step:finished', (s, status) =>
    log.info(
      {
        rollout: s.rolloutId,
        step: s.id,
        host: s.host,
        status: s.status,
        vms: status.vms.map((v) => ({
          vm: v.name,
          outcome: v.outcome,
          pauseMs: v.pauseMs,
          residualMs: v.clockResidualMs,
        })),
      },
      'host step finished',
    ),
  );
  ex.on('rollout:wave:settled', (i) => log.info(i, 'wave settled'));
  ex.on('rollout:status', (r) =>
    log.info(
      { rollout: r.id, status: r.status, wave: r.wave, phase: r.wavePhase, reason: r.reason },
      'rollout progress',
    ),
  );
  ex.on('rollout:error', (i) =>
    log.warn({ rollout: i.rollout, code: i.error.code, err: i.error.message }, 'rollout pass failed; retrying'),
  );
}
