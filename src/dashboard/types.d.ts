/**
 * Types the dashboard's modules use in JSDoc, taken from the server's own definitions so that the
 * page and the API cannot drift apart. Types only: nothing here is served or run.
 */
import type { EventView } from '../control/app.js';
import type { LiveMessage } from '../control/live.js';
import type { RolloutSummary } from '../control/rollouts.js';
import type { Principal } from '../control/tokens.js';
import type { Plan, PlannedVm, TenantTimeline, UpdateKind } from '../domain/rollout/index.js';
import type { StepRecord, VmOperationRecord } from '../store/rollout-store.js';

export type { EventView, LiveMessage, Plan, PlannedVm, Principal, RolloutSummary, StepRecord, UpdateKind };

/** GET /v1/fleet. */
export interface FleetView {
  readonly hosts: readonly { readonly name: string; readonly labels: Readonly<Record<string, string>> }[];
  readonly availabilitySets: readonly {
    readonly name: string;
    readonly updateDomains: number;
    readonly faultDomains: number;
  }[];
  readonly vms: readonly FleetVm[];
}

/** One VM of GET /v1/fleet. */
export interface FleetVm {
  readonly name: string;
  readonly vmId: string;
  readonly host: string;
  readonly availabilitySet: string | null;
  readonly updateDomain: number;
  readonly faultDomain: number;
  readonly lastPoll: string | null;
}

/** A measured operation on a VM, from GET /v1/rollouts/{id} or a `rollout:step:finished` message. */
export type Operation = VmOperationRecord;

/** What the dashboard knows of one rollout beyond its summary. */
export interface RolloutDetail {
  readonly plan: Plan | null;
  /** By step id. */
  readonly steps: Readonly<Record<string, StepRecord>>;
}

/** POST /v1/plans. */
export interface PlanPreview {
  readonly plan: Plan;
  readonly text: string;
  readonly tenants: readonly TenantTimeline[];
}

/** Where the live stream is. */
export type Connection = 'connecting' | 'live' | 'reconnecting' | 'offline';

/** A line of the activity feed. */
export interface Activity {
  readonly seq: number;
  readonly at: string;
  readonly tone: 'info' | 'good' | 'warn' | 'bad';
  readonly text: string;
}

/** The dashboard's whole state. */
export interface State {
  readonly principal: Principal | null;
  readonly connection: Connection;
  /** Server clock minus the browser's, in ms. */
  readonly clockSkewMs: number;
  readonly timeScale: number;
  readonly fleet: FleetView | null;
  /** By event id, removed ones included. */
  readonly events: Readonly<Record<string, EventView>>;
  /** By rollout id. */
  readonly rollouts: Readonly<Record<string, RolloutSummary>>;
  /** By rollout id. */
  readonly details: Readonly<Record<string, RolloutDetail>>;
  /** By `<step id>|<vm>`. */
  readonly operations: Readonly<Record<string, Operation>>;
  readonly activity: readonly Activity[];
  /** Bumped by every live message, so that views can flash what changed. */
  readonly liveCount: number;
}

/** What changes the state. */
export type Action =
  | { readonly type: 'reset' }
  | { readonly type: 'principal'; readonly principal: Principal | null }
  | { readonly type: 'connection'; readonly connection: Connection }
  | { readonly type: 'health'; readonly now: string; readonly timeScale: number }
  | { readonly type: 'fleet'; readonly fleet: FleetView }
  | { readonly type: 'events'; readonly events: readonly EventView[] }
  | { readonly type: 'rollouts'; readonly rollouts: readonly RolloutSummary[] }
  | {
      readonly type: 'detail';
      readonly rollout: RolloutSummary;
      readonly plan: Plan | null;
      readonly steps: readonly StepRecord[];
      readonly operations: readonly Operation[];
    }
  | { readonly type: 'live'; readonly message: LiveMessage };

/** The state a VM is in, derived from events and step status. */
export type VmState = 'running' | 'scheduled' | 'started' | 'paused' | 'migrating' | 'restarting' | 'failed';

/** The state a host is in. */
export type HostState = 'idle' | 'scheduled' | 'updating' | 'updated' | 'failed';
