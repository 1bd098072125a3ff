import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseFleet } from '../../src/domain/index.js';
import { INSTANCE_API_VERSIONS, instanceDocument, selectInstanceNode } from '../../src/imds/index.js';
import { fixture, NEWEST_INSTANCE, INVALID_VERSION_TEXT } from './helpers.js';

const fleet = parseFleet({
  hosts: [{ name: 'h1' }],
  availabilitySets: [{ name: 'web' }],
  vms: [
    {
      name: 'web_0',
      vmId: '02aab8a4-74ef-476e-8182-f6d2ba4166a6',
      host: 'h1',
      availabilitySet: 'web',
      instance: {
        location: 'westus',
        vmSize: 'Standard_A3',
        tags: { Department: 'IT', ReferenceNumber: '123456' },
        zone: '1',
        publicKeys: [{ keyData: 'ssh-rsa AAAA', path: '/home/azureuser/.ssh/authorized_keys' }],
        userData: '#cloud-config ☃',
        macAddress: '000d3af806ec',
        privateIpAddress: '10.1.0.4',
        subnetAddress: '10.1.0.0',
        subnetPrefix: '24',
        priority: 'Spot',
        vmScaleSetName: 'web',
        subscriptionId: '8d10da13-8125-4ba9-a717-bf7490507b3d',
        resourceGroupName: 'rg1',
      },
    },
    { name: 'web_1', host: 'h1', availabilitySet: 'web', instance: { osType: 'Windows' } },
  ],
});
const web0 = fleet.vms[0];
const web1 = fleet.vms[1];
if (web0 === undefined || web1 === undefined) throw new Error('fixture fleet is broken');

const BASIC = [
  'location',
  'name',
  'offer',
  'osType',
  'platformFaultDomain',
  'platformUpdateDomain',
  'publisher',
  'sku',
  'version',
  'vmId',
  'vmSize',
];

void describe('instanceDocument field sets by version', () => {
  void test('2017-03-01 and 2017-04-02: the basic fields only', () => {
    for (const version of ['2017-03-01', '2017-04-02'] as const) {
      assert.deepEqual(Object.keys(instanceDocument(web0, version).compute), BASIC, version);
    }
  });

  void test('fields appear with the version that introduced them', () => {
    const keys = (v: (typeof INSTANCE_API_VERSIONS)[number]): string[] =>
      Object.keys(instanceDocument(web0, v).compute);
    const added = (
      from: (typeof INSTANCE_API_VERSIONS)[number],
      to: (typeof INSTANCE_API_VERSIONS)[number],
    ): string[] => keys(to).filter((k) => !keys(from).includes(k));
    assert.deepEqual(added('2017-04-02', '2017-08-01'), [
      'placementGroupId',
      'resourceGroupName',
      'subscriptionId',
      'tags',
    ]);
    assert.deepEqual(added('2017-10-01', '2017-12-01'), ['vmScaleSetName', 'zone']);
    assert.deepEqual(added('2018-02-01', '2018-04-02'), ['plan', 'publicKeys']);
    assert.deepEqual(added('2018-04-02', '2018-10-01'), ['azEnvironment', 'provider']);
    assert.deepEqual(added('2018-10-01', '2019-02-01'), ['customData']);
    assert.deepEqual(added('2019-02-01', '2019-03-11'), ['resourceId']);
    assert.deepEqual(added('2019-04-30', '2019-06-01'), ['storageProfile']);
    assert.deepEqual(added('2019-06-01', '2019-06-04'), ['tagsList']);
    assert.deepEqual(added('2019-11-01', '2020-06-01'), ['isHostCompatibilityLayerVm', 'securityProfile']);
    assert.deepEqual(added('2020-06-01', '2020-07-15'), ['osProfile']);
    assert.deepEqual(added('2020-07-15', '2020-09-01'), ['licenseType']);
    assert.deepEqual(added('2020-10-01', '2020-12-01'), ['evictionPolicy', 'priority']);
    assert.deepEqual(added('2020-12-01', '2021-01-01'), ['userData']);
    assert.deepEqual(added('2021-02-01', '2021-03-01'), ['extendedLocation', 'virtualMachineScaleSet']);
    assert.deepEqual(added('2021-08-01', '2021-10-01'), ['platformSubFaultDomain']);
    assert.deepEqual(added('2021-10-01', '2021-11-01'), ['additionalCapabilities']);
    assert.deepEqual(added('2021-11-01', '2021-11-15'), ['host', 'hostGroup']);
    assert.deepEqual(added('2023-07-01', '2023-11-15'), ['physicalZone']);
    const all = keys('2025-04-07');
    assert.deepEqual(all, [...all].sort(), 'alphabetical, as Azure sends them');
  });

  void test('nested fields follow their own versions', () => {
    const osProfile = (v: '2020-07-15' | '2020-10-01'): unknown => instanceDocument(web0, v).compute['osProfile'];
    assert.deepEqual(osProfile('2020-07-15'), { adminUsername: 'azureuser', computerName: 'web_0' });
    assert.deepEqual(osProfile('2020-10-01'), {
      adminUsername: 'azureuser',
      computerName: 'web_0',
      disablePasswordAuthentication: 'true',
    });
    assert.deepEqual(instanceDocument(web0, '2020-06-01').compute['securityProfile'], {
      secureBootEnabled: 'false',
      virtualTpmEnabled: 'false',
    });
    assert.deepEqual(instanceDocument(web0, '2021-12-13').compute['securityProfile'], {
      encryptionAtHost: 'false',
      secureBootEnabled: 'false',
      securityType: '',
      virtualTpmEnabled: 'false',
    });
    const storage = (v: '2019-06-01' | '2021-02-01'): string[] =>
      Object.keys(instanceDocument(web0, v).compute['storageProfile'] as object);
    assert.deepEqual(storage('2019-06-01'), ['dataDisks', 'imageReference', 'osDisk']);
    assert.deepEqual(storage('2021-02-01'), ['dataDisks', 'imageReference', 'osDisk', 'resourceDisk']);
  });
});

void describe('instanceDocument values', () => {
  void test('fleet facts as strings, inapplicable ones as ""', () => {
    const c = instanceDocument(web0, '2025-04-07').compute;
    assert.equal(c['name'], 'web_0');
    assert.equal(c['vmId'], '02aab8a4-74ef-476e-8182-f6d2ba4166a6');
    assert.equal(c['location'], 'westus');
    assert.equal(c['platformUpdateDomain'], '0');
    assert.equal(c['platformFaultDomain'], '0');
    assert.equal(c['tags'], 'Department:IT;ReferenceNumber:123456');
    assert.deepEqual(c['tagsList'], [
      { name: 'Department', value: 'IT' },
      { name: 'ReferenceNumber', value: '123456' },
    ]);
    assert.equal(c['userData'], Buffer.from('#cloud-config ☃', 'utf8').toString('base64'));
    assert.deepEqual(c['publicKeys'], [{ keyData: 'ssh-rsa AAAA', path: '/home/azureuser/.ssh/authorized_keys' }]);
    assert.equal(c['priority'], 'Spot');
    assert.equal(c['evictionPolicy'], 'Deallocate');
    assert.equal(c['azEnvironment'], 'AzurePublicCloud');
    assert.equal(c['provider'], 'Microsoft.Compute');
    assert.equal(c['placementGroupId'], '');
    assert.equal(c['customData'], '');
    assert.equal(c['offer'], '');
    assert.equal(c['zone'], '1');
    assert.equal(
      c['resourceId'],
      '/subscriptions/8d10da13-8125-4ba9-a717-bf7490507b3d/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachineScaleSets/web/virtualMachines/0',
    );
    assert.deepEqual(c['virtualMachineScaleSet'], {
      id: '/subscriptions/8d10da13-8125-4ba9-a717-bf7490507b3d/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachineScaleSets/web',
    });
    const w = instanceDocument(web1, '2025-04-07').compute;
    assert.equal(w['platformUpdateDomain'], '1');
    assert.equal(w['platformFaultDomain'], '1');
    assert.equal(w['osType'], 'Windows');
    assert.equal(w['evictionPolicy'], '');
    assert.equal(w['tags'], '');
    assert.deepEqual(w['tagsList'], []);
    assert.deepEqual((w['osProfile'] as Record<string, string>)['disablePasswordAuthentication'], 'false');
    assert.equal(
      w['resourceId'],
      '/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/intermission/providers/Microsoft.Compute/virtualMachines/web_1',
    );
  });

  void test('network: one interface with Azure’s shape, MAC as 12 uppercase hex digits', () => {
    assert.equal(
      JSON.stringify(instanceDocument(web0, '2021-02-01').network),
      '{"interface":[{"ipv4":{"ipAddress":[{"privateIpAddress":"10.1.0.4","publicIpAddress":""}],' +
        '"subnet":[{"address":"10.1.0.0","prefix":"24"}]},"ipv6":{"ipAddress":[]},"macAddress":"000D3AF806EC"}]}',
    );
  });
});

void describe('selectInstanceNode', () => {
  const root = instanceDocument(web0, '2021-02-01');
  void test('walks keys and array indexes', () => {
    assert.equal(
      selectInstanceNode(root, ['network', 'interface', '0', 'ipv4', 'ipAddress', '0', 'privateIpAddress']),
      '10.1.0.4',
    );
    assert.equal(
      selectInstanceNode(root, ['compute', 'publicKeys', '0', 'path']),
      '/home/azureuser/.ssh/authorized_keys',
    );
    assert.equal(selectInstanceNode(root, []), root);
  });

  void test('undefined for what does not exist', () => {
    for (const path of [
      ['nope'],
      ['compute', 'Name'],
      ['compute', 'name', 'x'],
      ['network', 'interface', '1'],
      ['network', 'interface', '00'],
      ['network', 'interface', '-1'],
      ['network', 'interface', 'length'],
      ['compute', 'toString'],
      ['compute', '__proto__'],
    ]) {
      assert.equal(selectInstanceNode(root, path), undefined, path.join('/'));
    }
  });
});

void describe('GET /metadata/instance (in process)', () => {
  const f = fixture({ fleet });
  const get = async (path: string, vm = 'web_0'): Promise<{ status: number; type: string | null; body: string }> => {
    const res = await f.fetch(path, {}, vm);
    return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
  };

  void test('route filtering returns subtrees as JSON and leaves as text', async () => {
    assert.deepEqual(await get('/metadata/instance/network/interface/0/ipv4?api-version=2021-02-01'), {
      status: 200,
      type: 'application/json; charset=utf-8',
      body: '{"ipAddress":[{"privateIpAddress":"10.1.0.4","publicIpAddress":""}],"subnet":[{"address":"10.1.0.0","prefix":"24"}]}',
    });
    assert.deepEqual(
      await get(
        '/metadata/instance/network/interface/0/ipv4/ipAddress/0/publicIpAddress?api-version=2021-02-01&format=text',
      ),
      { status: 200, type: 'text/plain; charset=utf-8', body: '' },
    );
    assert.deepEqual(await get('/metadata/instance/compute/tags?api-version=2021-02-01&format=text'), {
      status: 200,
      type: 'text/plain; charset=utf-8',
      body: 'Department:IT;ReferenceNumber:123456',
    });
    assert.equal((await get('/metadata/instance/compute/vmId/?api-version=2021-02-01&format=text')).body, web0.vmId);
    assert.equal((await get('/metadata/instance/compute/publicKeys?api-version=2021-02-01')).status, 200);
    assert.equal(
      (await get('/metadata/instance/compute/name?api-version=2021-02-01&format=text', 'web_1')).body,
      'web_1',
    );
  });

  void test('format rules: text for leaves only, json (or none) for the rest', async () => {
    const bad = (text: string): { status: number; type: string; body: string } => ({
      status: 400,
      type: 'application/json; charset=utf-8',
      body: JSON.stringify({ error: text }),
    });
    const leaf = bad('Bad request. A leaf value can only be read with format=text');
    assert.deepEqual(await get('/metadata/instance/compute/vmId?api-version=2018-04-02&format=json'), leaf);
    assert.deepEqual(await get('/metadata/instance/compute/vmId?api-version=2018-04-02'), leaf);
    const branch = bad('Bad request. format=text is only supported for a leaf value');
    assert.deepEqual(await get('/metadata/instance/compute?api-version=2018-04-02&format=text'), branch);
    assert.deepEqual(await get('/metadata/instance/compute/publicKeys?api-version=2018-04-02&format=text'), branch);
    assert.deepEqual(
      await get('/metadata/instance?api-version=2018-04-02&format=xml'),
      bad('Bad request. format must be json or text'),
    );
    assert.equal((await get('/metadata/instance/compute?api-version=2018-04-02&format=json')).status, 200);
  });

  void test('404 for missing keys, out-of-range indexes, and fields newer than the version', async () => {
    for (const path of [
      '/metadata/instance/compute/nope?api-version=2021-02-01',
      '/metadata/instance/network/interface/1?api-version=2021-02-01',
      '/metadata/instance/network/interface/x?api-version=2021-02-01',
      '/metadata/instance/compute/userData?api-version=2020-12-01&format=text',
    ]) {
      assert.deepEqual(
        await get(path),
        { status: 404, type: 'application/json; charset=utf-8', body: '{"error":"Not found"}' },
        path,
      );
    }
    assert.equal((await get('/metadata/instance/compute/userData?api-version=2021-01-01&format=text')).status, 200);
  });

  void test('a VM that left the fleet gets 404', async () => {
    assert.equal((await get('/metadata/instance?api-version=2021-02-01', 'gone_0')).status, 404);
  });

  void test('/metadata/versions lists the instance versions, oldest first, unversioned', async () => {
    const expected = JSON.stringify({ apiVersions: INSTANCE_API_VERSIONS });
    assert.deepEqual(await get('/metadata/versions'), {
      status: 200,
      type: 'application/json; charset=utf-8',
      body: expected,
    });
    assert.equal((await get('/metadata/versions?api-version=nonsense')).body, expected);
    assert.equal(INSTANCE_API_VERSIONS.length, 35);
  });

  void test('/metadata without a version: 400 with the newest instance versions', async () => {
    assert.deepEqual(await get('/metadata'), {
      status: 400,
      type: 'application/json; charset=utf-8',
      body: JSON.stringify({ error: INVALID_VERSION_TEXT, 'newest-versions': NEWEST_INSTANCE }),
    });
  });
});
