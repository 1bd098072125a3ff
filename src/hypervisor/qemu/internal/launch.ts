/**
 * Creating and destroying VMs: the spec of a new VM checked and pinned (machine type, firmware),
 * its first process started, and everything of a VM removed again.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { IntermissionError } from '../../../domain/index.js';
import type { VmOperationOptions } from '../../driver.js';
import type { QemuLaunchOptions, QemuVmInfo } from '../qemu-types.js';
import { binaryOf, handleOf, runCall } from './calls.js';
import { resyncQuietly, waitForAgent } from './clock.js';
import { writeRecord, type QemuContext, type VmHandle } from './context.js';
import { describe } from './describe.js';
import { callError } from './errors.js';
import { firmwareSearchDirs } from './firmware.js';
import {
  SAFE_PATH_PATTERN,
  VM_NAME_PATTERN,
  VM_RECORD_FORMAT,
  checkSocketPath,
  ensureDir,
  processPaths,
  removeFile,
  vmPaths,
  type ResolvedVmSpec,
} from './layout.js';
import { deleteTaps } from './tap.js';
import { pinSpec, resolveVmParts } from './vm-spec.js';
import { adoptProcess, retire, startProcess } from './vm-process.js';

/**
 * Starts a new VM: records it, starts its QEMU process and resume watchdog, and (by default) waits
 * for its guest agent and sets the guest clock from the host's. Without a deadline it is bounded
 * by `bootTimeoutMs`. On failure nothing of the VM is left behind.
 *
 * @throws driver errors: `CONFLICT` (`BUSY`) when the name is taken, `UNSUPPORTED` for an unknown
 *   VMM build, `OPERATION_FAILED` when QEMU does not start (its log is in the message)
 */
export function launch(ctx: QemuContext, options: QemuLaunchOptions): Promise<QemuVmInfo> {
  return runCall(ctx, 'launch', options, undefined, ctx.config.bootTimeoutMs, async (call) => {
    const spec = resolveSpec(ctx, options);
    if (ctx.handles.has(spec.vm) || existsSync(vmPaths(ctx.config.runDir, spec.vm).record)) {
      throw callError(ctx, call, 'BUSY', `host ${ctx.host} already has a VM named ${spec.vm}`);
    }
    const version = options.vmmVersion ?? ctx.config.defaultVmmVersion;
    const binary = binaryOf(ctx, call, version);
    const paths = vmPaths(ctx.config.runDir, spec.vm);
    ensureDir(paths.dir);
    const handle: VmHandle = {
      name: spec.vm,
      paths,
      record: {
        format: VM_RECORD_FORMAT,
        host: ctx.host,
        spec,
        current: { generation: 1, vmmVersion: version, binary, pid: 0, startedAt: 0, watchdogPid: 0 },
        pending: null,
      },
      session: undefined,
      agent: undefined,
      pausedSince: null,
      operation: 'launch',
      agentSeen: false,
    };
    call.handle = handle;
    ctx.handles.set(spec.vm, handle);
    writeRecord(handle, handle.record);
    try {
      // Pinned for the VM's life: the build's versioned machine type and its firmware images.
      const pinned = pinSpec(spec, {
        probe: ctx.builds().get(version),
        firmwareDir: paths.firmwareDir,
        searchDirs: firmwareSearchDirs(binary, ctx.config.buildDataDirs[version], ctx.config.firmwareSearchPath),
      });
      writeRecord(handle, { ...handle.record, spec: pinned });
      const started = await startProcess(ctx, handle, handle.record.current, false, call);
      adoptProcess(handle, started);
      handle.operation = null;
      if (options.waitForGuestAgent ?? spec.guestAgent) {
        await waitForAgent(ctx, handle, call);
        await resyncQuietly(ctx, handle, call);
      }
      return describe(handle);
    } catch (error) {
      handle.operation = 'destroy';
      await destroyHandle(ctx, handle);
      throw error;
    }
  });
}

/**
 * Stops a VM for good: quits its process (killing it if needed) and its watchdog, and removes its
 * directory and RAM file. `NOT_FOUND` for a VM the driver does not know.
 */
export function destroy(ctx: QemuContext, options: VmOperationOptions): Promise<void> {
  return runCall(ctx, 'destroy', options, undefined, undefined, async (call) => {
    const handle = handleOf(ctx, call);
    handle.operation = 'destroy';
    await destroyHandle(ctx, handle);
  });
}

/** The spec of a new VM from its launch options and the driver's defaults, checked. */
function resolveSpec(ctx: QemuContext, options: QemuLaunchOptions): ResolvedVmSpec {
  const invalid = (message: string): IntermissionError =>
    new IntermissionError('INVALID_INPUT', `VM ${JSON.stringify(options.vm)}: ${message}`);
  if (!VM_NAME_PATTERN.test(options.vm)) {
    throw invalid('a VM name is letters, digits, . _ - (at most 63), starting with a letter or digit');
  }
  const ramMb = options.ramMb ?? ctx.config.defaultRamMb;
  const cpus = options.cpus ?? ctx.config.defaultCpus;
  if (!(Number.isInteger(ramMb) && ramMb >= 64)) throw invalid('ramMb must be an integer >= 64');
  if (!(Number.isInteger(cpus) && cpus >= 1)) throw invalid('cpus must be an integer >= 1');
  const paths = vmPaths(ctx.config.runDir, options.vm);
  const metadataSocket = options.metadataSocket ?? paths.defaultMetadataSocket;
  if (!SAFE_PATH_PATTERN.test(metadataSocket)) {
    throw invalid(`metadataSocket ${metadataSocket}: only letters, digits and . _ / + - are allowed`);
  }
  checkSocketPath(metadataSocket);
  const longest = processPaths(paths.dir, 9999);
  for (const path of [longest.qmp, longest.watchdogQmp, longest.opsQmp, longest.guestAgent, longest.migrate]) {
    checkSocketPath(path);
  }
  const kernelArgs = options.kernelArgs ?? '';
  if (/["'\\\n]/.test(kernelArgs)) throw invalid('kernelArgs may not contain quotes, backslashes or newlines');
  const devices = (options.devices ?? []).map((device) => {
    const values = [
      device.driver,
      ...Object.entries(device.props ?? {})
        .flat()
        .map(String),
    ];
    if (values.some((v) => v === '' || /[,\s]/.test(v))) throw invalid(`device ${device.driver}: no commas or spaces`);
    return Object.freeze({ ...device, props: Object.freeze({ ...device.props }) });
  });
  const objects = [...(options.objects ?? [])];
  if (objects.some((o) => /\s/.test(o))) throw invalid('objects may not contain spaces');
  const parts = resolveVmParts(options, ctx.config);
  const sharedMemory = options.sharedMemory ?? true;
  const memPath = sharedMemory
    ? `${ctx.config.memoryDir}/intermission-${options.vm}-${randomBytes(4).toString('hex')}.ram`
    : null;
  return Object.freeze({
    vm: options.vm,
    ramMb,
    cpus,
    sharedMemory,
    guestAgent: options.guestAgent ?? true,
    metadataSocket,
    kernelArgs,
    devices: Object.freeze(devices),
    objects: Object.freeze(objects),
    memPath,
    vapic: options.vapic ?? false,
    pciBridgeHotplug: options.pciBridgeHotplug ?? false,
    nicExtraMacRegisters: false,
    boot: parts.boot,
    disks: parts.disks,
    nics: parts.nics,
    cpuModel: parts.cpuModel,
    ...(parts.machine === null ? {} : { machine: parts.machine }),
  });
}

/** Ends every process of the VM and removes all it has on disk (RAM file, taps, directory). */
export async function destroyHandle(ctx: QemuContext, handle: VmHandle): Promise<void> {
  const { current, pending } = handle.record;
  if (pending !== null) await retire(handle, pending, undefined);
  await retire(handle, current, handle.session);
  handle.session = undefined;
  void handle.agent?.close();
  handle.agent = undefined;
  if (handle.record.spec.memPath !== null) removeFile(handle.record.spec.memPath);
  await deleteTaps(handle.record.spec.nics ?? []);
  rmSync(handle.paths.dir, { recursive: true, force: true });
  ctx.handles.delete(handle.name);
}
