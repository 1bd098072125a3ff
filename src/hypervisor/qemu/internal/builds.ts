/**
 * What each VMM build of a host is and can load, learnt once when the driver opens: its version
 * (`--version`), its machine types with the alias `pc` (`-machine help`) and its device models
 * (`-device help`). A VM created on one build is pinned to a versioned machine type and to its
 * firmware images; another build can take it over in place only if it has that machine type and
 * every device model the VM uses, and the VM's firmware is there.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { ResolvedVmSpec } from './layout.js';

/** What one build answered (or why it did not). */
export interface BuildProbe {
  readonly version: string;
  readonly binary: string;
  /** QEMU's version, e.g. `7.2.22`; null when the binary did not answer. */
  readonly qemuVersion: string | null;
  /** Every machine type name the build has (aliases included). */
  readonly machines: ReadonlySet<string>;
  /** Aliases to the versioned type they stand for, e.g. `pc` → `pc-i440fx-7.2`. */
  readonly aliases: ReadonlyMap<string, string>;
  /** Device model names (aliases included). */
  readonly devices: ReadonlySet<string>;
  /**
   * Whether `devices` is the build's whole list. A build whose `-device help` fails (QEMU 10
   * unpacked beside a 7.2 aborts loading 7.2's modules) is asked about {@link DRIVER_DEVICE_MODELS}
   * one by one instead, and other models are then unknown rather than missing.
   */
  readonly devicesComplete: boolean;
  /** Why the probe failed; null when it worked. */
  readonly error: string | null;
}

/** The device models the driver itself creates (see argv.ts). */
export const DRIVER_DEVICE_MODELS: readonly string[] = Object.freeze([
  'e1000',
  'virtio-serial-pci',
  'virtserialport',
  'virtio-blk-pci',
  'virtio-scsi-pci',
  'scsi-hd',
  'virtio-net-pci',
]);

/** Bound on each probe command: QEMU answers help in tens of milliseconds. */
const PROBE_TIMEOUT_MS = 10_000;

function run(binary: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: PROBE_TIMEOUT_MS, maxBuffer: 8 * 1024 * 1024 }, (error, stdout) => {
      if (error) reject(new Error(error.message, { cause: error }));
      else resolve(stdout);
    });
  });
}

/** Probes one build; never rejects (a failure is recorded in `error`). */
export async function probeBuild(version: string, binary: string): Promise<BuildProbe> {
  try {
    const [versionText, machineText, deviceText] = await Promise.all([
      run(binary, ['--version']),
      run(binary, ['-machine', 'help']),
      run(binary, ['-device', 'help']).catch(() => null),
    ]);
    const { machines, aliases } = parseMachineHelp(machineText);
    if (machines.size === 0) throw new Error('-machine help listed no machine types');
    let devices: Set<string>;
    if (deviceText !== null) devices = parseDeviceHelp(deviceText);
    else {
      const known = await Promise.all(
        DRIVER_DEVICE_MODELS.map((model) =>
          run(binary, ['-device', `${model},help`]).then(
            () => model,
            () => null,
          ),
        ),
      );
      devices = new Set(known.filter((model): model is string => model !== null));
    }
    return Object.freeze({
      version,
      binary,
      qemuVersion: /version\s+(\d+\.\d+(?:\.\d+)?)/i.exec(versionText)?.[1] ?? null,
      machines,
      aliases,
      devices,
      devicesComplete: deviceText !== null,
      error: null,
    });
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
    return Object.freeze({
      version,
      binary,
      qemuVersion: null,
      machines: new Set<string>(),
      aliases: new Map<string, string>(),
      devices: new Set<string>(),
      devicesComplete: false,
      error: `cannot probe ${binary}: ${message}`,
    });
  }
}

/** Probes every build at once. */
export async function probeBuilds(builds: Readonly<Record<string, string>>): Promise<Map<string, BuildProbe>> {
  const probes = await Promise.all(Object.entries(builds).map(([version, binary]) => probeBuild(version, binary)));
  return new Map(probes.map((p) => [p.version, p]));
}

/** Machine names and aliases from `-machine help` (`pc   Standard PC … (alias of pc-i440fx-7.2)`). */
export function parseMachineHelp(text: string): { machines: Set<string>; aliases: Map<string, string> } {
  const machines = new Set<string>();
  const aliases = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^(\S+)\s+(.*)$/.exec(line);
    if (match === null || line.startsWith('Supported machines')) continue;
    const [, name = '', rest = ''] = match;
    machines.add(name);
    const alias = /\(alias of ([^)\s]+)\)/.exec(rest);
    if (alias?.[1] !== undefined) aliases.set(name, alias[1]);
  }
  return { machines, aliases };
}

/** Device names and aliases from `-device help` (`name "virtio-blk-pci", bus PCI, alias "virtio-blk"`). */
export function parseDeviceHelp(text: string): Set<string> {
  const devices = new Set<string>();
  for (const match of text.matchAll(/^name "([^"]+)"(?:.*?alias "([^"]+)")?/gm)) {
    if (match[1] !== undefined) devices.add(match[1]);
    if (match[2] !== undefined) devices.add(match[2]);
  }
  return devices;
}

/** The versioned machine type `machine` stands for on this build (itself when not an alias). */
export function resolveMachine(probe: BuildProbe, machine: string): string {
  return probe.aliases.get(machine) ?? machine;
}

/** The device models a VM's processes create (`-device` drivers), for checking a build has them. */
export function deviceModelsOf(spec: ResolvedVmSpec): string[] {
  const models = new Set<string>(['e1000']);
  if (spec.guestAgent) models.add('virtio-serial-pci').add('virtserialport');
  for (const disk of spec.disks ?? []) {
    if (disk.bus === 'virtio-blk') models.add('virtio-blk-pci');
    else models.add('virtio-scsi-pci').add('scsi-hd');
  }
  for (const nic of spec.nics ?? []) models.add(nic.model);
  for (const device of spec.devices) models.add(device.driver);
  return [...models].sort();
}

/** Device models of the VM the build is known not to have. */
export function missingModels(probe: BuildProbe, spec: ResolvedVmSpec): string[] {
  return deviceModelsOf(spec).filter(
    (model) => !probe.devices.has(model) && (probe.devicesComplete || DRIVER_DEVICE_MODELS.includes(model)),
  );
}

/** Whether a build can load a VM (a swap's target, or a restart), and if not why. */
export interface LoadVerdict {
  readonly loadable: boolean;
  readonly reason?: string;
}

/**
 * Whether `probe`'s build can run the VM of `spec` as it was created: the pinned machine type, every
 * device model, and the pinned firmware files present. A VM recorded before pinning runs the
 * unversioned `pc`, which each build takes as its own newest type: another build loads it only if
 * its `pc` stands for the same type as on `current`, the build the VM runs on.
 */
export function canLoad(probe: BuildProbe, spec: ResolvedVmSpec, current?: BuildProbe): LoadVerdict {
  if (probe.error !== null) return { loadable: false, reason: probe.error };
  const problems: string[] = [];
  if (spec.machine !== undefined) {
    if (!probe.machines.has(spec.machine)) problems.push(`build ${probe.version} has no machine type ${spec.machine}`);
  } else if (!probe.machines.has('pc')) {
    problems.push(`build ${probe.version} has no machine type pc`);
  } else if (current !== undefined && current.error === null) {
    const running = resolveMachine(current, 'pc');
    const there = resolveMachine(probe, 'pc');
    if (running !== there) {
      problems.push(
        `the VM runs the unversioned machine type pc (${running} on build ${current.version}), which build ${probe.version} takes as ${there}`,
      );
    }
  }
  const missing = missingModels(probe, spec);
  if (missing.length > 0) {
    problems.push(`build ${probe.version} lacks device model${missing.length === 1 ? '' : 's'} ${missing.join(', ')}`);
  }
  if (spec.firmware !== undefined) {
    const gone = spec.firmware.files.filter((file) => !existsSync(join(spec.firmware?.dir ?? '', file)));
    if (gone.length > 0) problems.push(`pinned firmware missing: ${gone.join(', ')}`);
  }
  return problems.length === 0 ? { loadable: true } : { loadable: false, reason: problems.join('; ') };
}
