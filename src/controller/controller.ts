import { IntermissionError, coerceError, type Clock } from '../domain/index.js';
import {
  parseRolloutPolicy,
  parseUpdate,
  planRollout,
  type Plan,
  type VmCapabilities,
} from '../domain/rollout/index.js';
import type { AgentClient } from '../agent/index.js';
import type { SimTime } from '../hypervisor/sim/index.js';
import type { EventService } from '../service/event-service.js';
import type { RolloutRecord, RolloutStore, StepRecord, VmOperationRecord } from '../store/rollout-store.js';
import { RolloutExecutor, type ExecutorOptions } from './executor.js';
import type { LeaderLease } from './leader-lease.js';

export interface ControllerOptions {
  readonly events: EventService;
  readonly store: RolloutStore;
  /** The agents, by host name. */
  readonly agents: ReadonlyMap<string, AgentClient>;
  /** Clock and sleeper of the reconcile loop. */
  readonly time: SimTime;
  /** How often the reconcile loop runs. Default 250 ms. */
  readonly intervalMs?: number;
  readonly maxClockResidualMs?: number;
  readonly pollGraceMs?: number;
  /**
   * The leader lease (see leader-lease.ts). With it, this controller reconciles, dispatches and
   * runs the event service's ticks only while it leads, and every command carries the lease's
   * epoch; while it stands by it keeps its event view current from the store and serves reads.
   * Without it (tests driving one controller), it always acts and sends no epoch.
   */
  readonly lease?: LeaderLease;
}

/**
 * Agents asked for their VMs at once when planning. Asking a whole region at once holds every
 * request, answer and parsed body in memory together (hundreds of MB for 10,000 hosts); a few
 * hundred keep that small, while an agent that never answers still holds up only one of them for
 * its timeout.
 */
const CAPABILITY_QUERIES_IN_FLIGHT = 256;

/** A rollout with what the operator wants to see of it. */
export interface RolloutDetail {
  readonly rollout: RolloutRecord;
  readonly steps: readonly StepRecord[];
  readonly operations: readonly VmOperationRecord[];
}

/**
 * The controller: plans updates over the fleet with the capability facts its agents report, and
 * runs the executor's reconcile loop. Plans are pure values; applying one is the only I/O.
 */
export class Controller {
  readonly executor: RolloutExecutor;
  readonly #events: EventService;
  readonly #store: RolloutStore;
  readonly #agents: ReadonlyMap<string, AgentClient>;
  readonly #time: SimTime;
  readonly #intervalMs: number;
  readonly #lease: LeaderLease | undefined;
  #loop: Promise<void> | undefined;
  #stopper: AbortController | undefined;
  /** The epoch this controller last took the lead with and has caught up for (reloaded events). */
  #ledEpoch: number | undefined;
  readonly #unsubscribe: (() => void)[] = [];

  constructor(options: ControllerOptions) {
    this.#events = options.events;
    this.#store = options.store;
    this.#agents = options.agents;
    this.#time = options.time;
    this.#intervalMs = options.intervalMs ?? 250;
    this.#lease = options.lease;
    const lease = options.lease;
    const executorOptions: ExecutorOptions = {
      ...(lease ? { epoch: () => lease.epoch } : {}),
      store: options.store,
      events: options.events,
      clock: options.time satisfies Clock,
      agent: (host) => this.agent(host),
      ...(options.maxClockResidualMs === undefined ? {} : { maxClockResidualMs: options.maxClockResidualMs }),
      ...(options.pollGraceMs === undefined ? {} : { pollGraceMs: options.pollGraceMs }),
    };
    this.executor = new RolloutExecutor(executorOptions);
  }

  agent(host: string): AgentClient {
    const agent = this.#agents.get(host);
    if (!agent) throw new IntermissionError('NOT_FOUND', `no agent for host ${host}`);
    return agent;
  }

  /**
   * Capability facts of every VM, asked of every agent; an agent that does not answer gives none.
   * At most {@link CAPABILITY_QUERIES_IN_FLIGHT} agents are asked at once.
   */
  async capabilities(): Promise<Map<string, VmCapabilities>> {
    const facts = new Map<string, VmCapabilities>();
    const agents = [...this.#agents.values()];
    let next = 0;
    const worker = async (): Promise<void> => {
      for (let agent = agents[next++]; agent !== undefined; agent = agents[next++]) {
        try {
          for (const vm of await agent.vms()) facts.set(vm.name, vm.capabilities);
        } catch {
          // Its VMs fall back with CAPABILITIES_UNKNOWN: the planner never guesses.
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CAPABILITY_QUERIES_IN_FLIGHT, agents.length) }, worker));
    return facts;
  }

  /** Plans an update (a dry run): nothing is published or changed. */
  async plan(input: { update: unknown; policy?: unknown }): Promise<Plan> {
    return planRollout({
      fleet: this.#events.fleet,
      update: parseUpdate(input.update),
      ...(input.policy === undefined ? {} : { policy: parseRolloutPolicy(input.policy) }),
      now: this.#time.now(),
      capabilities: await this.capabilities(),
      timing: this.#events.timing,
    });
  }

  /** Plans and starts a rollout. */
  async apply(input: { update: unknown; policy?: unknown }): Promise<RolloutRecord> {
    const plan = await this.plan(input);
    const rollout = await this.executor.create(plan);
    this.#kick();
    return rollout;
  }

  async detail(id: string): Promise<RolloutDetail> {
    const rollout = await this.#store.getRollout(id);
    if (!rollout) throw new IntermissionError('NOT_FOUND', `no rollout ${id}`);
    const [steps, operations] = await Promise.all([
      this.#store.listSteps(id),
      this.#store.listOperations({ rolloutId: id }),
    ]);
    return { rollout, steps, operations };
  }

  list(): Promise<RolloutRecord[]> {
    return this.#store.listRollouts();
  }

  /** The leader lease, when this controller is one of several replicas (or holds its epoch alone). */
  get lease(): LeaderLease | undefined {
    return this.#lease;
  }

  /** True when this controller may act: it leads (or runs without a lease). */
  isLeader(): boolean {
    return this.#lease === undefined || this.#lease.isLeader();
  }

  /**
   * Starts the reconcile loop, and the lease's loop when there is a lease. Idempotent. With a lease,
   * each pass runs only while this controller leads; the first pass of a new tenure first reloads
   * the event book from the store (what the previous leader published), then starts the event
   * service's ticks, which stop again when the lease is lost.
   */
  start(): void {
    if (this.#loop) return;
    const stopper = new AbortController();
    this.#stopper = stopper;
    const lease = this.#lease;
    if (lease) {
      const onLost = (): void => {
        this.#ledEpoch = undefined;
        void this.#events.stop();
      };
      // A standby keeps its reads (event documents, lists) current from the store.
      const onStandby = (): void => void this.#events.reload().catch(() => undefined);
      this.#events.setWriteGate(() => this.#ledEpoch !== undefined && lease.isLeader());
      lease.on('lease:lost', onLost);
      lease.on('lease:standby', onStandby);
      this.#unsubscribe.push(
        () => lease.off('lease:lost', onLost),
        () => lease.off('lease:standby', onStandby),
      );
      lease.start();
    }
    this.#loop = (async () => {
      while (!stopper.signal.aborted) {
        try {
          if (await this.#mayAct()) await this.executor.reconcileOnce();
        } catch (error) {
          const e = coerceError(error);
          if (e.code === 'STALE_EPOCH') this.#deposed(e);
          else this.executor.emit('rollout:error', { rollout: '*', error: e });
        }
        await this.#time.sleep(this.#intervalMs, { signal: stopper.signal }).catch(() => undefined);
      }
    })();
  }

  /**
   * Whether this pass may act; on the first pass of a tenure, catches up with the store first. The
   * event service ticks only under a lease held.
   */
  async #mayAct(): Promise<boolean> {
    const lease = this.#lease;
    if (!lease) return true;
    const epoch = lease.epoch;
    if (epoch === undefined) return false;
    if (this.#ledEpoch !== epoch) {
      await this.#events.reload();
      this.#ledEpoch = epoch;
      this.#events.startTicking();
    }
    return lease.epoch === epoch;
  }

  /** An agent refused our epoch: another controller leads. Stop acting at once. */
  #deposed(error: IntermissionError): void {
    const epoch = this.#ledEpoch ?? this.#lease?.epoch;
    if (this.#lease && epoch !== undefined) this.#lease.depose(epoch, `deposed: ${error.message}`);
    this.executor.emit('rollout:error', { rollout: '*', error });
  }

  /**
   * Stops the loop after the pass under way, then the lease's loop; the lease is released (a
   * standby takes over at once) unless `release` is false (tests playing a crash). Idempotent.
   */
  async stop(options: { readonly release?: boolean } = {}): Promise<void> {
    this.#stopper?.abort();
    await this.#loop;
    this.#loop = undefined;
    for (const off of this.#unsubscribe.splice(0)) off();
    await this.#lease?.stop(options);
    if (this.#lease) await this.#events.stop();
  }

  #kick(): void {
    if (!this.isLeader() || (this.#lease && this.#ledEpoch === undefined)) return;
    void this.executor.reconcileOnce().catch(() => undefined);
  }
}
