/**
 * The rollout planner: updates, their impacts on VMs, per-VM classification, and the pure plan of
 * waves, batches, host steps and scheduled events. No I/O lives here.
 */
export * from './model.js';
export {
  classifyVm,
  expectedPauseMs,
  MISSING_CAPABILITY_REASONS,
  targetLoadProblem,
  type ClassifyVmInput,
} from './classify.js';
export { describeBound, planTimeProblem, ROLLOUT_LIMITS } from './limits.js';
export {
  parseRolloutPolicy,
  parseUpdate,
  resolveFailureBudget,
  resolvePolicy,
  resolveUpdate,
  rolloutPolicySchema,
  updateSchema,
} from './schema.js';
export {
  cloneHostStepWith,
  createHostStep,
  isHostStep,
  isStepKind,
  isStepKindName,
  stepDurationMs,
  type HostStepOfKind,
  type PathCounts,
} from './steps.js';
export { isInsideWindow, nextWindowStart, parseTimeOfDay } from './windows.js';
export {
  durationInSeconds,
  planLowerBound,
  planRollout,
  PLANNED_EVENT_DESCRIPTION,
  selectHosts,
  type PlanRolloutInput,
} from './plan.js';
export {
  describePlan,
  tenantTimeline,
  type DescribePlanOptions,
  type TenantEvent,
  type TenantTimeline,
} from './describe.js';
