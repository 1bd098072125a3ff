import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FleetIndex, isIntermissionError, parseFleet, type FleetFile } from '../../src/domain/index.js';

const base = (): FleetFile => ({
  hosts: [{ name: 'h1' }, { name: 'h2', labels: { rack: 'r2' } }],
  availabilitySets: [{ name: 'web', updateDomains: 3 }],
  vms: [
    { name: 'web-0', host: 'h1', availabilitySet: 'web' },
    { name: 'web-1', host: 'h2', availabilitySet: 'web' },
    { name: 'web-2', host: 'h1', availabilitySet: 'web' },
    { name: 'web-3', host: 'h2', availabilitySet: 'web' },
    { name: 'solo', host: 'h2' },
  ],
});

/** Asserts that parseFleet refuses `input` with INVALID_INPUT whose message and issues mention `...parts`. */
function refuses(input: unknown, ...parts: (string | RegExp)[]): void {
  assert.throws(
    () => parseFleet(input),
    (error: unknown) => {
      assert.ok(isIntermissionError(error, 'INVALID_INPUT'), `expected INVALID_INPUT, got ${String(error)}`);
      assert.ok(Array.isArray(error.details.issues), 'details.issues lists the problems');
      for (const part of parts) {
        if (typeof part === 'string') assert.ok(error.message.includes(part), `"${error.message}" lacks "${part}"`);
        else assert.match(error.message, part);
      }
      return true;
    },
  );
}

void describe('parseFleet', () => {
  void it('deals update and fault domains round-robin within a set and fills in stable defaults', () => {
    const fleet = parseFleet(base());
    const byName = new Map(fleet.vms.map((v) => [v.name, v]));
    assert.deepEqual(
      ['web-0', 'web-1', 'web-2', 'web-3'].map((n) => [byName.get(n)?.updateDomain, byName.get(n)?.faultDomain]),
      [
        [0, 0],
        [1, 1],
        [2, 0],
        [0, 1],
      ],
    );
    assert.deepEqual(fleet.availabilitySets, [{ name: 'web', updateDomains: 3, faultDomains: 2 }]);
    const solo = byName.get('solo');
    assert.equal(solo?.availabilitySet, undefined);
    assert.equal(solo?.instance.computerName, 'solo');
    assert.match(solo?.vmId ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(solo?.instance.macAddress ?? '', /^[0-9A-F]{12}$/);
    assert.deepEqual(parseFleet(base()), fleet, 'the same file gives the same fleet');
    assert.deepEqual(fleet.hosts[1], { name: 'h2', labels: { rack: 'r2' } });
  });

  void it('indexes VMs by scope and host', () => {
    const index = new FleetIndex(parseFleet(base()));
    assert.equal(index.scopeOfVm('web-1'), 'set:web');
    assert.equal(index.scopeOfVm('solo'), 'vm:solo');
    assert.equal(index.scopeOfVm('nope'), undefined);
    assert.deepEqual(
      index.vmsInScope('set:web').map((v) => v.name),
      ['web-0', 'web-1', 'web-2', 'web-3'],
    );
    assert.deepEqual(
      index.vmsOnHost('h2').map((v) => v.name),
      ['web-1', 'web-3', 'solo'],
    );
    assert.throws(
      () => index.requireVm('nope'),
      (e: unknown) => isIntermissionError(e, 'NOT_FOUND'),
    );
  });

  void it('refuses unknown keys, wherever they are, naming the path', () => {
    refuses({ ...base(), colour: 'red' }, '(root)', 'colour');
    refuses({ ...base(), vms: [{ name: 'a', host: 'h1', colour: 'red' }] }, 'vms.0', 'colour');
    refuses({ ...base(), vms: [{ name: 'a', host: 'h1', instance: { vmSzie: 'x' } }] }, 'vms.0.instance', 'vmSzie');
    refuses({ ...base(), hosts: [{ name: 'h1', label: {} }] }, 'hosts.0', 'label');
  });

  void it('refuses duplicate names of hosts, sets, VMs and vmIds', () => {
    refuses({ ...base(), hosts: [{ name: 'h1' }, { name: 'h1' }, { name: 'h2' }] }, 'host h1 is listed twice');
    refuses(
      { ...base(), availabilitySets: [{ name: 'web' }, { name: 'web' }] },
      'availability set web is listed twice',
    );
    refuses({ ...base(), vms: [...base().vms, { name: 'web-0', host: 'h2' }] }, 'vms.5 (web-0): VM name is used twice');
    const id = '11111111-2222-4333-8444-555555555555';
    refuses(
      {
        ...base(),
        vms: [
          { name: 'a', host: 'h1', vmId: id },
          { name: 'b', host: 'h1', vmId: id.toUpperCase() },
        ],
      },
      `vms.1 (b): vmId ${id} is used twice`,
    );
  });

  void it('refuses update and fault domains out of range', () => {
    refuses(
      { ...base(), vms: [{ name: 'a', host: 'h1', availabilitySet: 'web', updateDomain: 3 }] },
      'vms.0 (a): update domain 3 is outside 0..2',
    );
    refuses(
      { ...base(), vms: [{ name: 'a', host: 'h1', availabilitySet: 'web', faultDomain: 2 }] },
      'vms.0 (a): fault domain 2 is outside 0..1',
    );
    refuses({ ...base(), availabilitySets: [{ name: 'web', updateDomains: 21 }] }, 'availabilitySets.0.updateDomains');
    refuses({ ...base(), availabilitySets: [{ name: 'web', faultDomains: 4 }] }, 'availabilitySets.0.faultDomains');
    refuses({ ...base(), availabilitySets: [{ name: 'web', updateDomains: 0 }] }, 'availabilitySets.0.updateDomains');
    refuses({ ...base(), vms: [{ name: 'a', host: 'h1', updateDomain: -1 }] }, 'vms.0.updateDomain');
    refuses(
      { ...base(), vms: [{ name: 'a', host: 'h1', updateDomain: 1 }] },
      'a standalone VM has update and fault domain 0',
    );
  });

  void it('refuses a VM without a host or on a host that is not listed', () => {
    refuses({ ...base(), vms: [{ name: 'a' }] }, 'vms.0.host');
    refuses({ ...base(), vms: [{ name: 'a', host: 'h9' }] }, 'vms.0 (a): host h9 is not in hosts');
    refuses(
      { ...base(), vms: [{ name: 'a', host: 'h1', availabilitySet: 'db' }] },
      'availability set db is not in availabilitySets',
    );
  });

  void it('refuses bad names and ids, and input that is not a fleet at all', () => {
    refuses({ ...base(), vms: [{ name: '-bad', host: 'h1' }] }, 'vms.0.name', 'starting with a letter or digit');
    refuses({ ...base(), vms: [{ name: 'a', host: 'h1', vmId: 'not-a-guid' }] }, 'vms.0.vmId', 'must be a GUID');
    refuses(null, '(root)');
    refuses('hosts: []', '(root)');
    refuses({ hosts: [] }, 'vms');
  });

  void it('reports every problem at once, not only the first', () => {
    refuses(
      {
        hosts: [{ name: 'h1' }],
        vms: [
          { name: 'a', host: 'h9' },
          { name: 'a', host: 'h1', updateDomain: 2 },
        ],
      },
      'host h9 is not in hosts',
      'VM name is used twice',
      'a standalone VM has update and fault domain 0',
    );
  });
});
