/**
 * What the QEMU driver reports of a VM beyond its run state: its paths and processes, and the
 * facts the planner needs (shared RAM, devices that block a migration, the guest agent, which
 * builds could take it over).
 */
import type { VmCapabilities } from '../../../domain/rollout/index.js';
import type { QmpMigrationInfo } from '../../../qmp/index.js';
import type { VmOperationOptions } from '../../driver.js';
import type { QemuVmInfo } from '../qemu-types.js';
import { describeDevice, isMigratableDevice } from './argv.js';
import { canLoad } from './builds.js';
import { handleOf, qmpOptions, remaining, runCall } from './calls.js';
import { agentOf } from './clock.js';
import { alive, type Call, type QemuContext, type VmHandle } from './context.js';
import { processPaths } from './layout.js';
import { isAlive } from './process.js';
import { openSession, runStatus } from './session.js';

/** Paths, sizes and processes of one VM, beyond what {@link listVms} reports. */
export function describeVm(ctx: QemuContext, options: VmOperationOptions): Promise<QemuVmInfo> {
  return runCall(ctx, 'describeVm', options, undefined, undefined, (call) =>
    Promise.resolve(describe(handleOf(ctx, call))),
  );
}

/** {@link HypervisorDriver.vmCapabilities}, with which other builds of the host could load the VM. */
export function vmCapabilities(ctx: QemuContext, options: VmOperationOptions): Promise<VmCapabilities> {
  return runCall(ctx, 'vmCapabilities', options, undefined, undefined, async (call) => {
    const handle = handleOf(ctx, call);
    const blockingDevices = await blockers(ctx, handle, call);
    let guestAgent = false;
    if (handle.record.spec.guestAgent && alive(handle)) {
      const session = await openSession(ctx, handle, call);
      if ((await runStatus(session, call)) === 'running') {
        guestAgent = await agentOf(handle)
          .ping({ timeoutMs: Math.min(3_000, remaining(call)), signal: call.signal })
          .then(
            () => true,
            () => false,
          );
        handle.agentSeen = guestAgent;
      } else {
        guestAgent = handle.agentSeen;
      }
    }
    // Which other builds of this host could take the VM over (machine type, devices, firmware).
    const vmmBuilds: Record<string, { loadable: boolean; reason?: string }> = {};
    for (const [version, probe] of ctx.builds()) {
      const current = ctx.builds().get(handle.record.current.vmmVersion);
      if (version !== handle.record.current.vmmVersion)
        vmmBuilds[version] = canLoad(probe, handle.record.spec, current);
    }
    return Object.freeze({
      sharedMemory: handle.record.spec.sharedMemory,
      migratableDevices: blockingDevices.length === 0,
      blockingDevices: Object.freeze(blockingDevices),
      guestAgent,
      vmmBuilds: Object.freeze(vmmBuilds),
    });
  });
}

/** What `describeVm` and `launch` report of one VM. */
export function describe(handle: VmHandle): QemuVmInfo {
  const current = handle.record.current;
  const running = alive(handle);
  const paths = processPaths(handle.paths.dir, current.generation);
  return Object.freeze({
    name: handle.name,
    state:
      handle.operation === 'swap'
        ? 'migrating'
        : running
          ? handle.pausedSince === null
            ? 'running'
            : 'paused'
          : 'failed',
    pid: running ? current.pid : null,
    generation: current.generation,
    vmmVersion: current.vmmVersion,
    pausedSince: handle.pausedSince,
    ramMb: handle.record.spec.ramMb,
    sharedMemory: handle.record.spec.sharedMemory,
    dir: handle.paths.dir,
    serialLog: handle.paths.serialLog,
    metadataSocket: handle.record.spec.metadataSocket,
    guestAgentSocket: handle.record.spec.guestAgent ? paths.guestAgent : null,
    watchdogPid: isAlive(current.watchdogPid, paths.watchdogQmp) ? current.watchdogPid : null,
    machine: handle.record.spec.machine ?? 'pc',
    firmwareFiles: handle.record.spec.firmware?.files ?? [],
    taps: (handle.record.spec.nics ?? []).map((nic) => nic.tap),
  });
}

/** Devices that block migration: declared ones, and what QEMU itself reports. */
export async function blockers(ctx: QemuContext, handle: VmHandle, call: Call): Promise<string[]> {
  const declared = handle.record.spec.devices.filter((d) => !isMigratableDevice(d)).map(describeDevice);
  if (!alive(handle)) return declared;
  const session = await openSession(ctx, handle, call);
  const info = await session.qmp.execute('query-migrate', undefined, qmpOptions(call));
  const reasons = (info as QmpMigrationInfo & { readonly 'blocked-reasons'?: unknown })['blocked-reasons'];
  const fromQemu = Array.isArray(reasons) ? reasons.filter((r): r is string => typeof r === 'string') : [];
  return [...declared, ...fromQemu];
}
