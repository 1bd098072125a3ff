import type { Fleet, Vm } from '../../domain/index.js';
import type { SimHostConfig, SimVmSpec } from './sim-config.js';
import { SimHost } from './sim-host.js';
import type { SimTime } from './sim-time.js';

/** Options of {@link createSimFleet}. */
export interface CreateSimFleetOptions {
  /** The hosts and the VMs on them. */
  readonly fleet: Pick<Fleet, 'hosts' | 'vms'>;
  /** Shared by every host, so that the whole fleet runs on one timeline. */
  readonly time: SimTime;
  /** Seeds every host; each host and VM draws from its own stream under it. Default 1. */
  readonly seed?: number;
  /** Extra settings of one host (timings, faults, capabilities). */
  readonly host?: (name: string) => Partial<Omit<SimHostConfig, 'name' | 'time' | 'seed' | 'vms'>>;
  /** Extra settings of one VM (RAM, devices, guest agent). */
  readonly vm?: (vm: Vm) => Partial<Omit<SimVmSpec, 'name'>>;
}

/** One simulated host per host of the fleet, each holding the fleet's VMs on it, by host name. */
export function createSimFleet(options: CreateSimFleetOptions): ReadonlyMap<string, SimHost> {
  const hosts = new Map<string, SimHost>();
  // Grouped once: a region has hundreds of thousands of VMs.
  const byHost = new Map<string, SimVmSpec[]>();
  for (const vm of options.fleet.vms) {
    const spec: SimVmSpec = { ...options.vm?.(vm), name: vm.name };
    const list = byHost.get(vm.host);
    if (list) list.push(spec);
    else byHost.set(vm.host, [spec]);
  }
  for (const host of options.fleet.hosts) {
    const vms = byHost.get(host.name) ?? [];
    hosts.set(
      host.name,
      new SimHost({ ...options.host?.(host.name), name: host.name, time: options.time, seed: options.seed ?? 1, vms }),
    );
  }
  return hosts;
}
