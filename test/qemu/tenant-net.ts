/**
 * A tenant network for tests: a Linux bridge in the root namespace (no address on it: the host is not
 * on the tenant network) and a network namespace for the test's client, joined to the bridge by a
 * veth pair. Guests join it through taps on the bridge (the driver creates those; {@link createTap}
 * is for tests that start QEMU themselves), so the client reaches the guests the way a tenant's
 * peers would, and nothing reaches the host's own networks.
 *
 * Every link is named `<prefix><suffix>` with a prefix unique to the run (at most 15 characters), so
 * concurrent runs do not meet and {@link TenantNet.close} finds everything the run left.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A test's tenant network. */
export interface TenantNet {
  /** The name prefix of every link and the namespace of this network (e.g. `itk3f9`). */
  readonly prefix: string;
  /** The bridge guests' taps join. */
  readonly bridge: string;
  /** The client's network namespace. */
  readonly namespace: string;
  /** The client's address in the namespace (10.77.X.1). */
  readonly clientAddress: string;
  /** Guest `i`'s address with its prefix length, for `tenant.ip=` (10.77.X.(11+i)/24). */
  guestCidr(i: number): string;
  /** Guest `i`'s address (10.77.X.(11+i)). */
  guestAddress(i: number): string;
  /** A tap name for guest `i` under this network's prefix (`<prefix>t<i>`). */
  tapName(i: number): string;
  /** Removes the bridge, the veth pair, the namespace and any tap left named by {@link tapName}. Idempotent. */
  close(): Promise<void>;
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

/** Creates a tenant network; `subnet` is X of 10.77.X.0/24 (random when not given). */
export async function createTenantNet(options: { readonly subnet?: number } = {}): Promise<TenantNet> {
  const prefix = `it${randomBytes(3).toString('hex').slice(0, 5)}`;
  const subnet = options.subnet ?? 1 + ((randomBytes(1)[0] ?? 0) % 250);
  const bridge = `${prefix}br`;
  const namespace = `${prefix}ns`;
  const hostSide = `${prefix}v0`;
  const clientSide = `${prefix}v1`;
  const clientAddress = `10.77.${subnet}.1`;
  const net: TenantNet = {
    prefix,
    bridge,
    namespace,
    clientAddress,
    guestCidr: (i) => `10.77.${subnet}.${11 + i}/24`,
    guestAddress: (i) => `10.77.${subnet}.${11 + i}`,
    tapName: (i) => `${prefix}t${i}`,
    close: () => removeTenantNet(prefix),
  };
  try {
    await ip('link', 'add', bridge, 'type', 'bridge');
    // No STP and no forwarding delay: a port forwards as soon as it is up.
    await ip('link', 'set', bridge, 'type', 'bridge', 'forward_delay', '0', 'stp_state', '0');
    await ip('link', 'set', bridge, 'up');
    await ip('netns', 'add', namespace);
    await ip('link', 'add', hostSide, 'type', 'veth', 'peer', 'name', clientSide);
    await ip('link', 'set', clientSide, 'netns', namespace);
    await ip('link', 'set', hostSide, 'master', bridge, 'up');
    await ip('-n', namespace, 'addr', 'add', `${clientAddress}/24`, 'dev', clientSide);
    await ip('-n', namespace, 'link', 'set', clientSide, 'up');
    await ip('-n', namespace, 'link', 'set', 'lo', 'up');
  } catch (error) {
    await net.close();
    throw error;
  }
  return net;
}

/**
 * The links of the root namespace this network named: `<prefix>br`, `<prefix>v0`, `<prefix>t<n>`
 * (exactly these, so that another run's links that merely start alike are left alone).
 */
async function linksOf(prefix: string): Promise<string[]> {
  const { stdout } = await run('ip', ['-o', 'link', 'show']);
  const ours = new RegExp(`^${prefix}(br|v0|v1|t\\d+)$`);
  const names: string[] = [];
  for (const line of stdout.split('\n')) {
    const name = /^\d+:\s+([^:@\s]+)/.exec(line)?.[1];
    if (name !== undefined && ours.test(name)) names.push(name);
  }
  return names;
}

async function removeTenantNet(prefix: string): Promise<void> {
  const namespace = `${prefix}ns`;
  // The namespace first: its veth end goes with it, and so does the root end.
  await run('ip', ['netns', 'del', namespace]).catch(() => undefined);
  for (const name of await linksOf(prefix)) {
    await run('ip', ['link', 'del', name]).catch(() => undefined);
  }
}

/**
 * Creates a persistent multi-queue tap with vnet headers (what the tap wrapper and QEMU's
 * `-netdev tap,fd=` expect) and puts it on `bridge`, up.
 */
export function createTap(name: string, bridge: string): void {
  execFileSync('ip', ['tuntap', 'add', 'dev', name, 'mode', 'tap', 'multi_queue', 'vnet_hdr']);
  execFileSync('ip', ['link', 'set', name, 'master', bridge, 'up']);
}

/**
 * A wrapper that opens its own queue of a multi-queue tap as file descriptor N and execs the rest of
 * its arguments with it inherited: `python3 tap-wrapper.py TAP N QEMU ARGS…` with
 * `-netdev tap,id=…,fd=N` among ARGS (Node cannot ioctl or pass file descriptors).
 */
export const TAP_WRAPPER_PY = `import fcntl, os, struct, sys
TUNSETIFF = 0x400454ca; IFF_TAP = 0x0002; IFF_NO_PI = 0x1000; IFF_VNET_HDR = 0x4000; IFF_MULTI_QUEUE = 0x0100
name, target = sys.argv[1], int(sys.argv[2])
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', name.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE))
if fd != target: os.dup2(fd, target); os.close(fd)
os.set_inheritable(target, True); os.execv(sys.argv[3], sys.argv[3:])
`;

/** Writes {@link TAP_WRAPPER_PY} into `dir`; returns its path. */
export function writeTapWrapper(dir: string): string {
  const path = join(dir, 'tap-wrapper.py');
  writeFileSync(path, TAP_WRAPPER_PY);
  return path;
}
