/**
 * The guest-visible pause of an in-place VMM update, against RAM size, next to a local migration
 * that copies RAM. Run: `node --import tsx bench/inplace-migration.ts` (root, QEMU; the test guest
 * is built by scripts/guest/build-guest.sh and build-disk.sh; 15-25 minutes with the defaults).
 *
 * The guest (BENCH_GUEST):
 * - `disk` (default): the disk guest as tenants run it (docs/qemu.md, "The test guest's disk"):
 *   SeaBIOS boots it from a qcow2 overlay on virtio-blk, a virtio-net NIC on a tap of a test bridge
 *   carries a TCP stream to a client in a network namespace (checked byte by byte), and a record
 *   writer appends fsync'd, numbered, checksummed records to its disk;
 * - `memory`: the diskless guest (direct kernel boot, no NIC but the metadata one).
 * Either way it prints a tick beat every ~10 ms and runs a dirtier (`stress --vm-keep`) that writes
 * to every page of a quarter of its RAM without pause (no page left zero); the pace of its passes
 * is printed. The dirtier is what keeps the copying migration honest: a guest that writes nothing
 * copies once, fast.
 *
 * For each RAM size, one guest at a time:
 * - `ip-<MB>` has its RAM in a shared file mapping and is swapped in place (x-ignore-shared: RAM is
 *   never copied) BENCH_SWAPS times per kind of move: `same` between two labels of the system's QEMU
 *   (7.2 → 7.2), and with BENCH_CROSS (default on when QEMU 10.0.2 is installed, see
 *   scripts/fetch-qemu.sh) `up` (7.2 → 10.0.2) and `down` (10.0.2 → 7.2), reported separately;
 * - then `cp-<MB>` has private RAM and is migrated to a new local process BENCH_COPIES times the
 *   way a live migration between hosts works (every page sent, dirty pages sent again).
 *
 * Measured per move: the guest-visible pause, from the old process's STOP event to the new
 * process's RESUME event (host wall clock, microsecond stamps); the same pause seen from outside
 * as the longest silence of the guest's tick beats on its serial console (host time of arrival,
 * polled every 2 ms, so it includes one beat interval and the guest's own scheduling jitter); the
 * largest tick gap the guest measured itself (its clocks stand still while paused, so this one
 * does not see the pause); bytes sent; with the disk guest, the TCP stall: the longest gap between
 * data arrivals of the tenant stream that overlaps the move (from the call, which starts the new
 * process, to its return). After each in-place swap the guest clock is resynchronised through the
 * guest agent and the residual is compared with the agent's round trip. At the end, with the disk
 * guest: every stream without a wrong byte or a reset, and every acknowledged record in the image
 * of each guest's disk after it was destroyed, in order and uncorrupted.
 *
 * Targets: p99 in-place pause <= 20 ms at every size, pause(2 GB)/pause(256 MB) <= 1.5, in-place
 * >= 10x shorter than the copying migration (each kind of in-place move against the copy), residual
 * within one round trip. The machine may be slow (TCG emulation, other load): the script prints
 * PASS/FAIL lines instead of failing.
 *
 * Environment: BENCH_GUEST (disk|memory, default disk), BENCH_SIZES (MB, default 256,1024,2048),
 * BENCH_SWAPS (per kind of in-place move and size, default 20), BENCH_COPIES (default 3),
 * BENCH_CROSS (0: same-version moves only), BENCH_DIRTY_FRACTION (default 0.25), BENCH_SETTLE_MS
 * (wait after each move, default 1200), BENCH_ACCEL (tcg|kvm, default tcg), BENCH_GUEST_DIR
 * (default tmp/guest), BENCH_JSON (write the raw figures there), BENCH_SWITCHOVER (`plain`: leave
 * the switchover threads' priority alone, see `switchoverNice`/`switchoverRealtime`);
 * INTERMISSION_QEMU10 (QEMU 10.0.2's binary, default /opt/qemu-10.0.2/usr/bin/qemu-system-x86_64).
 * A short run: `BENCH_SIZES=256 BENCH_SWAPS=2 BENCH_COPIES=1`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  QemuDriver,
  destroyQemuRunDir,
  type QemuLaunchOptions,
  type QemuSwapVmmResult,
  type QemuVmInfo,
} from '../src/hypervisor/index.js';
import { QEMU10, QEMU10_VERSION, QEMU_FIRMWARE_DIR, overlayDisk, qemu10Problem } from '../test/qemu/guest-disk.js';
import { SerialWatcher, beats, type ObservedLine } from '../test/qemu/qemu-fixture.js';
import { parseAcks, readRecordsFromImage, verifyRecords, type RecordsVerdict } from '../test/qemu/records.js';
import { startTcpProbe, type TcpProbe, type TcpProbeReport } from '../test/qemu/tcp-probe.js';
import { createTenantNet, type TenantNet } from '../test/qemu/tenant-net.js';

const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
const GUEST: 'disk' | 'memory' = process.env['BENCH_GUEST'] === 'memory' ? 'memory' : 'disk';
const SIZES = (process.env['BENCH_SIZES'] ?? '256,1024,2048').split(',').map(Number);
// Below 100 samples a p99 is the largest one; with 5, one scheduler hiccup decided the size ratio.
const SWAPS = Number(process.env['BENCH_SWAPS'] ?? 20);
const COPIES = Number(process.env['BENCH_COPIES'] ?? 3);
const DIRTY_FRACTION = Number(process.env['BENCH_DIRTY_FRACTION'] ?? 0.25);
const SETTLE_MS = Number(process.env['BENCH_SETTLE_MS'] ?? 1_200);
const ACCEL = process.env['BENCH_ACCEL'] === 'kvm' ? 'kvm' : 'tcg';
const GUEST_DIR = resolve(process.env['BENCH_GUEST_DIR'] ?? join(REPO, 'tmp', 'guest'));
const SYSTEM_QEMU = '/usr/bin/qemu-system-x86_64';
const BOOT_MS = 300_000;

const TARGET_P99_MS = 20;
const TARGET_SIZE_RATIO = 1.5;
const TARGET_COPY_RATIO = 10;

/**
 * How a guest moves: in place between two labels of one build (`same`), from the system's build
 * to QEMU 10.0.2 (`up`) and back (`down`), or by a copying migration (`copy`).
 */
type MovePath = 'same' | 'up' | 'down' | 'copy';
const PATHS: readonly MovePath[] = ['same', 'up', 'down', 'copy'];

/** The build labels: two for the system's QEMU, one for QEMU 10.0.2. */
interface Builds {
  readonly a: string;
  readonly b: string;
  /** null without cross-version moves. */
  readonly next: string | null;
}

/** One move of a guest to a new process. */
interface Move {
  readonly vm: string;
  readonly path: MovePath;
  readonly from: string;
  readonly to: string;
  readonly sizeMb: number;
  /** Old STOP to new RESUME. */
  readonly pauseMs: number;
  /** QEMU's own downtime figure. */
  readonly qemuDowntimeMs: number | null;
  readonly totalMs: number;
  readonly transferredBytes: number;
  readonly ramTotalBytes: number;
  /** Longest silence of the tick beats around the move, in host time of arrival. */
  readonly beatGapMs: number | null;
  /** The guest's own largest tick gap in the second after the move. */
  readonly guestTickGapMs: number | null;
  /** Longest gap of the tenant's TCP stream overlapping the move (disk guest only). */
  readonly streamStallMs: number | null;
  /** Whether the stream flowed again after the move (null without one). */
  readonly streamFlowing: boolean | null;
  readonly residualMs?: number;
  readonly roundTripMs?: number;
}

/** What a guest left behind: its stream and its records (disk guest only). */
interface GuestCheck {
  readonly vm: string;
  readonly stream: TcpProbeReport;
  /** How long the stream had been silent when the guest was retired. */
  readonly silentAtEndMs: number;
  readonly acks: number;
  readonly records: RecordsVerdict | { readonly ok: false; readonly problems: readonly string[] };
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

const fmt = (ms: number | null | undefined, digits = 1): string =>
  ms === null || ms === undefined || Number.isNaN(ms) ? '-' : ms.toFixed(digits);
const mb = (bytes: number): string => (Number.isNaN(bytes) ? '-' : `${(bytes / 1024 / 1024).toFixed(1)} MB`);
const present = (values: readonly (number | null | undefined)[]): number[] =>
  values.filter((v): v is number => v !== null && v !== undefined);

/**
 * The silence of the tick beats across a move, seen from the host: from the last beat that arrived
 * before the old process stopped to the first one after the new process resumed. It includes up to
 * one beat interval and the guest's scheduling jitter on top of the pause.
 */
function beatGap(lines: readonly ObservedLine[], stoppedAt: number, resumedAt: number): number | null {
  const arrivals = beats(lines).map((b) => b.atMs);
  const before = arrivals.filter((t) => t <= stoppedAt).pop();
  const after = arrivals.find((t) => t >= resumedAt);
  return before === undefined || after === undefined ? null : after - before;
}

/** Longest gap between beat arrivals within a window with no move: the baseline. */
function quietGap(lines: readonly ObservedLine[]): number | null {
  const arrivals = beats(lines).map((b) => b.atMs);
  if (arrivals.length < 2) return null;
  return Math.max(...arrivals.slice(1).map((t, i) => t - (arrivals[i] ?? t)));
}

/** The guest's own tick gap reported by the first TICK line after `at`. */
function guestTickGap(lines: readonly ObservedLine[], at: number): number | null {
  const line = lines.find((l) => l.atMs > at && l.text.startsWith('TICK '));
  const match = line === undefined ? null : /gap_ms=(\d+)/.exec(line.text);
  return match ? Number(match[1]) : null;
}

/**
 * The longest gap between the stream's data arrivals that overlaps [from, to] (the probe lists
 * every gap over 1 ms with the time it ended); a gap still open now counts up to now.
 */
function streamStall(probe: TcpProbe | null, from: number, to: number): number | null {
  if (probe === null) return null;
  const report = probe.report();
  let longest = 0;
  for (const stall of report.stalls) {
    if (stall.atMs >= from && stall.atMs - stall.ms <= to) longest = Math.max(longest, stall.ms);
  }
  if (report.lastByteAtMs !== null && report.lastByteAtMs <= to) {
    longest = Math.max(longest, Date.now() - report.lastByteAtMs);
  }
  return longest;
}

/** How long the guest's dirtier took over its second and third passes, each (guest wall clock). */
function dirtierPassMs(serial: string): number {
  const wall = (pass: number): number => {
    const match = new RegExp(`wall=([0-9.]+) dirtier pass=${pass}\\b`).exec(serial);
    return match ? Number(match[1]) * 1000 : Number.NaN;
  };
  return (wall(3) - wall(1)) / 2;
}

/** How long a move's settling waits at most for the stream to flow again. */
const STREAM_RESUME_MS = 30_000;

/**
 * Waits after a move: SETTLE_MS, and then, with a stream, until data arrived after `completedAt`
 * (a stall that outlasts the settle time, e.g. TCP retransmission backing off during a long copy,
 * is measured whole). False when the stream did not flow again within {@link STREAM_RESUME_MS}.
 */
async function settle(probe: TcpProbe | null, completedAt: number): Promise<boolean> {
  await sleep(SETTLE_MS);
  const end = Date.now() + STREAM_RESUME_MS;
  while (probe !== null && (probe.report().lastByteAtMs ?? 0) <= completedAt) {
    if (Date.now() > end || probe.report().ended !== null) return false;
    await sleep(50);
  }
  return true;
}

async function waitForLine(path: string, pattern: RegExp, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pattern.test(readFileSync(path, 'utf8'))) {
    if (Date.now() > end) throw new Error(`${path}: no ${pattern} within ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** The in-place moves of one guest, in order: `swaps` of each kind, leaving from `builds.a`. */
function inPlacePlan(swaps: number, builds: Builds): { path: MovePath; to: string }[] {
  const plan: { path: MovePath; to: string }[] = [];
  for (let i = 0; i < swaps; i++) {
    const back = i % 2 === 0 ? builds.b : builds.a;
    if (builds.next === null) {
      plan.push({ path: 'same', to: back });
    } else {
      // Up, back down to one label, across to the other: one of each kind, both labels in turn.
      plan.push({ path: 'up', to: builds.next });
      plan.push({ path: 'down', to: back });
      plan.push({ path: 'same', to: back === builds.a ? builds.b : builds.a });
    }
  }
  return plan;
}

/** What a run collects. */
interface Results {
  readonly moves: Move[];
  readonly checks: GuestCheck[];
  /** Moves and guests that failed, each with why. */
  readonly failures: string[];
}

/** Everything a run shares. */
interface Bench {
  readonly driver: QemuDriver;
  readonly builds: Builds;
  /** The disk guest's base image, tenant network and overlay directory; null for the memory guest. */
  readonly disk: { readonly base: string; readonly net: TenantNet; readonly work: string } | null;
  /** Guests launched so far (each gets its own tap and address). */
  launched: number;
}

/** A booted guest under observation. */
interface Guest {
  readonly vm: string;
  readonly info: QemuVmInfo;
  readonly watcher: SerialWatcher;
  readonly probe: TcpProbe | null;
  readonly overlay: string | null;
}

/**
 * Boots a guest of `sizeMb` (shared or private RAM) and waits until its dirtier has written its
 * region three times (that much RAM is in use and keeps changing) and, for the disk guest, until it
 * acknowledges records and streams to the client.
 */
async function bootGuest(bench: Bench, vm: string, sizeMb: number, sharedMemory: boolean): Promise<Guest> {
  const dirtyMb = Math.max(16, Math.round(sizeMb * DIRTY_FRACTION));
  const index = bench.launched++;
  const common = { vm, ramMb: sizeMb, sharedMemory, deadline: Date.now() + BOOT_MS };
  let spec: QemuLaunchOptions;
  let overlay: string | null = null;
  if (bench.disk === null) {
    spec = { ...common, kernelArgs: `tenant.beat=1 tenant.dirty_mb=${dirtyMb}` };
  } else {
    const { base, net, work } = bench.disk;
    overlay = overlayDisk(base, join(work, `${vm}.qcow2`));
    spec = {
      ...common,
      boot: { kind: 'firmware', firmware: 'seabios' },
      disks: [{ path: overlay, format: 'qcow2', cache: 'writeback' }],
      nics: [{ bridge: net.bridge, tap: net.tapName(index) }],
      kernelArgs:
        `tenant.ip=${net.guestCidr(index)} tenant.records=1 tenant.stream=1 ` +
        `tenant.beat=1 tenant.dirty_mb=${dirtyMb}`,
    };
  }
  process.stdout.write(`  booting ${vm} (${sharedMemory ? 'shared' : 'private'} RAM)...`);
  const started = Date.now();
  const info = await bench.driver.launch(spec);
  let probe: TcpProbe | null = null;
  try {
    await waitForLine(info.serialLog, /dirtier pass=3/, 240_000);
    if (bench.disk !== null) {
      await waitForLine(info.serialLog, /^STREAM listening/m, 60_000);
      await waitForLine(info.serialLog, /^REC ACK \d+/m, 60_000);
      // Every gap between arrivals over 1 ms is listed: the stall of a move is picked out later.
      probe = startTcpProbe({
        namespace: bench.disk.net.namespace,
        host: bench.disk.net.guestAddress(index),
        stallThresholdMs: 1,
      });
      await probe.waitForBytes(100, 30_000);
    }
  } catch (error) {
    await probe?.stop();
    await bench.driver.destroy({ vm }).catch(() => undefined);
    throw error;
  }
  const pace = dirtierPassMs(readFileSync(info.serialLog, 'utf8'));
  process.stdout.write(
    ` up in ${((Date.now() - started) / 1000).toFixed(0)} s, dirtying ${dirtyMb} MB, every page again every ` +
      `${fmt(pace, 0)} ms (${fmt(dirtyMb / 1024 / (pace / 1000), 2)} GB/s)\n`,
  );
  return { vm, info, watcher: new SerialWatcher(info.serialLog), probe, overlay };
}

/**
 * Stops observing a guest and destroys it; for the disk guest, checks its stream and reads its
 * records back from the image (after the VM is gone: what it acknowledged must be there).
 */
async function retireGuest(bench: Bench, guest: Guest): Promise<GuestCheck | null> {
  guest.watcher.stop();
  const acks = parseAcks(readFileSync(guest.info.serialLog, 'utf8'));
  const stream = await guest.probe?.stop();
  const silentAtEndMs = Date.now() - (stream?.lastByteAtMs ?? Date.now());
  await bench.driver.destroy({ vm: guest.vm });
  if (stream === undefined || guest.overlay === null) return null;
  const records = await readRecordsFromImage(guest.overlay).then(
    (text) => verifyRecords(text, acks),
    (error: Error) => ({ ok: false as const, problems: [`cannot read the image: ${error.message}`] }),
  );
  return { vm: guest.vm, stream, silentAtEndMs, acks: acks.length, records };
}

function record(
  path: MovePath,
  sizeMb: number,
  from: string,
  result: QemuSwapVmmResult,
  guest: Guest,
  flowing: boolean,
): Move {
  const stopped = result.stoppedAt ?? result.startedAt;
  const resumed = result.resumedAt ?? result.completedAt;
  return {
    vm: guest.vm,
    path,
    from,
    to: result.toVersion,
    sizeMb,
    pauseMs: result.downtimeMs,
    qemuDowntimeMs: result.migration?.qemuDowntimeMs ?? null,
    totalMs: result.totalMs,
    transferredBytes: result.migration?.transferredBytes ?? 0,
    ramTotalBytes: result.migration?.ramTotalBytes ?? 0,
    beatGapMs: beatGap(guest.watcher.lines, stopped, resumed),
    guestTickGapMs: guestTickGap(guest.watcher.lines, resumed),
    streamStallMs: streamStall(guest.probe, result.startedAt, result.completedAt),
    streamFlowing: guest.probe === null ? null : flowing,
  };
}

/** `, TCP stall N ms` of a move's line (empty without a stream). */
function stallText(move: Move): string {
  if (move.streamFlowing === null) return '';
  const flowing = move.streamFlowing ? '' : ` or more: the stream did not flow again within ${STREAM_RESUME_MS} ms`;
  return `, TCP stall ${fmt(move.streamStallMs, 0)} ms${flowing}`;
}

/** The baseline of a guest with no move: beat silence and stream stall over a quiet window. */
async function baseline(guest: Guest): Promise<void> {
  const from = Date.now();
  await sleep(3_000);
  const quiet = quietGap(guest.watcher.lines.filter((l) => l.atMs >= from));
  const stream =
    guest.probe === null ? '' : `, stream stalled at most ${fmt(streamStall(guest.probe, from, Date.now()), 0)} ms`;
  process.stdout.write(`    without any move: beats silent at most ${fmt(quiet)} ms${stream} (the baseline)\n`);
}

async function inPlaceMoves(bench: Bench, sizeMb: number, results: Results): Promise<void> {
  const guest = await bootGuest(bench, `ip-${sizeMb}`, sizeMb, true);
  try {
    await baseline(guest);
    const plan = inPlacePlan(SWAPS, bench.builds);
    let from = bench.builds.a;
    for (const [i, step] of plan.entries()) {
      let result: QemuSwapVmmResult;
      try {
        result = await bench.driver.swapVmm({ vm: guest.vm, targetVersion: step.to, deadline: Date.now() + 30_000 });
      } catch (error) {
        // A failed swap rolls back: the VM runs on in the old process, and the next move leaves from there.
        const failure = `${guest.vm} ${from} -> ${step.to}: ${(error as Error).message}`;
        results.failures.push(failure);
        process.stdout.write(`    ${i + 1}/${plan.length} FAILED ${failure}\n`);
        continue;
      }
      const flowing = await settle(guest.probe, result.completedAt);
      const clock = await bench.driver.resyncClock({ vm: guest.vm });
      const move = {
        ...record(step.path, sizeMb, from, result, guest, flowing),
        residualMs: clock.residualMs,
        roundTripMs: clock.roundTripMs,
      };
      from = step.to;
      results.moves.push(move);
      process.stdout.write(
        `    ${i + 1}/${plan.length} ${move.from} -> ${move.to}: pause ${fmt(move.pauseMs)} ms ` +
          `(QEMU ${fmt(move.qemuDowntimeMs, 0)}), beats silent ${fmt(move.beatGapMs, 0)} ms, ` +
          `guest tick gap ${fmt(move.guestTickGapMs, 0)} ms, sent ${mb(move.transferredBytes)}, ` +
          `total ${fmt(move.totalMs, 0)} ms${stallText(move)}, ` +
          `clock residual ${fmt(clock.residualMs, 2)} ms (round trip ${fmt(clock.roundTripMs, 2)} ms)\n`,
      );
    }
  } finally {
    const check = await retireGuest(bench, guest);
    if (check !== null) results.checks.push(check);
  }
}

async function copyMoves(bench: Bench, sizeMb: number, results: Results): Promise<void> {
  const guest = await bootGuest(bench, `cp-${sizeMb}`, sizeMb, false);
  try {
    for (let i = 0; i < COPIES; i++) {
      try {
        const result = await bench.driver.migrateLocally({
          vm: guest.vm,
          targetVersion: bench.builds.a,
          ramTransfer: 'copy',
          deadline: Date.now() + 180_000,
        });
        const flowing = await settle(guest.probe, result.completedAt);
        const move = record('copy', sizeMb, bench.builds.a, result, guest, flowing);
        results.moves.push(move);
        process.stdout.write(
          `    copy ${i + 1}/${COPIES}: pause ${fmt(move.pauseMs)} ms (QEMU ${fmt(move.qemuDowntimeMs, 0)}), ` +
            `beats silent ${fmt(move.beatGapMs, 0)} ms, sent ${mb(move.transferredBytes)} ` +
            `(RAM accounted ${mb(move.ramTotalBytes)}), total ${fmt(move.totalMs, 0)} ms` +
            `${stallText(move)}\n`,
        );
      } catch (error) {
        const failure = `${guest.vm} copy ${i + 1}: ${(error as Error).message}`;
        results.failures.push(failure);
        process.stdout.write(`    copy ${i + 1}/${COPIES}: FAILED ${failure}\n`);
      }
    }
  } finally {
    const check = await retireGuest(bench, guest);
    if (check !== null) results.checks.push(check);
  }
}

/** The version a QEMU binary reports (`7.2.15`), for labels. */
function qemuVersion(binary: string): string {
  const out = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  return /version (\d+\.\d+(?:\.\d+)?)/.exec(out.stdout)?.[1] ?? 'system';
}

function buildGuestFiles(): void {
  const scripts = GUEST === 'disk' ? ['build-guest.sh', 'build-disk.sh'] : ['build-guest.sh'];
  for (const script of scripts) {
    const build = spawnSync('bash', [join(REPO, 'scripts', 'guest', script), GUEST_DIR], { encoding: 'utf8' });
    if (build.status !== 0) throw new Error(`${script} failed: ${build.stderr}`);
  }
}

async function main(): Promise<void> {
  buildGuestFiles();
  const system = qemuVersion(SYSTEM_QEMU);
  const crossProblem = process.env['BENCH_CROSS'] === '0' ? 'BENCH_CROSS=0' : qemu10Problem();
  const builds: Builds = { a: system, b: `${system}-b`, next: crossProblem === undefined ? QEMU10_VERSION : null };
  const runDir = mkdtempSync('/tmp/iq-bench-');
  const driver = await QemuDriver.open({
    host: 'bench',
    runDir,
    accel: ACCEL,
    vmmBuilds: {
      [builds.a]: SYSTEM_QEMU,
      [builds.b]: SYSTEM_QEMU,
      // QEMU 10.0.2 unpacked beside the system's has no SeaBIOS of its own (docs/qemu.md).
      ...(builds.next === null ? {} : { [builds.next]: { binary: QEMU10, dataDir: QEMU_FIRMWARE_DIR } }),
    },
    defaultVmmVersion: builds.a,
    kernel: join(GUEST_DIR, 'vmlinuz'),
    initrd: join(GUEST_DIR, 'initrd.img'),
    bootTimeoutMs: BOOT_MS,
    // BENCH_SWITCHOVER=plain: the switchover threads keep their priority (to compare).
    ...(process.env['BENCH_SWITCHOVER'] === 'plain' ? { switchoverNice: null, switchoverRealtime: null } : {}),
  });
  const net = GUEST === 'disk' ? await createTenantNet() : null;
  const work = mkdtempSync('/tmp/iq-bench-disks-');
  const bench: Bench = {
    driver,
    builds,
    disk: net === null ? null : { base: join(GUEST_DIR, 'disk.raw'), net, work },
    launched: 0,
  };
  process.stdout.write(
    `in-place VMM update vs copying migration; ${GUEST} guest, accel ${ACCEL}, ${SWAPS} in-place swaps of each kind ` +
      `(${builds.a} -> ${builds.b}${builds.next === null ? '' : `, ${builds.a} -> ${builds.next} and back`}) and ` +
      `${COPIES} copies per size, guests dirtying ${Math.round(DIRTY_FRACTION * 100)}% of their RAM; switchover ` +
      `threads at nice ${driver.config.switchoverNice ?? 'unchanged'}, SCHED_FIFO ` +
      `${driver.config.switchoverRealtime ?? 'off'} (in place only)\n`,
  );
  if (crossProblem !== undefined) process.stdout.write(`no cross-version moves: ${crossProblem}\n`);
  const results: Results = { moves: [], checks: [], failures: [] };
  try {
    for (const size of SIZES) {
      process.stdout.write(`\n${size} MB:\n`);
      for (const run of [inPlaceMoves, copyMoves]) {
        // A guest that does not boot (or dies) costs its own figures, not the rest of the run.
        await run(bench, size, results).catch((error: Error) => {
          results.failures.push(`${size} MB: ${error.message}`);
          process.stdout.write(`  FAILED ${error.message}\n`);
        });
      }
    }
  } finally {
    await driver.close();
    await destroyQemuRunDir(runDir);
    await net?.close();
    rmSync(work, { recursive: true, force: true });
  }
  report(results, builds);
}

/** The figures of one kind of move at one size. */
interface Row {
  readonly size: number;
  readonly path: MovePath;
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
}

function describePath(path: MovePath, builds: Builds): string {
  switch (path) {
    case 'same':
      return `${builds.a} -> ${builds.a}`;
    case 'up':
      return `${builds.a} -> ${builds.next ?? '?'}`;
    case 'down':
      return `${builds.next ?? '?'} -> ${builds.a}`;
    case 'copy':
      return 'copy (private)';
  }
}

function report(results: Results, builds: Builds): void {
  const { moves: all, checks, failures } = results;
  const tcp = GUEST === 'disk';
  process.stdout.write(
    `\n  RAM    | move              | n  | pause p50 / p99     | beats silent p50 / p99 | tick gap p50 | sent p50   | total p50` +
      `${tcp ? ' | TCP stall p50 / max' : ''}\n`,
  );
  const rows: Row[] = [];
  for (const size of SIZES) {
    for (const path of PATHS) {
      const moves = all.filter((m) => m.sizeMb === size && m.path === path);
      if (moves.length === 0) continue;
      const pauses = moves.map((m) => m.pauseMs);
      const row = { size, path, n: moves.length, p50: percentile(pauses, 50), p99: percentile(pauses, 99) };
      rows.push(row);
      const beat = present(moves.map((m) => m.beatGapMs));
      const stall = present(moves.map((m) => m.streamStallMs));
      process.stdout.write(
        `  ${String(size).padStart(4)} MB | ${describePath(path, builds).padEnd(17)} | ${String(row.n).padStart(2)} | ` +
          `${fmt(row.p50).padStart(8)} / ${fmt(row.p99).padEnd(8)} | ` +
          `${fmt(percentile(beat, 50), 0).padStart(8)} / ${fmt(percentile(beat, 99), 0).padEnd(11)} | ` +
          `${fmt(percentile(present(moves.map((m) => m.guestTickGapMs)), 50), 0).padStart(9)} ms | ` +
          `${mb(
            percentile(
              moves.map((m) => m.transferredBytes),
              50,
            ),
          ).padEnd(10)} | ` +
          `${fmt(
            percentile(
              moves.map((m) => m.totalMs),
              50,
            ),
            0,
          ).padStart(6)} ms` +
          `${tcp ? ` | ${fmt(percentile(stall, 50), 0).padStart(6)} / ${fmt(Math.max(...stall), 0)} ms` : ''}\n`,
      );
    }
  }
  process.stdout.write('  (pauses, beat silences and stalls in ms)\n\n');
  for (const path of PATHS.filter((p) => p !== 'copy')) {
    const of = rows.filter((r) => r.path === path);
    const first = of[0];
    const last = of[of.length - 1];
    const name = describePath(path, builds);
    if (first !== undefined && last !== undefined && first !== last) {
      line(
        last.p99 / first.p99 <= TARGET_SIZE_RATIO,
        `${name}: pause p99(${last.size} MB)/p99(${first.size} MB) = ${fmt(last.p99 / first.p99, 2)} ` +
          `(p50 ratio ${fmt(last.p50 / first.p50, 2)}; target <= ${TARGET_SIZE_RATIO})`,
      );
    }
    for (const row of of) {
      line(
        row.p99 <= TARGET_P99_MS,
        `${name}, ${row.size} MB: pause p99 ${fmt(row.p99)} ms (target <= ${TARGET_P99_MS} ms)`,
      );
      const copy = rows.find((r) => r.path === 'copy' && r.size === row.size);
      if (copy !== undefined) {
        line(
          copy.p50 / row.p50 >= TARGET_COPY_RATIO,
          `${name}, ${row.size} MB: copying pause / in-place pause = ${fmt(copy.p50 / row.p50)}x ` +
            `(p50 ${fmt(copy.p50)} / ${fmt(row.p50)} ms; target >= ${TARGET_COPY_RATIO}x)`,
        );
      }
    }
  }
  const residuals = all.filter((m) => m.residualMs !== undefined);
  const within = residuals.filter((m) => Math.abs(m.residualMs ?? 0) <= (m.roundTripMs ?? 0));
  const absResiduals = residuals.map((m) => Math.abs(m.residualMs ?? 0));
  line(
    within.length === residuals.length,
    `clock residual after resync: |p50| ${fmt(percentile(absResiduals, 50), 2)} ms, |max| ${fmt(Math.max(...absResiduals), 2)} ms; ` +
      `agent round trip p50 ${fmt(
        percentile(
          residuals.map((m) => m.roundTripMs ?? 0),
          50,
        ),
        2,
      )} ms; ` +
      `${within.length}/${residuals.length} within one round trip`,
  );
  if (tcp) {
    for (const path of PATHS) {
      const stalls = present(all.filter((m) => m.path === path).map((m) => m.streamStallMs));
      if (stalls.length === 0) continue;
      process.stdout.write(
        `TCP stall around ${describePath(path, builds)} moves (all sizes): p50 ${fmt(percentile(stalls, 50), 0)} ms, ` +
          `p99 ${fmt(percentile(stalls, 99), 0)} ms, max ${fmt(Math.max(...stalls), 0)} ms (n=${stalls.length}; no target)\n`,
      );
    }
  }
  for (const check of checks) {
    const s = check.stream;
    const stuck = all.filter((m) => m.streamFlowing === false && m.vm === check.vm);
    line(
      s.mismatch === null && s.ended === null && stuck.length === 0 && check.silentAtEndMs < 5_000,
      `${check.vm}: TCP stream ${s.bytes} bytes at ${s.bytesPerSecond} B/s, ` +
        `${s.mismatch === null ? 'no wrong, lost or repeated byte' : `wrong byte at offset ${s.mismatch.offset}`}, ` +
        `${s.ended === null ? 'never reset' : `ended: ${s.ended.reason} ${s.ended.detail}`}; longest stall ${s.longestStallMs} ms` +
        `${stuck.length === 0 ? '' : `; did not flow again after ${stuck.length} move(s)`}, silent ${check.silentAtEndMs} ms at the end`,
    );
  }
  for (const check of checks) {
    const r = check.records;
    line(
      r.ok,
      `${check.vm}: records in the image after shutdown: ${check.acks} acknowledged` +
        ('records' in r ? `, ${r.records} in the file (last ${r.lastSeq}${r.tornTail ? ', torn tail' : ''})` : '') +
        (r.ok ? ', every acknowledged one there, in order, uncorrupted' : `: ${r.problems.join('; ')}`),
    );
  }
  line(failures.length === 0, `${failures.length} failed moves or guests${failures.map((f) => `\n  ${f}`).join('')}`);
  const json = process.env['BENCH_JSON'];
  if (json) writeFileSync(json, `${JSON.stringify(results, null, 2)}\n`);
}

function line(pass: boolean, text: string): void {
  process.stdout.write(`${pass ? 'PASS' : 'FAIL'} ${text}\n`);
}

await main();
