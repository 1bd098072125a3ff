import { EventEmitter } from 'node:events';
import { IntermissionError, coerceError, type Clock, type MaintenanceEvent } from '../domain/index.js';
import { nextWindowStart, type HostStep, type Plan, type Wave } from '../domain/rollout/index.js';
import type { AgentClient, HostStepRequest, HostStepStatus } from '../agent/index.js';
import type { EventService } from '../service/event-service.js';
import { completionNote, planEventCancellation, settledEvents } from './event-cancellation.js';
import { healthGate } from './health-gate.js';
import {
  FINISHED_STEP_STATUSES,
  pendingStepsOf,
  stepIdOf,
  type RolloutRecord,
  type RolloutStore,
  type StepRecord,
  type VmOperationRecord,
} from '../store/rollout-store.js';

/** What the executor announces; the log, metrics and the dashboard subscribe. */
export interface ExecutorEventMap {
  'rollout:created': [rollout: RolloutRecord];
  'rollout:wave:published': [info: { rollout: string; wave: number; events: number }];
  'rollout:step:dispatched': [step: StepRecord];
  'rollout:step:finished': [step: StepRecord, status: HostStepStatus];
  /** A step recorded as failed without an agent status (its event was withdrawn, or the agent refused it). */
  'rollout:step:abandoned': [step: StepRecord];
  /**
   * A step that will not run because an operator cancelled an event of its VMs: its host is left out
   * of the wave, which is not a failure (`step.cancellation` says who and when).
   */
  'rollout:step:cancelled': [step: StepRecord];
  'rollout:wave:settled': [info: { rollout: string; wave: number; failedHosts: number }];
  'rollout:status': [rollout: RolloutRecord];
  'rollout:error': [info: { rollout: string; error: IntermissionError }];
}

export interface ExecutorOptions {
  readonly store: RolloutStore;
  readonly events: EventService;
  /** The agent of a host. */
  readonly agent: (host: string) => AgentClient;
  readonly clock: Clock;
  /** A resynchronised clock further off than this fails the health gate. Default 250 ms. */
  readonly maxClockResidualMs?: number;
  /**
   * How long after its host step a VM that polled Scheduled Events before the wave has to poll
   * again before the health gate fails it. Default 30 s.
   */
  readonly pollGraceMs?: number;
  /**
   * The fencing epoch to send with every command to an agent: the leader lease's, or undefined when
   * this controller does not lead (then no command is sent: STALE_EPOCH). Absent: commands carry
   * no epoch (an agent counts it as 0), for executors driven directly by tests.
   */
  readonly epoch?: () => number | undefined;
}

/** What {@link RolloutExecutor.cancelEvent} did. */
export interface EventCancellation {
  /** The operator's event, as cancelled. */
  readonly event: MaintenanceEvent;
  /** The rollout whose event it was; undefined when no active rollout holds it any more. */
  readonly rollout: string | undefined;
  /** Host steps recorded as cancelled: their hosts are left out of the wave. */
  readonly steps: readonly StepRecord[];
  /** Other events withdrawn with it, because only the cancelled steps needed them. */
  readonly alsoWithdrawn: readonly string[];
}

/**
 * Applies rollout plans: publishes each wave's events, dispatches a host step once every event of
 * its VMs is due (approved, or NotBefore passed), records what the agents measured, checks the
 * wave's health, and goes on to the next wave after the settle time. Every decision is made in
 * {@link reconcileOnce} from durable state, so a restarted controller continues where the last one
 * stopped: a step marked dispatched is asked for again under the same id (the agent answers from
 * its journal instead of running it twice), and events have ids derived from the plan.
 */
export class RolloutExecutor extends EventEmitter<ExecutorEventMap> {
  readonly #store: RolloutStore;
  readonly #events: EventService;
  readonly #agent: (host: string) => AgentClient;
  readonly #clock: Clock;
  readonly #maxResidualMs: number;
  readonly #pollGraceMs: number;
  readonly #epoch: (() => number | undefined) | undefined;
  #reconciling: Promise<void> | undefined;
  /** Reconcile passes and event cancellations run one at a time (see {@link cancelEvent}). */
  #exclusive: Promise<unknown> = Promise.resolve();

  constructor(options: ExecutorOptions) {
    super();
    this.#store = options.store;
    this.#events = options.events;
    this.#agent = options.agent;
    this.#clock = options.clock;
    this.#maxResidualMs = options.maxClockResidualMs ?? 250;
    this.#pollGraceMs = options.pollGraceMs ?? 30_000;
    this.#epoch = options.epoch;
  }

  /**
   * Sends a host step to its agent with this controller's epoch. Throws STALE_EPOCH without sending
   * anything when the controller does not lead (any more).
   */
  async #submit(host: string, request: HostStepRequest): Promise<HostStepStatus> {
    if (!this.#epoch) return this.#agent(host).submit(request);
    const epoch = this.#epoch();
    if (epoch === undefined) {
      throw new IntermissionError('STALE_EPOCH', 'this controller does not hold the leader lease: it sends no command');
    }
    return this.#agent(host).submit(request, { epoch });
  }

  /** Operators' writes (create, pause, resume, cancel) are the leader's: NOT_LEADER on a standby. */
  #assertLeads(): void {
    if (this.#epoch && this.#epoch() === undefined) {
      throw new IntermissionError(
        'NOT_LEADER',
        'this controller replica stands by: rollouts change only through the leader',
      );
    }
  }

  /** Stores a plan as a new running rollout with all its steps pending. */
  async create(plan: Plan): Promise<RolloutRecord> {
    this.#assertLeads();
    if (plan.waves.length === 0)
      throw new IntermissionError('INVALID_INPUT', `plan ${plan.id} has no waves: nothing to do`);
    const now = this.#clock.now();
    const rollout: RolloutRecord = {
      id: plan.id,
      plan,
      status: 'running',
      reason: null,
      createdAt: now,
      updatedAt: now,
      wave: 0,
      wavePhase: 'pending',
      wavePublishedAt: null,
      settleUntil: null,
      failedHosts: 0,
    };
    const steps = pendingStepsOf(plan);
    await this.#store.createRollout(rollout, steps);
    this.emit('rollout:created', rollout);
    return rollout;
  }

  /** Stops dispatching new host steps; steps under way finish. */
  pause(id: string): Promise<RolloutRecord> {
    return this.#setStatus(id, ['running'], 'paused', 'paused by the operator');
  }

  resume(id: string): Promise<RolloutRecord> {
    return this.#setStatus(id, ['paused'], 'running', null);
  }

  /**
   * Cancels: Scheduled events of the current wave are withdrawn, no further step is dispatched,
   * steps under way finish (their VMs are resumed by them or by their leases).
   */
  async cancel(id: string): Promise<RolloutRecord> {
    const rollout = await this.#setStatus(
      id,
      ['running', 'paused', 'halted'],
      'cancelled',
      'cancelled by the operator',
    );
    await this.#withdrawScheduled(rollout);
    return rollout;
  }

  /**
   * An operator cancels a Scheduled event of a rollout. The host steps with a VM of the event are
   * recorded as `cancelled` (by `by`, now) before the event is withdrawn, so that no pass, and no
   * restarted controller, takes the missing event for a failure; they do not count against the
   * failure budget, and the rollout goes on with the other hosts. Events that only those steps
   * needed are withdrawn too. An event no active rollout holds is simply cancelled.
   *
   * Runs between reconcile passes, never during one, so a step cannot be dispatched on an event
   * being cancelled. CONFLICT when the event is not Scheduled (it started: its impact may be under
   * way), NOT_FOUND when it is not live.
   */
  cancelEvent(eventId: string, options: { readonly by: string }): Promise<EventCancellation> {
    this.#assertLeads();
    return this.#serially(() => this.#cancelEvent(eventId.toUpperCase(), options.by));
  }

  async #cancelEvent(eventId: string, by: string): Promise<EventCancellation> {
    const event = this.#events.get(eventId);
    if (!event) throw new IntermissionError('NOT_FOUND', `no live event ${eventId}`);
    if (event.phase !== 'Scheduled') {
      throw new IntermissionError(
        'CONFLICT',
        `event ${eventId} is ${event.phase}; only Scheduled events can be cancelled (its maintenance may be under way)`,
      );
    }
    const rollout = (await this.#store.listRollouts({ active: true })).find((r) =>
      r.plan.waves[r.wave]?.events.some((e) => e.eventId === eventId),
    );
    const wave = rollout?.plan.waves[rollout.wave];
    if (!rollout || !wave) {
      const [cancelled] = await this.#events.cancel([eventId]);
      return { event: cancelled ?? event, rollout: undefined, steps: [], alsoWithdrawn: [] };
    }
    const now = this.#clock.now();
    const plan = planEventCancellation({
      rolloutId: rollout.id,
      wave,
      steps: await this.#store.listSteps(rollout.id, { wave: rollout.wave }),
      eventId,
      by,
      now,
      isScheduled: (id) => this.#events.get(id)?.phase === 'Scheduled',
    });
    // Recorded first: should the withdrawal fail, the next pass withdraws what no step needs.
    // The rollout record is not written: a pause or cancel of the rollout may be under way.
    if (plan.steps.length > 0) await this.#store.saveProgress({ steps: plan.steps });
    const cancelled = await this.#events.cancel(plan.withdraw);
    for (const step of plan.steps) this.emit('rollout:step:cancelled', step);
    return {
      event: cancelled.find((e) => e.eventId === eventId) ?? event,
      rollout: rollout.id,
      steps: plan.steps,
      alsoWithdrawn: plan.withdraw.filter((id) => id !== eventId),
    };
  }

  /** One pass over every active rollout. Concurrent calls share one pass. */
  reconcileOnce(): Promise<void> {
    this.#reconciling ??= this.#serially(() => this.#reconcileAll()).finally(() => {
      this.#reconciling = undefined;
    });
    return this.#reconciling;
  }

  #serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#exclusive.then(work, work);
    this.#exclusive = run.catch(() => undefined);
    return run;
  }

  async #reconcileAll(): Promise<void> {
    for (const rollout of await this.#store.listRollouts({ active: true })) {
      try {
        await this.#reconcile(rollout);
      } catch (error) {
        const e = coerceError(error);
        // Deposed: the whole pass stops here, and so does this controller (see Controller).
        if (e.code === 'STALE_EPOCH') throw e;
        this.emit('rollout:error', { rollout: rollout.id, error: e });
      }
    }
  }

  async #reconcile(initial: RolloutRecord): Promise<void> {
    let rollout = initial;
    const wave = rollout.plan.waves[rollout.wave];
    if (!wave) {
      await this.#save({ ...rollout, status: 'completed', reason: null });
      return;
    }
    let steps = await this.#store.listSteps(rollout.id, { wave: rollout.wave });
    steps = await this.#pollDispatched(rollout, wave, steps);
    rollout = (await this.#store.getRollout(rollout.id)) ?? rollout;
    await this.#endFinishedEvents(rollout.id, wave, steps);

    if (rollout.status === 'cancelled' || rollout.status === 'halted' || rollout.status === 'paused') return;
    const now = this.#clock.now();

    if (rollout.wavePhase === 'pending') {
      if (rollout.settleUntil !== null && now < rollout.settleUntil) return;
      await this.#publish(rollout, wave, now);
      return;
    }
    if (rollout.failedHosts > rollout.plan.failureBudget.maxFailedHosts) {
      // Steps under way finish and are still polled; nothing new starts.
      await this.#withdrawScheduled(rollout);
      await this.#save({
        ...rollout,
        status: 'halted',
        reason: `failure budget spent: ${rollout.failedHosts} failed hosts (budget ${rollout.plan.failureBudget.maxFailedHosts})`,
      });
      return;
    }
    if (rollout.wavePhase === 'published') {
      if (steps.every((s) => FINISHED_STEP_STATUSES.has(s.status))) {
        await this.#finishWave(rollout, wave, steps, now);
        return;
      }
      await this.#dispatchReady(rollout, wave, steps, now);
      return;
    }
    // settling
    if (rollout.settleUntil !== null && now < rollout.settleUntil) return;
    const gate = await healthGate({
      rollout,
      wave,
      steps,
      now,
      agent: this.#agent,
      events: this.#events,
      maxResidualMs: this.#maxResidualMs,
      pollGraceMs: this.#pollGraceMs,
    });
    if (gate === 'wait') return;
    const failedHosts = rollout.failedHosts + gate.failedHosts.length;
    this.emit('rollout:wave:settled', { rollout: rollout.id, wave: wave.index, failedHosts: gate.failedHosts.length });
    if (failedHosts > rollout.plan.failureBudget.maxFailedHosts) {
      await this.#save({
        ...rollout,
        failedHosts,
        status: 'halted',
        reason: `failure budget spent: ${failedHosts} failed hosts (budget ${rollout.plan.failureBudget.maxFailedHosts}); health gate: ${gate.reasons.join('; ')}`,
      });
      return;
    }
    const next = rollout.wave + 1;
    const completed = next >= rollout.plan.waves.length;
    await this.#save({
      ...rollout,
      failedHosts,
      wave: next,
      wavePhase: 'pending',
      wavePublishedAt: null,
      ...(completed
        ? { status: 'completed' as const, reason: completionNote(await this.#store.listSteps(rollout.id)) }
        : {}),
    });
  }

  /** Publishes the wave's events with at least the plan's notice, starting inside a window. */
  async #publish(rollout: RolloutRecord, wave: Wave, now: number): Promise<void> {
    const windows = rollout.plan.policy.windows;
    let published = 0;
    for (const planned of wave.events) {
      if (this.#events.get(planned.eventId)) continue; // published before a restart
      // Each event gets the full notice from the moment it is written (publishing a big wave takes
      // time): a relative notice is measured by the event service itself. With windows, NotBefore
      // is the first window start after the notice.
      const earliest = Math.max(now, this.#events.now()) + wave.noticeMs;
      const windowStart = windows.length === 0 ? undefined : nextWindowStart(windows, earliest);
      await this.#events.schedule({
        eventId: planned.eventId,
        type: planned.type,
        resources: planned.resources,
        ...(windowStart === undefined || windowStart <= earliest
          ? { noticeMs: wave.noticeMs }
          : { notBefore: windowStart }),
        description: planned.description,
        source: planned.source,
        durationInSeconds: planned.durationInSeconds,
        owner: planned.owner,
      });
      published++;
    }
    await this.#save({ ...rollout, wavePhase: 'published', wavePublishedAt: now });
    this.emit('rollout:wave:published', { rollout: rollout.id, wave: wave.index, events: published });
  }

  /**
   * Dispatches pending steps, in plan order, whose events are due and which fit the limits. The
   * pass's steps are started together: one write starts their events, one marks them dispatched
   * (before any agent is asked, so that a restart asks again under the same ids).
   */
  async #dispatchReady(rollout: RolloutRecord, wave: Wave, steps: StepRecord[], now: number): Promise<void> {
    const policy = rollout.plan.policy;
    const planned = new Map(wave.batches.flatMap((b) => b.steps).map((s) => [stepIdOf(rollout.id, s), s]));
    let inFlight = steps.filter((s) => s.status === 'dispatched').length;
    let pausedVms = steps
      .filter((s) => s.status === 'dispatched')
      .reduce((n, s) => n + (planned.get(s.id)?.pausedVms ?? 0), 0);
    const pending = steps
      .filter((s) => s.status === 'pending')
      .sort((a, b) => a.batch - b.batch || (a.host < b.host ? -1 : 1));
    const ready: { record: StepRecord; step: HostStep }[] = [];
    const withdrawn: StepRecord[] = [];
    const toStart = new Set<string>();
    for (const record of pending) {
      const step = planned.get(record.id);
      if (!step) continue;
      if (policy.maxHostsInParallel !== null && inFlight >= policy.maxHostsInParallel) break;
      if (policy.maxVmsPausedAtOnce !== null && inFlight > 0 && pausedVms + step.pausedVms > policy.maxVmsPausedAtOnce)
        break;
      const ids = [...new Set(step.vms.flatMap((vm) => (vm.eventId === null ? [] : [vm.eventId])))];
      const events = ids.map((id) => this.#events.get(id));
      if (events.some((e) => e === undefined)) {
        withdrawn.push(record);
        continue;
      }
      // Invariant 3: nothing happens to a VM before its event is approved or past NotBefore.
      if (!events.every((e) => e !== undefined && (e.phase !== 'Scheduled' || this.#events.isDue(e)))) continue;
      for (const e of events) if (e?.phase === 'Scheduled') toStart.add(e.eventId);
      ready.push({ record, step });
      inFlight++;
      pausedVms += step.pausedVms;
    }
    if (withdrawn.length > 0) {
      await this.#finishSteps(
        rollout,
        withdrawn.map((record) => ({
          record,
          status: undefined,
          error: 'an event of this step was withdrawn; its VMs were not touched',
        })),
        now,
      );
    }
    if (ready.length === 0) return;
    if (toStart.size > 0) await this.#events.start([...toStart]);
    const dispatched = ready.map(({ record }): StepRecord => ({ ...record, status: 'dispatched', dispatchedAt: now }));
    await this.#store.saveProgress({ steps: dispatched });
    for (const d of dispatched) this.emit('rollout:step:dispatched', d);
    const refused: { record: StepRecord; status: undefined; error: string }[] = [];
    let deposed: IntermissionError | undefined;
    await Promise.all(
      ready.map(async ({ step }, i) => {
        try {
          await this.#submit(step.host, this.#request(rollout.plan, rollout.id, step));
        } catch (error) {
          const e = coerceError(error);
          if (e.code === 'STALE_EPOCH') {
            // Not the agent's verdict on the step: another controller leads and will send it again.
            deposed = e;
            return;
          }
          // A retryable failure (agent unreachable) is retried by the next pass's poll.
          const record = dispatched[i];
          if (!e.retryable && record)
            refused.push({ record, status: undefined, error: `agent refused the step: ${e.message}` });
        }
      }),
    );
    if (deposed) throw deposed;
    if (refused.length > 0) await this.#finishSteps(rollout, refused, now);
  }

  #request(plan: Plan, rolloutId: string, step: HostStep): HostStepRequest {
    return {
      stepId: stepIdOf(rolloutId, step),
      rolloutId,
      host: step.host,
      kind: step.kind,
      update: {
        id: plan.update.id,
        kind: plan.update.kind,
        expectedApplyMs: step.applyMs,
        targetVmmVersion: plan.update.vmm?.toVersion ?? null,
      },
      vms: step.vms.map((vm) => ({
        name: vm.name,
        path: vm.classification.path,
        pauseBudgetMs: vm.classification.pauseBudgetMs,
      })),
      maxClockResidualMs: this.#maxResidualMs,
    };
  }

  /** Asks the agents about dispatched steps; re-sends a step an agent never received. */
  async #pollDispatched(rollout: RolloutRecord, wave: Wave, steps: StepRecord[]): Promise<StepRecord[]> {
    const planned = new Map(wave.batches.flatMap((b) => b.steps).map((s) => [stepIdOf(rollout.id, s), s]));
    const finished: { record: StepRecord; status: HostStepStatus; error: string | null }[] = [];
    let deposed: IntermissionError | undefined;
    await Promise.all(
      steps
        .filter((record) => record.status === 'dispatched')
        .map(async (record) => {
          const step = planned.get(record.id);
          try {
            const agent = this.#agent(record.host);
            let status = await agent.status(record.id);
            if (!status && step)
              status = await this.#submit(record.host, this.#request(rollout.plan, rollout.id, step));
            if (status && status.status !== 'running')
              finished.push({ record, status, error: status.error?.message ?? null });
          } catch (error) {
            const e = coerceError(error);
            if (e.code === 'STALE_EPOCH') deposed = e;
            else this.emit('rollout:error', { rollout: rollout.id, error: e });
          }
        }),
    );
    if (deposed) throw deposed;
    if (finished.length === 0) return steps;
    const done = new Map((await this.#finishSteps(rollout, finished, this.#clock.now())).map((s) => [s.id, s]));
    return steps.map((s) => done.get(s.id) ?? s);
  }

  /** Records finished steps, their measurements and the failed-host count in one write. */
  async #finishSteps(
    rollout: RolloutRecord,
    items: readonly { record: StepRecord; status: HostStepStatus | undefined; error: string | null }[],
    now: number,
  ): Promise<StepRecord[]> {
    const steps: StepRecord[] = [];
    const operations: VmOperationRecord[] = [];
    let failed = 0;
    for (const { record, status, error } of items) {
      const ok = status?.status === 'succeeded';
      if (!ok) failed++;
      steps.push({
        ...record,
        status: ok ? 'succeeded' : 'failed',
        finishedAt: status?.finishedAt ?? now,
        result: status ?? null,
        error: ok ? null : (error ?? 'failed'),
      });
      for (const vm of status?.vms ?? []) {
        operations.push({
          rolloutId: rollout.id,
          stepId: record.id,
          vm: vm.name,
          host: record.host,
          path: vm.path,
          outcome: vm.outcome,
          pauseMs: vm.pauseMs,
          pauseBudgetMs: vm.pauseBudgetMs,
          clockOffsetMs: vm.clockOffsetMs,
          clockResidualMs: vm.clockResidualMs,
          at: status?.finishedAt ?? now,
        });
      }
    }
    const current = (await this.#store.getRollout(rollout.id)) ?? rollout;
    const updated: RolloutRecord = { ...current, failedHosts: current.failedHosts + failed, updatedAt: now };
    await this.#store.saveProgress({ rollout: updated, steps, operations });
    items.forEach(({ status }, i) => {
      const step = steps[i];
      if (!step) return;
      if (status) this.emit('rollout:step:finished', step, status);
      else this.emit('rollout:step:abandoned', step);
    });
    return steps;
  }

  /**
   * Once every step touching an event's VMs has finished: ends it when Started, withdraws it when
   * still Scheduled (its steps were cancelled or abandoned, so nothing will happen to its VMs).
   */
  async #endFinishedEvents(rolloutId: string, wave: Wave, steps: StepRecord[]): Promise<void> {
    const { end, withdraw } = settledEvents(rolloutId, wave, steps, (id) => this.#events.get(id)?.phase);
    if (end.length > 0) await this.#events.end(end);
    if (withdraw.length > 0) await this.#events.cancel(withdraw);
  }

  async #finishWave(rollout: RolloutRecord, wave: Wave, steps: StepRecord[], now: number): Promise<void> {
    await this.#endFinishedEvents(rollout.id, wave, steps);
    const current = (await this.#store.getRollout(rollout.id)) ?? rollout;
    await this.#save({ ...current, wavePhase: 'settling', settleUntil: now + current.plan.policy.settleMs });
  }

  async #withdrawScheduled(rollout: RolloutRecord): Promise<void> {
    const wave = rollout.plan.waves[rollout.wave];
    if (!wave) return;
    const scheduled = wave.events
      .filter((e) => this.#events.get(e.eventId)?.phase === 'Scheduled')
      .map((e) => e.eventId);
    if (scheduled.length > 0) await this.#events.cancel(scheduled);
  }

  async #setStatus(
    id: string,
    from: readonly RolloutRecord['status'][],
    to: RolloutRecord['status'],
    reason: string | null,
  ): Promise<RolloutRecord> {
    this.#assertLeads();
    const rollout = await this.#store.getRollout(id);
    if (!rollout) throw new IntermissionError('NOT_FOUND', `no rollout ${id}`);
    if (!from.includes(rollout.status)) {
      throw new IntermissionError('CONFLICT', `rollout ${id} is ${rollout.status}; cannot make it ${to}`);
    }
    return this.#save({ ...rollout, status: to, reason });
  }

  async #save(rollout: RolloutRecord): Promise<RolloutRecord> {
    const updated = { ...rollout, updatedAt: this.#clock.now() };
    await this.#store.saveProgress({ rollout: updated });
    this.emit('rollout:status', updated);
    return updated;
  }
}
