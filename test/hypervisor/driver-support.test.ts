import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { IntermissionError, type Fleet, type Vm } from '../../src/domain/index.js';
import {
  DRIVER_CAPABILITY_FLAGS,
  DRIVER_ERROR_REASONS,
  VirtualTime,
  createSimFleet,
  driverCapabilities,
  driverError,
  driverErrorReason,
  isDriverError,
  resyncGuestClock,
  withDetails,
  type GuestTimeResult,
  type HypervisorDriver,
} from '../../src/hypervisor/index.js';

void describe('driver capabilities', () => {
  void it('default every flag to false and freeze the profile', () => {
    const none = driverCapabilities();
    assert.deepEqual(Object.keys(none).sort(), [...DRIVER_CAPABILITY_FLAGS].sort());
    assert.ok(Object.values(none).every((v) => v === false));
    assert.ok(Object.isFrozen(none));
    assert.equal(driverCapabilities({ reboot: true }).reboot, true);
    assert.equal(driverCapabilities({ reboot: true }).inPlaceMigration, false);
  });
});

void describe('driver errors', () => {
  void it('carry the reason code, the reason and its retryability', () => {
    const error = driverError({
      reason: 'OPERATION_FAILED',
      message: 'refused',
      details: { operation: 'resume', host: 'h1', vm: 'vm1' },
    });
    assert.equal(error.code, 'CONFLICT');
    assert.equal(error.retryable, true, 'a refusal may pass on retry');
    assert.deepEqual(error.details, { operation: 'resume', host: 'h1', vm: 'vm1', reason: 'OPERATION_FAILED' });
    assert.equal(driverErrorReason(error), 'OPERATION_FAILED');
    assert.ok(isDriverError(error, 'OPERATION_FAILED'));
    assert.ok(!isDriverError(error, 'BUSY'));
    assert.ok(!isDriverError(new IntermissionError('CONFLICT', 'not from a driver')));
    assert.equal(driverErrorReason(new Error('plain')), undefined);
    const failed = driverError({ reason: 'VM_FAILED', message: 'dead', details: { operation: 'pause', host: 'h1' } });
    assert.equal(failed.code, 'UNREACHABLE');
    assert.equal(failed.retryable, false, 'a dead VM does not come back by retrying');
    for (const reason of Object.keys(DRIVER_ERROR_REASONS) as (keyof typeof DRIVER_ERROR_REASONS)[]) {
      const e = driverError({ reason, message: reason, details: { operation: 'x', host: 'h' } });
      assert.equal(e.code, DRIVER_ERROR_REASONS[reason]);
    }
  });

  void it('keep code, retryability and cause when details are added', () => {
    const cause = new Error('socket closed');
    const error = driverError({
      reason: 'DEADLINE_EXCEEDED',
      message: 'late',
      details: { operation: 'swapVmm', host: 'h1' },
      cause,
    });
    const more = withDetails(error, { rolledBack: true });
    assert.equal(more.code, 'TIMEOUT');
    assert.equal(more.retryable, error.retryable);
    assert.equal(more.cause, cause);
    assert.equal(more.details.rolledBack, true);
    assert.equal(driverErrorReason(more), 'DEADLINE_EXCEEDED');
    const coerced = withDetails(new Error('odd'), { rolledBack: false });
    assert.equal(coerced.code, 'INTERNAL');
  });
});

void describe('resyncGuestClock', () => {
  /** A guest whose readings take the given round trips in turn, offset as set. */
  function guest(roundTrips: number[], initialOffset: number) {
    const calls: string[] = [];
    let offset = initialOffset;
    let n = 0;
    const now = 1_000_000;
    const driver: Pick<HypervisorDriver, 'guestTime' | 'setGuestTime'> = {
      guestTime: () => {
        const roundTripMs = roundTrips[n++ % roundTrips.length] ?? 8;
        calls.push(`get ${roundTripMs}`);
        // A slow reading is off by up to half its round trip: here by exactly that.
        const reading: GuestTimeResult = {
          guestMs: now + offset + roundTripMs / 2,
          hostMs: now,
          offsetMs: offset + roundTripMs / 2,
          roundTripMs,
        };
        return Promise.resolve(reading);
      },
      setGuestTime: (options) => {
        calls.push(`set ${options.timeMs - now}`);
        offset = 1;
        return Promise.resolve({ completedAt: now, roundTripMs: 8 });
      },
    };
    return { calls, driver, now };
  }

  void it('steps the guest half a round trip ahead, measuring with the best of three readings', async () => {
    const { calls, driver, now } = guest([40, 8, 60], -2_000);
    const result = await resyncGuestClock({ driver, clock: { now: () => now }, vm: 'vm1' });
    assert.deepEqual(calls, ['get 40', 'get 8', 'get 60', 'set 4', 'get 40', 'get 8', 'get 60']);
    assert.deepEqual(result, { offsetBeforeMs: -1_996, stepped: true, residualMs: 5, roundTripMs: 8, measuredAt: now });
  });

  void it('leaves alone an offset within the measurement error (half the best round trip)', async () => {
    const { calls, driver, now } = guest([30, 24, 50], 0);
    const result = await resyncGuestClock({ driver, clock: { now: () => now }, vm: 'vm1' });
    assert.deepEqual(calls, ['get 30', 'get 24', 'get 50']);
    assert.equal(result.stepped, false);
    assert.equal(result.residualMs, 12);
    assert.equal(result.roundTripMs, 24);
  });
});

void describe('createSimFleet', () => {
  void it('makes one simulated host per fleet host, holding its VMs', () => {
    const vm = (name: string, host: string): Vm => ({
      name,
      vmId: `id-${name}`,
      host,
      availabilitySet: undefined,
      updateDomain: 0,
      faultDomain: 0,
      instance: {} as Vm['instance'],
    });
    const fleet: Pick<Fleet, 'hosts' | 'vms'> = {
      hosts: [
        { name: 'h1', labels: {} },
        { name: 'h2', labels: {} },
      ],
      vms: [vm('a', 'h1'), vm('b', 'h1'), vm('c', 'h2')],
    };
    const hosts = createSimFleet({
      fleet,
      time: new VirtualTime(),
      vm: (v) => (v.name === 'c' ? { guestAgent: false } : {}),
      host: (name) => (name === 'h2' ? { vmmVersion: 'qemu-9.2' } : {}),
    });
    assert.deepEqual([...hosts.keys()], ['h1', 'h2']);
    assert.deepEqual(
      hosts
        .get('h1')
        ?.vms()
        .map((v) => v.name),
      ['a', 'b'],
    );
    const c = hosts.get('h2')?.vm('c');
    assert.equal(c?.capabilities.guestAgent, false);
    assert.equal(c?.vmmVersion, 'qemu-9.2');
  });
});
