/** Crash trials: what a trial needs from the hosts it runs on (simulated hosts, or QEMU guests). */
import type { ObservedPause } from './trial-checks.js';
import type { TrialHosts, TrialSpec } from './trial-plan.js';
import type { Cluster, FleetSpec } from './harness.js';

/** What a trial needs from the hosts it runs on. */
export interface TrialBackend {
  readonly hosts: TrialHosts;
  readonly fleet: FleetSpec;
  /** A cluster to run the trial on (sim: a fresh one; QEMU: the shared one). */
  acquire(spec: TrialSpec): Promise<Cluster>;
  /** Done with the cluster (sim: closed; QEMU: kept for the next trial). */
  release(cluster: Cluster): Promise<void>;
  /** The VMM versions of a `vmm-update` from what the VMs run now. */
  vmmVersions(cluster: Cluster): Promise<{ from: string; to: string }>;
  /** Processes that are not the agent: a host's update command, or its VMs' watchdogs. */
  pidsOf(target: 'host-update' | 'watchdog', host: string): number[];
  /** Starts watching what the backend can see from outside (QEMU: consoles, watchdog logs). */
  observe(cluster: Cluster, updateId: string): Promise<BackendObservation>;
  /** Guests' clock offsets at the end (QEMU), with the bound they are held to. */
  readonly maxClockOffsetMs: number;
}

/** What a backend saw from outside while a trial ran. */
export interface BackendObservation {
  stop(): Promise<OutsideView>;
}

/** What a backend saw from outside. */
export interface OutsideView {
  readonly pauses: ObservedPause[];
  readonly clockOffsets: Map<string, number>;
  /** How many times each host's update ran to its end during the trial (QEMU: its command's trace). */
  readonly updatesCompleted: Map<string, number>;
}

/** What `GET /v1/vms` of an agent answers, the fields the trials read. */
export interface AgentVmsBody {
  readonly vms: readonly { readonly name: string; readonly state: string; readonly vmmVersion: string }[];
}
