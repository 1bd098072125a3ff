/**
 * The tenant-facing parts of a VM's spec (disks, NICs, boot, CPU model, machine type), checked at
 * the edge and given their defaults: everything that goes into a QEMU option is bounded and free of
 * the characters that would split it (commas, spaces, quotes), so that a spec cannot inject options.
 */
import { createHash } from 'node:crypto';
import { IntermissionError } from '../../../domain/index.js';
import type { ResolvedQemuConfig } from '../qemu-config.js';
import {
  MAX_VM_DISKS,
  MAX_VM_NICS,
  QEMU_CACHE_MODES,
  QEMU_DISK_BUSES,
  QEMU_DISK_FORMATS,
  QEMU_FIRMWARES,
  QEMU_NIC_MODELS,
  type QemuDiskSpec,
  type QemuNicSpec,
  type QemuVmSpec,
} from '../qemu-types.js';
import { missingModels, resolveMachine, type BuildProbe } from './builds.js';
import { pinFirmware } from './firmware.js';
import {
  SAFE_PATH_PATTERN,
  type ResolvedBoot,
  type ResolvedDisk,
  type ResolvedNic,
  type ResolvedVmSpec,
} from './layout.js';
import { IFNAME_PATTERN, defaultTapName } from './tap.js';

/** Disk serials: what virtio-blk takes (20 bytes), in characters safe in an option. */
const SERIAL_PATTERN = /^[A-Za-z0-9._-]{1,20}$/;
/** Machine types and CPU models: QEMU's names, no option separators. */
const MACHINE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const CPU_MODEL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;
const MAC_PATTERN = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;
/** Longest path of an image, kernel or initrd. */
const MAX_PATH_BYTES = 1024;
/** Longest kernel or tenant argument string. */
export const MAX_KERNEL_ARGS_BYTES = 2048;

/** The parts of a spec this module resolves. */
export interface ResolvedVmParts {
  readonly disks: readonly ResolvedDisk[];
  readonly nics: readonly ResolvedNic[];
  readonly boot: ResolvedBoot;
  readonly cpuModel: string | null;
  /** The machine type the spec names, or null: the launching build's `pc` alias then. */
  readonly machine: string | null;
}

/** A stable, locally administered unicast MAC for NIC `index` of VM `vm`. */
export function nicMacAddress(vm: string, index: number): string {
  const digest = createHash('sha256').update(`${vm}/nic${index}`).digest();
  const bytes = [0x52, 0x54, 0x01, digest[0] ?? 0, digest[1] ?? 0, digest[2] ?? 0];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/**
 * Checks and completes the disks, NICs, boot, CPU model and machine type of a launch.
 *
 * @throws IntermissionError `INVALID_INPUT` naming the field and what is wrong with it
 */
export function resolveVmParts(
  spec: QemuVmSpec,
  config: Pick<ResolvedQemuConfig, 'kernel' | 'initrd'>,
): ResolvedVmParts {
  const invalid = (message: string): IntermissionError =>
    new IntermissionError('INVALID_INPUT', `VM ${JSON.stringify(spec.vm)}: ${message}`);
  const oneOf = <T extends string>(what: string, value: unknown, allowed: readonly T[], fallback: T): T => {
    if (value === undefined) return fallback;
    if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
      throw invalid(`${what} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
    }
    return value as T;
  };
  const path = (what: string, value: unknown): string => {
    if (typeof value !== 'string' || !SAFE_PATH_PATTERN.test(value) || Buffer.byteLength(value) > MAX_PATH_BYTES) {
      throw invalid(`${what} must be an absolute path of letters, digits and . _ / + - (got ${JSON.stringify(value)})`);
    }
    return value;
  };

  const diskSpecs: readonly QemuDiskSpec[] = spec.disks ?? [];
  if (!Array.isArray(spec.disks ?? []) || diskSpecs.length > MAX_VM_DISKS) {
    throw invalid(`disks must be a list of at most ${MAX_VM_DISKS}`);
  }
  const disks = diskSpecs.map((disk, i): ResolvedDisk => {
    const where = `disks[${i}]`;
    const file = path(`${where}.path`, disk.path);
    const serial = disk.serial ?? null;
    if (serial !== null && !SERIAL_PATTERN.test(serial)) {
      throw invalid(`${where}.serial must be 1-20 letters, digits, . _ -`);
    }
    if (disk.readOnly !== undefined && typeof disk.readOnly !== 'boolean') {
      throw invalid(`${where}.readOnly must be true or false`);
    }
    return Object.freeze({
      path: file,
      format: oneOf(`${where}.format`, disk.format, QEMU_DISK_FORMATS, file.endsWith('.qcow2') ? 'qcow2' : 'raw'),
      bus: oneOf(`${where}.bus`, disk.bus, QEMU_DISK_BUSES, 'virtio-blk'),
      cache: oneOf(`${where}.cache`, disk.cache, QEMU_CACHE_MODES, 'none'),
      readOnly: disk.readOnly ?? false,
      serial,
    });
  });
  const paths = new Set(disks.map((d) => d.path));
  if (paths.size !== disks.length) throw invalid('two disks name the same image');

  const nicSpecs: readonly QemuNicSpec[] = spec.nics ?? [];
  if (!Array.isArray(spec.nics ?? []) || nicSpecs.length > MAX_VM_NICS) {
    throw invalid(`nics must be a list of at most ${MAX_VM_NICS}`);
  }
  const nics = nicSpecs.map((nic, i): ResolvedNic => {
    const where = `nics[${i}]`;
    if (typeof nic.bridge !== 'string' || !IFNAME_PATTERN.test(nic.bridge)) {
      throw invalid(`${where}.bridge must be an interface name (1-15 letters, digits, . _ -)`);
    }
    const tap = nic.tap ?? defaultTapName(spec.vm, i);
    if (!IFNAME_PATTERN.test(tap)) throw invalid(`${where}.tap must be 1-15 letters, digits, . _ -`);
    const mac = (nic.mac ?? nicMacAddress(spec.vm, i)).toLowerCase();
    if (!MAC_PATTERN.test(mac)) throw invalid(`${where}.mac must look like 52:54:00:12:34:56`);
    if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) throw invalid(`${where}.mac must be a unicast address`);
    return Object.freeze({
      bridge: nic.bridge,
      tap,
      mac,
      model: oneOf(`${where}.model`, nic.model, QEMU_NIC_MODELS, 'virtio-net-pci'),
    });
  });
  if (new Set(nics.map((n) => n.tap)).size !== nics.length) throw invalid('two NICs name the same tap');
  if (new Set(nics.map((n) => n.mac)).size !== nics.length) throw invalid('two NICs have the same MAC');

  let boot: ResolvedBoot;
  const bootSpec = spec.boot;
  if (bootSpec === undefined) {
    boot =
      config.kernel !== null && config.initrd !== null
        ? { kind: 'kernel', kernel: null, initrd: null, args: '' }
        : { kind: 'firmware', firmware: 'seabios' };
  } else if (bootSpec.kind === 'firmware') {
    boot = { kind: 'firmware', firmware: oneOf('boot.firmware', bootSpec.firmware, QEMU_FIRMWARES, 'seabios') };
  } else if (bootSpec.kind === 'kernel') {
    const kernel = bootSpec.kernel === undefined ? null : path('boot.kernel', bootSpec.kernel);
    const initrd = bootSpec.initrd === undefined ? null : path('boot.initrd', bootSpec.initrd);
    if ((kernel ?? config.kernel) === null || (initrd ?? config.initrd) === null) {
      throw invalid('a kernel boot needs a kernel and an initrd (the spec names none and the driver has none)');
    }
    const args = bootSpec.args ?? '';
    checkArgs('boot.args', args, invalid);
    boot = { kind: 'kernel', kernel, initrd, args };
  } else {
    throw invalid(`boot.kind must be firmware or kernel, got ${JSON.stringify((bootSpec as { kind?: unknown }).kind)}`);
  }
  if (boot.kind === 'firmware') {
    if (disks.length === 0) throw invalid('a firmware boot needs a disk to boot from');
    // SMBIOS OEM strings are one QEMU option value: a comma would end it.
    if ((spec.kernelArgs ?? '').includes(','))
      throw invalid('kernelArgs of a firmware-booted VM may not contain commas');
  }

  const cpuModel = spec.cpuModel ?? null;
  if (cpuModel !== null && !CPU_MODEL_PATTERN.test(cpuModel)) {
    throw invalid('cpuModel must be a QEMU CPU model name (letters, digits, . _ + -)');
  }
  const machine = spec.machine ?? null;
  if (machine !== null && !MACHINE_PATTERN.test(machine)) {
    throw invalid('machine must be a QEMU machine type (letters, digits, . _ -), e.g. pc-i440fx-7.2');
  }
  return Object.freeze({
    disks: Object.freeze(disks),
    nics: Object.freeze(nics),
    boot: Object.freeze(boot),
    cpuModel,
    machine,
  });
}

/** Kernel and tenant arguments: bounded, no quotes, backslashes or newlines. */
export function checkArgs(what: string, args: string, invalid: (message: string) => Error): void {
  if (typeof args !== 'string') throw invalid(`${what} must be a string`);
  if (Buffer.byteLength(args) > MAX_KERNEL_ARGS_BYTES)
    throw invalid(`${what} is longer than ${MAX_KERNEL_ARGS_BYTES} bytes`);
  if (/["'\\\n\r\0]/.test(args)) throw invalid(`${what} may not contain quotes, backslashes or newlines`);
}

/**
 * Pins a new VM to what its launching build runs: the versioned machine type (the spec's, checked
 * against the build, else what the build's `pc` stands for) and copies of the firmware images it
 * boots with, in `firmwareDir`. Every later process of the VM repeats both.
 *
 * @throws IntermissionError `INVALID_INPUT` for a machine type the build lacks or firmware not
 *   found, `CONFLICT` when the build could not be probed
 */
export function pinSpec(
  spec: ResolvedVmSpec,
  options: {
    readonly probe: BuildProbe | undefined;
    readonly firmwareDir: string;
    readonly searchDirs: readonly string[];
  },
): ResolvedVmSpec {
  const { probe } = options;
  if (probe === undefined || probe.error !== null) {
    throw new IntermissionError(
      'CONFLICT',
      `VM ${spec.vm}: cannot pin its machine type: ${probe?.error ?? 'the build was not probed'}`,
    );
  }
  const machine = resolveMachine(probe, spec.machine ?? 'pc');
  if (!probe.machines.has(machine)) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `VM ${spec.vm}: build ${probe.version} has no machine type ${machine} (see ${probe.binary} -machine help)`,
    );
  }
  const missing = missingModels(probe, spec);
  if (missing.length > 0) {
    throw new IntermissionError('INVALID_INPUT', `VM ${spec.vm}: build ${probe.version} lacks ${missing.join(', ')}`);
  }
  const firmware = pinFirmware(spec, {
    dir: options.firmwareDir,
    searchDirs: options.searchDirs,
    fromVersion: probe.version,
  });
  return Object.freeze({ ...spec, machine, firmware });
}
