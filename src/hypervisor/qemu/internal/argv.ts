/**
 * The QEMU command line of a VM's process: a pure function of the driver settings, the VM's spec
 * and the process's paths, so that every process of one VM gets the same machine and devices (which
 * migration requires) and tests can read it without starting anything.
 */
import { createHash } from 'node:crypto';
import type { ResolvedQemuConfig } from '../qemu-config.js';
import { NON_MIGRATABLE_DEVICE_DRIVERS, type QemuDeviceSpec } from '../qemu-types.js';
import { OVMF_CODE_FILE, OVMF_VARS_FILE } from './firmware.js';
import type { ProcessPaths, ResolvedVmSpec, VmPaths } from './layout.js';
import { tapFd } from './tap.js';

/** The guest's view of its metadata network (notes: user networking with a guestfwd per VM). */
export const GUEST_NETWORK = Object.freeze({
  net: '169.254.0.0/16',
  host: '169.254.0.2',
  metadataAddress: '169.254.169.254',
  metadataPort: 80,
});

/** Options of {@link buildQemuArgv}. */
export interface QemuArgvOptions {
  readonly config: Pick<ResolvedQemuConfig, 'accel' | 'kernel' | 'initrd' | 'kernelArgs' | 'socatBinary'>;
  readonly spec: ResolvedVmSpec;
  /** The data directory of the process's build (`-L`, after the VM's pinned firmware), if it names one. */
  readonly dataDir?: string | null;
  readonly vmPaths: Pick<VmPaths, 'serialLog'>;
  readonly paths: ProcessPaths;
  /** Start waiting for an incoming migration (`-incoming defer`) instead of booting. */
  readonly incoming: boolean;
}

/** The arguments after the QEMU binary. */
export function buildQemuArgv(options: QemuArgvOptions): string[] {
  const { config, spec, paths } = options;
  const args: string[] = [];
  const push = (...values: string[]): void => {
    args.push(...values);
  };
  push('-name', `${spec.vm},debug-threads=on`);
  // Firmware and option ROMs: the VM's pinned copies first, so that every build loads the images
  // the VM was created with (QEMU searches `-L` directories in the order given, before its own).
  if (spec.firmware !== undefined) push('-L', spec.firmware.dir);
  if (options.dataDir) push('-L', options.dataDir);
  push('-accel', config.accel);
  const cpu = spec.cpuModel ?? (config.accel === 'kvm' ? 'host' : null);
  if (cpu !== null) push('-cpu', cpu);
  // The machine type pinned at creation; `pc` for a VM recorded before pinning.
  push('-machine', `${spec.machine ?? 'pc'},memory-backend=ram0`);
  push('-m', `${spec.ramMb}M`);
  push(
    '-object',
    spec.memPath === null
      ? `memory-backend-ram,id=ram0,size=${spec.ramMb}M`
      : `memory-backend-file,id=ram0,size=${spec.ramMb}M,mem-path=${spec.memPath},share=on`,
  );
  push('-smp', String(spec.cpus));
  push('-nodefaults', '-no-user-config', '-display', 'none', '-vga', 'none', '-no-shutdown');
  // Device state the switchover would save and load for nothing (see `ResolvedVmSpec`).
  // `apic-common` covers the TCG and the KVM APIC alike.
  if (!spec.vapic) push('-global', 'apic-common.vapic=off');
  if (!spec.pciBridgeHotplug) push('-global', 'PIIX4_PM.acpi-pci-hotplug-with-bridge-support=off');
  const boot = spec.boot ?? { kind: 'kernel', kernel: null, initrd: null, args: '' };
  const tenantArgs = [`tenant.name=${spec.vm}`, config.kernelArgs, spec.kernelArgs];
  if (boot.kind === 'kernel') {
    const kernel = boot.kernel ?? config.kernel;
    const initrd = boot.initrd ?? config.initrd;
    if (kernel === null || initrd === null) throw new Error(`VM ${spec.vm} boots a kernel, but none is configured`);
    push('-kernel', kernel, '-initrd', initrd);
    const append = ['console=ttyS0', 'panic=-1', 'quiet', boot.args, ...tenantArgs]
      .filter((part) => part !== '')
      .join(' ');
    push('-append', append);
  } else {
    if (boot.firmware === 'ovmf') {
      const dir = spec.firmware?.dir;
      if (dir === undefined) throw new Error(`VM ${spec.vm} boots OVMF, but has no pinned firmware`);
      push('-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${dir}/${OVMF_CODE_FILE}`);
      push('-drive', `if=pflash,format=raw,unit=1,file=${dir}/${OVMF_VARS_FILE}`);
    }
    // No kernel command line: the tenant's arguments reach the guest as an SMBIOS OEM string.
    const oem = tenantArgs.filter((part) => part !== '').join(' ');
    push('-smbios', `type=11,value=intermission.args=${oem.replaceAll(',', ',,')}`);
  }
  push('-chardev', `file,id=serial0,path=${options.vmPaths.serialLog},append=on`, '-serial', 'chardev:serial0');
  if (spec.guestAgent) {
    push('-device', 'virtio-serial-pci,id=virtio-serial0');
    push('-chardev', `socket,id=qga0,path=${paths.guestAgent},server=on,wait=off`);
    push('-device', 'virtserialport,bus=virtio-serial0.0,nr=1,chardev=qga0,name=org.qemu.guest_agent.0');
  }
  const forward =
    `guestfwd=tcp:${GUEST_NETWORK.metadataAddress}:${GUEST_NETWORK.metadataPort}` +
    `-cmd:${config.socatBinary} - UNIX-CONNECT:${spec.metadataSocket}`;
  push(
    '-netdev',
    `user,id=net0,net=${GUEST_NETWORK.net},host=${GUEST_NETWORK.host},restrict=on,${forward}`,
    '-device',
    // No option ROM: nothing boots from the network, and a smaller ROM is less to migrate.
    `e1000,netdev=net0,mac=${macAddress(spec.vm)},romfile=${spec.nicExtraMacRegisters ? '' : ',extra_mac_registers=off'}`,
  );
  const disks = spec.disks ?? [];
  if (disks.some((disk) => disk.bus === 'virtio-scsi')) push('-device', 'virtio-scsi-pci,id=scsi0');
  disks.forEach((disk, i) => {
    push(
      '-drive',
      `file=${disk.path},format=${disk.format},if=none,id=disk${i},cache=${disk.cache}${disk.readOnly ? ',readonly=on' : ''}`,
    );
    const device = disk.bus === 'virtio-blk' ? 'virtio-blk-pci' : 'scsi-hd,bus=scsi0.0';
    const serial = disk.serial === null ? '' : `,serial=${disk.serial}`;
    const bootIndex = boot.kind === 'firmware' && i === 0 ? ',bootindex=1' : '';
    push('-device', `${device},drive=disk${i},id=vdisk${i}${serial}${bootIndex}`);
  });
  (spec.nics ?? []).forEach((nic, i) => {
    // The tap queue is opened by the exec wrapper at a fixed descriptor (see tap.ts).
    push('-netdev', `tap,id=nic${i},fd=${tapFd(i)},vhost=off`);
    const extra = nic.model === 'e1000' && !spec.nicExtraMacRegisters ? ',extra_mac_registers=off' : '';
    push('-device', `${nic.model},netdev=nic${i},id=vnic${i},mac=${nic.mac},romfile=${extra}`);
  });
  for (const object of spec.objects) push('-object', object);
  for (const device of spec.devices) push('-device', deviceOption(device));
  push('-qmp', `unix:${paths.qmp},server=on,wait=off`);
  push('-qmp', `unix:${paths.watchdogQmp},server=on,wait=off`);
  push('-qmp', `unix:${paths.opsQmp},server=on,wait=off`);
  if (options.incoming) push('-incoming', 'defer');
  return args;
}

/** A stable, locally administered MAC address for a VM (the same in every process of the VM). */
export function macAddress(vm: string): string {
  const digest = createHash('sha256').update(vm).digest();
  const bytes = [0x52, 0x54, 0x00, digest[0] ?? 0, digest[1] ?? 0, digest[2] ?? 0];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** `driver,key=value,…`; values must not contain commas (checked when the spec is resolved). */
export function deviceOption(device: QemuDeviceSpec): string {
  const props = Object.entries(device.props ?? {}).map(([key, value]) => `${key}=${String(value)}`);
  return [device.driver, ...props].join(',');
}

/** Whether a device's state can be migrated (see {@link QemuDeviceSpec.migratable}). */
export function isMigratableDevice(device: QemuDeviceSpec): boolean {
  return device.migratable ?? !NON_MIGRATABLE_DEVICE_DRIVERS.includes(device.driver);
}

/** How a blocking device is shown to the operator, e.g. `vfio-pci host=0000:3b:00.0`. */
export function describeDevice(device: QemuDeviceSpec): string {
  const props = Object.entries(device.props ?? {}).map(([key, value]) => `${key}=${String(value)}`);
  return [device.driver, ...props].join(' ');
}
