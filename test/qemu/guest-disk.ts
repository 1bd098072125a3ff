/**
 * The test guest as a disk (scripts/guest/build-disk.sh): a raw MBR disk that boots through SeaBIOS
 * and syslinux, with an ext4 partition labelled `data` for the guest's record writer. Each VM writes
 * to its own qcow2 overlay of it. Also where QEMU 10.0.2 (the cross-version target, installed beside
 * the system's 7.2 by scripts/fetch-qemu.sh) is found, and the skip policy of tests that need both.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import { findExecutable } from '../../src/service/local-qemu.js';
import { GUEST_DIR, REPO, qemuPreflight, type QemuPreflight, type TestGuest } from './qemu-fixture.js';

/** The guest's disk, next to the kernel and initrd it boots (build-disk.sh builds into {@link GUEST_DIR}). */
export interface TestGuestDisk extends TestGuest {
  /** The raw base image: never written; VMs boot from {@link overlayDisk}s of it. */
  readonly disk: string;
}

/** The version scripts/fetch-qemu.sh installs. */
export const QEMU10_VERSION = '10.0.2';
/** QEMU 10.0.2's binary: $INTERMISSION_QEMU10, else where scripts/fetch-qemu.sh puts it. */
export const QEMU10 = process.env.INTERMISSION_QEMU10 ?? '/opt/qemu-10.0.2/usr/bin/qemu-system-x86_64';
/**
 * The firmware directory both versions must use (`-L`): the 7.2 package's. QEMU 10's unpacked data
 * directory has no SeaBIOS, and a VM moved in place keeps the firmware it booted with.
 */
export const QEMU_FIRMWARE_DIR = '/usr/share/qemu';
/** The versioned machine type VMs are pinned to, loadable by 7.2 and 10.0.2 alike. */
export const MACHINE_TYPE = 'pc-i440fx-7.2';

/**
 * The `-smbios` arguments that give a VM booting from its disk its tenant arguments (space-separated
 * words, e.g. `tenant.name=web_0 tenant.ip=10.77.0.11/24`): an SMBIOS type-11 OEM string the guest
 * reads as it reads its kernel command line (scripts/guest/args.sh). QEMU's option syntax leaves no
 * room for commas.
 */
export function tenantArgsSmbios(args: string): string[] {
  if (args.includes(',')) throw new Error(`tenant arguments cannot contain commas: ${args}`);
  return ['-smbios', `type=11,value=intermission.args=${args}`];
}

/** Builds the disk (and the guest it holds); a no-op when cached. */
export function buildGuestDisk(): TestGuestDisk {
  const result = spawnSync('bash', [join(REPO, 'scripts', 'guest', 'build-disk.sh'), GUEST_DIR], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (result.status !== 0) {
    throw new Error(`build-disk.sh failed (${result.status}): ${result.stderr}${result.stdout}`);
  }
  return {
    kernel: join(GUEST_DIR, 'vmlinuz'),
    initrd: join(GUEST_DIR, 'initrd.img'),
    disk: join(GUEST_DIR, 'disk.raw'),
  };
}

/** Creates a qcow2 overlay at `path` over the raw `base` (`qemu-img create -f qcow2 -F raw -b`); returns `path`. */
export function overlayDisk(base: string, path: string): string {
  const result = spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', base, path], {
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`qemu-img create ${path} failed (${result.status}): ${result.stderr}`);
  return path;
}

function isCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

/** What is missing for QEMU 10.0.2 at {@link QEMU10}, or undefined. */
export function qemu10Problem(): string | undefined {
  if (!existsSync(QEMU10)) return `QEMU ${QEMU10_VERSION} is missing at ${QEMU10} (bash scripts/fetch-qemu.sh)`;
  const result = spawnSync(QEMU10, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (result.status !== 0 || !result.stdout.includes(`version ${QEMU10_VERSION} `)) {
    return `${QEMU10} is not QEMU ${QEMU10_VERSION}: ${(result.stdout || result.stderr).split('\n')[0] ?? ''}`;
  }
  return undefined;
}

/**
 * The skip decision of tests that boot the disk guest: what {@link qemuPreflight} checks, plus the
 * disk tools, the tap device, python3 (the tap wrapper) and, with `qemu10`, QEMU 10.0.2. Skips with
 * the reason when CI is unset; under CI, {@link QemuPreflight.assertReady} fails instead.
 */
export function guestDiskPreflight(options: { readonly qemu10?: boolean } = {}): QemuPreflight {
  const base = qemuPreflight();
  const problems: string[] = [];
  for (const [binary, debianPackage] of [
    ['qemu-img', 'qemu-utils'],
    ['syslinux', 'syslinux'],
    ['mcopy', 'mtools'],
    ['mkfs.vfat', 'dosfstools'],
    ['mkfs.ext4', 'e2fsprogs'],
    ['debugfs', 'e2fsprogs'],
    ['e2fsck', 'e2fsprogs'],
    ['sfdisk', 'fdisk'],
    ['python3', 'python3'],
    ['ip', 'iproute2'],
  ] as const) {
    if (findExecutable(binary) === undefined)
      problems.push(`${binary} is missing (apt-get install -y ${debianPackage})`);
  }
  if (!existsSync('/usr/lib/syslinux/mbr/mbr.bin')) {
    problems.push('/usr/lib/syslinux/mbr/mbr.bin is missing (apt-get install -y syslinux-common)');
  }
  // Debian's QEMU packages look for SeaBIOS in /usr/share/seabios after their data directory.
  if (!['/usr/share/seabios', QEMU_FIRMWARE_DIR].some((dir) => existsSync(join(dir, 'bios-256k.bin')))) {
    problems.push('SeaBIOS (bios-256k.bin) is missing (apt-get install -y seabios)');
  }
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    problems.push('/dev/net/tun cannot be opened');
  }
  if (options.qemu10 === true) {
    const problem = qemu10Problem();
    if (problem !== undefined) problems.push(problem);
  }
  const reason = problems.join('; ');
  return {
    skip:
      base.skip !== false
        ? base.skip
        : problems.length > 0 && !isCi()
          ? `disk guest tests not runnable here: ${reason}`
          : false,
    assertReady() {
      base.assertReady();
      if (problems.length > 0) throw new Error(`disk guest tests cannot run (CI is set, so this fails): ${reason}`);
    },
  };
}
