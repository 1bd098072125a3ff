import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { IntermissionError, coerceError, type Vm } from '../domain/index.js';
import {
  QEMU_ACCELERATORS,
  QemuDriver,
  commandHostUpdate,
  type QemuDriverConfig,
  type QemuVmInfo,
} from '../hypervisor/qemu/index.js';
import type { Logger } from './logging.js';

const NAME = /^[A-Za-z0-9._-]+$/;

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
  })
  .strict();

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
 * metadataDir: /run/intermission/metadata   # the controller listens on <metadataDir>/<vm>.sock
 * hostUpdateCommand: [/usr/local/sbin/apply-host-patch]
 * vms: { db_0: { ramMb: 2048 } }
 */
export const qemuHostFileSchema = z
  .object({
    runDir: z.string().min(1),
    vmmBuilds: z.record(z.string().regex(NAME, 'a version label: letters, digits, . _ -'), z.string().min(1)),
    defaultVmmVersion: z.string().min(1),
    accel: z.enum(QEMU_ACCELERATORS).optional(),
    kernel: z.string().min(1),
    initrd: z.string().min(1),
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
  return {
    ...config,
    runDir: abs(config.runDir),
    kernel: abs(config.kernel),
    initrd: abs(config.initrd),
    metadataDir: abs(config.metadataDir),
    ...(config.memoryDir === undefined ? {} : { memoryDir: abs(config.memoryDir) }),
    vmmBuilds: Object.fromEntries(
      Object.entries(config.vmmBuilds).map(([label, binary]) => [label, binary.includes('/') ? abs(binary) : binary]),
    ),
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
    kernel: config.kernel,
    initrd: config.initrd,
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
