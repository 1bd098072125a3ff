/**
 * # Terminology
 *
 * - **Host**: a physical machine running VMs. Each host runs one host agent.
 * - **VM**: a guest with a `name` (what Scheduled Events lists in `Resources` and what the guest reads
 *   as `compute.name`), a `vmId` (GUID) and the host it runs on.
 * - **Availability set**: the VMs of one application, spread over update domains (UD, default 5, at
 *   most 20) and fault domains (FD, at most 3). A VM outside any set is **standalone**.
 * - **Scope**: who sees an event. An availability set, or a standalone VM. Every VM of a scope sees
 *   the same document, and an approval from any VM of a scope releases the event for all of its
 *   `Resources`.
 * - **Scheduled event**: what a scope sees of upcoming maintenance: Scheduled → Started → removed,
 *   Scheduled → removed (cancelled), or absent → Started (unplanned).
 * - **Document incarnation**: a per-scope integer that goes up by one on every change of that scope's
 *   document and never otherwise; it never goes down, across restarts too.
 * - **Update**: what a host receives; its impact decides what its VMs see (see the rollout planner).
 * - **Pause budget**: the longest a VM may stay paused: 30 s at most.
 *
 * This module holds only types and constants: no I/O, no clock.
 */

/** Event types of Azure Scheduled Events, in the order they were introduced. */
export const EVENT_TYPES = ['Freeze', 'Reboot', 'Redeploy', 'Preempt', 'Terminate'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The statuses a tenant can see. Completed and cancelled events are simply no longer listed. */
export const VISIBLE_EVENT_STATUSES = ['Scheduled', 'Started'] as const;
export type VisibleEventStatus = (typeof VISIBLE_EVENT_STATUSES)[number];

/**
 * Internal lifecycle state. `Ended` means the impact is over but the event is still listed as
 * Started for the linger time; `Removed` events are gone from every document.
 */
export const EVENT_PHASES = ['Scheduled', 'Started', 'Ended', 'Removed'] as const;
export type EventPhase = (typeof EVENT_PHASES)[number];

export const EVENT_SOURCES = ['Platform', 'User'] as const;
export type EventSource = (typeof EVENT_SOURCES)[number];

/**
 * Why an event left the documents. `retired`: removed by a store migration because a time it held
 * could not be read back (see docs/limits.md, "Event times").
 */
export const REMOVAL_REASONS = ['completed', 'cancelled', 'retired'] as const;
export type RemovalReason = (typeof REMOVAL_REASONS)[number];

/** Update domains per availability set: default and upper bound (Azure's). */
export const DEFAULT_UPDATE_DOMAINS = 5;
export const MAX_UPDATE_DOMAINS = 20;
/** Fault domains per availability set: upper bound (Azure's). */
export const MAX_FAULT_DOMAINS = 3;

/** Hard upper bound of any pause budget: no VM is ever left paused longer than this. */
export const MAX_PAUSE_BUDGET_MS = 30_000;

export interface Host {
  readonly name: string;
  /** Free-form labels (rack, region, kernel…), shown to operators. */
  readonly labels: Readonly<Record<string, string>>;
}

export interface AvailabilitySet {
  readonly name: string;
  readonly updateDomains: number;
  readonly faultDomains: number;
}

/** Instance facts served at /metadata/instance. Everything has a sensible default. */
export interface VmInstanceInfo {
  readonly location: string;
  readonly vmSize: string;
  readonly osType: 'Linux' | 'Windows';
  readonly resourceGroupName: string;
  readonly subscriptionId: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly zone: string;
  readonly computerName: string;
  readonly adminUsername: string;
  readonly publicKeys: readonly { readonly keyData: string; readonly path: string }[];
  readonly userData: string;
  readonly macAddress: string;
  readonly privateIpAddress: string;
  readonly subnetAddress: string;
  readonly subnetPrefix: string;
  readonly priority: 'Regular' | 'Spot';
  readonly vmScaleSetName: string;
}

export interface Vm {
  readonly name: string;
  readonly vmId: string;
  readonly host: string;
  /** Name of the availability set, or undefined for a standalone VM. */
  readonly availabilitySet: string | undefined;
  readonly updateDomain: number;
  readonly faultDomain: number;
  readonly instance: VmInstanceInfo;
}

export interface Fleet {
  readonly hosts: readonly Host[];
  readonly availabilitySets: readonly AvailabilitySet[];
  readonly vms: readonly Vm[];
}

/**
 * A scope id is `set:<availability set name>` or `vm:<standalone VM name>`: the prefix keeps a set
 * and a VM that share a name apart.
 */
export type ScopeId = `set:${string}` | `vm:${string}`;

export function scopeOf(vm: Pick<Vm, 'name' | 'availabilitySet'>): ScopeId {
  return vm.availabilitySet === undefined ? `vm:${vm.name}` : `set:${vm.availabilitySet}`;
}

/** One scheduled event, as the engine keeps it. Times are milliseconds since the epoch. */
export interface MaintenanceEvent {
  /** Uppercase GUID, as Azure sends it. */
  readonly eventId: string;
  readonly scope: ScopeId;
  readonly type: EventType;
  readonly phase: EventPhase;
  /** VM names affected, all within `scope`. */
  readonly resources: readonly string[];
  readonly description: string;
  readonly source: EventSource;
  /** Expected interruption; -1 when unknown or not applicable. */
  readonly durationInSeconds: number;
  /** When the event first appeared in its scope's document. */
  readonly createdAt: number;
  /** The event does not start before this time unless a VM in scope approves it. */
  readonly notBefore: number;
  /** When a VM of the scope approved it, and which one. */
  readonly approvedAt: number | undefined;
  readonly approvedBy: string | undefined;
  readonly startedAt: number | undefined;
  /** When the impact ended; the event stays listed as Started until `endedAt + lingerMs`. */
  readonly endedAt: number | undefined;
  /** How long an ended event stays visible. */
  readonly lingerMs: number;
  readonly removedAt: number | undefined;
  readonly removalReason: RemovalReason | undefined;
  /**
   * Free-form correlation: the rollout and host step that own the event, or `drill:<id>`. Not shown
   * to tenants.
   */
  readonly owner: string;
}

/** A scope's document version, as the engine keeps it. */
export interface ScopeState {
  readonly scope: ScopeId;
  readonly incarnation: number;
}
