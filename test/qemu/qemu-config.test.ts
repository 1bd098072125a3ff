/**
 * The QEMU driver's pure parts: configuration checks and defaults, the command line every process of
 * a VM gets, the host-update hooks. Nothing here starts QEMU.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { MAX_PAUSE_BUDGET_MS, isIntermissionError } from '../../src/domain/index.js';
import {
  QEMU_DRIVER_CAPABILITIES,
  VM_RECORD_FORMAT,
  buildQemuArgv,
  commandHostUpdate,
  macAddress,
  processPaths,
  readVmRecord,
  resolveQemuConfig,
  simulatedHostUpdate,
  vmPaths,
  vmStateOf,
  type QemuDriverConfig,
  type ResolvedVmSpec,
} from '../../src/hypervisor/index.js';

const BASE: QemuDriverConfig = {
  host: 'h1',
  runDir: '/run/iq',
  vmmBuilds: { '7.2': '/usr/bin/qemu-system-x86_64' },
  defaultVmmVersion: '7.2',
  kernel: '/srv/vmlinuz',
  initrd: '/srv/initrd.img',
};

const SPEC: ResolvedVmSpec = {
  vm: 'vm1',
  ramMb: 1024,
  cpus: 2,
  sharedMemory: true,
  guestAgent: true,
  metadataSocket: '/run/iq/vm1/metadata.sock',
  kernelArgs: 'tenant.beat=1',
  devices: [{ driver: 'vfio-pci', props: { host: '0000:3b:00.0' } }],
  objects: [],
  memPath: '/dev/shm/intermission-vm1-abcd.ram',
  vapic: false,
  pciBridgeHotplug: false,
  nicExtraMacRegisters: false,
};

void describe('QEMU driver configuration', () => {
  void it('fills in defaults: kvm, 30 s watchdog cap, every capability', () => {
    const config = resolveQemuConfig(BASE);
    assert.equal(config.accel, 'kvm');
    assert.equal(config.watchdogMaxPauseMs, MAX_PAUSE_BUDGET_MS);
    assert.equal(config.memoryDir, '/dev/shm');
    assert.deepEqual({ ...config.capabilities }, { ...QEMU_DRIVER_CAPABILITIES });
    assert.equal(resolveQemuConfig({ ...BASE, capabilities: { reboot: false } }).capabilities.reboot, false);
  });

  void it('rejects what cannot work, naming it', () => {
    const bad: Partial<QemuDriverConfig>[] = [
      { runDir: 'relative/dir' },
      { vmmBuilds: {} },
      { defaultVmmVersion: 'unknown' },
      { watchdog: { maxPauseMs: MAX_PAUSE_BUDGET_MS + 1 } },
      { defaultRamMb: 0 },
    ];
    for (const change of bad) {
      assert.throws(
        () => resolveQemuConfig({ ...BASE, ...change }),
        (error: unknown) => isIntermissionError(error, 'INVALID_INPUT'),
        JSON.stringify(change),
      );
    }
  });
});

void describe('QEMU command line', () => {
  const config = resolveQemuConfig({ ...BASE, accel: 'tcg' });
  const paths = processPaths(vmPaths(config.runDir, 'vm1').dir, 3);
  const argv = (incoming: boolean): string[] =>
    buildQemuArgv({ config, spec: SPEC, vmPaths: vmPaths(config.runDir, 'vm1'), paths, incoming });
  const after = (args: string[], flag: string): string[] =>
    args.flatMap((value, i) => (args[i - 1] === flag ? [value] : []));

  void it('puts RAM in a shared file mapping and names the VM', () => {
    const args = argv(false);
    assert.deepEqual(after(args, '-accel'), ['tcg']);
    assert.ok(
      after(args, '-object').includes(
        'memory-backend-file,id=ram0,size=1024M,mem-path=/dev/shm/intermission-vm1-abcd.ram,share=on',
      ),
    );
    assert.deepEqual(after(args, '-machine'), ['pc,memory-backend=ram0']);
    assert.ok(after(args, '-append')[0]?.includes('tenant.beat=1'));
  });

  void it('gives each process its own monitors and agent socket, and one metadata channel per VM', () => {
    const args = argv(false);
    assert.deepEqual(after(args, '-qmp'), [
      `unix:${paths.qmp},server=on,wait=off`,
      `unix:${paths.watchdogQmp},server=on,wait=off`,
      `unix:${paths.opsQmp},server=on,wait=off`,
    ]);
    const netdev = after(args, '-netdev')[0] ?? '';
    assert.match(netdev, /restrict=on/);
    assert.match(netdev, /guestfwd=tcp:169\.254\.169\.254:80-cmd:socat - UNIX-CONNECT:\/run\/iq\/vm1\/metadata\.sock$/);
    assert.ok(after(args, '-chardev').some((c) => c.startsWith(`socket,id=qga0,path=${paths.guestAgent}`)));
  });

  void it('is the same machine for every process, the destination waiting for its state', () => {
    const boot = argv(false);
    const incoming = argv(true);
    assert.deepEqual(incoming.slice(0, boot.length), boot);
    assert.deepEqual(incoming.slice(boot.length), ['-incoming', 'defer']);
    assert.equal(macAddress('vm1'), macAddress('vm1'));
    assert.notEqual(macAddress('vm1'), macAddress('vm2'));
    assert.ok(after(boot, '-device').includes('vfio-pci,host=0000:3b:00.0'));
  });

  void it('uses private RAM and the host CPU when asked', () => {
    const kvm = resolveQemuConfig(BASE);
    const args = buildQemuArgv({
      config: kvm,
      spec: { ...SPEC, memPath: null },
      vmPaths: vmPaths(kvm.runDir, 'vm1'),
      paths,
      incoming: false,
    });
    assert.deepEqual(after(args, '-cpu'), ['host']);
    assert.ok(after(args, '-object').includes('memory-backend-ram,id=ram0,size=1024M'));
  });

  void it('leaves out device state nobody uses unless the VM asks for it, and keeps it for VMs recorded with it', () => {
    const argv = (spec: ResolvedVmSpec): string[] =>
      buildQemuArgv({ config, spec, vmPaths: vmPaths(config.runDir, 'vm1'), paths, incoming: false });
    const globals = (spec: ResolvedVmSpec): string[] => after(argv(spec), '-global');
    const nic = (spec: ResolvedVmSpec): string | undefined =>
      after(argv(spec), '-device').find((d) => d.startsWith('e1000'));
    assert.deepEqual(globals(SPEC), ['apic-common.vapic=off', 'PIIX4_PM.acpi-pci-hotplug-with-bridge-support=off']);
    assert.match(nic(SPEC) ?? '', /,extra_mac_registers=off$/);
    assert.deepEqual(globals({ ...SPEC, vapic: true }), ['PIIX4_PM.acpi-pci-hotplug-with-bridge-support=off']);
    assert.deepEqual(globals({ ...SPEC, vapic: true, pciBridgeHotplug: true }), []);
    assert.doesNotMatch(nic({ ...SPEC, nicExtraMacRegisters: true }) ?? '', /extra_mac_registers/);
    // A record written before these fields existed describes a process that ran with QEMU's
    // defaults, which every later process of the VM must keep.
    const dir = mkdtempSync(join(tmpdir(), 'iq-record-'));
    try {
      const { vapic: _v, pciBridgeHotplug: _p, nicExtraMacRegisters: _n, ...older } = SPEC;
      const file = join(dir, 'vm.json');
      const current = {
        generation: 1,
        vmmVersion: '7.2',
        binary: '/usr/bin/qemu',
        pid: 1,
        startedAt: 0,
        watchdogPid: 0,
      };
      const write = (spec: object): void =>
        writeFileSync(file, JSON.stringify({ format: VM_RECORD_FORMAT, host: 'h1', spec, current, pending: null }));
      write(older);
      const read = readVmRecord(file)?.spec;
      assert.deepEqual([read?.vapic, read?.pciBridgeHotplug, read?.nicExtraMacRegisters], [true, true, true]);
      assert.deepEqual(read && globals(read), []);
      // A record from the session that added `vapic` only.
      write({ ...older, vapic: false });
      const middle = readVmRecord(file)?.spec;
      assert.deepEqual([middle?.vapic, middle?.pciBridgeHotplug, middle?.nicExtraMacRegisters], [false, true, true]);
      write(SPEC);
      assert.deepEqual(readVmRecord(file)?.spec, SPEC);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  void it('maps QEMU run states to driver states', () => {
    assert.equal(vmStateOf('running'), 'running');
    assert.equal(vmStateOf('paused'), 'paused');
    assert.equal(vmStateOf('postmigrate'), 'migrating');
    assert.equal(vmStateOf('inmigrate'), 'migrating');
    assert.equal(vmStateOf('shutdown'), 'stopped');
    assert.equal(vmStateOf('internal-error'), 'failed');
  });
});

void describe('host-update hooks', () => {
  const update = { id: 'u1', kind: 'host-patch' as const, expectedApplyMs: 30 };

  void it('the default waits expectedApplyMs and stops at an abort', async () => {
    const started = Date.now();
    await simulatedHostUpdate({ update, deadline: started + 1000, signal: new AbortController().signal });
    assert.ok(Date.now() - started >= 25);
    const abort = new AbortController();
    const waiting = simulatedHostUpdate({
      update: { ...update, expectedApplyMs: 10_000 },
      deadline: 0,
      signal: abort.signal,
    });
    abort.abort(new Error('deadline'));
    await assert.rejects(waiting, /deadline/);
  });

  void it('a command hook succeeds on exit 0, fails otherwise, sees the update in its environment', async () => {
    const signal = new AbortController().signal;
    await commandHostUpdate({ command: ['sh', '-c', 'test "$INTERMISSION_UPDATE_ID" = u1'] })({
      update,
      deadline: 0,
      signal,
    });
    await assert.rejects(
      commandHostUpdate({ command: ['sh', '-c', 'exit 3'] })({ update, deadline: 0, signal }),
      (error: unknown) => isIntermissionError(error, 'CONFLICT'),
    );
  });
});
