/**
 * A VMM update whose target build cannot load a VM (its pinned machine type, a device model or its
 * firmware missing there, as the VM's host reports in `vmmBuilds`) is classified for the fallback
 * with `TARGET_CANNOT_LOAD` and the host's reason, before anything starts; a planned rollout shows it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { parseFleet } from '../../../src/domain/fleet.js';
import type { Fleet } from '../../../src/domain/vocabulary.js';
import {
  classifyVm,
  planRollout,
  REASON_CODES,
  resolveUpdate,
  targetLoadProblem,
  type Update,
  type VmCapabilities,
} from '../../../src/domain/rollout/index.js';
import { SimHost, VirtualTime } from '../../../src/hypervisor/index.js';
import { NOW } from './helpers.js';

const FULL: VmCapabilities = { sharedMemory: true, migratableDevices: true, guestAgent: true };
const REASON = 'build 10.0.2 has no machine type pc-i440fx-2.0';
const vmmUpdate: Update = {
  id: 'qemu-10',
  kind: 'vmm-update',
  expectedApplyMs: 0,
  vmm: { fromVersion: '7.2', toVersion: '10.0.2' },
};

function classify(capabilities: VmCapabilities | undefined, update: Update = vmmUpdate) {
  return classifyVm({
    update: resolveUpdate(update),
    capabilities,
    pauseBudgetMs: 30_000,
    fallback: 'reboot',
    requireGuestAgent: false,
  });
}

void describe('TARGET_CANNOT_LOAD', () => {
  void it('falls back when the target build cannot load the VM, with the host reason in the explanation', () => {
    const c = classify({ ...FULL, vmmBuilds: { '10.0.2': { loadable: false, reason: REASON } } });
    assert.equal(c.path, 'reboot');
    assert.deepEqual(c.reasons, ['TARGET_CANNOT_LOAD']);
    assert.match(
      c.explanation,
      /instead of an in-place migration: the target VMM build 10\.0\.2: build 10\.0\.2 has no machine type pc-i440fx-2\.0/,
    );
    assert.ok(REASON_CODES.TARGET_CANNOT_LOAD.length > 0);
  });

  void it('keeps the in-place path when the target loads it, or when the host said nothing of that build', () => {
    for (const caps of [
      { ...FULL, vmmBuilds: { '10.0.2': { loadable: true } } },
      { ...FULL, vmmBuilds: { '9.2': { loadable: false, reason: 'other build' } } },
      FULL,
    ]) {
      assert.equal(classify(caps).path, 'in-place-migration', JSON.stringify(caps));
    }
  });

  void it('only concerns VMM updates, and adds to the other reasons', () => {
    const caps: VmCapabilities = { ...FULL, sharedMemory: false, vmmBuilds: { '10.0.2': { loadable: false } } };
    assert.deepEqual(classify(caps).reasons, ['RAM_NOT_SHAREABLE', 'TARGET_CANNOT_LOAD']);
    assert.match(classify(caps).explanation, /the target VMM build 10\.0\.2[;.]/);
    const patch: Update = { id: 'p', kind: 'host-patch', expectedApplyMs: 1000 };
    assert.equal(classify({ ...FULL, vmmBuilds: { '10.0.2': { loadable: false } } }, patch).path, 'pause');
    assert.equal(targetLoadProblem({ kind: 'vmm-update', vmm: null }, caps), null);
    assert.equal(targetLoadProblem({ kind: 'vmm-update' }, caps), null);
  });

  void it('cuts a long reason', () => {
    const c = classify({ ...FULL, vmmBuilds: { '10.0.2': { loadable: false, reason: 'x'.repeat(5000) } } });
    assert.ok(c.explanation.length < 700);
  });

  void it('plans each VM by what its own host reported, sharing classifications only between equal facts', () => {
    const demo: Fleet = parseFleet(
      parse(readFileSync(new URL('../../../examples/demo-fleet.yaml', import.meta.url), 'utf8')),
    );
    const [first, second, third] = demo.vms;
    assert.ok(first && second && third);
    const caps = new Map<string, VmCapabilities>(demo.vms.map((v) => [v.name, FULL]));
    caps.set(first.name, { ...FULL, vmmBuilds: { '10.0.2': { loadable: false, reason: REASON } } });
    caps.set(second.name, {
      ...FULL,
      vmmBuilds: { '10.0.2': { loadable: false, reason: 'lacks device model vfio-pci' } },
    });
    caps.set(third.name, { ...FULL, vmmBuilds: { '10.0.2': { loadable: true } } });
    const plan = planRollout({ fleet: demo, update: vmmUpdate, now: NOW, capabilities: caps });
    const byName = new Map(
      plan.waves.flatMap((w) => w.batches.flatMap((b) => b.steps.flatMap((s) => s.vms))).map((v) => [v.name, v]),
    );
    assert.deepEqual(byName.get(first.name)?.classification.reasons, ['TARGET_CANNOT_LOAD']);
    assert.match(byName.get(first.name)?.classification.explanation ?? '', /pc-i440fx-2\.0/);
    assert.match(byName.get(second.name)?.classification.explanation ?? '', /vfio-pci/);
    assert.equal(byName.get(third.name)?.classification.path, 'in-place-migration');
  });

  void it('is what the simulator reports for a VM that names builds unable to load it', async () => {
    const time = new VirtualTime({ autoAdvance: true });
    const host = new SimHost({
      name: 'h1',
      time,
      seed: 1,
      vms: [{ name: 'old', unloadableBuilds: { '10.0.2': REASON } }, { name: 'fine' }],
    });
    const driver = host.connect();
    const old = await driver.vmCapabilities({ vm: 'old' });
    assert.deepEqual(old.vmmBuilds, { '10.0.2': { loadable: false, reason: REASON } });
    assert.equal((await driver.vmCapabilities({ vm: 'fine' })).vmmBuilds, undefined);
    assert.deepEqual(classify(old).reasons, ['TARGET_CANNOT_LOAD']);
  });
});
