import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FileJournal, HostAgent, createAgentApp } from '../agent/index.js';
import { SIM_HOST_ROUTE_PREFIX, createSimHostApp } from '../agent/sim-app.js';
import { FleetIndex, IntermissionError, type Fleet } from '../domain/index.js';
import { createSimFleet, realTime, type SimHost } from '../hypervisor/sim/index.js';
import type { ListenAddress } from './address.js';
import { serveFetch } from './http.js';
import type { Logger } from './logging.js';

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
  /** Seeds the simulated host's timings. Default 1. */
  readonly seed?: number;
  readonly logger?: Logger;
}

/** A running host agent process. */
export interface AgentRuntime {
  readonly agent: HostAgent;
  /** The simulated host the agent drives (it lives in this process). */
  readonly simHost: SimHost;
  readonly address: ListenAddress;
  readonly journalFile: string;
  /**
   * Refuses new steps, waits for steps under way (their resume leases bound how long) while still
   * answering status requests, then stops listening. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * One host agent over a simulated host, served over HTTP: the agent half of the multi-process
 * topology (`intermission agent`). Its journal is a file, so a restarted agent answers a step it
 * ran before from the journal and fails a step that its previous process was running instead of
 * running it again (invariant 5). The simulated VMs live in this process: when it dies they die
 * with it and come back running on restart, so the simulator cannot show a VM left paused by a
 * dead agent (a QEMU host keeps its VMs, and the new agent resumes them on start).
 */
export async function startAgentRuntime(options: AgentRuntimeOptions): Promise<AgentRuntime> {
  const fleet = new FleetIndex(options.fleet);
  const host = fleet.host(options.host);
  if (!host) throw new IntermissionError('INVALID_INPUT', `host ${JSON.stringify(options.host)} is not in the fleet`);
  const time = realTime();
  const simHost = createSimFleet({
    fleet: { hosts: [host], vms: fleet.vmsOnHost(host.name) },
    time,
    seed: options.seed ?? 1,
  }).get(host.name);
  if (!simHost) throw new IntermissionError('INTERNAL', `the simulator made no host ${host.name}`);
  const stateDir = resolve(options.stateDir);
  await mkdir(join(stateDir, 'agents'), { recursive: true, mode: 0o700 });
  const journalFile = join(stateDir, 'agents', `${options.host}.json`);
  const agent = await HostAgent.start({
    driver: simHost.connect(),
    journal: await FileJournal.open(journalFile),
    time,
  });
  if (options.logger) logAgent(agent, options.logger);
  const agentApp = createAgentApp({ agent, token: options.token });
  const simApp = createSimHostApp({ host: simHost, token: options.token });
  let server: Awaited<ReturnType<typeof serveFetch>>;
  try {
    server = await serveFetch(
      (request) =>
        new URL(request.url).pathname.startsWith(SIM_HOST_ROUTE_PREFIX)
          ? simApp.fetch(request)
          : agentApp.fetch(request),
      options.listen,
    );
  } catch (error) {
    await agent.close();
    throw error;
  }
  let closing: Promise<void> | undefined;
  return {
    agent,
    simHost,
    address: server.address,
    journalFile,
    close: () =>
      (closing ??= (async () => {
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
  agent.on('agent:error', (e) => log.error({ code: e.code, err: e.message }, 'agent error'));
}
