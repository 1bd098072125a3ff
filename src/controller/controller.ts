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
  #loop: Promise<void> | undefined;
  #stopper: AbortController | undefined;

  constructor(options: ControllerOptions) {
    this.#events = options.events;
    this.#store = options.store;
    this.#agents = options.agents;
    this.#time = options.time;
    this.#intervalMs = options.intervalMs ?? 250;
    const executorOptions: ExecutorOptions = {
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

  /** Starts the reconcile loop. Idempotent. */
  start(): void {
    if (this.#loop) return;
    const stopper = new AbortController();
    this.#stopper = stopper;
    this.#loop = (async () => {
      while (!stopper.signal.aborted) {
        try {
          await this.executor.reconcileOnce();
        } catch (error) {
          this.executor.emit('rollout:error', { rollout: '*', error: coerceError(error) });
        }
        await this.#time.sleep(this.#intervalMs, { signal: stopper.signal }).catch(() => undefined);
      }
    })();
  }

  /** Stops the loop after the pass under way. Idempotent. */
  async stop(): Promise<void> {
    this.#stopper?.abort();
    await this.#loop;
    this.#loop = undefined;
  }

  #kick(): void {
    void this.executor.reconcileOnce().catch(() => undefined);
  }
}
