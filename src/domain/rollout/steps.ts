import { IntermissionError } from '../errors.js';
import { STEP_KINDS, type HostStep, type ResolvedUpdate, type StepKind, type VmPath } from './model.js';

/** The host step of kind `K`. */
export type HostStepOfKind<K extends StepKind> = Extract<HostStep, { kind: K }>;

/** True for any of the {@link STEP_KINDS}. */
export function isStepKindName(value: unknown): value is StepKind {
  return typeof value === 'string' && (STEP_KINDS as readonly string[]).includes(value);
}

/** True when `value` has the shape of a host step (for data read back from a store or a file). */
export function isHostStep(value: unknown): value is HostStep {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    isStepKindName(v.kind) &&
    typeof v.host === 'string' &&
    typeof v.wave === 'number' &&
    typeof v.batch === 'number' &&
    typeof v.expectedDurationMs === 'number' &&
    Array.isArray(v.vms)
  );
}

/** Narrows a step to one kind: `if (isStepKind(step, 'reboot')) step.hostRebootMs`. */
export function isStepKind<K extends StepKind>(step: HostStep, kind: K): step is HostStepOfKind<K> {
  return step.kind === kind;
}

/** A frozen host step. Throws INVALID_INPUT for an unknown kind or negative durations. */
export function createHostStep<S extends HostStep>(step: S): S {
  if (!isStepKindName(step.kind)) {
    throw new IntermissionError('INVALID_INPUT', `unknown host step kind ${JSON.stringify(step.kind)}`);
  }
  if (!(step.expectedDurationMs >= 0) || !(step.applyMs >= 0) || !(step.pausedVms >= 0)) {
    throw new IntermissionError('INVALID_INPUT', `host step of ${step.host} has a negative duration or count`);
  }
  const vms = Object.isFrozen(step.vms) ? step.vms : Object.freeze([...step.vms]);
  const copy: S = { ...step, vms };
  return Object.freeze(copy);
}

/** A frozen copy of `step` with `changes`; the kind never changes. */
export function cloneHostStepWith<S extends HostStep>(step: S, changes: Partial<Omit<S, 'kind'>>): S {
  return createHostStep({ ...step, ...changes, kind: step.kind });
}

/** How many VMs of a host take each path. */
export type PathCounts = Readonly<Record<VmPath, number>>;

/**
 * Expected duration of a host step, from the update's durations and how many VMs take each path.
 * VMs on the same path are handled in parallel:
 *
 * - `hot-patch`: apply.
 * - `migrate-in-place`: redeploy fallbacks leave (if any), apply (install the VMM), migrate the
 *   preserving VMs (if any), restart the reboot fallbacks on the new VMM (if any).
 * - `freeze-apply-resume`: redeploy fallbacks leave (if any); apply, with the preserving VMs paused
 *   (plus resume overhead, if any); reboot fallbacks are down meanwhile and start again (if any).
 * - `reboot`: apply, host reboot, VMs start again (if any).
 * - `redeploy`: the VMs leave (if any), apply.
 */
export function stepDurationMs(
  kind: StepKind,
  update: Pick<ResolvedUpdate, 'expectedApplyMs' | 'durations'>,
  counts: PathCounts,
): number {
  const d = update.durations;
  const apply = update.expectedApplyMs;
  const leave = counts.redeploy > 0 ? d.vmRedeployMs : 0;
  const restart = counts.reboot > 0 ? d.vmRestartMs : 0;
  switch (kind) {
    case 'hot-patch':
      return apply;
    case 'migrate-in-place':
      return leave + apply + (counts['in-place-migration'] > 0 ? d.inPlaceMigrationPauseMs : 0) + restart;
    case 'freeze-apply-resume':
      return leave + apply + (counts.pause > 0 ? d.resumeOverheadMs : 0) + restart;
    case 'reboot':
      return apply + d.hostRebootMs + restart;
    case 'redeploy':
      return leave + apply;
  }
}
