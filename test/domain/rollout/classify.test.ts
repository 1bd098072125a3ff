import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  classifyVm,
  expectedPauseMs,
  resolveUpdate,
  UPDATE_KINDS,
  type ClassifyVmInput,
  type Update,
  type VmCapabilities,
} from '../../../src/domain/rollout/index.js';

const FULL: VmCapabilities = { sharedMemory: true, migratableDevices: true, guestAgent: true };

function input(update: Partial<Update>, capabilities: VmCapabilities | undefined, more: Partial<ClassifyVmInput> = {}) {
  return {
    update: resolveUpdate({ id: 'u1', kind: 'vmm-update', expectedApplyMs: 5000, ...update }),
    capabilities,
    pauseBudgetMs: 30_000,
    fallback: 'reboot' as const,
    requireGuestAgent: false,
    ...more,
  };
}

void describe('classifyVm', () => {
  void it('gives a capable VM the in-place migration of a VMM update, paused about a second', () => {
    const c = classifyVm(input({}, FULL));
    assert.equal(c.path, 'in-place-migration');
    assert.equal(c.preserving, true);
    assert.equal(c.eventType, 'Freeze');
    assert.equal(c.expectedPauseMs, 1000);
    assert.deepEqual(c.reasons, []);
    assert.deepEqual(c.advisories, []);
    assert.match(c.explanation, /paused about 1s \(budget 30s\)/);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.reasons));
  });

  void it('records every missing capability of in-place migration, with the blocking devices', () => {
    const c = classifyVm(
      input(
        {},
        {
          sharedMemory: false,
          migratableDevices: false,
          blockingDevices: ['vfio-pci 3b:00.0', 'ivshmem'],
          guestAgent: true,
        },
      ),
    );
    assert.equal(c.path, 'reboot');
    assert.equal(c.eventType, 'Reboot');
    assert.equal(c.preserving, false);
    assert.equal(c.expectedPauseMs, 0);
    assert.deepEqual(c.reasons, ['RAM_NOT_SHAREABLE', 'DEVICE_NOT_MIGRATABLE']);
    assert.deepEqual(c.blockingDevices, ['ivshmem', 'vfio-pci 3b:00.0']);
    assert.match(c.explanation, /instead of an in-place migration/);
    assert.match(c.explanation, /devices ivshmem, vfio-pci 3b:00.0 cannot be migrated/);
  });

  void it('treats a flag that is not reported as false (capability flags default to false)', () => {
    const c = classifyVm(input({}, { migratableDevices: true }));
    assert.deepEqual(c.reasons, ['RAM_NOT_SHAREABLE']);
  });

  void it('falls back with CAPABILITIES_UNKNOWN when no facts were reported', () => {
    const c = classifyVm(input({}, undefined));
    assert.equal(c.path, 'reboot');
    assert.deepEqual(c.reasons, ['CAPABILITIES_UNKNOWN']);
    assert.match(c.explanation, /no capability facts/);
  });

  void it('lets a host patch pause any VM whose pause fits its budget: apply plus resume overhead', () => {
    const c = classifyVm(input({ kind: 'host-patch', expectedApplyMs: 12_000 }, { guestAgent: true }));
    assert.equal(c.path, 'pause');
    assert.equal(c.eventType, 'Freeze');
    assert.equal(c.expectedPauseMs, 12_500);
    assert.deepEqual(c.reasons, []);
  });

  void it('falls back when the expected pause exceeds the budget (invariant 1), saying both figures', () => {
    const c = classifyVm(input({ kind: 'host-patch', expectedApplyMs: 9_800 }, FULL, { pauseBudgetMs: 10_000 }));
    assert.equal(c.path, 'reboot');
    assert.deepEqual(c.reasons, ['APPLY_EXCEEDS_PAUSE_BUDGET']);
    assert.match(c.explanation, /expected pause \(10.3s\) is longer than its pause budget \(10s\)/);
    const exact = classifyVm(input({ kind: 'host-patch', expectedApplyMs: 9_500 }, FULL, { pauseBudgetMs: 10_000 }));
    assert.equal(exact.path, 'pause', 'a pause equal to the budget still fits');
  });

  void it('checks the budget of an in-place migration too', () => {
    const c = classifyVm(input({ durations: { inPlaceMigrationPauseMs: 2000 } }, FULL, { pauseBudgetMs: 1500 }));
    assert.deepEqual(c.reasons, ['APPLY_EXCEEDS_PAUSE_BUDGET']);
  });

  void it('keeps an agent-less VM on the preserving path with an advisory, unless the policy requires an agent', () => {
    const lax = classifyVm(input({}, { sharedMemory: true, migratableDevices: true }));
    assert.equal(lax.path, 'in-place-migration');
    assert.deepEqual(lax.advisories, ['CLOCK_RESYNC_UNVERIFIED']);
    assert.match(lax.explanation, /clock offset after the pause will not be measured/);
    const strict = classifyVm(input({}, { sharedMemory: true, migratableDevices: true }, { requireGuestAgent: true }));
    assert.equal(strict.path, 'reboot');
    assert.deepEqual(strict.reasons, ['NO_GUEST_AGENT']);
  });

  void it('falls back to redeploy when the policy says so', () => {
    const c = classifyVm(input({}, { migratableDevices: true }, { fallback: 'redeploy' }));
    assert.equal(c.path, 'redeploy');
    assert.equal(c.eventType, 'Redeploy');
    assert.match(c.explanation, /Moves to another host \(Redeploy\) instead of an in-place migration/);
  });

  void it('gives the forced path of updates without a preserving path, whatever the facts', () => {
    for (const caps of [FULL, undefined]) {
      const hot = classifyVm(input({ kind: 'hot-patch' }, caps));
      assert.deepEqual([hot.path, hot.eventType, hot.reasons], ['none', null, []]);
      const reboot = classifyVm(input({ kind: 'host-reboot' }, caps));
      assert.deepEqual(
        [reboot.path, reboot.eventType, reboot.reasons],
        ['reboot', 'Reboot', ['UPDATE_REQUIRES_REBOOT']],
      );
      const redeploy = classifyVm(input({ kind: 'redeploy' }, caps));
      assert.deepEqual(
        [redeploy.path, redeploy.eventType, redeploy.reasons],
        ['redeploy', 'Redeploy', ['UPDATE_REQUIRES_REDEPLOY']],
      );
    }
  });

  void it('knows the expected pause of each kind', () => {
    const pauses = UPDATE_KINDS.map((kind) => expectedPauseMs(resolveUpdate({ id: 'x', kind, expectedApplyMs: 4000 })));
    assert.deepEqual(pauses, [null, 1000, 4500, null, null]);
  });
});
