import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseFleet } from '../../src/domain/index.js';
import { httpUrl } from '../../src/service/address.js';
import { startMetadataRuntime, type MetadataRuntime } from '../../src/service/metadata-runtime.js';
import { opensslSkip } from '../imds/helpers.js';

const fleet = parseFleet({
  hosts: [{ name: 'h1' }],
  vms: [
    { name: 'web_0', host: 'h1' },
    { name: 'web_1', host: 'h1' },
  ],
});

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'intermission-attestation-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function start(stateDir: string): Promise<MetadataRuntime> {
  return startMetadataRuntime({
    fleet,
    stateDir,
    bindings: [{ vm: 'web_0', address: { host: '127.0.0.1', port: 0 } }],
    control: { host: '127.0.0.1', port: 0 },
  });
}

async function operatorToken(runtime: MetadataRuntime): Promise<string> {
  return (JSON.parse(await readFile(runtime.controlFile, 'utf8')) as { token: string }).token;
}

async function certificate(runtime: MetadataRuntime, token: string): Promise<Response> {
  return fetch(`${httpUrl(runtime.control)}/v1/attestation/certificate`, {
    headers: { authorization: `Bearer ${token}` },
  });
}

describe('GET /v1/attestation/certificate: operators fetch what verifies a guest’s attested document', () => {
  it(
    'the fetched PEM verifies the document a VM reads (openssl cms -verify), and survives a restart',
    { skip: opensslSkip },
    async () => {
      const state = join(dir, 'state');
      let runtime = await start(state);
      let pem = '';
      let fingerprint = '';
      try {
        const token = await operatorToken(runtime);
        const res = await certificate(runtime, token);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('content-type'), 'application/x-pem-file');
        pem = await res.text();
        assert.match(pem, /^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n$/);
        assert.doesNotMatch(pem, /PRIVATE KEY/);
        fingerprint = res.headers.get('x-certificate-sha256') ?? '';
        assert.match(fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);

        const vm = runtime.metadata[0];
        assert.ok(vm);
        const doc = await fetch(
          `${httpUrl(vm.address)}/metadata/attested/document?api-version=2020-09-01&nonce=n0nce42`,
          {
            headers: { Metadata: 'true' },
          },
        );
        assert.equal(doc.status, 200);
        const { signature } = (await doc.json()) as { signature: string };
        await writeFile(join(dir, 'sig.der'), Buffer.from(signature, 'base64'));
        await writeFile(join(dir, 'ca.pem'), pem);
        const verified = spawnSync(
          'openssl',
          ['cms', '-verify', '-inform', 'DER', '-in', join(dir, 'sig.der'), '-CAfile', join(dir, 'ca.pem')],
          { encoding: 'utf8' },
        );
        assert.equal(verified.status, 0, verified.stderr);
        const attested = JSON.parse(verified.stdout) as { nonce: string; vmId: string };
        assert.equal(attested.nonce, 'n0nce42');
        assert.equal(attested.vmId, fleet.vms.find((v) => v.name === 'web_0')?.vmId);
      } finally {
        await runtime.close();
      }

      // The key is the deployment's: a restart serves the same certificate.
      runtime = await start(state);
      try {
        const res = await certificate(runtime, await operatorToken(runtime));
        assert.equal(await res.text(), pem);
        assert.equal(res.headers.get('x-certificate-sha256'), fingerprint);
      } finally {
        await runtime.close();
      }
    },
  );

  it('tenants and requests without a token are refused', async () => {
    const runtime = await start(join(dir, 'tenants'));
    try {
      const operator = await operatorToken(runtime);
      const issued = await fetch(`${httpUrl(runtime.control)}/v1/tokens`, {
        method: 'POST',
        headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tenant: 'web', vms: ['web_0'] }),
      });
      assert.equal(issued.status, 201);
      const { token } = (await issued.json()) as { token: string };
      const tenant = await certificate(runtime, token);
      assert.equal(tenant.status, 401);
      assert.doesNotMatch(await tenant.text(), /BEGIN CERTIFICATE/);
      const anonymous = await fetch(`${httpUrl(runtime.control)}/v1/attestation/certificate`);
      assert.equal(anonymous.status, 401);
    } finally {
      await runtime.close();
    }
  });
});
