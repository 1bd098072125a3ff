import { setMaxListeners } from 'node:events';
import { IntermissionError } from '../../domain/index.js';
import type { VmCapabilities } from '../../domain/rollout/index.js';
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
import { adoptAll } from './internal/adoption.js';
import { probeBuilds, type BuildProbe } from './internal/builds.js';
import { handleOf, runCall } from './internal/calls.js';
import * as clock from './internal/clock.js';
import type { Call, QemuContext, VmHandle } from './internal/context.js';
import * as describe from './internal/describe.js';
import { closedError } from './internal/errors.js';
import { SAFE_PATH_PATTERN, ensureDir } from './internal/layout.js';
import * as launch from './internal/launch.js';
import * as lifecycle from './internal/lifecycle.js';
import { migrate } from './internal/swap.js';
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
    await adoptAll(driver.#ctx);
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
    return launch.launch(this.#ctx, options);
  }

  /**
   * Stops a VM for good: quits its process (killing it if needed) and its watchdog, and removes its
   * directory and RAM file. `NOT_FOUND` for a VM the driver does not know.
   */

  destroy(options: VmOperationOptions): Promise<void> {
    return launch.destroy(this.#ctx, options);
  }

  /** Paths, sizes and processes of one VM, beyond what {@link listVms} reports. */

  describeVm(options: VmOperationOptions): Promise<QemuVmInfo> {
    return describe.describeVm(this.#ctx, options);
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
    return describe.vmCapabilities(this.#ctx, options);
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
  // The modules under internal/ do the work
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

  #handle(call: Call): VmHandle {
    return handleOf(this.#ctx, call);
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
      builds: () => this.#builds,
    };
    return this.#context;
  }
}
