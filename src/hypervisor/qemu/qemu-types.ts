import type { OperationOptions, SwapVmmOptions, SwapVmmResult, VmRuntimeInfo } from '../driver.js';
import type { DriverErrorReason } from '../errors.js';

/**
 * Device drivers whose state QEMU cannot migrate: a VM with one of them cannot move to a new VMM
 * process in place (its planner path falls back). QEMU's own `query-migrate` `blocked-reasons`
 * is consulted as well, for blockers this table does not know.
 */
export const NON_MIGRATABLE_DEVICE_DRIVERS: readonly string[] = Object.freeze([
  'vfio-pci',
  'vfio-pci-nohotplug',
  'vfio-platform',
  'vfio-ccw',
  'vfio-ap',
  'vhost-user-fs-pci',
  'ivshmem-doorbell',
]);

/** One extra device of a VM (`-device driver,props…`), beyond the ones every VM has. */
export interface QemuDeviceSpec {
  /** The QEMU device driver, e.g. `vfio-pci`. */
  readonly driver: string;
  /** Its properties, e.g. `{ host: '0000:3b:00.0' }`. */
  readonly props?: Readonly<Record<string, string | number | boolean>>;
  /**
   * Whether its state can be migrated. Default: false for {@link NON_MIGRATABLE_DEVICE_DRIVERS},
   * true otherwise.
   */
  readonly migratable?: boolean;
}

/** Image formats a VM disk may have. */
export const QEMU_DISK_FORMATS = ['raw', 'qcow2'] as const;
/** How a disk is attached: its own virtio-blk PCI device, or a LUN on the VM's virtio-scsi controller. */
export const QEMU_DISK_BUSES = ['virtio-blk', 'virtio-scsi'] as const;
/** QEMU's `cache=` modes (`none` opens with O_DIRECT, which the image's filesystem must support). */
export const QEMU_CACHE_MODES = ['none', 'writeback', 'writethrough', 'directsync', 'unsafe'] as const;
/** NIC device models on a tap. */
export const QEMU_NIC_MODELS = ['virtio-net-pci', 'e1000'] as const;
/** System firmware a VM may boot from disk with: SeaBIOS (BIOS) or OVMF (UEFI). */
export const QEMU_FIRMWARES = ['seabios', 'ovmf'] as const;
/** Bounds of a VM spec: more disks or NICs than this is refused at the edge. */
export const MAX_VM_DISKS = 16;
export const MAX_VM_NICS = 8;

/** One disk of a VM (`-drive if=none` plus its device). Every process of the VM opens the same image. */
export interface QemuDiskSpec {
  /** The image file, absolute; letters, digits and . _ / + - only. */
  readonly path: string;
  /** Default `qcow2` when the name ends in `.qcow2`, else `raw`. */
  readonly format?: (typeof QEMU_DISK_FORMATS)[number];
  /** Default `virtio-blk`. */
  readonly bus?: (typeof QEMU_DISK_BUSES)[number];
  /** Default `none` (O_DIRECT): what a host that can crash wants. */
  readonly cache?: (typeof QEMU_CACHE_MODES)[number];
  /** Default false. */
  readonly readOnly?: boolean;
  /** The serial the guest sees (`/dev/disk/by-id/virtio-<serial>`): letters, digits, . _ -, at most 20. */
  readonly serial?: string;
}

/** One NIC of a VM on a tap device attached to a Linux bridge. */
export interface QemuNicSpec {
  /** The bridge the tap is attached to; it must exist (the driver does not create bridges). */
  readonly bridge: string;
  /** The tap's name (at most 15 characters). Default derived from the VM's name and the NIC's index. */
  readonly tap?: string;
  /** Default: a stable, locally administered MAC from the VM's name and the NIC's index. */
  readonly mac?: string;
  /** Default `virtio-net-pci`. */
  readonly model?: (typeof QEMU_NIC_MODELS)[number];
}

/**
 * How a VM boots: through firmware from its first disk (SeaBIOS, or OVMF with a per-VM copy of
 * its variable store), or directly into a kernel and initrd (`-kernel`, `-initrd`, `-append`).
 */
export type QemuBootSpec =
  | { readonly kind: 'firmware'; readonly firmware: (typeof QEMU_FIRMWARES)[number] }
  | {
      readonly kind: 'kernel';
      /** Default the driver's `kernel`. */
      readonly kernel?: string;
      /** Default the driver's `initrd`. */
      readonly initrd?: string;
      /** Appended to the kernel command line, before the VM's `kernelArgs`. */
      readonly args?: string;
    };

/** What a VM is made of: the part of a launch that every later process of the VM repeats. */
export interface QemuVmSpec {
  /** The VM's name: letters, digits, `.`, `_` and `-`. */
  readonly vm: string;
  /** Default the driver's `defaultRamMb`. */
  readonly ramMb?: number;
  /** Default the driver's `defaultCpus`. */
  readonly cpus?: number;
  /** The VMM build to run it on; a key of `vmmBuilds`. Default the driver's `defaultVmmVersion`. */
  readonly vmmVersion?: string;
  /**
   * RAM in a shared file mapping (`memory-backend-file,share=on` under `memoryDir`), which a new VMM
   * process maps again: what an in-place swap needs. False: private RAM, which only a copying
   * migration can move. Default true.
   */
  readonly sharedMemory?: boolean;
  /** A virtio-serial channel for qemu-ga. Default true. */
  readonly guestAgent?: boolean;
  /**
   * The unix socket of this VM's metadata service (served by the host agent, e.g. with
   * `listenMetadata`): the guest's connections to 169.254.169.254:80 are forwarded there, one socat
   * per connection, so the service knows which VM calls. Default `<runDir>/<vm>/metadata.sock`.
   */
  readonly metadataSocket?: string;
  /** Appended to the kernel command line (e.g. `tenant.beat=1`). */
  readonly kernelArgs?: string;
  /** Extra devices; see {@link QemuDeviceSpec}. */
  readonly devices?: readonly QemuDeviceSpec[];
  /** Extra `-object` values (e.g. the memory backend of an extra device). */
  readonly objects?: readonly string[];
  /**
   * QEMU's TPR-access patching (the `kvmvapic` option ROM, `apic-common.vapic`). It speeds up only
   * old 32-bit Windows guests on CPUs without FlexPriority, and restoring its state costs 1-3 ms of
   * every switchover (it remaps guest memory), so it is off unless asked for. Default false.
   */
  readonly vapic?: boolean;
  /**
   * ACPI hotplug into PCI bridges (`PIIX4_PM.acpi-pci-hotplug-with-bridge-support`). Its state is
   * 256 slots that QEMU saves and loads one by one, about 1 ms of every switchover, and it serves
   * only VMs that have PCI bridges and hotplug devices behind them; hotplug on the root bus works
   * without it. Default false.
   */
  readonly pciBridgeHotplug?: boolean;
  /** Disks, in order (the first one is the boot disk of a firmware boot). At most {@link MAX_VM_DISKS}. */
  readonly disks?: readonly QemuDiskSpec[];
  /** NICs on taps, beside the metadata NIC every VM has. At most {@link MAX_VM_NICS}. */
  readonly nics?: readonly QemuNicSpec[];
  /**
   * Default: direct kernel boot with the driver's `kernel` and `initrd` when it has them, else
   * `{ kind: 'firmware', firmware: 'seabios' }`. With a firmware boot the VM's `kernelArgs` reach
   * the guest as the SMBIOS OEM string `intermission.args=<args>` (type 11).
   */
  readonly boot?: QemuBootSpec;
  /** `-cpu`. Default `host` under KVM, QEMU's own default under TCG. */
  readonly cpuModel?: string;
  /**
   * The machine type, pinned for the VM's life. Default: what the launching build's `pc` alias
   * resolves to (e.g. `pc-i440fx-7.2`), so that a later build loads the VM as this one ran it.
   */
  readonly machine?: string;
}

/** Options of {@link QemuDriver.launch}. */
export interface QemuLaunchOptions extends QemuVmSpec, OperationOptions {
  /**
   * Wait until the guest agent answers, then set the guest clock from the host's (a fresh boot reads
   * the RTC, which has whole seconds). Default: true when the VM has a guest agent.
   */
  readonly waitForGuestAgent?: boolean;
}

/** A VM as {@link QemuDriver.launch} and {@link QemuDriver.describeVm} report it. */
export interface QemuVmInfo extends VmRuntimeInfo {
  readonly ramMb: number;
  readonly sharedMemory: boolean;
  /** The VM's directory under the run dir. */
  readonly dir: string;
  /** The serial console's log file (one file for every process of the VM, appended to). */
  readonly serialLog: string;
  /** The metadata socket the guest's 169.254.169.254:80 leads to. */
  readonly metadataSocket: string;
  /** The guest agent's socket of the current process, or null without a guest agent. */
  readonly guestAgentSocket: string | null;
  /** The resume watchdog process of the current VMM process, or null when none runs. */
  readonly watchdogPid: number | null;
  /** The machine type every process of the VM gets (`pc` for a VM recorded before pinning). */
  readonly machine: string;
  /** The firmware and option ROM images pinned in the VM's directory; empty for an older VM. */
  readonly firmwareFiles: readonly string[];
  /** The tap devices of its NICs. */
  readonly taps: readonly string[];
}

/** How guest RAM moves in a local migration. */
export const RAM_TRANSFER_MODES = ['shared', 'copy'] as const;
/**
 * One of {@link RAM_TRANSFER_MODES}: `shared` maps the same RAM in the new process and skips it
 * (`x-ignore-shared`: the in-place swap); `copy` sends every page over the socket, as a live
 * migration to another host would (for comparison).
 */
export type RamTransferMode = (typeof RAM_TRANSFER_MODES)[number];

/** Options of {@link QemuDriver.migrateLocally}. */
export interface LocalMigrationOptions extends SwapVmmOptions {
  readonly ramTransfer: RamTransferMode;
}

/** What QEMU reported of one migration (`query-migrate` once completed). */
export interface QemuMigrationStats {
  /** Bytes sent over the migration socket: device state plus any RAM not skipped. */
  readonly transferredBytes: number;
  /** Guest RAM QEMU accounted for (skipped shared RAM excluded). */
  readonly ramTotalBytes: number;
  /** QEMU's own measure of the downtime. */
  readonly qemuDowntimeMs: number | null;
  readonly qemuTotalMs: number | null;
  readonly setupMs: number | null;
}

/** Result of {@link QemuDriver.swapVmm} and {@link QemuDriver.migrateLocally}. */
export interface QemuSwapVmmResult extends SwapVmmResult {
  readonly ramTransfer: RamTransferMode;
  /** Null when nothing was done (`changed: false`). */
  readonly migration: QemuMigrationStats | null;
  /** The source's STOP event (host wall clock), or null when the VM was already paused. */
  readonly stoppedAt: number | null;
  /** The destination's RESUME event, or null when the VM stays paused. */
  readonly resumedAt: number | null;
  /**
   * Null for a swap that ran its course. Set when the call was interrupted (deadline, abort, driver
   * closed, or an error) after the point of no return and the driver finished the swap anyway: the
   * VM runs (or, paused before, is held) in the new process, `completedAt` may then be past the
   * call's deadline, and `downtimeMs` is the real gap between the source's STOP and the new
   * process's RESUME, however long it was.
   */
  readonly interrupted: QemuSwapInterruption | null;
}

/**
 * A swap interrupted after its point of no return (the source reported `completed`, or the new
 * process started the VM): the driver does not roll back then, since the new process may already
 * have changed guest RAM that both processes share. It finishes the swap on the new process instead
 * and, when the VM runs there, reports success with the real timings and this record of what
 * interrupted it (see {@link QemuSwapVmmResult.interrupted}).
 */
export interface QemuSwapInterruption {
  /** The driver error reason of the interruption: `DEADLINE_EXCEEDED`, `ABORTED`, `DRIVER_CLOSED`, … */
  readonly reason: DriverErrorReason;
  readonly message: string;
  /** When the driver had finished the swap anyway (host wall clock). */
  readonly settledAt: number;
  /** How far past the call's deadline `settledAt` was; 0 when it was not. */
  readonly lateMs: number;
}

/**
 * Points of a swap (or local migration) at which {@link SwapPhaseHook} is called, in order:
 * `target-ready` (the new process listens for the migration, which has not been started),
 * `migration-started` (the source accepted `migrate`) and `source-completed` (the source reported
 * `completed`; the new process may or may not have started the VM yet).
 */
export const SWAP_PHASES = ['target-ready', 'migration-started', 'source-completed'] as const;
/** One of {@link SWAP_PHASES}. */
export type SwapPhase = (typeof SWAP_PHASES)[number];

/** What {@link SwapPhaseHook} is told. */
export interface SwapPhaseEvent {
  readonly vm: string;
  readonly phase: SwapPhase;
  /** The old QEMU process: the migration's source. */
  readonly sourcePid: number;
  /** The new QEMU process: the migration's destination. */
  readonly targetPid: number;
  /** The generation the new process would have. */
  readonly generation: number;
}

/**
 * Test-only hook (`QemuDriverConfig.onSwapPhase`): called synchronously at each {@link SwapPhase}
 * so that a test can interrupt a swap at an exact point, e.g. abort it right after the source
 * reported `completed`. The driver checks the call's abort signal right after the hook returns; a
 * hook that throws fails the swap as an error at that point would.
 */
export type SwapPhaseHook = (event: SwapPhaseEvent) => void;
