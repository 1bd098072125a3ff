import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { IntermissionError, isIntermissionError } from '../../domain/index.js';
import type { VmCapabilities } from '../../domain/rollout/index.js';
import {
  DEFAULT_QMP_COMMAND_TIMEOUT_MS,
  GuestAgentClient,
  QmpClient,
  preciseWallClock,
  type QmpExecuteOptions,
  type QmpMigrationInfo,
  type QmpRunState,
} from '../../qmp/index.js';
import { resyncGuestClock } from '../clock-sync.js';
import type {
  ApplyHostUpdateOptions,
  ApplyHostUpdateResult,
  DriverCapabilities,
  DriverCapabilityFlag,
  GuestTimeResult,
  HypervisorDriver,
  LeaseResume,
  OperationOptions,
  PauseOptions,
  PauseResult,
  RebootOptions,
  RebootResult,
  ResumeResult,
  ResyncClockOptions,
  ResyncClockResult,
  SetGuestTimeOptions,
  SetGuestTimeResult,
  SwapVmmOptions,
  VmOperationOptions,
  VmRuntimeInfo,
  VmState,
} from '../driver.js';
import {
  driverError,
  driverErrorReason,
  isDriverError,
  operationError,
  withDetails,
  type DriverErrorReason,
} from '../errors.js';
import { buildQemuArgv, describeDevice, isMigratableDevice } from './internal/argv.js';
import { canLoad, probeBuilds, type BuildProbe } from './internal/builds.js';
import { firmwareSearchDirs } from './internal/firmware.js';
import { deleteTaps, ensureTaps, wrapWithTaps } from './internal/tap.js';
import { pinSpec, resolveVmParts } from './internal/vm-spec.js';
import { EventLog } from './internal/event-log.js';
import {
  SAFE_PATH_PATTERN,
  VM_NAME_PATTERN,
  VM_RECORD_FORMAT,
  checkSocketPath,
  ensureDir,
  listVmDirs,
  processPaths,
  readLease,
  readVmRecord,
  removeFile,
  vmPaths,
  writeJsonAtomic,
  type LeaseFile,
  type PendingSwap,
  type ProcessPaths,
  type ProcessRecord,
  type ResolvedVmSpec,
  type VmPaths,
  type VmRecordFile,
} from './internal/layout.js';
import {
  cpuTimeNs,
  findProcesses,
  isAlive,
  logTail,
  setRealtime,
  setThreadPriority,
  signalGroup,
  spawnDetached,
  stopGroup,
  threadPriority,
  waitGone,
} from './internal/process.js';
import { readLeaseResumes, resyncRepeating, withClockLock } from './guest-clock.js';
import { defaultWatchdogCommand, watchdogArgv, watchdogStarted } from './watchdog-command.js';
import { resolveQemuConfig, type QemuDriverConfig, type ResolvedQemuConfig } from './qemu-config.js';
import type {
  LocalMigrationOptions,
  QemuLaunchOptions,
  QemuMigrationStats,
  QemuSwapInterruption,
  QemuSwapVmmResult,
  QemuVmInfo,
  RamTransferMode,
  SwapPhase,
} from './qemu-types.js';

/** One QMP connection to one process of a VM, with its recent events. */
interface Session {
  readonly qmp: QmpClient;
  readonly log: EventLog;
  readonly generation: number;
}

/** What the driver holds for one VM. */
interface VmHandle {
  readonly name: string;
  readonly paths: VmPaths;
  record: VmRecordFile;
  /** The driver's connection to the current process; opened on first use. */
  session: Session | undefined;
  agent: GuestAgentClient | undefined;
  /** When the vCPUs of the current process stopped, while they are stopped. */
  pausedSince: number | null;
  /** An operation that owns the VM for its duration. */
  operation: 'launch' | 'swap' | 'reboot' | 'destroy' | null;
  /** Whether the guest agent answered the last time it was asked. */
  agentSeen: boolean;
}

/** One call under way. */
interface Call {
  readonly operation: string;
  readonly vm: string | undefined;
  readonly startedAt: number;
  readonly deadline: number;
  /** Aborts at the deadline, on the caller's abort and on `close()`, with the driver error as reason. */
  readonly signal: AbortSignal;
  handle?: VmHandle;
}

/** A process just started for a VM. */
interface StartedProcess {
  readonly record: ProcessRecord;
  readonly paths: ProcessPaths;
  readonly session: Session;
}

/** Migration states in which a migration has ended. */
const MIGRATION_ENDED: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);
/** How often a swap asks for the migration's state when no MIGRATION event says it ended. */
const MIGRATION_RECHECK_MS = 250;
/** Migration states in which the source still moves state (and may be cancelled). */
const ACTIVE_MIGRATION = new Set(['setup', 'active', 'pre-switchover', 'device', 'wait-unplug', 'postcopy-active']);

/** Bound on each guest-agent call (the call's deadline may be shorter). */
const AGENT_CALL_TIMEOUT_MS = 5_000;
/** Bound on connecting to a monitor: QEMU answers in milliseconds unless another client holds it. */
const MONITOR_CONNECT_TIMEOUT_MS = 5_000;
/** Bound on each step of a rollback or a clean-up, which run without the caller's deadline. */
const CLEANUP_STEP_MS = 5_000;
/** How long a process asked to quit gets before it is killed. */
const QUIT_GRACE_MS = 3_000;
/** How long a swap waits for the new process's watchdog to connect and settle before the switchover. */
const WATCHDOG_READY_TIMEOUT_MS = 5_000;
/** A watchdog is settled once its CPU time grew by less than this… */
const WATCHDOG_BUSY_NS = 1_000_000;
/** …for this long. */
const WATCHDOG_QUIET_MS = 60;
/** Bandwidth of a copying local migration (bytes/s): a unix socket, so as fast as QEMU can send. */
const COPY_MIGRATION_BANDWIDTH = 64 * 1024 ** 3;

/**
 * The QEMU {@link HypervisorDriver}: the VMs of one host, each a QEMU process started detached
 * (so that it outlives the agent) with its RAM in a shared file mapping, its guest agent on a
 * virtio-serial socket, its metadata channel forwarded to a per-VM unix socket, its serial console
 * in a log file, and three monitors: the driver's, its resume watchdog's, and a spare one.
 *
 * Everything a new driver needs is on disk under `runDir` (see `internal/layout.ts`), so
 * {@link QemuDriver.open} on the same directory (an agent restart) adopts the running VMs, finishes
 * or rolls back a swap that was under way, and restarts missing watchdogs: no VM is lost or
 * orphaned.
 *
 * Timestamps are the host's wall clock: pauses and resumes are dated by QEMU's STOP and RESUME
 * events, and a swap's downtime is the gap between the old process's STOP and the new one's RESUME.
 *
 * @example
 * const driver = await QemuDriver.open({
 *   host: 'h1', runDir: '/run/intermission/qemu', accel: 'kvm',
 *   vmmBuilds: { '7.2': '/usr/bin/qemu-system-x86_64', '7.2-patched': '/opt/qemu/bin/qemu-system-x86_64' },
 *   defaultVmmVersion: '7.2', kernel: '/srv/guest/vmlinuz', initrd: '/srv/guest/initrd.img',
 * });
 * await driver.launch({ vm: 'vm1', ramMb: 1024 });
 * await driver.swapVmm({ vm: 'vm1', targetVersion: '7.2-patched', deadline: Date.now() + 30_000 });
 */
export class QemuDriver implements HypervisorDriver {
  readonly host: string;
  readonly capabilities: DriverCapabilities;
  /** The configuration with its defaults. */
  readonly config: ResolvedQemuConfig;
  readonly #handles = new Map<string, VmHandle>();
  readonly #closer = new AbortController();
  #closed = false;
  #applying: string | null = null;
  /** What each build is and can load, probed once at open (see `internal/builds.ts`). */
  #builds: ReadonlyMap<string, BuildProbe> = new Map();

  private constructor(config: ResolvedQemuConfig) {
    this.config = config;
    this.host = config.host;
    this.capabilities = config.capabilities;
    setMaxListeners(0, this.#closer.signal);
  }

  /**
   * A driver on `config.runDir`, with every VM recorded there adopted: a swap a previous driver left
   * half done is finished (when the new process took over) or rolled back, and a missing watchdog
   * is restarted. A VM whose process is gone is listed as `failed`.
   *
   * @throws IntermissionError `INVALID_INPUT` for a bad configuration
   */
  static async open(config: QemuDriverConfig): Promise<QemuDriver> {
    const resolved = resolveQemuConfig(config);
    for (const path of [resolved.runDir, resolved.memoryDir]) {
      if (!SAFE_PATH_PATTERN.test(path)) {
        throw new IntermissionError('INVALID_INPUT', `${path}: only letters, digits and . _ / + - are allowed`);
      }
    }
    ensureDir(resolved.runDir);
    const driver = new QemuDriver(resolved);
    driver.#builds = await probeBuilds(resolved.vmmBuilds);
    await driver.#adoptAll();
    return driver;
  }

  // -------------------------------------------------------------------------------------------
  // VM lifecycle (beyond the port)
  // -------------------------------------------------------------------------------------------

  /**
   * Starts a new VM: records it, starts its QEMU process and resume watchdog, and (by default) waits
   * for its guest agent and sets the guest clock from the host's. Without a deadline it is bounded
   * by `bootTimeoutMs`. On failure nothing of the VM is left behind.
   *
   * @throws driver errors: `CONFLICT` (`BUSY`) when the name is taken, `UNSUPPORTED` for an unknown
   *   VMM build, `OPERATION_FAILED` when QEMU does not start (its log is in the message)
   */
  launch(options: QemuLaunchOptions): Promise<QemuVmInfo> {
    return this.#run('launch', options, undefined, this.config.bootTimeoutMs, async (call) => {
      const spec = this.#resolveSpec(options);
      if (this.#handles.has(spec.vm) || existsSync(vmPaths(this.config.runDir, spec.vm).record)) {
        throw this.#error(call, 'BUSY', `host ${this.host} already has a VM named ${spec.vm}`);
      }
      const version = options.vmmVersion ?? this.config.defaultVmmVersion;
      const binary = this.#binary(call, version);
      const paths = vmPaths(this.config.runDir, spec.vm);
      ensureDir(paths.dir);
      const handle: VmHandle = {
        name: spec.vm,
        paths,
        record: {
          format: VM_RECORD_FORMAT,
          host: this.host,
          spec,
          current: { generation: 1, vmmVersion: version, binary, pid: 0, startedAt: 0, watchdogPid: 0 },
          pending: null,
        },
        session: undefined,
        agent: undefined,
        pausedSince: null,
        operation: 'launch',
        agentSeen: false,
      };
      call.handle = handle;
      this.#handles.set(spec.vm, handle);
      this.#writeRecord(handle, handle.record);
      try {
        // Pinned for the VM's life: the build's versioned machine type and its firmware images.
        const pinned = pinSpec(spec, {
          probe: this.#builds.get(version),
          firmwareDir: paths.firmwareDir,
          searchDirs: firmwareSearchDirs(binary, this.config.buildDataDirs[version], this.config.firmwareSearchPath),
        });
        this.#writeRecord(handle, { ...handle.record, spec: pinned });
        const started = await this.#startProcess(handle, handle.record.current, false, call);
        this.#adoptProcess(handle, started);
        handle.operation = null;
        if (options.waitForGuestAgent ?? spec.guestAgent) {
          await this.#waitForAgent(handle, call);
          await this.#resyncQuietly(handle, call);
        }
        return this.#describe(handle);
      } catch (error) {
        handle.operation = 'destroy';
        await this.#destroyHandle(handle);
        throw error;
      }
    });
  }

  /**
   * Stops a VM for good: quits its process (killing it if needed) and its watchdog, and removes its
   * directory and RAM file. `NOT_FOUND` for a VM the driver does not know.
   */
  destroy(options: VmOperationOptions): Promise<void> {
    return this.#run('destroy', options, undefined, undefined, async (call) => {
      const handle = this.#handle(call);
      handle.operation = 'destroy';
      await this.#destroyHandle(handle);
    });
  }

  /** Paths, sizes and processes of one VM, beyond what {@link listVms} reports. */
  describeVm(options: VmOperationOptions): Promise<QemuVmInfo> {
    return this.#run('describeVm', options, undefined, undefined, (call) =>
      Promise.resolve(this.#describe(this.#handle(call))),
    );
  }

  /**
   * Moves a VM to a new process on this host, as {@link swapVmm} does, but also to the same build
   * and with a choice of how RAM moves: `shared` (in place, RAM skipped; VMs with shared RAM) or
   * `copy` (every page sent, as a live migration between hosts would; VMs with private RAM only, as
   * the destination would otherwise write into the memory the running source uses). For measuring
   * one against the other.
   */
  migrateLocally(options: LocalMigrationOptions): Promise<QemuSwapVmmResult> {
    return this.#run('migrateLocally', options, undefined, undefined, async (call) => {
      const handle = this.#handle(call);
      return this.#migrate(call, handle, options.targetVersion, options.ramTransfer, false);
    });
  }

  // -------------------------------------------------------------------------------------------
  // The port
  // -------------------------------------------------------------------------------------------

  listVms(options: OperationOptions = {}): Promise<readonly VmRuntimeInfo[]> {
    return this.#run('listVms', options, undefined, undefined, async (call) => {
      const handles = [...this.#handles.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
      const infos: VmRuntimeInfo[] = [];
      for (const handle of handles) infos.push(await this.#info(handle, call));
      return infos;
    });
  }

  vmCapabilities(options: VmOperationOptions): Promise<VmCapabilities> {
    return this.#run('vmCapabilities', options, undefined, undefined, async (call) => {
      const handle = this.#handle(call);
      const blockingDevices = await this.#blockers(handle, call);
      let guestAgent = false;
      if (handle.record.spec.guestAgent && this.#alive(handle)) {
        const session = await this.#session(handle, call);
        if ((await this.#status(session, call)) === 'running') {
          guestAgent = await this.#agent(handle)
            .ping({ timeoutMs: Math.min(3_000, this.#remaining(call)), signal: call.signal })
            .then(
              () => true,
              () => false,
            );
          handle.agentSeen = guestAgent;
        } else {
          guestAgent = handle.agentSeen;
        }
      }
      // Which other builds of this host could take the VM over (machine type, devices, firmware).
      const vmmBuilds: Record<string, { loadable: boolean; reason?: string }> = {};
      for (const [version, probe] of this.#builds) {
        const current = this.#builds.get(handle.record.current.vmmVersion);
        if (version !== handle.record.current.vmmVersion)
          vmmBuilds[version] = canLoad(probe, handle.record.spec, current);
      }
      return Object.freeze({
        sharedMemory: handle.record.spec.sharedMemory,
        migratableDevices: blockingDevices.length === 0,
        blockingDevices: Object.freeze(blockingDevices),
        guestAgent,
        vmmBuilds: Object.freeze(vmmBuilds),
      });
    });
  }

  pause(options: PauseOptions): Promise<PauseResult> {
    return this.#run('pause', options, undefined, undefined, async (call) => {
      const handle = this.#handle(call);
      this.#notBusy(call, handle);
      const session = await this.#session(handle, call);
      const status = await this.#status(session, call);
      if (status === 'paused') return Object.freeze({ pausedAt: this.#pausedSinceOf(handle), alreadyPaused: true });
      if (status !== 'running') throw this.#stateError(call, handle, status);
      // No pause without a watchdog: one that died is started again first.
      await this.#ensureWatchdog(handle);
      const lease: LeaseFile = { until: options.leaseUntil ?? null, writtenAt: Date.now() };
      // Before the stop: the watchdog must find the lease as soon as it sees the STOP.
      writeJsonAtomic(handle.paths.lease, lease);
      const mark = session.log.seq;
      await session.qmp.execute('stop', undefined, this.#qmpOptions(call));
      const stop = await session.log.waitFor('STOP', mark, { timeoutMs: 2_000, signal: call.signal });
      const pausedAt = stop?.timestampMs ?? Date.now();
      handle.pausedSince = pausedAt;
      writeJsonAtomic(handle.paths.lease, { ...lease, pausedAt });
      return Object.freeze({ pausedAt, alreadyPaused: false });
    });
  }

  resume(options: VmOperationOptions): Promise<ResumeResult> {
    return this.#run('resume', options, undefined, undefined, async (call) => {
      const handle = this.#handle(call);
      this.#notBusy(call, handle);
      const session = await this.#session(handle, call);
      const status = await this.#status(session, call);
      if (status === 'running') {
        this.#markRunning(handle);
        return Object.freeze({ resumedAt: Date.now(), pausedMs: 0, alreadyRunning: true });
      }
      if (status !== 'paused') throw this.#stateError(call, handle, status);
      const since = this.#pausedSinceOf(handle);
      const mark = session.log.seq;
      await session.qmp.execute('cont', undefined, this.#qmpOptions(call));
      const resume = await session.log.waitFor('RESUME', mark, { timeoutMs: 2_000, signal: call.signal });
      const resumedAt = resume?.timestampMs ?? Date.now();
      this.#markRunning(handle);
      return Object.freeze({ resumedAt, pausedMs: resumedAt - since, alreadyRunning: false });
    });
  }

  /**
   * {@link HypervisorDriver.swapVmm}, with what an interruption (deadline, abort, `close()`, an
   * error) does on each side of the point of no return:
   *
   * - before it, the swap is rolled back (`details.rolledBack: true`): the new process is frozen
   *   while the source is asked whether its migration completed, the migration is cancelled, the
   *   new process killed, and the old one runs the VM on (or holds it paused, as it was);
   * - once the source has reported `completed`, or the new process has started the VM, the old
   *   process is never resumed: the new one may already have run the guest on the RAM both map.
   *   The driver finishes the swap on the new process instead, past the deadline if need be, and
   *   resolves with `interrupted` set when the VM runs there (a late success: the VM did move, with
   *   the real `downtimeMs` and `completedAt`; a deadline that was the pause budget shows in
   *   `downtimeMs`), or rejects with `details.rolledBack: false` when the new process does not run
   *   it (`VM_FAILED` when it died: the VM must be restarted).
   */
  swapVmm(options: SwapVmmOptions): Promise<QemuSwapVmmResult> {
    return this.#run('swapVmm', options, 'inPlaceMigration', undefined, async (call) => {
      if (!Number.isFinite(options.deadline)) {
        throw new IntermissionError(
          'INVALID_INPUT',
          'swapVmm needs a deadline (typically the end of the pause budget)',
        );
      }
      const handle = this.#handle(call);
      return this.#migrate(call, handle, options.targetVersion, 'shared', true);
    });
  }

  applyHostUpdate(options: ApplyHostUpdateOptions): Promise<ApplyHostUpdateResult> {
    return this.#run('applyHostUpdate', options, 'hostUpdate', undefined, async (call) => {
      const { update } = options;
      if (!(Number.isFinite(update.expectedApplyMs) && update.expectedApplyMs >= 0)) {
        throw new IntermissionError(
          'INVALID_INPUT',
          `update ${update.id}: expectedApplyMs must be a number of ms >= 0`,
        );
      }
      if (this.#applying !== null) {
        throw this.#error(call, 'BUSY', `host ${this.host} is already applying update ${this.#applying}`, {
          applying: this.#applying,
        });
      }
      this.#applying = update.id;
      try {
        await this.config.hostUpdate({ update, deadline: call.deadline, signal: call.signal });
        const completedAt = Date.now();
        return Object.freeze({
          updateId: update.id,
          startedAt: call.startedAt,
          completedAt,
          applyMs: completedAt - call.startedAt,
        });
      } catch (error) {
        throw withDetails(this.#normalize(call, error), { updateId: update.id, applied: false });
      } finally {
        this.#applying = null;
      }
    });
  }

  reboot(options: RebootOptions): Promise<RebootResult> {
    return this.#run('reboot', options, 'reboot', this.config.bootTimeoutMs, async (call) => {
      const handle = this.#handle(call);
      this.#notBusy(call, handle);
      const version = options.targetVersion ?? handle.record.current.vmmVersion;
      const binary = this.#binary(call, version);
      handle.operation = 'reboot';
      try {
        await this.#retire(handle, handle.record.current, handle.session);
        handle.session = undefined;
        handle.agent = undefined;
        handle.pausedSince = null;
        removeFile(handle.paths.lease);
        // A fresh boot: the old RAM has no use, and a new file starts zeroed.
        if (handle.record.spec.memPath !== null) removeFile(handle.record.spec.memPath);
        const next: ProcessRecord = {
          generation: handle.record.current.generation + 1,
          vmmVersion: version,
          binary,
          pid: 0,
          startedAt: 0,
          watchdogPid: 0,
        };
        const started = await this.#startProcess(handle, next, false, call);
        this.#adoptProcess(handle, started);
        handle.operation = null;
        let startedAt = started.record.startedAt;
        if (handle.record.spec.guestAgent) {
          startedAt = await this.#waitForAgent(handle, call);
          await this.#resyncQuietly(handle, call);
        }
        return Object.freeze({
          generation: started.record.generation,
          vmmVersion: version,
          startedAt,
          rebootMs: startedAt - call.startedAt,
        });
      } finally {
        if (handle.operation === 'reboot') handle.operation = null;
      }
    });
  }

  guestTime(options: VmOperationOptions): Promise<GuestTimeResult> {
    return this.#run('guestTime', options, 'guestClock', undefined, async (call) => {
      const handle = await this.#agentReady(call);
      const reading = await this.#agent(handle).getTime(this.#agentOptions(call));
      handle.agentSeen = true;
      return Object.freeze({
        guestMs: reading.guestTimeMs,
        hostMs: reading.hostMidpointMs,
        offsetMs: reading.offsetMs,
        roundTripMs: reading.roundTripMs,
      });
    });
  }

  setGuestTime(options: SetGuestTimeOptions): Promise<SetGuestTimeResult> {
    // `timeMs` is what the guest should read when the value arrives, as of the call: connecting
    // and syncing with the agent take a round trip first, so the time that passed is added (to the
    // microsecond: whole milliseconds would be as large as the round trip itself).
    const askedAt = performance.now();
    return this.#run('setGuestTime', options, 'guestClock', undefined, async (call) => {
      const handle = await this.#agentReady(call);
      const result = await this.#agent(handle).setTime({
        ...this.#agentOptions(call),
        timeMs: () => options.timeMs + (performance.now() - askedAt),
      });
      return Object.freeze({ completedAt: result.hostReceivedMs, roundTripMs: result.roundTripMs });
    });
  }

  /**
   * {@link resyncRepeating}: {@link resyncGuestClock} stepped again while the residual is larger
   * than its round trip, holding the VM's clock lock, so that it never interleaves with the resume
   * watchdog's resync of the same VM (see `guest-clock.ts`).
   */
  async resyncClock(options: ResyncClockOptions): Promise<ResyncClockResult> {
    const handle = this.#handles.get(options.vm);
    const resync = (): Promise<ResyncClockResult> =>
      resyncRepeating((o) => this.#resyncOnce({ ...options, ...o }), options.toleranceMs);
    return handle === undefined ? resync() : withClockLock(handle.paths.clockLock, resync);
  }

  /**
   * The pauses the VM's resume watchdog ended, with its clock resync after each (from
   * `lease-resumes.json`, which outlives drivers and processes). A resync under way is waited for:
   * the watchdog holds the clock lock until it has recorded it.
   */
  leaseResumes(options: VmOperationOptions): Promise<readonly LeaseResume[]> {
    return this.#run('leaseResumes', options, undefined, undefined, async (call) => {
      const handle = this.#handle(call);
      const path = handle.paths.leaseResumes;
      return Object.freeze(
        await withClockLock(handle.paths.clockLock, () => Promise.resolve(readLeaseResumes(path)), {
          waitMs: Math.max(0, call.deadline - Date.now()),
        }),
      );
    });
  }

  #resyncOnce(options: ResyncClockOptions): Promise<ResyncClockResult> {
    if (this.#closed) return Promise.reject(this.#closedError('resyncClock', options.vm));
    if (!this.capabilities.guestClock) {
      return Promise.reject(
        driverError({
          reason: 'UNSUPPORTED',
          message: `driver of host ${this.host} does not declare guestClock`,
          details: { operation: 'resyncClock', host: this.host, vm: options.vm, capability: 'guestClock' },
        }),
      );
    }
    return resyncGuestClock({ ...options, driver: this, clock: preciseWallClock });
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#closer.abort(this.#closedError('close', undefined));
      for (const handle of this.#handles.values()) {
        void handle.session?.qmp.close();
        handle.session = undefined;
        void handle.agent?.close();
        handle.agent = undefined;
      }
    }
    return Promise.resolve();
  }

  // -------------------------------------------------------------------------------------------
  // Calls
  // -------------------------------------------------------------------------------------------

  /** Runs one call: checks, the deadline/abort signal, and one place where errors are normalised. */
  async #run<T>(
    operation: string,
    options: OperationOptions & { readonly vm?: string },
    flag: DriverCapabilityFlag | undefined,
    defaultTimeoutMs: number | undefined,
    body: (call: Call) => Promise<T>,
  ): Promise<T> {
    const startedAt = Date.now();
    const base = { operation, vm: options.vm };
    if (this.#closed) throw this.#closedError(operation, options.vm);
    if (flag !== undefined && !this.capabilities[flag]) {
      throw this.#error(base, 'UNSUPPORTED', `driver of host ${this.host} does not declare ${flag}`, {
        capability: flag,
      });
    }
    const deadline = options.deadline ?? startedAt + (defaultTimeoutMs ?? this.config.operationTimeoutMs);
    if (!(deadline > startedAt)) {
      throw this.#error(base, 'DEADLINE_EXCEEDED', `${operation}: the deadline had passed before the call`, {
        deadline,
      });
    }
    if (options.signal?.aborted === true) {
      throw this.#error(base, 'ABORTED', `${operation} was aborted before it started`, {}, options.signal.reason);
    }
    const controller = new AbortController();
    const call: Call = { operation, vm: options.vm, startedAt, deadline, signal: controller.signal };
    const timer = setTimeout(
      () =>
        controller.abort(
          this.#error(
            call,
            'DEADLINE_EXCEEDED',
            `${operation}${call.vm === undefined ? '' : ` of VM ${call.vm}`} did not complete by its deadline`,
            { deadline },
          ),
        ),
      deadline - startedAt,
    );
    const onAbort = (): void =>
      controller.abort(this.#error(call, 'ABORTED', `${operation} was aborted`, {}, options.signal?.reason));
    const onClose = (): void => controller.abort(this.#closedError(operation, options.vm));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    this.#closer.signal.addEventListener('abort', onClose, { once: true });
    try {
      return await body(call);
    } catch (error) {
      throw this.#normalize(call, error);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      this.#closer.signal.removeEventListener('abort', onClose);
    }
  }

  #remaining(call: Call): number {
    return Math.max(1, call.deadline - Date.now());
  }

  #qmpOptions(call: Call, capMs = DEFAULT_QMP_COMMAND_TIMEOUT_MS): QmpExecuteOptions {
    return { signal: call.signal, timeoutMs: Math.min(this.#remaining(call), capMs) };
  }

  #agentOptions(call: Call): { timeoutMs: number; signal: AbortSignal; now: () => number } {
    return {
      timeoutMs: Math.min(this.#remaining(call), AGENT_CALL_TIMEOUT_MS),
      signal: call.signal,
      now: () => Date.now(),
    };
  }

  /** The one place where what a call met becomes a driver error with a stable reason. */
  #normalize(call: Call, error: unknown): IntermissionError {
    if (isDriverError(error)) return error;
    if (call.signal.aborted && isDriverError(call.signal.reason)) return call.signal.reason;
    if (!isIntermissionError(error)) {
      return this.#error(call, 'OPERATION_FAILED', `${call.operation} failed: ${String(error)}`, {}, error);
    }
    if (error.code === 'INVALID_INPUT') return error;
    const reason = error.details.reason;
    const peer = error.details.peer;
    const alive = call.handle === undefined || this.#alive(call.handle);
    const vm = call.vm === undefined ? '' : ` of VM ${call.vm}`;
    if (!alive) {
      return this.#error(
        call,
        'VM_FAILED',
        `VM ${call.vm ?? '?'} has failed (its QEMU process is gone); restart it`,
        {
          state: 'failed',
        },
        error,
      );
    }
    if (
      peer === 'guest-agent' &&
      (reason === 'TIMEOUT' || reason === 'CONNECT_FAILED' || reason === 'CONNECTION_LOST')
    ) {
      return this.#error(
        call,
        'GUEST_AGENT_UNREACHABLE',
        `the guest agent${vm} does not answer: ${error.message}`,
        {},
        error,
        true,
      );
    }
    if (reason === 'TIMEOUT') {
      return this.#error(call, 'DEADLINE_EXCEEDED', `${call.operation}${vm}: ${error.message}`, {}, error);
    }
    if (reason === 'ABORTED') return this.#error(call, 'ABORTED', `${call.operation}${vm} was aborted`, {}, error);
    return this.#error(call, 'OPERATION_FAILED', `${call.operation}${vm} failed: ${error.message}`, {}, error);
  }

  #error(
    call: Pick<Call, 'operation' | 'vm'>,
    reason: DriverErrorReason,
    message: string,
    extra: Readonly<Record<string, unknown>> = {},
    cause?: unknown,
    retryable?: boolean,
  ): IntermissionError {
    return operationError({
      host: this.host,
      call,
      reason,
      message,
      extra,
      cause,
      ...(retryable === undefined ? {} : { retryable }),
    });
  }

  #closedError(operation: string, vm: string | undefined): IntermissionError {
    return this.#error({ operation, vm }, 'DRIVER_CLOSED', `the driver of host ${this.host} is closed`);
  }

  #handle(call: Call): VmHandle {
    const handle = call.vm === undefined ? undefined : this.#handles.get(call.vm);
    if (handle === undefined) {
      throw this.#error(call, 'VM_NOT_FOUND', `host ${this.host} has no VM named ${JSON.stringify(call.vm)}`);
    }
    call.handle = handle;
    return handle;
  }

  #notBusy(call: Call, handle: VmHandle): void {
    if (handle.operation !== null) {
      throw this.#error(call, 'BUSY', `VM ${handle.name} is busy: ${handle.operation} under way`, {
        state: handle.operation === 'swap' ? 'migrating' : 'stopped',
        busyWith: handle.operation,
      });
    }
  }

  #stateError(call: Call, handle: VmHandle, status: QmpRunState): IntermissionError {
    const state = vmStateOf(status);
    return state === 'migrating'
      ? this.#error(call, 'BUSY', `VM ${handle.name} is migrating (${status}); wait for it to end`, { state, status })
      : this.#error(call, 'WRONG_STATE', `cannot ${call.operation} VM ${handle.name}: it is ${state} (${status})`, {
          state,
          status,
        });
  }

  #binary(call: Call, version: string): string {
    const binary = this.config.vmmBuilds[version];
    if (binary === undefined) {
      throw this.#error(call, 'UNSUPPORTED', `host ${this.host} has no VMM build ${JSON.stringify(version)}`, {
        vmmVersion: version,
        known: Object.keys(this.config.vmmBuilds),
      });
    }
    return binary;
  }

  // -------------------------------------------------------------------------------------------
  // Sessions, state
  // -------------------------------------------------------------------------------------------

  #alive(handle: VmHandle): boolean {
    const current = handle.record.current;
    return isAlive(current.pid, processPaths(handle.paths.dir, current.generation).qmp);
  }

  /** The driver's connection to the VM's current process, opened when needed. */
  async #session(handle: VmHandle, call: Call): Promise<Session> {
    const existing = handle.session;
    if (existing !== undefined && !existing.qmp.closed && existing.generation === handle.record.current.generation) {
      return existing;
    }
    if (!this.#alive(handle)) {
      throw this.#error(call, 'VM_FAILED', `VM ${handle.name} has failed (its QEMU process is gone); restart it`, {
        state: 'failed',
      });
    }
    const paths = processPaths(handle.paths.dir, handle.record.current.generation);
    let session: Session;
    try {
      session = await this.#connect(handle, paths.qmp, handle.record.current.generation, call);
    } catch (error) {
      throw this.#error(
        call,
        'OPERATION_FAILED',
        `cannot reach the QMP monitor of VM ${handle.name} at ${paths.qmp} (is another driver connected?)`,
        {},
        error,
      );
    }
    handle.session = session;
    return session;
  }

  /** Connects to a monitor; events of the VM's current process keep `pausedSince` up to date. */
  async #connect(handle: VmHandle, path: string, generation: number, call: Call | undefined): Promise<Session> {
    const qmp = await QmpClient.connect({
      path,
      timeoutMs: Math.min(
        call === undefined ? MONITOR_CONNECT_TIMEOUT_MS : this.#remaining(call),
        MONITOR_CONNECT_TIMEOUT_MS,
      ),
      ...(call === undefined ? {} : { signal: call.signal }),
    });
    const session: Session = { qmp, log: new EventLog(qmp), generation };
    qmp.on('STOP', (event) => {
      if (handle.session === session) handle.pausedSince ??= event.timestampMs;
    });
    qmp.on('RESUME', () => {
      if (handle.session === session) this.#markRunning(handle);
    });
    qmp.on('close', () => {
      if (handle.session === session) handle.session = undefined;
    });
    return session;
  }

  /** The VM runs: no pause, no lease (synchronous, so that a later pause's lease is never removed). */
  #markRunning(handle: VmHandle): void {
    handle.pausedSince = null;
    removeFile(handle.paths.lease);
  }

  async #status(session: Session, call: Call): Promise<QmpRunState> {
    return (await session.qmp.execute('query-status', undefined, this.#qmpOptions(call))).status;
  }

  /** When the current pause began: seen by this driver, else recorded in the lease file, else now. */
  #pausedSinceOf(handle: VmHandle): number {
    handle.pausedSince ??= readLease(handle.paths.lease)?.pausedAt ?? Date.now();
    return handle.pausedSince;
  }

  async #info(handle: VmHandle, call: Call): Promise<VmRuntimeInfo> {
    const current = handle.record.current;
    const info = (state: VmState, pid: number | null, pausedSince: number | null): VmRuntimeInfo =>
      Object.freeze({
        name: handle.name,
        state,
        pid,
        generation: current.generation,
        vmmVersion: current.vmmVersion,
        pausedSince,
      });
    if (handle.operation === 'swap') return info('migrating', current.pid, handle.pausedSince);
    if (handle.operation !== null) return info('stopped', null, null);
    if (!this.#alive(handle)) return info('failed', null, null);
    const status = await this.#status(await this.#session(handle, call), call);
    const state = vmStateOf(status);
    if (state === 'running') this.#markRunning(handle);
    return info(state, current.pid, state === 'paused' ? this.#pausedSinceOf(handle) : null);
  }

  #describe(handle: VmHandle): QemuVmInfo {
    const current = handle.record.current;
    const alive = this.#alive(handle);
    const paths = processPaths(handle.paths.dir, current.generation);
    return Object.freeze({
      name: handle.name,
      state:
        handle.operation === 'swap'
          ? 'migrating'
          : alive
            ? handle.pausedSince === null
              ? 'running'
              : 'paused'
            : 'failed',
      pid: alive ? current.pid : null,
      generation: current.generation,
      vmmVersion: current.vmmVersion,
      pausedSince: handle.pausedSince,
      ramMb: handle.record.spec.ramMb,
      sharedMemory: handle.record.spec.sharedMemory,
      dir: handle.paths.dir,
      serialLog: handle.paths.serialLog,
      metadataSocket: handle.record.spec.metadataSocket,
      guestAgentSocket: handle.record.spec.guestAgent ? paths.guestAgent : null,
      watchdogPid: isAlive(current.watchdogPid, paths.watchdogQmp) ? current.watchdogPid : null,
      machine: handle.record.spec.machine ?? 'pc',
      firmwareFiles: handle.record.spec.firmware?.files ?? [],
      taps: (handle.record.spec.nics ?? []).map((nic) => nic.tap),
    });
  }

  /** Devices that block migration: declared ones, and what QEMU itself reports. */
  async #blockers(handle: VmHandle, call: Call): Promise<string[]> {
    const declared = handle.record.spec.devices.filter((d) => !isMigratableDevice(d)).map(describeDevice);
    if (!this.#alive(handle)) return declared;
    const session = await this.#session(handle, call);
    const info = await session.qmp.execute('query-migrate', undefined, this.#qmpOptions(call));
    const reasons = (info as QmpMigrationInfo & { readonly 'blocked-reasons'?: unknown })['blocked-reasons'];
    const fromQemu = Array.isArray(reasons) ? reasons.filter((r): r is string => typeof r === 'string') : [];
    return [...declared, ...fromQemu];
  }

  #agent(handle: VmHandle): GuestAgentClient {
    const path = processPaths(handle.paths.dir, handle.record.current.generation).guestAgent;
    if (handle.agent === undefined || handle.agent.path !== path) {
      void handle.agent?.close();
      handle.agent = new GuestAgentClient({ path, now: () => Date.now() });
    }
    return handle.agent;
  }

  /** The VM of a guest-agent call, checked: it has an agent and its vCPUs run. */
  async #agentReady(call: Call): Promise<VmHandle> {
    const handle = this.#handle(call);
    if (!handle.record.spec.guestAgent) {
      throw this.#error(call, 'GUEST_AGENT_UNREACHABLE', `VM ${handle.name} has no guest agent`, {}, undefined, false);
    }
    if (handle.operation !== null && handle.operation !== 'launch') this.#notBusy(call, handle);
    const status = await this.#status(await this.#session(handle, call), call);
    if (status !== 'running') {
      throw this.#error(call, 'WRONG_STATE', `the guest agent of VM ${handle.name} cannot answer: it is ${status}`, {
        state: vmStateOf(status),
        status,
      });
    }
    return handle;
  }

  /** Waits until the guest agent answers (a boot); returns when it did. */
  async #waitForAgent(handle: VmHandle, call: Call): Promise<number> {
    const agent = this.#agent(handle);
    for (;;) {
      if (!this.#alive(handle)) {
        throw this.#error(
          call,
          'VM_FAILED',
          `VM ${handle.name} died while booting: ${logTail(this.#qemuLog(handle), 500)}`,
          {
            state: 'failed',
          },
        );
      }
      try {
        await agent.ping({ timeoutMs: Math.min(2_000, this.#remaining(call)), signal: call.signal });
        handle.agentSeen = true;
        return Date.now();
      } catch (error) {
        if (call.signal.aborted) {
          throw withDetails(call.signal.reason, { serialLogTail: logTail(handle.paths.serialLog, 500) });
        }
        if (!isIntermissionError(error)) throw error;
      }
      await delay(Math.min(250, this.#remaining(call)), undefined, { signal: call.signal }).catch(() => undefined);
    }
  }

  /** After a boot: set the guest clock from the host's (the RTC has whole seconds). Best effort. */
  async #resyncQuietly(handle: VmHandle, call: Call): Promise<void> {
    await this.resyncClock({ vm: handle.name, deadline: call.deadline, toleranceMs: 1 }).catch(() => undefined);
  }

  #qemuLog(handle: VmHandle): string {
    return processPaths(handle.paths.dir, handle.record.current.generation).qemuLog;
  }

  #writeRecord(handle: VmHandle, record: VmRecordFile): void {
    handle.record = record;
    writeJsonAtomic(handle.paths.record, record);
  }

  #resolveSpec(options: QemuLaunchOptions): ResolvedVmSpec {
    const invalid = (message: string): IntermissionError =>
      new IntermissionError('INVALID_INPUT', `VM ${JSON.stringify(options.vm)}: ${message}`);
    if (!VM_NAME_PATTERN.test(options.vm)) {
      throw invalid('a VM name is letters, digits, . _ - (at most 63), starting with a letter or digit');
    }
    const ramMb = options.ramMb ?? this.config.defaultRamMb;
    const cpus = options.cpus ?? this.config.defaultCpus;
    if (!(Number.isInteger(ramMb) && ramMb >= 64)) throw invalid('ramMb must be an integer >= 64');
    if (!(Number.isInteger(cpus) && cpus >= 1)) throw invalid('cpus must be an integer >= 1');
    const paths = vmPaths(this.config.runDir, options.vm);
    const metadataSocket = options.metadataSocket ?? paths.defaultMetadataSocket;
    if (!SAFE_PATH_PATTERN.test(metadataSocket)) {
      throw invalid(`metadataSocket ${metadataSocket}: only letters, digits and . _ / + - are allowed`);
    }
    checkSocketPath(metadataSocket);
    const longest = processPaths(paths.dir, 9999);
    for (const path of [longest.qmp, longest.watchdogQmp, longest.opsQmp, longest.guestAgent, longest.migrate]) {
      checkSocketPath(path);
    }
    const kernelArgs = options.kernelArgs ?? '';
    if (/["'\\\n]/.test(kernelArgs)) throw invalid('kernelArgs may not contain quotes, backslashes or newlines');
    const devices = (options.devices ?? []).map((device) => {
      const values = [
        device.driver,
        ...Object.entries(device.props ?? {})
          .flat()
          .map(String),
      ];
      if (values.some((v) => v === '' || /[,\s]/.test(v)))
        throw invalid(`device ${device.driver}: no commas or spaces`);
      return Object.freeze({ ...device, props: Object.freeze({ ...device.props }) });
    });
    const objects = [...(options.objects ?? [])];
    if (objects.some((o) => /\s/.test(o))) throw invalid('objects may not contain spaces');
    const parts = resolveVmParts(options, this.config);
    const sharedMemory = options.sharedMemory ?? true;
    const memPath = sharedMemory
      ? `${this.config.memoryDir}/intermission-${options.vm}-${randomBytes(4).toString('hex')}.ram`
      : null;
    return Object.freeze({
      vm: options.vm,
      ramMb,
      cpus,
      sharedMemory,
      guestAgent: options.guestAgent ?? true,
      metadataSocket,
      kernelArgs,
      devices: Object.freeze(devices),
      objects: Object.freeze(objects),
      memPath,
      vapic: options.vapic ?? false,
      pciBridgeHotplug: options.pciBridgeHotplug ?? false,
      nicExtraMacRegisters: false,
      boot: parts.boot,
      disks: parts.disks,
      nics: parts.nics,
      cpuModel: parts.cpuModel,
      ...(parts.machine === null ? {} : { machine: parts.machine }),
    });
  }

  // -------------------------------------------------------------------------------------------
  // Processes
  // -------------------------------------------------------------------------------------------

  /**
   * Starts a QEMU process for the VM (booting, or waiting for an incoming migration) and its resume
   * watchdog, and connects the driver's monitor. On failure the process is killed again.
   */
  async #startProcess(
    handle: VmHandle,
    process: Pick<ProcessRecord, 'generation' | 'vmmVersion' | 'binary'>,
    incoming: boolean,
    call: Call,
  ): Promise<StartedProcess> {
    const paths = processPaths(handle.paths.dir, process.generation);
    rmSync(paths.dir, { recursive: true, force: true });
    ensureDir(paths.dir);
    const argv = buildQemuArgv({
      config: this.config,
      spec: handle.record.spec,
      vmPaths: handle.paths,
      paths,
      incoming,
      dataDir: this.config.buildDataDirs[process.vmmVersion] ?? null,
    });
    // Tenant NICs: the taps exist (a host restart removes them), and QEMU starts through the
    // wrapper that hands it its own queue of each (see internal/tap.ts).
    const nics = handle.record.spec.nics ?? [];
    let child: { pid: number; exited(): boolean };
    try {
      await ensureTaps(nics);
      const { command, args } = wrapWithTaps(this.config.python, process.binary, argv, nics);
      child = await spawnDetached(command, args, { logFile: paths.qemuLog, cwd: paths.dir });
    } catch (error) {
      throw this.#error(call, 'OPERATION_FAILED', `cannot start ${process.binary}: ${String(error)}`, {}, error);
    }
    // The watchdog starts at once, beside QEMU (it retries until its monitor exists): a Node process
    // takes a while to start, which then overlaps QEMU's own start.
    let watchdogPid = 0;
    try {
      watchdogPid = await this.#startWatchdog(handle, paths);
      for (;;) {
        if (existsSync(paths.qmp) && existsSync(paths.watchdogQmp)) break;
        if (child.exited() || !isAlive(child.pid)) {
          throw this.#error(
            call,
            'OPERATION_FAILED',
            `QEMU for VM ${handle.name} exited at start: ${logTail(paths.qemuLog)}`,
            {
              qemuLog: paths.qemuLog,
            },
          );
        }
        await delay(5, undefined, { signal: call.signal });
      }
      const session = await this.#connect(handle, paths.qmp, process.generation, call);
      const record: ProcessRecord = { ...process, pid: child.pid, startedAt: Date.now(), watchdogPid };
      return { record, paths, session };
    } catch (error) {
      signalGroup(child.pid, 'SIGKILL');
      if (watchdogPid > 0) signalGroup(watchdogPid, 'SIGKILL');
      await waitGone(child.pid, 2_000);
      throw error;
    }
  }

  /** Makes a started process the VM's current one, on disk and in memory. */
  #adoptProcess(handle: VmHandle, started: StartedProcess): void {
    this.#writeRecord(handle, { ...handle.record, current: started.record, pending: null });
    void handle.session?.qmp.close();
    handle.session = started.session;
    void handle.agent?.close();
    handle.agent = undefined;
  }

  /** Starts the resume watchdog of one process; returns its pid. */
  async #startWatchdog(handle: VmHandle, paths: ProcessPaths): Promise<number> {
    const [command, ...prefix] = this.config.watchdogCommand ?? defaultWatchdogCommand();
    if (command === undefined) throw new IntermissionError('INVALID_INPUT', 'watchdog.command is empty');
    const child = await spawnDetached(
      command,
      [
        ...prefix,
        // After a resume of its own, the watchdog resynchronises the guest clock (invariant 4).
        ...watchdogArgv({
          monitor: paths.watchdogQmp,
          lease: handle.paths.lease,
          maxPauseMs: this.config.watchdogMaxPauseMs,
          vm: handle.name,
          leaseResumes: handle.paths.leaseResumes,
          clockLock: handle.paths.clockLock,
          ...(handle.record.spec.guestAgent ? { guestAgent: paths.guestAgent } : {}),
        }),
      ],
      { logFile: paths.watchdogLog, cwd: paths.dir },
    );
    return child.pid;
  }

  /** Quits a process of the VM (killing it when it does not go) and its watchdog; removes its dir. */
  async #retire(handle: VmHandle, process: ProcessRecord, session: Session | undefined): Promise<void> {
    const paths = processPaths(handle.paths.dir, process.generation);
    if (isAlive(process.pid, paths.qmp)) {
      if (session !== undefined && !session.qmp.closed) {
        await session.qmp.execute('quit', undefined, { timeoutMs: CLEANUP_STEP_MS }).catch(() => undefined);
      }
      await stopGroup(process.pid, { graceMs: QUIT_GRACE_MS, needle: paths.qmp });
    } else {
      await stopGroup(process.pid, { graceMs: 0, needle: paths.qmp });
    }
    if (session !== undefined) await session.qmp.close();
    // The watchdog exits with its monitor; this is for one that did not.
    await stopGroup(process.watchdogPid, { graceMs: 1_000, needle: paths.watchdogQmp });
    rmSync(paths.dir, { recursive: true, force: true });
  }

  async #destroyHandle(handle: VmHandle): Promise<void> {
    const { current, pending } = handle.record;
    if (pending !== null) await this.#retire(handle, pending, undefined);
    await this.#retire(handle, current, handle.session);
    handle.session = undefined;
    void handle.agent?.close();
    handle.agent = undefined;
    if (handle.record.spec.memPath !== null) removeFile(handle.record.spec.memPath);
    await deleteTaps(handle.record.spec.nics ?? []);
    rmSync(handle.paths.dir, { recursive: true, force: true });
    this.#handles.delete(handle.name);
  }

  // -------------------------------------------------------------------------------------------
  // Migration
  // -------------------------------------------------------------------------------------------

  async #migrate(
    call: Call,
    handle: VmHandle,
    targetVersion: string,
    ramTransfer: RamTransferMode,
    skipSameVersion: boolean,
  ): Promise<QemuSwapVmmResult> {
    const { spec } = handle.record;
    const from = handle.record.current;
    if (this.#alive(handle)) this.#notBusy(call, handle);
    const binary = this.#binary(call, targetVersion);
    const problems: string[] = [];
    if (ramTransfer === 'shared' && !spec.sharedMemory) problems.push('its RAM is not in shareable memory');
    // Copying into a mapping both processes share would overwrite the running guest's memory with
    // older copies of its pages: a copying migration needs private RAM.
    if (ramTransfer === 'copy' && spec.sharedMemory) problems.push('a copying migration needs private RAM');
    const oldSession = await this.#session(handle, call);
    const blockingDevices = await this.#blockers(handle, call);
    if (blockingDevices.length > 0) problems.push(`devices ${blockingDevices.join('; ')} cannot be migrated`);
    if (problems.length > 0) {
      throw this.#error(call, 'UNSUPPORTED', `VM ${handle.name} cannot move to a new process: ${problems.join('; ')}`, {
        sharedMemory: spec.sharedMemory,
        blockingDevices,
      });
    }
    if (skipSameVersion && from.vmmVersion === targetVersion) {
      return Object.freeze({
        changed: false,
        fromVersion: from.vmmVersion,
        toVersion: targetVersion,
        generation: from.generation,
        downtimeMs: 0,
        totalMs: 0,
        startedAt: call.startedAt,
        completedAt: call.startedAt,
        ramTransfer,
        migration: null,
        stoppedAt: null,
        resumedAt: null,
        interrupted: null,
      });
    }
    const status = await this.#status(oldSession, call);
    if (status !== 'running' && status !== 'paused') throw this.#stateError(call, handle, status);
    const wasPaused = status === 'paused';
    const pausedBefore = wasPaused ? this.#pausedSinceOf(handle) : null;
    handle.operation = 'swap';
    const next: ProcessRecord = {
      generation: from.generation + 1,
      vmmVersion: targetVersion,
      binary,
      pid: 0,
      startedAt: 0,
      watchdogPid: 0,
    };
    const pending = (process: ProcessRecord): PendingSwap => ({ ...process, wasPaused, ramTransfer });
    this.#writeRecord(handle, { ...handle.record, pending: pending(next) });

    let started: StartedProcess | undefined;
    let resumedAt: number | null = null;
    let info: QmpMigrationInfo | undefined;
    let boosted: (() => Promise<void>) | undefined;
    // Whether `migrate` may have reached the source: set before it is sent, as an answer that is
    // lost (deadline, abort) does not mean that QEMU did not start the migration.
    let migrateSent = false;
    // Whether the new process holds the VM paused at the end (a VM paused before the swap), and what
    // interrupted a swap that was finished anyway past its point of no return.
    let heldPaused = wasPaused;
    let interrupted: IntermissionError | null = null;
    let oldMark = oldSession.log.seq;
    let newMark = 0;
    try {
      started = await this.#startProcess(handle, next, true, call);
      this.#writeRecord(handle, { ...handle.record, pending: pending(started.record) });
      const target = started.session;
      // The new process's watchdog starts up (a Node process: a few hundred ms of CPU) while the
      // migration is prepared; the switchover waits for it so as not to share the CPUs with it,
      // and so that the VM never runs in a process without a watchdog connected.
      await this.#watchdogReady(started, call);
      const capabilities = [
        { capability: 'events', state: true },
        { capability: 'x-ignore-shared', state: ramTransfer === 'shared' },
      ];
      await Promise.all(
        [oldSession, target].map((s) =>
          s.qmp.execute('migrate-set-capabilities', { capabilities }, this.#qmpOptions(call)),
        ),
      );
      if (ramTransfer === 'copy') {
        await oldSession.qmp.executeRaw(
          'migrate-set-parameters',
          { 'max-bandwidth': COPY_MIGRATION_BANDWIDTH },
          this.#qmpOptions(call),
        );
      }
      const uri = `unix:${started.paths.migrate}`;
      // The switchover's threads get the CPU first (see `switchoverNice`): the new process's main
      // thread, and the old one's, whose migration thread (started by `migrate`) inherits it.
      boosted = await this.#boostSwitchover([started.record.pid, from.pid], ramTransfer === 'shared');
      await target.qmp.execute('migrate-incoming', { uri }, this.#qmpOptions(call));
      oldMark = oldSession.log.seq;
      newMark = target.log.seq;
      this.#swapPhase(call, handle, 'target-ready', from, started);
      migrateSent = true;
      await oldSession.qmp.execute('migrate', { uri }, this.#qmpOptions(call));
      this.#swapPhase(call, handle, 'migration-started', from, started);
      info = await this.#awaitMigration(handle, oldSession, call);
      // The point of no return: from here on an interruption finishes the swap (see the catch).
      this.#swapPhase(call, handle, 'source-completed', from, started);
      if (!wasPaused) {
        const resume = await target.log.waitFor('RESUME', newMark, {
          timeoutMs: this.#remaining(call),
          signal: call.signal,
        });
        if (resume === undefined) {
          if (call.signal.aborted) throw call.signal.reason;
          throw this.#error(
            call,
            'OPERATION_FAILED',
            `the new QEMU process of VM ${handle.name} did not start the VM: ${logTail(started.paths.qemuLog, 500)}`,
          );
        }
        resumedAt = resume.timestampMs;
      } else {
        await this.#awaitIncomingDone(target, call);
      }
    } catch (error) {
      const cause = this.#normalize(call, error);
      // Before `migrate` the new process cannot have the VM; after it, the new process is frozen
      // while the source is asked how far the migration got (see settleInterruptedSwap).
      const oldPaths = processPaths(handle.paths.dir, from.generation);
      // The old process's monitor: the driver's session, else (the driver closed mid-swap, which
      // closes that session, perhaps under the question) the spare monitor.
      const sourceMonitor = async <T>(body: (qmp: QmpClient) => Promise<T>): Promise<T> => {
        if (!this.#closed && !oldSession.qmp.closed) {
          try {
            return await body(oldSession.qmp);
          } catch (failure) {
            if (!this.#closed && !oldSession.qmp.closed) throw failure;
          }
        }
        return withMonitor(oldPaths.opsQmp, body);
      };
      const verdict =
        started !== undefined && migrateSent
          ? await settleInterruptedSwap(
              { pid: started.record.pid, paths: started.paths, session: started.session, mark: newMark },
              { pid: from.pid, paths: oldPaths, monitor: sourceMonitor },
            )
          : 'back';
      await boosted?.();
      if (verdict === 'back' || started === undefined) {
        if (await this.#rollback(handle, started, wasPaused)) throw withDetails(cause, { rolledBack: true });
        throw this.#error(
          call,
          'VM_FAILED',
          `${call.operation} of VM ${handle.name} was interrupted (${cause.message}); its new QEMU process was ` +
            'stopped, but the old one had completed its migration meanwhile and is never resumed: restart the VM',
          { rolledBack: false, state: 'failed', interruptedBy: driverErrorReason(cause) ?? null },
          cause,
        );
      }
      // Forward: the VM is the new process's now, and the old one is never resumed (the new one
      // may have run the guest on the RAM both map). Finish the swap there, without the deadline.
      const outcome = await settleForward(
        { pid: started.record.pid, paths: started.paths, session: started.session, mark: newMark },
        wasPaused,
      );
      if (outcome.kind !== 'runs') {
        this.#adoptProcess(handle, started);
        handle.pausedSince = null;
        handle.operation = null;
        await this.#retire(handle, from, oldSession);
        this.#releaseIfClosed(handle);
        throw this.#forwardError(call, handle, cause, outcome, started.record.generation);
      }
      resumedAt = wasPaused ? null : outcome.resumedAt;
      heldPaused = outcome.status === 'paused';
      interrupted = cause;
    }
    return this.#completeSwap({
      call,
      handle,
      from,
      started,
      oldSession,
      targetVersion,
      ramTransfer,
      pausedBefore: heldPaused ? pausedBefore : null,
      stoppedAt: wasPaused ? null : (oldSession.log.find('STOP', oldMark)?.timestampMs ?? null),
      resumedAt,
      info,
      interrupted,
    });
  }

  /**
   * The end of a swap that reached the new process (it runs the VM, or holds it paused): adopts the
   * new process, retires the old one, and reports. `interrupted` is what interrupted a swap that
   * was then finished anyway (see {@link QemuSwapVmmResult.interrupted}).
   */
  async #completeSwap(done: {
    readonly call: Call;
    readonly handle: VmHandle;
    readonly from: ProcessRecord;
    readonly started: StartedProcess;
    readonly oldSession: Session;
    readonly targetVersion: string;
    readonly ramTransfer: RamTransferMode;
    /** When the VM's pause began, for a VM that stays paused; null when it runs. */
    readonly pausedBefore: number | null;
    readonly stoppedAt: number | null;
    readonly resumedAt: number | null;
    readonly info: QmpMigrationInfo | undefined;
    readonly interrupted: IntermissionError | null;
  }): Promise<QemuSwapVmmResult> {
    const { call, handle, from, started, oldSession, pausedBefore, stoppedAt, resumedAt } = done;
    // The new process runs the VM (or holds it paused): from here on there is no way back.
    const completedAt = resumedAt ?? Date.now();
    this.#adoptProcess(handle, started);
    handle.pausedSince = pausedBefore;
    if (pausedBefore !== null) {
      const lease = readLease(handle.paths.lease);
      if (lease !== undefined) writeJsonAtomic(handle.paths.lease, { ...lease, pausedAt: pausedBefore });
    }
    handle.operation = null;
    // QEMU fills in its downtime figures just after the status turns `completed`: read them again
    // (and, for a swap that went forward as soon as the new process ran, wait for the source to
    // get there: its last writes were read by then).
    const stats = await finalMigrationInfo(oldSession, done.info);
    await this.#retire(handle, from, oldSession);
    this.#releaseIfClosed(handle);
    const downtimeMs = stoppedAt !== null && resumedAt !== null ? resumedAt - stoppedAt : 0;
    let interrupted: QemuSwapInterruption | null = null;
    if (done.interrupted !== null) {
      const settledAt = Date.now();
      interrupted = Object.freeze({
        reason: driverErrorReason(done.interrupted) ?? 'OPERATION_FAILED',
        message: done.interrupted.message,
        settledAt,
        lateMs: Math.max(0, settledAt - call.deadline),
      });
    }
    return Object.freeze({
      changed: true,
      fromVersion: from.vmmVersion,
      toVersion: done.targetVersion,
      generation: started.record.generation,
      downtimeMs,
      totalMs: completedAt - call.startedAt,
      startedAt: call.startedAt,
      completedAt,
      ramTransfer: done.ramTransfer,
      migration: migrationStats(stats),
      stoppedAt,
      resumedAt,
      interrupted,
    });
  }

  /**
   * The error of a swap that went forward but whose new process does not run the VM: it died or
   * ended in a state that cannot run (`VM_FAILED`), or it is still loading the state or held
   * paused at the end of the wait (the interruption's reason). Either way the VM is the new
   * process's (`rolledBack: false`) and the old one is gone.
   */
  #forwardError(
    call: Call,
    handle: VmHandle,
    cause: IntermissionError,
    outcome: Exclude<ForwardOutcome, { kind: 'runs' }>,
    generation: number,
  ): IntermissionError {
    const what = `${call.operation} of VM ${handle.name} was interrupted (${cause.message}) after its point of no return`;
    const details = {
      rolledBack: false,
      switchedOver: true,
      generation,
      status: outcome.status ?? null,
      interruptedBy: driverErrorReason(cause) ?? null,
    };
    if (outcome.kind === 'failed') {
      return this.#error(
        call,
        'VM_FAILED',
        `${what}; its new QEMU process (generation ${generation}) then ${outcome.status === undefined ? 'died' : `ended in state ${outcome.status}`}, and the old one was not resumed (the new one may have run the guest): restart the VM`,
        { ...details, state: 'failed' },
        cause,
      );
    }
    return this.#error(
      call,
      driverErrorReason(cause) ?? 'OPERATION_FAILED',
      `${what}; the VM is its new QEMU process's (generation ${generation}), which is still ${outcome.status ?? 'not answering'}`,
      { ...details, state: outcome.status === undefined ? 'migrating' : vmStateOf(outcome.status) },
      cause,
    );
  }

  /** After a call that outlived `close()`: the session it adopted is not kept open. */
  #releaseIfClosed(handle: VmHandle): void {
    if (!this.#closed) return;
    void handle.session?.qmp.close();
    handle.session = undefined;
  }

  /** Calls the test-only {@link QemuDriverConfig.onSwapPhase} hook, then honours an abort it caused. */
  #swapPhase(call: Call, handle: VmHandle, phase: SwapPhase, from: ProcessRecord, started: StartedProcess): void {
    this.config.onSwapPhase?.({
      vm: handle.name,
      phase,
      sourcePid: from.pid,
      targetPid: started.record.pid,
      generation: started.record.generation,
    });
    if (call.signal.aborted) throw call.signal.reason;
  }

  /**
   * Puts the main threads of `pids` ahead on the CPUs for a switchover: the configured
   * {@link QemuDriverConfig.switchoverNice}, and with `realtime` (in-place swaps, whose work in the
   * switchover is bounded) SCHED_FIFO at {@link QemuDriverConfig.switchoverRealtime}. Threads a
   * boosted main thread starts meanwhile (the old process's migration thread) inherit it. Returns
   * what puts every thread of those processes back: SCHED_OTHER, and the nice value the main thread
   * had. Best effort: never rejects; without the privilege nothing changes.
   */
  async #boostSwitchover(pids: readonly number[], realtime: boolean): Promise<() => Promise<void>> {
    const { switchoverNice: nice, switchoverRealtime } = this.config;
    const fifo = realtime ? switchoverRealtime : null;
    const before = pids.map((pid) => ({ pid, priority: threadPriority(pid) }));
    for (const { pid, priority } of before) {
      if (priority === undefined) continue;
      if (nice !== null) setThreadPriority(pid, nice, ({ tid }) => tid === pid);
      if (fifo !== null) await setRealtime(pid, fifo);
    }
    let restored = false;
    return async () => {
      if (restored) return;
      restored = true;
      for (const { pid, priority } of before) {
        if (priority === undefined) continue;
        if (fifo !== null) await setRealtime(pid, null);
        if (nice !== null) setThreadPriority(pid, priority);
      }
    };
  }

  /**
   * Waits until the watchdog of a process just started has connected to its monitor (its log's
   * `start` line) and settled (its CPU time stopped growing: a Node process keeps compiling and
   * collecting for a while after it starts), within half of what is left of the call and at most
   * {@link WATCHDOG_READY_TIMEOUT_MS}. A watchdog that takes longer does not hold the swap up
   * further. Returns whether it settled.
   */
  async #watchdogReady(started: StartedProcess, call: Call): Promise<boolean> {
    const end = Date.now() + Math.min(this.#remaining(call) / 2, WATCHDOG_READY_TIMEOUT_MS);
    const { watchdogPid } = started.record;
    let connected = false;
    let last: { at: number; cpuNs: number } | undefined;
    for (;;) {
      if (!isAlive(watchdogPid, started.paths.watchdogQmp)) return false;
      connected ||= watchdogStarted(started.paths.watchdogLog);
      if (connected) {
        const cpuNs = cpuTimeNs(watchdogPid);
        const at = performance.now();
        if (cpuNs === undefined) return true;
        if (last === undefined || cpuNs - last.cpuNs > WATCHDOG_BUSY_NS) {
          last = { at, cpuNs };
        } else if (at - last.at >= WATCHDOG_QUIET_MS) {
          return true;
        }
      }
      if (Date.now() >= end) return false;
      await delay(10, undefined, { signal: call.signal });
    }
  }

  /**
   * Waits for the outgoing migration to end, on the source's MIGRATION events (the `events`
   * capability), and reads the outcome with `query-migrate`: once at the start, once per event that
   * ends the migration, and every {@link MIGRATION_RECHECK_MS} in case an event was missed. Nothing
   * is asked while the migration runs: the switchover does not share the CPUs with our traffic.
   */
  async #awaitMigration(handle: VmHandle, session: Session, call: Call): Promise<QmpMigrationInfo> {
    for (;;) {
      const mark = session.log.seq;
      const info = await session.qmp.execute('query-migrate', undefined, this.#qmpOptions(call));
      if (info.status === 'completed') return info;
      if (info.status === 'failed' || info.status === 'cancelled') {
        throw this.#error(
          call,
          'OPERATION_FAILED',
          `migration of VM ${handle.name} ${info.status}: ${info['error-desc'] ?? 'no reason given'}`,
          {
            migrationStatus: info.status,
          },
        );
      }
      await session.log.waitFor('MIGRATION', mark, {
        timeoutMs: Math.min(MIGRATION_RECHECK_MS, this.#remaining(call)),
        signal: call.signal,
        accept: (event) => event.known && event.name === 'MIGRATION' && MIGRATION_ENDED.has(event.data.status),
      });
      if (call.signal.aborted) throw call.signal.reason;
    }
  }

  /** For a paused VM, which the destination does not start: waits until it has left `inmigrate`. */
  async #awaitIncomingDone(session: Session, call: Call): Promise<void> {
    for (;;) {
      const status = await this.#status(session, call);
      if (status === 'paused' || status === 'running') return;
      if (status !== 'inmigrate') {
        throw this.#error(call, 'OPERATION_FAILED', `the new QEMU process ended in state ${status}`, { status });
      }
      await delay(5, undefined, { signal: call.signal });
    }
  }

  /**
   * Undoes a swap that did not reach the new process: kills it (settleInterruptedSwap already has,
   * once `migrate` may have been sent), cancels the migration, and lets the old process run the VM
   * again (or hold it paused, as it was). Runs without the caller's deadline. Resolves false when
   * the old process turned out to have completed its migration after all (its monitor answered too
   * late for the decision): it is then not resumed, and the VM is down.
   */
  async #rollback(handle: VmHandle, started: StartedProcess | undefined, wasPaused: boolean): Promise<boolean> {
    const pending = handle.record.pending;
    if (started !== undefined) {
      await started.session.qmp.close();
      await killProcess(started.record, started.paths);
      rmSync(started.paths.dir, { recursive: true, force: true });
    } else if (pending !== null) {
      rmSync(processPaths(handle.paths.dir, pending.generation).dir, { recursive: true, force: true });
    }
    const session = handle.session;
    const restored = await this.#keepingPause(handle, wasPaused, async () => {
      if (session !== undefined && !session.qmp.closed) {
        return restoreSource(session.qmp, wasPaused).catch(() => true);
      }
      // The driver's monitor is gone (the driver was closed mid-swap): the spare one still reaches
      // the old process, which must not be left stopped for its switchover.
      const ops = processPaths(handle.paths.dir, handle.record.current.generation).opsQmp;
      return withMonitor(ops, (qmp) => restoreSource(qmp, wasPaused)).catch(() => true);
    });
    this.#writeRecord(handle, { ...handle.record, pending: null });
    handle.operation = null;
    return restored;
  }

  /**
   * Runs `restore`, which puts a failed swap's source back, and carries the VM's pause across it
   * when the VM was paused: to leave `postmigrate` the source must `cont` then `stop`, a pause that
   * ends and another that starts, as far as QEMU's events tell. The pause keeps its start and its
   * lease, and the lease is written fresh so that the watchdog counts from that start (see
   * `pauseStart`) and the 30 s bound still holds for the pause as a whole.
   */
  async #keepingPause<T>(handle: VmHandle, wasPaused: boolean, restore: () => Promise<T>): Promise<T> {
    if (!wasPaused) return restore();
    const pausedAt = this.#pausedSinceOf(handle);
    const until = readLease(handle.paths.lease)?.until ?? null;
    try {
      return await restore();
    } finally {
      handle.pausedSince = pausedAt;
      writeJsonAtomic(handle.paths.lease, { until, writtenAt: Date.now(), pausedAt } satisfies LeaseFile);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Adoption
  // -------------------------------------------------------------------------------------------

  async #adoptAll(): Promise<void> {
    for (const name of listVmDirs(this.config.runDir)) {
      const paths = vmPaths(this.config.runDir, name);
      const record = readVmRecord(paths.record);
      if (record === undefined) continue;
      const handle: VmHandle = {
        name,
        paths,
        record,
        session: undefined,
        agent: undefined,
        pausedSince: null,
        operation: null,
        agentSeen: false,
      };
      this.#handles.set(name, handle);
      if (record.pending !== null) await this.#finishPendingSwap(handle, record.pending);
      await this.#ensureWatchdog(handle);
    }
  }

  /**
   * A swap a previous driver left under way, settled by the rule a live swap follows (see
   * settleInterruptedSwap): forward when the new process has left `inmigrate` (it has the VM) or
   * the source reports `completed` (or is gone), and then the old process is never resumed; back
   * otherwise, the new process killed and the old one running on (or held paused, as it was).
   */
  async #finishPendingSwap(handle: VmHandle, recorded: PendingSwap): Promise<void> {
    const from = handle.record.current;
    const oldPaths = processPaths(handle.paths.dir, from.generation);
    const newPaths = processPaths(handle.paths.dir, recorded.generation);
    // A driver that died while it started the new process had not written its pid down yet: the
    // process (and its watchdog) are found by their monitor sockets, which name VM and generation.
    const pending: PendingSwap =
      recorded.pid > 0
        ? recorded
        : {
            ...recorded,
            pid: findProcesses((args) => args.some((arg) => arg.startsWith(`unix:${newPaths.qmp},`)))[0] ?? 0,
            watchdogPid: findProcesses((args) => args.includes(newPaths.watchdogQmp))[0] ?? 0,
          };
    // A driver that died mid-swap may have left the switchover threads boosted: back to the policy
    // and nice value QEMU processes start with (this driver's own).
    const nice = threadPriority(process.pid);
    for (const [pid, paths] of [
      [from.pid, oldPaths],
      [pending.pid, newPaths],
    ] as const) {
      if (!isAlive(pid, paths.qmp)) continue;
      await setRealtime(pid, null);
      if (nice !== undefined) setThreadPriority(pid, nice);
    }
    // A driver that died while it held the new process frozen (deciding this very question) left
    // it stopped: it runs again first, so that it answers; the decision freezes it once more.
    if (isAlive(pending.pid, newPaths.qmp)) signalProcess(pending.pid, 'SIGCONT');
    const target: SwapTarget = { pid: pending.pid, paths: newPaths, session: undefined, mark: 0 };
    const verdict = await settleInterruptedSwap(target, {
      pid: from.pid,
      paths: oldPaths,
      monitor: (body) => withMonitor(oldPaths.qmp, body),
    });
    if (verdict === 'back') {
      await killProcess(pending, newPaths);
      rmSync(newPaths.dir, { recursive: true, force: true });
      if (isAlive(from.pid, oldPaths.qmp)) {
        await this.#keepingPause(handle, pending.wasPaused, () =>
          withMonitor(oldPaths.qmp, (qmp) => restoreSource(qmp, pending.wasPaused)).catch(() => undefined),
        );
      }
      this.#writeRecord(handle, { ...handle.record, pending: null });
      return;
    }
    // Forward: the new process is the VM's from now on, whatever state it settles in (one that
    // died or cannot run leaves the VM `failed`, to be restarted; the old process is no way back).
    const outcome = await settleForward(target, pending.wasPaused);
    if (outcome.kind === 'stuck' && outcome.status === 'inmigrate' && !isAlive(from.pid, oldPaths.qmp)) {
      // The old process died before it sent the VM's state, and the new one would wait for it for
      // good: neither can run the VM. The new one is stopped, so that the VM shows `failed` (its
      // process is gone) and can be restarted, instead of `migrating` for ever.
      await killProcess(pending, newPaths);
    }
    const next: ProcessRecord = {
      generation: pending.generation,
      vmmVersion: pending.vmmVersion,
      binary: pending.binary,
      pid: pending.pid,
      startedAt: pending.startedAt,
      watchdogPid: pending.watchdogPid,
    };
    this.#writeRecord(handle, { ...handle.record, current: next, pending: null });
    await this.#retire(handle, from, undefined);
  }

  /** Restarts the watchdog of a live process that has none. */
  async #ensureWatchdog(handle: VmHandle): Promise<void> {
    const current = handle.record.current;
    const paths = processPaths(handle.paths.dir, current.generation);
    if (!isAlive(current.pid, paths.qmp) || isAlive(current.watchdogPid, paths.watchdogQmp)) return;
    const watchdogPid = await this.#startWatchdog(handle, paths);
    this.#writeRecord(handle, { ...handle.record, current: { ...current, watchdogPid } });
  }
}

/** The driver's state of a VM from QEMU's run state. */
export function vmStateOf(status: QmpRunState): VmState {
  switch (status) {
    case 'running':
      return 'running';
    case 'paused':
    case 'suspended':
    case 'debug':
      return 'paused';
    case 'inmigrate':
    case 'finish-migrate':
    case 'postmigrate':
    case 'save-vm':
    case 'restore-vm':
      return 'migrating';
    case 'shutdown':
    case 'prelaunch':
      return 'stopped';
    default:
      return 'failed';
  }
}

function migrationStats(info: QmpMigrationInfo): QemuMigrationStats {
  return Object.freeze({
    transferredBytes: info.ram?.transferred ?? 0,
    ramTotalBytes: info.ram?.total ?? 0,
    qemuDowntimeMs: info.downtime ?? null,
    qemuTotalMs: info['total-time'] ?? null,
    setupMs: info['setup-time'] ?? null,
  });
}

/** Kills a VMM process that must not run the VM (no grace: it may hold the VM's state), and its watchdog. */
async function killProcess(process: Pick<ProcessRecord, 'pid' | 'watchdogPid'>, paths: ProcessPaths): Promise<void> {
  await stopGroup(process.pid, { graceMs: 0, needle: paths.qmp });
  await stopGroup(process.watchdogPid, { graceMs: 0, needle: paths.watchdogQmp });
}

/**
 * Puts the source of a failed migration back: cancels a migration still moving, waits for it to
 * settle, and runs the VM again unless it was paused before (then it stays paused). Resolves false,
 * touching nothing, when the source's migration completed (see below).
 */
async function restoreSource(qmp: QmpClient, wasPaused: boolean): Promise<boolean> {
  const options = { timeoutMs: CLEANUP_STEP_MS };
  const info = await qmp.execute('query-migrate', undefined, options);
  if (info.status !== undefined && ACTIVE_MIGRATION.has(info.status)) {
    await qmp.execute('migrate_cancel', undefined, options).catch(() => undefined);
  }
  const end = Date.now() + CLEANUP_STEP_MS;
  let status = (await qmp.execute('query-status', undefined, options)).status;
  while (status === 'finish-migrate' && Date.now() < end) {
    await delay(10);
    status = (await qmp.execute('query-status', undefined, options)).status;
  }
  const migrating = outgoingStatus(await qmp.execute('query-migrate', undefined, options));
  // A source whose migration completed is never resumed: its state went to the new process, which
  // may have run the guest on the RAM they share (settleInterruptedSwap goes forward then; this is
  // the last line of defence).
  if (migrating === 'completed') return false;
  if (migrating !== undefined && ACTIVE_MIGRATION.has(migrating)) await delay(50);
  if (status === 'postmigrate' || (status === 'paused' && !wasPaused)) {
    await qmp.execute('cont', undefined, options);
    if (wasPaused) await qmp.execute('stop', undefined, options);
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Interrupted swaps
// ---------------------------------------------------------------------------------------------

/** How an interrupted swap ends: on the new process (`forward`) or back on the old one. */
type SwapVerdict = 'forward' | 'back';

/** The new process of an interrupted swap. */
interface SwapTarget {
  readonly pid: number;
  readonly paths: ProcessPaths;
  /** The driver's session on it, if it has one. */
  readonly session: Session | undefined;
  /** A mark in the session's events taken while the process was still waiting for the state. */
  readonly mark: number;
}

/** The old process of an interrupted swap. */
interface SwapSource {
  readonly pid: number;
  readonly paths: ProcessPaths;
  /** Runs `body` on a monitor of the process (the driver's session, else a short-lived one). */
  readonly monitor: <T>(body: (qmp: QmpClient) => Promise<T>) => Promise<T>;
}

/** What a swap that went forward found in its new process. */
type ForwardOutcome =
  | {
      readonly kind: 'runs';
      /** `running`, or `paused` for a VM paused before the swap. */
      readonly status: QmpRunState;
      /** Its RESUME (as this driver saw it), for a VM that runs. */
      readonly resumedAt: number | null;
    }
  /** Alive but, at the end of the wait, still loading the state (`inmigrate`) or held paused. */
  | { readonly kind: 'stuck'; readonly status: QmpRunState | undefined }
  /** Gone, or in a state that cannot run the VM. */
  | { readonly kind: 'failed'; readonly status: QmpRunState | undefined };

/**
 * How long the driver waits for a process it sent SIGSTOP to have stopped (all its threads)
 * before it decides anyway: delivery takes microseconds unless a thread sits in the kernel.
 */
const FREEZE_CONFIRM_MS = 1_000;
/**
 * How long, after the freeze, the driver lets its event loop read what the frozen process wrote
 * before it stopped. QEMU writes RESUME to every monitor before it starts the vCPUs, so if the new
 * process ran the guest at all, its RESUME is in the socket by then.
 */
const FREEZE_DRAIN_MS = 20;
/**
 * How long a swap that goes forward waits for the new process to leave `inmigrate` (and to run
 * after a `cont`): it has the whole state by then, or almost, so this covers a loaded host only.
 */
const FORWARD_SETTLE_MS = 10_000;
/**
 * How long a source gets to answer while the new process is frozen. A source that completed has
 * nothing left to send and answers at once; one that does not answer is most likely blocked
 * sending its device state to the frozen process (QEMU holds its main lock while it does, and its
 * monitors wait for that lock), so it has not completed: the swap goes back, and killing the new
 * process unblocks it (its migration fails, and QEMU resumes the VM by itself).
 */
const FROZEN_SOURCE_ANSWER_MS = 1_000;
/** Migration states of a source whose migration has not ended yet (`cancelling` included). */
const UNSETTLED_MIGRATION = new Set([...ACTIVE_MIGRATION, 'cancelling']);

/**
 * Decides how a swap interrupted after `migrate` may have been sent ends, the only moment at which
 * two processes could run one guest on the RAM they share. The new process is frozen first
 * (SIGSTOP), so that it cannot start the guest, or run it further, while the decision is made:
 *
 * - forward when the new process has left `inmigrate` (it loaded the state), when it sent RESUME
 *   before it stopped (it ran the guest), or when the source reports `completed`, before or in
 *   answer to `migrate_cancel` (which does nothing to a migration that completed meanwhile): the
 *   old process must then never run the VM again;
 * - back otherwise: the migration is cancelled, so the source holds the only state that counts.
 *
 * The new process leaves here running again (forward) or killed (back), never frozen, whatever
 * fails on the way. A source that does not answer while alive is taken as not completed (back,
 * see {@link FROZEN_SOURCE_ANSWER_MS}); one that is gone leaves the new process as the VM's only
 * chance (forward). Never rejects.
 */
async function settleInterruptedSwap(target: SwapTarget, source: SwapSource): Promise<SwapVerdict> {
  const { pid } = target;
  if (!isAlive(pid, target.paths.qmp)) return decideOnSource(source);
  const observer = await monitorOfTarget(target);
  // Only a fresh monitor asks the state: one that left `inmigrate` has the VM.
  if (observer?.status !== undefined && observer.status !== 'inmigrate') {
    await observer.close();
    return 'forward';
  }
  let verdict: SwapVerdict | undefined;
  signalProcess(pid, 'SIGSTOP');
  try {
    await waitStopped(pid, FREEZE_CONFIRM_MS);
    await delay(FREEZE_DRAIN_MS);
    if (observer?.log.find('RESUME', observer.mark) !== undefined) {
      verdict = 'forward';
    } else {
      verdict = await decideOnSource(source);
    }
    return verdict;
  } finally {
    await observer?.close().catch(() => undefined);
    if (verdict === 'back') {
      signalGroup(pid, 'SIGKILL');
      await waitGone(pid, CLEANUP_STEP_MS);
    }
    // Forward, an unexpected failure above, or a kill that did not take: it runs again.
    if (isAlive(pid, target.paths.qmp)) signalProcess(pid, 'SIGCONT');
  }
}

/**
 * The source's side of {@link settleInterruptedSwap}, with the new process frozen: `forward` when
 * the migration completed; otherwise `migrate_cancel`, wait for the migration to end, and
 * `forward` only if it completed after all. A live source that does not answer is `back`: see
 * {@link FROZEN_SOURCE_ANSWER_MS}.
 */
async function decideOnSource(source: SwapSource): Promise<SwapVerdict> {
  let status: string | undefined;
  try {
    status = await source.monitor(async (qmp) => {
      const options = { timeoutMs: CLEANUP_STEP_MS };
      let now = outgoingStatus(await qmp.execute('query-migrate', undefined, { timeoutMs: FROZEN_SOURCE_ANSWER_MS }));
      if (now !== undefined && ACTIVE_MIGRATION.has(now)) {
        await qmp.execute('migrate_cancel', undefined, options);
      }
      const end = Date.now() + CLEANUP_STEP_MS;
      while (now !== undefined && UNSETTLED_MIGRATION.has(now) && Date.now() < end) {
        await delay(10);
        now = outgoingStatus(await qmp.execute('query-migrate', undefined, options));
      }
      return now;
    });
  } catch {
    return isAlive(source.pid, source.paths.qmp) ? 'back' : 'forward';
  }
  return status === 'completed' ? 'forward' : 'back';
}

/**
 * Finishes a swap that went forward: waits (at most {@link FORWARD_SETTLE_MS}) for the new process
 * to leave `inmigrate`, and `cont`s it when it settled paused though the VM ran before the swap.
 * Runs without the caller's deadline. Never rejects.
 */
async function settleForward(target: SwapTarget, wasPaused: boolean): Promise<ForwardOutcome> {
  const { pid, paths } = target;
  if (!isAlive(pid, paths.qmp)) return { kind: 'failed', status: undefined };
  const monitor = await monitorOfTarget(target);
  if (monitor === undefined) {
    return isAlive(pid, paths.qmp) ? { kind: 'stuck', status: undefined } : { kind: 'failed', status: undefined };
  }
  const options = { timeoutMs: CLEANUP_STEP_MS };
  const end = Date.now() + FORWARD_SETTLE_MS;
  let contSent = false;
  try {
    for (;;) {
      if (!isAlive(pid, paths.qmp)) return { kind: 'failed', status: undefined };
      const status = await monitor.qmp
        .execute('query-status', undefined, options)
        .then((s) => s.status)
        .catch(() => undefined);
      if (status === 'running') {
        const resume = monitor.log.find('RESUME', monitor.mark);
        return { kind: 'runs', status, resumedAt: resume?.timestampMs ?? Date.now() };
      }
      if (status === 'paused' && wasPaused) return { kind: 'runs', status, resumedAt: null };
      if (status === 'paused' && !contSent) {
        // Loaded, but not started (the source's run state said paused): it was running before.
        contSent = true;
        await monitor.qmp.execute('cont', undefined, options).catch(() => undefined);
        continue;
      }
      if (status !== undefined && status !== 'inmigrate' && status !== 'paused') return { kind: 'failed', status };
      if (Date.now() >= end) return { kind: 'stuck', status };
      await delay(20);
    }
  } finally {
    await monitor.close().catch(() => undefined);
  }
}

/** A monitor on a process and its events since `mark`; `close` lets go of what was opened for it. */
interface ProcessMonitor {
  readonly qmp: QmpClient;
  readonly log: EventLog;
  readonly mark: number;
  /** Its run state when a fresh monitor was opened; undefined on the driver's own session. */
  readonly status: QmpRunState | undefined;
  readonly close: () => Promise<void>;
}

/**
 * The new process's monitor: the driver's session on it while open (with the swap's mark, so
 * that events from before the interruption count), else a fresh one ({@link observeProcess}).
 */
async function monitorOfTarget(target: SwapTarget): Promise<ProcessMonitor | undefined> {
  const { session } = target;
  if (session !== undefined && !session.qmp.closed) {
    return { qmp: session.qmp, log: session.log, mark: target.mark, status: undefined, close: () => Promise.resolve() };
  }
  return observeProcess(target.paths.qmp);
}

/** A fresh monitor on a process: its run state now, and its events from before that answer on. */
async function observeProcess(path: string): Promise<(ProcessMonitor & { readonly status: QmpRunState }) | undefined> {
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect({ path, timeoutMs: MONITOR_CONNECT_TIMEOUT_MS });
  } catch {
    return undefined;
  }
  const log = new EventLog(qmp);
  const mark = log.seq;
  try {
    const { status } = await qmp.execute('query-status', undefined, { timeoutMs: CLEANUP_STEP_MS });
    return { qmp, log, mark, status, close: () => qmp.close() };
  } catch {
    await qmp.close();
    return undefined;
  }
}

/**
 * The source's final `query-migrate` (QEMU fills in its downtime figures just after the status
 * turns `completed`), waiting up to {@link CLEANUP_STEP_MS} for a migration that has not ended
 * yet; `fallback` when the source does not tell.
 */
async function finalMigrationInfo(session: Session, fallback: QmpMigrationInfo | undefined): Promise<QmpMigrationInfo> {
  const end = Date.now() + CLEANUP_STEP_MS;
  try {
    for (;;) {
      const info = await session.qmp.execute('query-migrate', undefined, { timeoutMs: CLEANUP_STEP_MS });
      const status = outgoingStatus(info);
      if (status === 'completed') return info;
      if (status === undefined || !UNSETTLED_MIGRATION.has(status) || Date.now() >= end) break;
      await delay(10);
    }
  } catch {
    // the source does not answer (or the driver closed its monitor)
  }
  return fallback ?? {};
}

/**
 * The state of a process's outgoing migration from its `query-migrate`. QEMU shows the incoming
 * migration's state there while no outgoing one was started, so a process that was itself the new
 * process of an earlier swap reports `completed` until it migrates out; only an outgoing migration
 * that completed reports timings (`total-time`), and that tells them apart.
 */
function outgoingStatus(info: QmpMigrationInfo): string | undefined {
  if (info.status === 'completed' && info['total-time'] === undefined) return 'none';
  return info.status;
}

/** Sends `signal` to the process `pid` alone (not its group); ignores a missing one. */
function signalProcess(pid: number, signal: NodeJS.Signals): void {
  if (!(Number.isInteger(pid) && pid > 0)) return;
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Waits until every thread of `pid` is stopped (`T` in its `stat`); false after `timeoutMs`. */
async function waitStopped(pid: number, timeoutMs: number): Promise<boolean> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    if (allThreadsStopped(pid)) return true;
    if (performance.now() >= end || !isAlive(pid)) return false;
    await delay(2);
  }
}

function allThreadsStopped(pid: number): boolean {
  try {
    const tids = readdirSync(`/proc/${pid}/task`);
    return (
      tids.length > 0 &&
      tids.every((tid) => {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const state = stat.charAt(stat.lastIndexOf(')') + 2);
        return state === 'T' || state === 't';
      })
    );
  } catch {
    // a thread that ended meanwhile, or the process
    return false;
  }
}

/** Runs `body` on a short-lived monitor connection. */
async function withMonitor<T>(path: string, body: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await QmpClient.connect({ path, timeoutMs: MONITOR_CONNECT_TIMEOUT_MS });
  try {
    return await body(qmp);
  } finally {
    await qmp.close();
  }
}
