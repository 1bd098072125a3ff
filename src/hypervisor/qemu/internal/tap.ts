/**
 * Tenant NICs: each is a multi-queue tap device attached to a Linux bridge, created by the driver
 * when missing (`ip tuntap add … multi_queue vnet_hdr`, `ip link set … master <bridge> up`) and
 * deleted with the VM. Every QEMU process of the VM is started through a small exec wrapper that
 * opens its own queue of each tap (TUNSETIFF with IFF_MULTI_QUEUE) at a fixed descriptor number and
 * then execs QEMU, which takes it with `-netdev tap,fd=N`. During a swap the old and the new process
 * each hold a queue of the same device, so the tap keeps its name, its bridge port and the bridge's
 * forwarding entries; the old process's queue goes when it exits. Node can neither ioctl nor pass
 * descriptors to a child at a chosen number, so the wrapper is Python (on every Debian host), run
 * with `-c` so that nothing has to be installed beside the JavaScript.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { IntermissionError } from '../../../domain/index.js';
import type { ResolvedNic } from './layout.js';

/** The first descriptor number a tap queue is given in QEMU (0-2 are stdio). */
export const FIRST_TAP_FD = 3;

/** Interface names: at most 15 bytes (IFNAMSIZ - 1), safe in `ip` arguments and QEMU options. */
export const IFNAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$/;

/**
 * The exec wrapper: `python3 -c TAP_EXEC_SCRIPT <tap> <fd> [<tap> <fd>…] -- <qemu> <args…>`. It
 * opens one queue of each tap at its descriptor number, leaves them inheritable, and execs QEMU
 * (same pid, so the driver's process checks see QEMU).
 */
export const TAP_EXEC_SCRIPT = [
  'import fcntl, os, struct, sys',
  'TUNSETIFF = 0x400454ca',
  'FLAGS = 0x0002 | 0x1000 | 0x4000 | 0x0100  # IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE',
  'args = sys.argv[1:]',
  "split = args.index('--')",
  'pairs, command = args[:split], args[split + 1:]',
  'for i in range(0, len(pairs), 2):',
  '    name, target = pairs[i], int(pairs[i + 1])',
  "    fd = os.open('/dev/net/tun', os.O_RDWR)",
  "    fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', name.encode(), FLAGS))",
  '    if fd != target:',
  '        os.dup2(fd, target)',
  '        os.close(fd)',
  '    os.set_inheritable(target, True)',
  'os.execv(command[0], command)',
].join('\n');

/** The tap name of NIC `index` of VM `vm` when the spec names none: `it<hash>n<index>`, ≤ 15 bytes. */
export function defaultTapName(vm: string, index: number): string {
  return `it${createHash('sha256').update(vm).digest('hex').slice(0, 8)}n${index}`;
}

/** The descriptor number NIC `index` gets in QEMU. */
export function tapFd(index: number): number {
  return FIRST_TAP_FD + index;
}

/** The command that starts `binary argv` with one queue of each NIC's tap open (no NICs: QEMU itself). */
export function wrapWithTaps(
  python: string,
  binary: string,
  argv: readonly string[],
  nics: readonly ResolvedNic[],
): { command: string; args: string[] } {
  if (nics.length === 0) return { command: binary, args: [...argv] };
  const pairs = nics.flatMap((nic, index) => [nic.tap, String(tapFd(index))]);
  return { command: python, args: ['-c', TAP_EXEC_SCRIPT, ...pairs, '--', binary, ...argv] };
}

function ip(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve(stdout);
    });
  });
}

/** Whether a network interface exists. */
export function linkExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/**
 * Makes each NIC's tap exist, attached to its bridge and up: created (multi-queue, vnet_hdr) when
 * missing. A bridge that does not exist is an error (the driver never creates bridges).
 *
 * @throws IntermissionError `INVALID_INPUT` for a missing bridge or a name taken by something else,
 *   `CONFLICT` when `ip` fails
 */
export async function ensureTaps(nics: readonly ResolvedNic[]): Promise<void> {
  for (const nic of nics) {
    if (!existsSync(`/sys/class/net/${nic.bridge}/bridge`)) {
      throw new IntermissionError('INVALID_INPUT', `bridge ${nic.bridge} (of tap ${nic.tap}) does not exist`);
    }
    if (linkExists(nic.tap)) {
      if (!existsSync(`/sys/class/net/${nic.tap}/tun_flags`)) {
        throw new IntermissionError('INVALID_INPUT', `${nic.tap} exists and is not a tap device`);
      }
    } else {
      try {
        await ip(['tuntap', 'add', 'dev', nic.tap, 'mode', 'tap', 'multi_queue', 'vnet_hdr']);
      } catch (error) {
        throw new IntermissionError('CONFLICT', `cannot create tap ${nic.tap}: ${(error as Error).message}`, {
          cause: error,
        });
      }
    }
    try {
      await ip(['link', 'set', 'dev', nic.tap, 'master', nic.bridge, 'up']);
    } catch (error) {
      throw new IntermissionError(
        'CONFLICT',
        `cannot attach tap ${nic.tap} to bridge ${nic.bridge}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
}

/** Deletes the taps of a VM that is gone; best effort (a tap already gone is fine). */
export async function deleteTaps(nics: readonly ResolvedNic[]): Promise<void> {
  for (const nic of nics) {
    if (!linkExists(nic.tap)) continue;
    await ip(['link', 'del', 'dev', nic.tap]).catch(() => undefined);
  }
}
