/**
 * What the QEMU driver tests share: the skip policy (never quiet: without QEMU or root they skip with
 * the reason only when CI is unset, and fail under CI), the test guest (built once by
 * scripts/guest/build-guest.sh, cached by kernel version and inputs), short run directories, driver
 * settings for TCG, and readers of the guest's serial console.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { QemuDriverConfig } from '../../src/hypervisor/index.js';
import { findExecutable, qemuRequirements } from '../../src/service/local-qemu.js';

export { sleep };

export const REPO = resolve(fileURLToPath(new URL('../..', import.meta.url)));
/** Where the guest is built: $INTERMISSION_GUEST_DIR, else <repo>/tmp/guest. */
export const GUEST_DIR = resolve(process.env.INTERMISSION_GUEST_DIR ?? join(REPO, 'tmp', 'guest'));
/** Two labels for one QEMU binary: enough to move a VM between "builds" in place. */
export const VMM_A = 'qemu-7.2-a';
export const VMM_B = 'qemu-7.2-b';

function isCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

/** The skip decision of the real-VM tests, and the check that fails them under CI. */
export interface QemuPreflight {
  /** For describe(): false, or the reason to skip (never under CI). */
  readonly skip: string | false;
  /** Throws the problems (reached only under CI, where a skip would hide them). */
  assertReady(): void;
}

/** Checks what real guests need: QEMU, socat, a kernel, busybox-static, qemu-ga, stress, cpio, root. */
export function qemuPreflight(): QemuPreflight {
  const problems: string[] = [];
  const drivers = process.env.DRIVERS;
  const selected =
    drivers === undefined ||
    drivers
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .includes('qemu');
  if (process.getuid?.() !== 0) problems.push('needs root');
  for (const r of qemuRequirements()) {
    problems.push(`${r.missing} is missing${r.debianPackage ? ` (apt-get install -y ${r.debianPackage})` : ''}`);
  }
  const reason = problems.join('; ');
  return {
    skip: !selected
      ? `not selected: DRIVERS=${drivers ?? ''} (add qemu to run the real-VM tests)`
      : problems.length > 0 && !isCi()
        ? `real-VM tests not runnable here: ${reason}`
        : false,
    assertReady() {
      if (problems.length > 0) throw new Error(`real-VM tests cannot run (CI is set, so this fails): ${reason}`);
    },
  };
}

/** The built guest. */
export interface TestGuest {
  readonly kernel: string;
  readonly initrd: string;
}

/** Builds the guest (a no-op when cached) and returns its files. */
export function buildGuest(): TestGuest {
  const result = spawnSync('bash', [join(REPO, 'scripts', 'guest', 'build-guest.sh'), GUEST_DIR], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (result.status !== 0) {
    throw new Error(`build-guest.sh failed (${result.status}): ${result.stderr}${result.stdout}`);
  }
  return { kernel: join(GUEST_DIR, 'vmlinuz'), initrd: join(GUEST_DIR, 'initrd.img') };
}

/** A fresh run directory with a short path (socket paths must stay below 108 bytes). */
export function newRunDir(tag: string): string {
  return mkdtempSync(`/tmp/iq-${tag}-`);
}

/** Driver settings for the tests: TCG, two labels for the installed QEMU. */
export function testDriverConfig(
  runDir: string,
  guest: TestGuest,
  overrides: Partial<QemuDriverConfig> = {},
): QemuDriverConfig {
  const qemu = findExecutable('qemu-system-x86_64') ?? '/usr/bin/qemu-system-x86_64';
  return {
    host: 'qemu-test-host',
    runDir,
    accel: 'tcg',
    vmmBuilds: { [VMM_A]: qemu, [VMM_B]: qemu },
    defaultVmmVersion: VMM_A,
    kernel: guest.kernel,
    initrd: guest.initrd,
    defaultRamMb: 256,
    ...overrides,
  };
}

// ---------------------------------------------------------------------------------------------
// The serial console
// ---------------------------------------------------------------------------------------------

/** The lines of a serial log so far. */
export function serialLines(path: string): string[] {
  try {
    return readFileSync(path, 'utf8').split(/\r?\n/);
  } catch {
    return [];
  }
}

/** Waits for a line matching `pattern` (after the first `from` lines); returns it. */
export async function waitForSerial(
  path: string,
  pattern: RegExp,
  options: { readonly timeoutMs: number; readonly from?: number },
): Promise<RegExpMatchArray> {
  const end = Date.now() + options.timeoutMs;
  for (;;) {
    const lines = serialLines(path).slice(options.from ?? 0);
    for (const line of lines) {
      const match = line.match(pattern);
      if (match) return match;
    }
    if (Date.now() > end) {
      throw new Error(
        `no serial line matching ${pattern} within ${options.timeoutMs} ms; last lines:\n${lines.slice(-15).join('\n')}`,
      );
    }
    await sleep(100);
  }
}

/** `key=value` fields of a TENANT/TICK/RC line. */
export function fields(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const match of line.matchAll(/(\w+)=(\S*)/g)) out[match[1] ?? ''] = match[2] ?? '';
  return out;
}

/** One serial line with the host time it was seen at. */
export interface ObservedLine {
  readonly atMs: number;
  readonly text: string;
}

/**
 * Reads a serial log as it grows and stamps each new line with the host time it appeared: an
 * outside view of the guest, in host time (a paused guest's own clocks stand still, so only the
 * host can see how long it really stopped).
 */
export class SerialWatcher {
  readonly lines: ObservedLine[] = [];
  readonly #fd: number;
  readonly #timer: NodeJS.Timeout;
  #position: number;
  #partial = '';

  constructor(path: string, pollMs = 2) {
    this.#fd = openSync(path, 'r');
    this.#position = readFileSync(path).length;
    this.#timer = setInterval(() => this.poll(), pollMs);
  }

  /** Reads what was appended since the last poll. */
  poll(): void {
    const buffer = Buffer.alloc(64 * 1024);
    for (;;) {
      const n = readSync(this.#fd, buffer, 0, buffer.length, this.#position);
      if (n <= 0) return;
      this.#position += n;
      const atMs = Date.now();
      const text = this.#partial + buffer.subarray(0, n).toString('utf8');
      const parts = text.split(/\r?\n/);
      this.#partial = parts.pop() ?? '';
      for (const line of parts) this.lines.push({ atMs, text: line });
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.poll();
    closeSync(this.#fd);
  }
}

/** Tick beats (`B <n> <uptime>`) from observed lines. */
export function beats(lines: readonly ObservedLine[]): { atMs: number; n: number; uptime: number }[] {
  const out: { atMs: number; n: number; uptime: number }[] = [];
  for (const line of lines) {
    const match = /^B (\d+) ([\d.]+)$/.exec(line.text.trim());
    if (match) out.push({ atMs: line.atMs, n: Number(match[1]), uptime: Number(match[2]) });
  }
  return out;
}

/** What {@link writeQemuHostConfigs} laid out under its base directory. */
export interface QemuHostsLayout {
  /** Each host's QEMU run directory. */
  readonly runDirs: ReadonlyMap<string, string>;
  /** The file each host's patch command appends the update id to, once it ran to its end. */
  readonly patchLog: (host: string) => string;
  /** Each host's agent config, for `intermission agent --driver qemu --qemu-config <file>`. */
  readonly configOf: (host: string) => string;
  /** The metadata channels' directory, shared with the controller (`--metadata-dir`). */
  readonly metadataDir: string;
}

/**
 * Writes one QEMU agent config per host under `base` (TCG, the two test builds unless `vmmBuilds`
 * names others, the test guest, tick beats on the serial console, each host's VMs as `vms` gives
 * them) whose host patch takes its expected time and leaves a trace in
 * {@link QemuHostsLayout.patchLog} only when it ran to its end.
 */
export async function writeQemuHostConfigs(options: {
  readonly base: string;
  readonly hosts: readonly string[];
  readonly guest: TestGuest;
  /** The host file's `vmmBuilds` (a binary, or `{ binary, dataDir }`). Default {@link VMM_A} and {@link VMM_B}. */
  readonly vmmBuilds?: Readonly<Record<string, string | { readonly binary: string; readonly dataDir?: string }>>;
  readonly defaultVmmVersion?: string;
  /** The host file's `vms` (per-VM disks, NICs, boot…) of one host. */
  readonly vms?: (host: string) => Readonly<Record<string, unknown>>;
}): Promise<QemuHostsLayout> {
  const { base, guest } = options;
  const runDirs = new Map(options.hosts.map((h) => [h, join(base, h)]));
  const patchLog = (host: string): string => join(base, `patched-${host}.log`);
  const configOf = (host: string): string => join(base, `qemu-${host}.json`);
  const metadataDir = join(base, 'md');
  for (const host of options.hosts) {
    const driver = testDriverConfig(runDirs.get(host) ?? '', guest);
    await writeFile(
      configOf(host),
      JSON.stringify({
        runDir: driver.runDir,
        accel: 'tcg',
        vmmBuilds: options.vmmBuilds ?? driver.vmmBuilds,
        defaultVmmVersion: options.defaultVmmVersion ?? VMM_A,
        kernel: guest.kernel,
        initrd: guest.initrd,
        defaultRamMb: 256,
        kernelArgs: 'tenant.beat=1',
        metadataDir,
        hostUpdateCommand: [
          '/bin/sh',
          '-c',
          `sleep "$((INTERMISSION_UPDATE_EXPECTED_MS / 1000))"; echo "$INTERMISSION_UPDATE_ID" >> ${patchLog(host)}`,
        ],
        ...(options.vms === undefined ? {} : { vms: options.vms(host) }),
      }),
    );
  }
  return { runDirs, patchLog, configOf, metadataDir };
}
