/**
 * Tenant VM specs without QEMU: what a spec may say (checked at the edge, bounded), the command line
 * of each boot (SeaBIOS, OVMF, direct kernel), disks and tap NICs, firmware pinning, what a build can
 * load, the tap exec wrapper, and that a VM recorded before any of this keeps its command line.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after as afterAll, describe, it } from 'node:test';
import { isIntermissionError } from '../../src/domain/index.js';
import {
  TAP_ATTACH_SCRIPT,
  TAP_EXEC_SCRIPT,
  buildQemuArgv,
  canLoad,
  defaultTapName,
  nicMacAddress,
  parseDeviceHelp,
  parseMachineHelp,
  pinFirmware,
  pinSpec,
  processPaths,
  readVmRecord,
  resolveQemuConfig,
  resolveVmParts,
  vmPaths,
  wrapWithTaps,
  type BuildProbe,
  type QemuDriverConfig,
  type QemuVmSpec,
  type ResolvedVmSpec,
} from '../../src/hypervisor/index.js';
import { parseQemuHostConfig } from '../../src/service/qemu-host.js';

const BASE: QemuDriverConfig = {
  host: 'h1',
  runDir: '/run/iq',
  vmmBuilds: {
    '7.2': '/usr/bin/qemu-system-x86_64',
    '10.0.2': { binary: '/opt/q10/usr/bin/qemu-system-x86_64', dataDir: '/usr/share/qemu' },
  },
  defaultVmmVersion: '7.2',
  kernel: '/srv/vmlinuz',
  initrd: '/srv/initrd.img',
  accel: 'tcg',
};
const config = resolveQemuConfig(BASE);
const vmp = vmPaths(config.runDir, 'web_0');
const paths = processPaths(vmp.dir, 2);

/** A VM as recorded before disks, NICs, boot and pinning existed. */
const OLD: ResolvedVmSpec = {
  vm: 'web_0',
  ramMb: 256,
  cpus: 1,
  sharedMemory: true,
  guestAgent: true,
  metadataSocket: '/run/iq/web_0/metadata.sock',
  kernelArgs: 'tenant.beat=1',
  devices: [],
  objects: [],
  memPath: '/dev/shm/intermission-web_0-abcd.ram',
  vapic: false,
  pciBridgeHotplug: false,
  nicExtraMacRegisters: false,
};

function spec(options: Omit<QemuVmSpec, 'vm'>, pinned: Partial<ResolvedVmSpec> = {}): ResolvedVmSpec {
  const parts = resolveVmParts({ vm: 'web_0', ...options }, config);
  return {
    ...OLD,
    ...(options.kernelArgs === undefined ? {} : { kernelArgs: options.kernelArgs }),
    boot: parts.boot,
    disks: parts.disks,
    nics: parts.nics,
    cpuModel: parts.cpuModel,
    ...(parts.machine === null ? {} : { machine: parts.machine }),
    ...pinned,
  };
}

const argv = (s: ResolvedVmSpec, dataDir: string | null = null): string[] =>
  buildQemuArgv({ config, spec: s, vmPaths: vmp, paths, incoming: false, dataDir });
const after = (args: string[], flag: string): string[] =>
  args.flatMap((value, i) => (args[i - 1] === flag ? [value] : []));
const invalid = (error: unknown): boolean => isIntermissionError(error, 'INVALID_INPUT');

const FIRMWARE = { dir: '/run/iq/web_0/firmware', files: ['bios-256k.bin'], fromVersion: '7.2' };

void describe('VM spec: disks, NICs, boot', () => {
  void it('fills in defaults: virtio-blk, cache none, format from the name, virtio-net, stable tap and MAC, kernel boot', () => {
    const parts = resolveVmParts(
      {
        vm: 'web_0',
        disks: [{ path: '/srv/web_0.qcow2' }, { path: '/srv/data.img' }],
        nics: [{ bridge: 'br0' }, { bridge: 'br1' }],
      },
      config,
    );
    assert.deepEqual(parts.disks[0], {
      path: '/srv/web_0.qcow2',
      format: 'qcow2',
      bus: 'virtio-blk',
      cache: 'none',
      readOnly: false,
      serial: null,
    });
    assert.equal(parts.disks[1]?.format, 'raw');
    assert.equal(parts.nics[0]?.tap, defaultTapName('web_0', 0));
    assert.ok((parts.nics[0]?.tap.length ?? 99) <= 15);
    assert.notEqual(parts.nics[0]?.tap, parts.nics[1]?.tap);
    assert.equal(parts.nics[0]?.mac, nicMacAddress('web_0', 0));
    assert.equal(nicMacAddress('web_0', 0), nicMacAddress('web_0', 0));
    assert.notEqual(nicMacAddress('web_0', 0), nicMacAddress('web_1', 0));
    assert.equal(parts.nics[0]?.model, 'virtio-net-pci');
    assert.deepEqual(parts.boot, { kind: 'kernel', kernel: null, initrd: null, args: '' });
    assert.equal(parts.cpuModel, null);
    assert.equal(parts.machine, null);
    // Without a driver kernel, a VM boots through SeaBIOS from its disk.
    const noKernel = resolveQemuConfig({ ...BASE, kernel: undefined, initrd: undefined });
    assert.deepEqual(resolveVmParts({ vm: 'v', disks: [{ path: '/srv/v.raw' }] }, noKernel).boot, {
      kind: 'firmware',
      firmware: 'seabios',
    });
  });

  void it('refuses what would break an option or exceed a bound, naming the field', () => {
    const bad: [Omit<QemuVmSpec, 'vm'>, RegExp][] = [
      [{ disks: [{ path: 'relative.qcow2' }] }, /disks\[0\]\.path/],
      [{ disks: [{ path: '/srv/a,b.qcow2' }] }, /disks\[0\]\.path/],
      [{ disks: [{ path: '/srv/a.qcow2', format: 'vmdk' as 'raw' }] }, /disks\[0\]\.format must be one of raw, qcow2/],
      [{ disks: [{ path: '/srv/a.qcow2', cache: 'fast' as 'none' }] }, /disks\[0\]\.cache/],
      [{ disks: [{ path: '/srv/a.qcow2', serial: 'has space' }] }, /serial/],
      [{ disks: [{ path: '/srv/a.qcow2' }, { path: '/srv/a.qcow2' }] }, /same image/],
      [{ disks: Array.from({ length: 17 }, (_, i) => ({ path: `/srv/d${i}.raw` })) }, /at most 16/],
      [{ nics: [{ bridge: 'br0,x' }] }, /nics\[0\]\.bridge/],
      [{ nics: [{ bridge: 'br0', tap: 'a-very-long-tap-name' }] }, /nics\[0\]\.tap/],
      [{ nics: [{ bridge: 'br0', mac: '53:54:00:00:00:01' }] }, /unicast/],
      [{ nics: [{ bridge: 'br0', mac: 'zz' }] }, /mac/],
      [
        {
          nics: [
            { bridge: 'br0', tap: 't0' },
            { bridge: 'br1', tap: 't0' },
          ],
        },
        /same tap/,
      ],
      [{ nics: Array.from({ length: 9 }, () => ({ bridge: 'br0' })) }, /at most 8/],
      [{ boot: { kind: 'firmware', firmware: 'seabios' } }, /needs a disk/],
      [
        { boot: { kind: 'firmware', firmware: 'coreboot' as 'ovmf' }, disks: [{ path: '/srv/a.raw' }] },
        /boot\.firmware/,
      ],
      [
        { boot: { kind: 'firmware', firmware: 'ovmf' }, disks: [{ path: '/srv/a.raw' }], kernelArgs: 'a=1,2' },
        /commas/,
      ],
      [{ boot: { kind: 'kernel', args: 'x="y"' } }, /boot\.args/],
      [{ boot: { kind: 'floppy' } as unknown as QemuVmSpec['boot'] }, /boot\.kind/],
      [{ cpuModel: 'host,+vmx' }, /cpuModel/],
      [{ machine: 'pc -bios x' }, /machine/],
    ];
    for (const [options, message] of bad) {
      assert.throws(
        () => resolveVmParts({ vm: 'web_0', ...options }, config),
        (error: unknown) => invalid(error) && message.test((error as Error).message),
        JSON.stringify(options).slice(0, 200),
      );
    }
    const noKernel = resolveQemuConfig({ ...BASE, kernel: undefined, initrd: undefined });
    assert.throws(() => resolveVmParts({ vm: 'v', boot: { kind: 'kernel' } }, noKernel), invalid);
  });
});

void describe('VM command line', () => {
  void it('keeps the command line of a VM recorded before pinning: pc, system firmware, direct kernel', () => {
    const args = argv(OLD);
    assert.deepEqual(after(args, '-machine'), ['pc,memory-backend=ram0']);
    assert.deepEqual(after(args, '-L'), []);
    assert.deepEqual(after(args, '-kernel'), ['/srv/vmlinuz']);
    assert.deepEqual(after(args, '-smbios'), []);
    assert.ok(!args.some((a) => a.startsWith('tap,') || a.startsWith('file=')));
    // And its record, written without the new fields, reads back as such.
    const dir = mkdtempSync(join(tmpdir(), 'iq-old-'));
    try {
      const file = join(dir, 'vm.json');
      const current = {
        generation: 1,
        vmmVersion: '7.2',
        binary: '/usr/bin/qemu',
        pid: 1,
        startedAt: 0,
        watchdogPid: 0,
      };
      writeFileSync(file, JSON.stringify({ format: 1, host: 'h1', spec: OLD, current, pending: null }));
      const record = readVmRecord(file);
      assert.equal(record?.spec.machine, undefined);
      assert.deepEqual(argv(record?.spec ?? OLD), args);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  void it('boots SeaBIOS from the first disk: pinned machine and firmware first, tenant args as an SMBIOS OEM string', () => {
    const s = spec(
      {
        boot: { kind: 'firmware', firmware: 'seabios' },
        disks: [
          { path: '/srv/web_0.qcow2', cache: 'writeback', serial: 'root' },
          { path: '/srv/data.raw', bus: 'virtio-scsi', readOnly: true },
        ],
        nics: [{ bridge: 'br0' }, { bridge: 'br0', model: 'e1000', mac: '52:54:00:aa:bb:cc', tap: 'web0b' }],
        kernelArgs: 'tenant.ip=10.77.0.11/24 tenant.records=1',
        cpuModel: 'qemu64',
      },
      { machine: 'pc-i440fx-7.2', firmware: FIRMWARE },
    );
    const args = argv(s, '/usr/share/qemu');
    assert.deepEqual(after(args, '-L'), ['/run/iq/web_0/firmware', '/usr/share/qemu']);
    assert.ok(args.indexOf('-L') < args.indexOf('-machine'));
    assert.deepEqual(after(args, '-machine'), ['pc-i440fx-7.2,memory-backend=ram0']);
    assert.deepEqual(after(args, '-cpu'), ['qemu64']);
    assert.deepEqual(after(args, '-kernel'), []);
    assert.deepEqual(after(args, '-append'), []);
    assert.deepEqual(after(args, '-smbios'), [
      'type=11,value=intermission.args=tenant.name=web_0 tenant.ip=10.77.0.11/24 tenant.records=1',
    ]);
    assert.deepEqual(after(args, '-drive'), [
      'file=/srv/web_0.qcow2,format=qcow2,if=none,id=disk0,cache=writeback',
      'file=/srv/data.raw,format=raw,if=none,id=disk1,cache=none,readonly=on',
    ]);
    const devices = after(args, '-device');
    assert.ok(devices.includes('virtio-scsi-pci,id=scsi0'));
    assert.ok(devices.includes('virtio-blk-pci,drive=disk0,id=vdisk0,serial=root,bootindex=1'));
    assert.ok(devices.includes('scsi-hd,bus=scsi0.0,drive=disk1,id=vdisk1'));
    assert.deepEqual(
      after(args, '-netdev').filter((n) => n.startsWith('tap')),
      ['tap,id=nic0,fd=3,vhost=off', 'tap,id=nic1,fd=4,vhost=off'],
    );
    assert.ok(devices.includes(`virtio-net-pci,netdev=nic0,id=vnic0,mac=${nicMacAddress('web_0', 0)},romfile=`));
    assert.ok(devices.includes('e1000,netdev=nic1,id=vnic1,mac=52:54:00:aa:bb:cc,romfile=,extra_mac_registers=off'));
    // The metadata NIC is still the first e1000 on user networking.
    assert.match(after(args, '-netdev')[0] ?? '', /^user,id=net0,/);
  });

  void it('boots OVMF from pflash: its code read-only, the VM own variable store writable', () => {
    const s = spec(
      { boot: { kind: 'firmware', firmware: 'ovmf' }, disks: [{ path: '/srv/web_0.raw' }] },
      { machine: 'pc-i440fx-7.2', firmware: { ...FIRMWARE, files: ['OVMF_CODE.fd', 'OVMF_VARS.fd'] } },
    );
    const drives = after(argv(s), '-drive');
    assert.deepEqual(drives.slice(0, 2), [
      'if=pflash,format=raw,unit=0,readonly=on,file=/run/iq/web_0/firmware/OVMF_CODE.fd',
      'if=pflash,format=raw,unit=1,file=/run/iq/web_0/firmware/OVMF_VARS.fd',
    ]);
  });

  void it('boots a kernel of the spec with its args before the tenant ones; escapes commas of the driver args in SMBIOS', () => {
    const s = spec({ boot: { kind: 'kernel', kernel: '/srv/k2', initrd: '/srv/i2', args: 'root=/dev/vda1' } });
    const args = argv(s);
    assert.deepEqual(after(args, '-kernel'), ['/srv/k2']);
    assert.deepEqual(after(args, '-initrd'), ['/srv/i2']);
    assert.match(
      after(args, '-append')[0] ?? '',
      /^console=ttyS0 panic=-1 quiet root=\/dev\/vda1 tenant\.name=web_0 tenant\.beat=1$/,
    );
    const commas = resolveQemuConfig({ ...BASE, kernelArgs: 'a=1,2' });
    const fw = spec({ boot: { kind: 'firmware', firmware: 'seabios' }, disks: [{ path: '/srv/x.raw' }] });
    const out = buildQemuArgv({ config: commas, spec: fw, vmPaths: vmp, paths, incoming: false });
    assert.deepEqual(after(out, '-smbios'), ['type=11,value=intermission.args=tenant.name=web_0 a=1,,2 tenant.beat=1']);
  });

  void it('starts QEMU through the tap wrapper only when the VM has NICs, each queue at its fd', () => {
    const s = spec({
      nics: [
        { bridge: 'br0', tap: 'tapA' },
        { bridge: 'br0', tap: 'tapB' },
      ],
    });
    const plain = wrapWithTaps('python3', '/usr/bin/qemu', ['-name', 'x'], []);
    assert.deepEqual(plain, { command: '/usr/bin/qemu', args: ['-name', 'x'] });
    const wrapped = wrapWithTaps('python3', '/usr/bin/qemu', ['-name', 'x'], s.nics ?? []);
    assert.deepEqual(wrapped, {
      command: 'python3',
      args: ['-c', TAP_EXEC_SCRIPT, 'tapA', '3', 'tapB', '4', '--', '/usr/bin/qemu', '-name', 'x'],
    });
    assert.match(TAP_EXEC_SCRIPT, /IFF_MULTI_QUEUE/);
    // A swap's new process: its queues start detached (attached just before the switchover).
    const detached = wrapWithTaps('python3', '/usr/bin/qemu', ['-name', 'x'], s.nics ?? [], { detached: true });
    assert.deepEqual(detached.args.slice(2, 5), ['--detached', 'tapA', '3']);
    // Both Python programs at least compile.
    for (const script of [TAP_EXEC_SCRIPT, TAP_ATTACH_SCRIPT]) {
      const check = spawnSync('python3', ['-c', 'import sys; compile(sys.stdin.read(), "tap", "exec")'], {
        input: script,
        encoding: 'utf8',
      });
      assert.equal(check.status, 0, check.stderr);
    }
  });
});

void describe('Builds and pinning', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });
  const MACHINE_HELP = [
    'Supported machines are:',
    'microvm              microvm (i386)',
    'pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)',
    'pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)',
    'pc-i440fx-7.1        Standard PC (i440FX + PIIX, 1996)',
    'q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)',
  ].join('\n');
  const DEVICE_HELP = [
    'Network devices:',
    'name "e1000", bus PCI, alias "e1000-82540em", desc "Intel Gigabit Ethernet"',
    'name "virtio-net-pci", bus PCI, alias "virtio-net"',
    'name "virtio-blk-pci", bus PCI, alias "virtio-blk"',
    'name "virtio-serial-pci", bus PCI, alias "virtio-serial"',
    'name "virtserialport", bus virtio-serial-bus',
  ].join('\n');
  const probe = (over: Partial<BuildProbe> = {}): BuildProbe => ({
    version: '7.2',
    binary: '/usr/bin/qemu-system-x86_64',
    qemuVersion: '7.2.22',
    ...parseMachineHelp(MACHINE_HELP),
    devices: parseDeviceHelp(DEVICE_HELP),
    devicesComplete: true,
    error: null,
    ...over,
  });

  void it('reads machine types with their aliases and device models from QEMU help', () => {
    const { machines, aliases } = parseMachineHelp(MACHINE_HELP);
    assert.ok(machines.has('pc-i440fx-7.1') && machines.has('pc') && !machines.has('Supported'));
    assert.equal(aliases.get('pc'), 'pc-i440fx-7.2');
    assert.equal(aliases.get('q35'), 'pc-q35-7.2');
    const devices = parseDeviceHelp(DEVICE_HELP);
    assert.ok(devices.has('virtio-net-pci') && devices.has('virtio-net') && devices.has('virtserialport'));
  });

  void it('pins a new VM to the versioned machine type and the firmware images it boots with', () => {
    const root = mkdtempSync(join(tmpdir(), 'iq-pin-'));
    dirs.push(root);
    const share = join(root, 'share');
    mkdirSync(share);
    for (const name of ['bios-256k.bin', 'linuxboot_dma.bin', 'OVMF_CODE_4M.fd', 'OVMF_VARS_4M.fd']) {
      writeFileSync(join(share, name), name);
    }
    const kernelVm = spec({});
    const pinned = pinSpec(kernelVm, {
      probe: probe(),
      firmwareDir: join(root, 'k'),
      searchDirs: ['/nonexistent', share],
    });
    assert.equal(pinned.machine, 'pc-i440fx-7.2');
    assert.deepEqual(pinned.firmware?.files, ['bios-256k.bin', 'linuxboot_dma.bin']);
    assert.equal(readFileSync(join(root, 'k', 'bios-256k.bin'), 'utf8'), 'bios-256k.bin');
    const ovmf = spec({
      boot: { kind: 'firmware', firmware: 'ovmf' },
      disks: [{ path: '/srv/a.raw' }],
      machine: 'pc-i440fx-7.1',
    });
    const o = pinFirmware(
      { ...ovmf, machine: 'pc-i440fx-7.1' },
      { dir: join(root, 'o'), searchDirs: [share], fromVersion: '7.2' },
    );
    assert.deepEqual(o.files, ['OVMF_CODE.fd', 'OVMF_VARS.fd']);
    assert.equal(statSync(join(root, 'o', 'OVMF_CODE.fd')).mode & 0o777, 0o444);
    assert.equal(statSync(join(root, 'o', 'OVMF_VARS.fd')).mode & 0o777, 0o600);
    assert.equal(
      pinSpec(ovmf, { probe: probe(), firmwareDir: join(root, 'o2'), searchDirs: [share] }).machine,
      'pc-i440fx-7.1',
    );
    // A machine type or device model the build lacks, firmware found nowhere, a build that did not answer.
    assert.throws(
      () =>
        pinSpec(spec({ machine: 'pc-i440fx-9.9' }), {
          probe: probe(),
          firmwareDir: join(root, 'x'),
          searchDirs: [share],
        }),
      invalid,
    );
    assert.throws(
      () =>
        pinSpec(spec({ disks: [{ path: '/srv/a.raw', bus: 'virtio-scsi' }] }), {
          probe: probe(),
          firmwareDir: join(root, 'x'),
          searchDirs: [share],
        }),
      /lacks scsi-hd, virtio-scsi-pci/,
    );
    assert.throws(
      () => pinSpec(kernelVm, { probe: probe(), firmwareDir: join(root, 'x'), searchDirs: ['/nonexistent'] }),
      /bios-256k\.bin is in none of/,
    );
    assert.throws(
      () =>
        pinSpec(kernelVm, {
          probe: probe({ error: 'cannot probe' }),
          firmwareDir: join(root, 'x'),
          searchDirs: [share],
        }),
      /cannot probe/,
    );
  });

  void it('says whether a build can load a VM, and why not', () => {
    const root = mkdtempSync(join(tmpdir(), 'iq-load-'));
    dirs.push(root);
    writeFileSync(join(root, 'bios-256k.bin'), '');
    const vm = spec(
      { nics: [{ bridge: 'br0' }] },
      { machine: 'pc-i440fx-7.2', firmware: { dir: root, files: ['bios-256k.bin'], fromVersion: '7.2' } },
    );
    assert.deepEqual(canLoad(probe(), vm), { loadable: true });
    const older = probe({
      version: '6.2',
      ...parseMachineHelp('pc   Standard PC (alias of pc-i440fx-6.2)\npc-i440fx-6.2  Standard PC'),
    });
    assert.deepEqual(canLoad(older, vm), { loadable: false, reason: 'build 6.2 has no machine type pc-i440fx-7.2' });
    const noNet = probe({ devices: new Set(['e1000', 'virtio-serial-pci', 'virtserialport']) });
    assert.match(canLoad(noNet, vm).reason ?? '', /lacks device model virtio-net-pci/);
    // A build whose device list is partial does not count other models as missing.
    const partial = probe({
      devices: new Set(['e1000', 'virtio-serial-pci', 'virtserialport', 'virtio-net-pci']),
      devicesComplete: false,
    });
    assert.deepEqual(canLoad(partial, { ...vm, devices: [{ driver: 'ivshmem-plain' }] }), { loadable: true });
    assert.match(
      canLoad(probe(), { ...vm, firmware: { dir: root, files: ['gone.bin'], fromVersion: '7.2' } }).reason ?? '',
      /pinned firmware missing: gone\.bin/,
    );
    assert.deepEqual(canLoad(probe({ error: 'cannot probe /x' }), vm), { loadable: false, reason: 'cannot probe /x' });
    // A VM recorded before pinning runs `pc`: a build whose `pc` is the same type loads it, another not.
    assert.deepEqual(canLoad(probe({ version: '7.2-b' }), OLD, probe()), { loadable: true });
    assert.deepEqual(canLoad(older, OLD, probe()), {
      loadable: false,
      reason:
        'the VM runs the unversioned machine type pc (pc-i440fx-7.2 on build 7.2), which build 6.2 takes as pc-i440fx-6.2',
    });
  });
});

void describe('Configuration and host file', () => {
  void it('takes builds as a binary or a binary with its data directory; kernel and initrd go together', () => {
    assert.deepEqual(config.vmmBuilds, {
      '7.2': '/usr/bin/qemu-system-x86_64',
      '10.0.2': '/opt/q10/usr/bin/qemu-system-x86_64',
    });
    assert.deepEqual(config.buildDataDirs, { '10.0.2': '/usr/share/qemu' });
    assert.throws(() => resolveQemuConfig({ ...BASE, initrd: undefined }), invalid);
    assert.throws(
      () => resolveQemuConfig({ ...BASE, vmmBuilds: { a: { binary: '/q', dataDir: 'rel' } }, defaultVmmVersion: 'a' }),
      invalid,
    );
    assert.equal(resolveQemuConfig({ ...BASE, kernel: undefined, initrd: undefined }).kernel, null);
  });

  void it('reads per-VM disks, NICs, boot, CPU model and machine from the host file, paths made absolute', () => {
    const parsed = parseQemuHostConfig(
      {
        runDir: 'run',
        vmmBuilds: {
          '7.2': '/usr/bin/qemu-system-x86_64',
          '10.0.2': { binary: 'q10/qemu', dataDir: '/usr/share/qemu' },
        },
        defaultVmmVersion: '7.2',
        metadataDir: 'md',
        vms: {
          web_0: {
            boot: { kind: 'firmware', firmware: 'ovmf' },
            disks: [{ path: 'disks/web_0.qcow2', cache: 'writeback' }],
            nics: [{ bridge: 'br0', mac: '52:54:00:12:34:56' }],
            cpuModel: 'qemu64',
            machine: 'pc-i440fx-7.2',
          },
        },
      },
      '/etc/intermission',
    );
    assert.deepEqual(parsed.vmmBuilds['10.0.2'], { binary: '/etc/intermission/q10/qemu', dataDir: '/usr/share/qemu' });
    assert.equal(parsed.kernel, undefined);
    assert.equal(parsed.vms?.web_0?.disks?.[0]?.path, '/etc/intermission/disks/web_0.qcow2');
    for (const vm of [
      { disks: [{ path: '/a', bus: 'ide' }] },
      { nics: [{ bridge: 'br0', mac: 'nope' }] },
      { boot: { kind: 'firmware', firmware: 'uboot' } },
      { nics: Array.from({ length: 9 }, () => ({ bridge: 'br0' })) },
      { disks: [{ path: '/a', extra: 1 }] },
    ]) {
      assert.throws(
        () =>
          parseQemuHostConfig(
            { runDir: 'r', vmmBuilds: { a: '/q' }, defaultVmmVersion: 'a', metadataDir: 'm', vms: { v: vm } },
            '/etc',
          ),
        invalid,
        JSON.stringify(vm),
      );
    }
  });
});
