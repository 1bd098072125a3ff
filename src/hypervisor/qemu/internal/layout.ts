/**
 * The run directory on disk: one directory per VM, holding what a new driver needs to adopt the VM
 * (its record), the lease its watchdog reads, the serial log, and one directory per VMM process
 * (generation) with that process's sockets and logs. Sockets are per process because two processes
 * of one VM run side by side during an in-place swap.
 *
 * ```
 * <runDir>/<vm>/vm.json           VmRecordFile: the spec, the current process, a swap under way
 * <runDir>/<vm>/lease.json        LeaseFile: the resume lease of the current pause
 * <runDir>/<vm>/lease-resumes.json  the pauses the watchdog ended, each with its clock resync
 * <runDir>/<vm>/clock.lock        held by whoever resynchronises the guest clock (driver or watchdog)
 * <runDir>/<vm>/serial.log        serial console of every process of the VM, appended to
 * <runDir>/<vm>/metadata.sock     default metadata channel (served by the host agent)
 * <runDir>/<vm>/firmware/         the firmware and option ROMs pinned at creation (`-L` of every process)
 * <runDir>/<vm>/g<N>/qmp.sock     the driver's monitor of process N
 * <runDir>/<vm>/g<N>/watchdog.sock  the resume watchdog's monitor
 * <runDir>/<vm>/g<N>/ops.sock     a spare monitor for operators and tools
 * <runDir>/<vm>/g<N>/qga.sock     the guest agent's channel
 * <runDir>/<vm>/g<N>/migrate.sock the incoming migration socket
 * <runDir>/<vm>/g<N>/qemu.log, watchdog.log
 * ```
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IntermissionError } from '../../../domain/index.js';
import type {
  QEMU_CACHE_MODES,
  QEMU_DISK_BUSES,
  QEMU_DISK_FORMATS,
  QEMU_FIRMWARES,
  QEMU_NIC_MODELS,
  QemuDeviceSpec,
  RamTransferMode,
} from '../qemu-types.js';

/** Version of the on-disk record format; a driver refuses records it does not know. */
export const VM_RECORD_FORMAT = 1;

/** Longest path a unix socket can have on Linux (`sun_path` is 108 bytes with its NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;

/** VM names: safe in paths, QEMU options and shell words. */
export const VM_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Paths that go into QEMU options and the guestfwd command: no commas, spaces or quotes. */
export const SAFE_PATH_PATTERN = /^\/[A-Za-z0-9._/+-]*$/;

/** A disk of a VM with its defaults applied. */
export interface ResolvedDisk {
  readonly path: string;
  readonly format: (typeof QEMU_DISK_FORMATS)[number];
  readonly bus: (typeof QEMU_DISK_BUSES)[number];
  readonly cache: (typeof QEMU_CACHE_MODES)[number];
  readonly readOnly: boolean;
  readonly serial: string | null;
}

/** A NIC of a VM with its tap name and MAC fixed. */
export interface ResolvedNic {
  readonly bridge: string;
  readonly tap: string;
  readonly mac: string;
  readonly model: (typeof QEMU_NIC_MODELS)[number];
}

/** How the VM boots; kernel and initrd null mean the driver's. */
export type ResolvedBoot =
  | { readonly kind: 'firmware'; readonly firmware: (typeof QEMU_FIRMWARES)[number] }
  | { readonly kind: 'kernel'; readonly kernel: string | null; readonly initrd: string | null; readonly args: string };

/**
 * The firmware and option ROM images a VM was created with, copied into its directory so that
 * every later process (another QEMU build included) loads the very same images: `-L dir` comes
 * first on each command line. OVMF's code and the VM's own variable store are in `dir` too.
 */
export interface PinnedFirmware {
  readonly dir: string;
  /** File names under `dir`. */
  readonly files: readonly string[];
  /** The build whose images were copied, for the operator. */
  readonly fromVersion: string;
}

/** A VM's spec with every default applied, as it is recorded and repeated by each new process. */
export interface ResolvedVmSpec {
  readonly vm: string;
  readonly ramMb: number;
  readonly cpus: number;
  readonly sharedMemory: boolean;
  readonly guestAgent: boolean;
  readonly metadataSocket: string;
  readonly kernelArgs: string;
  readonly devices: readonly QemuDeviceSpec[];
  readonly objects: readonly string[];
  /** The shared RAM file, or null for private RAM. */
  readonly memPath: string | null;
  /** See `QemuVmSpec.vapic`; records written before this field existed had it on (QEMU's default). */
  readonly vapic: boolean;
  /** See `QemuVmSpec.pciBridgeHotplug`; on in records written before this field existed. */
  readonly pciBridgeHotplug: boolean;
  /**
   * The metadata NIC (an e1000 that only carries the metadata service) with QEMU's extra MAC
   * registers, mostly statistics counters: 128 KiB of state saved and loaded register by register,
   * 1-2 ms of every switchover. Off for new VMs; on in records written before this field existed.
   */
  readonly nicExtraMacRegisters: boolean;
  /**
   * The versioned machine type pinned at creation (e.g. `pc-i440fx-7.2`). Absent in records written
   * before pinning: those VMs run `pc`, as they always did.
   */
  readonly machine?: string;
  /** Absent in older records: system firmware, as before. */
  readonly firmware?: PinnedFirmware;
  /** Absent in older records: direct kernel boot with the driver's kernel and initrd. */
  readonly boot?: ResolvedBoot;
  readonly disks?: readonly ResolvedDisk[];
  readonly nics?: readonly ResolvedNic[];
  /** `-cpu`; null or absent: `host` under KVM, QEMU's default under TCG. */
  readonly cpuModel?: string | null;
}

/** One VMM process of a VM. */
export interface ProcessRecord {
  readonly generation: number;
  readonly vmmVersion: string;
  readonly binary: string;
  /** 0 until the process is started. */
  readonly pid: number;
  readonly startedAt: number;
  /** The resume watchdog of this process, or 0 when none was started. */
  readonly watchdogPid: number;
}

/** A swap under way, recorded before the new process starts so that a driver restart can finish it. */
export interface PendingSwap extends ProcessRecord {
  readonly wasPaused: boolean;
  readonly ramTransfer: RamTransferMode;
}

/** `vm.json`. */
export interface VmRecordFile {
  readonly format: number;
  readonly host: string;
  readonly spec: ResolvedVmSpec;
  readonly current: ProcessRecord;
  readonly pending: PendingSwap | null;
}

/**
 * `lease.json`: written by the driver before it pauses the VM, read by the watchdog. `until` is the
 * resume lease (null: none asked, the watchdog's maximum applies); `pausedAt` is added once the
 * STOP event is seen, so that a watchdog or driver that starts later knows when the pause began.
 */
export interface LeaseFile {
  readonly until: number | null;
  readonly writtenAt: number;
  readonly pausedAt?: number;
}

/** Paths of one VM. */
export interface VmPaths {
  readonly dir: string;
  readonly record: string;
  readonly lease: string;
  /** `LeaseResume[]` (see `guest-clock.ts`), newest last. */
  readonly leaseResumes: string;
  readonly clockLock: string;
  readonly serialLog: string;
  readonly defaultMetadataSocket: string;
  /** Where the VM's firmware is pinned. */
  readonly firmwareDir: string;
}

/** Paths of one VMM process of a VM. */
export interface ProcessPaths {
  readonly dir: string;
  readonly qmp: string;
  readonly watchdogQmp: string;
  readonly opsQmp: string;
  readonly guestAgent: string;
  readonly migrate: string;
  readonly qemuLog: string;
  readonly watchdogLog: string;
}

/** The paths of VM `vm` under `runDir`. */
export function vmPaths(runDir: string, vm: string): VmPaths {
  const dir = join(runDir, vm);
  return {
    dir,
    record: join(dir, 'vm.json'),
    lease: join(dir, 'lease.json'),
    leaseResumes: join(dir, 'lease-resumes.json'),
    clockLock: join(dir, 'clock.lock'),
    serialLog: join(dir, 'serial.log'),
    defaultMetadataSocket: join(dir, 'metadata.sock'),
    firmwareDir: join(dir, 'firmware'),
  };
}

/** The paths of process `generation` of the VM in `vmDir`. */
export function processPaths(vmDir: string, generation: number): ProcessPaths {
  const dir = join(vmDir, `g${generation}`);
  return {
    dir,
    qmp: join(dir, 'qmp.sock'),
    watchdogQmp: join(dir, 'watchdog.sock'),
    opsQmp: join(dir, 'ops.sock'),
    guestAgent: join(dir, 'qga.sock'),
    migrate: join(dir, 'migrate.sock'),
    qemuLog: join(dir, 'qemu.log'),
    watchdogLog: join(dir, 'watchdog.log'),
  };
}

/** Throws `INVALID_INPUT` when a socket path would not fit. */
export function checkSocketPath(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `socket path ${path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes: use a shorter run directory`,
    );
  }
}

/**
 * Writes JSON atomically (a temporary file renamed over the target). The temporary name is
 * unguessable and opened with O_EXCL (`wx`), so a symlink planted there is never written through.
 */
export function writeJsonAtomic(path: string, value: unknown): void {
  const temporary = `${path}.${process.pid}.${randomBytes(8).toString('hex')}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(value, null, 2)}\n`, { flag: 'wx', mode: 0o600 });
  renameSync(temporary, path);
}

/** Reads a JSON file; undefined when it does not exist or is not JSON. */
export function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** Reads a VM record; undefined when absent, `INVALID_INPUT` when of another format. */
export function readVmRecord(path: string): VmRecordFile | undefined {
  const value = readJson(path);
  if (value === undefined) return undefined;
  if (!isRecordFile(value)) {
    throw new IntermissionError('INVALID_INPUT', `${path} is not a VM record this driver can read`, {
      details: { path },
    });
  }
  // A process started before one of these settings was recorded ran with QEMU's default, and its
  // successors must have the same devices for the migration to load.
  const spec = value.spec as Omit<ResolvedVmSpec, LaterSetting> & Partial<Pick<ResolvedVmSpec, LaterSetting>>;
  return {
    ...value,
    spec: {
      ...spec,
      vapic: spec.vapic ?? true,
      pciBridgeHotplug: spec.pciBridgeHotplug ?? true,
      nicExtraMacRegisters: spec.nicExtraMacRegisters ?? true,
    },
  };
}

/** Device settings added to the record after its first format: absent means QEMU's default. */
type LaterSetting = 'vapic' | 'pciBridgeHotplug' | 'nicExtraMacRegisters';

function isRecordFile(value: unknown): value is VmRecordFile {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Partial<VmRecordFile>;
  return (
    record.format === VM_RECORD_FORMAT &&
    typeof record.spec === 'object' &&
    record.spec !== null &&
    typeof record.current === 'object' &&
    record.current !== null &&
    typeof record.current.generation === 'number'
  );
}

/** Reads the lease file; undefined when absent or malformed (the watchdog then applies its maximum). */
export function readLease(path: string): LeaseFile | undefined {
  const value = readJson(path);
  if (typeof value !== 'object' || value === null) return undefined;
  const lease = value as Partial<LeaseFile>;
  if (typeof lease.writtenAt !== 'number') return undefined;
  if (lease.until !== null && typeof lease.until !== 'number') return undefined;
  if (lease.pausedAt !== undefined && typeof lease.pausedAt !== 'number') return undefined;
  return {
    until: lease.until,
    writtenAt: lease.writtenAt,
    ...(lease.pausedAt === undefined ? {} : { pausedAt: lease.pausedAt }),
  };
}

/** Removes a file, ignoring its absence. */
export function removeFile(path: string): void {
  rmSync(path, { force: true });
}

/** Creates a directory and its parents. */
export function ensureDir(path: string): void {
  mkdirSync(path, { recursive: true });
}

/** Names of the VM directories under `runDir` that hold a record. */
export function listVmDirs(runDir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(runDir);
  } catch {
    return [];
  }
  return entries.filter((name) => VM_NAME_PATTERN.test(name) && readJson(join(runDir, name, 'vm.json')) !== undefined);
}
