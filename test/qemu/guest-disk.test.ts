/**
 * The test guest as tenants run VMs: booted from its disk through SeaBIOS (no -kernel), its tenant
 * arguments in an SMBIOS OEM string, a qcow2 overlay on virtio-blk or virtio-scsi, a virtio-net NIC
 * on a tap on a test bridge. Two guests boot at once with plain QEMU (not the driver): one on the
 * system's 7.2, one on 10.0.2 (`-L /usr/share/qemu`), both on machine type pc-i440fx-7.2. In each,
 * the record writer acknowledges fsync'd records and a client in the test's namespace holds a TCP
 * stream through the NIC; after a hard stop, every acknowledged record is read back from the image.
 *
 * The checks of the host-side readers (records, stream) run everywhere; the guests skip with the
 * reason when this machine cannot run them, and fail under CI.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  MACHINE_TYPE,
  QEMU10,
  QEMU_FIRMWARE_DIR,
  buildGuestDisk,
  guestDiskPreflight,
  overlayDisk,
  tenantArgsSmbios,
  type TestGuestDisk,
} from './guest-disk.js';
import { findExecutable } from '../../src/service/local-qemu.js';
import { newRunDir, serialLines, sleep } from './qemu-fixture.js';
import { crc32, parseAcks, readRecordsFromImage, verifyRecords } from './records.js';
import { StreamVerifier, expectedStreamByte, startTcpProbe, type TcpProbeReport } from './tcp-probe.js';
import { createTap, createTenantNet, writeTapWrapper, type TenantNet } from './tenant-net.js';

const preflight = guestDiskPreflight({ qemu10: true });
/** Boots under TCG on a loaded two-core machine take 10-60 s. */
const BOOT_MS = 240_000;
/** How long the stream and the records are watched once both run. */
const WATCH_MS = 5_000;

function record(seq: number, payload: string): string {
  return `R ${seq} ${payload} ${crc32(`${seq} ${payload}`).toString(16).padStart(8, '0')}\n`;
}

void describe('guest records and stream, host side', () => {
  it('computes CRC-32 as busybox crc32 does', () => {
    // printf '12 hello' | busybox crc32
    assert.equal(crc32('12 hello').toString(16), 'e4276c5c');
  });

  it('accepts consecutive whole records and a torn line after the last acknowledged one', () => {
    const text = record(1, 'a') + record(2, 'b') + record(3, 'c') + 'R 4 d 1234';
    const verdict = verifyRecords(text, parseAcks('REC ACK 1\nREC ACK 2\r\nB 1 2.0\nREC ACK 3\n'));
    assert.deepEqual(verdict.problems, []);
    assert.equal(verdict.lastSeq, 3);
    assert.equal(verdict.lastAcked, 3);
    assert.equal(verdict.tornTail, true);
    assert.equal(verifyRecords(record(1, 'a') + record(2, 'b'), 1).ok, true, 'unacknowledged records may be there');
  });

  it('rejects a missing acknowledged record, a corrupt, repeated or skipped one', () => {
    assert.equal(verifyRecords(record(1, 'a') + record(2, 'b'), 3).ok, false);
    const corrupt = record(1, 'a') + record(2, 'b').replace('b', 'x') + record(3, 'c');
    assert.match(verifyRecords(corrupt, 3).problems.join(), /checksum/);
    assert.match(verifyRecords(record(1, 'a') + record(1, 'a') + record(2, 'b'), 2).problems.join(), /repeat/);
    assert.match(verifyRecords(record(1, 'a') + record(3, 'c'), 3).problems.join(), /gap/);
    assert.equal(verifyRecords(record(1, 'a') + 'R 2 b 0000', 2).ok, false, 'a torn acknowledged record');
  });

  it('checks a stream byte by byte and measures the gaps between arrivals', () => {
    const stream = Buffer.from(Array.from({ length: 30 }, (_, n) => `${String(n).padStart(9, '0')}\n`).join(''));
    assert.equal(expectedStreamByte(0), 0x30);
    assert.equal(expectedStreamByte(19), 0x0a);
    const good = new StreamVerifier(100);
    good.push(stream.subarray(0, 7), 1000);
    good.push(stream.subarray(7, 200), 1050);
    good.push(stream.subarray(200), 1400);
    assert.equal(good.mismatch, null);
    assert.equal(good.bytes, 300);
    assert.deepEqual(good.longestStall, { atMs: 1400, ms: 350 });
    assert.deepEqual(good.stalls, [{ atMs: 1400, ms: 350 }]);
    const lost = new StreamVerifier(100);
    lost.push(stream.subarray(0, 58), 0);
    lost.push(stream.subarray(59), 10); // line 5 loses its last digit
    assert.equal(lost.mismatch?.offset, 58);
    const repeated = new StreamVerifier(100);
    repeated.push(stream.subarray(0, 50), 0);
    repeated.push(stream.subarray(40), 10);
    assert.ok(repeated.mismatch !== null && repeated.mismatch.offset >= 50, 'a repeat is seen once it differs');
  });
});

/** One guest started with plain QEMU. */
interface Vm {
  readonly name: string;
  readonly version: string;
  readonly overlay: string;
  readonly serial: string;
  readonly address: string;
  readonly startedAtMs: number;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  readonly stderr: () => string;
}

interface BootOptions {
  readonly name: string;
  readonly version: string;
  readonly qemu: string;
  readonly runDir: string;
  readonly guest: TestGuestDisk;
  readonly net: TenantNet;
  readonly index: number;
  readonly wrapper: string;
  readonly bus: 'virtio-blk' | 'virtio-scsi';
  /** Boot from this existing overlay (a reboot) instead of a new one; its tap exists already. */
  readonly reuse?: string;
}

function bootVm(options: BootOptions): Vm {
  const { name, runDir, net, index } = options;
  const overlay = options.reuse ?? overlayDisk(options.guest.disk, join(runDir, `${name}.qcow2`));
  const serial = join(runDir, `${name}.serial`);
  writeFileSync(serial, '');
  const tap = net.tapName(index);
  if (options.reuse === undefined) createTap(tap, net.bridge);
  const tenantArgs = [
    `tenant.name=${name}`,
    `tenant.ip=${net.guestCidr(index)}`,
    'tenant.records=1',
    'tenant.stream=1',
  ];
  const disk =
    options.bus === 'virtio-blk'
      ? ['-device', 'virtio-blk-pci,drive=disk0']
      : ['-device', 'virtio-scsi-pci,id=scsi0', '-device', 'scsi-hd,drive=disk0,bus=scsi0.0'];
  const argv = [
    ...['-name', name, '-accel', 'tcg', '-machine', MACHINE_TYPE, '-m', '256M', '-smp', '1'],
    ...['-nodefaults', '-no-user-config', '-display', 'none', '-vga', 'none', '-L', QEMU_FIRMWARE_DIR],
    ...tenantArgsSmbios(tenantArgs.join(' ')),
    ...['-drive', `file=${overlay},format=qcow2,if=none,id=disk0,cache=writeback`, ...disk],
    ...['-netdev', 'tap,id=nic0,fd=3'],
    ...['-device', `virtio-net-pci,netdev=nic0,mac=52:54:00:77:00:${String(11 + index)},romfile=`],
    ...[
      '-netdev',
      'user,id=net0,net=169.254.0.0/16,host=169.254.0.2,restrict=on',
      '-device',
      'e1000,netdev=net0,romfile=',
    ],
    ...['-device', 'virtio-serial-pci,id=vs0'],
    ...['-chardev', `socket,id=qga0,path=${join(runDir, `${name}.qga`)},server=on,wait=off`],
    ...['-device', 'virtserialport,bus=vs0.0,nr=1,chardev=qga0,name=org.qemu.guest_agent.0'],
    ...['-chardev', `file,id=serial0,path=${serial},append=on`, '-serial', 'chardev:serial0'],
  ];
  const startedAtMs = Date.now();
  const child = spawn('python3', [options.wrapper, tap, '3', options.qemu, ...argv], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  return {
    name,
    version: options.version,
    overlay,
    serial,
    address: net.guestAddress(index),
    startedAtMs,
    child,
    exited,
    stderr: () => stderr,
  };
}

/** What one guest showed. */
interface GuestRun {
  readonly vm: Vm;
  readonly bootMs: number;
  readonly readyUptime: number;
  readonly stream: TcpProbeReport;
  readonly recordsPerSecond: number;
}

/** Waits for a serial line of `vm` matching `pattern`; fails as soon as its QEMU exits. */
async function waitForLine(vm: Vm, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    for (const line of serialLines(vm.serial)) {
      const match = line.match(pattern);
      if (match) return match;
    }
    if (vm.child.exitCode !== null || vm.child.signalCode !== null) {
      throw new Error(`${vm.name} (QEMU ${vm.version}) exited: ${vm.stderr()}`);
    }
    if (Date.now() > end) {
      const last = serialLines(vm.serial).slice(-15).join('\n');
      throw new Error(`${vm.name}: no serial line matching ${pattern} within ${timeoutMs} ms; last lines:\n${last}`);
    }
    await sleep(100);
  }
}

async function watchGuest(vm: Vm, net: TenantNet): Promise<GuestRun> {
  {
    const ready = await waitForLine(vm, /^RC ready uptime=([\d.]+)/, BOOT_MS);
    const bootMs = Date.now() - vm.startedAtMs;
    // The guest agent's port is found by name, wherever the virtio-serial controller is on the bus.
    await waitForLine(vm, /^RC qemu-ga nice=-20/, 1_000);
    await waitForLine(vm, /^STREAM listening/, 30_000);
    await waitForLine(vm, /^REC ACK \d+/, 30_000);
    const probe = startTcpProbe({ namespace: net.namespace, host: vm.address });
    await probe.waitForBytes(10, 30_000);
    const acksBefore = parseAcks(serialLines(vm.serial).join('\n')).length;
    const from = Date.now();
    await sleep(WATCH_MS);
    const acksAfter = parseAcks(serialLines(vm.serial).join('\n')).length;
    const seconds = (Date.now() - from) / 1000;
    const stream = await probe.stop();
    return {
      vm,
      bootMs,
      readyUptime: Number(ready[1]),
      stream,
      recordsPerSecond: Math.round(((acksAfter - acksBefore) / seconds) * 10) / 10,
    };
  }
}

void describe('the test guest booted from its disk (SeaBIOS, QEMU 7.2 and 10.0.2)', { skip: preflight.skip }, () => {
  let runDir = '';
  let net: TenantNet | undefined;
  const vms: Vm[] = [];

  before(() => preflight.assertReady());

  after(async () => {
    for (const vm of vms) vm.child.kill('SIGKILL');
    await Promise.all(vms.map((vm) => vm.exited));
    await net?.close();
    if (runDir !== '') rmSync(runDir, { recursive: true, force: true });
  });

  it('acknowledges durable records, streams through its NIC, and keeps every acknowledged record', async (t) => {
    const guest = buildGuestDisk();
    runDir = newRunDir('disk');
    const tenantNet = await createTenantNet();
    net = tenantNet;
    const wrapper = writeTapWrapper(runDir);
    const common = { runDir, guest, net: tenantNet, wrapper };
    vms.push(
      bootVm({
        ...common,
        name: 'gd72',
        version: '7.2',
        qemu: findExecutable('qemu-system-x86_64') ?? '/usr/bin/qemu-system-x86_64',
        index: 0,
        bus: 'virtio-blk',
      }),
      bootVm({ ...common, name: 'gd10', version: '10.0.2', qemu: QEMU10, index: 1, bus: 'virtio-scsi' }),
    );
    const runs = await Promise.all(vms.map((vm) => watchGuest(vm, tenantNet)));

    for (const r of runs) {
      const s = r.stream;
      t.diagnostic(
        `${r.vm.name} (QEMU ${r.vm.version}): boot from disk to "RC ready" ${r.bootMs} ms (guest uptime ${r.readyUptime} s); ` +
          `${r.recordsPerSecond} records/s; stream ${s.bytesPerSecond} B/s (${s.lines} lines), ` +
          `longest stall ${s.longestStallMs} ms, ${s.stalls.length} over 200 ms`,
      );
      assert.equal(s.mismatch, null, `${r.vm.name}: the stream differs at ${JSON.stringify(s.mismatch)}`);
      assert.equal(s.ended, null, `${r.vm.name}: the stream ended: ${JSON.stringify(s.ended)}`);
      assert.ok(s.bytes >= 1000, `${r.vm.name}: only ${s.bytes} bytes in ${WATCH_MS} ms`);
      assert.ok(r.recordsPerSecond > 1, `${r.vm.name}: ${r.recordsPerSecond} records/s`);
    }

    // Read while the guests run: what they acknowledged so far is in their images already.
    for (const vm of vms) {
      const acks = parseAcks(readFileSync(vm.serial, 'utf8'));
      const verdict = verifyRecords(await readRecordsFromImage(vm.overlay), acks);
      t.diagnostic(`${vm.name} running: ${acks.length} acknowledged, ${verdict.records} records in the image`);
      assert.deepEqual(verdict.problems, [], `${vm.name}: records in the image of the running VM`);
    }

    // A hard stop: whatever was acknowledged must be on the disk, whatever was not may be missing.
    for (const vm of vms) vm.child.kill('SIGKILL');
    await Promise.all(vms.map((vm) => vm.exited));
    let lastOf72 = 0;
    for (const vm of vms) {
      const acks = parseAcks(readFileSync(vm.serial, 'utf8'));
      const text = await readRecordsFromImage(vm.overlay);
      const verdict = verifyRecords(text, acks);
      t.diagnostic(
        `${vm.name}: ${acks.length} acknowledged, ${verdict.records} records in the image (last ${verdict.lastSeq})` +
          (verdict.tornTail ? ', a torn last line' : ''),
      );
      assert.deepEqual(verdict.problems, [], `${vm.name}: records in the image`);
      assert.ok(acks.length > 0 && verdict.lastSeq >= verdict.lastAcked);
      if (vm.name === 'gd72') lastOf72 = verdict.lastSeq;
    }

    // The 7.2 guest's disk, rebooted on 10.0.2: the writer continues after the last whole record
    // (cutting off a torn one), and the file stays one unbroken sequence across both boots.
    const first = vms[0];
    assert.ok(first !== undefined);
    const again = bootVm({
      ...common,
      name: 'gd72r',
      version: '10.0.2',
      qemu: QEMU10,
      index: 0,
      bus: 'virtio-blk',
      reuse: first.overlay,
    });
    vms.push(again);
    const start = await waitForLine(again, /^REC START seq=(\d+) dropped=(\d+)/, BOOT_MS);
    assert.equal(Number(start[1]), lastOf72 + 1, `the writer continues after record ${lastOf72}: ${start[0]}`);
    await waitForLine(again, new RegExp(`^REC ACK ${lastOf72 + 3}$`), 30_000);
    again.child.kill('SIGKILL');
    await again.exited;
    const acks = [...parseAcks(readFileSync(first.serial, 'utf8')), ...parseAcks(readFileSync(again.serial, 'utf8'))];
    const verdict = verifyRecords(await readRecordsFromImage(again.overlay), acks);
    t.diagnostic(`gd72 rebooted on 10.0.2: ${start[0]}; ${verdict.records} records in the image over both boots`);
    assert.deepEqual(verdict.problems, [], 'records over both boots');
  });
});
