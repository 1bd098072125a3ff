/**
 * The QEMU hypervisor driver: real VMs in QEMU processes, paused and resumed over QMP, moved in
 * place to a new VMM process with their RAM shared (never copied), their clocks set through the
 * guest agent, and every pause bounded by a resume watchdog beside each process.
 */
export { QemuDriver, vmStateOf } from './qemu-driver.js';
export {
  CLOCK_LOCK_WAIT_MS,
  LEASE_RESYNC_TIMEOUT_MS,
  RESYNC_ATTEMPTS,
  readLeaseResumes,
  resyncAfterLease,
  type LeaseResyncOptions,
} from './guest-clock.js';
export {
  QEMU_ACCELERATORS,
  QEMU_DRIVER_CAPABILITIES,
  DEFAULT_QEMU_RAM_MB,
  DEFAULT_BOOT_TIMEOUT_MS,
  commandHostUpdate,
  resolveQemuConfig,
  simulatedHostUpdate,
  type CommandHostUpdateOptions,
  type HostUpdateHook,
  type HostUpdateHookOptions,
  DEFAULT_FIRMWARE_SEARCH_PATH,
  MAX_VMM_BUILDS,
  type QemuAccelerator,
  type QemuBuildConfig,
  type QemuDriverConfig,
  type QemuWatchdogConfig,
  type ResolvedQemuConfig,
} from './qemu-config.js';
export {
  MAX_VM_DISKS,
  MAX_VM_NICS,
  QEMU_CACHE_MODES,
  QEMU_DISK_BUSES,
  QEMU_DISK_FORMATS,
  QEMU_FIRMWARES,
  QEMU_NIC_MODELS,
  type QemuBootSpec,
  type QemuDiskSpec,
  type QemuNicSpec,
  NON_MIGRATABLE_DEVICE_DRIVERS,
  RAM_TRANSFER_MODES,
  SWAP_PHASES,
  type LocalMigrationOptions,
  type QemuDeviceSpec,
  type QemuLaunchOptions,
  type QemuMigrationStats,
  type QemuSwapInterruption,
  type QemuSwapVmmResult,
  type QemuVmInfo,
  type QemuVmSpec,
  type RamTransferMode,
  type SwapPhase,
  type SwapPhaseEvent,
  type SwapPhaseHook,
} from './qemu-types.js';
export {
  DEFAULT_IDLE_RECHECK_MS,
  DEFAULT_PAUSED_RECHECK_MS,
  LEASE_BINDING_MS,
  ResumeWatchdog,
  decideLease,
  leaseApplies,
  pauseStart,
  type LeaseDecision,
  type LeaseDecisionInput,
  type ResumeWatchdogOptions,
  type WatchdogCheck,
  type WatchdogLogEntry,
} from './resume-watchdog.js';
export { destroyQemuRunDir, serialLogOf, type DestroyRunDirResult } from './qemu-cleanup.js';
export { GUEST_NETWORK, buildQemuArgv, macAddress, type QemuArgvOptions } from './internal/argv.js';
export type {
  LeaseFile,
  PinnedFirmware,
  ResolvedBoot,
  ResolvedDisk,
  ResolvedNic,
  ResolvedVmSpec,
  ProcessPaths,
  VmPaths,
} from './internal/layout.js';
export { canLoad, parseDeviceHelp, parseMachineHelp, probeBuild, type BuildProbe } from './internal/builds.js';
export { firmwareNeeds, firmwareSearchDirs, pinFirmware } from './internal/firmware.js';
export { TAP_ATTACH_SCRIPT, TAP_EXEC_SCRIPT, defaultTapName, wrapWithTaps } from './internal/tap.js';
export { nicMacAddress, pinSpec, resolveVmParts } from './internal/vm-spec.js';
export { VM_RECORD_FORMAT, processPaths, readVmRecord, vmPaths } from './internal/layout.js';
