import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { IntermissionError, coerceError, type Vm } from '../domain/index.js';
import {
  MAX_VM_DISKS,
  MAX_VM_NICS,
  QEMU_ACCELERATORS,
  QEMU_CACHE_MODES,
  QEMU_DISK_BUSES,
  QEMU_DISK_FORMATS,
  QEMU_FIRMWARES,
  QEMU_NIC_MODELS,
  QemuDriver,
  commandHostUpdate,
  type QemuDriverConfig,
  type QemuVmInfo,
} from '../hypervisor/qemu/index.js';
import type { Logger } from './logging.js';

const NAME = /^[A-Za-z0-9._-]+$/;

const diskSchema = z
  .object({
    path: z.string().min(1).max(1024),
    format: z.enum(QEMU_DISK_FORMATS).optional(),
    bus: z.enum(QEMU_DISK_BUSES).optional(),
    cache: z.enum(QEMU_CACHE_MODES).optional(),
    readOnly: z.boolean().optional(),
    serial: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,20}$/, 'a disk serial: 1-20 letters, digits, . _ -')
      .optional(),
  })
  .strict();

const IFNAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$/;

const nicSchema = z
  .object({
    bridge: z.string().regex(IFNAME, 'an interface name: 1-15 letters, digits, . _ -'),
    tap: z.string().regex(IFNAME, 'an interface name: 1-15 letters, digits, . _ -').optional(),
    mac: z
      .string()
      .regex(/^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/, 'a MAC address like 52:54:00:12:34:56')
      .optional(),
    model: z.enum(QEMU_NIC_MODELS).optional(),
  })
  .strict();

const bootSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('firmware'), firmware: z.enum(QEMU_FIRMWARES) }).strict(),
  z
    .object({
      kind: z.literal('kernel'),
      kernel: z.string().min(1).optional(),
      initrd: z.string().min(1).optional(),
      args: z.string().max(2048).optional(),
    })
    .strict(),
]);

const vmOverrideSchema = z
  .object({
    ramMb: z.number().int().min(16).optional(),
    cpus: z.number().int().min(1).max(64).optional(),
    vmmVersion: z.string().min(1).optional(),
    sharedMemory: z.boolean().optional(),
    guestAgent: z.boolean().optional(),
    kernelArgs: z.string().optional(),
    vapic: z.boolean().optional(),
    pciBridgeHotplug: z.boolean().optional(),
    disks: z.array(diskSchema).max(MAX_VM_DISKS).optional(),
    nics: z.array(nicSchema).max(MAX_VM_NICS).optional(),
    boot: bootSchema.optional(),
    cpuModel: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/, 'a QEMU CPU model name')
      .optional(),
    machine: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'a QEMU machine type, e.g. pc-i440fx-7.2')
      .optional(),
  })
  .strict();

const buildSchema = z.union([
  z.string().min(1),
  z.object({ binary: z.string().min(1), dataDir: z.string().min(1).optional() }).strict(),
]);

/**
 * The QEMU settings of one host agent (`intermission agent --driver qemu --qemu-config <file>`),
 * YAML or JSON. Relative paths are taken from the file's directory.
 *
 * @example
 * runDir: /run/intermission/qemu
 * accel: kvm
 * vmmBuilds: { "7.2.22": /usr/bin/qemu-system-x86_64, "7.2.23": /opt/qemu-7.2.23/bin/qemu-system-x86_64 }
 * defaultVmmVersion: "7.2.22"
 * kernel: /srv/guest/vmlinuz
 * initrd: /srv/guest/initrd.img
 * # a build given with its data directory (firmware it lacks), e.g. QEMU 10 unpacked under /opt:
 * # vmmBuilds: { "10.0.2": { binary: /opt/qemu-10.0.2/usr/bin/qemu-system-x86_64, dataDir: /usr/share/qemu } }
 * # a VM that boots from its own disk through SeaBIOS, with a NIC on a tap of bridge br0:
 * # vms: { web_0: { boot: { kind: firmware, firmware: seabios }, disks: [{ path: /srv/vms/web_0.qcow2 }],
 * #                 nics: [{ bridge: br0 }] } }
 * metadataDir: /run/intermission/metadata   # the controller listens on <metadataDir>/<vm>.sock
 * hostUpdateCommand: [/usr/local/sbin/apply-host-patch]
 * vms: { db_0: { ramMb: 2048 } }
 */
export const qemuHostFileSchema = z
  .object({
    runDir: z.string().min(1),
    vmmBuilds: z.record(z.string().regex(NAME, 'a version label: letters, digits, . _ -'), buildSchema),
    defaultVmmVersion: z.string().min(1),
    accel: z.enum(QEMU_ACCELERATORS).optional(),
    /** Direct kernel boot, the default boot of VMs when set; VMs that boot from disk need neither. */
    kernel: z.string().min(1).optional(),
    initrd: z.string().min(1).optional(),
    /** Where firmware images are looked for when a VM is created (and pinned). */
    firmwareSearchPath: z.array(z.string().min(1)).max(16).optional(),
    kernelArgs: z.string().optional(),
    memoryDir: z.string().min(1).optional(),
    defaultRamMb: z.number().int().min(16).optional(),
    defaultCpus: z.number().int().min(1).max(64).optional(),
    bootTimeoutMs: z.number().int().positive().optional(),
    /**
     * Where each VM's metadata channel leads: the guest's 169.254.169.254:80 is forwarded to
     * `<metadataDir>/<vm>.sock`, where the controller listens (`--metadata-dir` of the controller).
     */
    metadataDir: z.string().min(1),
    /** The host patch, run without a shell while the VMs are paused; default: wait the expected time. */
    hostUpdateCommand: z.array(z.string().min(1)).min(1).optional(),
    /** Per-VM settings beyond the defaults, by VM name. */
    vms: z.record(z.string().regex(NAME), vmOverrideSchema).optional(),
  })
  .strict();

/** A parsed {@link qemuHostFileSchema} with absolute paths. */
export type QemuHostConfig = z.infer<typeof qemuHostFileSchema>;

/** Checks a QEMU host configuration and makes its paths absolute against `baseDir`. */
export function parseQemuHostConfig(input: unknown, baseDir: string): QemuHostConfig {
  const parsed = qemuHostFileSchema.safeParse(input);
  if (!parsed.success) {
    throw new IntermissionError(
      'INVALID_INPUT',
      parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '),
    );
  }
  const abs = (path: string): string => (isAbsolute(path) ? path : resolve(baseDir, path));
  const config = parsed.data;
  if (!Object.hasOwn(config.vmmBuilds, config.defaultVmmVersion)) {
    throw new IntermissionError(
      'INVALID_INPUT',
      `defaultVmmVersion ${JSON.stringify(config.defaultVmmVersion)} is not a key of vmmBuilds`,
    );
  }
  const binaryPath = (binary: string): string => (binary.includes('/') ? abs(binary) : binary);
  return {
    ...config,
    runDir: abs(config.runDir),
    ...(config.kernel === undefined ? {} : { kernel: abs(config.kernel) }),
    ...(config.initrd === undefined ? {} : { initrd: abs(config.initrd) }),
    ...(config.firmwareSearchPath === undefined ? {} : { firmwareSearchPath: config.firmwareSearchPath.map(abs) }),
    metadataDir: abs(config.metadataDir),
    ...(config.memoryDir === undefined ? {} : { memoryDir: abs(config.memoryDir) }),
    vmmBuilds: Object.fromEntries(
      Object.entries(config.vmmBuilds).map(([label, build]) => [
        label,
        typeof build === 'string'
          ? binaryPath(build)
          : {
              binary: binaryPath(build.binary),
              ...(build.dataDir === undefined ? {} : { dataDir: abs(build.dataDir) }),
            },
      ]),
    ),
    ...(config.vms === undefined
      ? {}
      : {
          vms: Object.fromEntries(
            Object.entries(config.vms).map(([name, vm]) => [
              name,
              {
                ...vm,
                ...(vm.disks === undefined ? {} : { disks: vm.disks.map((d) => ({ ...d, path: abs(d.path) })) }),
                ...(vm.boot?.kind === 'kernel'
                  ? {
                      boot: {
                        ...vm.boot,
                        ...(vm.boot.kernel === undefined ? {} : { kernel: abs(vm.boot.kernel) }),
                        ...(vm.boot.initrd === undefined ? {} : { initrd: abs(vm.boot.initrd) }),
                      },
                    }
                  : {}),
              },
            ]),
          ),
        }),
  };
}

/** Reads a QEMU host file (YAML or JSON). Errors name the file. */
export async function loadQemuHostFile(path: string): Promise<QemuHostConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new IntermissionError('INVALID_INPUT', `cannot read QEMU host file ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  try {
    return parseQemuHostConfig(parseYaml(text, { prettyErrors: true }), dirname(resolve(path)));
  } catch (error) {
    const detail =
      error instanceof YAMLParseError ? `not valid YAML or JSON: ${error.message}` : coerceError(error).message;
    throw new IntermissionError('INVALID_INPUT', `QEMU host file ${path}: ${detail}`, { cause: error });
  }
}

/** The metadata socket of a VM under a metadata directory: where its guest's 169.254.169.254 leads. */
export function metadataSocketOf(metadataDir: string, vm: string): string {
  return join(metadataDir, `${vm}.sock`);
}

/** Options of {@link openQemuHost}. */
export interface QemuHostOptions {
  readonly host: string;
  readonly config: QemuHostConfig;
  /** The fleet's VMs of this host: each one runs when this resolves. */
  readonly vms: readonly Vm[];
  readonly logger?: Logger;
}

/** What {@link openQemuHost} found and did, per VM. */
export interface QemuHostStart {
  readonly driver: QemuDriver;
  /** VMs already running under the run directory (an agent restart): adopted, not touched. */
  readonly adopted: readonly string[];
  /** VMs started now (first start of the host, or their process had died). */
  readonly launched: readonly string[];
  /** VMs found under the run directory that the fleet does not list: left alone, reported. */
  readonly foreign: readonly string[];
  readonly vms: readonly QemuVmInfo[];
}

/**
 * The QEMU side of a host agent: opens the driver on the host's run directory (adopting every VM
 * that still runs there, so that an agent restart loses none), then boots, in parallel, the
 * fleet's VMs that do not run: absent ones are launched, ones whose process died are restarted.
 * VMs the fleet does not list are left running and reported, never destroyed: they may be a
 * tenant's, and only an operator decides that.
 */
export async function openQemuHost(options: QemuHostOptions): Promise<QemuHostStart> {
  const { config, host, logger } = options;
  const driverConfig: QemuDriverConfig = {
    host,
    runDir: config.runDir,
    vmmBuilds: config.vmmBuilds,
    defaultVmmVersion: config.defaultVmmVersion,
    ...(config.kernel === undefined ? {} : { kernel: config.kernel }),
    ...(config.initrd === undefined ? {} : { initrd: config.initrd }),
    ...(config.firmwareSearchPath === undefined ? {} : { firmwareSearchPath: config.firmwareSearchPath }),
    ...(config.accel === undefined ? {} : { accel: config.accel }),
    ...(config.kernelArgs === undefined ? {} : { kernelArgs: config.kernelArgs }),
    ...(config.memoryDir === undefined ? {} : { memoryDir: config.memoryDir }),
    ...(config.defaultRamMb === undefined ? {} : { defaultRamMb: config.defaultRamMb }),
    ...(config.defaultCpus === undefined ? {} : { defaultCpus: config.defaultCpus }),
    ...(config.bootTimeoutMs === undefined ? {} : { bootTimeoutMs: config.bootTimeoutMs }),
    ...(config.hostUpdateCommand === undefined
      ? {}
      : { hostUpdate: commandHostUpdate({ command: config.hostUpdateCommand }) }),
  };
  const driver = await QemuDriver.open(driverConfig);
  try {
    const present = new Map((await driver.listVms()).map((v) => [v.name, v]));
    const wanted = new Set(options.vms.map((v) => v.name));
    const adopted: string[] = [];
    const launched: string[] = [];
    const foreign = [...present.keys()].filter((name) => !wanted.has(name));
    for (const name of foreign)
      logger?.warn({ vm: name }, 'VM under the run directory is not in the fleet: left alone');
    await Promise.all(
      options.vms.map(async (vm) => {
        const found = present.get(vm.name);
        const override = config.vms?.[vm.name] ?? {};
        if (found && found.state !== 'failed' && found.state !== 'stopped') {
          adopted.push(vm.name);
          return;
        }
        if (found) {
          logger?.warn({ vm: vm.name, state: found.state }, 'VM process gone: restarting it');
          await driver.reboot({ vm: vm.name });
        } else {
          await driver.launch({
            vm: vm.name,
            metadataSocket: metadataSocketOf(config.metadataDir, vm.name),
            ...override,
          });
        }
        launched.push(vm.name);
        logger?.info({ vm: vm.name }, 'VM started');
      }),
    );
    const vms = await Promise.all(options.vms.map((vm) => driver.describeVm({ vm: vm.name })));
    return { driver, adopted: adopted.sort(), launched: launched.sort(), foreign, vms };
  } catch (error) {
    await driver.close();
    throw error;
  }
}
