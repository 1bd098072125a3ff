/**
 * The benchmark region shared by the planner and rollout benchmarks: 10,000 hosts, 5,000
 * availability sets of 20 update domains (48 VMs each) and 10,000 standalone VMs, 250,000 VMs in all.
 */
import { INSTANCE_DEFAULTS } from '../src/domain/fleet.js';
import type { Fleet, Host, Vm, VmInstanceInfo } from '../src/domain/vocabulary.js';
import type { VmCapabilities } from '../src/domain/rollout/index.js';

export const HOSTS = 10_000;
export const SETS = 5_000;
export const UPDATE_DOMAINS = 20;
export const VMS_PER_SET = 48;
export const STANDALONE = 10_000;

/**
 * `aligned` is how clouds place availability sets (host group g holds update domain g of every
 * set); `scattered` puts each set's VMs on random distinct hosts.
 */
export type Placement = 'aligned' | 'scattered';

/** A small deterministic PRNG (LCG), so that every run plans the same region. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

const INSTANCE: VmInstanceInfo = Object.freeze({ ...INSTANCE_DEFAULTS, location: 'bench', resourceGroupName: 'bench' });

const pad = (n: number, width: number) => String(n).padStart(width, '0');

/** The region, and capability facts for its VMs (with a realistic share of each fallback). */
export function buildRegion(placement: Placement): { fleet: Fleet; capabilities: Map<string, VmCapabilities> } {
  const rand = rng(placement === 'aligned' ? 1 : 2);
  const hosts: Host[] = Array.from({ length: HOSTS }, (_, i) => ({
    name: `host-${pad(i, 5)}`,
    labels: { rack: `r${pad(Math.floor(i / 40), 3)}` },
  }));
  const sets = Array.from({ length: SETS }, (_, s) => ({
    name: `set-${pad(s, 4)}`,
    updateDomains: UPDATE_DOMAINS,
    faultDomains: 3,
  }));
  const vms: Vm[] = [];
  const hostsPerGroup = HOSTS / UPDATE_DOMAINS;
  const nextInGroup = new Array<number>(UPDATE_DOMAINS).fill(0);
  for (let s = 0; s < SETS; s++) {
    const used = new Set<number>();
    for (let j = 0; j < VMS_PER_SET; j++) {
      const ud = j % UPDATE_DOMAINS;
      let host: number;
      if (placement === 'aligned') {
        // Host group `ud` holds update domain `ud`; round-robin inside the group.
        host = ud + UPDATE_DOMAINS * ((nextInGroup[ud] as number) % hostsPerGroup);
        nextInGroup[ud] = (nextInGroup[ud] as number) + 1;
      } else {
        do host = rand(HOSTS);
        while (used.has(host));
        used.add(host);
      }
      vms.push(vm(`vm-${pad(s, 4)}-${pad(j, 2)}`, hosts[host] as Host, sets[s]?.name, ud, s * VMS_PER_SET + j));
    }
  }
  for (let k = 0; k < STANDALONE; k++)
    vms.push(vm(`solo-${pad(k, 5)}`, hosts[k % HOSTS] as Host, undefined, 0, vms.length));

  const capabilities = new Map<string, VmCapabilities>();
  for (const v of vms) {
    const roll = rand(100);
    if (roll < 2) continue; // no facts: CAPABILITIES_UNKNOWN
    capabilities.set(v.name, {
      sharedMemory: roll >= 7,
      migratableDevices: roll < 7 || roll >= 10,
      blockingDevices: roll >= 7 && roll < 10 ? ['vfio-pci 0000:3b:00.0'] : [],
      guestAgent: rand(5) !== 0,
    });
  }
  return { fleet: { hosts, availabilitySets: sets, vms }, capabilities };
}

function vm(name: string, host: Host, set: string | undefined, ud: number, n: number): Vm {
  return {
    name,
    vmId: `00000000-0000-4000-8000-${pad(n, 12)}`,
    host: host.name,
    availabilitySet: set,
    updateDomain: ud,
    faultDomain: ud % 3,
    instance: INSTANCE,
  };
}
