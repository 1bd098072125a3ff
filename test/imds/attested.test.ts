import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { lstat, mkdtemp, readFile, rm, symlink, chmod, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  ATTESTATION_CERT_FILE,
  ATTESTATION_DIR,
  ATTESTATION_KEY_FILE,
  openAttestationKey,
  type AttestationSigner,
} from '../../src/imds/index.js';
import { INVALID_VERSION_TEXT, META, NEWEST_INSTANCE, fixture, http, json, opensslSkip, serve } from './helpers.js';

let dir = '';
let signer: AttestationSigner;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'imds-attested-'));
  signer = await openAttestationKey({ stateDir: join(dir, 'state') });
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const DOC = '/metadata/attested/document';

/** Runs openssl with `args`; the real verifier, not our code, decides. */
function openssl(args: readonly string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Writes the signature and the CA certificate and runs `openssl cms -verify` on them. */
async function verify(
  signature: Buffer,
  caPem: string,
  name: string,
): Promise<{ status: number; stdout: string; stderr: string }> {
  const sig = join(dir, `${name}.p7b`);
  const ca = join(dir, `${name}-ca.pem`);
  await writeFile(sig, signature);
  await writeFile(ca, caPem);
  return openssl(['cms', '-verify', '-inform', 'DER', '-in', sig, '-CAfile', ca]);
}

interface Attested {
  nonce: string;
  plan: { name: string; product: string; publisher: string };
  sku?: string;
  subscriptionId?: string;
  timeStamp: { createdOn: string; expiresOn: string };
  vmId: string;
}

void describe('/metadata/attested/document: a real PKCS#7 signature, checked by openssl', () => {
  void test(
    'openssl cms -verify with the deployment certificate as CA yields the documented JSON, nonce echoed',
    { skip: opensslSkip },
    async () => {
      const f = fixture({ attestation: signer });
      const s = await serve(f.app, ['as0_0']);
      try {
        const res = await http({ port: s.port('as0_0'), path: `${DOC}?api-version=2020-09-01&nonce=abcde12345` });
        assert.equal(res.status, 200);
        assert.match(String(res.headers['content-type']), /^application\/json/);
        const body = json<{ encoding: string; signature: string }>(res.body);
        assert.deepEqual(Object.keys(body), ['encoding', 'signature']);
        assert.equal(body.encoding, 'pkcs7');
        const der = Buffer.from(body.signature, 'base64');
        assert.equal(der.toString('base64'), body.signature, 'plain base64');

        const verified = await verify(der, signer.certificatePem, 'ok');
        assert.equal(verified.status, 0, verified.stderr);
        assert.match(verified.stderr, /Verification successful/);
        const doc = json<Attested>(verified.stdout);
        const vm = f.backend.vm('as0_0');
        assert.ok(vm);
        // Azure's keys, in Azure's (alphabetical) order.
        assert.deepEqual(Object.keys(doc), ['nonce', 'plan', 'sku', 'subscriptionId', 'timeStamp', 'vmId']);
        assert.equal(doc.nonce, 'abcde12345');
        assert.equal(doc.vmId, vm.vmId);
        assert.equal(doc.subscriptionId, vm.instance.subscriptionId);
        assert.equal(doc.sku, '');
        assert.deepEqual(doc.plan, { name: '', product: '', publisher: '' });
        // T0 = 2026-04-11 22:11:58 UTC; valid for 6 hours, in IMDS's MM/DD/YY HH:MM:SS -0000.
        assert.deepEqual(doc.timeStamp, { createdOn: '04/11/26 22:11:58 -0000', expiresOn: '04/12/26 04:11:58 -0000' });

        // The way Azure's documentation verifies it works too (smime, DER in).
        const sig = join(dir, 'ok.p7b');
        const smime = openssl(['smime', '-verify', '-inform', 'DER', '-in', sig, '-CAfile', join(dir, 'ok-ca.pem')]);
        assert.equal(smime.status, 0, smime.stderr);
        assert.deepEqual(json(smime.stdout), doc);
        // The certificate inside the signature is the one operators fetch.
        const inside = openssl(['pkcs7', '-inform', 'DER', '-in', sig, '-print_certs']);
        assert.equal(new X509Certificate(inside.stdout).fingerprint256, signer.fingerprint256);
      } finally {
        await s.listeners.close();
      }
    },
  );

  void test(
    'a tampered signature fails, and so does another deployment’s certificate',
    { skip: opensslSkip },
    async () => {
      const f = fixture({ attestation: signer });
      const res = await f.fetch(`${DOC}?api-version=2021-02-01&nonce=1234567890`);
      const der = Buffer.from(json<{ signature: string }>(await res.text()).signature, 'base64');
      assert.equal((await verify(der, signer.certificatePem, 'control')).status, 0);

      // Change the signed content (the nonce's last digit) and, separately, the signature's last byte.
      const content = Buffer.from(der);
      const at = content.indexOf('1234567890');
      assert.ok(at > 0);
      content[at + 9] = '1'.charCodeAt(0);
      const forged = await verify(content, signer.certificatePem, 'forged-content');
      assert.notEqual(forged.status, 0);
      // openssl still prints the content it could not verify: only its status and stderr say so.
      assert.match(forged.stderr, /Verification failure/);
      const bits = Buffer.from(der);
      bits[bits.length - 1] = (bits[bits.length - 1] ?? 0) ^ 0x01;
      assert.notEqual((await verify(bits, signer.certificatePem, 'forged-signature')).status, 0);

      const other = await openAttestationKey({ stateDir: join(dir, 'other-deployment') });
      assert.notEqual(other.fingerprint256, signer.fingerprint256);
      assert.notEqual((await verify(der, other.certificatePem, 'other-ca')).status, 0);
    },
  );

  void test(
    'no nonce: IMDS’s default, the UTC time as YYYYMMDD-HHMMSS; version gates the fields',
    { skip: opensslSkip },
    async () => {
      const f = fixture({ attestation: signer });
      const read = async (query: string): Promise<Attested> => {
        const res = await f.fetch(`${DOC}?${query}`);
        assert.equal(res.status, 200, query);
        const der = Buffer.from(json<{ signature: string }>(await res.text()).signature, 'base64');
        const v = await verify(der, signer.certificatePem, 'versions');
        assert.equal(v.status, 0, v.stderr);
        return json<Attested>(v.stdout);
      };
      assert.equal((await read('api-version=2025-04-07')).nonce, '20260411-221158');
      assert.equal((await read('api-version=2025-04-07&nonce=')).nonce, '20260411-221158');
      // 2018-10-01 introduced the endpoint; subscriptionId came with 2019-04-30, sku with 2019-11-01.
      assert.deepEqual(Object.keys(await read('api-version=2018-10-01')), ['nonce', 'plan', 'timeStamp', 'vmId']);
      assert.deepEqual(Object.keys(await read('api-version=2019-08-15')), [
        'nonce',
        'plan',
        'subscriptionId',
        'timeStamp',
        'vmId',
      ]);
    },
  );

  void test('refusals: api-version, nonce, method, Metadata header; no key configured is 404', async () => {
    const f = fixture({ attestation: signer });
    const error = async (path: string, init?: RequestInit): Promise<[number, Record<string, unknown>]> => {
      const res = await f.fetch(path, init);
      return [res.status, json<Record<string, unknown>>(await res.text())];
    };
    const invalidVersion = { error: INVALID_VERSION_TEXT, 'newest-versions': NEWEST_INSTANCE };
    assert.deepEqual(await error(DOC), [400, invalidVersion]);
    assert.deepEqual(await error(`${DOC}?api-version=2018-04-02`), [400, invalidVersion]); // before attested
    const badNonce = { error: 'Bad request. nonce must be up to 32 letters or digits' };
    assert.deepEqual(await error(`${DOC}?api-version=2020-09-01&nonce=${'a'.repeat(33)}`), [400, badNonce]);
    assert.deepEqual(await error(`${DOC}?api-version=2020-09-01&nonce=%22%7D%2C%22vmId%22`), [400, badNonce]);
    const post = await f.fetch(`${DOC}?api-version=2020-09-01`, { method: 'POST', headers: META });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET');
    assert.deepEqual(await error(`${DOC}?api-version=2020-09-01`, { headers: {} }), [
      400,
      { error: 'Bad request: . Required metadata header not specified' },
    ]);
    // 32 characters are fine.
    assert.equal((await f.fetch(`${DOC}?api-version=2020-09-01&nonce=${'A1'.repeat(16)}`)).status, 200);

    const without = fixture();
    assert.deepEqual(
      await (async () => {
        const res = await without.fetch(`${DOC}?api-version=2020-09-01`);
        return [res.status, await res.text()];
      })(),
      [404, '{"error":"Not found"}'],
    );
  });
});

void describe('openAttestationKey: one key per deployment, kept in the state directory', () => {
  void test(
    'created once (folder 0700, key 0600) and the same key on every later open',
    { skip: opensslSkip },
    async () => {
      const state = join(dir, 'state');
      const folder = join(state, ATTESTATION_DIR);
      assert.equal((await lstat(folder)).mode & 0o777, 0o700);
      assert.equal((await lstat(join(folder, ATTESTATION_KEY_FILE))).mode & 0o777, 0o600);
      const certPem = await readFile(join(folder, ATTESTATION_CERT_FILE), 'utf8');
      assert.equal(new X509Certificate(certPem).fingerprint256, signer.fingerprint256);
      const again = await openAttestationKey({ stateDir: state });
      assert.equal(again.fingerprint256, signer.fingerprint256);
      assert.equal(again.certificatePem, signer.certificatePem);
      // openssl reads the stored key and certificate as a matching pair.
      const key = openssl(['pkey', '-in', join(folder, ATTESTATION_KEY_FILE), '-pubout']);
      const pub = openssl(['x509', '-in', join(folder, ATTESTATION_CERT_FILE), '-noout', '-pubkey']);
      assert.equal(key.stdout, pub.stdout);
    },
  );

  void test('loosened modes are tightened again on open', async () => {
    const state = join(dir, 'loose');
    const first = await openAttestationKey({ stateDir: state });
    const folder = join(state, ATTESTATION_DIR);
    await chmod(folder, 0o755);
    await chmod(join(folder, ATTESTATION_KEY_FILE), 0o644);
    const again = await openAttestationKey({ stateDir: state });
    assert.equal(again.fingerprint256, first.fingerprint256);
    assert.equal((await lstat(folder)).mode & 0o777, 0o700);
    assert.equal((await lstat(join(folder, ATTESTATION_KEY_FILE))).mode & 0o777, 0o600);
  });

  void test('symlinks are never followed: a linked key or a linked folder is refused', async () => {
    const state = join(dir, 'links');
    await openAttestationKey({ stateDir: state });
    const folder = join(state, ATTESTATION_DIR);
    const planted = join(dir, 'planted-key.pem');
    await rename(join(folder, ATTESTATION_KEY_FILE), planted);
    await symlink(planted, join(folder, ATTESTATION_KEY_FILE));
    await assert.rejects(openAttestationKey({ stateDir: state }), { code: 'INVALID_INPUT', message: /symlink/ });

    const state2 = join(dir, 'linked-folder');
    await openAttestationKey({ stateDir: join(dir, 'elsewhere') });
    await rm(state2, { recursive: true, force: true });
    await openAttestationKey({ stateDir: state2 });
    await rm(join(state2, ATTESTATION_DIR), { recursive: true });
    await symlink(join(dir, 'elsewhere', ATTESTATION_DIR), join(state2, ATTESTATION_DIR));
    await assert.rejects(openAttestationKey({ stateDir: state2 }), { code: 'INVALID_INPUT', message: /symlink/ });
  });

  void test('a key that does not match its certificate is refused, never replaced silently', async () => {
    const a = join(dir, 'mismatch-a');
    const b = join(dir, 'mismatch-b');
    await openAttestationKey({ stateDir: a });
    await openAttestationKey({ stateDir: b });
    await rm(join(a, ATTESTATION_DIR, ATTESTATION_CERT_FILE));
    await writeFile(
      join(a, ATTESTATION_DIR, ATTESTATION_CERT_FILE),
      await readFile(join(b, ATTESTATION_DIR, ATTESTATION_CERT_FILE)),
    );
    await assert.rejects(openAttestationKey({ stateDir: a }), {
      code: 'INVALID_INPUT',
      message: /does not match the certificate/,
    });
  });

  void test('two processes starting at once end up with one key', async () => {
    const state = join(dir, 'race');
    const [x, y, z] = await Promise.all([
      openAttestationKey({ stateDir: state }),
      openAttestationKey({ stateDir: state }),
      openAttestationKey({ stateDir: state }),
    ]);
    assert.equal(x.fingerprint256, y.fingerprint256);
    assert.equal(y.fingerprint256, z.fingerprint256);
  });
});
