/**
 * # Rollout terminology
 *
 * - **Update**: what a host receives ({@link Update}). Its kind decides its **impact**, what the VMs
 *   see: nothing (hot patch), an in-place VM migration to a new VMM, a pause while the host is
 *   patched, a restart, or a move to another host ({@link UPDATE_IMPACTS}).
 * - **Path**: what one VM goes through ({@link VmPath}). The memory-preserving paths are
 *   `in-place-migration` and `pause`; `reboot` and `redeploy` are the fallbacks, each with its reasons
 *   ({@link REASON_CODES}).
 * - **Classification**: a VM's path, the reasons it is not memory-preserving, its expected pause and
 *   budget, and a sentence for the operator ({@link VmClassification}).
 * - **Host step**: what the executor does on one host ({@link HostStep}); one per planned host.
 * - **Batch**: host steps that run at the same time, within the parallelism limits.
 * - **Wave**: batches that run one after another under one notice; at most one update domain of any
 *   availability set per wave (invariant 2).
 * - **Plan**: waves, events and classifications as plain frozen data ({@link Plan}); the executor
 *   applies it and nothing else.
 *
 * This module holds only types and constants: no I/O, no clock.
 */
import type { EventType, ScopeId } from '../vocabulary.js';
import { MAX_PAUSE_BUDGET_MS } from '../vocabulary.js';
import { MINUTE, SECOND } from '../time.js';

// ---------------------------------------------------------------------------------------------
// Updates and their impacts
// ---------------------------------------------------------------------------------------------

/** The kinds of update, from least to most disruptive. */
export const UPDATE_KINDS = ['hot-patch', 'vmm-update', 'host-patch', 'host-reboot', 'redeploy'] as const;
/** One of {@link UPDATE_KINDS}. */
export type UpdateKind = (typeof UPDATE_KINDS)[number];

/** What a host step does; one kind per update kind (see {@link UPDATE_IMPACTS}). */
export const STEP_KINDS = ['hot-patch', 'migrate-in-place', 'freeze-apply-resume', 'reboot', 'redeploy'] as const;
/** One of {@link STEP_KINDS}. */
export type StepKind = (typeof STEP_KINDS)[number];

/**
 * What one VM goes through:
 * - `none`: untouched, no event (hot patch);
 * - `in-place-migration`: moved to a new VMM process on the same host, its RAM left in place (Freeze);
 * - `pause`: paused with its RAM kept while the host applies a patch, then resumed (Freeze);
 * - `reboot`: restarted on the same host (Reboot);
 * - `redeploy`: moved to another host (Redeploy).
 */
export const VM_PATHS = ['none', 'in-place-migration', 'pause', 'reboot', 'redeploy'] as const;
/** One of {@link VM_PATHS}. */
export type VmPath = (typeof VM_PATHS)[number];

/** The paths a VM falls back to when it cannot take the memory-preserving one. */
export const FALLBACK_PATHS = ['reboot', 'redeploy'] as const;
/** One of {@link FALLBACK_PATHS}. */
export type FallbackPath = (typeof FALLBACK_PATHS)[number];

/** The event type a tenant sees for each path; `null` means no event. */
export const PATH_EVENT_TYPES = {
  none: null,
  'in-place-migration': 'Freeze',
  pause: 'Freeze',
  reboot: 'Reboot',
  redeploy: 'Redeploy',
} as const satisfies Record<VmPath, EventType | null>;

/**
 * Capability facts a hypervisor driver reports about one VM. Every flag defaults to false: a driver
 * that does not know a fact never claims it, so a VM is only given a path whose needs are known to
 * hold. A VM with no facts at all falls back with `CAPABILITIES_UNKNOWN`.
 */
export interface VmCapabilities {
  /**
   * Guest RAM lives in shareable memory (memfd or a shared file mapping), so a new VMM process can
   * map it: needed for in-place migration.
   */
  readonly sharedMemory?: boolean;
  /** Every device's state can be saved and restored (no VFIO passthrough, no vhost-user without support). */
  readonly migratableDevices?: boolean;
  /** The devices that block migration when `migratableDevices` is false, shown to the operator. */
  readonly blockingDevices?: readonly string[];
  /** A guest agent answers, so the guest clock can be resynchronised and its offset measured (invariant 4). */
  readonly guestAgent?: boolean;
  /**
   * Per other VMM build of the VM's host (by version label, at most {@link MAX_VMM_BUILD_FACTS}):
   * whether that build can load the VM as it was created (its pinned machine type, its device
   * models, its firmware), and if not why. A `vmm-update` to a build that cannot load it falls back
   * (`TARGET_CANNOT_LOAD`); a build not listed is not known to be unable.
   */
  readonly vmmBuilds?: Readonly<Record<string, VmmBuildFact>>;
}

/** Whether one VMM build can load a VM (see {@link VmCapabilities.vmmBuilds}). */
export interface VmmBuildFact {
  readonly loadable: boolean;
  /** Why not, for the operator (at most {@link MAX_VMM_BUILD_REASON_CHARS} characters). */
  readonly reason?: string;
}

/** Bounds of {@link VmCapabilities.vmmBuilds}. */
export const MAX_VMM_BUILD_FACTS = 32;
export const MAX_VMM_BUILD_REASON_CHARS = 500;

/** The capability flags of {@link VmCapabilities}. */
export const CAPABILITY_FLAGS = ['sharedMemory', 'migratableDevices', 'guestAgent'] as const;
/** One of {@link CAPABILITY_FLAGS}. */
export type CapabilityFlag = (typeof CAPABILITY_FLAGS)[number];

/**
 * Why a VM does not take the memory-preserving path, with the sentence the operator reads. Codes are
 * stable: tools match on them, never on the text.
 */
export const REASON_CODES = {
  /** No facts were reported for the VM: the planner does not guess. */
  CAPABILITIES_UNKNOWN: 'no capability facts were reported for it',
  /** In-place migration needs the RAM in shareable memory. */
  RAM_NOT_SHAREABLE: 'its RAM is not in shareable memory, so a new VMM process cannot take it over',
  /** In-place migration needs every device's state to be saved and restored. */
  DEVICE_NOT_MIGRATABLE: 'a device of it cannot be migrated',
  /** Only when the policy sets `requireGuestAgent`: the clock cannot be resynchronised and measured. */
  NO_GUEST_AGENT: 'no guest agent answers, so its clock cannot be resynchronised and measured',
  /**
   * A VMM update whose target build cannot load the VM (a machine type, device model or firmware it
   * lacks), as the VM's host reported before anything started.
   */
  TARGET_CANNOT_LOAD: 'the target VMM build cannot load it',
  /** The expected pause is longer than the VM's pause budget (invariant 1). */
  APPLY_EXCEEDS_PAUSE_BUDGET: 'its expected pause is longer than its pause budget',
  /** The update restarts the host: no VM can keep running. */
  UPDATE_REQUIRES_REBOOT: 'the update requires a host reboot',
  /** The update empties the host: every VM moves. */
  UPDATE_REQUIRES_REDEPLOY: 'the update moves every VM off the host',
} as const;
/** A key of {@link REASON_CODES}. */
export type ReasonCode = keyof typeof REASON_CODES;

/** Notes on a memory-preserving VM that do not change its path. */
export const ADVISORY_CODES = {
  /**
   * No guest agent: the VM is still paused or migrated (the pause is at most its budget, and the
   * guest's NTP steps the clock back), but the executor cannot resynchronise and measure the offset,
   * so invariant 4 is met only as "offset not measured". Set `requireGuestAgent` to make it a fallback.
   */
  CLOCK_RESYNC_UNVERIFIED: 'no guest agent answers, so its clock offset after the pause will not be measured',
} as const;
/** A key of {@link ADVISORY_CODES}. */
export type AdvisoryCode = keyof typeof ADVISORY_CODES;

/** Why a whole host is left out of the plan. */
export const BLOCK_REASONS = {
  /**
   * The host holds VMs of one availability set in two or more update domains. A host step touches
   * every VM of the host at once, so it would put several update domains of the set in maintenance
   * together (invariant 2). Move VMs so that each host holds one update domain per set.
   */
  UPDATE_DOMAINS_SHARE_HOST: 'it holds VMs of one availability set in more than one update domain',
} as const;
/** A key of {@link BLOCK_REASONS}. */
export type BlockReason = keyof typeof BLOCK_REASONS;

/** How an update kind affects VMs: data, so that no other code switches on the kind. */
export interface UpdateImpact {
  /** Words for the operator. */
  readonly impact: string;
  /** The host step kind. */
  readonly stepKind: StepKind;
  /**
   * The memory-preserving path this update offers, or `null` when every VM takes `forcedPath`.
   */
  readonly preservingPath: 'in-place-migration' | 'pause' | null;
  /** Capabilities the preserving path needs; each missing one is a reason to fall back. */
  readonly requires: readonly CapabilityFlag[];
  /** The path of every VM when there is no preserving path. */
  readonly forcedPath: VmPath | null;
  /** The reason recorded for a forced path (none for `none`). */
  readonly forcedReason: ReasonCode | null;
  /**
   * Whether the VMs are in maintenance, so that hosts are spread over waves by update domain. A hot
   * patch touches no VM: its hosts are limited only by parallelism and the failure budget.
   */
  readonly inMaintenance: boolean;
}

/** The impact table. */
export const UPDATE_IMPACTS = {
  'hot-patch': {
    impact: 'no VM impact (hot patch)',
    stepKind: 'hot-patch',
    preservingPath: null,
    requires: [],
    forcedPath: 'none',
    forcedReason: null,
    inMaintenance: false,
  },
  'vmm-update': {
    impact: 'in-place VMM update (in-place VM migration)',
    stepKind: 'migrate-in-place',
    preservingPath: 'in-place-migration',
    requires: ['sharedMemory', 'migratableDevices'],
    forcedPath: null,
    forcedReason: null,
    inMaintenance: true,
  },
  'host-patch': {
    impact: 'host patch under pause',
    stepKind: 'freeze-apply-resume',
    preservingPath: 'pause',
    requires: [],
    forcedPath: null,
    forcedReason: null,
    inMaintenance: true,
  },
  'host-reboot': {
    impact: 'reboot required',
    stepKind: 'reboot',
    preservingPath: null,
    requires: [],
    forcedPath: 'reboot',
    forcedReason: 'UPDATE_REQUIRES_REBOOT',
    inMaintenance: true,
  },
  redeploy: {
    impact: 'redeploy (VMs move to another host)',
    stepKind: 'redeploy',
    preservingPath: null,
    requires: [],
    forcedPath: 'redeploy',
    forcedReason: 'UPDATE_REQUIRES_REDEPLOY',
    inMaintenance: true,
  },
} as const satisfies Record<UpdateKind, UpdateImpact>;

/** Which hosts an update goes to. Labels match when every given label has the given value. */
export type HostSelector =
  | { readonly kind: 'all' }
  | { readonly kind: 'names'; readonly names: readonly string[] }
  | { readonly kind: 'labels'; readonly labels: Readonly<Record<string, string>> };

/** VMM build versions of an in-place VMM update, for the operator and the executor. */
export interface VmmVersions {
  readonly fromVersion: string;
  readonly toVersion: string;
}

/** Expected durations of the parts of a host step, in milliseconds. */
export interface UpdateDurations {
  /** VM pause of an in-place migration (CPR transfer to the new VMM process). */
  readonly inPlaceMigrationPauseMs: number;
  /** Pause and resume plus clock resynchronisation, added to the apply time of a host patch. */
  readonly resumeOverheadMs: number;
  /** A host reboot, from shutdown to an agent that answers again. */
  readonly hostRebootMs: number;
  /** Shutting a VM down and starting it again (the `reboot` fallback). */
  readonly vmRestartMs: number;
  /** Moving a VM to another host (the `redeploy` path). */
  readonly vmRedeployMs: number;
}

/**
 * Defaults for {@link UpdateDurations}. The migration pause is a conservative figure for QEMU's
 * cpr-transfer, whose downtime is usually well under a second.
 */
export const DEFAULT_UPDATE_DURATIONS: UpdateDurations = Object.freeze({
  inPlaceMigrationPauseMs: 1 * SECOND,
  resumeOverheadMs: 500,
  hostRebootMs: 10 * MINUTE,
  vmRestartMs: 2 * MINUTE,
  vmRedeployMs: 10 * MINUTE,
});

/** What the operator declares. */
export interface Update {
  /** Identifies the update and its rollout; also seeds the event ids, so keep it unique. */
  readonly id: string;
  readonly kind: UpdateKind;
  /** Words for the operator; defaults to the impact. */
  readonly description?: string;
  /** Default: every host of the fleet. */
  readonly hosts?: HostSelector;
  /**
   * How long the host-side apply takes. For a host patch the VMs are paused for this long (plus
   * {@link UpdateDurations.resumeOverheadMs}); for other kinds they keep running meanwhile.
   */
  readonly expectedApplyMs: number;
  /** For a VMM update: from which build to which. */
  readonly vmm?: VmmVersions;
  /** Overrides of {@link DEFAULT_UPDATE_DURATIONS}. */
  readonly durations?: Partial<UpdateDurations>;
}

/** An {@link Update} with every default filled in, as recorded in a plan. */
export interface ResolvedUpdate {
  readonly id: string;
  readonly kind: UpdateKind;
  readonly description: string;
  readonly hosts: HostSelector;
  readonly expectedApplyMs: number;
  readonly vmm: VmmVersions | null;
  readonly durations: UpdateDurations;
}

// ---------------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------------

/** Days of the week, UTC, as in a daily window's `days`. */
export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
/** One of {@link WEEKDAYS}. */
export type Weekday = (typeof WEEKDAYS)[number];

/**
 * When waves may start. `interval`: [start, end) in ms since the epoch. `daily`: opens every day (or
 * on the given UTC weekdays) at `start` (`HH:MM`, UTC) for `durationMs` (at most a day; it may run
 * past midnight).
 */
export type MaintenanceWindow =
  | { readonly kind: 'interval'; readonly start: number; readonly end: number }
  | {
      readonly kind: 'daily';
      readonly start: string;
      readonly durationMs: number;
      readonly days?: readonly Weekday[];
    };

/** How many hosts may fail before the executor halts; a count or a fraction of the planned hosts. */
export type FailureBudget = { readonly maxFailedHosts: number } | { readonly maxFailedFraction: number };

/** Lower pause budgets for some availability sets or VMs. */
export interface PauseBudgetOverrides {
  /** By availability set name. */
  readonly sets?: Readonly<Record<string, number>>;
  /** By VM name. */
  readonly vms?: Readonly<Record<string, number>>;
}

/** The operator's rules for a rollout. Every field has a default. */
export interface RolloutPolicy {
  /** The pause budget of every VM; default and upper bound 30 s ({@link MAX_PAUSE_BUDGET_MS}). */
  readonly pauseBudgetMs?: number;
  /** Lower budgets per set or VM: a VM's budget is the lowest that applies to it. */
  readonly pauseBudgets?: PauseBudgetOverrides;
  /** Host steps running at once; `null` (default): no limit. */
  readonly maxHostsInParallel?: number | null;
  /** VMs paused at once over all running host steps; `null` (default): no limit. */
  readonly maxVmsPausedAtOnce?: number | null;
  /** Wait after a wave ends before the next wave's events are published; default 5 min, scaled. */
  readonly settleMs?: number;
  /** Notice to give, when more than the minimum of the event types; default: the minimum. Scaled. */
  readonly noticeMs?: number;
  /** When waves may start; none (default): any time. */
  readonly windows?: readonly MaintenanceWindow[];
  /** Recorded in the plan for the executor; default: halt at the first failed host. */
  readonly failureBudget?: FailureBudget;
  /** What a VM falls back to when it cannot take the memory-preserving path; default `reboot`. */
  readonly fallback?: FallbackPath;
  /** Make `NO_GUEST_AGENT` a reason to fall back instead of an advisory; default false. */
  readonly requireGuestAgent?: boolean;
}

/** Default pause budget: the hard upper bound. */
export const DEFAULT_PAUSE_BUDGET_MS = MAX_PAUSE_BUDGET_MS;
/**
 * Default settle time between waves: long enough for post-maintenance health checks to report
 * before the next update domain goes down, so that a bad update stops after one wave.
 */
export const DEFAULT_SETTLE_MS = 5 * MINUTE;

/** A {@link RolloutPolicy} with every default filled in, as recorded in a plan. */
export interface ResolvedPolicy {
  readonly pauseBudgetMs: number;
  readonly pauseBudgets: {
    readonly sets: Readonly<Record<string, number>>;
    readonly vms: Readonly<Record<string, number>>;
  };
  readonly maxHostsInParallel: number | null;
  readonly maxVmsPausedAtOnce: number | null;
  /** Already scaled by the plan's time scale. */
  readonly settleMs: number;
  /** Notice asked by the operator, already scaled (0: the minimum of each event type). */
  readonly noticeMs: number;
  readonly windows: readonly MaintenanceWindow[];
  readonly fallback: FallbackPath;
  readonly requireGuestAgent: boolean;
}

/** The failure budget as the executor applies it. */
export interface ResolvedFailureBudget {
  /** The executor halts when more hosts than this have failed. */
  readonly maxFailedHosts: number;
  /** The fraction it came from, or `null` when given as a count. */
  readonly maxFailedFraction: number | null;
}

// ---------------------------------------------------------------------------------------------
// The plan
// ---------------------------------------------------------------------------------------------

/** A VM's classification for an update. Shared between VMs with the same facts. */
export interface VmClassification {
  readonly path: VmPath;
  /** True for the memory-preserving paths. */
  readonly preserving: boolean;
  readonly eventType: EventType | null;
  /** Expected pause for a preserving path; 0 when the VM is not paused (untouched, restarted or moved). */
  readonly expectedPauseMs: number;
  /** The VM's pause budget. */
  readonly pauseBudgetMs: number;
  /** Why the VM does not take the memory-preserving path; empty when it does (or none exists). */
  readonly reasons: readonly ReasonCode[];
  readonly advisories: readonly AdvisoryCode[];
  /** Devices that block migration, when `DEVICE_NOT_MIGRATABLE` is a reason. */
  readonly blockingDevices: readonly string[];
  /** One sentence for the operator; kept with the plan. */
  readonly explanation: string;
}

/** One VM in a host step. */
export interface PlannedVm {
  readonly name: string;
  readonly scope: ScopeId;
  /** Its update domain (0 for a standalone VM). */
  readonly updateDomain: number;
  readonly eventType: EventType | null;
  /** The event its scope sees, or `null` when there is none. */
  readonly eventId: string | null;
  /** Not before this time, unless a VM of the scope approves earlier; `null` without an event. */
  readonly notBefore: number | null;
  /** DurationInSeconds of its event: the expected pause rounded up, or -1 (restart, move, no event). */
  readonly durationInSeconds: number;
  readonly classification: VmClassification;
}

/** Fields every host step has. */
export interface HostStepBase {
  readonly host: string;
  /** Wave index, from 0. */
  readonly wave: number;
  /** Batch index within the wave, from 0. */
  readonly batch: number;
  /** When the step is expected to begin (its batch's start). */
  readonly expectedStartAt: number;
  readonly expectedDurationMs: number;
  /** Host-side apply time. */
  readonly applyMs: number;
  /** VMs this step pauses at once (every VM on a preserving path). */
  readonly pausedVms: number;
  /** The host's VMs, by name; each VM's classification says what happens to it. */
  readonly vms: readonly PlannedVm[];
}

/** Apply a hot patch; VMs are untouched. */
export interface HotPatchStep extends HostStepBase {
  readonly kind: 'hot-patch';
}

/**
 * Install the new VMM, then move each preserving VM into a new VMM process with its RAM in place.
 * Redeploy fallbacks leave first; reboot fallbacks restart on the new VMM last.
 */
export interface MigrateInPlaceStep extends HostStepBase {
  readonly kind: 'migrate-in-place';
  readonly migrationPauseMs: number;
  readonly vmm: VmmVersions | null;
}

/**
 * Redeploy fallbacks leave and reboot fallbacks shut down; the preserving VMs are paused with their
 * RAM kept (under a resume lease of their budget), the host applies the patch, the VMs are resumed
 * and their clocks resynchronised; the reboot fallbacks start again.
 */
export interface FreezeApplyResumeStep extends HostStepBase {
  readonly kind: 'freeze-apply-resume';
  /** Expected pause of each preserving VM: apply plus resume overhead. */
  readonly pauseMs: number;
}

/** Apply, restart the host; its VMs start again after it. */
export interface RebootStep extends HostStepBase {
  readonly kind: 'reboot';
  readonly hostRebootMs: number;
}

/** Move every VM to another host, then apply. */
export interface RedeployStep extends HostStepBase {
  readonly kind: 'redeploy';
}

/** A host step: a frozen discriminated union on `kind`. */
export type HostStep = HotPatchStep | MigrateInPlaceStep | FreezeApplyResumeStep | RebootStep | RedeployStep;

/** Host steps that run at the same time. */
export interface Batch {
  readonly index: number;
  readonly expectedStartAt: number;
  /** The longest step of the batch. */
  readonly expectedDurationMs: number;
  /** VMs paused at once in this batch. */
  readonly pausedVms: number;
  readonly steps: readonly HostStep[];
}

/** A scheduled event the executor publishes, ready for the event book. */
export interface PlannedEvent {
  /** Uppercase GUID derived from the update id, wave, scope and type: the same on every replan. */
  readonly eventId: string;
  readonly scope: ScopeId;
  readonly type: EventType;
  /** The scope's VMs in the wave with this event type, by name. */
  readonly resources: readonly string[];
  /** When the event is published (appears in the scope's document). */
  readonly createdAt: number;
  /** At least `createdAt` plus the minimum notice of `type`. */
  readonly notBefore: number;
  readonly durationInSeconds: number;
  readonly description: string;
  readonly source: 'Platform';
  /** `rollout:<update id>/wave:<n>`, for correlation; not shown to tenants. */
  readonly owner: string;
  readonly wave: number;
}

/** A wave: one notice, then its batches one after another. */
export interface Wave {
  readonly index: number;
  /** Events of the wave are published at this time. */
  readonly publishAt: number;
  /** The first batch starts here: the NotBefore of every event of the wave, inside a window. */
  readonly startAt: number;
  readonly expectedEndAt: number;
  /** `startAt - publishAt`: at least the minimum notice of every event type in the wave. */
  readonly noticeMs: number;
  /** The longest host step of the wave. */
  readonly longestStepMs: number;
  readonly hosts: number;
  readonly vms: number;
  /** The update domain in maintenance of each availability set touched by the wave, by set name. */
  readonly updateDomains: Readonly<Record<string, number>>;
  readonly batches: readonly Batch[];
  /** Events sorted by scope, then type. */
  readonly events: readonly PlannedEvent[];
}

/** A host left out of the plan, with why. */
export interface BlockedHost {
  readonly host: string;
  readonly reason: BlockReason;
  /** The sets whose update domains share the host. */
  readonly conflicts: readonly { readonly set: string; readonly updateDomains: readonly number[] }[];
  /** Its VMs, by name: they are not touched by this rollout. */
  readonly vms: readonly string[];
  readonly explanation: string;
}

/** Counts for the operator and the benchmark. */
export interface PlanStats {
  /** Hosts the update selects. */
  readonly hosts: number;
  readonly plannedHosts: number;
  readonly blockedHosts: number;
  /** VMs on the selected hosts. */
  readonly vms: number;
  readonly plannedVms: number;
  readonly blockedVms: number;
  readonly waves: number;
  readonly batches: number;
  readonly events: number;
  readonly byPath: Readonly<Record<VmPath, number>>;
  readonly byReason: Readonly<Record<ReasonCode, number>>;
  readonly byAdvisory: Readonly<Record<AdvisoryCode, number>>;
  /** The most VMs paused at once in any batch. */
  readonly peakPausedVms: number;
  /** From `plannedAt` to the end of the last wave. */
  readonly expectedMakespanMs: number;
  /** Sum over waves of notice plus the longest host step: no schedule of these waves is shorter. */
  readonly lowerBoundMs: number;
}

/** Version of the plan's JSON shape. */
export const PLAN_FORMAT_VERSION = 1;

/** A rollout plan: plain frozen data, JSON-serialisable, the same for the same input. */
export interface Plan {
  readonly formatVersion: typeof PLAN_FORMAT_VERSION;
  /** The update id. */
  readonly id: string;
  /** The `now` the plan was made for. */
  readonly plannedAt: number;
  readonly update: ResolvedUpdate;
  readonly policy: ResolvedPolicy;
  /** The time scale factor the notices and settle times were scaled by (1 in production). */
  readonly timeScale: number;
  readonly failureBudget: ResolvedFailureBudget;
  readonly waves: readonly Wave[];
  /** Selected hosts left out, sorted by name. */
  readonly blocked: readonly BlockedHost[];
  readonly expectedEndAt: number;
  readonly stats: PlanStats;
}
