import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Fleet } from '../domain/index.js';
import { AgentClient, EpochFence, FileEpochStore, FileJournal, HostAgent, createAgentApp } from '../agent/index.js';
import type { HypervisorDriver } from '../hypervisor/driver.js';
import { createSimFleet, realTime, type SimHost, type SimTime } from '../hypervisor/sim/index.js';

/** Hosts, their agents and the clients the controller uses to reach them. */
export interface HostAgents {
  readonly clients: ReadonlyMap<string, AgentClient>;
  readonly agents: ReadonlyMap<string, HostAgent>;
  /** The simulated hosts, by name (empty for real hosts). */
  readonly simHosts: ReadonlyMap<string, SimHost>;
  close(): Promise<void>;
}

/**
 * The embedded default's hosts: one simulated host per fleet host, each with its agent in this
 * process, reached through the agent's HTTP app in-process (the same protocol a remote agent
 * speaks, without a socket). Journals live in `<stateDir>/agents/`.
 */
export async function startSimHosts(options: {
  fleet: Fleet;
  stateDir: string;
  time?: SimTime;
  seed?: number;
}): Promise<HostAgents> {
  const time = options.time ?? realTime();
  const simHosts = createSimFleet({ fleet: options.fleet, time, seed: options.seed ?? 1 });
  const drivers = new Map([...simHosts].map(([name, host]) => [name, host.connect()] as const));
  const hosts = await startInProcessAgents({ drivers, stateDir: options.stateDir, time });
  return { ...hosts, simHosts };
}

/**
 * One host agent per driver, in this process, each reached through its HTTP app in-process with a
 * token of its own making. Journals live in `<stateDir>/agents/<host>.json`. Closing closes the
 * agents and, with them, their drivers.
 */
export async function startInProcessAgents(options: {
  drivers: ReadonlyMap<string, HypervisorDriver>;
  stateDir: string;
  time: SimTime;
}): Promise<HostAgents> {
  const token = randomBytes(24).toString('base64url');
  const dir = join(options.stateDir, 'agents');
  await mkdir(dir, { recursive: true });
  const agents = new Map<string, HostAgent>();
  const clients = new Map<string, AgentClient>();
  for (const [name, driver] of options.drivers) {
    const agent = await HostAgent.start({
      driver,
      journal: await FileJournal.open(join(dir, `${name}.json`)),
      time: options.time,
      fence: await EpochFence.open(new FileEpochStore(join(dir, `${name}.epoch`))),
    });
    const app = createAgentApp({ agent, token });
    agents.set(name, agent);
    clients.set(
      name,
      new AgentClient({ host: name, baseUrl: `http://${name}.agent.internal`, token, fetch: (r) => app.fetch(r) }),
    );
  }
  return {
    clients,
    agents,
    simHosts: new Map(),
    close: async () => {
      await Promise.all([...agents.values()].map((a) => a.close()));
    },
  };
}
