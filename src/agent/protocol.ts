import { z } from 'zod';
import { MAX_PAUSE_BUDGET_MS } from '../domain/index.js';
import {
  MAX_VMM_BUILD_FACTS,
  MAX_VMM_BUILD_REASON_CHARS,
  STEP_KINDS,
  UPDATE_KINDS,
  VM_PATHS,
} from '../domain/rollout/index.js';

/**
 * The controller ↔ host agent protocol (HTTP/JSON, version 1). A host step is sent once with
 * `PUT /v1/steps/:id` and then polled with `GET /v1/steps/:id`; the step id is the idempotency key,
 * so a controller that restarts and sends the same step again gets the first run's status, never a
 * second run.
 */
export const AGENT_PROTOCOL_VERSION = 1;

/**
 * The request header that carries the controller's fencing epoch (its leader lease's) on every
 * request; the agent checks it on commands (`PUT /v1/steps/:id`) and refuses one lower than the
 * highest it has seen with 409 STALE_EPOCH. Absent, it counts as 0.
 */
export const EPOCH_HEADER = 'intermission-epoch';

/** An epoch as the header spells it: decimal digits, no sign. */
export const EPOCH_HEADER_RE = /^\d{1,15}$/;

const vmInStepSchema = z
  .object({
    name: z.string().min(1),
    path: z.enum(VM_PATHS),
    /** The longest this VM may stay paused; the agent's resume lease enforces it. */
    pauseBudgetMs: z.number().int().positive().max(MAX_PAUSE_BUDGET_MS),
  })
  .strict();

export const hostStepRequestSchema = z
  .object({
    stepId: z.string().min(1).max(300),
    rolloutId: z.string().min(1),
    host: z.string().min(1),
    kind: z.enum(STEP_KINDS),
    update: z
      .object({
        id: z.string().min(1),
        kind: z.enum(UPDATE_KINDS),
        expectedApplyMs: z.number().nonnegative(),
        /** The VMM build to move VMs to (in-place VMM update). */
        targetVmmVersion: z.string().nullable(),
      })
      .strict(),
    vms: z.array(vmInStepSchema),
    /** Residual clock offset above which a resynchronised VM counts as failed. */
    maxClockResidualMs: z.number().positive(),
  })
  .strict();
export type HostStepRequest = z.infer<typeof hostStepRequestSchema>;
export type VmInStep = z.infer<typeof vmInStepSchema>;

export const VM_OUTCOMES = ['ok', 'failed', 'lease-resumed', 'skipped'] as const;
export type VmOutcome = (typeof VM_OUTCOMES)[number];

const errorSchema = z.object({ code: z.string(), message: z.string() }).strict();

export const vmStepResultSchema = z
  .object({
    name: z.string(),
    path: z.enum(VM_PATHS),
    outcome: z.enum(VM_OUTCOMES),
    /** Hypervisor timestamps of the pause and the resume, when the VM was paused. */
    pausedAt: z.number().nullable(),
    resumedAt: z.number().nullable(),
    pauseMs: z.number().nullable(),
    pauseBudgetMs: z.number(),
    /** Guest clock offset after resume, and what was left after resynchronisation. */
    clockOffsetMs: z.number().nullable(),
    clockResidualMs: z.number().nullable(),
    clockRoundTripMs: z.number().nullable(),
    error: errorSchema.nullable(),
  })
  .strict();
export type VmStepResult = z.infer<typeof vmStepResultSchema>;

export const STEP_RUN_STATUSES = ['running', 'succeeded', 'failed'] as const;
export type StepRunStatus = (typeof STEP_RUN_STATUSES)[number];

export const hostStepStatusSchema = z
  .object({
    stepId: z.string(),
    host: z.string(),
    status: z.enum(STEP_RUN_STATUSES),
    startedAt: z.number(),
    finishedAt: z.number().nullable(),
    vms: z.array(vmStepResultSchema),
    error: errorSchema.nullable(),
    /**
     * True when this is the compact record of a step whose details the agent's journal no longer
     * keeps (see `journal.ts`): the status, times, error and each VM's outcome, no measurements.
     */
    compacted: z.boolean().optional(),
  })
  .strict();
export type HostStepStatus = z.infer<typeof hostStepStatusSchema>;

export const agentVmSchema = z
  .object({
    name: z.string(),
    state: z.enum(['running', 'paused', 'stopped', 'migrating', 'failed']),
    vmmVersion: z.string(),
    pausedSince: z.number().nullable(),
    capabilities: z
      .object({
        sharedMemory: z.boolean().optional(),
        migratableDevices: z.boolean().optional(),
        blockingDevices: z.array(z.string()).optional(),
        guestAgent: z.boolean().optional(),
        vmmBuilds: z
          .record(
            z.string().min(1).max(100),
            z.object({ loadable: z.boolean(), reason: z.string().max(MAX_VMM_BUILD_REASON_CHARS).optional() }).strict(),
          )
          .refine((builds) => Object.keys(builds).length <= MAX_VMM_BUILD_FACTS, {
            message: `at most ${MAX_VMM_BUILD_FACTS} builds`,
          })
          .optional(),
      })
      .strict(),
  })
  .strict();
export type AgentVm = z.infer<typeof agentVmSchema>;

export const agentHealthSchema = z
  .object({ host: z.string(), protocol: z.literal(AGENT_PROTOCOL_VERSION), now: z.number(), stepsRunning: z.number() })
  .strict();
export type AgentHealth = z.infer<typeof agentHealthSchema>;
