/** The registry of agent drivers: lookup by kind, the `--driver` option built from it, and refusals. */
import { strict as assert } from 'node:assert';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FleetIndex, IntermissionError, parseFleet } from '../../src/domain/index.js';
import { realTime } from '../../src/hypervisor/sim/index.js';
import {
  AGENT_DRIVERS,
  agentDriverFactory,
  agentDriverFromFlags,
  agentDriverKinds,
  driverOptionHelp,
  openAgentDriver,
  optionKey,
} from '../../src/service/driver-registry.js';

/** The INVALID_INPUT message `run` throws (sync or async). */
async function refusal(run: () => unknown): Promise<string> {
  try {
    await run();
  } catch (error) {
    assert.ok(error instanceof IntermissionError, String(error));
    assert.equal(error.code, 'INVALID_INPUT');
    return error.message;
  }
  assert.fail('accepted');
}

describe('agent driver registry', () => {
  it('lists sim then qemu, sim first (the default of --driver)', () => {
    assert.deepEqual(agentDriverKinds(), ['sim', 'qemu']);
    assert.equal(agentDriverFactory('qemu'), AGENT_DRIVERS.qemu);
  });

  it('refuses an unknown kind with the known ones listed', async () => {
    assert.equal(
      await refusal(() => agentDriverFactory('libvirt')),
      'the driver kind wants sim or qemu, got "libvirt"',
    );
    // Names inherited from Object are not kinds.
    assert.match(await refusal(() => agentDriverFactory('toString')), /wants sim or qemu, got "toString"/);
    assert.equal(
      await refusal(() => agentDriverFromFlags('xen', { seed: '1' })),
      '--driver wants sim or qemu, got "xen"',
    );
  });

  it('builds the --driver help and the option names from the factories', () => {
    assert.equal(driverOptionHelp(), "sim (a simulated host in this process) | qemu (this machine's VMs)");
    assert.equal(optionKey('--qemu-config <file>'), 'qemuConfig');
    assert.equal(optionKey('--seed <n>'), 'seed');
  });

  it('reads each kind from its own options, and refuses another kind’s', async () => {
    assert.deepEqual(await agentDriverFromFlags('sim', { seed: '7' }), { kind: 'sim', seed: 7 });
    assert.equal(await refusal(() => agentDriverFromFlags('sim', { seed: '1.5' })), '--seed wants an integer, got 1.5');
    assert.equal(
      await refusal(() => agentDriverFromFlags('sim', { seed: '1', qemuConfig: 'q.yaml' })),
      '--qemu-config is for --driver qemu',
    );
    assert.equal(
      await refusal(() => agentDriverFromFlags('qemu', { seed: '1' })),
      '--driver qemu needs --qemu-config <file>',
    );
    const dir = await mkdtemp(join(tmpdir(), 'registry-'));
    const file = join(dir, 'q.json');
    await writeFile(
      file,
      JSON.stringify({
        runDir: 'run',
        vmmBuilds: { a: '/usr/bin/qemu-system-x86_64' },
        defaultVmmVersion: 'a',
        kernel: 'k',
        initrd: 'i',
        metadataDir: 'md',
      }),
    );
    const choice = await agentDriverFromFlags('qemu', { seed: '1', qemuConfig: file });
    assert.equal(choice.kind, 'qemu');
    assert.equal(choice.kind === 'qemu' && choice.config.runDir, join(dir, 'run'));
  });

  it('opens a simulated host holding the fleet VMs of the agent host', async () => {
    const fleet = new FleetIndex(
      parseFleet({
        hosts: [{ name: 'h1' }, { name: 'h2' }],
        vms: [
          { name: 'a', host: 'h1' },
          { name: 'b', host: 'h2' },
        ],
      }),
    );
    const host = fleet.host('h1');
    assert.ok(host);
    const opened = await openAgentDriver({ kind: 'sim', seed: 3 }, { host, fleet, time: realTime() });
    assert.ok(opened.simHost);
    assert.equal(opened.qemu, undefined);
    assert.deepEqual(
      (await opened.driver.listVms()).map((vm) => vm.name),
      ['a'],
    );
    await opened.driver.close();
  });
});
