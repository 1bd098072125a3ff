import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { IntermissionError, type Fleet } from '../domain/index.js';
import { destroyQemuRunDir, type QemuAccelerator } from '../hypervisor/qemu/index.js';
import { realTime } from '../hypervisor/sim/index.js';
import type { Logger } from './logging.js';
import { ensurePrivateDir } from './private-files.js';
import { metadataSocketOf, openQemuHost, type QemuHostConfig } from './qemu-host.js';
import { startInProcessAgents, type HostAgents } from './sim-hosts.js';

const run = promisify(execFile);

/** The repository root (from `src/service` and from `dist/service` alike). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BUILD_GUEST = join(ROOT, 'scripts', 'guest', 'build-guest.sh');

/** One thing real guests need that this machine lacks, with the Debian package that brings it. */
export interface QemuRequirement {
  readonly missing: string;
  readonly debianPackage: string | null;
}

/** The path of an executable on PATH (or in /usr/sbin, /sbin, which a non-root PATH may lack). */
export function findExecutable(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin']) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * What running real guests on this machine needs and does not have: QEMU, socat (the metadata
 * channel), qemu-ga, busybox-static, stress and cpio (to build the guest), a readable kernel. Empty when
 * everything is there.
 */
export function qemuRequirements(): QemuRequirement[] {
  const missing: QemuRequirement[] = [];
  if (process.platform !== 'linux') missing.push({ missing: 'Linux', debianPackage: null });
  for (const [binary, debianPackage] of [
    ['qemu-system-x86_64', 'qemu-system-x86'],
    ['socat', 'socat'],
    ['qemu-ga', 'qemu-guest-agent'],
    ['cpio', 'cpio'],
    ['stress', 'stress'],
  ] as const) {
    if (findExecutable(binary) === undefined) missing.push({ missing: binary, debianPackage });
  }
  try {
    accessSync('/bin/busybox', constants.X_OK);
  } catch {
    missing.push({ missing: '/bin/busybox', debianPackage: 'busybox-static' });
  }
  let kernels: string[] = [];
  try {
    kernels = readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-'));
  } catch {
    // no /boot
  }
  if (kernels.length === 0)
    missing.push({ missing: 'a kernel in /boot/vmlinuz-*', debianPackage: 'linux-image-amd64' });
  else {
    try {
      for (const k of kernels) accessSync(join('/boot', k), constants.R_OK);
    } catch {
      missing.push({ missing: 'read access to /boot/vmlinuz-* (run as root)', debianPackage: null });
    }
  }
  return missing;
}

/** Refuses with what to install when real guests cannot run here (`UNREACHABLE`, `QEMU_MISSING`). */
export function assertQemuUsable(): void {
  const missing = qemuRequirements();
  if (missing.length === 0) return;
  const packages = [...new Set(missing.flatMap((m) => (m.debianPackage ? [m.debianPackage] : [])))];
  throw new IntermissionError(
    'UNREACHABLE',
    `real QEMU guests cannot run here: missing ${missing.map((m) => m.missing).join(', ')}.` +
      (packages.length > 0 ? ` On Debian or Ubuntu: sudo apt-get install -y ${packages.join(' ')}` : '') +
      '. Without --qemu, `intermission up` runs the same fleet on simulated hosts.',
    { details: { reason: 'QEMU_MISSING', missing: missing.map((m) => m.missing), packages } },
  );
}

/** Whether /dev/kvm can be opened for reading and writing (KVM may still not work: see {@link probeKvm}). */
export function kvmDevicePresent(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Boots the guest's kernel under KVM until it starts init (about a second where KVM works); false
 * when it does not get there within `timeoutMs`. A usable /dev/kvm is not enough: under nested
 * virtualisation without the right CPU features a KVM guest hangs before printing anything.
 */
export function probeKvm(guest: BuiltGuest, timeoutMs = 15_000): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const child = spawn(
      'qemu-system-x86_64',
      [
        ...['-accel', 'kvm', '-m', '128', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'],
        ...['-kernel', guest.kernel, '-initrd', guest.initrd, '-append', 'console=ttyS0 panic=-1', '-serial', 'stdio'],
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    let output = '';
    let settled = false;
    const finish = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolvePromise(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    child.stdout.on('data', (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-4096);
      if (/Run \S+ as init process/.test(output)) finish(true);
    });
    child.once('error', () => finish(false));
    child.once('exit', () => finish(false));
  });
}

/** What `up --qemu --accel` takes: `auto` probes KVM and falls back to TCG. */
export const ACCEL_CHOICES = ['auto', 'kvm', 'tcg'] as const;
/** One of {@link ACCEL_CHOICES}. */
export type AccelChoice = (typeof ACCEL_CHOICES)[number];

/** Resolves `auto`: KVM when the device is there and a guest boots under it, else TCG. */
export async function chooseAccelerator(choice: AccelChoice, guest: BuiltGuest): Promise<QemuAccelerator> {
  if (choice !== 'auto') return choice;
  return kvmDevicePresent() && (await probeKvm(guest)) ? 'kvm' : 'tcg';
}

/** The guest's kernel and initramfs. */
export interface BuiltGuest {
  readonly kernel: string;
  readonly initrd: string;
}

/**
 * Builds the demo guest (the host's kernel, busybox, qemu-ga and the tenant application that reads
 * Scheduled Events) into `outDir` with scripts/guest/build-guest.sh; cached there.
 */
export async function buildGuest(outDir: string): Promise<BuiltGuest> {
  try {
    await run('bash', [BUILD_GUEST, outDir], { timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new IntermissionError('INTERNAL', `building the guest failed: ${(e.stderr ?? '').trim() || e.message}`, {
      cause: error,
    });
  }
  return { kernel: join(outDir, 'vmlinuz'), initrd: join(outDir, 'initrd.img') };
}

/** The version QEMU reports (`7.2.22`), for naming its build. */
async function qemuVersion(binary: string): Promise<string> {
  const { stdout } = await run(binary, ['--version'], { timeout: 10_000 });
  return /version (\d+\.\d+(?:\.\d+)?)/.exec(stdout)?.[1] ?? 'qemu';
}

/**
 * A short run directory for a state directory: unix socket paths under it must stay below 108
 * bytes, which a state directory deep in a checkout would not. Its name is predictable (another
 * user can create it first), so it is only ever used through {@link prepareRunBase}.
 */
export function runBaseFor(stateDir: string): string {
  const id = createHash('sha256').update(resolve(stateDir)).digest('hex').slice(0, 10);
  const uid = process.getuid?.();
  return join(tmpdir(), `intermission-${uid === undefined ? '' : `${uid}-`}${id}`);
}

/**
 * Creates (or checks) the run directory of `stateDir` and its metadata socket directory as private
 * directories: 0700, owned by this user, not symlinks; a looser mode is repaired. Returns the run
 * directory.
 *
 * @throws IntermissionError `INVALID_INPUT` when another user owns it or it is a symlink
 */
export async function prepareRunBase(stateDir: string): Promise<string> {
  const runBase = runBaseFor(stateDir);
  await ensurePrivateDir(runBase);
  await ensurePrivateDir(join(runBase, 'md'));
  return runBase;
}

/** Where a guest of `up --qemu` on `stateDir` reaches 169.254.169.254: serve its metadata there. */
export function localMetadataSocket(stateDir: string, vm: string): string {
  return metadataSocketOf(join(runBaseFor(stateDir), 'md'), vm);
}

/** Options of {@link startLocalQemuHosts}. */
export interface LocalQemuOptions {
  readonly fleet: Fleet;
  readonly stateDir: string;
  readonly logger?: Logger;
  /** Guest RAM in MB. Default 256. */
  readonly ramMb?: number;
  /** Default `auto`. */
  readonly accel?: AccelChoice;
}

/** The hosts of `up --qemu`. Each guest's metadata channel leads to {@link localMetadataSocket}. */
export interface LocalQemuHosts extends HostAgents {
  readonly accel: QemuAccelerator;
  /** The VMM builds the demo offers: two labels of the installed QEMU, to move VMs between in place. */
  readonly vmmVersions: readonly [string, string];
  readonly runBase: string;
  /** Stops every guest and removes its run directory (the hosts are closed first). */
  destroy(): Promise<void>;
}

/**
 * The embedded default on real guests: every fleet host is a run directory on this machine, its VMs
 * booted (in parallel) by a QEMU driver and driven by an agent in this process, over the same
 * protocol as remote agents. Guests that still run from an earlier start are adopted, not booted
 * again. The installed QEMU is offered as two builds (`<version>` and `<version>-next`, one binary),
 * so that an in-place VMM update can be shown; a real host names two installed builds.
 *
 * @throws IntermissionError `UNREACHABLE` (`QEMU_MISSING`) saying what to install
 */
export async function startLocalQemuHosts(options: LocalQemuOptions): Promise<LocalQemuHosts> {
  assertQemuUsable();
  const stateDir = resolve(options.stateDir);
  const guest = await buildGuest(join(stateDir, 'guest'));
  const accel = await chooseAccelerator(options.accel ?? 'auto', guest);
  if (options.accel === 'auto' && accel === 'tcg' && kvmDevicePresent()) {
    options.logger?.warn('a guest does not boot under KVM here (nested virtualisation?): using TCG');
  }
  const version = await qemuVersion('qemu-system-x86_64');
  const vmmVersions = [version, `${version}-next`] as const;
  const runBase = await prepareRunBase(stateDir);
  const metadataDir = join(runBase, 'md');
  const configOf = (host: string): QemuHostConfig => ({
    runDir: join(runBase, host),
    vmmBuilds: { [vmmVersions[0]]: 'qemu-system-x86_64', [vmmVersions[1]]: 'qemu-system-x86_64' },
    defaultVmmVersion: vmmVersions[0],
    accel,
    kernel: guest.kernel,
    initrd: guest.initrd,
    defaultRamMb: options.ramMb ?? 256,
    metadataDir,
  });
  const started = await Promise.allSettled(
    options.fleet.hosts.map((h) =>
      openQemuHost({
        host: h.name,
        config: configOf(h.name),
        vms: options.fleet.vms.filter((v) => v.host === h.name),
        ...(options.logger ? { logger: options.logger } : {}),
      }),
    ),
  );
  const destroyAll = async (): Promise<void> => {
    for (const h of options.fleet.hosts) await destroyQemuRunDir(join(runBase, h.name));
  };
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    for (const r of started) if (r.status === 'fulfilled') await r.value.driver.close();
    await destroyAll();
    throw failed.reason;
  }
  const drivers = new Map(
    started.flatMap((r, i) => (r.status === 'fulfilled' ? [[options.fleet.hosts[i]?.name ?? '', r.value.driver]] : [])),
  );
  const hosts = await startInProcessAgents({ drivers, stateDir, time: realTime() });
  return {
    ...hosts,
    accel,
    vmmVersions,
    runBase,
    destroy: async () => {
      await hosts.close();
      await destroyAll();
      await rm(runBase, { recursive: true, force: true });
    },
  };
}
