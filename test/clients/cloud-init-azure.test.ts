/**
 * The REAL cloud-init Azure datasource (Debian bookworm's cloud-init 22.4.2, unmodified, imported as
 * a python library by cloudinit_probe.py) against our metadata service, in a network namespace that
 * owns 169.254.169.254. What cloud-init sends (read from its source and seen on the wire):
 *   GET /metadata/instance?api-version=2021-08-01&extended=true   (full document)
 *   GET /metadata/instance/network?api-version=2021-08-01          (primary-NIC probe)
 *   GET /metadata/instance?api-version=2019-06-01                  (its fallback, only after a 400)
 * with `Metadata: true`, `User-Agent: Cloud-Init/22.4.2`, a 2 s timeout, retrying 404/410/429/500.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CLIENT_PATHS, IMDS_ADDRESS, MetadataService, Namespace, PYTHON, cleanEnv, preflight } from './harness.js';

const ready = preflight(['cloud-init']);
const PROBE = fileURLToPath(new URL('./cloudinit_probe.py', import.meta.url));

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3Qta2V5LW9mLWludGVybWlzc2lvbi1ub3QtcmVhbA test@intermission';
const USER_DATA = '#cloud-config\nruncmd:\n  - echo hello from intermission\n';
const PROVISIONED = {
  name: 'app_0',
  vmId: '6f1b6c62-2c4a-4c3e-9d5b-0c8e3f1a2b3c',
  host: 'host-1',
  instance: {
    location: 'westeurope',
    zone: '2',
    computerName: 'app-host-0',
    adminUsername: 'appadmin',
    publicKeys: [{ keyData: KEY, path: '/home/appadmin/.ssh/authorized_keys' }],
    userData: USER_DATA, // the fleet holds text; IMDS serves it base64-encoded
    macAddress: '000D3AF806EC',
    privateIpAddress: '10.1.0.4',
    subnetAddress: '10.1.0.0',
    subnetPrefix: '24',
  },
};
const FLEET = {
  hosts: [{ name: 'host-1' }],
  availabilitySets: [{ name: 'web', updateDomains: 2 }],
  vms: [PROVISIONED, { name: 'web_0', host: 'host-1', availabilitySet: 'web' }],
};

interface ProbeOutput {
  cloudInitVersion: string;
  imdsVerWant: string;
  imdsVerMin: string;
  full: Record<string, unknown> & { compute?: Record<string, unknown>; network?: { interface?: unknown[] } };
  network: Record<string, unknown>;
  minVersion: { compute?: Record<string, unknown>; error?: string };
  derived: {
    hostname?: string;
    username?: string;
    disablePassword?: boolean | null;
    userData?: string;
    sshKeys?: unknown;
    networkConfig?: unknown;
    region?: string;
    availabilityZone?: string;
  };
  logs: { level: string; logger: string; message: string }[];
}

/** Every JSON primitive in the instance document, with its path (IMDS: all primitives are strings). */
function leaves(value: unknown, path = ''): [string, unknown][] {
  if (Array.isArray(value)) return value.flatMap((v, i) => leaves(v, `${path}/${i}`));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) => leaves(v, `${path}/${k}`));
  }
  return [[path, value]];
}

void describe('cloud-init Azure datasource (Debian cloud-init) against serve-metadata', { skip: ready.skip }, () => {
  let ns: Namespace | undefined;
  let scratch: string | undefined;

  before(async () => {
    ready.assertReady();
    ns = await Namespace.create('cinit');
    scratch = await mkdtemp(join(tmpdir(), 'intermission-cloudinit-'));
  });

  after(async () => {
    await ns?.delete();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  /** Serves `vm` at 169.254.169.254:80 and runs the probe there. */
  async function probe(vm: string): Promise<{ out: ProbeOutput; trace: string }> {
    assert.ok(ns && scratch, 'set up by before()');
    const service = await MetadataService.start({ ns, fleet: FLEET, binds: { [vm]: `${IMDS_ADDRESS}:80` } });
    try {
      const r = await ns.exec(PYTHON, [PROBE, CLIENT_PATHS['cloud-init'].distPackages, join(scratch, vm)], {
        env: cleanEnv({ HOME: scratch }),
        timeoutMs: 40_000,
      });
      assert.equal(r.code, 0, `probe failed: ${r.stderr}${r.stdout}${service.output()}`);
      const out = JSON.parse(r.stdout) as ProbeOutput;
      const trace = `cloud-init log:\n${out.logs.map((l) => `${l.level} ${l.message}`).join('\n')}${service.output()}`;
      return { out, trace };
    } finally {
      await service.cleanup();
    }
  }

  void it(
    'fetches and parses a provisioned VM at api-version 2021-08-01 without falling back',
    { timeout: 60_000 },
    async () => {
      const { out, trace } = await probe(PROVISIONED.name);
      assert.equal(out.cloudInitVersion, '22.4.2');
      assert.equal(out.imdsVerWant, '2021-08-01');
      const compute = out.full.compute;
      assert.ok(compute, `got the instance document: ${JSON.stringify(out.full)}\n${trace}`);
      assert.equal(compute.name, PROVISIONED.name);
      assert.equal(compute.vmId, PROVISIONED.vmId);
      assert.equal(compute.location, 'westeurope');
      // Our service accepted cloud-init's preferred version (and ?extended=true): no 400, no fallback.
      const messages = out.logs.map((l) => l.message).join('\n');
      assert.doesNotMatch(
        messages,
        /Fall back to IMDS api-version|UrlError with IMDS|Ignoring IMDS instance metadata/,
        trace,
      );

      // IMDS rule: every primitive is a string (cloud-init compares disablePasswordAuthentication with "true").
      const nonStrings = leaves(out.full).filter(([, v]) => typeof v !== 'string');
      assert.deepEqual(nonStrings, [], 'all primitives in /metadata/instance are strings');

      // What cloud-init provisions from it.
      assert.equal(out.derived.hostname, 'app-host-0', trace);
      assert.equal(out.derived.username, 'appadmin', trace);
      assert.equal(
        typeof out.derived.disablePassword,
        'boolean',
        `osProfile.disablePasswordAuthentication is served: ${trace}`,
      );
      assert.deepEqual(out.derived.sshKeys, [KEY], trace);
      assert.equal(out.derived.userData, USER_DATA, trace);
      assert.equal(out.derived.region, 'westeurope', trace);
      assert.equal(out.derived.availabilityZone, '0', 'platformFaultDomain of a standalone VM');
      assert.deepEqual(
        out.derived.networkConfig,
        {
          version: 2,
          ethernets: {
            eth0: {
              dhcp4: true,
              'dhcp4-overrides': { 'route-metric': 100 },
              dhcp6: false,
              match: { macaddress: '00:0d:3a:f8:06:ec' },
              'set-name': 'eth0',
            },
          },
        },
        trace,
      );
      const nic = out.full.network?.interface?.[0] as { ipv4?: { ipAddress?: { privateIpAddress?: string }[] } };
      assert.equal(nic.ipv4?.ipAddress?.[0]?.privateIpAddress, '10.1.0.4');

      // Route filtering: /metadata/instance/network is the network part of the same document.
      assert.deepEqual(out.network, out.full.network, trace);
      // cloud-init's fallback version works too.
      assert.equal(out.minVersion.compute?.name, PROVISIONED.name, JSON.stringify(out.minVersion));
      assert.equal(out.minVersion.compute?.vmId, PROVISIONED.vmId);
    },
  );

  void it('a VM with only fleet defaults gives cloud-init a usable document', { timeout: 60_000 }, async () => {
    const { out, trace } = await probe('web_0');
    const compute = out.full.compute;
    assert.ok(compute, trace);
    assert.equal(compute.name, 'web_0');
    assert.match(String(compute.vmId), /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.equal(out.derived.hostname, 'web_0', 'computerName defaults to the VM name');
    assert.deepEqual(out.derived.sshKeys, [], trace);
    // A derived MAC and private address: cloud-init matches the NIC by MAC.
    const eth0 = (out.derived.networkConfig as { ethernets?: Record<string, { match?: { macaddress?: string } }> })
      .ethernets?.eth0;
    assert.match(eth0?.match?.macaddress ?? '', /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/, trace);
    const nic = out.full.network?.interface?.[0] as { ipv4?: { ipAddress?: { privateIpAddress?: string }[] } };
    assert.match(nic.ipv4?.ipAddress?.[0]?.privateIpAddress ?? '', /^\d+\.\d+\.\d+\.\d+$/, trace);
    assert.deepEqual(out.network, out.full.network, trace);
    assert.deepEqual(
      leaves(out.full).filter(([, v]) => typeof v !== 'string'),
      [],
      'all primitives in /metadata/instance are strings',
    );
  });
});
