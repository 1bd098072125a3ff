import { join, resolve } from 'node:path';
import { EpochFence, FileEpochStore, FileJournal, HostAgent, createAgentApp } from '../agent/index.js';
import { SIM_HOST_ROUTE_PREFIX, createSimHostApp } from '../agent/sim-app.js';
import { FleetIndex, IntermissionError, type Fleet } from '../domain/index.js';
import type { HypervisorDriver } from '../hypervisor/driver.js';
import { realTime, type SimHost } from '../hypervisor/sim/index.js';
import type { ListenAddress } from './address.js';
import { serveFetch } from './http.js';
import { ensurePrivateDir } from './private-files.js';
import { AGENT_HTTP_LIMITS, type HttpLimits } from './http-limits.js';
import type { Logger } from './logging.js';
import { openAgentDriver, type AgentDriverChoice } from './driver-registry.js';
import type { QemuHostStart } from './qemu-host.js';

export type { AgentDriverChoice } from './driver-registry.js';

/** Options of {@link startAgentRuntime}. */
export interface AgentRuntimeOptions {
  readonly fleet: Fleet;
  /** The host this agent runs on; it holds the fleet's VMs of that host. */
  readonly host: string;
  /** Directory of the journal (`<state>/agents/<host>.json`): keep it across restarts. */
  readonly stateDir: string;
  /** Where the agent API listens (port 0 picks a free one). */
  readonly listen: ListenAddress;
  /** The controller ↔ agent token. */
  readonly token: string;
  /** Which driver, by kind (see driver-registry.ts). Default: a simulated host seeded with 1. */
  readonly driver?: AgentDriverChoice;
  readonly logger?: Logger;
  /** Limits of the agent API's listener; figures not given are {@link AGENT_HTTP_LIMITS}. */
  readonly httpLimits?: Partial<HttpLimits>;
}

/** A running host agent process. */
export interface AgentRuntime {
  readonly agent: HostAgent;
  /** The driver the agent acts through. */
  readonly driver: HypervisorDriver;
  /** The simulated host the agent drives (it lives in this process); absent for QEMU. */
  readonly simHost: SimHost | undefined;
  /** For QEMU: which VMs were adopted, launched, or found outside the fleet at start. */
  readonly qemu: QemuHostStart | undefined;
  readonly address: ListenAddress;
  readonly journalFile: string;
  /**
   * Refuses new steps, waits for steps under way (their resume leases bound how long) while still
   * answering status requests, then stops listening. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * One host agent, over a simulated host or this machine's QEMU VMs, served over HTTP: the agent
 * half of the multi-process topology (`intermission agent`). Its journal is a file, so a restarted agent answers a step it
 * ran before from the journal and fails a step that its previous process was running instead of
 * running it again (invariant 5). The simulated VMs live in this process: when it dies they die
 * with it and come back running on restart, so the simulator cannot show a VM left paused by a
 * dead agent. QEMU VMs outlive the agent: a restarted agent adopts them (their resume watchdogs
 * bound any pause meanwhile), resumes any still paused, and boots fleet VMs that do not run.
 */
export async function startAgentRuntime(options: AgentRuntimeOptions): Promise<AgentRuntime> {
  const fleet = new FleetIndex(options.fleet);
  const host = fleet.host(options.host);
  if (!host) throw new IntermissionError('INVALID_INPUT', `host ${JSON.stringify(options.host)} is not in the fleet`);
  const time = realTime();
  const choice = options.driver ?? { kind: 'sim' };
  const stateDir = resolve(options.stateDir);
  // The agent's state directory is private, its mode enforced on every start (docs/security.md).
  await ensurePrivateDir(stateDir);
  await ensurePrivateDir(join(stateDir, 'agents'));
  const journalFile = join(stateDir, 'agents', `${options.host}.json`);
  const journal = await FileJournal.open(journalFile);

  // The driver kind's factory (see driver-registry.ts) checks its settings and opens it.
  const { driver, simHost, qemu } = await openAgentDriver(choice, {
    host,
    fleet,
    time,
    ...(options.logger ? { logger: options.logger } : {}),
  });
  // The agent resumes what a dead predecessor left paused, and fails the step it was running.
  // The highest controller epoch seen, beside the journal: a restarted agent still refuses a deposed controller.
  const fence = await EpochFence.open(new FileEpochStore(join(stateDir, 'agents', `${options.host}.epoch`)));
  const agent = await HostAgent.start({ driver, journal, time, fence });
  if (options.logger) logAgent(agent, options.logger);
  const agentApp = createAgentApp({ agent, token: options.token });
  const sim = simHost;
  const simApp = sim ? createSimHostApp({ host: sim, token: options.token }) : undefined;
  let server: Awaited<ReturnType<typeof serveFetch>>;
  try {
    server = await serveFetch(
      (request) =>
        simApp && new URL(request.url).pathname.startsWith(SIM_HOST_ROUTE_PREFIX)
          ? simApp.fetch(request)
          : agentApp.fetch(request),
      options.listen,
      { defaults: AGENT_HTTP_LIMITS, ...(options.httpLimits ? { limits: options.httpLimits } : {}) },
    );
  } catch (error) {
    await agent.close();
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    agent,
    driver,
    simHost,
    qemu,
    address: server.address,
    journalFile,
    close: () =>
      (closing ??= (async () => {
        // Closes the driver too; QEMU VMs outlive the agent (closing only disconnects from them).
        await agent.close();
        await server.close();
      })()),
  };
}

/** Logs what a host agent announces. */
export function logAgent(agent: HostAgent, log: Logger): void {
  agent.on('agent:step:start', (r) =>
    log.info({ host: r.host, step: r.stepId, kind: r.kind, vms: r.vms.length }, 'host step started'),
  );
  agent.on('agent:step:end', (s) =>
    log.info(
      {
        host: s.host,
        step: s.stepId,
        status: s.status,
        error: s.error,
        vms: s.vms.map((v) => ({ vm: v.name, outcome: v.outcome, pauseMs: v.pauseMs })),
      },
      'host step ended',
    ),
  );
  agent.on('agent:lease:expired', (i) => log.warn(i, 'resume lease expired: VM resumed by its lease'));
  agent.on('agent:adopt:resumed', (i) => log.warn(i, 'VM found paused at start-up resumed'));
  agent.on('agent:adopt:clock', (i) =>
    i.error === null
      ? log.info(i, 'clock of a VM paused by an interrupted step resynchronised')
      : log.warn(i, 'clock of a VM paused by an interrupted step could not be resynchronised'),
  );
  agent.on('agent:error', (e) => log.error({ code: e.code, err: e.message }, 'agent error'));
}
