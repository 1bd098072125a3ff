import { formatDuration } from '../time.js';
import {
  ADVISORY_CODES,
  MAX_VMM_BUILD_REASON_CHARS,
  PATH_EVENT_TYPES,
  REASON_CODES,
  UPDATE_IMPACTS,
  type AdvisoryCode,
  type CapabilityFlag,
  type FallbackPath,
  type ReasonCode,
  type ResolvedUpdate,
  type VmCapabilities,
  type VmClassification,
  type VmPath,
} from './model.js';

/** The reason recorded when a capability the preserving path needs is missing. */
export const MISSING_CAPABILITY_REASONS = {
  sharedMemory: 'RAM_NOT_SHAREABLE',
  migratableDevices: 'DEVICE_NOT_MIGRATABLE',
  guestAgent: 'NO_GUEST_AGENT',
} as const satisfies Record<CapabilityFlag, ReasonCode>;

/** What {@link classifyVm} needs to know. */
export interface ClassifyVmInput {
  readonly update: Pick<ResolvedUpdate, 'kind' | 'expectedApplyMs' | 'durations'> & {
    /** For a `vmm-update`: its target build, checked against `capabilities.vmmBuilds`. */
    readonly vmm?: ResolvedUpdate['vmm'];
  };
  /** The driver's facts about the VM; `undefined` when none were reported. */
  readonly capabilities: VmCapabilities | undefined;
  /** The VM's pause budget (the lowest that applies to it). */
  readonly pauseBudgetMs: number;
  /** The path taken when the preserving one is not possible. */
  readonly fallback: FallbackPath;
  /** Turns a missing guest agent from an advisory into a reason to fall back. */
  readonly requireGuestAgent: boolean;
}

/**
 * The expected pause of a VM on the update's memory-preserving path, or `null` when the update has
 * none: the migration pause for a VMM update; apply time plus resume overhead for a host patch.
 */
export function expectedPauseMs(update: Pick<ResolvedUpdate, 'kind' | 'expectedApplyMs' | 'durations'>): number | null {
  const path = UPDATE_IMPACTS[update.kind].preservingPath;
  if (path === 'in-place-migration') return update.durations.inPlaceMigrationPauseMs;
  if (path === 'pause') return update.expectedApplyMs + update.durations.resumeOverheadMs;
  return null;
}

/**
 * Classifies one VM for an update. Rules, in order:
 *
 * 1. An update without a preserving path gives every VM its forced path: `none` for a hot patch,
 *    `reboot` (`UPDATE_REQUIRES_REBOOT`) for a host reboot, `redeploy` (`UPDATE_REQUIRES_REDEPLOY`).
 * 2. Otherwise the VM takes the preserving path (`in-place-migration` or `pause`) unless a reason
 *    holds; every reason that holds is recorded, not just the first:
 *    - no facts at all: `CAPABILITIES_UNKNOWN` (nothing else is checked but the budget);
 *    - each capability the path needs that is not known to hold (`sharedMemory` →
 *      `RAM_NOT_SHAREABLE`, `migratableDevices` → `DEVICE_NOT_MIGRATABLE`; `guestAgent` →
 *      `NO_GUEST_AGENT` only when the policy requires it);
 *    - the expected pause is longer than the VM's budget: `APPLY_EXCEEDS_PAUSE_BUDGET`.
 * 3. With a reason, the VM takes the policy's fallback: `reboot` (restarted on the same host: Reboot)
 *    or `redeploy` (moved to another host before the host step: Redeploy).
 * 4. A preserving VM without a guest agent keeps its path with the advisory `CLOCK_RESYNC_UNVERIFIED`:
 *    a pause of at most the budget is something NTP in the guest repairs, and refusing every
 *    agent-less VM would reboot most of a typical fleet. The executor records its offset as not
 *    measured.
 */
export function classifyVm(input: ClassifyVmInput): VmClassification {
  const impact = UPDATE_IMPACTS[input.update.kind];
  const budget = input.pauseBudgetMs;
  if (impact.preservingPath === null) {
    const path: VmPath = impact.forcedPath;
    const reasons: ReasonCode[] = impact.forcedReason === null ? [] : [impact.forcedReason];
    return classification({ path, expectedPauseMs: 0, pauseBudgetMs: budget, reasons, advisories: [], devices: [] });
  }
  const pause = expectedPauseMs(input.update) ?? 0;
  const caps = input.capabilities;
  const reasons: ReasonCode[] = [];
  let devices: readonly string[] = [];
  let loadProblem: string | undefined;
  if (caps === undefined) {
    reasons.push('CAPABILITIES_UNKNOWN');
  } else {
    const needs: readonly CapabilityFlag[] = input.requireGuestAgent
      ? [...impact.requires, 'guestAgent']
      : impact.requires;
    for (const flag of needs) {
      if (caps[flag] !== true) reasons.push(MISSING_CAPABILITY_REASONS[flag]);
    }
    if (reasons.includes('DEVICE_NOT_MIGRATABLE')) devices = [...(caps.blockingDevices ?? [])].sort();
    const load = targetLoadProblem(input.update, caps);
    if (load !== null) {
      reasons.push('TARGET_CANNOT_LOAD');
      loadProblem = load;
    }
  }
  if (pause > budget) reasons.push('APPLY_EXCEEDS_PAUSE_BUDGET');
  if (reasons.length > 0) {
    return classification({
      path: input.fallback,
      expectedPauseMs: 0,
      pauseBudgetMs: budget,
      reasons,
      advisories: [],
      devices,
      instead: impact.preservingPath,
      wouldPauseMs: pause,
      ...(loadProblem === undefined ? {} : { loadProblem }),
    });
  }
  const advisories: AdvisoryCode[] = caps?.guestAgent === true ? [] : ['CLOCK_RESYNC_UNVERIFIED'];
  return classification({
    path: impact.preservingPath,
    expectedPauseMs: pause,
    pauseBudgetMs: budget,
    reasons: [],
    advisories,
    devices: [],
  });
}

interface ClassificationFields {
  readonly path: VmPath;
  readonly expectedPauseMs: number;
  readonly pauseBudgetMs: number;
  readonly reasons: readonly ReasonCode[];
  readonly advisories: readonly AdvisoryCode[];
  readonly devices: readonly string[];
  /** For a fallback: the preserving path it replaces and that path's pause. */
  readonly instead?: 'in-place-migration' | 'pause';
  readonly wouldPauseMs?: number;
  /** For `TARGET_CANNOT_LOAD`: the target build and the host's reason. */
  readonly loadProblem?: string;
}

/**
 * Why the target build of a `vmm-update` cannot load the VM, from the host's facts; null when it
 * can, or when nothing says it cannot (a build the host did not report on is not presumed unable).
 */
export function targetLoadProblem(
  update: Pick<ClassifyVmInput['update'], 'kind' | 'vmm'>,
  caps: VmCapabilities | undefined,
): string | null {
  if (update.kind !== 'vmm-update' || update.vmm == null) return null;
  const target = update.vmm.toVersion;
  const fact = caps?.vmmBuilds?.[target];
  if (fact === undefined || fact.loadable) return null;
  const reason = (fact.reason ?? '').slice(0, MAX_VMM_BUILD_REASON_CHARS);
  return `build ${target}${reason === '' ? '' : `: ${reason}`}`;
}

function classification(f: ClassificationFields): VmClassification {
  return Object.freeze({
    path: f.path,
    preserving: f.path === 'in-place-migration' || f.path === 'pause',
    eventType: PATH_EVENT_TYPES[f.path],
    expectedPauseMs: f.expectedPauseMs,
    pauseBudgetMs: f.pauseBudgetMs,
    reasons: Object.freeze([...f.reasons]),
    advisories: Object.freeze([...f.advisories]),
    blockingDevices: Object.freeze([...f.devices]),
    explanation: explain(f),
  });
}

const PATH_WORDS = {
  none: 'Not affected: the update leaves VMs untouched; no event',
  'in-place-migration': 'Moves in place to the new VMM with its memory kept',
  pause: 'Paused with its memory kept while the host is patched',
  reboot: 'Restarts on the same host (Reboot)',
  redeploy: 'Moves to another host (Redeploy)',
} as const satisfies Record<VmPath, string>;

const INSTEAD_WORDS = { 'in-place-migration': 'an in-place migration', pause: 'a pause' } as const;

/** The operator's sentence for a classification. */
function explain(f: ClassificationFields): string {
  let text: string = PATH_WORDS[f.path];
  if (f.path === 'in-place-migration' || f.path === 'pause') {
    text += `; paused about ${formatDuration(f.expectedPauseMs)} (budget ${formatDuration(f.pauseBudgetMs)})`;
  }
  if (f.reasons.length > 0) {
    const because = f.reasons.map((r) => reasonWords(r, f));
    text += `${f.instead ? ` instead of ${INSTEAD_WORDS[f.instead]}` : ''}: ${because.join('; ')}`;
  }
  for (const a of f.advisories) text += `. Note: ${ADVISORY_CODES[a]}`;
  return `${text}.`;
}

function reasonWords(reason: ReasonCode, f: ClassificationFields): string {
  if (reason === 'DEVICE_NOT_MIGRATABLE' && f.devices.length > 0) {
    return `${f.devices.length === 1 ? 'device' : 'devices'} ${f.devices.join(', ')} cannot be migrated`;
  }
  if (reason === 'TARGET_CANNOT_LOAD' && f.loadProblem !== undefined) {
    return `the target VMM ${f.loadProblem}`;
  }
  if (reason === 'APPLY_EXCEEDS_PAUSE_BUDGET' && f.wouldPauseMs !== undefined) {
    return `its expected pause (${formatDuration(f.wouldPauseMs)}) is longer than its pause budget (${formatDuration(f.pauseBudgetMs)})`;
  }
  return REASON_CODES[reason];
}
