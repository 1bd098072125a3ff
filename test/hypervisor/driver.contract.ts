import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isIntermissionError, type Clock, type ErrorCode } from '../../src/domain/index.js';
import {
  DRIVER_CAPABILITY_FLAGS,
  LEASE_RESUMES_KEPT,
  VM_STATES,
  driverErrorReason,
  type DriverCapabilities,
  type DriverCapabilityFlag,
  type DriverErrorReason,
  type HypervisorDriver,
  type LeaseResume,
  type VmRuntimeInfo,
} from '../../src/hypervisor/index.js';

/** What the contract gets from one implementation: a connected driver and two running VMs. */
export interface DriverContractSubject {
  readonly driver: HypervisorDriver;
  /** The driver clock: deadlines are computed on it and its timestamps compared with it. */
  readonly clock: Clock;
  /** Lets `ms` pass on the driver clock: a real wait for QEMU, a virtual one for the simulator. */
  sleep(ms: number): Promise<void>;
  /**
   * A running VM. Where the driver declares the matching capability it has shared RAM, migratable
   * devices and a guest agent. Every test leaves it running again, on the VMM build it found.
   */
  readonly vm: string;
  /** A second running VM, to show that acting on one leaves the other alone. */
  readonly otherVm: string;
  /** A VMM build that `vm` can be moved to (and back from), other than the one it runs. */
  readonly targetVersion: string;
  /** Releases what the subject holds beyond the driver (processes, files); the suite closes the driver. */
  dispose?(): Promise<void>;
}

/** Measurement tolerances, wider for real hypervisors (QEMU under TCG: agent round trips to 100 ms). */
export interface DriverContractTolerances {
  /** Allowed error of a guest clock offset, beyond half the round trips involved. Default 20. */
  readonly clockMs?: number;
  /** Longest acceptable swap downtime. Default 1000. */
  readonly swapDowntimeMs?: number;
  /** How late after `leaseUntil` a leased pause may end (a watchdog process, for QEMU). Default 50. */
  readonly leaseMs?: number;
}

/** How the contract reaches one implementation of the {@link HypervisorDriver} port. */
export interface DriverContractOptions {
  /** Shown in the test names, e.g. `sim (virtual time)`. */
  readonly name: string;
  /** A fresh connection and its VMs. The suite closes the driver and disposes the subject. */
  readonly newDriver: () => Promise<DriverContractSubject>;
  /** The capability profile the driver must declare; it also selects the capability-gated cases. */
  readonly capabilities: DriverCapabilities;
  readonly tolerances?: DriverContractTolerances;
  /** A reason to skip the whole suite (driver not selected or not available here). */
  readonly skip?: string | undefined;
}

/** How long the contract keeps a VM paused to make its guest clock fall behind. */
const LAG_MS = 400;
/** Timestamps of QEMU events have microseconds: allow rounding. */
const STAMP_SLACK_MS = 1;

/**
 * The behaviour every {@link HypervisorDriver} must show, run once per implementation (the simulator
 * now, QEMU with real guests later). Cases that need a capability the driver does not declare are
 * skipped with that reason, and each such capability has a case that checks the refusal instead.
 *
 * Decided here for every driver: pause and resume are idempotent (a second pause returns the first
 * pause's time with `alreadyPaused`), so that a retry after a timeout never fails because the first
 * attempt did succeed.
 */
export function runDriverContract(options: DriverContractOptions): void {
  const caps = options.capabilities;
  const clockTol = options.tolerances?.clockMs ?? 20;
  const downtimeTol = options.tolerances?.swapDowntimeMs ?? 1000;
  const leaseTol = options.tolerances?.leaseMs ?? 50;

  /** `false` (run) when the driver declares `flag`, else the reason to skip. */
  const needs = (flag: DriverCapabilityFlag): false | string =>
    caps[flag] ? false : `the driver does not declare ${flag}`;
  /** `false` (run) when the driver does not declare `flag`, else the reason to skip. */
  const lacks = (flag: DriverCapabilityFlag): false | string =>
    caps[flag] ? `the driver declares ${flag}; the refusal case is for drivers without it` : false;

  /** Runs `body` on a fresh subject, then leaves its VMs running, closes the driver and disposes. */
  async function withSubject(body: (s: DriverContractSubject) => Promise<void>): Promise<void> {
    const subject = await options.newDriver();
    try {
      await body(subject);
    } finally {
      for (const vm of [subject.vm, subject.otherVm]) {
        await subject.driver.resume({ vm }).catch(() => undefined);
      }
      await subject.driver.close();
      await subject.dispose?.();
    }
  }

  async function info(s: DriverContractSubject, vm: string): Promise<VmRuntimeInfo> {
    const found = (await s.driver.listVms()).find((v) => v.name === vm);
    assert.ok(found, `listVms() lists ${vm}`);
    return found;
  }

  /** Makes the guest clock fall behind by about LAG_MS with a pause; returns the pause length. */
  async function makeLag(s: DriverContractSubject): Promise<number> {
    await s.driver.pause({ vm: s.vm });
    await s.sleep(LAG_MS);
    return (await s.driver.resume({ vm: s.vm })).pausedMs;
  }

  void describe(`HypervisorDriver contract: ${options.name}`, { skip: options.skip ?? false }, () => {
    void it('declares its capabilities as data, every flag a boolean', async () => {
      await withSubject((s) => {
        assert.deepEqual({ ...s.driver.capabilities }, { ...caps });
        for (const flag of DRIVER_CAPABILITY_FLAGS) assert.equal(typeof s.driver.capabilities[flag], 'boolean', flag);
        assert.ok(Object.isFrozen(s.driver.capabilities));
        assert.equal(typeof s.driver.host, 'string');
        assert.ok(s.driver.host.length > 0);
        return Promise.resolve();
      });
    });

    void it('lists its VMs as running, with a process generation and a VMM version', async () => {
      await withSubject(async (s) => {
        const vms = await s.driver.listVms();
        for (const name of [s.vm, s.otherVm]) {
          const vm = vms.find((v) => v.name === name);
          assert.ok(vm, `lists ${name}`);
          assert.equal(vm.state, 'running');
          assert.ok((VM_STATES as readonly string[]).includes(vm.state));
          assert.ok(Number.isInteger(vm.generation) && vm.generation >= 1);
          assert.ok(vm.pid === null || Number.isInteger(vm.pid));
          assert.ok(vm.vmmVersion.length > 0);
          assert.equal(vm.pausedSince, null);
        }
      });
    });

    void it('reports the facts the planner needs, every capability flag given', async () => {
      await withSubject(async (s) => {
        const facts = await s.driver.vmCapabilities({ vm: s.vm });
        for (const flag of ['sharedMemory', 'migratableDevices', 'guestAgent'] as const) {
          assert.equal(typeof facts[flag], 'boolean', flag);
        }
        if (caps.inPlaceMigration) {
          assert.equal(facts.sharedMemory, true);
          assert.equal(facts.migratableDevices, true);
        }
        if (caps.guestClock) assert.equal(facts.guestAgent, true);
      });
    });

    void it('rejects an unknown VM with NOT_FOUND', async () => {
      await withSubject(async (s) => {
        const vm = 'no-such-vm';
        const deadline = s.clock.now() + 5_000;
        const calls: [string, () => Promise<unknown>][] = [
          ['vmCapabilities', () => s.driver.vmCapabilities({ vm })],
          ['pause', () => s.driver.pause({ vm })],
          ['resume', () => s.driver.resume({ vm })],
        ];
        if (caps.inPlaceMigration) {
          calls.push(['swapVmm', () => s.driver.swapVmm({ vm, targetVersion: s.targetVersion, deadline })]);
        }
        if (caps.reboot) calls.push(['reboot', () => s.driver.reboot({ vm })]);
        if (caps.guestClock) {
          calls.push(['guestTime', () => s.driver.guestTime({ vm })]);
          calls.push(['setGuestTime', () => s.driver.setGuestTime({ vm, timeMs: s.clock.now() })]);
          calls.push(['resyncClock', () => s.driver.resyncClock({ vm })]);
        }
        for (const [name, call] of calls) await expectDriverError(call(), 'NOT_FOUND', 'VM_NOT_FOUND', name);
      });
    });

    void it('pauses and resumes one VM: states, pausedSince and hypervisor timestamps', async () => {
      await withSubject(async (s) => {
        const before = s.clock.now();
        const paused = await s.driver.pause({ vm: s.vm });
        const after = s.clock.now();
        assert.equal(paused.alreadyPaused, false);
        assert.ok(paused.pausedAt >= before - STAMP_SLACK_MS && paused.pausedAt <= after + STAMP_SLACK_MS);
        const during = await info(s, s.vm);
        assert.equal(during.state, 'paused');
        assert.equal(during.pausedSince, paused.pausedAt);
        assert.equal((await info(s, s.otherVm)).state, 'running', 'the other VM keeps running');

        await s.sleep(200);
        const resumed = await s.driver.resume({ vm: s.vm });
        assert.equal(resumed.alreadyRunning, false);
        assert.ok(resumed.resumedAt >= paused.pausedAt + 200 - STAMP_SLACK_MS);
        assert.ok(Math.abs(resumed.pausedMs - (resumed.resumedAt - paused.pausedAt)) <= STAMP_SLACK_MS);
        const back = await info(s, s.vm);
        assert.equal(back.state, 'running');
        assert.equal(back.pausedSince, null);
        assert.equal(back.generation, during.generation, 'a pause keeps the VMM process');
      });
    });

    void it('makes pause and resume idempotent', async () => {
      await withSubject(async (s) => {
        const first = await s.driver.pause({ vm: s.vm });
        await s.sleep(50);
        const second = await s.driver.pause({ vm: s.vm });
        assert.equal(second.alreadyPaused, true);
        assert.equal(second.pausedAt, first.pausedAt, 'a second pause reports the first one');
        const resumed = await s.driver.resume({ vm: s.vm });
        assert.equal(resumed.alreadyRunning, false);
        const again = await s.driver.resume({ vm: s.vm });
        assert.equal(again.alreadyRunning, true);
        assert.equal(again.pausedMs, 0);
        assert.equal((await info(s, s.vm)).state, 'running');
      });
    });

    void it('ends a pause at its leaseUntil without a resume call (invariant 1)', async () => {
      await withSubject(async (s) => {
        const leaseUntil = s.clock.now() + 600;
        const paused = await s.driver.pause({ vm: s.vm, leaseUntil });
        assert.equal(paused.alreadyPaused, false);
        await s.sleep(200);
        assert.equal((await info(s, s.vm)).state, 'paused', 'still paused before the lease');
        // A second pause does not move the lease.
        assert.equal((await s.driver.pause({ vm: s.vm, leaseUntil: leaseUntil + 60_000 })).alreadyPaused, true);
        await s.sleep(leaseUntil - s.clock.now() + leaseTol);
        const after = await info(s, s.vm);
        assert.equal(after.state, 'running', `resumed by the lease within ${leaseTol} ms`);
        assert.equal(after.pausedSince, null);
        const again = await s.driver.resume({ vm: s.vm });
        assert.equal(again.alreadyRunning, true, 'nothing left to resume');
      });
    });

    void it('rejects a call whose deadline has passed with TIMEOUT, doing nothing', async () => {
      await withSubject(async (s) => {
        await expectDriverError(
          s.driver.pause({ vm: s.vm, deadline: s.clock.now() - 1 }),
          'TIMEOUT',
          'DEADLINE_EXCEEDED',
          'pause',
        );
        assert.equal((await info(s, s.vm)).state, 'running');
      });
    });

    void it('rejects calls after close() with UNREACHABLE; close() is idempotent', async () => {
      await withSubject(async (s) => {
        await s.driver.close();
        await s.driver.close();
        await expectDriverError(s.driver.listVms(), 'UNREACHABLE', 'DRIVER_CLOSED', 'listVms');
        await expectDriverError(s.driver.pause({ vm: s.vm }), 'UNREACHABLE', 'DRIVER_CLOSED', 'pause');
      });
    });

    void describe('guest clock', () => {
      void it('stands still while the VM is paused', { skip: needs('guestClock') }, async () => {
        await withSubject(async (s) => {
          const before = await s.driver.guestTime({ vm: s.vm });
          assert.ok(before.roundTripMs >= 0);
          assert.ok(Math.abs(before.offsetMs - (before.guestMs - before.hostMs)) < 1e-6);
          const pausedMs = await makeLag(s);
          const after = await s.driver.guestTime({ vm: s.vm });
          const slack = clockTol + (before.roundTripMs + after.roundTripMs) / 2;
          assert.ok(
            Math.abs(after.offsetMs - (before.offsetMs - pausedMs)) <= slack,
            `offset ${after.offsetMs} ≈ ${before.offsetMs} - ${pausedMs} (±${slack})`,
          );
        });
      });

      void it(
        'resyncClock brings the guest back to within a round trip and measures the residual',
        { skip: needs('guestClock') },
        async () => {
          await withSubject(async (s) => {
            const pausedMs = await makeLag(s);
            const result = await s.driver.resyncClock({ vm: s.vm });
            assert.equal(result.stepped, true);
            assert.ok(
              Math.abs(result.offsetBeforeMs + pausedMs) <= clockTol + result.roundTripMs,
              `offset before ${result.offsetBeforeMs} ≈ -${pausedMs}`,
            );
            assert.ok(
              Math.abs(result.residualMs) <= Math.max(result.roundTripMs, clockTol),
              `residual ${result.residualMs} within the round trip ${result.roundTripMs}`,
            );
            assert.ok(result.measuredAt <= s.clock.now());
            const check = await s.driver.guestTime({ vm: s.vm });
            assert.ok(Math.abs(check.offsetMs) <= clockTol + check.roundTripMs, 'the guest stays in step');
          });
        },
      );

      void it(
        'a pause its lease ended: the clock is resynchronised and the resume reported (invariant 4)',
        { skip: needs('guestClock') },
        async () => {
          await withSubject(async (s) => {
            await s.driver.resyncClock({ vm: s.vm });
            const before = await s.driver.leaseResumes({ vm: s.vm });
            const leaseUntil = s.clock.now() + 3 * LAG_MS;
            const { pausedAt } = await s.driver.pause({ vm: s.vm, leaseUntil });
            // No resume call: the lease resumes the VM, then resynchronises its clock, on its own.
            await s.sleep(leaseUntil - s.clock.now() + leaseTol);
            let found: LeaseResume | undefined;
            for (let i = 0; i < 200 && found === undefined; i++) {
              found = (await s.driver.leaseResumes({ vm: s.vm })).find((r) => Math.abs(r.pausedAt - pausedAt) < 2);
              if (found === undefined) await s.sleep(100);
            }
            assert.ok(found, `a lease resume of the pause at ${pausedAt} is reported`);
            assert.equal(found.vm, s.vm);
            assert.equal(found.clockError, null);
            assert.ok(found.resumedAt >= leaseUntil - STAMP_SLACK_MS, 'not before the lease');
            assert.ok(found.clock, 'with its resync');
            const pausedMs = found.resumedAt - found.pausedAt;
            assert.ok(
              Math.abs(found.clock.offsetBeforeMs + pausedMs) <= clockTol + found.clock.roundTripMs + leaseTol,
              `the guest was behind by the pause: ${found.clock.offsetBeforeMs} ≈ -${pausedMs}`,
            );
            assert.ok(
              Math.abs(found.clock.residualMs) <= Math.max(found.clock.roundTripMs, clockTol),
              `residual ${found.clock.residualMs} within the round trip ${found.clock.roundTripMs}`,
            );
            const check = await s.driver.guestTime({ vm: s.vm });
            assert.ok(
              Math.abs(check.offsetMs) <= clockTol + check.roundTripMs,
              `the guest is in step: ${check.offsetMs}`,
            );
            // Only this pause was added; a later connection (a restarted agent) reads the same.
            const after = await s.driver.leaseResumes({ vm: s.vm });
            assert.equal(after.length, Math.min(before.length + 1, LEASE_RESUMES_KEPT));
          });
        },
      );

      void it('leaves a clock within the tolerance alone', { skip: needs('guestClock') }, async () => {
        await withSubject(async (s) => {
          await s.driver.resyncClock({ vm: s.vm });
          const again = await s.driver.resyncClock({ vm: s.vm, toleranceMs: 10_000 });
          assert.equal(again.stepped, false);
          assert.equal(again.residualMs, again.offsetBeforeMs);
        });
      });

      void it(
        'refuses guest-agent calls while the VM is paused (CONFLICT)',
        { skip: needs('guestClock') },
        async () => {
          await withSubject(async (s) => {
            await s.driver.pause({ vm: s.vm });
            await expectDriverError(s.driver.guestTime({ vm: s.vm }), 'CONFLICT', 'WRONG_STATE', 'guestTime');
            await s.driver.resume({ vm: s.vm });
          });
        },
      );

      void it('is refused with CONFLICT by a driver without guestClock', { skip: lacks('guestClock') }, async () => {
        await withSubject(async (s) => {
          await expectDriverError(s.driver.guestTime({ vm: s.vm }), 'CONFLICT', 'UNSUPPORTED', 'guestTime');
          await expectDriverError(s.driver.resyncClock({ vm: s.vm }), 'CONFLICT', 'UNSUPPORTED', 'resyncClock');
        });
      });
    });

    void describe('in-place VMM swap', () => {
      void it(
        'keeps the VM running in a new process, its guest clock continuous',
        { skip: needs('inPlaceMigration') },
        async () => {
          await withSubject(async (s) => {
            const original = await info(s, s.vm);
            assert.notEqual(original.vmmVersion, s.targetVersion, 'targetVersion differs from the running build');
            let offsetBefore: number | undefined;
            let roundTrip = 0;
            if (caps.guestClock) {
              // A lag that a restart would erase: the guest clock must carry it across the swap.
              await makeLag(s);
              const reading = await s.driver.guestTime({ vm: s.vm });
              offsetBefore = reading.offsetMs;
              roundTrip = reading.roundTripMs;
            }
            const swap = await s.driver.swapVmm({
              vm: s.vm,
              targetVersion: s.targetVersion,
              deadline: s.clock.now() + 10_000,
            });
            assert.equal(swap.changed, true);
            assert.equal(swap.fromVersion, original.vmmVersion);
            assert.equal(swap.toVersion, s.targetVersion);
            assert.ok(swap.generation > original.generation, 'a new VMM process');
            assert.ok(swap.downtimeMs > 0 && swap.downtimeMs <= downtimeTol, `downtime ${swap.downtimeMs}`);
            assert.ok(swap.totalMs >= swap.downtimeMs);
            assert.ok(swap.completedAt >= swap.startedAt);
            const now = await info(s, s.vm);
            assert.equal(now.state, 'running');
            assert.equal(now.vmmVersion, s.targetVersion);
            assert.equal(now.generation, swap.generation);
            assert.equal(now.pausedSince, null);
            assert.equal((await info(s, s.otherVm)).vmmVersion, original.vmmVersion, 'the other VM is untouched');
            if (offsetBefore !== undefined) {
              const after = await s.driver.guestTime({ vm: s.vm });
              const slack = clockTol + (roundTrip + after.roundTripMs) / 2;
              assert.ok(
                Math.abs(after.offsetMs - (offsetBefore - swap.downtimeMs)) <= slack,
                `offset ${after.offsetMs} ≈ ${offsetBefore} - ${swap.downtimeMs}: the guest kept its clock`,
              );
            }
            const back = await s.driver.swapVmm({
              vm: s.vm,
              targetVersion: original.vmmVersion,
              deadline: s.clock.now() + 10_000,
            });
            assert.equal(back.changed, true);
            assert.equal((await info(s, s.vm)).vmmVersion, original.vmmVersion);
          });
        },
      );

      void it('leaves a VM already on the target build alone', { skip: needs('inPlaceMigration') }, async () => {
        await withSubject(async (s) => {
          const original = await info(s, s.vm);
          const swap = await s.driver.swapVmm({
            vm: s.vm,
            targetVersion: original.vmmVersion,
            deadline: s.clock.now() + 10_000,
          });
          assert.equal(swap.changed, false);
          assert.equal(swap.downtimeMs, 0);
          assert.equal(swap.generation, original.generation);
          assert.equal((await info(s, s.vm)).generation, original.generation);
        });
      });

      void it('keeps a paused VM paused through a swap', { skip: needs('inPlaceMigration') }, async () => {
        await withSubject(async (s) => {
          const original = await info(s, s.vm);
          const paused = await s.driver.pause({ vm: s.vm });
          const swap = await s.driver.swapVmm({
            vm: s.vm,
            targetVersion: s.targetVersion,
            deadline: s.clock.now() + 10_000,
          });
          assert.equal(swap.downtimeMs, 0, 'no extra downtime for a VM already paused');
          const during = await info(s, s.vm);
          assert.equal(during.state, 'paused');
          assert.equal(during.pausedSince, paused.pausedAt, 'still the same pause');
          await s.driver.resume({ vm: s.vm });
          await s.driver.swapVmm({ vm: s.vm, targetVersion: original.vmmVersion, deadline: s.clock.now() + 10_000 });
        });
      });

      void it(
        'is refused with CONFLICT by a driver without inPlaceMigration',
        { skip: lacks('inPlaceMigration') },
        async () => {
          await withSubject(async (s) => {
            await expectDriverError(
              s.driver.swapVmm({ vm: s.vm, targetVersion: s.targetVersion, deadline: s.clock.now() + 10_000 }),
              'CONFLICT',
              'UNSUPPORTED',
              'swapVmm',
            );
            assert.equal((await info(s, s.vm)).state, 'running');
          });
        },
      );
    });

    void describe('host update', () => {
      void it('applies an update while the VMs stay paused', { skip: needs('hostUpdate') }, async () => {
        await withSubject(async (s) => {
          await s.driver.pause({ vm: s.vm });
          await s.driver.pause({ vm: s.otherVm });
          const deadline = s.clock.now() + 20_000;
          const result = await s.driver.applyHostUpdate({
            update: { id: 'contract-patch', kind: 'host-patch', expectedApplyMs: 300 },
            deadline,
          });
          assert.equal(result.updateId, 'contract-patch');
          assert.ok(result.completedAt >= result.startedAt && result.completedAt <= deadline);
          assert.ok(Math.abs(result.applyMs - (result.completedAt - result.startedAt)) <= STAMP_SLACK_MS);
          assert.equal((await info(s, s.vm)).state, 'paused', 'the driver does not resume on its own');
          assert.equal((await info(s, s.otherVm)).state, 'paused');
        });
      });

      void it('is refused with CONFLICT by a driver without hostUpdate', { skip: lacks('hostUpdate') }, async () => {
        await withSubject(async (s) => {
          await expectDriverError(
            s.driver.applyHostUpdate({
              update: { id: 'contract-patch', kind: 'host-patch', expectedApplyMs: 10 },
              deadline: s.clock.now() + 1000,
            }),
            'CONFLICT',
            'UNSUPPORTED',
            'applyHostUpdate',
          );
        });
      });
    });

    void describe('restart', () => {
      void it(
        'restarts the VM in a new process, its guest clock from the host',
        { skip: needs('reboot') },
        async () => {
          await withSubject(async (s) => {
            const original = await info(s, s.vm);
            if (caps.guestClock) await makeLag(s);
            const result = await s.driver.reboot({ vm: s.vm, deadline: s.clock.now() + 120_000 });
            assert.ok(result.generation > original.generation);
            assert.equal(result.vmmVersion, original.vmmVersion);
            assert.ok(result.rebootMs > 0);
            const now = await info(s, s.vm);
            assert.equal(now.state, 'running');
            assert.equal(now.generation, result.generation);
            if (caps.guestClock) {
              const reading = await s.driver.guestTime({ vm: s.vm });
              assert.ok(Math.abs(reading.offsetMs) < LAG_MS / 2, `a fresh boot has no lag (${reading.offsetMs})`);
            }
          });
        },
      );

      void it('is refused with CONFLICT by a driver without reboot', { skip: lacks('reboot') }, async () => {
        await withSubject(async (s) => {
          await expectDriverError(s.driver.reboot({ vm: s.vm }), 'CONFLICT', 'UNSUPPORTED', 'reboot');
        });
      });
    });
  });
}

/** Asserts that `promise` rejects with a driver error of `code` and `reason`. */
export async function expectDriverError(
  promise: Promise<unknown>,
  code: ErrorCode,
  reason: DriverErrorReason,
  what = 'the call',
): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isIntermissionError(error), `${what}: an IntermissionError, got ${String(error)}`);
    assert.equal(error.code, code, `${what}: code`);
    assert.equal(driverErrorReason(error), reason, `${what}: details.reason`);
    return error;
  }
  assert.fail(`${what} should have rejected with ${code} (${reason})`);
}
