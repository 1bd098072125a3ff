import type { Vm } from '../domain/index.js';
import type { InstanceApiVersion } from './versions.js';

/**
 * A value of the instance-metadata document. IMDS-doc: "all primitives will be of type string, and
 * missing or inapplicable values are always included but will be set to an empty string"; arrays
 * stay arrays.
 */
export type InstanceValue = string | readonly InstanceValue[] | { readonly [key: string]: InstanceValue };

/** An object node of the instance document. */
export type InstanceObject = { readonly [key: string]: InstanceValue };

/** The body of `GET /metadata/instance`: `{"compute":{…},"network":{"interface":[…]}}`. */
export type InstanceDocument = {
  readonly compute: InstanceObject;
  readonly network: { readonly interface: readonly InstanceObject[] };
};

/** `azEnvironment`: we emulate the public cloud, which every client knows. */
export const AZ_ENVIRONMENT = 'AzurePublicCloud';
/** `provider` of every VM. */
export const COMPUTE_PROVIDER = 'Microsoft.Compute';

/**
 * The instance document of `vm` as `version` shows it. Fields appear from the version that
 * introduced them (spec 2 table); the basic fields that GA'd with 2017-04-02 are also shown to the
 * 2017-03-01 preview, whose clients read the same `compute.name`. Keys are in Azure's (alphabetical)
 * order. Facts the fleet does not hold (image, plan, disks, hosts) are `""`, as Azure shows
 * inapplicable values.
 */
export function instanceDocument(vm: Vm, version: InstanceApiVersion): InstanceDocument {
  const at = (since: string): boolean => version >= since;
  const info = vm.instance;
  const resourceGroupPath = `/subscriptions/${info.subscriptionId}/resourceGroups/${info.resourceGroupName}/providers/${COMPUTE_PROVIDER}`;
  const scaleSetId = info.vmScaleSetName ? `${resourceGroupPath}/virtualMachineScaleSets/${info.vmScaleSetName}` : '';
  const scaleSetPrefix = `${info.vmScaleSetName}_`;
  const resourceId =
    scaleSetId && vm.name.startsWith(scaleSetPrefix)
      ? `${scaleSetId}/virtualMachines/${vm.name.slice(scaleSetPrefix.length)}`
      : `${resourceGroupPath}/virtualMachines/${vm.name}`;
  const tagEntries = Object.entries(info.tags);

  const compute: Record<string, InstanceValue> = {};
  const put = (since: string, key: string, value: () => InstanceValue): void => {
    if (at(since)) compute[key] = value();
  };
  put('2021-11-01', 'additionalCapabilities', () => ({ hibernationEnabled: 'false' }));
  put('2018-10-01', 'azEnvironment', () => AZ_ENVIRONMENT);
  // Deprecated by Azure: always empty.
  put('2019-02-01', 'customData', () => '');
  // Azure's default eviction policy for Spot is Deallocate; "" for Regular VMs.
  put('2020-12-01', 'evictionPolicy', () => (info.priority === 'Spot' ? 'Deallocate' : ''));
  put('2021-03-01', 'extendedLocation', () => ({ name: '', type: '' }));
  put('2021-11-15', 'host', () => ({ id: '' }));
  put('2021-11-15', 'hostGroup', () => ({ id: '' }));
  put('2020-06-01', 'isHostCompatibilityLayerVm', () => 'false');
  put('2020-09-01', 'licenseType', () => '');
  put('2017-03-01', 'location', () => info.location);
  put('2017-03-01', 'name', () => vm.name);
  put('2017-03-01', 'offer', () => '');
  put('2020-07-15', 'osProfile', () => {
    const profile: Record<string, InstanceValue> = {
      adminUsername: info.adminUsername,
      computerName: info.computerName || vm.name,
    };
    // cloud-init turns password logins off when this is "true": a Linux VM given SSH keys.
    if (at('2020-10-01')) {
      profile['disablePasswordAuthentication'] = String(info.osType === 'Linux' && info.publicKeys.length > 0);
    }
    return profile;
  });
  put('2017-03-01', 'osType', () => info.osType);
  put('2023-11-15', 'physicalZone', () => '');
  put('2017-08-01', 'placementGroupId', () => '');
  put('2018-04-02', 'plan', () => ({ name: '', product: '', publisher: '' }));
  put('2017-03-01', 'platformFaultDomain', () => String(vm.faultDomain));
  put('2021-10-01', 'platformSubFaultDomain', () => '');
  put('2017-03-01', 'platformUpdateDomain', () => String(vm.updateDomain));
  put('2020-12-01', 'priority', () => info.priority);
  put('2018-10-01', 'provider', () => COMPUTE_PROVIDER);
  put('2018-04-02', 'publicKeys', () => info.publicKeys.map((k) => ({ keyData: k.keyData, path: k.path })));
  put('2017-03-01', 'publisher', () => '');
  put('2017-08-01', 'resourceGroupName', () => info.resourceGroupName);
  put('2019-03-11', 'resourceId', () => resourceId);
  put('2020-06-01', 'securityProfile', () => {
    const profile: Record<string, InstanceValue> = {};
    if (at('2021-11-01')) profile['encryptionAtHost'] = 'false';
    profile['secureBootEnabled'] = 'false';
    if (at('2021-12-13')) profile['securityType'] = '';
    profile['virtualTpmEnabled'] = 'false';
    return profile;
  });
  put('2017-03-01', 'sku', () => '');
  put('2019-06-01', 'storageProfile', () => {
    const profile: Record<string, InstanceValue> = {
      dataDisks: [],
      imageReference: { id: '', offer: '', publisher: '', sku: '', version: '' },
      osDisk: {
        caching: '',
        createOption: '',
        diskSizeGB: '',
        managedDisk: { id: '', storageAccountType: '' },
        name: '',
        osType: info.osType,
      },
    };
    if (at('2021-02-01')) profile['resourceDisk'] = { size: '' };
    return profile;
  });
  put('2017-08-01', 'subscriptionId', () => info.subscriptionId);
  put('2017-08-01', 'tags', () => tagEntries.map(([k, v]) => `${k}:${v}`).join(';'));
  put('2019-06-04', 'tagsList', () => tagEntries.map(([name, value]) => ({ name, value })));
  put('2021-01-01', 'userData', () => base64(info.userData));
  put('2017-03-01', 'version', () => '');
  put('2021-03-01', 'virtualMachineScaleSet', () => ({ id: scaleSetId }));
  put('2017-03-01', 'vmId', () => vm.vmId);
  put('2017-12-01', 'vmScaleSetName', () => info.vmScaleSetName);
  put('2017-03-01', 'vmSize', () => info.vmSize);
  put('2017-12-01', 'zone', () => info.zone);

  const nic: InstanceObject = {
    ipv4: {
      ipAddress: [{ privateIpAddress: info.privateIpAddress, publicIpAddress: '' }],
      subnet: [{ address: info.subnetAddress, prefix: info.subnetPrefix }],
    },
    ipv6: { ipAddress: [] },
    macAddress: info.macAddress,
  };
  return { compute, network: { interface: [nic] } };
}

/**
 * Route filtering: walks `segments` (keys, and decimal indexes into arrays) down from `root`, as
 * in `/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress`.
 *
 * @returns the node, or undefined when a key or index does not exist
 */
export function selectInstanceNode(root: InstanceValue, segments: readonly string[]): InstanceValue | undefined {
  let node: InstanceValue = root;
  for (const segment of segments) {
    if (typeof node === 'string') return undefined;
    if (isInstanceArray(node)) {
      if (!/^(0|[1-9][0-9]{0,8})$/.test(segment)) return undefined;
      const item: InstanceValue | undefined = node[Number(segment)];
      if (item === undefined) return undefined;
      node = item;
    } else {
      if (!Object.hasOwn(node, segment)) return undefined;
      const child: InstanceValue | undefined = node[segment];
      if (child === undefined) return undefined;
      node = child;
    }
  }
  return node;
}

function isInstanceArray(value: InstanceValue): value is readonly InstanceValue[] {
  return Array.isArray(value);
}

/** Base64 of the UTF-8 bytes: `userData` is served encoded, as Azure serves it. */
function base64(text: string): string {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}
