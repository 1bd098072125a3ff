import { AgentClient, type HostAgent } from '../agent/index.js';
import { IntermissionError, type Fleet } from '../domain/index.js';
import type { SimHost } from '../hypervisor/sim/index.js';
import { formatAddress, httpUrl, type ListenAddress } from './address.js';
import type { HostAgents } from './sim-hosts.js';

/** Where the controller reaches the agent of one host. */
export interface RemoteAgent {
  readonly host: string;
  /** The agent's HTTP address (TCP; `intermission agent --listen`). */
  readonly address: ListenAddress;
}

/** Options of {@link connectRemoteHosts}. */
export interface RemoteHostsOptions {
  /** The fleet the controller plans over: every host needs exactly one agent, and no agent is for another host. */
  readonly fleet: Pick<Fleet, 'hosts'>;
  readonly agents: readonly RemoteAgent[];
  /** The shared secret every agent expects as `Authorization: Bearer <token>`. */
  readonly token: string;
  /** Per request; an agent that does not answer in time counts as unreachable for that pass. Default 10 s. */
  readonly timeoutMs?: number;
}

/**
 * The hosts of a multi-process deployment: agents running elsewhere (`intermission agent`), reached
 * over HTTP with `globalThis.fetch`. Nothing is started and nothing runs in this process (no
 * connection is made until the controller asks), so closing is a no-op: the agents and their VMs
 * outlive the controller, which is the point (invariant 5).
 *
 * @throws IntermissionError `INVALID_INPUT` when a fleet host has no agent, an agent names a host
 *   outside the fleet, a host is given twice, or an address is a unix socket
 */
export function connectRemoteHosts(options: RemoteHostsOptions): HostAgents {
  const known = new Set(options.fleet.hosts.map((h) => h.name));
  const clients = new Map<string, AgentClient>();
  for (const { host, address } of options.agents) {
    if (!known.has(host))
      throw new IntermissionError('INVALID_INPUT', `agent given for ${host}, which is not in the fleet`);
    if (clients.has(host)) throw new IntermissionError('INVALID_INPUT', `host ${host} is given two agents`);
    if ('path' in address) {
      throw new IntermissionError(
        'INVALID_INPUT',
        `agent of ${host}: ${formatAddress(address)} is a unix socket; agents are reached over TCP (host:port)`,
      );
    }
    clients.set(
      host,
      new AgentClient({
        host,
        baseUrl: httpUrl(address),
        token: options.token,
        fetch: (request) => globalThis.fetch(request),
        ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
      }),
    );
  }
  const missing = [...known].filter((h) => !clients.has(h));
  if (missing.length > 0) {
    // A host without an agent would fail its step at dispatch: refuse to start instead.
    throw new IntermissionError('INVALID_INPUT', `no agent given for hosts: ${missing.join(', ')}`, {
      details: { hosts: missing },
    });
  }
  return {
    clients,
    agents: new Map<string, HostAgent>(),
    simHosts: new Map<string, SimHost>(),
    close: () => Promise.resolve(),
  };
}
