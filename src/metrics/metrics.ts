import type { EventEmitter } from 'node:events';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { EVENT_TYPES, VISIBLE_EVENT_STATUSES, type IntermissionError, type MaintenanceEvent } from '../domain/index.js';
import type { AgentEventMap, HostStepStatus, VmStepResult } from '../agent/index.js';
import type { ExecutorEventMap } from '../controller/executor.js';
import type { LeaderLeaseEventMap } from '../controller/leader-lease.js';
import type { MetadataEventListener, MetadataEventMap } from '../imds/index.js';
import type { EventServiceEventMap } from '../service/event-service.js';
import { ROLLOUT_STATUSES, STEP_STATUSES, type RolloutRecord, type StepRecord } from '../store/rollout-store.js';
import { LiveEvents } from './internal/live-events.js';
import { metadataEndpointOf, metadataMethodOf } from './internal/metadata-labels.js';
import { RolloutCensus } from './internal/rollout-census.js';

/**
 * Buckets of VM pauses and guest clock offsets, in seconds: from a millisecond (an in-place VMM
 * switch-over) to 30 s, the hard pause budget (`MAX_PAUSE_BUDGET_MS`), dense around the few seconds a
 * host patch under pause takes. Nothing lands in `+Inf` unless a budget was overrun.
 */
export const PAUSE_SECONDS_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 25, 30,
]);

/**
 * Buckets of the clock offset left after resynchronisation, in seconds: from 100 µs to 5 s, with
 * the health gate's default bound (250 ms) as a bucket edge so that the gate's failures can be read
 * off the histogram.
 */
export const CLOCK_RESIDUAL_SECONDS_BUCKETS: readonly number[] = Object.freeze([
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
]);

/** What the transitions counter counts of each scheduled event. */
export const EVENT_TRANSITIONS = [
  'scheduled',
  'approved',
  'started',
  'ended',
  'removed_completed',
  'removed_cancelled',
] as const;
/** One of {@link EVENT_TRANSITIONS}: the `transition` label of the transitions counter. */
export type EventTransition = (typeof EVENT_TRANSITIONS)[number];

/** Paths on which a VM is paused, whose pause and clock series exist from the start. */
const PAUSING_PATHS = ['pause', 'in-place-migration'] as const;

/** Every metric this module registers (process metrics aside), by what it measures. */
export const METRIC_NAMES = Object.freeze({
  eventTransitions: 'intermission_scheduled_event_transitions_total',
  liveEvents: 'intermission_scheduled_events',
  tickErrors: 'intermission_event_service_tick_errors_total',
  rollouts: 'intermission_rollouts',
  rolloutCurrentWave: 'intermission_rollout_current_wave',
  rolloutWaves: 'intermission_rollout_waves',
  rolloutFailedHosts: 'intermission_rollout_failed_hosts',
  rolloutHostSteps: 'intermission_rollout_host_steps',
  hostStepsFinished: 'intermission_rollout_host_steps_finished_total',
  healthGateFailedHosts: 'intermission_rollout_health_gate_failed_hosts_total',
  rolloutErrors: 'intermission_rollout_errors_total',
  vmPause: 'intermission_vm_pause_seconds',
  vmClockOffset: 'intermission_vm_clock_offset_seconds',
  vmClockResidual: 'intermission_vm_clock_residual_seconds',
  pauseBudgetViolations: 'intermission_vm_pause_budget_violations_total',
  vmOperations: 'intermission_vm_operations_total',
  leaseExpirations: 'intermission_agent_resume_lease_expirations_total',
  adoptedResumes: 'intermission_agent_adopted_resumes_total',
  agentHostSteps: 'intermission_agent_host_steps_total',
  agentErrors: 'intermission_agent_errors_total',
  metadataRequests: 'intermission_metadata_requests_total',
  metadataRequestErrors: 'intermission_metadata_request_errors_total',
  metadataApprovals: 'intermission_metadata_approved_events_total',
  metadataEnablements: 'intermission_metadata_scope_enablements_total',
  listenerErrors: 'intermission_metrics_listener_errors_total',
  controllerLeader: 'intermission_controller_leader',
  controllerLeaseEpoch: 'intermission_controller_lease_epoch',
  controllerLeaseChanges: 'intermission_controller_lease_changes_total',
} as const);

/** Which emitter the per-VM measurements (pauses, clocks, outcomes, budget violations) are taken from. */
export type VmMeasurementSource = 'executor' | 'agent';

/** Options of {@link createMetrics}. */
export interface CreateMetricsOptions {
  /**
   * Also collect prom-client's default metrics (`process_*`, `nodejs_*`: CPU, memory, event-loop
   * lag, GC) into this registry, under their usual names. Default false: they start an event-loop
   * monitor and GC observer, which a composition root wants and a test does not.
   */
  readonly processMetrics?: boolean;
  /**
   * Where VM measurements come from. `executor` (default): the controller's
   * `rollout:step:finished`, announced once per host step as it is recorded. `agent`: the agent's
   * `agent:step:end`, for a process that runs agents without the executor. One source only, so
   * that a process running both never counts a VM twice.
   */
  readonly vmMeasurementsFrom?: VmMeasurementSource;
  /** Labels added to every series, e.g. `{ role: 'controller' }`. Keep them constant. */
  readonly defaultLabels?: Readonly<Record<string, string>>;
}

/** Stops a subscription. Calling it again does nothing. */
export type Unsubscribe = () => void;

/** What {@link IntermissionMetrics.observeEventService} needs of the event service. */
export interface ObservedEventService extends EventEmitter<EventServiceEventMap> {
  /** The live events; when present, they seed the live-events gauge at subscription. */
  list?(): readonly MaintenanceEvent[];
}

/** What {@link IntermissionMetrics.observeAgent} needs of a host agent. */
export interface ObservedAgent extends EventEmitter<AgentEventMap> {
  /** The agent's host: the `host` label of its series. */
  readonly host: string;
}

/** What {@link IntermissionMetrics.observeLease} needs of the leader lease. */
export interface ObservedLease extends EventEmitter<LeaderLeaseEventMap> {
  /** The epoch this replica leads with now, undefined while it stands by. */
  readonly epoch: number | undefined;
}

/** Options of {@link IntermissionMetrics.observeExecutor}. */
export interface ObserveExecutorOptions {
  /**
   * Rollouts and their steps as stored (`store.listRollouts()`, `store.listSteps(id)`), so that a
   * restarted controller's rollout gauges start from the truth rather than from what it sees next.
   */
  readonly restore?: {
    readonly rollouts: readonly RolloutRecord[];
    readonly steps?: readonly StepRecord[];
  };
}

/** The metrics of one process, in a registry of their own. */
export interface IntermissionMetrics {
  /** The registry every metric is in (never prom-client's global one). */
  readonly registry: Registry;
  /** The Content-Type of {@link render}'s output (Prometheus text format 0.0.4). */
  readonly contentType: string;
  /** Subscribes to the event service's transitions. Seeds the live-events gauge from `list()`. */
  observeEventService(service: ObservedEventService): Unsubscribe;
  /** Subscribes to the rollout executor. */
  observeExecutor(executor: EventEmitter<ExecutorEventMap>, options?: ObserveExecutorOptions): Unsubscribe;
  /** Subscribes to one host agent. */
  observeAgent(agent: ObservedAgent): Unsubscribe;
  /** Subscribes to the controller's leader lease: whether this replica leads, and with which epoch. */
  observeLease(lease: ObservedLease): Unsubscribe;
  /** Pass as `createMetadataApp({ onEvent })`; it never throws. */
  readonly metadataListener: MetadataEventListener;
  /** The Prometheus text exposition of every metric. */
  render(): Promise<string>;
}

/**
 * Builds the metrics of a process in their own registry. The core emits typed events and imports
 * nothing of this module: each `observe…` subscribes to one emitter and returns its unsubscribe.
 * Observing the same emitter twice is one subscription.
 *
 * Label cardinality is bounded by construction: labels are enums of the domain (event types,
 * statuses, VM paths, outcomes, error codes), host names (bounded by the fleet), metadata endpoints
 * folded into five values, and rollout ids on the per-rollout gauges only, which exist while a
 * rollout is running, paused or halted and disappear once it completes or is cancelled. VM names
 * and event ids are never labels.
 */
export function createMetrics(options: CreateMetricsOptions = {}): IntermissionMetrics {
  const registry = new Registry();
  if (options.defaultLabels) registry.setDefaultLabels({ ...options.defaultLabels });
  if (options.processMetrics === true) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const vmSource: VmMeasurementSource = options.vmMeasurementsFrom ?? 'executor';

  // --- Scheduled events ---------------------------------------------------------------------------
  const live = new LiveEvents();
  const eventTransitions = new Counter({
    name: METRIC_NAMES.eventTransitions,
    help: 'Scheduled events that went through each transition, by event type. removed_* are events that left the documents, completed or cancelled.',
    labelNames: ['type', 'transition'] as const,
    registers,
  });
  for (const type of EVENT_TYPES) {
    for (const transition of EVENT_TRANSITIONS) eventTransitions.inc({ type, transition }, 0);
  }
  const liveEvents: Gauge<'type' | 'status'> = new Gauge({
    name: METRIC_NAMES.liveEvents,
    help: 'Scheduled events listed in the documents now, by event type and the status tenants see (an ended event is Started until its linger runs out).',
    labelNames: ['type', 'status'] as const,
    registers,
    collect: () => {
      liveEvents.reset();
      for (const type of EVENT_TYPES) {
        for (const status of VISIBLE_EVENT_STATUSES) liveEvents.set({ type, status }, 0);
      }
      for (const { key, count } of live.counts().values()) {
        liveEvents.set({ type: key.type, status: key.status }, count);
      }
    },
  });
  const tickErrors = new Counter({
    name: METRIC_NAMES.tickErrors,
    help: 'Background ticks of the event service that failed (retried on the next one), by error code.',
    labelNames: ['code'] as const,
    registers,
  });

  // --- Leader lease -------------------------------------------------------------------------------
  const controllerLeader = new Gauge({
    name: METRIC_NAMES.controllerLeader,
    help: 'Whether this controller replica leads (1) or stands by (0): exactly one replica of a database should be 1.',
    registers,
  });
  const controllerLeaseEpoch = new Gauge({
    name: METRIC_NAMES.controllerLeaseEpoch,
    help: 'The fencing epoch of the lease as this replica last saw it (its own while it leads).',
    registers,
  });
  const controllerLeaseChanges = new Counter({
    name: METRIC_NAMES.controllerLeaseChanges,
    help: 'Times this replica took the lead (acquired) or stopped leading (lost).',
    labelNames: ['change'] as const,
    registers,
  });

  // --- Rollouts -----------------------------------------------------------------------------------
  const census = new RolloutCensus();
  const rollouts: Gauge<'status'> = new Gauge({
    name: METRIC_NAMES.rollouts,
    help: 'Rollouts by status: those not over, and the completed and cancelled ones seen by this process (or restored from the store).',
    labelNames: ['status'] as const,
    registers,
    collect: () => {
      const counts = census.statusCounts();
      for (const status of ROLLOUT_STATUSES) rollouts.set({ status }, counts.get(status) ?? 0);
    },
  });
  const currentWave: Gauge<'rollout'> = new Gauge({
    name: METRIC_NAMES.rolloutCurrentWave,
    help: 'Index (from 0) of the wave a rollout is in. Per rollout id, only while the rollout is running, paused or halted.',
    labelNames: ['rollout'] as const,
    registers,
    collect: () => {
      currentWave.reset();
      for (const r of census.active()) currentWave.set({ rollout: r.id }, r.wave);
    },
  });
  const totalWaves: Gauge<'rollout'> = new Gauge({
    name: METRIC_NAMES.rolloutWaves,
    help: "Waves in a rollout's plan. Per rollout id, only while the rollout is running, paused or halted.",
    labelNames: ['rollout'] as const,
    registers,
    collect: () => {
      totalWaves.reset();
      for (const r of census.active()) totalWaves.set({ rollout: r.id }, r.waves);
    },
  });
  const failedHosts: Gauge<'rollout'> = new Gauge({
    name: METRIC_NAMES.rolloutFailedHosts,
    help: 'Hosts of a rollout whose step failed or whose VMs failed the health gate, against its failure budget. Per rollout id, only while the rollout is running, paused or halted.',
    labelNames: ['rollout'] as const,
    registers,
    collect: () => {
      failedHosts.reset();
      for (const r of census.active()) failedHosts.set({ rollout: r.id }, r.failedHosts);
    },
  });
  const hostSteps: Gauge<'rollout' | 'status'> = new Gauge({
    name: METRIC_NAMES.rolloutHostSteps,
    help: 'Host steps of a rollout by status (pending, dispatched, succeeded, failed, cancelled by an operator). Per rollout id, only while the rollout is running, paused or halted.',
    labelNames: ['rollout', 'status'] as const,
    registers,
    collect: () => {
      hostSteps.reset();
      for (const r of census.active()) {
        for (const status of STEP_STATUSES) hostSteps.set({ rollout: r.id, status }, r.steps.get(status) ?? 0);
      }
    },
  });
  const stepsFinished = new Counter({
    name: METRIC_NAMES.hostStepsFinished,
    help: 'Host steps the executor recorded as finished with an agent status, by result.',
    labelNames: ['result'] as const,
    registers,
  });
  for (const result of ['succeeded', 'failed']) stepsFinished.inc({ result }, 0);
  const gateFailures = new Counter({
    name: METRIC_NAMES.healthGateFailedHosts,
    help: "Hosts whose step succeeded but whose VMs failed a wave's health gate (not running, clock residual over bound, or no Scheduled Events poll since).",
    registers,
  });
  const rolloutErrors = new Counter({
    name: METRIC_NAMES.rolloutErrors,
    help: 'Failed reconcile passes or agent polls of the rollout executor (retried), by error code.',
    labelNames: ['code'] as const,
    registers,
  });

  // --- VM measurements ----------------------------------------------------------------------------
  const pauseSeconds = new Histogram({
    name: METRIC_NAMES.vmPause,
    help: 'Guest-visible pause of each VM paused by a host step, in seconds, by path (pause, in-place-migration).',
    labelNames: ['path'] as const,
    buckets: [...PAUSE_SECONDS_BUCKETS],
    registers,
  });
  const clockOffsetSeconds = new Histogram({
    name: METRIC_NAMES.vmClockOffset,
    help: "Absolute offset of a VM's guest clock right after resume, before resynchronisation, in seconds, by path.",
    labelNames: ['path'] as const,
    buckets: [...PAUSE_SECONDS_BUCKETS],
    registers,
  });
  const clockResidualSeconds = new Histogram({
    name: METRIC_NAMES.vmClockResidual,
    help: "Absolute offset of a VM's guest clock left after resynchronisation, in seconds, by path.",
    labelNames: ['path'] as const,
    buckets: [...CLOCK_RESIDUAL_SECONDS_BUCKETS],
    registers,
  });
  for (const path of PAUSING_PATHS) {
    pauseSeconds.zero({ path });
    clockOffsetSeconds.zero({ path });
    clockResidualSeconds.zero({ path });
  }
  const budgetViolations = new Counter({
    name: METRIC_NAMES.pauseBudgetViolations,
    help: 'VMs paused longer than their pause budget (measured pause above the budget), by path.',
    labelNames: ['path'] as const,
    registers,
  });
  for (const path of PAUSING_PATHS) budgetViolations.inc({ path }, 0);
  const vmOperations = new Counter({
    name: METRIC_NAMES.vmOperations,
    help: 'VMs handled by host steps, by path and outcome (ok, failed, lease-resumed, skipped).',
    labelNames: ['path', 'outcome'] as const,
    registers,
  });

  // --- Agents -------------------------------------------------------------------------------------
  const leaseExpirations = new Counter({
    name: METRIC_NAMES.leaseExpirations,
    help: 'VMs resumed by their resume lease because their step did not resume them within the pause budget, by host.',
    labelNames: ['host'] as const,
    registers,
  });
  const adoptedResumes = new Counter({
    name: METRIC_NAMES.adoptedResumes,
    help: 'VMs an agent found paused at start-up (an interrupted step) and resumed, by host.',
    labelNames: ['host'] as const,
    registers,
  });
  const agentSteps = new Counter({
    name: METRIC_NAMES.agentHostSteps,
    help: 'Host steps an agent ran to the end, by host and result.',
    labelNames: ['host', 'result'] as const,
    registers,
  });
  const agentErrors = new Counter({
    name: METRIC_NAMES.agentErrors,
    help: 'Failures of an agent outside a step result, by host and error code.',
    labelNames: ['host', 'code'] as const,
    registers,
  });

  // --- Metadata service ---------------------------------------------------------------------------
  const metadataRequests = new Counter({
    name: METRIC_NAMES.metadataRequests,
    help: 'Metadata requests answered, by endpoint, method (GET, POST, other) and status code (200 and 304 included).',
    labelNames: ['endpoint', 'method', 'status'] as const,
    registers,
  });
  const metadataErrors = new Counter({
    name: METRIC_NAMES.metadataRequestErrors,
    help: 'Metadata requests refused or failed, by error code.',
    labelNames: ['code'] as const,
    registers,
  });
  const metadataApprovals = new Counter({
    name: METRIC_NAMES.metadataApprovals,
    help: 'Event ids named in StartRequests by VMs, by result: approved now, already approved or started, unknown to the VM.',
    labelNames: ['result'] as const,
    registers,
  });
  for (const result of ['approved', 'already_approved', 'unknown']) metadataApprovals.inc({ result }, 0);
  const metadataEnablements = new Counter({
    name: METRIC_NAMES.metadataEnablements,
    help: 'Scopes for which Scheduled Events was enabled by a first request, by whether it was a re-enablement after idling (reset).',
    labelNames: ['reset'] as const,
    registers,
  });

  const listenerErrors = new Counter({
    name: METRIC_NAMES.listenerErrors,
    help: 'Announcements this module failed to count (a bug here; the emitter is never affected), by event.',
    labelNames: ['event'] as const,
    registers,
  });

  /** A listener that never throws into the emitter: a failing metric must not change the core. */
  function guarded<A extends unknown[]>(event: string, handle: (...args: A) => void): (...args: A) => void {
    return (...args) => {
      try {
        handle(...args);
      } catch {
        listenerErrors.inc({ event });
      }
    };
  }

  function observeVms(vms: readonly VmStepResult[]): void {
    for (const vm of vms) {
      vmOperations.inc({ path: vm.path, outcome: vm.outcome });
      if (isMeasured(vm.pauseMs)) {
        pauseSeconds.observe({ path: vm.path }, vm.pauseMs / 1000);
        if (vm.pauseMs > vm.pauseBudgetMs) budgetViolations.inc({ path: vm.path });
      }
      if (isMeasured(vm.clockOffsetMs)) {
        clockOffsetSeconds.observe({ path: vm.path }, Math.abs(vm.clockOffsetMs) / 1000);
      }
      if (isMeasured(vm.clockResidualMs)) {
        clockResidualSeconds.observe({ path: vm.path }, Math.abs(vm.clockResidualMs) / 1000);
      }
    }
  }

  const subscriptions = new WeakMap<object, Unsubscribe>();
  function subscribeOnce(emitter: object, subscribe: () => Unsubscribe): Unsubscribe {
    const existing = subscriptions.get(emitter);
    if (existing) return existing;
    const stop = subscribe();
    let stopped = false;
    const unsubscribe: Unsubscribe = () => {
      if (stopped) return;
      stopped = true;
      subscriptions.delete(emitter);
      stop();
    };
    subscriptions.set(emitter, unsubscribe);
    return unsubscribe;
  }

  function countTransition(event: MaintenanceEvent, transition: EventTransition): void {
    eventTransitions.inc({ type: event.type, transition });
  }

  function observeEventService(service: ObservedEventService): Unsubscribe {
    return subscribeOnce(service, () => {
      for (const event of service.list?.() ?? []) live.scheduled(event);
      const onScheduled = guarded('event:scheduled', (event: MaintenanceEvent) => {
        countTransition(event, 'scheduled');
        live.scheduled(event);
      });
      const onApproved = guarded('event:approved', (event: MaintenanceEvent) => countTransition(event, 'approved'));
      const onStarted = guarded('event:started', (event: MaintenanceEvent) => {
        countTransition(event, 'started');
        live.changed(event);
      });
      const onEnded = guarded('event:ended', (event: MaintenanceEvent) => {
        countTransition(event, 'ended');
        live.changed(event);
      });
      const onRemoved = guarded('event:removed', (event: MaintenanceEvent) => {
        countTransition(event, event.removalReason === 'cancelled' ? 'removed_cancelled' : 'removed_completed');
        live.changed(event);
      });
      const onTickError = guarded('tick:error', (error: IntermissionError) => tickErrors.inc({ code: error.code }));
      service.on('event:scheduled', onScheduled);
      service.on('event:approved', onApproved);
      service.on('event:started', onStarted);
      service.on('event:ended', onEnded);
      service.on('event:removed', onRemoved);
      service.on('tick:error', onTickError);
      return () => {
        service.off('event:scheduled', onScheduled);
        service.off('event:approved', onApproved);
        service.off('event:started', onStarted);
        service.off('event:ended', onEnded);
        service.off('event:removed', onRemoved);
        service.off('tick:error', onTickError);
      };
    });
  }

  function observeExecutor(
    executor: EventEmitter<ExecutorEventMap>,
    observe: ObserveExecutorOptions = {},
  ): Unsubscribe {
    return subscribeOnce(executor, () => {
      if (observe.restore) census.restore(observe.restore.rollouts, observe.restore.steps);
      const onCreated = guarded('rollout:created', (rollout: RolloutRecord) => census.created(rollout));
      const onStatus = guarded('rollout:status', (rollout: RolloutRecord) => census.status(rollout));
      const onDispatched = guarded('rollout:step:dispatched', (step: StepRecord) => census.stepDispatched(step));
      const onFinished = guarded('rollout:step:finished', (step: StepRecord, status: HostStepStatus) => {
        const succeeded = status.status === 'succeeded';
        census.stepFinished(step, succeeded);
        stepsFinished.inc({ result: succeeded ? 'succeeded' : 'failed' });
        if (vmSource === 'executor') observeVms(status.vms);
      });
      const onAbandoned = guarded('rollout:step:abandoned', (step: StepRecord) => {
        census.stepFinished(step, false);
        stepsFinished.inc({ result: 'failed' });
      });
      const onCancelled = guarded('rollout:step:cancelled', (step: StepRecord) => census.stepCancelled(step));
      const onSettled = guarded('rollout:wave:settled', (info: { failedHosts: number }) => {
        if (info.failedHosts > 0) gateFailures.inc(info.failedHosts);
      });
      const onError = guarded('rollout:error', (info: { error: IntermissionError }) =>
        rolloutErrors.inc({ code: info.error.code }),
      );
      executor.on('rollout:created', onCreated);
      executor.on('rollout:status', onStatus);
      executor.on('rollout:step:dispatched', onDispatched);
      executor.on('rollout:step:finished', onFinished);
      executor.on('rollout:step:abandoned', onAbandoned);
      executor.on('rollout:step:cancelled', onCancelled);
      executor.on('rollout:wave:settled', onSettled);
      executor.on('rollout:error', onError);
      return () => {
        executor.off('rollout:created', onCreated);
        executor.off('rollout:status', onStatus);
        executor.off('rollout:step:dispatched', onDispatched);
        executor.off('rollout:step:finished', onFinished);
        executor.off('rollout:step:abandoned', onAbandoned);
        executor.off('rollout:step:cancelled', onCancelled);
        executor.off('rollout:wave:settled', onSettled);
        executor.off('rollout:error', onError);
      };
    });
  }

  function observeAgent(agent: ObservedAgent): Unsubscribe {
    return subscribeOnce(agent, () => {
      const host = agent.host;
      // Zero series from the start, so that rate() and alerts see a host before its first expiry.
      leaseExpirations.inc({ host }, 0);
      const onLeaseExpired = guarded('agent:lease:expired', (info: { host: string }) =>
        leaseExpirations.inc({ host: info.host }),
      );
      const onAdopted = guarded('agent:adopt:resumed', (info: { host: string }) =>
        adoptedResumes.inc({ host: info.host }),
      );
      const onStepEnd = guarded('agent:step:end', (status: HostStepStatus) => {
        agentSteps.inc({ host: status.host, result: status.status });
        if (vmSource === 'agent') observeVms(status.vms);
      });
      const onError = guarded('agent:error', (error: IntermissionError) => agentErrors.inc({ host, code: error.code }));
      agent.on('agent:lease:expired', onLeaseExpired);
      agent.on('agent:adopt:resumed', onAdopted);
      agent.on('agent:step:end', onStepEnd);
      agent.on('agent:error', onError);
      return () => {
        agent.off('agent:lease:expired', onLeaseExpired);
        agent.off('agent:adopt:resumed', onAdopted);
        agent.off('agent:step:end', onStepEnd);
        agent.off('agent:error', onError);
      };
    });
  }

  function observeLease(lease: ObservedLease): Unsubscribe {
    return subscribeOnce(lease, () => {
      // It may lead already (the runtime takes the lease before it builds the metrics).
      const epoch = lease.epoch;
      controllerLeader.set(epoch === undefined ? 0 : 1);
      if (epoch !== undefined) controllerLeaseEpoch.set(epoch);
      for (const change of ['acquired', 'lost'] as const) controllerLeaseChanges.inc({ change }, 0);
      const onAcquired = guarded('lease:acquired', (info: { epoch: number }) => {
        controllerLeader.set(1);
        controllerLeaseEpoch.set(info.epoch);
        controllerLeaseChanges.inc({ change: 'acquired' });
      });
      const onLost = guarded('lease:lost', () => {
        controllerLeader.set(0);
        controllerLeaseChanges.inc({ change: 'lost' });
      });
      const onStandby = guarded('lease:standby', (state: { epoch: number }) => controllerLeaseEpoch.set(state.epoch));
      lease.on('lease:acquired', onAcquired);
      lease.on('lease:lost', onLost);
      lease.on('lease:standby', onStandby);
      return () => {
        lease.off('lease:acquired', onAcquired);
        lease.off('lease:lost', onLost);
        lease.off('lease:standby', onStandby);
      };
    });
  }

  function countRequest(payload: { method: string; path: string; status: number }): void {
    metadataRequests.inc({
      endpoint: metadataEndpointOf(payload.path),
      method: metadataMethodOf(payload.method),
      status: String(payload.status),
    });
  }

  const metadataHandlers: { readonly [K in keyof MetadataEventMap]?: (payload: MetadataEventMap[K]) => void } = {
    'imds:approve': (p) => {
      if (p.approved.length > 0) metadataApprovals.inc({ result: 'approved' }, p.approved.length);
      if (p.alreadyApproved.length > 0) metadataApprovals.inc({ result: 'already_approved' }, p.alreadyApproved.length);
    },
    'imds:approve:unknown': (p) => {
      if (p.eventIds.length > 0) metadataApprovals.inc({ result: 'unknown' }, p.eventIds.length);
    },
    'imds:enabled': (p) => metadataEnablements.inc({ reset: String(p.reset) }),
    // Every answer, 200 and 304 included, is counted once by status; refusals and failures by code.
    'imds:response': (p) => countRequest(p),
    'imds:rejected': (p) => metadataErrors.inc({ code: p.code }),
    'imds:error': (p) => metadataErrors.inc({ code: p.error.code }),
  };

  const metadataListener: MetadataEventListener = (name, payload) => {
    try {
      metadataHandlers[name]?.(payload);
    } catch {
      listenerErrors.inc({ event: name });
    }
  };

  return {
    registry,
    contentType: registry.contentType,
    observeEventService,
    observeExecutor,
    observeAgent,
    observeLease,
    metadataListener,
    render: () => registry.metrics(),
  };
}

/** A measurement the agent made: present and a finite number. */
function isMeasured(value: number | null): value is number {
  return value !== null && Number.isFinite(value);
}
