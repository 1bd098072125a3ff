import { spawn } from 'node:child_process';
import { isAbsolute } from 'node:path';
import { IntermissionError, MAX_PAUSE_BUDGET_MS } from '../../domain/index.js';
import {
  driverCapabilities,
  type DriverCapabilities,
  type DriverCapabilityFlag,
  type HostUpdateSpec,
} from '../driver.js';
import type { SwapPhaseHook } from './qemu-types.js';

/** Accelerators QEMU is started with: `kvm` on real hosts, `tcg` (emulation) where KVM does not work. */
export const QEMU_ACCELERATORS = ['kvm', 'tcg'] as const;
/** One of {@link QEMU_ACCELERATORS}. */
export type QemuAccelerator = (typeof QEMU_ACCELERATORS)[number];

/** What a host-update hook is given. */
export interface HostUpdateHookOptions {
  readonly update: HostUpdateSpec;
  /** Absolute time (host wall clock) by which the hook must be done; it is aborted then. */
  readonly deadline: number;
  /** Fires at the deadline, on the caller's abort, or when the driver closes: stop at once. */
  readonly signal: AbortSignal;
}

/**
 * Applies a host patch (a package upgrade, a microcode load, a config push): whatever the host
 * needs while its VMs are paused. Resolves when done; rejects to fail the update. The default
 * ({@link simulatedHostUpdate}) only waits `expectedApplyMs`: a real host patch is the operator's.
 */
export type HostUpdateHook = (options: HostUpdateHookOptions) => Promise<void>;

/** The resume watchdog started beside every QEMU process (see `watchdog.ts`). */
export interface QemuWatchdogConfig {
  /**
   * The longest any pause lasts, lease or no lease: a pause the driver did not lease (another
   * tool's `stop`, a lease file lost) is resumed after this long. Default and upper bound
   * `MAX_PAUSE_BUDGET_MS` (30 s), so that invariant 1 holds whatever happened.
   */
  readonly maxPauseMs?: number;
  /**
   * The command that starts a watchdog, before its arguments: default `node` with this module's
   * `watchdog.js` (or `node --import tsx watchdog.ts` when running from source).
   */
  readonly command?: readonly string[];
}

/** Configuration of a {@link QemuDriver}. Paths are absolute. */
export interface QemuDriverConfig {
  /** The host's name, as the driver reports it. */
  readonly host: string;
  /**
   * Where every VM of this host keeps its record, sockets and logs, one directory per VM. A new
   * driver on the same directory adopts the VMs found there. Unix socket paths under it must stay
   * below 108 bytes, so keep it short (e.g. `/run/intermission/qemu`).
   */
  readonly runDir: string;
  /**
   * The VMM builds this host has, by version label: the QEMU binary of each, or the binary and its
   * data directory. A VM runs one of them; an in-place VMM swap moves it to another. Example:
   * `{ '7.2.22': '/usr/bin/qemu-system-x86_64', '10.0.2': { binary: '/opt/qemu-10.0.2/usr/bin/qemu-system-x86_64',
   * dataDir: '/usr/share/qemu' } }`. Each build is probed once when the driver opens (`--version`,
   * `-machine help`, `-device help`), so that the driver knows which VMs it can load.
   */
  readonly vmmBuilds: Readonly<Record<string, string | QemuBuildConfig>>;
  /** The build new VMs run on unless they name one; a key of `vmmBuilds`. */
  readonly defaultVmmVersion: string;
  /** Default `kvm`. Tests on machines without working KVM use `tcg`. */
  readonly accel?: QemuAccelerator;
  /** The guest kernel (`-kernel`) of VMs that boot directly into a kernel (the default boot when set). */
  readonly kernel?: string;
  /** The guest initramfs (`-initrd`); set together with `kernel`. */
  readonly initrd?: string;
  /**
   * Where the firmware and option ROM images a new VM is pinned to are looked for, after the
   * launching build's `dataDir`. Default Debian's: `/usr/share/qemu`, `/usr/share/seabios`,
   * `/usr/lib/ipxe/qemu`, `/usr/share/OVMF`.
   */
  readonly firmwareSearchPath?: readonly string[];
  /**
   * The Python 3 interpreter that runs the small exec wrapper through which a VM with NICs is
   * started (it opens the VM's queue of each multi-queue tap and passes it to QEMU). Default `python3`.
   */
  readonly python?: string;
  /** Kernel command line appended to `console=ttyS0 panic=-1` and each VM's own arguments. */
  readonly kernelArgs?: string;
  /** Where shared guest RAM files live (a tmpfs). Default `/dev/shm`. */
  readonly memoryDir?: string;
  /** RAM of VMs that do not say. Default 256. */
  readonly defaultRamMb?: number;
  /** vCPUs of VMs that do not say. Default 1. */
  readonly defaultCpus?: number;
  /** The `socat` binary the metadata channel runs per guest connection. Default `socat`. */
  readonly socatBinary?: string;
  /** Bound on an operation without a deadline. Default `MAX_PAUSE_BUDGET_MS` (30 s). */
  readonly operationTimeoutMs?: number;
  /** Bound on a boot (launch, reboot) until the guest agent answers. Default 180 s. */
  readonly bootTimeoutMs?: number;
  readonly watchdog?: QemuWatchdogConfig;
  /**
   * The nice value (-20..19) of the QEMU threads that carry a swap's switchover, from just before
   * the migration until the new process runs the VM: the new process's main thread (it loads the
   * device state and starts the vCPUs) and the old process's main thread with the migration thread
   * it starts (it stops the vCPUs and sends the device state). vCPU threads keep their priority, so
   * the guest gets no more CPU than before. On a busy host this keeps the guest-visible pause from
   * waiting for a CPU. Needs root (CAP_SYS_NICE); without it nothing changes. Default -10; null
   * leaves priorities alone.
   */
  readonly switchoverNice?: number | null;
  /**
   * For in-place swaps (shared RAM), the same threads also run SCHED_FIFO at this priority (1-99)
   * over the same span, so that no other process on the host delays the switchover. Their work
   * there is bounded (device state, a few ms of CPU), so they cannot hold a CPU for long; a copying
   * migration, which moves all of RAM, is not given it. Set with util-linux `chrt` (root); without
   * it nothing changes. Default 1; null leaves the scheduling policy alone.
   */
  readonly switchoverRealtime?: number | null;
  /** Applies host updates. Default {@link simulatedHostUpdate}. */
  readonly hostUpdate?: HostUpdateHook;
  /** Turns driver capabilities off (to exercise gating); QEMU has them all. */
  readonly capabilities?: Partial<Record<DriverCapabilityFlag, boolean>>;
  /**
   * Test-only: called at each phase of a swap or local migration (see {@link SwapPhaseHook}), so
   * that a test can interrupt one at an exact point instead of racing a timer. Leave unset.
   */
  readonly onSwapPhase?: SwapPhaseHook;
}

/** A VMM build: its binary and, when its own data directory lacks firmware, where to find it. */
export interface QemuBuildConfig {
  readonly binary: string;
  /** Given as `-L` after the VM's pinned firmware directory (e.g. `/usr/share/qemu`). */
  readonly dataDir?: string;
}

/** Default {@link QemuDriverConfig.firmwareSearchPath}. */
export const DEFAULT_FIRMWARE_SEARCH_PATH: readonly string[] = Object.freeze([
  '/usr/share/qemu',
  '/usr/share/seabios',
  '/usr/lib/ipxe/qemu',
  '/usr/share/OVMF',
]);

/** What QEMU can do: everything the port has. */
export const QEMU_DRIVER_CAPABILITIES: DriverCapabilities = driverCapabilities({
  inPlaceMigration: true,
  hostUpdate: true,
  guestClock: true,
  reboot: true,
});

/** Bound on the builds of one host (each is probed when the driver opens). */
export const MAX_VMM_BUILDS = 16;

/** A directory QEMU is given in an option: absolute, no commas or spaces. */
const SAFE_DIR_PATTERN = /^\/[A-Za-z0-9._/+-]*$/;

/** Default RAM of a VM, in MB. */
export const DEFAULT_QEMU_RAM_MB = 256;
/**
 * Default bound on a boot: a Debian kernel and a busybox initramfs reach init in about 12 s under
 * TCG, several guests booting at once on two cores take a few times that; far less under KVM.
 */
export const DEFAULT_BOOT_TIMEOUT_MS = 180_000;

/** Default {@link QemuDriverConfig.switchoverNice}. */
export const DEFAULT_SWITCHOVER_NICE = -10;

/** Default {@link QemuDriverConfig.switchoverRealtime}: the lowest SCHED_FIFO priority. */
export const DEFAULT_SWITCHOVER_REALTIME = 1;

/** {@link QemuDriverConfig} with every default filled in. */
export interface ResolvedQemuConfig {
  readonly host: string;
  readonly runDir: string;
  /** The binary of each build. */
  readonly vmmBuilds: Readonly<Record<string, string>>;
  /** The data directory of each build that names one. */
  readonly buildDataDirs: Readonly<Record<string, string>>;
  readonly defaultVmmVersion: string;
  readonly accel: QemuAccelerator;
  readonly kernel: string | null;
  readonly initrd: string | null;
  readonly firmwareSearchPath: readonly string[];
  readonly python: string;
  readonly kernelArgs: string;
  readonly memoryDir: string;
  readonly defaultRamMb: number;
  readonly defaultCpus: number;
  readonly socatBinary: string;
  readonly operationTimeoutMs: number;
  readonly bootTimeoutMs: number;
  readonly watchdogMaxPauseMs: number;
  readonly watchdogCommand: readonly string[] | undefined;
  readonly switchoverNice: number | null;
  readonly switchoverRealtime: number | null;
  readonly hostUpdate: HostUpdateHook;
  readonly capabilities: DriverCapabilities;
  readonly onSwapPhase: SwapPhaseHook | undefined;
}

/** Checks a configuration and fills in its defaults; `INVALID_INPUT` naming what is wrong. */
export function resolveQemuConfig(config: QemuDriverConfig): ResolvedQemuConfig {
  const invalid = (message: string): IntermissionError =>
    new IntermissionError('INVALID_INPUT', `QEMU driver configuration: ${message}`);
  if (config.host === '') throw invalid('host must be a name');
  for (const [what, path] of [
    ['runDir', config.runDir],
    ['kernel', config.kernel],
    ['initrd', config.initrd],
    ...(config.firmwareSearchPath ?? []).map((dir) => ['firmwareSearchPath', dir] as const),
  ] as const) {
    if (path !== undefined && !isAbsolute(path)) {
      throw invalid(`${what} must be an absolute path, got ${JSON.stringify(path)}`);
    }
  }
  if ((config.kernel === undefined) !== (config.initrd === undefined)) {
    throw invalid('kernel and initrd go together: set both or neither');
  }
  const builds = Object.entries(config.vmmBuilds);
  if (builds.length === 0) throw invalid('vmmBuilds must name at least one QEMU binary');
  if (builds.length > MAX_VMM_BUILDS) throw invalid(`vmmBuilds may name at most ${MAX_VMM_BUILDS} builds`);
  const binaries: Record<string, string> = {};
  const dataDirs: Record<string, string> = {};
  for (const [version, build] of builds) {
    const binary = typeof build === 'string' ? build : build.binary;
    if (version === '' || typeof binary !== 'string' || binary === '') {
      throw invalid('every vmmBuilds entry needs a version label and a binary');
    }
    binaries[version] = binary;
    if (typeof build !== 'string' && build.dataDir !== undefined) {
      if (!SAFE_DIR_PATTERN.test(build.dataDir)) {
        throw invalid(`vmmBuilds.${version}.dataDir must be an absolute path of letters, digits and . _ / + -`);
      }
      dataDirs[version] = build.dataDir;
    }
  }
  if (!Object.hasOwn(config.vmmBuilds, config.defaultVmmVersion)) {
    throw invalid(`defaultVmmVersion ${JSON.stringify(config.defaultVmmVersion)} is not a key of vmmBuilds`);
  }
  const accel = config.accel ?? 'kvm';
  if (!(QEMU_ACCELERATORS as readonly string[]).includes(accel)) {
    throw invalid(`accel must be one of ${QEMU_ACCELERATORS.join(', ')}`);
  }
  const positive = (what: string, value: number): number => {
    if (!(Number.isFinite(value) && value > 0)) throw invalid(`${what} must be a positive number`);
    return value;
  };
  const maxPause = positive('watchdog.maxPauseMs', config.watchdog?.maxPauseMs ?? MAX_PAUSE_BUDGET_MS);
  if (maxPause > MAX_PAUSE_BUDGET_MS) {
    throw invalid(`watchdog.maxPauseMs may not exceed the longest pause budget (${MAX_PAUSE_BUDGET_MS} ms)`);
  }
  const switchoverNice = config.switchoverNice === undefined ? DEFAULT_SWITCHOVER_NICE : config.switchoverNice;
  if (switchoverNice !== null && !(Number.isInteger(switchoverNice) && switchoverNice >= -20 && switchoverNice <= 19)) {
    throw invalid('switchoverNice must be an integer from -20 to 19, or null');
  }
  const switchoverRealtime =
    config.switchoverRealtime === undefined ? DEFAULT_SWITCHOVER_REALTIME : config.switchoverRealtime;
  if (
    switchoverRealtime !== null &&
    !(Number.isInteger(switchoverRealtime) && switchoverRealtime >= 1 && switchoverRealtime <= 99)
  ) {
    throw invalid('switchoverRealtime must be an integer from 1 to 99, or null');
  }
  const memoryDir = config.memoryDir ?? '/dev/shm';
  if (!isAbsolute(memoryDir)) throw invalid('memoryDir must be an absolute path');
  return Object.freeze({
    host: config.host,
    runDir: config.runDir,
    vmmBuilds: Object.freeze(binaries),
    buildDataDirs: Object.freeze(dataDirs),
    defaultVmmVersion: config.defaultVmmVersion,
    accel,
    kernel: config.kernel ?? null,
    initrd: config.initrd ?? null,
    firmwareSearchPath: Object.freeze([...(config.firmwareSearchPath ?? DEFAULT_FIRMWARE_SEARCH_PATH)]),
    python: config.python ?? 'python3',
    kernelArgs: config.kernelArgs ?? '',
    memoryDir,
    defaultRamMb: positive('defaultRamMb', config.defaultRamMb ?? DEFAULT_QEMU_RAM_MB),
    defaultCpus: positive('defaultCpus', config.defaultCpus ?? 1),
    socatBinary: config.socatBinary ?? 'socat',
    operationTimeoutMs: positive('operationTimeoutMs', config.operationTimeoutMs ?? MAX_PAUSE_BUDGET_MS),
    bootTimeoutMs: positive('bootTimeoutMs', config.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS),
    watchdogMaxPauseMs: maxPause,
    watchdogCommand: config.watchdog?.command === undefined ? undefined : Object.freeze([...config.watchdog.command]),
    switchoverNice,
    switchoverRealtime,
    hostUpdate: config.hostUpdate ?? simulatedHostUpdate,
    capabilities: driverCapabilities({ ...QEMU_DRIVER_CAPABILITIES, ...config.capabilities }),
    onSwapPhase: config.onSwapPhase,
  });
}

/**
 * The default host-update hook: waits `expectedApplyMs`, as if a patch were applied. It ends early
 * (rejecting with the signal's reason) at the deadline or on abort.
 */
export function simulatedHostUpdate(options: HostUpdateHookOptions): Promise<void> {
  const { signal } = options;
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(abortError(signal));
      return;
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, options.update.expectedApplyMs);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Options of {@link commandHostUpdate}. */
export interface CommandHostUpdateOptions {
  /** The program and its arguments, run without a shell. */
  readonly command: readonly string[];
  /** Extra environment; the update is passed as `INTERMISSION_UPDATE_ID`, `_KIND` and `_EXPECTED_MS`. */
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * A host-update hook that runs a command: the update succeeds when it exits with 0. At the deadline
 * or on abort it is killed (SIGKILL), and the update fails with the signal's reason.
 */
export function commandHostUpdate(options: CommandHostUpdateOptions): HostUpdateHook {
  const [program, ...args] = options.command;
  if (program === undefined) throw new IntermissionError('INVALID_INPUT', 'a host-update command needs a program');
  return ({ update, signal }) =>
    new Promise<void>((resolve, reject) => {
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      const child = spawn(program, args, {
        stdio: 'ignore',
        env: {
          ...process.env,
          ...options.env,
          INTERMISSION_UPDATE_ID: update.id,
          INTERMISSION_UPDATE_KIND: update.kind,
          INTERMISSION_UPDATE_EXPECTED_MS: String(update.expectedApplyMs),
        },
      });
      const onAbort = (): void => {
        child.kill('SIGKILL');
      };
      signal.addEventListener('abort', onAbort, { once: true });
      child.once('error', (error) => {
        signal.removeEventListener('abort', onAbort);
        reject(new IntermissionError('CONFLICT', `cannot run the host-update command ${program}`, { cause: error }));
      });
      child.once('exit', (code, killed) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) reject(abortError(signal));
        else if (code === 0) resolve();
        else {
          reject(
            new IntermissionError(
              'CONFLICT',
              `the host-update command ${program} failed (${code === null ? `signal ${killed}` : `exit ${code}`})`,
              { details: { exitCode: code, signal: killed } },
            ),
          );
        }
      });
    });
}

/** The reason of an aborted signal as an Error (a driver error, usually). */
function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(String(reason));
}
