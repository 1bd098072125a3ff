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
 *
 * The new process's queues during a swap. A TCP stream to the guest stalled 0.86-0.93 s at every
 * swap, from the new process's start to after the switchover (tcpdump on the tap; the guest's tick
 * beats went on, so the guest ran). Two causes, both because a tap's settings are the device's,
 * not a queue's: (1) QEMU, as it starts, sets the tap's virtio-net header size to its default (10
 * bytes; `net_tap_fd_init`, and again as it realises and resets the NIC) while the running
 * process's guest negotiated 12, so every frame either way was garbled until the new process loaded
 * the device state; (2) a multi-queue tap spreads the packets it sends over its attached queues by
 * flow hash, and the new process reads its queue only once it runs the VM. So the wrapper of a
 * swap's new process detaches its queues (TUNSETQUEUE IFF_DETACH_QUEUE: QEMU 7.2 and 10.0.2 start
 * on them, and a detached queue still takes ioctls and writes but is sent nothing) and leaves a
 * watcher that puts the running process's header size back whenever QEMU changes it. Just before
 * the switchover {@link attachQueues} stops the watcher, attaches the queues through a copy of
 * QEMU's descriptor (pidfd_getfd) and sets a steering program (an eBPF socket filter,
 * TUNSETSTEERINGEBPF, returning the new queue's number) so that the old queue gets nothing more:
 * the guest's packets wait in the new queue for the few ms of the switchover only. Queues are
 * numbered in attach order (one that goes is replaced by the last), so the old process's is 0 and
 * the new one's 1; once the old one is gone, 1 is taken modulo 1. QEMU removes a steering program
 * when it resets its NIC or (10.0.2) loads its state (its own eBPF RSS owns that ioctl), so the
 * helper also holds the old process's queues and detaches them as soon as the new process runs the
 * VM (the old one never will again), instead of when the old process exits. A swap rolled back
 * kills the new process, its watcher and its queue with it; the old process's queues are then
 * never touched. On a kernel without pidfd_getfd (before 5.6) the
 * wrapper leaves the queues attached and sets no watcher, as before. Left: a packet that crosses
 * the tap between QEMU's change of the size and the watcher's repair is lost (a ~200 ms
 * retransmission), rarely.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { IntermissionError } from '../../../domain/index.js';
import type { ResolvedNic } from './layout.js';

/** Where the wrapper of a swap's new process leaves its header-size watcher's pid (in QEMU's cwd). */
export const TAP_WATCHER_PID_FILE = 'tap-watcher.pid';

/** The first descriptor number a tap queue is given in QEMU (0-2 are stdio). */
export const FIRST_TAP_FD = 3;

/** Interface names: at most 15 bytes (IFNAMSIZ - 1), safe in `ip` arguments and QEMU options. */
export const IFNAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$/;

const TAP_PY_PRELUDE = [
  'import ctypes, errno, fcntl, os, platform, signal, struct, sys, time',
  'TUNSETIFF, TUNSETQUEUE, TUNSETSTEERINGEBPF = 0x400454ca, 0x400454d9, 0x800454e0',
  'TUNGETVNETHDRSZ, TUNSETVNETHDRSZ = 0x800454d7, 0x400454d8',
  `WATCHER_PID_FILE = '${TAP_WATCHER_PID_FILE}'`,
  'IFF_ATTACH_QUEUE, IFF_DETACH_QUEUE = 0x0200, 0x0400',
  'FLAGS = 0x0002 | 0x1000 | 0x4000 | 0x0100  # IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE',
  'libc = ctypes.CDLL(None, use_errno=True)',
  'def syscall(nr, *args):',
  '    result = libc.syscall(ctypes.c_long(nr), *args)',
  '    if result < 0:',
  '        number = ctypes.get_errno()',
  '        raise OSError(number, os.strerror(number))',
  '    return result',
  'def getfd(pid, fd):',
  '    # pidfd_open and pidfd_getfd (the same numbers on every architecture): a copy of the process',
  '    # descriptor `fd`, the same open file (the same tap queue).',
  '    pidfd = syscall(434, ctypes.c_int(pid), ctypes.c_uint(0))',
  '    try:',
  '        return syscall(438, ctypes.c_int(pidfd), ctypes.c_int(fd), ctypes.c_uint(0))',
  '    finally:',
  '        os.close(pidfd)',
  'def header_size(fd, size=None):',
  '    if size is None:',
  "        return struct.unpack('i', fcntl.ioctl(fd, TUNGETVNETHDRSZ, bytes(4)))[0]",
  "    fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack('i', size))",
  'def queue_op(fd, flag):',
  "    fcntl.ioctl(fd, TUNSETQUEUE, struct.pack('16sH', b'', flag))",
  'def steer(fd, queue):',
  '    # BPF_PROG_LOAD of a socket filter "r0 = queue; exit", set as the tap\'s steering program.',
  "    nr = {'x86_64': 321, 'aarch64': 280}.get(platform.machine())",
  '    if nr is None:',
  "        raise OSError(errno.ENOSYS, 'no bpf system call number for ' + platform.machine())",
  "    insns = ctypes.create_string_buffer(struct.pack('<BBhiBBhi', 0xb7, 0, 0, queue, 0x95, 0, 0, 0), 16)",
  "    license = ctypes.create_string_buffer(b'GPL')",
  "    attr = ctypes.create_string_buffer(struct.pack('<IIQQ', 1, 2, ctypes.addressof(insns), ctypes.addressof(license)), 128)",
  '    prog = syscall(nr, ctypes.c_int(5), attr, ctypes.c_uint(128))',
  '    try:',
  "        fcntl.ioctl(fd, TUNSETSTEERINGEBPF, struct.pack('i', prog))",
  '    finally:',
  '        os.close(prog)',
];

/**
 * The exec wrapper: `python3 -c TAP_EXEC_SCRIPT [--detached] <tap> <fd> [<tap> <fd>…] -- <qemu>
 * <args…>`. It opens one queue of each tap at its descriptor number, leaves them inheritable, and
 * execs QEMU (same pid, so the driver's process checks see QEMU). With `--detached` (a swap's new
 * process) it detaches each queue, when the kernel has pidfd_getfd to attach it again (see above).
 */
export const TAP_EXEC_SCRIPT = [
  ...TAP_PY_PRELUDE,
  'args = sys.argv[1:]',
  "if args[:1] == ['--watch']:",
  "    # The watcher (see below), exec'd so that its arguments are not QEMU's (the driver finds a",
  '    # QEMU process by its arguments). It checks the queues it inherited every 0.2 ms at the lowest',
  '    # real-time priority (QEMU changes the size several times as it starts, and a packet that',
  '    # crosses the tap meanwhile is lost), and ends with QEMU, when stopped, or after 120 s.',
  '    ready, qemu, pairs = int(args[1]), int(args[2]), [int(a) for a in args[3:]]',
  '    sizes = list(zip(pairs[0::2], pairs[1::2]))',
  '    try:',
  '        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))',
  '    except OSError:',
  '        pass',
  "    os.write(ready, b'.')  # QEMU may start now",
  '    os.close(ready)',
  '    end = time.monotonic() + 120',
  '    while time.monotonic() < end and os.getppid() == qemu:',
  '        for target, size in sizes:',
  '            if header_size(target) != size:',
  '                header_size(target, size)',
  '        time.sleep(0.0002)',
  '    sys.exit(0)',
  "detached = args[:1] == ['--detached']",
  'if detached:',
  '    args = args[1:]',
  '    try:',
  '        os.close(getfd(os.getpid(), 0))',
  '    except OSError:',
  '        detached = False',
  "split = args.index('--')",
  'pairs, command = args[:split], args[split + 1:]',
  'sizes = []',
  'for i in range(0, len(pairs), 2):',
  '    name, target = pairs[i], int(pairs[i + 1])',
  "    fd = os.open('/dev/net/tun', os.O_RDWR)",
  "    fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', name.encode(), FLAGS))",
  '    if detached:',
  '        queue_op(fd, IFF_DETACH_QUEUE)',
  '        sizes.append((target, header_size(fd)))',
  '    if fd != target:',
  '        os.dup2(fd, target)',
  '        os.close(fd)',
  '    os.set_inheritable(target, True)',
  'if detached and sizes:',
  "    # The watcher: QEMU sets the tap's virtio-net header size (one per device) to its own",
  '    # default as it starts; the running process needs the size its guest negotiated.',
  '    qemu = os.getpid()',
  '    ready, ready_w = os.pipe()',
  '    watcher = os.fork()',
  '    if watcher == 0:',
  '        try:',
  '            os.close(ready)',
  '            os.set_inheritable(ready_w, True)',
  "            source = open('/proc/self/cmdline', 'rb').read().split(b'\\0')[2]",
  '            watch = [str(ready_w), str(qemu)] + [str(n) for pair in sizes for n in pair]',
  "            os.execv(sys.executable, [sys.executable, '-c', source, '--watch'] + watch)",
  '        finally:',
  '            os._exit(0)',
  '    # QEMU starts once the watcher watches (or failed: the pipe then ends).',
  '    os.close(ready_w)',
  '    os.read(ready, 1)',
  '    os.close(ready)',
  "    with open(WATCHER_PID_FILE, 'w') as pid_file:",
  '        pid_file.write(str(watcher))',
  'os.execv(command[0], command)',
].join('\n');

/**
 * The switchover helper: `python3 -c TAP_ATTACH_SCRIPT <pid> <queue> <watcher pid file> <old pid>
 * <fd>…` stops the wrapper's header-size watcher, attaches the queues that process `pid` holds at
 * those descriptors (one already attached is fine) and steers each tap to queue number `queue`,
 * printing what went wrong, then `ready <status>`: 0, 1 when only the steering failed, 2 when a
 * queue may still be detached (the swap must not go on). With an old pid (not 0) it then holds
 * copies of the old process's queues at the same descriptors and detaches them when its input
 * says `detach`.
 */
export const TAP_ATTACH_SCRIPT = [
  ...TAP_PY_PRELUDE,
  'pid, queue, watcher_file, old = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])',
  'status = 0',
  'try:',
  '    with open(watcher_file) as pid_file:',
  '        watcher = int(pid_file.read())',
  '    pidfd = syscall(434, ctypes.c_int(watcher), ctypes.c_uint(0))',
  'except (OSError, ValueError):',
  '    pidfd = None',
  'if pidfd is not None:',
  '    # The header-size watcher stops first: from here on the new process sets that size.',
  '    try:',
  '        syscall(424, ctypes.c_int(pidfd), ctypes.c_int(signal.SIGKILL), None, ctypes.c_uint(0))',
  '        end = time.monotonic() + 2',
  "        while os.path.exists('/proc/%d/cmdline' % watcher) and time.monotonic() < end:",
  "            with open('/proc/%d/stat' % watcher) as stat:",
  "                if stat.read().rsplit(')', 1)[1].split()[0] in ('Z', 'X'):",
  '                    break',
  '            time.sleep(0.001)',
  '    except OSError:',
  '        pass',
  '    os.close(pidfd)',
  'targets = sys.argv[5:]',
  'for target in targets:',
  '    try:',
  '        fd = getfd(pid, int(target))',
  '    except OSError as error:',
  '        # Without pidfd_getfd the wrapper did not detach the queue either.',
  "        print('fd ' + target + ': ' + str(error))",
  '        status = max(status, 1 if error.errno == errno.ENOSYS else 2)',
  '        continue',
  '    try:',
  '        try:',
  '            queue_op(fd, IFF_ATTACH_QUEUE)',
  '        except OSError as error:',
  '            if error.errno != errno.EINVAL:  # EINVAL: attached already',
  '                raise',
  '    except OSError as error:',
  "        print('attaching fd ' + target + ': ' + str(error))",
  '        status = 2',
  '    else:',
  '        try:',
  '            steer(fd, queue)',
  '        except OSError as error:',
  "            print('steering fd ' + target + ': ' + str(error))",
  '            status = max(status, 1)',
  '    finally:',
  '        os.close(fd)',
  'olds = []',
  'if old > 0 and status < 2:',
  '    for target in targets:',
  '        try:',
  '            olds.append(getfd(old, int(target)))',
  '        except OSError as error:',
  "            print('old process fd ' + target + ': ' + str(error))",
  "print('ready %d' % status, flush=True)",
  'if olds:',
  '    # Holds the old process\'s queues until told: "detach" once the new process runs the VM',
  '    # (the old one never will again: its queue would only take packets), anything else or',
  '    # nothing within 60 s leaves them as they are.',
  '    import select',
  "    if select.select([sys.stdin], [], [], 60)[0] and sys.stdin.readline().strip() == 'detach':",
  '        for fd in olds:',
  '            try:',
  '                queue_op(fd, IFF_DETACH_QUEUE)',
  '            except OSError:',
  '                pass',
  '    for fd in olds:',
  '        os.close(fd)',
  'sys.exit(0)',
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
  options: { readonly detached?: boolean } = {},
): { command: string; args: string[] } {
  if (nics.length === 0) return { command: binary, args: [...argv] };
  const pairs = nics.flatMap((nic, index) => [nic.tap, String(tapFd(index))]);
  const mode = options.detached === true ? ['--detached'] : [];
  return { command: python, args: ['-c', TAP_EXEC_SCRIPT, ...mode, ...pairs, '--', binary, ...argv] };
}

/** What {@link attachQueues} did: `attached` false means a queue may still be detached. */
export interface AttachOutcome {
  readonly attached: boolean;
  /** What went wrong, null when nothing did. */
  readonly problem: string | null;
  /**
   * Ends the helper: with `detachOld`, once the new process runs the VM, it first detaches the old
   * process's queues (QEMU 10 removes the steering program as it loads the NIC's state, and the
   * old process, stopped for good, keeps its queue until it exits). Idempotent.
   */
  release(detachOld: boolean): void;
}

/**
 * Attaches the tap queues of the swap's new process `pid` (one per NIC, at its descriptor) and
 * steers the taps' packets to queue number `queue` (see above); with `oldPid`, the helper then
 * holds the old process's queues until {@link AttachOutcome.release}. Never rejects.
 */
export function attachQueues(
  python: string,
  process: { readonly pid: number; readonly dir: string; readonly oldPid?: number },
  nicCount: number,
  queue: number,
): Promise<AttachOutcome> {
  const { pid } = process;
  const none = (): void => undefined;
  if (nicCount === 0) return Promise.resolve({ attached: true, problem: null, release: none });
  const fds = Array.from({ length: nicCount }, (_, index) => String(tapFd(index)));
  const child = spawn(
    python,
    [
      '-c',
      TAP_ATTACH_SCRIPT,
      String(pid),
      String(queue),
      join(process.dir, TAP_WATCHER_PID_FILE),
      String(process.oldPid ?? 0),
      ...fds,
    ],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let released = false;
  const release = (detachOld: boolean): void => {
    if (released) return;
    released = true;
    child.stdin.end(detachOld ? 'detach\n' : 'keep\n');
  };
  child.stdin.on('error', () => undefined);
  return new Promise((resolve) => {
    let output = '';
    let settled = false;
    const settle = (status: number | null, error?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const text = output.replace(/^ready \d+$/m, '').trim();
      const problem =
        status === 0 ? null : `attaching the tap queues of process ${pid}: ${text || error || 'no answer'}`;
      if (status === null || status === 2) release(false);
      resolve({ attached: status === 0 || status === 1, problem, release });
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      settle(null, 'timed out');
    }, 5_000);
    const take = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      const ready = /^ready (\d+)$/m.exec(output);
      if (ready) settle(Number(ready[1]));
    };
    child.stdout.on('data', take);
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
    });
    child.on('error', (error) => settle(null, error.message));
    child.on('close', (code) => settle(null, `exited (${code ?? 'signal'}) before it was ready`));
  });
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
