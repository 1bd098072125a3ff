/**
 * The QMP commands the QEMU driver uses, with their arguments and validated answers (QEMU
 * qapi/*.json). Answers are checked with loose schemas: members we do not model are kept, members
 * we rely on must be there, so a QEMU that changes them fails loudly (reason `PROTOCOL`) instead
 * of handing the driver `undefined`. Enumerations stay open (`| (string & {})`): a newer QEMU may
 * add a run state or a migration status, and the driver must still see it.
 */
import { z } from 'zod';
import { qmpVersionInfoSchema, type QmpVersionInfo } from './protocol.js';

/** Run states of `query-status` (qapi/run-state.json `RunState`). */
export type QmpRunState =
  | 'debug'
  | 'inmigrate'
  | 'internal-error'
  | 'io-error'
  | 'paused'
  | 'postmigrate'
  | 'prelaunch'
  | 'finish-migrate'
  | 'restore-vm'
  | 'running'
  | 'save-vm'
  | 'shutdown'
  | 'suspended'
  | 'watchdog'
  | 'guest-panicked'
  | 'colo'
  | (string & {});

/** `query-status`'s answer. */
export interface QmpStatusInfo {
  /** True when vCPUs run. */
  readonly running: boolean;
  readonly status: QmpRunState;
  /** Removed in QEMU 8.1; present before. */
  readonly singlestep?: boolean;
}

/** Migration states (qapi/migration.json `MigrationStatus`), in `query-migrate` and `MIGRATION`. */
export type QmpMigrationStatus =
  | 'none'
  | 'setup'
  | 'cancelling'
  | 'cancelled'
  | 'active'
  | 'postcopy-active'
  | 'postcopy-paused'
  | 'postcopy-recover-setup'
  | 'postcopy-recover'
  | 'completed'
  | 'failed'
  | 'colo'
  | 'pre-switchover'
  | 'device'
  | 'wait-unplug'
  | (string & {});

/** Migration capabilities (qapi/migration.json `MigrationCapability`) that matter here. */
export type QmpMigrationCapability =
  | 'xbzrle'
  | 'auto-converge'
  | 'zero-blocks'
  | 'events'
  | 'postcopy-ram'
  | 'release-ram'
  | 'return-path'
  | 'pause-before-switchover'
  | 'multifd'
  | 'dirty-bitmaps'
  | 'late-block-activate'
  /** Skip RAM that lives in shared memory backends: the in-place VMM swap (qemu notes). */
  | 'x-ignore-shared'
  | 'validate-uuid'
  | 'background-snapshot'
  | 'zero-copy-send'
  | 'postcopy-preempt'
  | 'switchover-ack'
  | 'dirty-limit'
  | 'mapped-ram'
  | (string & {});

/** RAM statistics of `query-migrate` (bytes unless noted). */
export interface QmpMigrationRamStats {
  readonly transferred: number;
  readonly remaining: number;
  readonly total: number;
  readonly duplicate?: number;
  readonly normal?: number;
  readonly 'normal-bytes'?: number;
  readonly 'dirty-pages-rate'?: number;
  /** Throughput in megabits per second. */
  readonly mbps?: number;
  readonly 'dirty-sync-count'?: number;
  readonly 'postcopy-requests'?: number;
  readonly 'page-size'?: number;
  readonly 'pages-per-second'?: number;
}

/** `query-migrate`'s answer; empty (`{}`) before any migration. Times are in milliseconds. */
export interface QmpMigrationInfo {
  readonly status?: QmpMigrationStatus;
  readonly ram?: QmpMigrationRamStats;
  readonly 'total-time'?: number;
  readonly 'expected-downtime'?: number;
  /** The pause the guest saw, once `completed`. */
  readonly downtime?: number;
  readonly 'setup-time'?: number;
  /** Why a migration `failed`. */
  readonly 'error-desc'?: string;
}

/** One vCPU of `query-cpus-fast`. */
export interface QmpCpuInfoFast {
  readonly 'cpu-index': number;
  readonly 'qom-path': string;
  /** Host thread id of the vCPU. */
  readonly 'thread-id': number;
  /** QEMU target, e.g. `x86_64`. */
  readonly target?: string;
  readonly props?: Readonly<Record<string, unknown>>;
}

/** `query-name`'s answer: the `-name` of the VM, if it was given one. */
export interface QmpNameInfo {
  readonly name?: string;
}

/** One entry of `migrate-set-capabilities`. */
export interface QmpMigrationCapabilityStatus {
  readonly capability: QmpMigrationCapability;
  readonly state: boolean;
}

/**
 * The typed command map: `args` is `undefined` for commands without arguments; `returns` is what
 * `execute` resolves with (`void` for commands that answer `{}`).
 */
export interface QmpCommands {
  /** Run state of the VM. */
  'query-status': { args: undefined; returns: QmpStatusInfo };
  /** Pauses all vCPUs (emits `STOP`). */
  stop: { args: undefined; returns: void };
  /** Resumes the vCPUs (emits `RESUME`); also leaves `-S` prelaunch and `-incoming` paused states. */
  cont: { args: undefined; returns: void };
  /** Exits QEMU. Answers, emits `SHUTDOWN`, then closes every monitor connection. */
  quit: { args: undefined; returns: void };
  /** The QEMU version. */
  'query-version': { args: undefined; returns: QmpVersionInfo };
  /** Sets migration capabilities, on both source and destination, before `migrate`. */
  'migrate-set-capabilities': {
    args: { readonly capabilities: readonly QmpMigrationCapabilityStatus[] };
    returns: void;
  };
  /** Starts an outgoing migration; answers at once, progress via `query-migrate` / `MIGRATION`. */
  migrate: {
    args: { readonly uri: string; readonly detach?: boolean; readonly resume?: boolean };
    returns: void;
  };
  /** Starts listening for an incoming migration (QEMU started with `-incoming defer`). */
  'migrate-incoming': { args: { readonly uri: string }; returns: void };
  /** Status and statistics of the current or last migration. */
  'query-migrate': { args: undefined; returns: QmpMigrationInfo };
  /** Cancels an outgoing migration. */
  migrate_cancel: { args: undefined; returns: void };
  /** Hard reset of the VM (emits `RESET`). */
  system_reset: { args: undefined; returns: void };
  /** ACPI power button (emits `POWERDOWN`); the guest decides what to do. */
  system_powerdown: { args: undefined; returns: void };
  /** vCPUs and their host threads, without interrupting them. */
  'query-cpus-fast': { args: undefined; returns: readonly QmpCpuInfoFast[] };
  /** Runs an HMP command; answers its text output. For diagnostics only: HMP output is not stable. */
  'human-monitor-command': {
    args: { readonly 'command-line': string; readonly 'cpu-index'?: number };
    returns: string;
  };
  /** The VM's `-name`. */
  'query-name': { args: undefined; returns: QmpNameInfo };
}

/** A command of {@link QmpCommands}. */
export type QmpCommandName = keyof QmpCommands;
/** The arguments of a command. */
export type QmpCommandArgs<K extends QmpCommandName> = QmpCommands[K]['args'];
/** What `execute` resolves with for a command. */
export type QmpCommandReturn<K extends QmpCommandName> = QmpCommands[K]['returns'];

const emptyReturn: z.ZodType<void> = z
  .object({})
  .loose()
  .transform(() => undefined);

const statusInfo: z.ZodType<QmpStatusInfo> = z
  .object({ running: z.boolean(), status: z.string(), singlestep: z.boolean().optional() })
  .loose();

const ramStats = z
  .object({
    transferred: z.number(),
    remaining: z.number(),
    total: z.number(),
    duplicate: z.number().optional(),
    normal: z.number().optional(),
    'normal-bytes': z.number().optional(),
    'dirty-pages-rate': z.number().optional(),
    mbps: z.number().optional(),
    'dirty-sync-count': z.number().optional(),
    'postcopy-requests': z.number().optional(),
    'page-size': z.number().optional(),
    'pages-per-second': z.number().optional(),
  })
  .loose();

const migrationInfo: z.ZodType<QmpMigrationInfo> = z
  .object({
    status: z.string().optional(),
    ram: ramStats.optional(),
    'total-time': z.number().optional(),
    'expected-downtime': z.number().optional(),
    downtime: z.number().optional(),
    'setup-time': z.number().optional(),
    'error-desc': z.string().optional(),
  })
  .loose();

const cpuInfoFast: z.ZodType<QmpCpuInfoFast> = z
  .object({
    'cpu-index': z.int(),
    'qom-path': z.string(),
    'thread-id': z.int(),
    target: z.string().optional(),
    props: z.record(z.string(), z.unknown()).optional(),
  })
  .loose();

/** Validators of each command's answer: the single source of truth for answer shapes. */
export const QMP_RETURN_SCHEMAS: { readonly [K in QmpCommandName]: z.ZodType<QmpCommandReturn<K>> } = Object.freeze({
  'query-status': statusInfo,
  stop: emptyReturn,
  cont: emptyReturn,
  quit: emptyReturn,
  'query-version': qmpVersionInfoSchema,
  'migrate-set-capabilities': emptyReturn,
  migrate: emptyReturn,
  'migrate-incoming': emptyReturn,
  'query-migrate': migrationInfo,
  migrate_cancel: emptyReturn,
  system_reset: emptyReturn,
  system_powerdown: emptyReturn,
  'query-cpus-fast': z.array(cpuInfoFast).readonly(),
  'human-monitor-command': z.string(),
  'query-name': z.object({ name: z.string().optional() }).loose(),
});
