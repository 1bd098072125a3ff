import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { existsSync, rmSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { IntermissionError } from '../../domain/index.js';
import type { VmCapabilities } from '../../domain/rollout/index.js';
import type { GuestAgentClient, QmpExecuteOptions, QmpMigrationInfo, QmpRunState } from '../../qmp/index.js';
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
} from '../driver.js';
import type { DriverErrorReason } from '../errors.js';
import { adoptAll } from './internal/adoption.js';
import { buildQemuArgv, describeDevice, isMigratableDevice } from './internal/argv.js';
import { canLoad, probeBuilds, type BuildProbe } from './internal/builds.js';
import { handleOf, qmpOptions, remaining, runCall } from './internal/calls.js';
import * as clock from './internal/clock.js';
import {
  alive,
  writeRecord,
  type Call,
  type QemuContext,
  type Session,
  type StartedProcess,
  type VmHandle,
} from './internal/context.js';
import { callError, closedError } from './internal/errors.js';
import { firmwareSearchDirs } from './internal/firmware.js';
import { deleteTaps, ensureTaps, wrapWithTaps } from './internal/tap.js';
import { pinSpec, resolveVmParts } from './internal/vm-spec.js';
import {
  SAFE_PATH_PATTERN,
  VM_NAME_PATTERN,
  VM_RECORD_FORMAT,
  checkSocketPath,
  ensureDir,
  processPaths,
  removeFile,
  vmPaths,
  type ProcessPaths,
  type ProcessRecord,
  type ResolvedVmSpec,
  type VmRecordFile,
} from './internal/layout.js';
import * as lifecycle from './internal/lifecycle.js';
import { isAlive, logTail, signalGroup, spawnDetached, waitGone } from './internal/process.js';
import { connectMonitor, openSession, runStatus } from './internal/session.js';
import { migrate } from './internal/swap.js';
import { adoptProcess, retire, startWatchdog } from './internal/vm-process.js';
import { resolveQemuConfig, type QemuDriverConfig, type ResolvedQemuConfig } from './qemu-config.js';
import type { LocalMigrationOptions, QemuLaunchOptions, QemuSwapVmmResult, QemuVmInfo } from './qemu-types.js';

export { vmStateOf } from './internal/context.js';

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
  /** What each build is and can load, probed once at open (see `internal/builds.ts`). */
  #builds: ReadonlyMap<string, BuildProbe> = new Map();
  /** What the modules under `internal/` see of this driver (see `internal/context.ts`). */
  #context: QemuContext | undefined;

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
      return migrate(this.#ctx, call, handle, options.targetVersion, options.ramTransfer, false);
    });
  }

  // -------------------------------------------------------------------------------------------
  // The port
  // -------------------------------------------------------------------------------------------

  listVms(options: OperationOptions = {}): Promise<readonly VmRuntimeInfo[]> {
    return lifecycle.listVms(this.#ctx, options);
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
    return lifecycle.pause(this.#ctx, options);
  }

  resume(options: VmOperationOptions): Promise<ResumeResult> {
    return lifecycle.resume(this.#ctx, options);
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
      return migrate(this.#ctx, call, handle, options.targetVersion, 'shared', true);
    });
  }

  applyHostUpdate(options: ApplyHostUpdateOptions): Promise<ApplyHostUpdateResult> {
    return lifecycle.applyHostUpdate(this.#ctx, options);
  }

  reboot(options: RebootOptions): Promise<RebootResult> {
    return lifecycle.reboot(this.#ctx, options);
  }

  guestTime(options: VmOperationOptions): Promise<GuestTimeResult> {
    return clock.guestTime(this.#ctx, options);
  }

  setGuestTime(options: SetGuestTimeOptions): Promise<SetGuestTimeResult> {
    return clock.setGuestTime(this.#ctx, options);
  }

  /**
   * Steps the guest clock to the host's, again while the residual is larger than the round trip,
   * under the VM's clock lock, which its resume watchdog shares (see `internal/clock.ts`).
   */
  resyncClock(options: ResyncClockOptions): Promise<ResyncClockResult> {
    return clock.resyncClock(this.#ctx, options);
  }

  /**
   * The pauses the VM's resume watchdog ended, with its clock resync after each (from
   * `lease-resumes.json`, which outlives drivers and processes).
   */
  leaseResumes(options: VmOperationOptions): Promise<readonly LeaseResume[]> {
    return clock.leaseResumes(this.#ctx, options);
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#closer.abort(closedError(this, 'close', undefined));
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
  // Calls: thin delegations to internal/ (the members above keep their names)
  // -------------------------------------------------------------------------------------------

  /** Runs one call: checks, the deadline/abort signal, and one place where errors are normalised. */
  #run<T>(
    operation: string,
    options: OperationOptions & { readonly vm?: string },
    flag: DriverCapabilityFlag | undefined,
    defaultTimeoutMs: number | undefined,
    body: (call: Call) => Promise<T>,
  ): Promise<T> {
    return runCall(this.#ctx, operation, options, flag, defaultTimeoutMs, body);
  }

  get #ctx(): QemuContext {
    this.#context ??= {
      host: this.host,
      config: this.config,
      capabilities: this.capabilities,
      handles: this.#handles,
      closer: this.#closer.signal,
      closed: () => this.#closed,
      hostUpdate: { applying: null },
      driver: this,
      startProcess: (handle, process, incoming, call) => this.#startProcess(handle, process, incoming, call),
      binary: (call, version) => this.#binary(call, version),
      blockers: (handle, call) => this.#blockers(handle, call),
    };
    return this.#context;
  }

  #remaining(call: Call): number {
    return remaining(call);
  }

  #qmpOptions(call: Call, capMs?: number): QmpExecuteOptions {
    return qmpOptions(call, capMs);
  }

  #error(
    call: Pick<Call, 'operation' | 'vm'>,
    reason: DriverErrorReason,
    message: string,
    extra: Readonly<Record<string, unknown>> = {},
    cause?: unknown,
    retryable?: boolean,
  ): IntermissionError {
    return callError(this, call, reason, message, extra, cause, retryable);
  }

  #handle(call: Call): VmHandle {
    return handleOf(this.#ctx, call);
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
    return alive(handle);
  }

  /** The driver's connection to the VM's current process, opened when needed. */
  #session(handle: VmHandle, call: Call): Promise<Session> {
    return openSession(this.#ctx, handle, call);
  }

  #connect(handle: VmHandle, path: string, generation: number, call: Call | undefined): Promise<Session> {
    return connectMonitor(handle, path, generation, call);
  }

  #status(session: Session, call: Call): Promise<QmpRunState> {
    return runStatus(session, call);
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
    return clock.agentOf(handle);
  }

  /** Waits until the guest agent answers (a boot); returns when it did. */
  #waitForAgent(handle: VmHandle, call: Call): Promise<number> {
    return clock.waitForAgent(this.#ctx, handle, call);
  }

  /** After a boot: set the guest clock from the host's (the RTC has whole seconds). Best effort. */
  #resyncQuietly(handle: VmHandle, call: Call): Promise<void> {
    return clock.resyncQuietly(this.#ctx, handle, call);
  }

  #writeRecord(handle: VmHandle, record: VmRecordFile): void {
    writeRecord(handle, record);
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
    adoptProcess(handle, started);
  }

  /** Starts the resume watchdog of one process; returns its pid. */
  #startWatchdog(handle: VmHandle, paths: ProcessPaths): Promise<number> {
    return startWatchdog(this.#ctx, handle, paths);
  }

  /** Quits a process of the VM (killing it when it does not go) and its watchdog; removes its dir. */
  #retire(handle: VmHandle, process: ProcessRecord, session: Session | undefined): Promise<void> {
    return retire(handle, process, session);
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

  /** Adopts every VM recorded in the run directory (see `internal/adoption.ts`). */
  #adoptAll(): Promise<void> {
    return adoptAll(this.#ctx);
  }
}
