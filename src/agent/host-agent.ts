import { EventEmitter } from 'node:events';
import { isDeepStrictEqual } from 'node:util';
import { IntermissionError, coerceError } from '../domain/index.js';
import {
  MAX_VMM_BUILD_FACTS,
  MAX_VMM_BUILD_REASON_CHARS,
  STEP_KINDS,
  isStepKindName,
  type VmCapabilities,
} from '../domain/rollout/index.js';
import type { HypervisorDriver, ResumeResult } from '../hypervisor/index.js';
import type { SimTime } from '../hypervisor/sim/index.js';
import { adoptHost, type AdoptionClockInfo, type ClockFields } from './adoption.js';
import { EpochFence } from './epoch-fence.js';
import { compactedStatus, requestDigest, type AgentJournal } from './journal.js';
import type { AgentVm, HostStepRequest, HostStepStatus, VmInStep, VmStepResult } from './protocol.js';

/** What a host agent announces; logs, metrics and tests subscribe. */
export interface AgentEventMap {
  'agent:step:start': [request: HostStepRequest];
  'agent:step:end': [status: HostStepStatus];
  /** A VM was resumed by its lease because the step did not resume it in time. */
  'agent:lease:expired': [info: { host: string; vm: string; pausedAt: number; resumedAt: number }];
  /** A VM found paused at start-up (an interrupted step) was resumed. */
  'agent:adopt:resumed': [info: { host: string; vm: string }];
  /** At start-up, the clock of a VM an interrupted step had paused was resynchronised (or could not be). */
  'agent:adopt:clock': [info: AdoptionClockInfo];
  'agent:error': [error: IntermissionError];
}

export interface HostAgentOptions {
  readonly driver: HypervisorDriver;
  readonly journal: AgentJournal;
  /** Clock and sleeper: the wall clock in production, virtual time in tests and simulations. */
  readonly time: SimTime;
  /**
   * How long before the end of a VM's pause budget its lease resumes it, covering the resume
   * itself. Default 1 s, at most a quarter of the budget.
   */
  readonly leaseMarginMs?: number;
  /**
   * Longest a host-side apply may run while no VM is paused (hot patch, reboot, redeploy steps)
   * before it counts as hung and the step fails. Default 30 min.
   */
  readonly applyTimeoutMs?: number;
  /**
   * The fence of controllers' epochs (see epoch-fence.ts): keep it in the agent's state directory
   * (`FileEpochStore`) so that it outlives a restart. Default: in memory.
   */
  readonly fence?: EpochFence;
}

/** Longest a host-side apply of a step without paused VMs may run before it counts as hung. */
const UNPAUSED_APPLY_TIMEOUT_MS = 30 * 60_000;
/** Pause between attempts to resume a VM whose resume failed. */
const RESUME_RETRY_MS = 50;

/**
 * The agent of one host: runs host steps through its hypervisor driver, remembers them in its
 * journal, and holds the resume lease of every VM it pauses: whatever happens to the update, a
 * paused VM is resumed before its pause budget runs out (invariant 1).
 */
export class HostAgent extends EventEmitter<AgentEventMap> {
  readonly host: string;
  readonly #driver: HypervisorDriver;
  readonly #journal: AgentJournal;
  readonly #time: SimTime;
  readonly #leaseMarginMs: number;
  readonly #applyTimeoutMs: number;
  readonly #running = new Map<string, Promise<void>>();
  #closed = false;
  #fence!: EpochFence;

  private constructor(options: HostAgentOptions) {
    super();
    this.host = options.driver.host;
    this.#driver = options.driver;
    this.#journal = options.journal;
    this.#time = options.time;
    this.#leaseMarginMs = options.leaseMarginMs ?? 1000;
    this.#applyTimeoutMs = options.applyTimeoutMs ?? UNPAUSED_APPLY_TIMEOUT_MS;
  }

  /**
   * Starts an agent. Steps the journal shows as running were interrupted by a restart: their paused
   * VMs are resumed at once, the clocks of the VMs they paused resynchronised (whoever resumed them:
   * see `adoption.ts`), and the steps recorded as failed with that, so that they are never run twice.
   */
  static async start(options: HostAgentOptions): Promise<HostAgent> {
    const agent = new HostAgent(options);
    agent.#fence = options.fence ?? (await EpochFence.open());
    await agent.#adopt();
    return agent;
  }

  /** The highest controller epoch this agent has seen (0: none). */
  get highestEpoch(): number {
    return this.#fence.highest;
  }

  get journal(): AgentJournal {
    return this.#journal;
  }

  /** Steps under way in this process. */
  get stepsRunning(): number {
    return this.#running.size;
  }

  /**
   * Accepts a host step. The same step id with the same request answers the recorded status (a
   * retry); with a different request it is a CONFLICT. The step runs in the background.
   */
  async submit(request: HostStepRequest, options: { readonly epoch?: number } = {}): Promise<HostStepStatus> {
    if (this.#closed) throw new IntermissionError('UNREACHABLE', `agent of ${this.host} is shutting down`);
    if (request.host !== this.host) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `step ${request.stepId} is for host ${request.host}, this is ${this.host}`,
      );
    }
    // Fencing first, retries included: a deposed controller gets STALE_EPOCH even for a step this
    // agent knows. A command without an epoch counts as epoch 0 (refused once any controller sent one).
    await this.#fence.admit(options.epoch ?? 0);
    // The wire schema only lets known kinds through, but an in-process caller (or a controller of
    // a newer version, through a looser schema) could send another: refused before it is journaled,
    // so that it never runs nothing and reports success.
    if (!isStepKindName(request.kind)) throw unknownStepKind(request.kind);
    const known = this.#journal.get(request.stepId);
    if (known) {
      if (!isDeepStrictEqual(known.request, request)) {
        throw new IntermissionError('CONFLICT', `step ${request.stepId} was already submitted with other contents`);
      }
      return known.status;
    }
    const compacted = this.#journal.compacted(request.stepId);
    if (compacted) {
      // Finished long ago: its id is never run again, whatever the resend's age.
      if (compacted.requestDigest !== requestDigest(request)) {
        throw new IntermissionError('CONFLICT', `step ${request.stepId} was already submitted with other contents`);
      }
      return compactedStatus(compacted);
    }
    const status: HostStepStatus = {
      stepId: request.stepId,
      host: this.host,
      status: 'running',
      startedAt: this.#time.now(),
      finishedAt: null,
      vms: [],
      error: null,
    };
    await this.#journal.put({ request, status });
    const run = this.#run(request, status)
      .catch((error: unknown) => {
        this.emit('agent:error', coerceError(error));
      })
      .finally(() => this.#running.delete(request.stepId));
    this.#running.set(request.stepId, run);
    return status;
  }

  /** The recorded status of a step, or undefined when this agent never saw it. */
  status(stepId: string): HostStepStatus | undefined {
    const compacted = this.#journal.compacted(stepId);
    return this.#journal.get(stepId)?.status ?? (compacted ? compactedStatus(compacted) : undefined);
  }

  /** The host's VMs with their state and capability facts (for the planner and health gates). */
  async vms(): Promise<AgentVm[]> {
    const infos = await this.#driver.listVms();
    return Promise.all(
      infos.map(async (info) => ({
        name: info.name,
        state: info.state,
        vmmVersion: info.vmmVersion,
        pausedSince: info.pausedSince,
        capabilities: toWireCapabilities(await this.#driver.vmCapabilities({ vm: info.name }).catch(() => ({}))),
      })),
    );
  }

  /** Waits for steps under way (their leases bound how long), then closes the driver. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#running.values());
    await this.#driver.close();
  }

  async #adopt(): Promise<void> {
    await adoptHost({
      host: this.host,
      driver: this.#driver,
      journal: this.#journal,
      now: () => this.#time.now(),
      resync: (vm, bound) => this.#resync(vm, bound),
      onResumed: (vm) => this.emit('agent:adopt:resumed', { host: this.host, vm }),
      onClock: (info) => this.emit('agent:adopt:clock', info),
    });
  }

  async #run(request: HostStepRequest, initial: HostStepStatus): Promise<void> {
    this.emit('agent:step:start', request);
    const results = new Map<string, VmStepResult>(request.vms.map((vm) => [vm.name, blankResult(vm)]));
    let stepError: { code: string; message: string } | null = null;
    try {
      await this.#execute(request, results);
    } catch (error) {
      const e = coerceError(error);
      stepError = { code: e.code, message: e.message };
    }
    const vms = [...results.values()];
    const failed = stepError !== null || vms.some((v) => v.outcome === 'failed' || v.outcome === 'lease-resumed');
    const status: HostStepStatus = {
      ...initial,
      status: failed ? 'failed' : 'succeeded',
      finishedAt: this.#time.now(),
      vms,
      error: stepError ?? (failed ? { code: 'INTERNAL', message: 'one or more VMs failed; see vms' } : null),
    };
    await this.#journal.put({ request, status });
    this.emit('agent:step:end', status);
  }

  async #execute(request: HostStepRequest, results: Map<string, VmStepResult>): Promise<void> {
    const update = {
      id: request.update.id,
      kind: request.update.kind,
      expectedApplyMs: request.update.expectedApplyMs,
    };
    const byPath = (path: VmInStep['path']): VmInStep[] => request.vms.filter((v) => v.path === path);
    const restart = async (vms: readonly VmInStep[]): Promise<void> => {
      for (const vm of vms) {
        await this.#vmOp(results, vm, async () => {
          await this.#driver.reboot({
            vm: vm.name,
            ...(request.update.targetVmmVersion ? { targetVersion: request.update.targetVmmVersion } : {}),
          });
          return { outcome: 'ok' };
        });
      }
    };
    const applyUnpaused = async (): Promise<void> => {
      await this.#driver.applyHostUpdate({ update, deadline: this.#time.now() + this.#applyTimeoutMs });
    };

    switch (request.kind) {
      case 'hot-patch':
        await applyUnpaused();
        return;
      case 'reboot':
        // The host restarts: every VM restarts with it, on the updated host.
        await applyUnpaused();
        await restart(request.vms);
        return;
      case 'redeploy':
        // The VMs leave first (restarted, as on a new host), then the host is updated.
        await restart(request.vms);
        await applyUnpaused();
        return;
      case 'migrate-in-place': {
        // One VM at a time: each pause is only that VM's own switch-over to the new VMM process.
        for (const vm of byPath('in-place-migration')) {
          await this.#vmOp(results, vm, async () => {
            const started = this.#time.now();
            const swap = await this.#driver.swapVmm({
              vm: vm.name,
              targetVersion: request.update.targetVmmVersion ?? `${update.id}`,
              deadline: started + vm.pauseBudgetMs - this.#margin(vm),
            });
            const clock = await this.#resync(vm.name, request.maxClockResidualMs);
            return {
              outcome: 'ok',
              pausedAt: swap.startedAt,
              resumedAt: swap.completedAt,
              pauseMs: swap.downtimeMs,
              ...clock,
            };
          });
        }
        await restart([...byPath('reboot'), ...byPath('redeploy')]);
        return;
      }
      case 'freeze-apply-resume':
        await restart(byPath('redeploy'));
        await this.#freezeApplyResume(request, byPath('pause'), results);
        await restart(byPath('reboot'));
        return;
      default:
        // Exhaustive: a step kind added to STEP_KINDS without a case here fails to compile, and one
        // that slips through at run time fails the step instead of succeeding having done nothing.
        throw unknownStepKind(request.kind);
    }
  }

  /**
   * Pauses the VMs under their leases, applies the update while they are paused, resumes them and
   * resynchronises their clocks. A lease that runs out resumes its VM, aborts the apply, and fails
   * the step with PAUSE_BUDGET_EXCEEDED.
   */
  async #freezeApplyResume(
    request: HostStepRequest,
    vms: readonly VmInStep[],
    results: Map<string, VmStepResult>,
  ): Promise<void> {
    if (vms.length === 0) {
      await this.#driver.applyHostUpdate({
        update: { id: request.update.id, kind: request.update.kind, expectedApplyMs: request.update.expectedApplyMs },
        deadline: this.#time.now() + this.#applyTimeoutMs,
      });
      return;
    }
    const applyAbort = new AbortController();
    const leases = new Map<string, { deadline: number; stop: AbortController; done: Promise<void> }>();
    const paused: VmInStep[] = [];
    try {
      await this.#pauseApplyResume(request, vms, results, { applyAbort, leases, paused });
    } finally {
      // Invariant 4, whatever happened to the update: every VM that was paused and runs again (its
      // own resume, or its lease's) has its clock resynchronised and the residual recorded. An
      // update that failed or was cut short must not leave a guest behind by its pause.
      for (const vm of paused) {
        const outcome = results.get(vm.name)?.outcome;
        if (outcome !== 'ok' && outcome !== 'lease-resumed') continue;
        await this.#vmOp(results, vm, async () => ({
          outcome: 'ok',
          ...(await this.#resync(vm.name, request.maxClockResidualMs)),
        }));
      }
    }
  }

  /** The pause, apply and resume of {@link #freezeApplyResume}, which resynchronises afterwards. */
  async #pauseApplyResume(
    request: HostStepRequest,
    vms: readonly VmInStep[],
    results: Map<string, VmStepResult>,
    {
      applyAbort,
      leases,
      paused,
    }: {
      readonly applyAbort: AbortController;
      readonly leases: Map<string, { deadline: number; stop: AbortController; done: Promise<void> }>;
      readonly paused: VmInStep[];
    },
  ): Promise<void> {
    try {
      for (const vm of vms) {
        const ok = await this.#vmOp(results, vm, async () => {
          // The hypervisor's own lease (a watchdog outside this process) is the backstop should this
          // agent die: it resumes the VM just after this agent's lease would have.
          const { pausedAt } = await this.#driver.pause({
            vm: vm.name,
            leaseUntil: this.#time.now() + vm.pauseBudgetMs - this.#margin(vm) / 2,
          });
          const deadline = pausedAt + vm.pauseBudgetMs - this.#margin(vm);
          const stop = new AbortController();
          const done = this.#time.sleep(Math.max(0, deadline - this.#time.now()), { signal: stop.signal }).then(
            async () => {
              // The budget is running out: resume regardless of the update, then stop the update.
              let resumedAt: number;
              try {
                resumedAt = await this.#resumedAt(
                  vm.name,
                  pausedAt,
                  await this.#resumeRetrying(vm.name, deadline + this.#margin(vm)),
                );
              } catch (error) {
                // Not even retries resumed it: the hypervisor's lease is left to (see pause above).
                // Never a rejection nobody awaits yet: that would end the agent's process.
                const e = coerceError(error);
                const r = results.get(vm.name);
                if (r) results.set(vm.name, { ...r, outcome: 'failed', error: { code: e.code, message: e.message } });
                this.emit('agent:error', e);
                applyAbort.abort(e);
                return;
              }
              const r = results.get(vm.name);
              if (r) {
                results.set(vm.name, {
                  ...r,
                  outcome: 'lease-resumed',
                  resumedAt,
                  pauseMs: resumedAt - pausedAt,
                  error: {
                    code: 'PAUSE_BUDGET_EXCEEDED',
                    message: `resumed by its lease after ${resumedAt - pausedAt} ms`,
                  },
                });
              }
              this.emit('agent:lease:expired', { host: this.host, vm: vm.name, pausedAt, resumedAt });
              applyAbort.abort(
                new IntermissionError('PAUSE_BUDGET_EXCEEDED', `the pause budget of ${vm.name} ran out`),
              );
            },
            () => undefined,
          );
          leases.set(vm.name, { deadline, stop, done });
          paused.push(vm);
          return { outcome: 'ok', pausedAt };
        });
        if (!ok) break;
      }
      if (paused.length === vms.length) {
        const deadline = Math.min(...[...leases.values()].map((l) => l.deadline));
        await this.#driver.applyHostUpdate({
          update: { id: request.update.id, kind: request.update.kind, expectedApplyMs: request.update.expectedApplyMs },
          deadline,
          signal: applyAbort.signal,
        });
      }
    } finally {
      // Resume everything still paused, in order, whatever happened above. A lease is only called
      // off once its VM is known to run again; otherwise it stays armed and tries at its deadline.
      for (const vm of paused) {
        const lease = leases.get(vm.name);
        if (!lease) continue;
        if (results.get(vm.name)?.outcome !== 'lease-resumed') {
          const pausedAt = results.get(vm.name)?.pausedAt ?? null;
          const resumed = await this.#vmOp(results, vm, async () => {
            const result = await this.#resumeRetrying(vm.name, lease.deadline);
            const resumedAt = pausedAt === null ? result.resumedAt : await this.#resumedAt(vm.name, pausedAt, result);
            const since = pausedAt ?? resumedAt;
            return { outcome: 'ok', pausedAt: since, resumedAt, pauseMs: resumedAt - since };
          });
          if (resumed && results.get(vm.name)?.outcome !== 'lease-resumed') lease.stop.abort();
        } else {
          lease.stop.abort();
        }
        await lease.done;
      }
    }
  }

  /**
   * When a VM paused at `pausedAt` ran again. A resume that found it running already was beaten by
   * the hypervisor's lease (this agent was frozen or late): the lease's record has the real time,
   * which the agent's own clock reading would overstate by however late it was.
   */
  async #resumedAt(vm: string, pausedAt: number, result: ResumeResult): Promise<number> {
    if (!result.alreadyRunning) return result.resumedAt;
    const leased = (await this.#driver.leaseResumes({ vm }).catch(() => [])).filter(
      (r) => r.pausedAt >= pausedAt - 1 && r.resumedAt >= pausedAt && r.resumedAt <= result.resumedAt,
    );
    return leased.at(-1)?.resumedAt ?? result.resumedAt;
  }

  /** Resynchronises a VM's clock; tries once more when the residual is above the bound. */
  async #resync(vm: string, maxResidualMs: number | undefined): Promise<ClockFields> {
    if (!this.#driver.capabilities.guestClock)
      return { clockOffsetMs: null, clockResidualMs: null, clockRoundTripMs: null };
    // A resync cut off (the agent frozen mid-call, a guest agent busy) is tried once more: the
    // guest's clock must not stay behind by its pause for want of a second attempt.
    const first = await this.#driver.resyncClock({ vm }).catch(() => this.#driver.resyncClock({ vm }));
    const last =
      maxResidualMs !== undefined && Math.abs(first.residualMs) > maxResidualMs
        ? await this.#driver.resyncClock({ vm })
        : first;
    return {
      clockOffsetMs: first.offsetBeforeMs,
      clockResidualMs: last.residualMs,
      clockRoundTripMs: last.roundTripMs,
    };
  }

  /**
   * Resumes a VM, trying again every 50 ms until it runs or `until` has passed. A resume that
   * fails once (a busy monitor, a transient error) must not leave a VM paused.
   */
  async #resumeRetrying(vm: string, until: number): Promise<ResumeResult> {
    for (;;) {
      try {
        return await this.#driver.resume({ vm });
      } catch (error) {
        if (this.#time.now() >= until) throw error;
        await this.#time.sleep(Math.min(RESUME_RETRY_MS, Math.max(1, until - this.#time.now())));
      }
    }
  }

  #margin(vm: VmInStep): number {
    return Math.min(this.#leaseMarginMs, vm.pauseBudgetMs / 4);
  }

  /** Runs one VM operation, merging what it measured into the VM's result; false when it failed. */
  async #vmOp(
    results: Map<string, VmStepResult>,
    vm: VmInStep,
    op: () => Promise<Partial<VmStepResult> & Pick<VmStepResult, 'outcome'>>,
  ): Promise<boolean> {
    const before = results.get(vm.name) ?? blankResult(vm);
    try {
      const measured = await op();
      const current = results.get(vm.name) ?? before;
      results.set(vm.name, {
        ...current,
        ...measured,
        outcome: current.outcome === 'lease-resumed' ? current.outcome : measured.outcome,
      });
      return true;
    } catch (error) {
      const e = coerceError(error);
      const current = results.get(vm.name) ?? before;
      results.set(vm.name, {
        ...current,
        outcome: current.outcome === 'lease-resumed' ? current.outcome : 'failed',
        error: { code: e.code, message: e.message },
      });
      return false;
    }
  }
}

/**
 * The error for a step kind this agent does not run. Typed `never` so that a `switch` over
 * {@link STEP_KINDS} that misses a kind does not compile where it calls this in its `default`.
 */
export function unknownStepKind(kind: never): IntermissionError {
  return new IntermissionError(
    'INVALID_INPUT',
    `unknown step kind ${JSON.stringify(kind)}: this agent runs ${STEP_KINDS.join(', ')}`,
    { details: { kind, reason: 'UNKNOWN_STEP_KIND' } },
  );
}

function blankResult(vm: VmInStep): VmStepResult {
  return {
    name: vm.name,
    path: vm.path,
    outcome: vm.path === 'none' ? 'skipped' : 'ok',
    pausedAt: null,
    resumedAt: null,
    pauseMs: null,
    pauseBudgetMs: vm.pauseBudgetMs,
    clockOffsetMs: null,
    clockResidualMs: null,
    clockRoundTripMs: null,
    error: null,
  };
}

/** Capability facts as sent over the wire (arrays copied out of their readonly form). */
function toWireCapabilities(c: VmCapabilities): AgentVm['capabilities'] {
  return {
    ...(c.sharedMemory === undefined ? {} : { sharedMemory: c.sharedMemory }),
    ...(c.migratableDevices === undefined ? {} : { migratableDevices: c.migratableDevices }),
    ...(c.blockingDevices === undefined ? {} : { blockingDevices: [...c.blockingDevices] }),
    ...(c.guestAgent === undefined ? {} : { guestAgent: c.guestAgent }),
    ...(c.vmmBuilds === undefined ? {} : { vmmBuilds: wireBuildFacts(c.vmmBuilds) }),
  };
}

/** Which builds can load the VM, bounded as the wire schema requires (a long reason is cut). */
function wireBuildFacts(
  builds: NonNullable<VmCapabilities['vmmBuilds']>,
): NonNullable<AgentVm['capabilities']['vmmBuilds']> {
  const out: NonNullable<AgentVm['capabilities']['vmmBuilds']> = {};
  for (const [version, fact] of Object.entries(builds).slice(0, MAX_VMM_BUILD_FACTS)) {
    out[version] = {
      loadable: fact.loadable,
      ...(fact.reason === undefined ? {} : { reason: fact.reason.slice(0, MAX_VMM_BUILD_REASON_CHARS) }),
    };
  }
  return out;
}
