/**
 * Issue 13's proof, through the controller, on VMs as tenants run them: each guest boots from its
 * own disk (a qcow2 overlay, virtio-blk or virtio-scsi) through SeaBIOS, has a virtio-net NIC on a
 * tap of a bridge, and keeps its metadata and guest-agent channels. Two hosts, three guests, two
 * update domains (the crash trials' fleet), all on this machine:
 *
 * 1. An in-place VMM update from Debian 12's QEMU 7.2 to QEMU 10.0.2: every VM moves to a process
 *    of the other version, its RAM shared, its disks handed over at switchover, its tap kept.
 * 2. A host patch under pause, on 10.0.2.
 *
 * During both, inside each guest a tenant process appends numbered, checksummed records to a file on
 * its disk with fsync and prints what was acknowledged; a client in a network namespace on the
 * bridge holds a TCP stream to each guest through its NIC. Afterwards, every acknowledged record is
 * there in order and uncorrupted (read from the running VM's disk, and again after the VMs are
 * gone); every stream is still open with no lost, repeated or corrupt byte, and its longest stall is
 * reported; the events, pauses and clocks are checked as in qemu-rollout.test.ts.
 */
import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { serialLogOf } from '../../src/hypervisor/qemu/index.js';
import { ensureBuilt, type FleetSpec } from '../crash/harness.js';
import { QEMU_TRIAL_FLEET } from '../crash/trial-qemu.js';
import { QEMU10, QEMU_FIRMWARE_DIR, buildGuestDisk, guestDiskPreflight, overlayDisk } from './guest-disk.js';
import { waitForSerial } from './qemu-fixture.js';
import { parseAcks, readRecordsFromImage, verifyRecords } from './records.js';
import {
  apply,
  followToCompletion,
  resultOf,
  startQemuCluster,
  type AgentVms,
  type Detail,
  type RolloutSetup,
} from './rollout-checks.js';
import { startTcpProbe, type TcpProbe } from './tcp-probe.js';
import { createTenantNet, type TenantNet } from './tenant-net.js';

const preflight = guestDiskPreflight({ qemu10: true });

const FLEET: FleetSpec = QEMU_TRIAL_FLEET;
const OLD = '7.2';
const NEW = '10.0.2';
/** A stall of the stream longer than this is listed (the tenant NIC pauses only with its VM). */
const STALL_THRESHOLD_MS = 300;

interface Setup extends RolloutSetup {
  readonly net: TenantNet;
  readonly disks: ReadonlyMap<string, string>;
  readonly probes: Map<string, TcpProbe>;
  /** Each VM's pauses in the rollouts so far (host wall clock), to place the stream's stalls. */
  readonly pauses: Map<string, { readonly what: string; readonly pausedAt: number; readonly resumedAt: number }[]>;
  readonly patchLog: (host: string) => string;
  readonly close: () => Promise<void>;
}

let setup: Promise<Setup> | undefined;

function start(): Promise<Setup> {
  setup ??= (async () => {
    preflight.assertReady();
    await ensureBuilt();
    const guest = buildGuestDisk();
    const base = await mkdtemp('/tmp/iq-tvm-');
    const net = await createTenantNet();
    const disks = new Map<string, string>();
    const specs = new Map<string, Record<string, unknown>>();
    FLEET.vms.forEach((vm, i) => {
      const disk = overlayDisk(guest.disk, join(base, `${vm.name}.qcow2`));
      disks.set(vm.name, disk);
      specs.set(vm.name, {
        boot: { kind: 'firmware', firmware: 'seabios' },
        // One guest on virtio-scsi, the others on virtio-blk: both buses move across versions.
        disks: [{ path: disk, format: 'qcow2', bus: i === 1 ? 'virtio-scsi' : 'virtio-blk', cache: 'writeback' }],
        nics: [{ bridge: net.bridge, tap: net.tapName(i), model: 'virtio-net-pci' }],
        kernelArgs: `tenant.ip=${net.guestCidr(i)} tenant.records=1 tenant.stream=1`,
      });
    });
    const { cluster, runDirs, patchLog, close } = await startQemuCluster({
      name: 'tvm',
      fleet: FLEET,
      base,
      hosts: FLEET.hosts.map((h) => h.name),
      guest,
      vmmBuilds: { [OLD]: '/usr/bin/qemu-system-x86_64', [NEW]: { binary: QEMU10, dataDir: QEMU_FIRMWARE_DIR } },
      defaultVmmVersion: OLD,
      vms: (host) =>
        Object.fromEntries(FLEET.vms.filter((vm) => vm.host === host).map((vm) => [vm.name, specs.get(vm.name)])),
    });
    const s: Setup = {
      cluster,
      fleet: FLEET,
      base,
      runDirs,
      net,
      disks,
      probes: new Map(),
      pauses: new Map(),
      patchLog,
      close,
    };
    // Each guest's tenant programs run before anything moves: records acknowledged, a stream held.
    await Promise.all(
      FLEET.vms.map(async (vm, i) => {
        const log = serialLogOf(runDirs.get(vm.host) ?? '', vm.name);
        await waitForSerial(log, /^REC ACK \d+/, { timeoutMs: 120_000 });
        await waitForSerial(log, /^STREAM listening/, { timeoutMs: 120_000 });
        const probe = startTcpProbe({
          namespace: net.namespace,
          host: net.guestAddress(i),
          stallThresholdMs: STALL_THRESHOLD_MS,
        });
        s.probes.set(vm.name, probe);
        await probe.waitForBytes(1000, 60_000);
      }),
    );
    return s;
  })();
  return setup;
}

before(
  async () => {
    if (preflight.skip === false) await start();
  },
  { timeout: 600_000 },
);

after(async () => {
  const s = await setup?.catch(() => undefined);
  if (!s) return;
  for (const probe of s.probes.values()) await probe.stop().catch(() => undefined);
  await s.close();
  await s.net.close();
  await rm(s.base, { recursive: true, force: true });
});

/** The versions the agents report for every VM. */
async function versions(s: Setup): Promise<Map<string, { state: string; vmmVersion: string }>> {
  const seen = new Map<string, { state: string; vmmVersion: string }>();
  for (const host of FLEET.hosts) {
    const { vms } = await s.cluster.agentGet<AgentVms>(host.name, '/v1/vms');
    for (const vm of vms) seen.set(vm.name, { state: vm.state, vmmVersion: vm.vmmVersion });
  }
  return seen;
}

/** Keeps each VM's pause of a completed rollout, as its agent dated it. */
function notePauses(s: Setup, detail: Detail, what: string): void {
  for (const vm of FLEET.vms) {
    const r = resultOf(detail, vm.name);
    if (typeof r?.pausedAt !== 'number' || typeof r.resumedAt !== 'number') continue;
    const list = s.pauses.get(vm.name) ?? [];
    list.push({ what, pausedAt: r.pausedAt, resumedAt: r.resumedAt });
    s.pauses.set(vm.name, list);
  }
}

/** A stall of a VM's stream, placed against the VM's nearest pause: `812 ms (ended 640 ms after the swap's resume)`. */
function placeStall(s: Setup, vm: string, stall: { readonly atMs: number; readonly ms: number }): string {
  const nearest = (s.pauses.get(vm) ?? [])
    .map((p) => ({ ...p, distance: Math.abs(stall.atMs - p.resumedAt) }))
    .sort((a, b) => a.distance - b.distance)[0];
  if (nearest === undefined) return `${stall.ms} ms`;
  const offset = Math.round(stall.atMs - nearest.resumedAt);
  return `${stall.ms} ms (ended ${Math.abs(offset)} ms ${offset >= 0 ? 'after' : 'before'} the ${nearest.what}'s resume)`;
}

/** The records a guest has acknowledged so far on its serial console. */
async function acknowledged(s: Setup, vm: string): Promise<number[]> {
  const host = FLEET.vms.find((v) => v.name === vm)?.host ?? '';
  const acks = parseAcks(await readFile(serialLogOf(s.runDirs.get(host) ?? '', vm), 'utf8'));
  assert.ok(acks.length > 0, `${vm} acknowledged records`);
  return acks;
}

/**
 * Checks a guest's records on its disk against `acks`, taken before the disk was read (a running
 * guest goes on writing while its disk is copied).
 */
async function checkRecords(s: Setup, vm: string, acks: readonly number[], where: string): Promise<string> {
  const verdict = verifyRecords(await readRecordsFromImage(s.disks.get(vm) ?? ''), acks);
  assert.ok(verdict.ok, `${vm} (${where}): ${verdict.problems.join('; ')}`);
  return `${vm} (${where}): ${acks.length} acknowledged, ${verdict.records} records on disk, last ${verdict.lastSeq}`;
}

describe(
  'tenant VMs (disk, NIC) upgraded from QEMU 7.2 to 10.0.2 in place, then patched',
  { skip: preflight.skip },
  () => {
    it(
      'moves every VM from QEMU 7.2 to 10.0.2 in place, one update domain at a time',
      { timeout: 420_000 },
      async (t) => {
        const s = await start();
        for (const [vm, v] of await versions(s)) assert.equal(v.vmmVersion, OLD, `${vm} starts on ${OLD}`);
        const id = await apply(
          s,
          'vmm10',
          { id: 'vmm-10.0.2', kind: 'vmm-update', expectedApplyMs: 500, vmm: { fromVersion: OLD, toVersion: NEW } },
          { settleMs: '2s' },
        );
        const { detail } = await followToCompletion(s, id, t);
        notePauses(s, detail, 'swap');
        assert.ok(
          detail.operations.every((o) => o.outcome === 'ok'),
          JSON.stringify(detail.operations),
        );
        for (const [vm, v] of await versions(s)) {
          assert.equal(v.state, 'running', vm);
          assert.equal(v.vmmVersion, NEW, `${vm} runs QEMU ${NEW}`);
        }
      },
    );

    it('patches the hosts under pause on QEMU 10.0.2', { timeout: 300_000 }, async (t) => {
      const s = await start();
      const id = await apply(
        s,
        'patch10',
        { id: 'patch-10', kind: 'host-patch', expectedApplyMs: '2s' },
        { settleMs: '2s', pauseBudgetMs: 10_000 },
      );
      const { detail } = await followToCompletion(s, id, t);
      notePauses(s, detail, 'patch');
      for (const [vm, v] of await versions(s)) {
        assert.equal(v.state, 'running', vm);
        assert.equal(v.vmmVersion, NEW, `${vm} still runs QEMU ${NEW}`);
      }
      for (const host of FLEET.hosts) {
        const patched = (await readFile(s.patchLog(host.name), 'utf8')).trim().split('\n');
        assert.deepEqual(patched, ['patch-10'], `${host.name} ran the patch once`);
      }
    });

    it(
      'kept every acknowledged record and every byte of each TCP stream through both',
      { timeout: 300_000 },
      async (t) => {
        const s = await start();
        // Streams: still open, every byte in order, the longest stall reported.
        for (const [vm, probe] of s.probes) {
          const report = await probe.stop();
          assert.equal(report.ended, null, `${vm}'s stream stayed open: ${JSON.stringify(report.ended)}`);
          assert.equal(report.mismatch, null, `${vm}'s stream: ${JSON.stringify(report.mismatch)}`);
          assert.ok(report.bytes > 10_000, `${vm}'s stream carried data (${report.bytes} bytes)`);
          t.diagnostic(
            `${vm}: stream ${report.bytes} bytes at ${Math.round(report.bytesPerSecond)} B/s, no byte lost or repeated; ` +
              `longest stall ${report.longestStallMs} ms; stalls over ${STALL_THRESHOLD_MS} ms: ` +
              (report.stalls.map((x) => placeStall(s, vm, x)).join(', ') || 'none'),
          );
        }
        s.probes.clear();
        // Records, from the running VMs' disks (what an fsync acknowledged is in the image).
        for (const vm of FLEET.vms) {
          t.diagnostic(await checkRecords(s, vm.name, await acknowledged(s, vm.name), 'running'));
        }
        // And from the images once the VMs are gone: the agents first, then each VM's QEMU (the
        // acknowledgements are read in between: a record acknowledged later may or may not be there).
        await s.cluster.close();
        const acks = new Map<string, number[]>();
        for (const vm of FLEET.vms) acks.set(vm.name, await acknowledged(s, vm.name));
        await s.close();
        for (const vm of FLEET.vms) {
          t.diagnostic(await checkRecords(s, vm.name, acks.get(vm.name) ?? [], 'stopped'));
        }
      },
    );
  },
);
